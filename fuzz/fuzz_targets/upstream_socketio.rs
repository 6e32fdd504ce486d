//! Fuzz target: see callrelay_fuzz::upstream_socketio for the input layout and properties.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    callrelay_fuzz::upstream_socketio(data);
});
