//! How `callrelay tail` reads a refusal's HTTP answer: which 404s are the
//! relay's own (a wrong `--url`, which no retry fixes) rather than a
//! proxy's (perhaps a relay restarting behind it), where the relay says
//! its fan-out is, and what of a refusal's reason is repeated on stderr.
//!
//! Guarantees: a 404 is taken for the relay's own only when its body reads
//! as one the relay sends: JSON naming a `websocket_path`, or an `error`
//! that is [`NO_SUCH_ROUTE`](crate::server::NO_SUCH_ROUTE) (alone or
//! followed by `": "` and anything) or one of the webhook handler's 404
//! texts, by the constants the relay builds them from; what is repeated of any answer (the server may not be a
//! relay) is at most [`MAX_RELAY_ERROR_CHARS`] characters of one line,
//! read from at most [`MAX_RELAY_BODY_READ`] bytes, without control
//! characters or marks that reorder text on screen, and a fan-out path is
//! taken only up to [`MAX_SERVED_AT_CHARS`] characters.

use tokio_tungstenite::tungstenite::http;

/// The longest fan-out path read from a 404's body: a relay's is short, and
/// what answered may be something else.
const MAX_SERVED_AT_CHARS: usize = 256;

/// A relay's own 404, by what it says of where the relay's fan-out is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Own404 {
    /// Its answer to a WebSocket upgrade on another path, which names the
    /// fan-out's path.
    FanOutAt(String),
    /// Its answer to a plain request on a path it has no route for (a proxy
    /// that drops the `Upgrade` header, a relay older than 2026-12-03).
    Unsaid,
    /// An answer under `/hooks/`: `--url` points at a webhook's path.
    WebhookPath,
}

/// Whether a 404 is a relay's own, and what it says. Its texts are the
/// relay's constants, so a reworded answer cannot leave tail retrying it.
pub(super) fn relays_own_404(body: Option<&[u8]>) -> Option<Own404> {
    use crate::server::NO_SUCH_ROUTE;
    use crate::sources::webhook::{NO_SUCH_ACCOUNT, UNKNOWN_VENDOR, no_such_hook_said};
    let json: serde_json::Value = serde_json::from_slice(body?).ok()?;
    if let Some(path) = fan_out_path(&json) {
        return Some(Own404::FanOutAt(path));
    }
    let error = json.get("error")?.as_str()?;
    // Also its answers under `/hooks/`: its "no such route: a webhook's
    // path is …" to a path no webhook route matches, and the webhook
    // handler's "unknown vendor" and "no such webhook account" to
    // `/hooks/{vendor}/{account}` with a vendor or account it does not
    // have. A configured vendor and account answer a WebSocket upgrade
    // otherwise (405, or Voip24h's 401), and are not read here.
    if error == UNKNOWN_VENDOR || error == NO_SUCH_ACCOUNT || error == no_such_hook_said() {
        return Some(Own404::WebhookPath);
    }
    let rest = error.strip_prefix(NO_SUCH_ROUTE)?;
    (rest.is_empty() || rest.starts_with(": ")).then_some(Own404::Unsaid)
}

/// The fan-out's path as a relay's 404 names it (`websocket_path`), if the
/// body is one.
fn fan_out_path(body: &serde_json::Value) -> Option<String> {
    let path = body.get("websocket_path")?.as_str()?;
    (path.chars().count() <= MAX_SERVED_AT_CHARS).then(|| path.to_owned())
}

/// Why a refusal was made: the relay's `{"error": "…"}`, else the body's
/// text (a proxy's page, a relay older than 2026-12-06), cut short and without
/// control characters or the marks that reorder text on screen
/// ([`acts_on_a_terminal`](crate::logging::one_line::acts_on_a_terminal)):
/// the server may not be a relay, and this goes to stderr as it is.
pub(super) fn relay_error(body: Option<&[u8]>) -> Option<String> {
    // What is shown is 200 characters: a proxy's page is not read whole.
    let body = body?;
    let body = body.get(..MAX_RELAY_BODY_READ).unwrap_or(body);
    let json = serde_json::from_slice::<serde_json::Value>(body).ok();
    let text = match json.as_ref().and_then(|v| v.get("error")?.as_str()) {
        Some(error) => error.to_owned(),
        None => String::from_utf8_lossy(body).into_owned(),
    };
    let shown: String = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .filter(|&c| !c.is_control() && !crate::logging::one_line::acts_on_a_terminal(c))
        .take(MAX_RELAY_ERROR_CHARS)
        .collect();
    (!shown.is_empty()).then_some(shown)
}

/// The most of a refusal's reason tail repeats: the relay's longest (a
/// proxied request's 403, about 210 characters, ending with what to set)
/// whole, with room for a scope's list of accounts.
const MAX_RELAY_ERROR_CHARS: usize = 320;
/// The most of a refusal's body read for it.
const MAX_RELAY_BODY_READ: usize = 4096;

pub(super) fn served_at_hint(served_at: &Own404) -> String {
    match served_at {
        Own404::FanOutAt(path) => format!("the relay serves WebSocket clients at {path:?}"),
        Own404::Unsaid => "the relay serves websocket.path, /ws by default; a relay answers so too when a proxy before it drops the Upgrade header".to_owned(),
        Own404::WebhookPath => "it points at a webhook's path, /hooks/{vendor}/{account}, where vendors deliver; the relay serves WebSocket clients at websocket.path, /ws by default".to_owned(),
    }
}

/// A 404 that is not the relay's own, for the retry's warning: which of
/// its two likely causes holds, tail cannot tell.
pub(super) fn not_found_said(body: Option<&[u8]>) -> String {
    let status = http::StatusCode::NOT_FOUND;
    let answer = match relay_error(body) {
        Some(reason) => format!("HTTP {status}: {reason}"),
        None => format!("HTTP {status}"),
    };
    format!(
        "{answer}; not the relay's own 404: a wrong path in --url, or a proxy whose relay is down or restarting"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::websocket::tail::TailError;

    /// [`fan_out_path`] of a body as it comes.
    fn served_at(body: Option<&[u8]>) -> Option<String> {
        fan_out_path(&serde_json::from_slice(body?).ok()?)
    }

    #[test]
    fn a_refusals_reason_is_quoted_short_and_without_control_characters() {
        let body =
            serde_json::json!({"error": format!("bad\x1b[8m{}", "x".repeat(500))}).to_string();
        let reason = relay_error(Some(body.as_bytes())).unwrap();
        assert!(reason.starts_with("bad[8m"), "{reason}");
        assert_eq!(reason.chars().count(), MAX_RELAY_ERROR_CHARS);
        // A plain-text refusal (axum's, a proxy's) is quoted as it is.
        assert_eq!(
            relay_error(Some(b"Connection header did not include 'upgrade'\n")).as_deref(),
            Some("Connection header did not include 'upgrade'")
        );
        assert_eq!(relay_error(Some(b" \n")), None);
        assert_eq!(relay_error(None), None);
    }

    /// Whatever answers at `--url` cannot reverse the rest of tail's line on
    /// stderr: the bidi marks and overrides of its reason are dropped as its
    /// controls are (area review of 2026-12-06, tenth round).
    #[test]
    fn a_refusals_reason_loses_the_marks_that_reorder_text() {
        let body = serde_json::json!({"error": "\u{202e}denied\u{2067}\u{200f}\u{61c} here"});
        assert_eq!(
            relay_error(Some(body.to_string().as_bytes())).as_deref(),
            Some("denied here")
        );
    }

    /// Only a relay's own 404 is read for its path; anything else (a proxy's
    /// page, a long or odd value) falls back to the default hint.
    #[test]
    fn a_relays_404_names_where_its_fan_out_is() {
        let relay = br#"{"error":"no such route: ...","websocket_path":"/live/events"}"#;
        assert_eq!(served_at(Some(relay)).as_deref(), Some("/live/events"));
        let long = format!(
            r#"{{"websocket_path":"/{}"}}"#,
            "x".repeat(MAX_SERVED_AT_CHARS)
        );
        for other in [
            &b"<html>404</html>"[..],
            br#"{"error":"no such route"}"#,
            br#"{"websocket_path":7}"#,
            long.as_bytes(),
        ] {
            assert_eq!(served_at(Some(other)), None);
        }
        assert_eq!(served_at(None), None);
        // The relay's own 404s, with and without the path; a proxy's is not.
        assert_eq!(
            relays_own_404(Some(relay)),
            Some(Own404::FanOutAt("/live/events".to_owned()))
        );
        assert_eq!(
            relays_own_404(Some(br#"{"error":"no such route"}"#)),
            Some(Own404::Unsaid)
        );
        let other = br#"{"error":"no such route: somewhere else"}"#;
        assert_eq!(relays_own_404(Some(other)), Some(Own404::Unsaid));
        for proxy in [
            &b"<html>404</html>"[..],
            br#"{"error":"no such route here"}"#,
            b"404 page not found\n",
        ] {
            assert_eq!(relays_own_404(Some(proxy)), None);
        }
        assert_eq!(relays_own_404(None), None);
        let message = TailError::NotFound {
            path: "/wrong".into(),
            served_at: Own404::FanOutAt("/live/\n".into()),
        }
        .to_string();
        assert!(
            message.ends_with(r#"check --url (the relay serves WebSocket clients at "/live/\n")"#),
            "{message}"
        );
    }

    /// The body of a 404 the relay answers, as a client reads it.
    async fn body_of(response: axum::response::Response) -> Vec<u8> {
        axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap()
            .to_vec()
    }

    /// The bodies the relay really sends, built by the code that sends them,
    /// are each taken as its own 404: its texts and tail's reading of them
    /// share their constants, so neither can change alone. A `--url` at a
    /// webhook's path (`unknown vendor`, `no such webhook account`) was
    /// retried forever as a proxy's 404 (tail's structural review,
    /// 2026-12-07).
    #[tokio::test]
    async fn the_404s_the_relay_sends_are_its_own() {
        use crate::sources::webhook::response::Answer;
        use crate::sources::webhook::{NO_SUCH_ACCOUNT, UNKNOWN_VENDOR, no_such_hook_said};
        let plain =
            crate::server::json_error(http::StatusCode::NOT_FOUND, crate::server::NO_SUCH_ROUTE);
        assert_eq!(
            relays_own_404(Some(&body_of(plain).await)),
            Some(Own404::Unsaid)
        );
        let wrong_path = crate::sinks::websocket::wrong_path_body("/live");
        assert_eq!(
            relays_own_404(Some(wrong_path.to_string().as_bytes())),
            Some(Own404::FanOutAt("/live".to_owned()))
        );
        for webhook in [
            no_such_hook_said().as_str(),
            UNKNOWN_VENDOR,
            NO_SUCH_ACCOUNT,
        ] {
            let body = body_of(Answer::not_found(webhook).into_response()).await;
            assert_eq!(
                relays_own_404(Some(&body)),
                Some(Own404::WebhookPath),
                "{webhook}"
            );
        }
        let message = TailError::NotFound {
            path: "/hooks/caresoft/cs".into(),
            served_at: Own404::WebhookPath,
        }
        .to_string();
        assert!(
            message.contains("it points at a webhook's path") && message.contains("/ws by default"),
            "{message}"
        );
    }

    /// What a retried 404 is said as names both of its likely causes.
    #[test]
    fn a_retried_404_names_a_wrong_path_and_a_relay_down_behind_a_proxy() {
        let said = not_found_said(Some(b"404 page not found"));
        assert!(
            said.starts_with("HTTP 404 Not Found: 404 page not found; ")
                && said.contains("a wrong path in --url")
                && said.contains("a proxy whose relay is down"),
            "{said}"
        );
    }
}
