//! Reading one header of a consumed Kafka message by its name.
//!
//! rust-rdkafka's header accessors (`Headers::iter`, `get`, `try_get`)
//! convert every key they pass to `&str` and panic on one that is not
//! UTF-8. Anyone allowed to produce to a topic can write such a key, so the
//! read-back would panic on it and give up on the whole topic.
//!
//! Guarantees: [`value_of`] never panics, whatever the message's headers
//! hold; it gives the value of the *last* header named `name` (librdkafka's
//! lookup), `None` when there is none or it has no value. This module holds
//! the crate's only `unsafe` code.
#![allow(unsafe_code)]

use std::ffi::CStr;

use rdkafka::bindings as rd;
use rdkafka::message::BorrowedMessage;

/// The value of the last header named `name` in `message`.
pub fn value_of<'m>(message: &'m BorrowedMessage<'_>, name: &CStr) -> Option<&'m [u8]> {
    let mut headers: *mut rd::rd_kafka_headers_t = std::ptr::null_mut();
    let mut value: *const std::ffi::c_void = std::ptr::null();
    let mut size: usize = 0;
    // SAFETY: `message.ptr()` is the live librdkafka message `message`
    // borrows. The headers it hands back are owned by that message and
    // freed with it, and so is the value found in them: the slice made from
    // them borrows `message`, so it cannot outlive them. Neither call keeps
    // a pointer to `name` or to the out-parameters.
    unsafe {
        if rd::rd_kafka_message_headers(message.ptr(), &mut headers)
            != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
        {
            return None;
        }
        if rd::rd_kafka_header_get_last(headers, name.as_ptr(), &mut value, &mut size)
            != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
            || value.is_null()
        {
            return None;
        }
        Some(std::slice::from_raw_parts(value.cast::<u8>(), size))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::sinks::kafka::producer::ID_HEADER;
    use crate::sinks::kafka::resume::scan_blocking;
    use crate::sinks::kafka::tests_support::{flushed, mock_topic};

    /// Produces `value` to `topic` with the headers `(key, value)`, keys as
    /// raw C strings: rust-rdkafka's own record type only takes `&str` keys.
    fn produce_raw(
        producer: &BaseProducer,
        topic: &CStr,
        value: &[u8],
        headers: &[(&CStr, &[u8])],
    ) {
        let mut vus = vec![
            rd::rd_kafka_vu_t {
                vtype: rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_TOPIC,
                u: rd::rd_kafka_vu_s__bindgen_ty_1 {
                    cstr: topic.as_ptr(),
                },
            },
            rd::rd_kafka_vu_t {
                vtype: rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_VALUE,
                u: rd::rd_kafka_vu_s__bindgen_ty_1 {
                    mem: rd::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_1 {
                        ptr: value.as_ptr().cast_mut().cast(),
                        size: value.len(),
                    },
                },
            },
        ];
        for (key, value) in headers {
            vus.push(rd::rd_kafka_vu_t {
                vtype: rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_HEADER,
                u: rd::rd_kafka_vu_s__bindgen_ty_1 {
                    header: rd::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_2 {
                        name: key.as_ptr(),
                        val: value.as_ptr().cast(),
                        size: isize::try_from(value.len()).unwrap(),
                    },
                },
            });
        }
        // SAFETY: every pointer in `vus` is valid for the call, and
        // librdkafka copies the topic name, value and headers (no
        // RD_KAFKA_MSG_F_FREE/BLOCK flags are given) before it returns.
        let error = unsafe {
            rd::rd_kafka_produceva(producer.client().native_ptr(), vus.as_ptr(), vus.len())
        };
        assert!(error.is_null(), "rd_kafka_produceva refused the message");
    }

    /// Any producer may write into a relay topic. A header key that is not
    /// UTF-8 made rust-rdkafka's header iterator panic in the read-back, and
    /// the whole topic's pending events were sent again.
    #[test]
    fn a_read_back_reads_past_a_header_key_that_is_not_utf8() {
        let (_mock, producer, config) = mock_topic("relay.events");
        produce_raw(
            &producer,
            c"relay.events",
            br#"{"seq":1}"#,
            &[(c"\xff\xfe", b"x"), (ID_HEADER, b"first")],
        );
        produce_raw(
            &producer,
            c"relay.events",
            br#"{"seq":2}"#,
            &[(c"\xc3", b"")],
        );
        let ours = OwnedHeaders::new().insert(Header {
            key: ID_HEADER.to_str().unwrap(),
            value: Some("third"),
        });
        producer
            .send(
                BaseRecord::<(), _>::to("relay.events")
                    .payload(r#"{"seq":3}"#)
                    .headers(ours),
            )
            .unwrap();
        flushed(&producer);

        let scan = scan_blocking(
            &config,
            "relay.events",
            &BTreeMap::new(),
            1..=3,
            &CancellationToken::new(),
            Duration::from_secs(20),
            1,
        )
        .unwrap();
        assert_eq!(scan.read, 3);
        let mut found: Vec<_> = scan.found.keys().cloned().collect();
        found.sort();
        assert_eq!(found, [("first".to_owned(), 1), ("third".to_owned(), 3)]);
    }
}
