//! The HTTP surface on `server.listen`: `/healthz`, `/readyz`, `/metrics`,
//! `/status`, plus the webhook routes and the WebSocket fan-out.
//!
//! Guarantees: the operational endpoints never block on the journal writer
//! (they read counters and the status board), and no response carries a secret.
//! `/status` and `/readyz` carry no character a terminal acts on (a vendor's
//! error text is in them): JSON's `\uXXXX` escapes stand for those.
//! `/readyz` lists at most 20 reasons of each kind, then how many more
//! (`/status` lists every one).
//! `/metrics` and `/status` replies, which grow with the accounts, count in
//! the reply budget until their clients have taken them
//! ([`crate::reply_budget`]): past it such a request is answered 503 with
//! `Retry-After`, counted and logged.

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::http::{Extensions, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::app::Context;
use crate::reply_budget::Route;
use crate::sinks;
use crate::sources;

/// The whole router.
pub fn router(ctx: &Arc<Context>) -> Router {
    let websocket = sinks::websocket::routes(ctx);
    let wrong_websocket_path = websocket.wrong_path;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .merge(sources::webhook::routes())
        .merge(websocket.router)
        // After the merges: it applies to the routes registered before it.
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(move |State(ctx): State<Arc<Context>>, request: Request| {
            let wrong_websocket_path = wrong_websocket_path.clone();
            async move { not_found(&ctx, &wrong_websocket_path, &request) }
        })
        .with_state(ctx.clone())
}

/// A method the relay's own routes do not take (they are all GET): axum's
/// 405 had an empty body where every other refusal is `{"error": …}`; its
/// `Allow` header is kept.
pub async fn method_not_allowed(request: Request) -> Response {
    json_error(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("{} takes GET (or HEAD) only", request.uri().path()),
    )
}

/// The relay's answer to a path no route serves, and how each of its other
/// 404s for an unknown path (a WebSocket upgrade at the wrong path, a path
/// under `/hooks/` that no webhook route matches) begins, followed by `": "` and what to do: `callrelay
/// tail` reads it to tell the relay's own 404 from a proxy's.
pub const NO_SUCH_ROUTE: &str = "no such route";

/// The relay's error answer: `{"error": message}` with `status`, as every
/// route that refuses a request gives it.
pub fn json_error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "error": message }))).into_response()
}

/// Asks the sender of a refused request to come back in `seconds`, as every
/// 503 the relay answers does (a vendor's retry, a CRM screen's reconnect).
pub fn retry_after(response: &mut Response, seconds: &'static str) {
    response.headers_mut().insert(
        header::RETRY_AFTER,
        header::HeaderValue::from_static(seconds),
    );
}

fn not_found(
    ctx: &Context,
    wrong_websocket_path: &sinks::websocket::WrongPath,
    request: &Request,
) -> Response {
    if sources::webhook::is_under_hooks(request.uri().path()) {
        return sources::webhook::no_such_hook(ctx, request);
    }
    if let Some(answer) = wrong_websocket_path.answer(ctx, request) {
        return answer;
    }
    json_error(StatusCode::NOT_FOUND, NO_SUCH_ROUTE)
}

/// `/healthz`: the process serves (also while the journal opens).
pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

/// Why the relay is not ready, or empty when it is.
pub fn not_ready_reasons(ctx: &Context) -> Vec<String> {
    let mut reasons = own_not_ready_reasons(ctx);
    reasons.extend(ctx.status.not_ready_reasons());
    reasons
}

/// The reasons that are the relay's own (shutdown, journal), not an
/// upstream's.
fn own_not_ready_reasons(ctx: &Context) -> Vec<String> {
    let mut reasons = Vec::new();
    // From the stop's start: ingest closes only after the HTTP drain, and a
    // probe answered during the drain said ready.
    if ctx.shutdown.is_cancelled() || ctx.ingest.is_closing() {
        reasons.push("shutting down".to_owned());
    }
    // A stop the relay began itself (the writer died) still says why.
    if ctx.ingest.is_closing() {
        // Closed on purpose: nothing else to say.
    } else if !ctx.ingest.is_alive() {
        // Every webhook would be answered 503, whatever the last commit did.
        reasons.push("the journal writer has stopped".to_owned());
    } else if let Some(gone) = ctx.journal.file_gone() {
        // Before any delivery has met it: a relay nobody sends to is as
        // unable to take events.
        reasons.push(gone.to_string());
    } else if !ctx.ingest.is_writable() {
        let failed = match ctx.ingest.commit_failure() {
            Some(cause) => format!("the journal's last commit failed: {cause}"),
            None => "the journal's last commit failed".to_owned(),
        };
        // A reopen reads the whole file (minutes on a slow disk): an
        // operator who freed the disk saw only the old error meanwhile, and
        // restarted the relay, which began the read again.
        reasons.push(match ctx.ingest.reopen_running_for() {
            Some(running) => format!(
                "{failed}; reopening the journal ({} s so far; a reopen reads the whole file)",
                running.as_secs()
            ),
            None => failed,
        });
    }
    reasons
}

/// `/readyz?exclude=upstreams`: what a load balancer in front of the
/// webhooks asks. An upstream that is down does not stop the relay taking
/// webhooks, and a relay serving many tenants always has one down somewhere
/// (the scale audit: one dead device of 40 turned away all 200 accounts'
/// webhooks); such a reason is listed under `degraded` instead. Named like
/// Kubernetes' `/readyz?exclude=`.
#[derive(serde::Deserialize)]
struct ReadyzQuery {
    exclude: Option<String>,
}

async fn readyz(
    State(ctx): State<Arc<Context>>,
    query: Result<Query<ReadyzQuery>, QueryRejection>,
) -> Response {
    let exclude = match query {
        Ok(Query(q)) => q.exclude,
        Err(rejection) => return json_error(StatusCode::BAD_REQUEST, &rejection.body_text()),
    };
    let exclude_upstreams = match exclude.as_deref() {
        None => false,
        Some("upstreams") => true,
        Some(other) => {
            let other: String = other.chars().take(40).collect();
            return json_error(
                StatusCode::BAD_REQUEST,
                &format!("`exclude` may only be `upstreams`, got {other:?}"),
            );
        }
    };
    let mut degraded = ctx.status.degraded_reasons();
    let reasons = if exclude_upstreams {
        degraded.extend(ctx.status.not_ready_reasons());
        own_not_ready_reasons(&ctx)
    } else {
        not_ready_reasons(&ctx)
    };
    let ready = reasons.is_empty();
    let mut body = json!({ "ready": ready });
    if !ready {
        body["reasons"] = json!(first_reasons(reasons));
    }
    if !degraded.is_empty() {
        body["degraded"] = json!(first_reasons(degraded));
    }
    if ready {
        return terminal_safe_json(StatusCode::OK, &body);
    }
    let mut response = terminal_safe_json(StatusCode::SERVICE_UNAVAILABLE, &body);
    retry_after(&mut response, "5");
    response
}

/// How many reasons `/readyz` lists in `reasons`, and in `degraded`.
const READYZ_REASONS: usize = 20;

/// The first [`READYZ_REASONS`] of `reasons`, then how many more `/status`
/// has. One reason per stream down, 100 to 300 bytes each, made `/readyz`
/// 1 to 3 MB in an outage at 10,000 accounts, and it is outside the reply
/// budget: a load balancer reads the status code, an operator `/status`.
fn first_reasons(mut reasons: Vec<String>) -> Vec<String> {
    if reasons.len() > READYZ_REASONS {
        let more = reasons.len() - READYZ_REASONS;
        reasons.truncate(READYZ_REASONS);
        reasons.push(format!("… and {more} more, every one in /status"));
    }
    reasons
}

/// `body` as JSON with the characters a terminal acts on, or that reorder
/// text on screen, written as `\uXXXX` escapes, as `callrelay tail` writes
/// its frames: `/status` and `/readyz` carry a vendor's error text, which
/// serde_json writes with its C1 controls (U+009B is a one-character
/// `ESC [`) and bidi overrides as they are, and operators `curl` these
/// endpoints to a terminal. The same JSON to a parser.
fn terminal_safe_json(status: StatusCode, body: &serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        terminal_safe_text(body),
    )
        .into_response()
}

/// `body` as [`terminal_safe_json`] writes it.
fn terminal_safe_text(body: &serde_json::Value) -> String {
    let text = body.to_string();
    match crate::logging::one_line::json_escaped(&text) {
        std::borrow::Cow::Borrowed(_) => text,
        std::borrow::Cow::Owned(escaped) => escaped,
    }
}

/// `route`'s reply, rendered by `render` and counted in the reply budget
/// until its client has taken it; 503 when the budget is full.
fn counted_reply(
    ctx: &Context,
    route: Route,
    extensions: &Extensions,
    content_type: &'static str,
    render: impl FnOnce() -> String,
) -> Response {
    let full = match ctx.reply_budget.body(route, render) {
        Ok(body) => return ([(header::CONTENT_TYPE, content_type)], body).into_response(),
        Err(full) => full,
    };
    ctx.metrics
        .http_replies_refused
        .with_label_values(&[route.label()])
        .inc();
    if let Some(held_back) = ctx.reply_budget.log_refusal(route) {
        let peer = crate::http_serve::peer_label(crate::http_serve::peer_of(extensions));
        tracing::warn!(
            route = route.label(),
            peer,
            held = full.held,
            limit = full.limit,
            held_back,
            "answered 503: rendered /metrics and /status replies that their clients have not taken yet fill the reply budget (clients that do not read their replies, or open no HTTP/2 window: callrelay_http_replies_refused_total); see \"Sizing\" in docs/operations.md"
        );
    }
    let mut response = json_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "replies that other clients have not taken yet fill the memory the relay gives them; retry later",
    );
    retry_after(&mut response, "5");
    response
}

async fn metrics(State(ctx): State<Arc<Context>>, extensions: Extensions) -> Response {
    let render = || {
        ctx.metrics.observe_journal(&ctx.journal);
        ctx.metrics
            .journal_writable
            .set(i64::from(journal_writable(&ctx)));
        crate::metrics::set_saturating(&ctx.metrics.webhook_body_bytes, ctx.body_budget.in_use());
        ctx.metrics.render()
    };
    counted_reply(
        &ctx,
        Route::Metrics,
        &extensions,
        "text/plain; version=0.0.4; charset=utf-8",
        render,
    )
}

/// Whether the journal takes events: `/status`' `journal.writable` and the
/// `callrelay_journal_writable` gauge, which an alert watches after the
/// last failed commit has aged out of its window (a quiet relay fails no more).
fn journal_writable(ctx: &Context) -> bool {
    ctx.ingest.is_writable() && !ctx.journal.is_file_gone()
}

async fn status(State(ctx): State<Arc<Context>>, extensions: Extensions) -> Response {
    counted_reply(&ctx, Route::Status, &extensions, "application/json", || {
        terminal_safe_text(&status_body(&ctx))
    })
}

fn status_body(ctx: &Context) -> serde_json::Value {
    let config = ctx.config.load();
    let webhooks: Vec<_> = config
        .webhook
        .iter()
        .map(|w| {
            json!({
                "vendor": w.get_ref().vendor,
                "account": w.get_ref().account.get_ref(),
                "path": format!("/hooks/{}/{}", w.get_ref().vendor, w.get_ref().account.get_ref()),
            })
        })
        .collect();
    let sinks: serde_json::Map<String, serde_json::Value> = ctx
        .status
        .sinks()
        .into_iter()
        .map(|(name, s)| {
            let mut detail = s.detail;
            if let Some(obj) = detail.as_object_mut() {
                obj.insert("ready".into(), json!(s.ready));
                if let Some(r) = s.reason {
                    obj.insert("reason".into(), json!(r));
                }
            }
            (name, detail)
        })
        .collect();
    let reasons = not_ready_reasons(ctx);
    let journal_gone = ctx.journal.file_gone().map(|gone| gone.to_string());
    json!({
        "version": crate::VERSION,
        "uptime_s": ctx.started.elapsed().as_secs(),
        "ready": reasons.is_empty(),
        "not_ready_reasons": reasons,
        "degraded": ctx.status.degraded_reasons(),
        "restart_pending": ctx.status.restart_pending(),
        "last_reload": ctx.status.last_reload(),
        "sources": ctx.status.upstreams(),
        "webhooks": webhooks,
        "journal": {
            "path": ctx.journal.path().display().to_string(),
            "first_seq": ctx.journal.first_seq(),
            "last_seq": ctx.journal.last_seq(),
            "bytes": ctx.journal.bytes(),
            "file_bytes": ctx.journal.file_bytes(),
            "dedup_entries": ctx.journal.dedup_entries(),
            "writable": journal_writable(ctx),
            "last_error": journal_gone.or_else(|| ctx.ingest.commit_failure()),
            "dropped_undelivered": ctx.status.undelivered_drops(),
        },
        "sinks": sinks,
    })
}
