//! Fuzz target: relay.toml text through `Config::from_text` and its error report.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    callrelay_fuzz::config(data);
});
