//! Fuzz target: a caresoft webhook delivery (authenticated or not) through verify,
//! parse and the CloudEvent; see callrelay_fuzz::webhook for the input layout.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    callrelay_fuzz::webhook(callrelay::event::Vendor::Caresoft, data);
});
