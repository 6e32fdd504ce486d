//! Reading a webhook body within `server.max_body`.
//!
//! Guarantees: never holds more than `max_body` bytes of a body in memory, for
//! a declared `Content-Length` and for chunked bodies alike; exactly `max_body`
//! bytes is accepted (the limit is inclusive). An oversized body is read on and
//! discarded for a bounded amount and time before the 413 is sent, so the
//! sender reads our answer instead of a connection reset. A body that has not
//! arrived whole within [`BODY_TIMEOUT`] is refused, so a stalled or
//! deliberately slow sender cannot hold a connection (or a shutdown) open.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, header};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;

/// How much of an oversized body is read and thrown away before answering.
const DRAIN_BYTES: u64 = 32 * 1024 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(2);
/// How long the whole body may take to arrive: a vendor's webhook is a few
/// kilobytes, and senders give up on an answer well before this.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub enum BodyError {
    /// Over `max_body`: a 413.
    TooLarge,
    /// The body could not be read (the client went away, bad framing): a 400.
    Read(String),
}

/// The whole body, or why not.
pub async fn read_limited(
    headers: &HeaderMap,
    body: Body,
    max_body: u64,
) -> Result<Bytes, BodyError> {
    read_limited_within(headers, body, max_body, BODY_TIMEOUT).await
}

async fn read_limited_within(
    headers: &HeaderMap,
    body: Body,
    max_body: u64,
    timeout: Duration,
) -> Result<Bytes, BodyError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_body) {
        drain(body).await;
        return Err(BodyError::TooLarge);
    }
    match tokio::time::timeout(timeout, read_within(body, max_body)).await {
        Ok(read) => read,
        Err(_) => Err(BodyError::Read(format!(
            "the body did not arrive within {}",
            humantime::format_duration(timeout)
        ))),
    }
}

async fn read_within(mut body: Body, max_body: u64) -> Result<Bytes, BodyError> {
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| BodyError::Read(format!("the body could not be read: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if (buf.len() + data.len()) as u64 > max_body {
                drain(body).await;
                return Err(BodyError::TooLarge);
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

/// Reads and discards the rest of `body`, within `DRAIN_BYTES` and `DRAIN_TIME`.
async fn drain(mut body: Body) {
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        let mut seen = 0u64;
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                seen += data.len() as u64;
                if seen > DRAIN_BYTES {
                    break;
                }
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_body_that_stalls_is_refused_after_the_timeout() {
        // Five bytes of a declared hundred, then nothing: the sender stalls.
        let (mut tx, rx) = futures::channel::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
        tx.try_send(Ok(Bytes::from_static(b"{\"a\":"))).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, "100".parse().unwrap());
        let timeout = Duration::from_millis(50);
        let read = read_limited_within(&headers, Body::from_stream(rx), 1024, timeout).await;
        assert!(
            matches!(&read, Err(BodyError::Read(reason)) if reason.contains("did not arrive within 50ms")),
            "{read:?}"
        );
        // Dropping the stalled body lets go of the connection's stream.
        assert!(tx.is_closed());
    }

    #[tokio::test]
    async fn a_whole_body_is_read() {
        let read = read_limited(&HeaderMap::new(), Body::from("{}"), 2).await;
        assert_eq!(read.unwrap(), Bytes::from_static(b"{}"));
    }
}
