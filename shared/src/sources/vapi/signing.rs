//! Vapi's HMAC credential, with the options Vapi documents for it.
//!
//! Vapi's openapi (`HMACAuthenticationPlan`, VapiAI/docs @ eabfa530
//! `fern/apis/api/openapi.json`) lets the credential choose: `algorithm`
//! (`sha256`, `sha512`, `sha1`), `signatureHeader` ("Defaults to
//! 'x-signature'"), `timestampHeader` ("Defaults to 'x-timestamp'"),
//! `signaturePrefix` ("For example, 'sha256=' for GitHub-style
//! signatures"), `includeTimestamp` ("Whether to include a timestamp in the
//! signature payload. Defaults to true."), `payloadFormat` ("Use {body} for
//! request body, {timestamp} for timestamp, {method} for HTTP method, {url}
//! for URL, {svix-id} for unique message ID. Defaults to
//! '{timestamp}.{body}'"), `messageIdHeader`, `signatureEncoding` (`hex`,
//! `base64`, "Defaults to 'hex'") and `secretIsBase64` ("Defaults to
//! false"). Each is a `CALLSYNC_VAPI_*` variable here, read once at
//! start-up; a value Vapi does not document stops ingest naming the
//! variable, so that a credential callsync cannot check is never met with
//! a 401 for every call.
//!
//! What Vapi does not settle is read every way it may be meant: the
//! timestamp's unit (seconds or milliseconds, told apart by size, or an
//! RFC 3339 time), and, without a configured prefix, an optional
//! `<algorithm>=` before the digest.

use std::fmt;

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use subtle::ConstantTimeEq;

use crate::config::{ConfigError, Env, Secret};
use crate::signature::{AuthError, Request, TokenPlaces, Verifier, within_tolerance};
use crate::sources::Source;

/// `HMACAuthenticationPlan.algorithm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha256,
    Sha512,
    Sha1,
}

impl Algorithm {
    fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
            Algorithm::Sha1 => "sha1",
        }
    }

    /// The HMAC of the concatenated `parts` under `key`.
    fn mac(self, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        // HMAC accepts keys of any length: `new_from_slice` cannot fail.
        macro_rules! run {
            ($digest:ty) => {{
                let mut mac = match <Hmac<$digest> as KeyInit>::new_from_slice(key) {
                    Ok(mac) => mac,
                    Err(_) => unreachable!("HMAC accepts keys of any length"),
                };
                for part in parts {
                    mac.update(part);
                }
                mac.finalize().into_bytes().to_vec()
            }};
        }
        match self {
            Algorithm::Sha256 => run!(sha2::Sha256),
            Algorithm::Sha512 => run!(sha2::Sha512),
            Algorithm::Sha1 => run!(sha1::Sha1),
        }
    }
}

/// `HMACAuthenticationPlan.signatureEncoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Hex,
    Base64,
}

/// One piece of `payloadFormat`: literal text or a placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Text(String),
    Body,
    Timestamp,
    /// `{method}`: server messages are always POSTed.
    Method,
    /// `{url}`: the Server URL as configured in Vapi.
    Url,
    /// `{svix-id}`: the value of `messageIdHeader`.
    MessageId,
}

/// How the credential signs: Vapi's defaults unless configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub algorithm: Algorithm,
    pub encoding: Encoding,
    pub signature_header: &'static str,
    /// `None` when the credential sends no timestamp (`includeTimestamp: false`).
    pub timestamp_header: Option<&'static str>,
    /// `signaturePrefix`; `None`: none, or `<algorithm>=`, either accepted.
    pub prefix: Option<String>,
    pub payload: Vec<Part>,
    pub message_id_header: Option<&'static str>,
    pub url: Option<String>,
    /// The signature's form, for the error message.
    expected: &'static str,
}

/// The variables' last parts, `CALLSYNC_VAPI_<suffix>`.
pub const ALGORITHM: &str = "HMAC_ALGORITHM";
pub const SIGNATURE_HEADER: &str = "SIGNATURE_HEADER";
pub const TIMESTAMP_HEADER: &str = "TIMESTAMP_HEADER";
pub const INCLUDE_TIMESTAMP: &str = "INCLUDE_TIMESTAMP";
pub const SIGNATURE_PREFIX: &str = "SIGNATURE_PREFIX";
pub const PAYLOAD_FORMAT: &str = "PAYLOAD_FORMAT";
pub const MESSAGE_ID_HEADER: &str = "MESSAGE_ID_HEADER";
pub const SIGNATURE_ENCODING: &str = "SIGNATURE_ENCODING";
pub const SECRET_IS_BASE64: &str = "SECRET_IS_BASE64";
pub const SERVER_URL: &str = "SERVER_URL";
/// The header of Vapi's bearer credential (`BearerAuthenticationPlan.headerName`).
pub const TOKEN_HEADER: &str = "TOKEN_HEADER";

/// Every option variable's last part.
pub const OPTION_SUFFIXES: [&str; 11] = [
    ALGORITHM,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    INCLUDE_TIMESTAMP,
    SIGNATURE_PREFIX,
    PAYLOAD_FORMAT,
    MESSAGE_ID_HEADER,
    SIGNATURE_ENCODING,
    SECRET_IS_BASE64,
    SERVER_URL,
    TOKEN_HEADER,
];

/// Where Vapi's bearer credential puts its token. Vapi's
/// `BearerAuthenticationPlan` has `headerName` ("Defaults to
/// 'Authorization'") and `bearerPrefixEnabled` ("Defaults to true"); the
/// legacy credential sends `X-Vapi-Secret` without a prefix
/// (`fern/server-url/server-authentication.mdx`). By default both are
/// read; `CALLSYNC_VAPI_TOKEN_HEADER` names the header a credential with
/// another `headerName` (or `Authorization` without the prefix) uses, read
/// with or without `Bearer `.
pub fn token_places(env: &Env, source: Source) -> Result<TokenPlaces, ConfigError> {
    let var = source.var(TOKEN_HEADER);
    match env.raw(&var) {
        None => Ok(super::TOKEN),
        Some(name) if is_header_name(name) => Ok(TokenPlaces {
            header: Some(leak(name.to_ascii_lowercase())),
            query: false,
            described: leak(format!(
                "{name}: <token>, {name}: Bearer <token> or Authorization: Bearer <token>"
            )),
        }),
        Some(name) => Err(ConfigError {
            var,
            message: format!("{name:?} is not an HTTP header name"),
        }),
    }
}

impl Options {
    /// Vapi's defaults: sha256, hex, `x-signature` over
    /// `"{x-timestamp}.{body}"`.
    pub fn vapi_default() -> Self {
        Self::from_env(&Env::default(), Source::Vapi)
            .unwrap_or_else(|e| unreachable!("the defaults are valid: {e}"))
    }

    /// Reads `CALLSYNC_<SOURCE>_*`; refuses, naming the variable, what Vapi
    /// does not document or what callsync could not check.
    pub fn from_env(env: &Env, source: Source) -> Result<Self, ConfigError> {
        let var = |suffix: &str| source.var(suffix);
        let refuse = |suffix: &str, message: String| ConfigError {
            var: var(suffix),
            message,
        };
        let algorithm = match env
            .raw(&var(ALGORITHM))
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("sha256") => Algorithm::Sha256,
            Some("sha512") => Algorithm::Sha512,
            Some("sha1") => Algorithm::Sha1,
            Some(other) => {
                return Err(refuse(
                    ALGORITHM,
                    format!(
                        "expected sha256, sha512 or sha1 (the algorithms Vapi's HMAC credential offers), got {other:?}"
                    ),
                ));
            }
        };
        let encoding = match env
            .raw(&var(SIGNATURE_ENCODING))
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("hex") => Encoding::Hex,
            Some("base64") => Encoding::Base64,
            Some(other) => {
                return Err(refuse(
                    SIGNATURE_ENCODING,
                    format!(
                        "expected hex or base64 (the encodings Vapi's HMAC credential offers), got {other:?}"
                    ),
                ));
            }
        };
        let header = |suffix: &str, default: &'static str| -> Result<&'static str, ConfigError> {
            match env.raw(&var(suffix)) {
                None => Ok(default),
                Some(name) if is_header_name(name) => Ok(leak(name.to_ascii_lowercase())),
                Some(name) => Err(refuse(
                    suffix,
                    format!("{name:?} is not an HTTP header name"),
                )),
            }
        };
        let signature_header = header(SIGNATURE_HEADER, "x-signature")?;
        let include_timestamp = env.bool(&var(INCLUDE_TIMESTAMP), true)?;
        let timestamp_header = if include_timestamp {
            Some(header(TIMESTAMP_HEADER, "x-timestamp")?)
        } else {
            None
        };
        let message_id_header = env
            .raw(&var(MESSAGE_ID_HEADER))
            .map(|_| header(MESSAGE_ID_HEADER, ""))
            .transpose()?;
        let default_format = if include_timestamp {
            "{timestamp}.{body}"
        } else {
            "{body}"
        };
        let format = env.string(&var(PAYLOAD_FORMAT), default_format);
        let payload = template(&format).map_err(|m| refuse(PAYLOAD_FORMAT, m))?;
        if !payload.contains(&Part::Body) {
            return Err(refuse(
                PAYLOAD_FORMAT,
                format!(
                    "{format:?} has no {{body}}: a signature that does not cover the body proves nothing about it"
                ),
            ));
        }
        if payload.contains(&Part::Timestamp) && !include_timestamp {
            return Err(refuse(
                PAYLOAD_FORMAT,
                format!(
                    "{format:?} signs {{timestamp}}, but {} is false: Vapi then sends no timestamp",
                    var(INCLUDE_TIMESTAMP)
                ),
            ));
        }
        if payload.contains(&Part::MessageId) && message_id_header.is_none() {
            return Err(refuse(
                MESSAGE_ID_HEADER,
                format!(
                    "is required: {} signs {{svix-id}}, the value of this header",
                    var(PAYLOAD_FORMAT)
                ),
            ));
        }
        let url = env.raw(&var(SERVER_URL)).map(str::to_owned);
        if payload.contains(&Part::Url) && url.is_none() {
            return Err(refuse(
                SERVER_URL,
                format!(
                    "is required: {} signs {{url}}; set it to the Server URL exactly as configured in Vapi",
                    var(PAYLOAD_FORMAT)
                ),
            ));
        }
        let prefix = env.raw(&var(SIGNATURE_PREFIX)).map(str::to_owned);
        let digits = match encoding {
            Encoding::Hex => "hex",
            Encoding::Base64 => "base64",
        };
        let expected = leak(match &prefix {
            Some(prefix) => format!("{prefix}<{} {digits}>", algorithm.name()),
            None => format!("<{0} {digits}> or {0}=<{0} {digits}>", algorithm.name()),
        });
        Ok(Self {
            algorithm,
            encoding,
            signature_header,
            timestamp_header,
            prefix,
            payload,
            message_id_header,
            url,
            expected,
        })
    }
}

/// A configured header name or message lives as long as the process: it is
/// read once at start-up, and the refusals name it as `&'static str`.
fn leak(text: String) -> &'static str {
    Box::leak(text.into_boxed_str())
}

/// An RFC 9110 token: what a header name may be.
fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// `payloadFormat` as its parts. A `{` without a closing `}` is text.
fn template(format: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut rest = format;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}').map(|c| open + c) else {
            break;
        };
        if open > 0 {
            parts.push(Part::Text(rest[..open].to_owned()));
        }
        parts.push(match &rest[open + 1..close] {
            "body" => Part::Body,
            "timestamp" => Part::Timestamp,
            "method" => Part::Method,
            "url" => Part::Url,
            "svix-id" => Part::MessageId,
            other => {
                return Err(format!(
                    "{{{other}}} is not one of the placeholders Vapi documents ({{body}}, {{timestamp}}, {{method}}, {{url}}, {{svix-id}})"
                ));
            }
        });
        rest = &rest[close + 1..];
    }
    if !rest.is_empty() {
        parts.push(Part::Text(rest.to_owned()));
    }
    Ok(parts)
}

/// An HMAC key, its bytes never printed.
#[derive(Clone)]
struct Key(Vec<u8>);

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Vapi's HMAC credential with its options and every configured secret.
#[derive(Debug, Clone)]
pub struct VapiHmac {
    options: Options,
    keys: Vec<Key>,
    tolerance_secs: u64,
}

impl VapiHmac {
    /// `secrets` are base64 when the options say so (`secretIsBase64`); one
    /// that is not is refused naming `var`.
    pub fn new(
        options: Options,
        secrets: &[Secret],
        secret_is_base64: bool,
        tolerance_secs: u64,
        var: &str,
    ) -> Result<Self, ConfigError> {
        let keys = secrets
            .iter()
            .enumerate()
            .map(|(i, secret)| {
                if !secret_is_base64 {
                    return Ok(Key(secret.expose().as_bytes().to_vec()));
                }
                base64::engine::general_purpose::STANDARD
                    .decode(secret.expose())
                    .map(Key)
                    .map_err(|_| ConfigError {
                        var: var.to_owned(),
                        message: format!(
                            "secret {} of the list is not base64, but the credential's secret is base64 (CALLSYNC_VAPI_{SECRET_IS_BASE64})",
                            i + 1
                        ),
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            options,
            keys,
            tolerance_secs,
        })
    }

    /// Reads the options and `CALLSYNC_VAPI_SECRET_IS_BASE64` from `env`.
    pub fn from_env(
        env: &Env,
        source: Source,
        secrets: &[Secret],
        tolerance_secs: u64,
    ) -> Result<Self, ConfigError> {
        let options = Options::from_env(env, source)?;
        let base64 = env.bool(&source.var(SECRET_IS_BASE64), false)?;
        Self::new(
            options,
            secrets,
            base64,
            tolerance_secs,
            &source.var("SECRET"),
        )
    }

    fn malformed(&self) -> AuthError {
        AuthError::MalformedSignature {
            header: self.options.signature_header,
            expected: self.options.expected,
        }
    }

    /// The signature's bytes, without the prefix, decoded.
    fn presented(&self, header: &str) -> Result<Vec<u8>, AuthError> {
        let options = &self.options;
        let digest = match &options.prefix {
            Some(prefix) => header
                .strip_prefix(prefix.as_str())
                .ok_or(self.malformed())?,
            None => header
                .strip_prefix(options.algorithm.name())
                .and_then(|rest| rest.strip_prefix('='))
                .unwrap_or(header),
        };
        let bytes = match options.encoding {
            Encoding::Hex => hex::decode(digest).ok(),
            Encoding::Base64 => base64::engine::general_purpose::STANDARD
                .decode(digest)
                .ok(),
        };
        let length = options.algorithm.mac(b"", &[]).len();
        bytes.filter(|b| b.len() == length).ok_or(self.malformed())
    }
}

impl Verifier for VapiHmac {
    fn verify(&self, request: &Request<'_>) -> Result<(), AuthError> {
        let options = &self.options;
        let timestamp = match options.timestamp_header {
            Some(name) => {
                let text = request.required_header(name)?;
                let sent_ms = sent_ms(text).ok_or(AuthError::MalformedTimestamp {
                    header: name,
                    unit: "seconds or milliseconds, or an RFC 3339 time",
                })?;
                within_tolerance(name, sent_ms, request.now_ms(), self.tolerance_secs)?;
                Some(text)
            }
            None => None,
        };
        let signature = request.required_header(options.signature_header)?;
        let presented = self.presented(signature)?;
        let message_id = match options.message_id_header {
            Some(name) if options.payload.contains(&Part::MessageId) => {
                Some(request.required_header(name)?)
            }
            _ => None,
        };
        let parts: Vec<&[u8]> = options
            .payload
            .iter()
            .map(|part| match part {
                Part::Text(text) => text.as_bytes(),
                Part::Body => request.body,
                Part::Timestamp => timestamp.unwrap_or_default().as_bytes(),
                Part::Method => b"POST",
                Part::Url => options.url.as_deref().unwrap_or_default().as_bytes(),
                Part::MessageId => message_id.unwrap_or_default().as_bytes(),
            })
            .collect();
        // Every key is tried, whatever matched first: timing reveals neither
        // a match nor which key it was.
        let matched = self.keys.iter().fold(subtle::Choice::from(0), |acc, key| {
            acc | options
                .algorithm
                .mac(&key.0, &parts)
                .as_slice()
                .ct_eq(presented.as_slice())
        });
        if bool::from(matched) {
            Ok(())
        } else {
            Err(AuthError::SignatureMismatch)
        }
    }
}

/// The timestamp in Unix milliseconds. Vapi does not document its unit:
/// digits above 10^11 are milliseconds (10^11 seconds is the year 5138),
/// smaller ones seconds; an RFC 3339 time is read as such.
fn sent_ms(text: &str) -> Option<i128> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        let value: i128 = text.parse().ok()?;
        return Some(if value > 100_000_000_000 {
            value
        } else {
            value * 1_000
        });
    }
    let at =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    Some(at.unix_timestamp_nanos() / 1_000_000)
}
