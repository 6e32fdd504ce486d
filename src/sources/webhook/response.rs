//! The webhook answers of CONTRACT.md, one constructor per outcome.
//!
//! Guarantees: error bodies are `{"error": "..."}` with a reason that names
//! the failed check and never a credential or expected value; 503s carry
//! `Retry-After`; the SPRecord verification answer is the bare MD5 (no newline)
//! or `{"result": md5}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::budget::Full;
use super::config::VerificationReply;
use crate::ingest::{Ack, IngestError};
use crate::vendors::AuthError;

/// One answer, its status and reason readable for the metrics and the log
/// before it is sent.
pub struct Answer {
    response: Response,
    /// The error body's reason; `None` for a 200.
    reason: Option<String>,
    /// Refused for the whole relay (ingest full, shutting down, the
    /// journal refusing commits), not for anything about this sender.
    relay_wide: bool,
}

impl Answer {
    fn ok(response: Response) -> Answer {
        Answer {
            response,
            reason: None,
            relay_wide: false,
        }
    }

    pub fn status(&self) -> StatusCode {
        self.response.status()
    }

    /// Whether every sender gets this answer now, whoever it is.
    pub fn is_relay_wide(&self) -> bool {
        self.relay_wide
    }

    /// Why the request was not taken, as its body says.
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    pub fn into_response(self) -> Response {
        self.response
    }

    fn error(status: StatusCode, reason: &str) -> Answer {
        Answer {
            response: crate::server::json_error(status, reason),
            reason: Some(reason.to_owned()),
            relay_wide: false,
        }
    }

    pub fn not_found(reason: &str) -> Answer {
        Answer::error(StatusCode::NOT_FOUND, reason)
    }

    pub fn method_not_allowed(allow: &'static str) -> Answer {
        let mut a = Answer::error(
            StatusCode::METHOD_NOT_ALLOWED,
            &format!("method not allowed; use {allow}"),
        );
        a.response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
        a
    }

    pub fn too_large(max_body: u64) -> Answer {
        Answer::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("the body is over server.max_body ({max_body} bytes)"),
        )
    }

    /// The Voip24h feedback GET's query, which is its event, is over `max_body`.
    pub fn query_too_large(max_body: u64) -> Answer {
        Answer::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("the query string is over server.max_body ({max_body} bytes)"),
        )
    }

    /// The event, as a Kafka message, would be over `message.max.bytes`.
    pub fn too_large_for_kafka(size: usize, limit: usize) -> Answer {
        Answer::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!(
                "the event would be a Kafka message of up to {size} bytes, over the \
                 relay's message.max.bytes ({limit} bytes)"
            ),
        )
    }

    pub fn unauthorized(e: &AuthError) -> Answer {
        let mut a = Answer::error(StatusCode::UNAUTHORIZED, &e.to_string());
        if e.wants_basic() {
            a.response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                // RFC 7617's charset: a client encodes a non-ASCII password
                // as UTF-8, the bytes the password is compared as.
                HeaderValue::from_static("Basic realm=\"callrelay\", charset=\"UTF-8\""),
            );
        }
        a
    }

    /// A browser's request to a webhook that has no secret to check.
    pub fn from_a_browser() -> Answer {
        Answer::error(
            StatusCode::FORBIDDEN,
            "a browser's request (it carries Origin or Sec-Fetch-Site) is refused: this SPRecord \
             webhook has no `token`, so any web page could post events to it; to accept it, set \
             `token` in its [[webhook]] and send it as ?token=",
        )
    }

    pub fn bad_request(reason: &str) -> Answer {
        Answer::error(StatusCode::BAD_REQUEST, reason)
    }

    /// A `[[webhook]]` that reached us without its credentials (validation
    /// makes this impossible for a loaded config).
    pub fn misconfigured() -> Answer {
        Answer::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "this webhook account is misconfigured",
        )
    }

    /// Bodies being received hold the whole memory budget: the vendor
    /// should retry in a moment.
    pub fn busy(limit: u64, full: Full) -> Answer {
        let why = match full {
            Full::All => format!(
                "too many request bodies are being received at once (over {limit} bytes together)"
            ),
            Full::Account => format!(
                "too many request bodies are being received at once for this account (over {} bytes, half of the {limit} all webhooks may hold together)",
                full.bound(limit)
            ),
        };
        let mut a = Answer::error(StatusCode::SERVICE_UNAVAILABLE, &why);
        crate::server::retry_after(&mut a.response, "1");
        a
    }

    /// An event whose JSON is over the bound `full` names, which it may
    /// pass only while nothing else of its account (or of any account) is
    /// held: it waits for those to finish, not for room. Told apart from
    /// [`Answer::busy`], whose "too many bodies" beside a gauge of a few
    /// bytes could not be diagnosed.
    pub fn waits_alone(json_len: u64, limit: u64, full: Full) -> Answer {
        let bound = full.bound(limit);
        let why = match full {
            Full::Account => format!(
                "this event's CloudEvent JSON is {json_len} bytes, over this account's share of the webhook body budget ({bound} bytes): it is taken only while no other request bodies or events of this account are held, and waits for them to finish"
            ),
            Full::All => format!(
                "this event's CloudEvent JSON is {json_len} bytes, over the webhook body budget ({bound} bytes): it is taken only while no other request bodies or events of any webhook are held, and waits for them to finish"
            ),
        };
        let mut a = Answer::error(StatusCode::SERVICE_UNAVAILABLE, &why);
        crate::server::retry_after(&mut a.response, "1");
        a
    }

    /// Ingest could not take or commit the event: the vendor should retry.
    pub fn unavailable(e: &IngestError) -> Answer {
        let retry_after = match e {
            IngestError::Full => "1",
            IngestError::ShuttingDown | IngestError::Commit(_) => "5",
        };
        let reason = match e {
            // The commit error's text is about our disk, not the sender's business.
            IngestError::Commit(_) => "the journal cannot accept events right now".to_owned(),
            other => other.to_string(),
        };
        let mut a = Answer::error(StatusCode::SERVICE_UNAVAILABLE, &reason);
        crate::server::retry_after(&mut a.response, retry_after);
        a.relay_wide = true;
        a
    }

    pub fn accepted(ack: Ack) -> Answer {
        // Written by hand: this is the answer to nearly every request, and
        // building a `serde_json::Value` for three fixed fields cost more than
        // the rest of the response.
        let mut body = Vec::with_capacity(80);
        body.extend_from_slice(b"{\"id\":\"");
        body.extend_from_slice(ack.id.to_hex().as_bytes());
        body.extend_from_slice(b"\",\"seq\":");
        body.extend_from_slice(itoa::Buffer::new().format(ack.seq).as_bytes());
        body.extend_from_slice(if ack.duplicate {
            b",\"duplicate\":true}"
        } else {
            b",\"duplicate\":false}"
        });
        Answer::ok(
            (
                StatusCode::OK,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                body,
            )
                .into_response(),
        )
    }

    pub fn verification(md5_hex: &str, form: VerificationReply) -> Answer {
        Answer::ok(match form {
            VerificationReply::Plain => (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                md5_hex.to_owned(),
            )
                .into_response(),
            VerificationReply::Json => {
                (StatusCode::OK, axum::Json(json!({ "result": md5_hex }))).into_response()
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventId;

    #[tokio::test]
    async fn accepted_is_the_contract_json_with_its_content_type() {
        for (seq, duplicate) in [(0, false), (u64::MAX, true), (42, false)] {
            let id = EventId([0xab; 16]);
            let r = Answer::accepted(Ack { id, seq, duplicate }).into_response();
            assert_eq!(r.status(), StatusCode::OK);
            assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
            let body = axum::body::to_bytes(r.into_body(), 1024).await.unwrap();
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(
                v,
                json!({"id": id.to_hex(), "seq": seq, "duplicate": duplicate})
            );
        }
    }

    #[test]
    fn every_refusal_of_ingest_is_a_503_with_retry_after() {
        for e in [
            IngestError::Full,
            IngestError::ShuttingDown,
            IngestError::Commit("disk full at /var/lib/x".into()),
        ] {
            let a = Answer::unavailable(&e);
            assert_eq!(a.status(), StatusCode::SERVICE_UNAVAILABLE);
            let r = a.into_response();
            assert!(r.headers().contains_key(header::RETRY_AFTER));
        }
    }

    #[test]
    fn the_reason_shown_to_metrics_and_logs_is_the_bodys() {
        let refused = Answer::bad_request("the body is not valid JSON");
        assert_eq!(refused.reason(), Some("the body is not valid JSON"));
        let taken = Answer::accepted(Ack {
            id: EventId([1; 16]),
            seq: 1,
            duplicate: false,
        });
        assert_eq!(taken.reason(), None);
        assert_eq!(
            Answer::verification("abc", VerificationReply::Plain).reason(),
            None
        );
    }

    #[test]
    fn basic_auth_failures_ask_for_basic() {
        let r = Answer::unauthorized(&AuthError::BadBasic).into_response();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            r.headers()[header::WWW_AUTHENTICATE],
            "Basic realm=\"callrelay\", charset=\"UTF-8\""
        );
        let r = Answer::unauthorized(&AuthError::RepeatedBasic).into_response();
        assert!(r.headers().contains_key(header::WWW_AUTHENTICATE));
        let r = Answer::unauthorized(&AuthError::Repeated("header `x-api-key`".into()));
        assert!(
            !r.into_response()
                .headers()
                .contains_key(header::WWW_AUTHENTICATE)
        );
        let r = Answer::unauthorized(&AuthError::BadToken).into_response();
        assert!(!r.headers().contains_key(header::WWW_AUTHENTICATE));
    }

    /// A 503 refused for one account's half of the budget quoted the whole
    /// budget, though half of it was free (units review, round 47).
    #[tokio::test]
    async fn a_busy_answer_names_the_bound_that_was_reached() {
        let text = |full| async move {
            let r = Answer::busy(1000, full).into_response();
            assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
            let body = axum::body::to_bytes(r.into_body(), 4096).await.unwrap();
            String::from_utf8_lossy(&body).into_owned()
        };
        assert!(text(Full::All).await.contains("(over 1000 bytes together)"));
        let account = text(Full::Account).await;
        assert!(
            account.contains("for this account (over 500 bytes, half of the 1000"),
            "{account}"
        );
    }
}
