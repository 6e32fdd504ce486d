//! What the listener answers while the journal opens. It is bound before
//! the open, so that a port in use fails the start at once; and the open of
//! a journal not closed cleanly reads the whole file (minutes on a slow
//! disk), during which a connection left in the kernel's backlog would hang
//! until the sender gave up, a liveness probe with it.
//!
//! Guarantees, from the bind until the journal is open: `GET /healthz` is
//! 200 (the process serves); `GET /readyz` is 503 with the reason and how
//! long the open has taken; every other request, webhooks and WebSocket
//! upgrades among them, is 503 with `Retry-After` and a JSON error, as when
//! the journal cannot take an event: nothing is journaled and nothing
//! acknowledged. Once the journal is open (or the start failed) no new
//! connection is taken, and the ones it holds are closed after their
//! answer, so a keep-alive connection meets the relay's own routes next.
//! A webhook turned away is counted in `callrelay_webhook_requests_total`
//! (code 503) like one the journal turns away later, and once the last
//! connection is closed one log line says how many requests were turned
//! away, so that an alert on 503s and the log both show what a long check
//! cost the vendors.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::Router;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::http_serve::{self, ConnectionSlots, HttpTimeouts};
use crate::metrics::Metrics;
use crate::server;
use crate::sources::webhook;

/// Seconds a sender is asked to wait: a check of a journal takes from
/// seconds to minutes, and a sender that retries loses little by waiting.
const RETRY_AFTER_S: &str = "5";

/// Serves the opening answers until closed (or dropped, on a failed start).
pub(super) struct OpeningAnswers {
    stop: DropGuard,
    stopped_accepting: oneshot::Receiver<()>,
}

impl OpeningAnswers {
    /// Stops taking connections and returns once none will be: a
    /// connection made after this (or waiting in the backlog) is the
    /// relay's routes', not answered "starting" or closed unanswered by
    /// the drain below (seen as a WebSocket handshake cut short when the
    /// two servers overlapped). The connections it took are closed after
    /// their answer, in the background.
    pub(super) async fn close(self) {
        drop(self.stop);
        // An error: the task is gone, and its hold on the listener with it.
        let _ = self.stopped_accepting.await;
    }
}

/// Starts answering on `listener` as the module says.
pub(super) fn serve_while_opening(
    listener: Arc<TcpListener>,
    timeouts: HttpTimeouts,
    slots: ConnectionSlots,
    metrics: Arc<Metrics>,
) -> OpeningAnswers {
    let stop = CancellationToken::new();
    let turned_away = Arc::new(TurnedAway::new(metrics.clone()));
    let router = router(Instant::now(), turned_away.clone());
    let (stopped, stopped_accepting) = oneshot::channel();
    let stopping = stop.clone();
    tokio::spawn(async move {
        let drain =
            http_serve::accept_until(listener, router, timeouts, slots, metrics, &stopping).await;
        let _ = stopped.send(());
        drain.shutdown().await;
        turned_away.say();
    });
    OpeningAnswers {
        stop: stop.drop_guard(),
        stopped_accepting,
    }
}

/// What was answered 503 with `Retry-After` (probes are not counted: they
/// are answered as they ask).
struct TurnedAway {
    metrics: Arc<Metrics>,
    webhooks: AtomicU64,
    others: AtomicU64,
}

impl TurnedAway {
    fn new(metrics: Arc<Metrics>) -> TurnedAway {
        TurnedAway {
            metrics,
            webhooks: AtomicU64::new(0),
            others: AtomicU64::new(0),
        }
    }

    fn count(&self, path: &str) {
        match webhook::webhook_label(path) {
            Some(vendor) => {
                self.metrics
                    .webhook_requests
                    .with_label_values(&[vendor, StatusCode::SERVICE_UNAVAILABLE.as_str()])
                    .inc();
                self.webhooks.fetch_add(1, Ordering::Relaxed);
            }
            None => {
                self.others.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// How many webhooks and other requests were turned away, if any were.
    fn totals(&self) -> Option<(u64, u64)> {
        let webhooks = self.webhooks.load(Ordering::Relaxed);
        let others = self.others.load(Ordering::Relaxed);
        (webhooks + others > 0).then_some((webhooks, others))
    }

    /// Logs what was turned away, if anything was: a warning when webhooks
    /// were among them, since no vendor documents sending a 503'd event again.
    fn say(&self) {
        const TURNED_AWAY: &str = "requests answered 503 while the journal opened (none of them was journaled; only a vendor that retries sends them again)";
        match self.totals() {
            Some((webhooks, others)) if webhooks > 0 => {
                tracing::warn!(webhooks, others, "{TURNED_AWAY}");
            }
            Some((webhooks, others)) => tracing::info!(webhooks, others, "{TURNED_AWAY}"),
            None => {}
        }
    }
}

fn router(opening_since: Instant, turned_away: Arc<TurnedAway>) -> Router {
    Router::new()
        .route("/healthz", get(server::healthz))
        .route(
            "/readyz",
            get(move || async move { not_ready(opening_since) }),
        )
        .method_not_allowed_fallback(server::method_not_allowed)
        .fallback(move |uri: Uri| async move {
            turned_away.count(uri.path());
            starting(opening_since)
        })
}

fn opening_for(since: Instant) -> String {
    format!(
        "opening the journal ({} s; a journal not closed cleanly is read whole first)",
        since.elapsed().as_secs()
    )
}

fn not_ready(since: Instant) -> Response {
    let body = json!({"ready": false, "reasons": [opening_for(since)]});
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    server::retry_after(&mut response, RETRY_AFTER_S);
    response
}

fn starting(since: Instant) -> Response {
    let message = format!("the relay is starting: {}", opening_for(since));
    let mut response = server::json_error(StatusCode::SERVICE_UNAVAILABLE, &message);
    server::retry_after(&mut response, RETRY_AFTER_S);
    response
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    /// Sends one HTTP/1.1 request on `stream` and reads its answer (the
    /// server's answers here are small and sent whole).
    async fn ask(stream: &mut TcpStream, method: &str, path: &str) -> String {
        let request = format!(
            "{method} {path} HTTP/1.1\r\nhost: relay\r\ncontent-length: 2\r\ncontent-type: application/json\r\n\r\n{{}}"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        // The head and the JSON body come in one write or two; a body ends
        // with `}` and `ok\n` with a newline.
        loop {
            let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
                .await
                .expect("an answer")
                .unwrap();
            assert!(n > 0, "closed before an answer: {answer:?}");
            answer.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&answer);
            if let Some((_, body)) = text.split_once("\r\n\r\n")
                && (body.ends_with('}') || body.ends_with('\n'))
            {
                return text.into_owned();
            }
        }
    }

    async fn connect(listener: &TcpListener) -> TcpStream {
        TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap()
    }

    #[test]
    fn what_is_turned_away_is_counted_as_webhooks_and_others() {
        let metrics = Arc::new(Metrics::new());
        let turned_away = TurnedAway::new(metrics.clone());
        assert_eq!(turned_away.totals(), None, "nothing said when none came");
        turned_away.count("/hooks/voipex/demo");
        assert_eq!(turned_away.totals(), Some((1, 0)));
        for path in ["/hooks/x", "/status", "/metrics", "/ws"] {
            turned_away.count(path);
        }
        assert_eq!(turned_away.totals(), Some((2, 3)));
        let counted = |vendor: &str| {
            metrics
                .webhook_requests
                .with_label_values(&[vendor, "503"])
                .get()
        };
        assert_eq!((counted("voipex"), counted("unknown")), (1, 1));
    }

    /// What `say` logs, in the JSON log format.
    fn said(turned_away: &TurnedAway) -> String {
        crate::logging::tests_support::logged_json(|| turned_away.say())
    }

    #[test]
    fn the_totals_are_logged_once_and_nothing_when_none_was_turned_away() {
        let turned_away = TurnedAway::new(Arc::new(Metrics::new()));
        assert_eq!(said(&turned_away), "");
        turned_away.count("/hooks/tel4vn/demo");
        turned_away.count("/hooks/tel4vn/demo");
        turned_away.count("/ws");
        let text = said(&turned_away);
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(lines.len(), 1, "{text}");
        let line = &lines[0];
        assert!(
            line["message"]
                .as_str()
                .unwrap()
                .starts_with("requests answered 503 while the journal opened"),
            "{line}"
        );
        assert_eq!((&line["webhooks"], &line["others"]), (&json!(2), &json!(1)));
        assert_eq!(line["level"], "WARN", "webhooks turned away may be lost");

        let others_only = TurnedAway::new(Arc::new(Metrics::new()));
        others_only.count("/ws");
        let text = said(&others_only);
        let line: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(line["level"], "INFO", "{text}");
    }

    #[tokio::test]
    async fn while_the_journal_opens_only_health_is_ok_and_the_rest_is_asked_to_retry() {
        let listener = Arc::new(TcpListener::bind("127.0.0.1:0").await.unwrap());
        let metrics = Arc::new(Metrics::new());
        let slots = ConnectionSlots::new(16);
        let answers = serve_while_opening(
            listener.clone(),
            HttpTimeouts::default(),
            slots.clone(),
            metrics.clone(),
        );
        let mut held = connect(&listener).await;

        let health = ask(&mut held, "GET", "/healthz").await;
        assert!(health.starts_with("HTTP/1.1 200 "), "{health}");
        let ready = ask(&mut held, "GET", "/readyz").await;
        assert!(ready.starts_with("HTTP/1.1 503 "), "{ready}");
        assert!(
            ready.contains(r#""reasons":["opening the journal (0 s;"#),
            "{ready}"
        );
        assert!(
            ready.to_ascii_lowercase().contains("retry-after: 5\r\n"),
            "every 503 says when to come back: {ready}"
        );
        let wrong = ask(&mut held, "POST", "/readyz").await;
        assert!(wrong.starts_with("HTTP/1.1 405 "), "{wrong}");
        assert!(
            wrong.contains(r#"{"error":"/readyz takes GET (or HEAD) only"}"#),
            "{wrong}"
        );
        for (method, path) in [
            ("POST", "/hooks/tel4vn/demo"),
            ("POST", "/hooks/tel4vn/demo/"),
            ("POST", "/hooks/nosuch/demo"),
            ("GET", "/ws"),
            ("GET", "/status"),
        ] {
            let answer = ask(&mut held, method, path).await;
            assert!(
                answer.starts_with("HTTP/1.1 503 "),
                "{method} {path}: {answer}"
            );
            assert!(
                answer.to_ascii_lowercase().contains("retry-after: 5\r\n"),
                "{answer}"
            );
            assert!(
                answer.contains(r#"{"error":"the relay is starting: opening the journal (0 s;"#),
                "{answer}"
            );
        }

        // The webhooks turned away show where a 503 from the journal would.
        let webhook_503s = |vendor: &str| {
            metrics
                .webhook_requests
                .with_label_values(&[vendor, "503"])
                .get()
        };
        assert_eq!(webhook_503s("tel4vn"), 2);
        assert_eq!(webhook_503s("unknown"), 1);
        assert_eq!(webhook_503s("caresoft"), 0);

        // The journal is open: the relay's own routes take the listener over,
        // the connection kept alive meanwhile is closed, not left on the
        // opening answers, and one still in the backlog (connected without
        // yielding to the opening answers' task) is the new routes'.
        let waiting = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        answers.close().await;
        // Nothing of the opening answers holds the listener any more, so
        // nothing of theirs can accept from it beside the relay's routes.
        assert_eq!(Arc::strong_count(&listener), 1, "still held on return");
        let own = Router::new().route("/healthz", get(|| async { "own\n" }));
        let stop = CancellationToken::new();
        let _stop = stop.clone().drop_guard();
        tokio::spawn(http_serve::serve(
            listener.clone(),
            own,
            HttpTimeouts::default(),
            slots,
            metrics,
            stop,
        ));
        let mut rest = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(10), held.read(&mut rest)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "the held connection is still open: {read:?}"
        );
        waiting.set_nonblocking(true).unwrap();
        let mut waiting = TcpStream::from_std(waiting).unwrap();
        let mut fresh = connect(&listener).await;
        for stream in [&mut waiting, &mut fresh] {
            let own = ask(stream, "GET", "/healthz").await;
            assert!(
                own.starts_with("HTTP/1.1 200 ") && own.ends_with("own\n"),
                "{own}"
            );
        }
    }
}
