//! Webhook routes: `/hooks/{vendor}/{account}` for the push vendors.
//!
//! Guarantees:
//! - `/hooks/{vendor}/{account}/` is the same webhook (a URL registered with
//!   a trailing slash loses nothing); any other path under `/hooks` is a 404
//!   counted and logged as a refused webhook, naming the shape a path must have;
//! - checks run in the CONTRACT's order and the first failure answers: route
//!   (404) → method (405) → size (413, `max_body` inclusive, chunked bodies
//!   too) → auth (401; 403 for a browser's request to an SPRecord webhook
//!   without `token`) → parse (400);
//! - nothing unauthenticated reaches ingest: parsing takes the
//!   [`Verified`](crate::vendors::Verified) that only the vendor's check makes;
//! - a body declared compressed (a `Content-Encoding` naming a coding that
//!   transforms it: gzip, br, …) is a 400 once the credentials pass, and is
//!   never parsed;
//! - a 200 carrying `{id, seq, duplicate}` is sent only after ingest reports
//!   the event committed (or already journaled); when ingest cannot take it
//!   the answer is 503 with `Retry-After`, so a vendor that retries can;
//! - accounts are looked up in the current config on every request, so a
//!   reload adds, changes or removes them without a restart;
//! - a refusal (4xx or 503) is logged with its reason, at most once per 30 s
//!   per vendor, configured account and status (with how many were held back);
//! - a body labelled with a charset other than UTF-8 but written in UTF-8 is
//!   taken as labelled and logged, at most once per 30 s per vendor and
//!   account;
//! - an event whose vendor date could not be read, and so takes the receive
//!   time, is said ([`crate::sources::unread_dates`]);
//! - a sender whose credentials (in a header or the query) fail never has
//!   its body held in memory; bodies that are held share a budget
//!   (`ServerConfig::body_memory_limit`), past which the answer is 503 with
//!   `Retry-After`; the budget counts a body's bytes as they arrive, then,
//!   while its event waits for the journal, the larger of those and its
//!   CloudEvent JSON's (which may pass its account's half, or the whole
//!   budget, only while no other delivery of its account, or none at all,
//!   holds bytes: a 503 can always be retried into room); what parsing a
//!   body adds besides is bounded by its bytes and
//!   by its number of values (a body of more than
//!   `vendors::text::MAX_VALUES` is a 400 before it is read into values);
//! - no answer, log line or metric label carries a credential.

pub mod body;
pub mod budget;
pub mod config;
pub mod response;

use std::net::SocketAddr;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::Method as HttpMethod;
use axum::response::Response;
use axum::routing::any;
use time::OffsetDateTime;

use crate::app::Context;
use crate::event::{IncomingEvent, PreparedEvent, Transport, Vendor};
use crate::sinks::kafka::producer::wire_size_bound as kafka_wire_size_bound;
use crate::vendors::{self, Delivery, Method, Parsed};
use body::BodyError;
use response::Answer;

/// How often refusals of one vendor with one status are logged again.
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(30);

/// The webhook routes. The trailing-slash form is routed alike because
/// web servers often treat the two as one (Express does by default), so a
/// vendor console's operator may well register it; answered 404, every
/// event the vendor sent there would be lost.
pub fn routes() -> Router<Arc<Context>> {
    Router::new()
        .route("/hooks/{vendor}/{account}", any(handle))
        .route("/hooks/{vendor}/{account}/", any(handle))
}

async fn handle(
    State(ctx): State<Arc<Context>>,
    path: Result<Path<(String, String)>, PathRejection>,
    request: Request,
) -> Response {
    let peer = crate::http_serve::peer_of(request.extensions());
    let (label, account, answer) = match path {
        Ok(Path((vendor, account))) => {
            let (label, answer) = deliver(&ctx, &vendor, &account, request).await;
            (label, account, answer)
        }
        // A segment that is not UTF-8 once percent-decoded: axum's own answer
        // is a text/plain 400 that jumps the route check and the metric.
        Err(_) => {
            let (label, answer) = unreadable_path(request.uri().path());
            (label, String::new(), answer)
        }
    };
    answered(&ctx, label, &account, peer, answer)
}

/// Whether a path no route matched was meant for a webhook: its first
/// non-empty segment is `hooks` (`//hooks/tel4vn/demo` from a base URL
/// ending in `/` included).
pub fn is_under_hooks(path: &str) -> bool {
    path.split('/').find(|s| !s.is_empty()) == Some("hooks")
}

/// The answer to a path under `/hooks` no webhook route matched (a missing
/// account, a part too many, a doubled `/`): a 404 counted and logged like
/// any refused webhook, under the vendor the path names if it names one, so
/// a URL registered wrongly shows on that vendor's series and in the log
/// rather than nowhere.
pub fn no_such_hook(ctx: &Context, request: &Request) -> Response {
    let peer = crate::http_serve::peer_of(request.extensions());
    let label = webhook_label(request.uri().path()).unwrap_or("unknown");
    answered(
        ctx,
        label,
        "",
        peer,
        Answer::not_found(&no_such_hook_said()),
    )
}

/// What follows [`NO_SUCH_ROUTE`](crate::server::NO_SUCH_ROUTE) in
/// [`no_such_hook`]'s answer.
pub const WEBHOOK_PATH_IS: &str =
    "a webhook's path is /hooks/{vendor}/{account}, with one `/` before each part";

/// [`no_such_hook`]'s reason.
pub fn no_such_hook_said() -> String {
    format!("{}: {WEBHOOK_PATH_IS}", crate::server::NO_SUCH_ROUTE)
}

/// The 404 reason for a path under `/hooks/` whose vendor segment names no
/// vendor. Shared with `callrelay tail`, which takes it as the relay's own
/// 404 (a `--url` at a webhook's path).
pub const UNKNOWN_VENDOR: &str = "unknown vendor";

/// The 404 reason for a vendor's path whose account is not configured;
/// shared with `callrelay tail` as [`UNKNOWN_VENDOR`] is.
pub const NO_SUCH_ACCOUNT: &str = "no such webhook account";

/// The `vendor` label a request to `path` is counted under in
/// `callrelay_webhook_requests_total`: the vendor the path names, or
/// `unknown`; `None` when the path is not under `/hooks`.
pub fn webhook_label(path: &str) -> Option<&'static str> {
    is_under_hooks(path).then(|| vendor_named_in(path).map_or("unknown", Vendor::as_str))
}

/// Counts an answer under `label`, logs it when it is a refusal, and sends it.
fn answered(
    ctx: &Context,
    label: &'static str,
    account: &str,
    peer: Option<SocketAddr>,
    answer: Answer,
) -> Response {
    ctx.metrics
        .webhook_requests
        .with_label_values(&[label, answer.status().as_str()])
        .inc();
    log_refusal(ctx, label, account, peer, &answer);
    answer.into_response()
}

/// A request refused (4xx, or 503 when it should come again) is logged, at most once per
/// [`REFUSAL_LOG_INTERVAL`] per vendor, account and status: a vendor whose
/// secret was rotated, or a URL registered with a typo, shows in the log as
/// well as in the metric, without one line per retry, and one noisy account
/// does not hide another. A 404's account is no configured one, so 404s are
/// counted per vendor only (the set of keys stays as small as the config).
/// The account comes from the request's path: it is cut short, and both log
/// formats escape a string field, so no line break or escape sequence it
/// carries reaches the log as such. `peer` is the connection's address, so
/// that a sender can be told from a scanner: the line's, not the held-back ones'.
fn log_refusal(
    ctx: &Context,
    vendor: &'static str,
    account: &str,
    peer: Option<SocketAddr>,
    answer: &Answer,
) {
    let status = answer.status();
    // 503s too: the journal or the body budget turning vendors away is what
    // an operator looks for first.
    if !status.is_client_error() && status != axum::http::StatusCode::SERVICE_UNAVAILABLE {
        return;
    }
    let held_back = ctx
        .webhook_refusals
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .admit(refusal_key(vendor, account, answer), Instant::now());
    let Some(held_back) = held_back else {
        return;
    };
    let account = crate::logging::excerpt(account);
    tracing::warn!(
        vendor,
        account = account.as_str(),
        peer = crate::http_serve::peer_label(peer).as_str(),
        status = status.as_u16(),
        reason = answer.reason().unwrap_or_default(),
        held_back,
        "webhook refused"
    );
}

/// What repeats of a refusal are counted under: the vendor, the account
/// and the status. A 404's account is the sender's text, so it is left
/// out (the set of keys stays as small as the config); a refusal of every
/// sender at once (the journal refusing commits, ingest full) is one
/// condition, not one per account: a full disk logged a line per
/// configured account every 30 s, burying the lines that said why.
fn refusal_key(
    vendor: &'static str,
    account: &str,
    answer: &Answer,
) -> (&'static str, String, u16) {
    let status = answer.status().as_u16();
    if answer.is_relay_wide() {
        // One key per kind (full, commits refused, a stop): the reason.
        ("", answer.reason().unwrap_or_default().to_owned(), status)
    } else if answer.status() == axum::http::StatusCode::NOT_FOUND {
        (vendor, String::new(), status)
    } else {
        (vendor, account.to_owned(), status)
    }
}

/// A body read in the charset its label names though its bytes are UTF-8:
/// the event is taken as labelled (the label may be right), but its text is
/// most likely garbled, which no status code would show. At most once per
/// 30 s per vendor and account, with how many were held back.
fn log_mislabelled_charset(
    ctx: &Context,
    vendor: &'static str,
    account: &str,
    charset: &vendors::text::Mislabelled,
) {
    if let Some(held_back) = admit_per_account(&ctx.mislabelled_charsets, vendor, account) {
        tracing::warn!(
            vendor,
            account,
            charset = charset.label.as_str(),
            read_as = charset.read_as,
            held_back,
            "webhook body labelled with a charset other than UTF-8 is valid UTF-8: it was read as labelled, so its text is likely garbled; the sender should label it `charset=utf-8`"
        );
    }
}

/// Lines about a vendor's account, each said at most once per interval.
type PerAccount = std::sync::Mutex<crate::log_throttle::LogThrottle<(&'static str, String)>>;

/// A [`PerAccount`] throttle saying each account's line once per `every`.
fn per_account(every: Duration) -> PerAccount {
    std::sync::Mutex::new(crate::log_throttle::LogThrottle::new(every))
}

/// Whether a line about `vendor`'s `account` is due, by `throttle`.
fn admit_per_account(throttle: &PerAccount, vendor: &'static str, account: &str) -> Option<u64> {
    throttle
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .admit((vendor, account.to_owned()), Instant::now())
}

/// Deliveries let in by an older value of a credential under rotation,
/// said at most once per 10 minutes per account: the sign that the vendor
/// has not switched yet, so the older value must stay (webhooks.md,
/// "Rotating a credential"). The position only, never the value.
fn say_older_credential(vendor: &'static str, account: &str) {
    static SAID: std::sync::LazyLock<PerAccount> =
        std::sync::LazyLock::new(|| per_account(Duration::from_secs(600)));
    if let Some(held_back) = admit_per_account(&SAID, vendor, account) {
        tracing::info!(
            vendor,
            account,
            held_back,
            "webhook accepted with an older value of its credential (not the list's first): the vendor has not switched to the new one yet; keep the older value until these lines stop"
        );
    }
}

/// A verification handshake answered: said, so that an operator whose
/// device reports the subscription failed can tell "never reached the relay"
/// from "reached it and was answered in a form the device does not take".
/// The MD5 is of the device's own challenge, not a secret.
fn say_verification(
    vendor: &'static str,
    account: &str,
    form: config::VerificationReply,
    md5_hex: &str,
) {
    static SAID: std::sync::LazyLock<PerAccount> =
        std::sync::LazyLock::new(|| per_account(Duration::from_secs(60)));
    if let Some(held_back) = admit_per_account(&SAID, vendor, account) {
        let (reply, other) = match form {
            config::VerificationReply::Plain => ("plain", "json"),
            config::VerificationReply::Json => ("json", "plain"),
        };
        tracing::info!(
            vendor,
            account,
            reply,
            md5 = md5_hex,
            held_back,
            "webhook verification handshake answered with the MD5 of its challenge ({reply}); if the device still says the subscription failed, try `verification_reply = \"{other}\"` for this account"
        );
    }
}

/// Runs one delivery through every check; returns the vendor label for the
/// metric (`unknown` for a vendor not in the path's vocabulary) and the answer.
async fn deliver(
    ctx: &Context,
    vendor: &str,
    account: &str,
    request: Request,
) -> (&'static str, Answer) {
    let Ok(vendor) = vendor.parse::<Vendor>() else {
        return ("unknown", Answer::not_found(UNKNOWN_VENDOR));
    };
    (
        vendor.as_str(),
        deliver_to(ctx, vendor, account, request).await,
    )
}

/// The answer to a path whose vendor or account cannot be read as text: no
/// configured account has such a name, so it is the route check's 404, labelled
/// with the vendor when that segment is one.
fn unreadable_path(path: &str) -> (&'static str, Answer) {
    match vendor_named_in(path) {
        Some(v) => (v.as_str(), Answer::not_found(NO_SUCH_ACCOUNT)),
        None => ("unknown", Answer::not_found(UNKNOWN_VENDOR)),
    }
}

/// The vendor a path under `/hooks` names in the segment after `hooks`
/// (empty segments skipped), if it names one.
fn vendor_named_in(path: &str) -> Option<Vendor> {
    let segment = path.split('/').filter(|s| !s.is_empty()).nth(1)?;
    let name = percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .ok()?;
    name.parse().ok()
}

/// Whether a browser sent the request. A webhook with no secret (SPRecord's
/// `token` is optional) is otherwise open to any web page its user's agents
/// visit: a cross-site POST of JSON as `text/plain` needs no preflight, and
/// the body is read as JSON whatever its label. Browsers send `Origin` or
/// `Sec-Fetch-Site` on such a request (also from a sandboxed frame, whose
/// `Origin` is `null`); vendors' servers send neither.
fn sent_by_a_browser(headers: &axum::http::HeaderMap) -> bool {
    headers.contains_key(axum::http::header::ORIGIN) || headers.contains_key("sec-fetch-site")
}

/// The answer to a body that could not be taken.
fn body_refused(e: BodyError, max_body: u64) -> Answer {
    match e {
        BodyError::TooLarge => Answer::too_large(max_body),
        BodyError::Read(reason) => Answer::bad_request(&reason),
        BodyError::Busy { limit, full } => Answer::busy(limit, full),
    }
}

/// A query [`vendors::text::form_pairs`] refused, read with replacement
/// characters for the credential check alone: its first
/// [`MAX_VALUES`](vendors::text::MAX_VALUES) pairs, and past them at most
/// two named `credential`. Kept whole, a query refused for its number of
/// parameters was built pair by pair (some 32,000 in a 64 KiB head) before
/// the credential check. Cut there alone, a token past the cut would read
/// as missing: a request with a valid one would be a 401 where the
/// contract's order (auth, then parse) makes it a 400. Two are all the
/// check looks at: the first, and whether there is another.
fn query_for_the_credential_check(
    raw_query: &str,
    credential: Option<&str>,
) -> Vec<(String, String)> {
    const CREDENTIALS_CHECKED: usize = 2;
    let mut pairs = Vec::new();
    let mut credentials = 0;
    for (at, (name, value)) in url::form_urlencoded::parse(raw_query.as_bytes()).enumerate() {
        let is_credential = credential == Some(&*name);
        if at >= vendors::text::MAX_VALUES {
            if credential.is_none() || credentials == CREDENTIALS_CHECKED {
                break;
            }
            if !is_credential {
                continue;
            }
        }
        credentials += usize::from(is_credential);
        pairs.push((name.into_owned(), value.into_owned()));
    }
    pairs
}

async fn deliver_to(ctx: &Context, vendor: Vendor, account: &str, request: Request) -> Answer {
    // One snapshot of the config for the whole request.
    let config = ctx.config.load();
    let Some(hook) = config
        .webhook
        .iter()
        .map(|w| w.get_ref())
        .find(|w| w.vendor == vendor && w.account.get_ref() == account)
    else {
        return Answer::not_found(NO_SUCH_ACCOUNT);
    };
    let method = match *request.method() {
        HttpMethod::POST => Method::Post,
        HttpMethod::GET if vendor == Vendor::Voip24h => Method::Get,
        _ => {
            let allow = if vendor == Vendor::Voip24h {
                "GET, POST"
            } else {
                "POST"
            };
            return Answer::method_not_allowed(allow);
        }
    };
    let max_body = config.server.max_body.get_ref().get();
    let memory_limit = config.server.body_memory_limit();
    let Some(credentials) = hook.credentials() else {
        return Answer::misconfigured();
    };
    let reply_form = hook.verification_reply();
    drop(config);

    let (parts, body) = request.into_parts();
    // The feedback GET's event is its query: `max_body` bounds it too.
    let raw_query = parts.uri.query().unwrap_or_default();
    if method == Method::Get && raw_query.len() as u64 > max_body {
        return Answer::query_too_large(max_body);
    }
    // Read as text, never with replacement characters: the feedback GET's
    // parameters are its event. A parameter that is not text, or more
    // parameters than a payload may hold, is a 400, but only once size and
    // credentials have answered (the contract's order); until then the
    // parameters are read with replacement characters, so a credential sent
    // that way is a wrong one, and no more of them kept than a readable
    // query holds, besides the credential's.
    let (query, query_unreadable) = match vendors::text::form_pairs(
        raw_query.as_bytes(),
        None,
        vendors::text::Pairs::QueryParameters,
    ) {
        Ok(query) => (query, None),
        Err(e) => (
            query_for_the_credential_check(raw_query, credentials.query_param()),
            Some(e),
        ),
    };
    // Credentials in a header or the query are checked before the body is
    // read, so a sender without them never holds a body in memory; the body
    // is still measured (not kept) first, since size answers before auth.
    let head = Delivery {
        method,
        headers: &parts.headers,
        query: &query,
        body: &[],
    };
    // Where a credential would be checked: a body over `max_body` is still a
    // 413 first, and none of it is kept, as for a 401.
    if matches!(credentials, vendors::Credentials::Sprecord { token: None })
        && sent_by_a_browser(&parts.headers)
    {
        return match body::discard(&parts.headers, body, max_body).await {
            Ok(()) => Answer::from_a_browser(),
            Err(e) => body_refused(e, max_body),
        };
    }
    let verified_head = match credentials.verify_head(head) {
        Some(Ok(verified)) => Some(verified),
        Some(Err(refused)) => {
            return match body::discard(&parts.headers, body, max_body).await {
                Ok(()) => Answer::unauthorized(&refused),
                Err(e) => body_refused(e, max_body),
            };
        }
        None => None,
    };
    let mut held = ctx
        .body_budget
        .reservation(format!("{}/{account}", vendor.as_str()));
    let body =
        match body::read_limited(&parts.headers, body, max_body, &mut held, memory_limit).await {
            Ok(b) => b,
            Err(e) => return body_refused(e, max_body),
        };
    let verified = match verified_head {
        Some(verified) => verified.with_body(&body),
        None => match credentials.verify(Delivery {
            body: &body,
            ..head
        }) {
            Ok(v) => v,
            Err(e) => return Answer::unauthorized(&e),
        },
    };
    if let Some(unreadable) = query_unreadable {
        return Answer::bad_request(&unreadable.0);
    }
    // Refused before it is parsed, not only when reading it fails: compressed
    // bytes labelled with a single-byte charset decode as text, and read as
    // a form they were a `vendor.unknown` answered 200, the event lost. A
    // GET's event is its query, and a body that is empty (or blank) holds
    // nothing compressed: SPRecord's handshake in the query still answers.
    if method == Method::Post
        && !vendors::is_blank(&body)
        && body::declared_compressed(&parts.headers)
    {
        return Answer::bad_request(&body::unparsed_because_encoded(
            "the body was not parsed".to_owned(),
            &parts.headers,
        ));
    }
    if verified.by_an_older_credential() {
        say_older_credential(vendor.as_str(), account);
    }
    let received_at = OffsetDateTime::now_utc();
    let (event, raw) = match vendors::parse(vendor, &verified, received_at) {
        Ok(Parsed::Event(e, raw)) => (e, raw),
        Ok(Parsed::Verification { payload }) => {
            let md5_hex = vendors::sprecord::verification_answer(&payload);
            say_verification(vendor.as_str(), account, reply_form, &md5_hex);
            return Answer::verification(&md5_hex, reply_form);
        }
        Err(e) => {
            return Answer::bad_request(&body::unparsed_because_encoded(e.0, &parts.headers));
        }
    };
    if let Some(charset) = vendors::text::labelled_other_than_its_utf8(
        &body,
        parts
            .headers
            .get(axum::http::header::CONTENT_TYPE)
            .map(|v| v.as_bytes()),
    ) {
        log_mislabelled_charset(ctx, vendor.as_str(), account, &charset);
    }
    let incoming = IncomingEvent {
        vendor,
        account: account.to_owned(),
        transport: Transport::Webhook,
        received_at,
        event,
        raw,
    };
    ctx.unread_dates.say(&incoming);
    let prepared = PreparedEvent::new(&incoming);
    // Kafka would refuse it for good: the vendor must not hear 200 for an
    // event the topic's consumers can never get.
    if let Some(limit) = ctx.kafka_message_limit() {
        let size = kafka_wire_size_bound(&prepared.header, prepared.json_len_without_seq());
        if size > limit {
            return Answer::too_large_for_kafka(size, limit);
        }
    }
    // The body's share of the budget goes with the event: given back once
    // it is journaled, also when this sender hangs up before that. The body
    // and its parsed copy are let go of while the event waits, but its JSON
    // can be 18 times the body (a control byte in a form value is `\u00XX`,
    // written up to three times: `data.raw`, two fields or `subject`): the
    // share grows to the JSON's length, or forms of control bytes waiting on
    // a slow commit held up to 18 times the budget. A JSON past a bound
    // that it would hold alone is still taken: refused, it would be refused
    // on every retry, and its body was within `max_body`. It is taken only
    // alone, though, so while its account's other bodies keep coming it
    // waits, possibly for as long as they do.
    drop(incoming);
    drop(body);
    let json_len = u64::try_from(prepared.json_len_without_seq()).unwrap_or(u64::MAX);
    if let Err(full) = held.try_grow_event_to(json_len, memory_limit) {
        // Over the bound, it waits for its account (or every account) to
        // hold nothing else, not for room: the usual words, "too many
        // bodies", beside a gauge of a few bytes, could not be diagnosed.
        if json_len > full.bound(memory_limit) {
            return Answer::waits_alone(json_len, memory_limit, full);
        }
        return Answer::busy(memory_limit, full);
    }
    let pending = match ctx.ingest.try_submit_prepared(prepared, Some(held)) {
        Ok(rx) => rx,
        Err(e) => return Answer::unavailable(&e),
    };
    ctx.metrics
        .events_received
        .with_label_values(&[vendor.as_str(), account, Transport::Webhook.as_str()])
        .inc();
    match pending.await {
        Ok(Ok(ack)) => Answer::accepted(ack),
        Ok(Err(e)) => Answer::unavailable(&e),
        Err(_) => Answer::unavailable(&crate::ingest::IngestError::ShuttingDown),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    /// A query refused for its number of parameters was read whole for the
    /// credential check before its 400 (32,000 pairs fit a 64 KiB head).
    /// What is kept is bounded, and the check still sees what it would in
    /// the whole query: a token past the cut is found (the request is
    /// authenticated, then refused as a parse failure, in the contract's
    /// order), and a repeated one is still seen as repeated.
    #[test]
    fn a_query_refused_for_its_size_is_kept_bounded_for_the_credential_check() {
        use crate::vendors::{AuthError, Credentials};
        let limit = vendors::text::MAX_VALUES;
        let credentials = Credentials::Voip24h {
            token: crate::config::Accepted::one("t"),
        };
        let headers = axum::http::HeaderMap::new();
        let check = |raw: &str| {
            let query = query_for_the_credential_check(raw, credentials.query_param());
            let verified = credentials
                .verify(Delivery {
                    method: Method::Get,
                    headers: &headers,
                    query: &query,
                    body: &[],
                })
                .map(|_| ());
            (query.len(), verified)
        };
        let many = "a=0&".repeat(3 * limit);

        let (kept, verified) = check(&format!("{many}token=t"));
        assert!(kept <= limit + 2, "{kept} pairs kept");
        assert!(verified.is_ok(), "{verified:?}");
        let (kept, verified) = check(&format!("{many}token=t&{many}token=t&token=t"));
        assert!(kept <= limit + 2, "{kept} pairs kept");
        assert!(
            matches!(verified, Err(AuthError::Repeated(_))),
            "{verified:?}"
        );
        let (kept, verified) = check(&format!("token=t&{many}token=t"));
        assert!(kept <= limit + 2, "{kept} pairs kept");
        assert!(
            matches!(verified, Err(AuthError::Repeated(_))),
            "{verified:?}"
        );
        let (kept, verified) = check(&format!("{many}token=wrong"));
        assert!(kept <= limit + 2, "{kept} pairs kept");
        assert!(matches!(verified, Err(AuthError::BadToken)), "{verified:?}");
        let (kept, verified) = check(&many);
        assert!(kept <= limit, "{kept} pairs kept");
        assert!(
            matches!(verified, Err(AuthError::MissingToken)),
            "{verified:?}"
        );
        // A credential that is not in the query keeps nothing past the cut.
        let in_a_header = Credentials::Voipex {
            username: "u".into(),
            password: crate::config::Accepted::one("p"),
        };
        let query =
            query_for_the_credential_check(&format!("{many}token=t"), in_a_header.query_param());
        assert_eq!(query.len(), limit);
        // A query refused for text that is not UTF-8 is within the limit:
        // every pair is kept, the bad bytes replaced.
        let query = query_for_the_credential_check("token=t&callid=X%FF", Some("token"));
        assert_eq!(
            query,
            vec![
                ("token".to_owned(), "t".to_owned()),
                ("callid".to_owned(), "X\u{fffd}".to_owned())
            ]
        );
    }

    #[test]
    fn a_refusal_of_every_sender_is_one_line_for_all_accounts() {
        use crate::ingest::IngestError;
        let commit = Answer::unavailable(&IngestError::Commit("disk full".into()));
        assert_eq!(
            refusal_key("tel4vn", "a", &commit),
            refusal_key("caresoft", "b", &commit)
        );
        let full = Answer::unavailable(&IngestError::Full);
        assert_eq!(
            refusal_key("tel4vn", "a", &full),
            refusal_key("tel4vn", "b", &full)
        );
        // Each kind on its own: a full queue logged first does not hold
        // back the disk refusing commits.
        assert_ne!(
            refusal_key("tel4vn", "a", &full),
            refusal_key("tel4vn", "a", &commit)
        );
        // A refusal about the sender stays the sender's own.
        for own in [
            Answer::bad_request("x"),
            Answer::busy(1024, budget::Full::All),
        ] {
            assert_ne!(
                refusal_key("tel4vn", "a", &own),
                refusal_key("tel4vn", "b", &own)
            );
        }
        // A 404's account is the sender's text: not a key of its own.
        let unknown = Answer::not_found("no such account");
        assert_eq!(
            refusal_key("tel4vn", "x1", &unknown),
            refusal_key("tel4vn", "x2", &unknown)
        );
    }

    /// Said once a minute per account, with the form answered and the
    /// other form to try.
    #[test]
    fn a_verification_handshake_is_said_with_the_form_to_try_otherwise() {
        let logged = crate::logging::tests_support::logged_json(|| {
            for _ in 0..3 {
                say_verification(
                    "sprecord",
                    "handshake-a",
                    config::VerificationReply::Plain,
                    "40af",
                );
            }
            say_verification(
                "sprecord",
                "handshake-b",
                config::VerificationReply::Json,
                "40af",
            );
        });
        let lines: Vec<&str> = logged.lines().collect();
        assert_eq!(
            lines.len(),
            2,
            "one line per account in the minute: {logged}"
        );
        assert!(lines[0].contains("\"account\":\"handshake-a\""), "{logged}");
        assert!(lines[0].contains("\"reply\":\"plain\""), "{logged}");
        assert!(lines[0].contains("\"md5\":\"40af\""), "{logged}");
        assert!(
            lines[0].contains(r#"try `verification_reply = \"json\"`"#),
            "{logged}"
        );
        assert!(
            lines[1].contains(r#"try `verification_reply = \"plain\"`"#),
            "{logged}"
        );
    }

    /// Which unmatched paths get the webhook 404 (counted and logged under
    /// a vendor) rather than the bare one.
    #[test]
    fn a_path_is_under_hooks_when_its_first_part_is_hooks() {
        for path in [
            "/hooks",
            "/hooks/tel4vn",
            "//hooks/tel4vn/demo",
            "/hooks/a/b/c",
        ] {
            assert!(is_under_hooks(path), "{path}");
        }
        for path in [
            "/",
            "",
            "/hooksx/tel4vn",
            "/ws",
            "/status/hooks",
            "/x/hooks/tel4vn",
        ] {
            assert!(!is_under_hooks(path), "{path}");
        }
    }

    #[test]
    fn a_webhook_is_counted_under_the_vendor_its_path_names() {
        for (path, label) in [
            ("/hooks/tel4vn/demo", Some("tel4vn")),
            ("//hooks/%63aresoft/cs/", Some("caresoft")),
            ("/hooks/nosuch/demo", Some("unknown")),
            ("/hooks", Some("unknown")),
            ("/status", None),
            ("/x/hooks/tel4vn", None),
        ] {
            assert_eq!(webhook_label(path), label, "{path}");
        }
    }

    /// A hook whose date is day-first (never guessed) is answered 200 and
    /// journaled with the receive time as its `time`, and the webhook path
    /// says so in one WARN naming the vendor, account, field and date.
    #[tokio::test]
    async fn an_unread_date_is_journaled_at_the_receive_time_and_said() {
        use crate::app::tests_support::{relay_in, stop};
        use crate::sources::unread_dates::tests_support::{
            assert_said_once, assert_the_one_event_is_at_its_receive_time,
        };
        let dir = tempfile::tempdir().unwrap();
        let hook = "[[webhook]]\nvendor = \"tel4vn\"\naccount = \"t4\"\napi_key = \"tel4vn-key\"\n";
        let relay = relay_in(dir.path(), hook).await;
        let body = serde_json::json!({"call_id": "c-unread", "state": "hangup",
            "direction": "outbound", "time": "26/03/2021 11:50:30"});
        let request = Request::builder()
            .method(HttpMethod::POST)
            .uri("/hooks/tel4vn/t4")
            .header("authorization", "Bearer tel4vn-key")
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body.to_string()))
            .unwrap();
        let (captured, guard) = crate::logging::tests_support::capture_json();
        let answer = deliver_to(&relay.ctx, Vendor::Tel4vn, "t4", request).await;
        drop(guard);
        assert_eq!(answer.status(), StatusCode::OK);
        assert_the_one_event_is_at_its_receive_time(&relay.ctx.journal);
        assert_said_once(
            &captured.text(),
            "tel4vn",
            "t4",
            "time",
            "26/03/2021 11:50:30",
        );
        stop(relay).await;
    }

    /// A relay with one SPRecord webhook without `token` (`sprecord/open`),
    /// its bodies within 8,192 bytes and a budget of 40,000 (20,000 per
    /// account).
    async fn open_sprecord_relay(dir: &std::path::Path) -> crate::app::Relay {
        crate::app::tests_support::relay_in_tuned(
            dir,
            "[[webhook]]\nvendor = \"sprecord\"\naccount = \"open\"\n",
            |config| {
                config.server.max_body = crate::config::unspanned(crate::config::ByteSize(8192));
                config.server.body_memory = 40_000;
            },
        )
        .await
    }

    /// Posts to the SPRecord account `open` a form of `control_bytes` raw
    /// `\x01` bytes in one field: each is `\u0001` in the event's JSON, six
    /// bytes for one.
    async fn post_control_bytes(ctx: &Context, control_bytes: usize) -> Answer {
        deliver_to(
            ctx,
            Vendor::Sprecord,
            "open",
            form_of_control_bytes(control_bytes),
        )
        .await
    }

    fn form_of_control_bytes(control_bytes: usize) -> Request {
        let mut body = b"note=".to_vec();
        body.extend(std::iter::repeat_n(1u8, control_bytes));
        Request::builder()
            .method(HttpMethod::POST)
            .uri("/hooks/sprecord/open")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(axum::body::Body::from(body))
            .unwrap()
    }

    /// An event waits for the journal as its CloudEvent JSON, the body let
    /// go of, so what it holds in the budget is the JSON's length: a form of
    /// control bytes, whose JSON is several times its body, does not fit beside
    /// what the account holds though its body does. Counted by its body, 1
    /// MiB forms waiting on a slow commit held about 6 MiB each, six times
    /// the budget (memory audit, 2026-12-07).
    #[tokio::test]
    async fn a_form_whose_json_is_several_times_its_body_holds_the_budget_by_its_json() {
        let dir = tempfile::tempdir().unwrap();
        let relay = open_sprecord_relay(dir.path()).await;
        let budget = relay.ctx.body_budget.clone();
        // Another delivery to the account holds 18,000 of its 20,000: the
        // 1,005-byte body fits beside it, its JSON of over 6,000 does not.
        let mut other = budget.reservation("sprecord/open".into());
        assert!(other.grow_to(18_000, 40_000));
        let answer = post_control_bytes(&relay.ctx, 1000).await;
        assert_eq!(
            answer.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "{:?}",
            answer.reason()
        );
        let response = answer.into_response();
        assert_eq!(response.headers()["retry-after"], "1");
        assert_eq!(budget.in_use(), 18_000, "the refused event holds nothing");
        assert_eq!(relay.ctx.journal.last_seq(), 0);

        drop(other);
        let answer = post_control_bytes(&relay.ctx, 1000).await;
        assert_eq!(answer.status(), StatusCode::OK, "{:?}", answer.reason());
        assert_eq!(budget.in_use(), 0, "given back once journaled");
        let journaled = relay.ctx.journal.read_after(0, 1).unwrap();
        assert!(
            journaled[0].json.len() > 6_000,
            "the JSON is several times the body: {} bytes",
            journaled[0].json.len()
        );
        crate::app::tests_support::stop(relay).await;
    }

    /// An event whose JSON is over its account's half is taken when its
    /// account holds nothing else: refused, a retry would be refused too,
    /// and a 413 for a body within `max_body` broke the contract (review of
    /// b8f733b). One beside another that its account holds waits, 503.
    #[tokio::test]
    async fn an_event_whose_json_is_over_its_accounts_half_is_taken_alone_and_waits_beside_another()
    {
        let dir = tempfile::tempdir().unwrap();
        let relay = open_sprecord_relay(dir.path()).await;
        let budget = relay.ctx.body_budget.clone();
        // 4,005 bytes, within max_body; over 24,000 as JSON, past the 20,000.
        let answer = post_control_bytes(&relay.ctx, 4000).await;
        assert_eq!(answer.status(), StatusCode::OK, "{:?}", answer.reason());
        assert_eq!(budget.in_use(), 0, "given back once journaled");
        let journaled = relay.ctx.journal.read_after(0, 1).unwrap();
        assert!(
            journaled[0].json.len() > 20_000,
            "{}",
            journaled[0].json.len()
        );

        // Such an event waiting for the journal, as the first one did.
        let mut waiting = budget.reservation("sprecord/open".into());
        assert!(waiting.grow_to(1, 40_000));
        let answer = post_control_bytes(&relay.ctx, 4000).await;
        assert_eq!(
            answer.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "{:?}",
            answer.reason()
        );
        // Its reason is its own: "too many request bodies ... (over 20000
        // bytes)" beside a gauge of one byte could not be diagnosed, and
        // such an event waits for as long as its account is never idle.
        let reason = answer.reason().unwrap_or_default().to_owned();
        assert!(
            !reason.contains("too many request bodies"),
            "the body budget's words: {reason}"
        );
        let named: usize = reason
            .split("JSON is ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        // The first one's JSON, journaled, also carries its `seq`.
        let first = journaled[0].json.len();
        assert!(
            named > 20_000 && named <= first && first - named < 32,
            "names its JSON's size ({first} journaled): {reason}"
        );
        assert!(
            reason.contains("(20000 bytes)")
                && reason.contains("no other request bodies or events of this account"),
            "names the half and what it waits for: {reason}"
        );
        assert_eq!(answer.into_response().headers()["retry-after"], "1");
        assert_eq!(budget.in_use(), 1, "the refused event holds nothing");
        assert_eq!(relay.ctx.journal.last_seq(), 1);
        crate::app::tests_support::stop(relay).await;
    }

    /// With `max_body` half the budget (at 32 MiB and over), an account's
    /// half is `max_body`, and a JSON body at it is more as an event (its
    /// envelope and normalized fields beside `data.raw`): that was a 413
    /// for a body within `max_body` (review of b8f733b).
    #[tokio::test]
    async fn a_json_body_at_max_body_is_taken_when_max_body_is_half_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        let relay = crate::app::tests_support::relay_in_tuned(
            dir.path(),
            "[[webhook]]\nvendor = \"sprecord\"\naccount = \"open\"\n",
            |config| {
                config.server.max_body = crate::config::unspanned(crate::config::ByteSize(8192));
                config.server.body_memory = 0;
            },
        )
        .await;
        let limit = relay.ctx.config.load().server.body_memory_limit();
        assert_eq!(limit, 2 * 8192);
        let head = r#"{"event_type":"incoming_call","device_id":"d","payload":{"call_id":"c-1","call_dst":"101","note":""#;
        let tail = r#""}}"#;
        let body = format!("{head}{}{tail}", "x".repeat(8192 - head.len() - tail.len()));
        assert_eq!(body.len(), 8192);
        let request = Request::builder()
            .method(HttpMethod::POST)
            .uri("/hooks/sprecord/open")
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body))
            .unwrap();
        let answer = deliver_to(&relay.ctx, Vendor::Sprecord, "open", request).await;
        assert_eq!(answer.status(), StatusCode::OK, "{:?}", answer.reason());
        let journaled = relay.ctx.journal.read_after(0, 1).unwrap();
        assert!(
            journaled[0].json.len() > 8192,
            "{}",
            journaled[0].json.len()
        );
        assert_eq!(relay.ctx.body_budget.in_use(), 0);
        crate::app::tests_support::stop(relay).await;
    }

    #[tokio::test]
    async fn an_unreadable_path_is_the_route_checks_404_labelled_by_vendor() {
        for (path, label, reason) in [
            ("/hooks/caresoft/%FF", "caresoft", "no such webhook account"),
            (
                "/hooks/%63aresoft/%C3%28",
                "caresoft",
                "no such webhook account",
            ),
            ("/hooks/%FF/cs", "unknown", "unknown vendor"),
            ("/hooks/asterisk/%FF", "unknown", "unknown vendor"),
            ("/hooks/caresoft%/%FF", "unknown", "unknown vendor"),
        ] {
            let (l, answer) = unreadable_path(path);
            assert_eq!(l, label, "{path}");
            assert_eq!(answer.status(), StatusCode::NOT_FOUND, "{path}");
            let body = axum::body::to_bytes(answer.into_response().into_body(), 1024)
                .await
                .unwrap();
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["error"], reason, "{path}");
        }
    }
}
