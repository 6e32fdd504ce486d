//! Fuzz target: relay.toml text through `Config::from_text_with_files` (the
//! harness's files, not the host's) and its error report.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    callrelay_fuzz::config(data);
});
