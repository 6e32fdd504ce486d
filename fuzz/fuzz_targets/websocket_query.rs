//! Fuzz target: see callrelay_fuzz::websocket_query for the input layout and properties.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    callrelay_fuzz::websocket_query(data);
});
