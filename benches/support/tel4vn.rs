//! The Tel4vn hook the webhook benches send: a `ringing` event, unique by `n`
//! (its `call_id`), so nothing is deduplicated.

use bytes::Bytes;

/// The JSON body of ringing hook `n`.
pub fn ringing_hook(n: u64) -> Bytes {
    Bytes::from(format!(
        concat!(
            r#"{{"call_id":"bench-{:012}","sip_call_id":"sip-{:012}","domain":"bench.tel4vn.com","#,
            r#""direction":"inbound","from_number":"0899888999","to_number":"101","#,
            r#""hotline":"19001919","state":"ringing"}}"#
        ),
        n, n
    ))
}
