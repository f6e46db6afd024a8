//! Why the console refused a request, as a clear page with the right status
//! (never a stack trace or an internal error's text beyond its summary).

use axum::http::StatusCode;
use axum::http::header::{LOCATION, SET_COOKIE};
use axum::response::{IntoResponse, Response};
use maud::html;

use super::session::{CsrfMismatch, clear_cookie};
use super::templates;

#[derive(Debug)]
pub enum Refusal {
    /// No credential: a browser is sent to the login form (and back here).
    Login(Option<String>),
    /// A session cookie that expired, or whose token was rotated out.
    LoginAgain(Option<String>),
    /// A bearer token that is not one of ours.
    BadToken,
    /// A state-changing request without its session's CSRF token.
    Csrf,
    /// Nothing by that name.
    NotFound(String),
    /// A search or form value that cannot be read.
    BadInput(String),
    /// The ledger or the broker did not answer.
    Unavailable(String),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (status, title, message) = match self {
            Refusal::Login(next) | Refusal::LoginAgain(next) => {
                let location = match next {
                    Some(next) => format!(
                        "/login?{}",
                        form_urlencoded::Serializer::new(String::new())
                            .append_pair("next", &next)
                            .finish()
                    ),
                    None => "/login".to_owned(),
                };
                return (
                    StatusCode::SEE_OTHER,
                    [(LOCATION, location), (SET_COOKIE, clear_cookie())],
                )
                    .into_response();
            }
            Refusal::BadToken => (
                StatusCode::UNAUTHORIZED,
                "Not signed in",
                "The bearer token is not one of the console's tokens.".to_owned(),
            ),
            Refusal::Csrf => (
                StatusCode::FORBIDDEN,
                "Refused",
                "This form was not sent from this console session (its CSRF token is missing or \
                 wrong). Nothing was changed. Go back, reload the page and try again."
                    .to_owned(),
            ),
            Refusal::NotFound(what) => (StatusCode::NOT_FOUND, "Not found", what),
            Refusal::BadInput(what) => (StatusCode::BAD_REQUEST, "Cannot read the request", what),
            Refusal::Unavailable(what) => (StatusCode::SERVICE_UNAVAILABLE, "Unavailable", what),
        };
        let page = templates::page(
            title,
            None,
            html! {
                h1 { (title) }
                p role="alert" { (message) }
                p { a href="/" { "Back to the overview" } }
            },
        );
        (status, page).into_response()
    }
}

impl From<CsrfMismatch> for Refusal {
    fn from(_: CsrfMismatch) -> Self {
        Refusal::Csrf
    }
}
