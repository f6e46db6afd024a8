//! What a CRM's answer means: every status, header, body or transport
//! failure classified into a [`CrmError`], pure functions of what came back.
//! The client that sends requests is `http.rs`; the token renewal that
//! reads token endpoints' answers is `oauth.rs`; both read answers here.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;

use super::{Applied, CrmError};

/// What a vendor's 403 says beyond "not this record".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The account's API limit is spent (Salesforce answers 403
    /// `REQUEST_LIMIT_EXCEEDED` where others answer 429).
    RateLimited,
    /// The credential itself is refused: a missing scope, or API access
    /// off for the whole account. Every call would get the same answer, so
    /// the worker pauses instead of parking them one by one.
    Credential,
    /// The set-up is incomplete: a scope the accepted credential lacks
    /// (GoHighLevel's 401 "not authorized for this scope"), a custom field
    /// that does not exist (Salesforce's 400 `INVALID_FIELD`). Read from
    /// any 4xx but a 429; every call would get it, so the worker pauses.
    Setup,
}

/// Reads a vendor's whole 4xx body (never an excerpt, which could cut its
/// code off) for a [`Refusal`]; `None` is a refusal of this request alone
/// (for a 403: of one record).
pub type ReadRefusal = fn(&str) -> Option<Refusal>;

/// For a CRM whose 403s all concern one record.
pub fn no_refusal(_body: &str) -> Option<Refusal> {
    None
}

/// What kind of mismatch a decoding error is, and where, without the
/// error's own text: serde quotes the offending value ("invalid type:
/// string \"+3161…\""), which may be a caller's phone number.
pub(super) fn unexpected(error: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let kind = match error.classify() {
        Category::Io => "unreadable",
        Category::Syntax => "not JSON",
        Category::Data => "a value of another type, or a missing key",
        Category::Eof => "cut short",
    };
    format!("{kind} at line {} column {}", error.line(), error.column())
}

/// The shape of a JSON body: its keys and the types of its values, never a
/// value. Arrays show each distinct element shape once. Cut to a few hundred
/// characters; a body that is not JSON is described by its length.
pub(crate) fn shape_of(body: &[u8]) -> String {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(value) => excerpt(shape(&value)),
        Err(_) => format!("not JSON ({} bytes)", body.len()),
    }
}

fn shape(value: &serde_json::Value) -> String {
    use serde_json::Value;
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(_) => "bool".to_owned(),
        Value::Number(_) => "number".to_owned(),
        Value::String(_) => "string".to_owned(),
        Value::Array(items) => {
            let mut shapes: Vec<String> = Vec::new();
            for item in items {
                let item = shape(item);
                if !shapes.contains(&item) {
                    shapes.push(item);
                }
            }
            format!("[{}]", shapes.join(" | "))
        }
        Value::Object(map) => {
            let fields: Vec<String> = map
                .iter()
                .map(|(key, value)| format!("{key:?}: {}", shape(value)))
                .collect();
            format!("{{{}}}", fields.join(", "))
        }
    }
}

/// What an answer that is neither 2xx nor accepted means, from its status,
/// its headers and its whole body; `now` dates a `Retry-After` given as an
/// HTTP date.
pub(crate) fn classify(
    status: StatusCode,
    headers: &HeaderMap,
    body: &str,
    read_refusal: ReadRefusal,
    now: OffsetDateTime,
) -> CrmError {
    let refusal = match status.as_u16() {
        429 => None,
        400..=499 => read_refusal(body),
        _ => None,
    };
    let detail = || excerpt(body.to_owned());
    match (status.as_u16(), refusal) {
        (429, _) => CrmError::RateLimited {
            retry_after: retry_after(headers, now),
        },
        (403, Some(Refusal::RateLimited)) => CrmError::RateLimited { retry_after: None },
        (_, Some(Refusal::Setup)) => CrmError::Setup {
            detail: format!("{status}: {}", detail()),
        },
        (401, _) | (403, Some(Refusal::Credential)) => CrmError::Unauthorized {
            status: status.as_u16(),
            detail: detail(),
        },
        (403, None) => CrmError::Forbidden { detail: detail() },
        // A 5xx may come after the CRM applied the request (a crash while
        // answering), so its outcome is unknown; so may a 408.
        (408 | 500..=599, _) => CrmError::Unavailable {
            detail: format!("{status}: {}", detail()),
            applied: Applied::Unknown,
        },
        (code, _) => CrmError::Rejected {
            status: code,
            detail: detail(),
        },
    }
}

/// The delay a 429 asks for: `Retry-After`, else the seconds until the
/// window resets, which Pipedrive sends instead.
fn retry_after(headers: &HeaderMap, now: OffsetDateTime) -> Option<Duration> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    header("retry-after")
        .or_else(|| header("x-ratelimit-reset"))
        .and_then(|v| parse_retry_after(v, now))
}

pub(super) fn classify_transport(error: reqwest::Error) -> CrmError {
    // A connect error means nothing was sent; anything later (timeout, reset,
    // truncated body) may have reached the CRM and been applied.
    let applied = if error.is_connect() {
        Applied::No
    } else {
        Applied::Unknown
    };
    CrmError::Unavailable {
        detail: without_url(&error),
        applied,
    }
}

/// reqwest's error text includes the URL, which may carry a token as a
/// query parameter (Pipedrive's `api_token`): keep only the error chain.
fn without_url(error: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut text = if error.is_timeout() {
        "request timed out".to_owned()
    } else if error.is_connect() {
        "connection failed".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The start of an error body, for a log line or an error message.
pub(crate) fn excerpt(mut text: String) -> String {
    const MAX: usize = 300;
    if text.len() > MAX {
        let mut cut = MAX;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// `Retry-After` is either delay-seconds or an HTTP date (RFC 9110 §10.2.3).
pub fn parse_retry_after(value: &str, now: OffsetDateTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = OffsetDateTime::parse(value, &Rfc2822).ok()?;
    Some(Duration::try_from(at - now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crm::{self, CrmSpec};
    use time::macros::datetime;

    /// Whether `spec`'s CRM reads a 403 with `body` as refusing the credential.
    fn refuses_the_credential(spec: &CrmSpec, body: &str) -> bool {
        (spec.read_refusal)(body) == Some(Refusal::Credential)
    }

    #[test]
    fn retry_after_accepts_seconds() {
        let now = datetime!(2026-01-01 00:00:00 UTC);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
    }

    #[test]
    fn retry_after_accepts_an_http_date() {
        let now = datetime!(2015-10-21 07:27:50 UTC);
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(10))
        );
        // A date in the past means "now".
        let later = datetime!(2015-10-21 08:00:00 UTC);
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", later),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn a_403_naming_a_missing_scope_refuses_the_credential_and_others_one_record() {
        let hubspot = r#"{"status":"error","message":"This app hasn't been granted all required scopes to make this call.","category":"MISSING_SCOPES","errors":[{"message":"One or more of the following scopes are required.","context":{"requiredGranularScopes":["crm.objects.contacts.write"]}}]}"#;
        assert!(refuses_the_credential(&crm::hubspot::SPEC, hubspot));
        assert!(refuses_the_credential(
            &crm::salesforce::SPEC,
            r#"[{"errorCode":"API_DISABLED_FOR_ORG","message":"API is not enabled for this Organization or Partner"}]"#
        ));
        assert!(!refuses_the_credential(
            &crm::salesforce::SPEC,
            r#"[{"errorCode":"INSUFFICIENT_ACCESS_OR_READONLY","message":"insufficient access rights on object id"}]"#
        ));
        assert!(!refuses_the_credential(
            &crm::pipedrive::SPEC,
            r#"{"success":false,"error":"You do not have permission to access this item"}"#
        ));
    }

    #[test]
    fn a_salesforce_limit_is_read_from_the_whole_body_past_any_excerpt() {
        let long = "x".repeat(400);
        let body = format!(
            r#"[{{"errorCode":"INVALID_FIELD","message":"{long}"}},{{"errorCode":"REQUEST_LIMIT_EXCEEDED","message":"TotalRequests Limit exceeded."}}]"#
        );
        let now = OffsetDateTime::UNIX_EPOCH;
        let error = classify(
            StatusCode::FORBIDDEN,
            &HeaderMap::new(),
            &body,
            crm::salesforce::SPEC.read_refusal,
            now,
        );
        assert!(
            matches!(error, CrmError::RateLimited { retry_after: None }),
            "{error:?}"
        );
        // The same 403 from a CRM without the code concerns one record.
        let error = classify(
            StatusCode::FORBIDDEN,
            &HeaderMap::new(),
            &body,
            no_refusal,
            now,
        );
        assert!(matches!(error, CrmError::Forbidden { .. }), "{error:?}");
    }

    #[test]
    fn a_429_is_a_rate_limit_for_the_delay_its_headers_ask() {
        let now = datetime!(2015-10-21 07:27:50 UTC);
        let classify_429 = |name: &'static str, value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(name, reqwest::header::HeaderValue::from_static(value));
            classify(StatusCode::TOO_MANY_REQUESTS, &headers, "", no_refusal, now)
        };
        for (name, value, delay) in [
            ("retry-after", "7", 7),
            ("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT", 10),
            ("x-ratelimit-reset", "3", 3),
        ] {
            match classify_429(name, value) {
                CrmError::RateLimited { retry_after } => {
                    assert_eq!(
                        retry_after,
                        Some(Duration::from_secs(delay)),
                        "{name}: {value}"
                    );
                }
                other => panic!("{name}: expected a rate limit, got {other:?}"),
            }
        }
        let bare = classify(
            StatusCode::TOO_MANY_REQUESTS,
            &HeaderMap::new(),
            "",
            no_refusal,
            now,
        );
        assert!(
            matches!(bare, CrmError::RateLimited { retry_after: None }),
            "{bare:?}"
        );
    }

    #[test]
    fn other_statuses_are_classified_by_status_alone() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let of = |status: u16, body: &str| {
            let status = StatusCode::from_u16(status).unwrap();
            classify(
                status,
                &HeaderMap::new(),
                body,
                crm::hubspot::SPEC.read_refusal,
                now,
            )
        };
        assert!(matches!(
            of(401, "expired"),
            CrmError::Unauthorized { status: 401, .. }
        ));
        assert!(matches!(
            of(403, r#"{"category":"MISSING_SCOPES"}"#),
            CrmError::Unauthorized { status: 403, .. }
        ));
        assert!(matches!(of(403, "not yours"), CrmError::Forbidden { .. }));
        for status in [408, 500, 503] {
            assert!(
                matches!(
                    of(status, ""),
                    CrmError::Unavailable {
                        applied: Applied::Unknown,
                        ..
                    }
                ),
                "{status}"
            );
        }
        assert!(matches!(
            of(422, "bad field"),
            CrmError::Rejected { status: 422, .. }
        ));
    }

    #[test]
    fn a_body_s_shape_names_its_keys_and_types_and_never_a_value() {
        let body = br#"{"contacts":[{"id":"abc","phone":"+31612345678","additionalPhones":["0612345678",{"phone":"+3120"}],"dnd":false,"score":3,"x":null}]}"#;
        let shape = shape_of(body);
        assert_eq!(
            shape,
            r#"{"contacts": [{"additionalPhones": [string | {"phone": string}], "dnd": bool, "id": string, "phone": string, "score": number, "x": null}]}"#
        );
        assert_eq!(
            shape_of(b"<html>jan@example.com</html>"),
            "not JSON (28 bytes)"
        );
    }

    #[test]
    fn a_refusal_that_says_the_set_up_is_incomplete_is_read_from_any_4xx() {
        fn setup(body: &str) -> Option<Refusal> {
            body.contains("INVALID_FIELD").then_some(Refusal::Setup)
        }
        let now = OffsetDateTime::UNIX_EPOCH;
        for status in [400, 401, 403] {
            let status = StatusCode::from_u16(status).unwrap();
            let error = classify(status, &HeaderMap::new(), "INVALID_FIELD", setup, now);
            assert!(
                matches!(error, CrmError::Setup { .. }),
                "{status}: {error:?}"
            );
        }
        let other = classify(StatusCode::BAD_REQUEST, &HeaderMap::new(), "x", setup, now);
        assert!(matches!(other, CrmError::Rejected { .. }), "{other:?}");
    }

    #[test]
    fn long_error_bodies_are_cut_on_a_character_boundary() {
        // Byte 300 falls inside an "é" (one ASCII byte, then two-byte
        // characters), so the cut must step back to byte 299.
        let text = format!("a{}", "é".repeat(200));
        assert_eq!(excerpt(text), format!("a{}…", "é".repeat(149)));
    }

    #[test]
    fn an_error_body_of_exactly_the_limit_is_kept_whole() {
        let text = "x".repeat(300);
        assert_eq!(excerpt(text.clone()), text);
        assert_eq!(excerpt("x".repeat(301)), format!("{text}…"));
    }
}
