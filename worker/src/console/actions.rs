//! What changes something: signing in and out, and replaying or purging
//! parked calls. Each is a POST; every one but the login carries the
//! session's CSRF token, and each answers with a page that says what happened.

use std::sync::Arc;
use std::time::Duration;

use axum::Form;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::http::header::{LOCATION, SET_COOKIE};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use time::OffsetDateTime;

use super::Console;
use super::auth::safe_next;
use super::data::{self, CallRow};
use super::refusal::Refusal;
use super::session::{Session, clear_cookie, set_cookie};
use super::templates::{call_path, page, short};
use crate::dlq::{Parked, Selection};

/// How long a replay's result page waits for the replayed calls to be
/// synced (or parked again) before saying they are still on their way.
const REPLAY_WAIT: Duration = Duration::from_secs(20);

#[derive(Debug, serde::Deserialize)]
pub struct Next {
    next: Option<String>,
}

fn login_page(next: &str, error: Option<&str>) -> Markup {
    page(
        "Sign in",
        None,
        html! {
            h1 { "Sign in" }
            @if let Some(error) = error { p class="bad" role="alert" { (error) } }
            form method="post" action="/login" {
                input type="hidden" name="next" value=(next);
                label for="token" { "Console token" }
                input id="token" name="token" type="password" autocomplete="current-password" required;
                " "
                button type="submit" { "Sign in" }
            }
            p class="note" { "The token is one of CALLSYNC_CONSOLE_TOKEN's. The session lasts 12 hours." }
        },
    )
}

pub async fn login_form(Query(next): Query<Next>) -> Markup {
    login_page(safe_next(next.next.as_deref()), None)
}

#[derive(Debug, serde::Deserialize)]
pub struct Login {
    #[serde(default)]
    token: String,
    next: Option<String>,
}

/// The login form's POST. It carries no CSRF token: it needs the token
/// itself, which a forged request does not have.
pub async fn login(State(console): State<Arc<Console>>, Form(form): Form<Login>) -> Response {
    let next = safe_next(form.next.as_deref()).to_owned();
    match console
        .keys
        .login(form.token.trim(), OffsetDateTime::now_utc())
    {
        Some(cookie) => (
            StatusCode::SEE_OTHER,
            [(LOCATION, next), (SET_COOKIE, set_cookie(&cookie))],
        )
            .into_response(),
        None => {
            // Slows down guessing; tokens are long enough that this is a courtesy.
            tokio::time::sleep(Duration::from_millis(500)).await;
            tracing::warn!("console: a sign-in with a wrong token");
            (
                StatusCode::UNAUTHORIZED,
                login_page(&next, Some("That is not one of the console's tokens.")),
            )
                .into_response()
        }
    }
}

#[derive(Debug, serde::Deserialize)]
pub struct Csrf {
    #[serde(default)]
    csrf: String,
}

pub async fn logout(session: Session, Form(form): Form<Csrf>) -> Result<Response, Refusal> {
    session.check_csrf(&form.csrf)?;
    Ok((
        StatusCode::SEE_OTHER,
        [
            (LOCATION, "/login".to_owned()),
            (SET_COOKIE, clear_cookie()),
        ],
    )
        .into_response())
}

#[derive(Debug, serde::Deserialize)]
pub struct ById {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    id: String,
}

#[derive(Debug, serde::Deserialize)]
pub struct ByReason {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
}

fn broker_refusal(e: &crate::dlq::DlqError) -> Refusal {
    Refusal::Unavailable(format!(
        "{}. Whatever was not replayed stays parked.",
        callsync_shared::telemetry::Chain(e)
    ))
}

pub async fn replay(
    State(console): State<Arc<Console>>,
    session: Session,
    Form(form): Form<ById>,
) -> Result<Markup, Refusal> {
    session.check_csrf(&form.csrf)?;
    if form.id.trim().is_empty() {
        return Err(Refusal::BadInput(
            "Say which parked message to replay.".to_owned(),
        ));
    }
    replay_selection(
        &console,
        &session,
        Selection::Ids(vec![form.id.trim().to_owned()]),
    )
    .await
}

pub async fn replay_reason(
    State(console): State<Arc<Console>>,
    session: Session,
    Form(form): Form<ByReason>,
) -> Result<Markup, Refusal> {
    session.check_csrf(&form.csrf)?;
    if form.reason.is_empty() {
        return Err(Refusal::BadInput("Say which reason to replay.".to_owned()));
    }
    replay_selection(&console, &session, Selection::Reason(form.reason)).await
}

async fn replay_selection(
    console: &Console,
    session: &Session,
    selection: Selection,
) -> Result<Markup, Refusal> {
    let started = OffsetDateTime::now_utc();
    let replayed = {
        let (_turn, dlq) = console.dlq().await.map_err(|e| broker_refusal(&e))?;
        let replayed = dlq.replay(&selection).await;
        dlq.close().await;
        replayed.map_err(|e| broker_refusal(&e))?
    };
    for p in &replayed {
        tracing::info!(source = %p.source, call_id = %p.call_id, "console: replayed a parked call");
    }
    if replayed.is_empty() {
        return Err(Refusal::NotFound(
            "Nothing parked matches any more (it may have been replayed or purged meanwhile)."
                .to_owned(),
        ));
    }
    let outcomes = wait_for_outcomes(console, &replayed, started).await?;
    Ok(page(
        "Replayed",
        Some(session),
        html! {
            h1 { "Replayed " (replayed.len()) " call(s)" }
            table {
                thead { tr { th scope="col" { "call" } th scope="col" { "now" } } }
                tbody { @for (p, outcome) in replayed.iter().zip(&outcomes) {
                    tr {
                        td { a href=(call_path(&p.source, &p.call_id)) { (p.source) " " code { (p.call_id) } } }
                        td { (outcome_text(outcome.as_ref(), started)) }
                    }
                } }
            }
            p { a href="/parked" { "Back to the parked calls" } }
        },
    ))
}

/// Waits until every replayed call is synced or parked again, or
/// [`REPLAY_WAIT`] passed, and returns their ledger rows.
async fn wait_for_outcomes(
    console: &Console,
    replayed: &[Parked],
    started: OffsetDateTime,
) -> Result<Vec<Option<CallRow>>, Refusal> {
    let keys: Vec<(String, String)> = replayed
        .iter()
        .map(|p| (p.source.clone(), p.call_id.clone()))
        .collect();
    let deadline = tokio::time::Instant::now() + REPLAY_WAIT;
    loop {
        let rows = data::statuses(console.ledger.pool(), &keys)
            .await
            .map_err(|_| {
                Refusal::Unavailable(
                    "The calls were replayed, but the ledger did not answer to say how they went; \
                     see the calls page."
                        .to_owned(),
                )
            })?;
        let settled = rows.iter().all(|row| match row {
            Some(row) => {
                row.status == "synced"
                    || (row.status == "parked" && row.parked_at.is_some_and(|t| t >= started))
            }
            None => false,
        });
        if settled || tokio::time::Instant::now() >= deadline {
            return Ok(rows);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn outcome_text(row: Option<&CallRow>, started: OffsetDateTime) -> Markup {
    html! {
        @match row {
            Some(row) if row.status == "synced" => span class="ok" { "synced" },
            Some(row) if row.status == "parked" && row.parked_at.is_some_and(|t| t >= started) =>
                span class="bad" { "parked again: " (short(row.last_error.as_deref().unwrap_or("no reason recorded"), 200)) },
            Some(row) => span {
                "not synced yet, still on its way"
                @if let Some(e) = &row.last_error { ": last error " (short(e, 200)) }
            },
            None => span { "not in the ledger yet: still waiting in the queue, or parked again before a worker took it" },
        }
    }
}

pub async fn purge(
    State(console): State<Arc<Console>>,
    session: Session,
    Form(form): Form<ById>,
) -> Result<Markup, Refusal> {
    session.check_csrf(&form.csrf)?;
    if form.id.trim().is_empty() {
        return Err(Refusal::BadInput(
            "Say which parked message to purge.".to_owned(),
        ));
    }
    let purged = {
        let (_turn, dlq) = console.dlq().await.map_err(|e| broker_refusal(&e))?;
        let purged = dlq
            .purge(&Selection::Ids(vec![form.id.trim().to_owned()]))
            .await;
        dlq.close().await;
        purged.map_err(|e| broker_refusal(&e))?
    };
    if purged.is_empty() {
        return Err(Refusal::NotFound(
            "Nothing parked matches any more (it may have been replayed or purged meanwhile)."
                .to_owned(),
        ));
    }
    for p in &purged {
        tracing::warn!(source = %p.source, call_id = %p.call_id, "console: purged a parked call");
    }
    Ok(page(
        "Purged",
        Some(&session),
        html! {
            h1 { "Purged " (purged.len()) " parked message(s)" }
            ul { @for p in &purged { li { (p.source) " " code { (p.call_id) } } } }
            p { a href="/parked" { "Back to the parked calls" } }
        },
    ))
}
