//! The pages: overview, calls search, one call's story, the parking queue
//! and the confirmation before an action. They only read.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use callsync_shared::Source;
use maud::{Markup, html};
use time::OffsetDateTime;

use super::Console;
use super::data::{self, CallRow, STATUSES, Search};
use super::links::record_url;
use super::refusal::Refusal;
use super::session::Session;
use super::templates::{at, call_path, csrf_field, maybe_at, page, query, short};
use crate::dlq::{Parked, format_age};

fn unavailable(what: &str) -> impl FnOnce(crate::ledger::LedgerError) -> Refusal + '_ {
    move |e| {
        tracing::warn!(error = %callsync_shared::telemetry::Chain(&e), "console: {what}");
        Refusal::Unavailable(format!(
            "The ledger database did not answer ({what}). Try again in a moment."
        ))
    }
}

/// What the queues hold now, or why it is not known.
struct Depths(Result<Vec<(String, Option<u32>)>, String>);

async fn depths(console: &Console) -> Depths {
    let topology = &console.config.ops.topology;
    let mut queues = vec![topology.calls_queue()];
    queues.extend(
        console
            .config
            .ops
            .retry_delays
            .iter()
            .map(|d| topology.retry_queue(*d)),
    );
    queues.push(topology.parking_queue());
    let result = async {
        let (_turn, dlq) = console.dlq().await?;
        let mut out = Vec::new();
        for queue in queues {
            let depth = dlq.depth(&queue).await;
            match depth {
                Ok(depth) => out.push((queue, depth)),
                Err(e) => {
                    dlq.close().await;
                    return Err(e);
                }
            }
        }
        dlq.close().await;
        Ok(out)
    }
    .await;
    Depths(result.map_err(|e: crate::dlq::DlqError| {
        format!(
            "the broker did not answer: {}",
            callsync_shared::telemetry::Chain(&e)
        )
    }))
}

pub async fn overview(
    State(console): State<Arc<Console>>,
    session: Session,
) -> Result<Markup, Refusal> {
    let pool = console.ledger.pool();
    let counts = data::counts(pool).await.map_err(unavailable("counts"))?;
    let workers = data::workers(pool).await.map_err(unavailable("workers"))?;
    let rounds = data::rounds(pool).await.map_err(unavailable("rounds"))?;
    let depths = depths(&console).await;
    let budget = match &console.config.prometheus_url {
        Some(url) => {
            Some(super::metrics::budget(&console.http, url, console.config.crm_rate).await)
        }
        None => None,
    };
    let links = &console.config.links;
    let paused: Vec<_> = workers
        .iter()
        .filter(|w| w.paused_reason.is_some())
        .collect();
    let now = OffsetDateTime::now_utc();
    Ok(page(
        "Overview",
        Some(&session),
        html! {
            h1 { "Overview" }
            section aria-labelledby="calls-h" {
                h2 id="calls-h" { "Calls" }
                table {
                    caption class="note" { "From the ledger. In retry: released after a failed attempt, waiting for its next one." }
                    thead { tr { th scope="col" { "calls" } th scope="col" { "last hour" } th scope="col" { "last day" } th scope="col" { "now" } } }
                    tbody {
                        tr { th scope="row" { a href={"/calls?" (query(&[("status", "synced")]))} { "Synced" } }
                             td.n { (counts.synced_hour) } td.n { (counts.synced_day) } td.n { "–" } }
                        tr { th scope="row" { a href={"/calls?" (query(&[("status", "pending")]))} { "In retry" } }
                             td.n { (counts.retry_hour) } td.n { (counts.retry_day) }
                             td.n { (counts.retry_now) " (of " (counts.pending_now) " pending)" } }
                        tr { th scope="row" { a href="/parked" { "Parked" } }
                             td.n { (counts.parked_hour) } td.n { (counts.parked_day) } td.n { (counts.parked_now) } }
                    }
                }
            }
            section aria-labelledby="workers-h" {
                h2 id="workers-h" { "Workers" }
                @if workers.is_empty() {
                    p class="bad" { "No worker has reported in the last 10 seconds." }
                } @else if paused.is_empty() {
                    p class="ok" { (workers.len()) " worker(s) live, none paused (CRM " (workers[0].crm) ")." }
                } @else {
                    p class="bad" { (paused.len()) " of " (workers.len()) " worker(s) paused; calls wait in the queue." }
                    table {
                        thead { tr { th scope="col" { "reason" } th scope="col" { "detail (as /readyz gives it)" } th scope="col" { "last seen" } } }
                        tbody {
                            @for w in &paused {
                                tr { td { (w.paused_reason.as_deref().unwrap_or_default()) }
                                     td { (w.paused_detail.as_deref().unwrap_or_default()) }
                                     td { (at(w.last_seen)) } }
                            }
                        }
                    }
                }
            }
            section aria-labelledby="queues-h" {
                h2 id="queues-h" { "Queues" }
                @match &depths.0 {
                    Ok(depths) => table {
                        thead { tr { th scope="col" { "queue" } th scope="col" { "messages" } } }
                        tbody { @for (queue, depth) in depths {
                            tr { td { code { (queue) } } td.n { @match depth { Some(n) => (n), None => "missing" } } }
                        } }
                    },
                    Err(e) => p class="bad" { (e) },
                }
            }
            section aria-labelledby="rounds-h" {
                h2 id="rounds-h" { "Reconciling the platforms' call lists" }
                @if rounds.is_empty() {
                    p class="note" { "No platform's call list is reconciled (no CALLSYNC_<SOURCE>_API_KEY set), or no round ran yet." }
                } @else {
                    table {
                        thead { tr {
                            th scope="col" { "platform" } th scope="col" { "last round finished" }
                            th scope="col" { "up to" } th scope="col" { "listed" } th scope="col" { "queued" }
                            th scope="col" { "now" }
                        } }
                        tbody { @for r in &rounds {
                            tr {
                                td { (r.source) }
                                td { (maybe_at(r.last_success_at)) }
                                td { (maybe_at(r.last_window_end)) }
                                td.n { (r.last_listed.map_or_else(|| "–".to_owned(), |n| n.to_string())) }
                                td.n { (r.last_queued.map_or_else(|| "–".to_owned(), |n| n.to_string())) }
                                td {
                                    @if let Some(e) = &r.last_error { span class="bad" { "failed: " (e) } br; }
                                    @if let Some(since) = r.running_since {
                                        "round in progress from " (at(since)) ", " (r.queued) " queued so far"
                                    } @else if r.due_at > now {
                                        "next round " (at(r.due_at))
                                    } @else { "a round is due" }
                                }
                            }
                        } }
                    }
                }
            }
            section aria-labelledby="budget-h" {
                h2 id="budget-h" { "CRM request budget" }
                @match &budget {
                    None => p class="note" { "Set CALLSYNC_CONSOLE_PROMETHEUS_URL to show the budget in use and the CRM's 429 answers here; they are on the dashboard." },
                    Some(Err(e)) => p class="bad" { (e) },
                    Some(Ok(b)) => table {
                        caption class="note" { "From Prometheus, all workers together." }
                        tbody {
                            tr { th scope="row" { "requests per second (last 5 minutes)" } td.n { (format!("{:.2}", b.requests_per_second)) } }
                            tr { th scope="row" { "budget in use" }
                                 td.n { @match (b.in_use, console.config.crm_rate) {
                                     (Some(share), Some(rate)) => { (format!("{:.0} %", share * 100.0)) " of " (rate.to_string()) },
                                     _ => "no budget configured",
                                 } } }
                            tr { th scope="row" { "429 answers from the CRM (last hour / day)" }
                                 td.n { (format!("{:.0}", b.rate_limited_hour)) " / " (format!("{:.0}", b.rate_limited_day)) } }
                            tr { th scope="row" { "requests held back to stay within the budget (last hour)" }
                                 td.n { (format!("{:.0}", b.throttled_hour)) } }
                        }
                    },
                }
            }
            section aria-labelledby="more-h" {
                h2 id="more-h" { "More" }
                ul {
                    @if let Some(url) = &links.grafana_url { li { a href=(url) { "Grafana: the callsync dashboard" } } }
                    @if let Some(url) = &links.rabbitmq_url { li { a href=(url) { "RabbitMQ management" } } }
                    @if links.grafana_url.is_none() && links.rabbitmq_url.is_none() {
                        li class="note" { "Set CALLSYNC_CONSOLE_GRAFANA_URL and CALLSYNC_CONSOLE_RABBITMQ_URL to link them here." }
                    }
                }
            }
        },
    ))
}

pub async fn calls(
    State(console): State<Arc<Console>>,
    session: Session,
    Query(search): Query<Search>,
) -> Result<Markup, Refusal> {
    if !search.source.is_empty() && search.source.parse::<Source>().is_err() {
        return Err(Refusal::BadInput(format!(
            "{:?} is not a source; sources: {}",
            search.source,
            Source::names()
        )));
    }
    if !search.status.is_empty() && !STATUSES.contains(&search.status.as_str()) {
        return Err(Refusal::BadInput(format!(
            "{:?} is not a status; statuses: pending, synced, parked",
            search.status
        )));
    }
    let from =
        data::parse_time(&search.from).map_err(|e| Refusal::BadInput(format!("From: {e}")))?;
    let to = data::parse_time(&search.to).map_err(|e| Refusal::BadInput(format!("To: {e}")))?;
    let page_number = search.page_number().map_err(Refusal::BadInput)?;
    let found = data::search(
        console.ledger.pool(),
        &search,
        page_number,
        (from, to),
        console.config.default_region,
    )
    .await
    .map_err(unavailable("search"))?;
    let page_link = |n: u32| {
        format!(
            "/calls?{}",
            query(&[
                ("call_id", &search.call_id),
                ("phone", &search.phone),
                ("contact", &search.contact),
                ("source", &search.source),
                ("status", &search.status),
                ("from", &search.from),
                ("to", &search.to),
                ("page", &n.to_string()),
            ])
        )
    };
    Ok(page(
        "Calls",
        Some(&session),
        html! {
            h1 { "Calls" }
            form class="search" method="get" action="/calls" role="search" aria-label="Search calls" {
                div { label for="call_id" { "Call id (or its start)" } input id="call_id" name="call_id" value=(search.call_id); }
                div { label for="phone" { "Phone number (any format)" } input id="phone" name="phone" type="tel" value=(search.phone); }
                div { label for="contact" { "CRM contact id" } input id="contact" name="contact" value=(search.contact); }
                div { label for="source" { "Source" }
                    select id="source" name="source" {
                        option value="" { "any" }
                        @for s in Source::ALL { option value=(s.as_str()) selected[search.source == s.as_str()] { (s.as_str()) } }
                    } }
                div { label for="status" { "Status" }
                    select id="status" name="status" {
                        option value="" { "any" }
                        @for s in STATUSES { option value=(s) selected[search.status == s] { (s) } }
                    } }
                div { label for="from" { "First seen from (UTC)" } input id="from" name="from" type="datetime-local" value=(search.from); }
                div { label for="to" { "First seen before (UTC)" } input id="to" name="to" type="datetime-local" value=(search.to); }
                div { button type="submit" { "Search" } }
            }
            @if let Some(number) = &found.phone_as {
                p class="note" { "The number was looked up as " code { (number) } ", as the worker stores it." }
            }
            @if found.calls.is_empty() {
                p { "No call matches." }
                @if found.phone_as.is_some() {
                    p class="note" { "The ledger finds calls by number through the contact a call resolved to; a call that failed before its contact was found has no number in the ledger: search by call id." }
                }
            } @else {
                (call_table(&found.calls))
            }
            nav aria-label="Pages" {
                @if page_number > 0 { a href=(page_link(page_number - 1)) rel="prev" { "Newer" } " " }
                @if found.more { a href=(page_link(page_number + 1)) rel="next" { "Older" } }
            }
        },
    ))
}

fn call_table(calls: &[CallRow]) -> Markup {
    html! {
        table {
            thead { tr {
                th scope="col" { "first seen" } th scope="col" { "source" } th scope="col" { "call id" }
                th scope="col" { "status" } th scope="col" { "attempts" } th scope="col" { "contact" }
                th scope="col" { "last error" }
            } }
            tbody { @for c in calls {
                tr {
                    td { (at(c.first_seen_at)) }
                    td { (c.source) }
                    td { a href=(call_path(&c.source, &c.call_id)) { code { (c.call_id) } } }
                    td { (status_badge(&c.status)) }
                    td.n { (c.attempts) }
                    td { @if let Some(id) = &c.contact_id { code { (id) } } }
                    td { @if let Some(e) = &c.last_error { (short(e, 100)) } }
                }
            } }
        }
    }
}

fn status_badge(status: &str) -> Markup {
    html! {
        @match status {
            "synced" => span class="ok" { "synced" },
            "parked" => span class="bad" { "parked" },
            other => span { (other) },
        }
    }
}

pub async fn story(
    State(console): State<Arc<Console>>,
    session: Session,
    Path((source, call_id)): Path<(String, String)>,
) -> Result<Markup, Refusal> {
    let pool = console.ledger.pool();
    let call = data::call(pool, &source, &call_id)
        .await
        .map_err(unavailable("the call"))?;
    // A call the ledger does not know may still sit in the parking queue
    // (a report the worker could not read is parked before it is claimed);
    // a synced one is not looked for there.
    let parked = if call.as_ref().is_some_and(|c| c.status == "synced") {
        Ok(Vec::new())
    } else {
        parked_copies(&console, &source, &call_id).await
    };
    let Some(call) = call else {
        if let Ok(copies) = &parked
            && !copies.is_empty()
        {
            return Ok(page(
                "A call",
                Some(&session),
                html! {
                    h1 { "Call " code { (call_id) } }
                    p { "The ledger has no row for this call: the worker parked it before taking it (for example, a report it could not read)." }
                    (parked_section(copies))
                },
            ));
        }
        return Err(Refusal::NotFound(format!(
            "The ledger has no call {call_id:?} from {source:?}, and none is parked."
        )));
    };
    let steps = data::steps(pool, &source, &call_id)
        .await
        .map_err(unavailable("the steps"))?;
    let receipt = data::receipt(pool, &source, &call_id)
        .await
        .map_err(unavailable("the receipt"))?;
    let contact = call.contact_id.clone().or_else(|| {
        steps
            .iter()
            .find(|s| s.step == "contact")
            .and_then(|s| s.crm_object_id.clone())
    });
    let numbers = match &contact {
        Some(id) => data::lookup_keys(pool, id)
            .await
            .map_err(unavailable("the contact"))?,
        None => Vec::new(),
    };
    let links = &console.config.links;
    Ok(page(
        &format!("Call {}", short(&call.call_id, 24)),
        Some(&session),
        html! {
            h1 { "Call " code { (call.call_id) } }
            section aria-labelledby="received-h" {
                h2 id="received-h" { "Received" }
                dl {
                    dt { "Source" } dd { (call.source) }
                    dt { "Came" } dd { (came_by(receipt.published_by.as_deref())) }
                    @if let Some(t) = receipt.received_at { dt { "Received by ingest" } dd { (at(t)) } }
                    @if let Some(v) = &receipt.verified_by { dt { "Verified by" } dd { (v) } }
                    dt { "First seen by a worker" } dd { (at(call.first_seen_at)) }
                    dt { "Status" } dd { (status_badge(&call.status)) }
                    dt { "Attempts (claims by a worker)" } dd { (call.attempts) }
                    @if let Some(t) = call.synced_at { dt { "Synced" } dd { (at(t)) } }
                    @if let Some(t) = call.parked_at { dt { "Last parked" } dd { (at(t)) } }
                    @if let Some(e) = &call.last_error { dt { "Last error" } dd { (e) } }
                    dt { "Caller (as the ledger stores the contact's key)" }
                    dd { @if numbers.is_empty() { "–" } @else { @for n in &numbers { code { (n) } " " } } }
                }
                p class="note" {
                    "The ledger keeps each attempt's last error only; the report's fields stay in the queue message."
                    @if call.status != "synced" { " A parked call's first and last error are on its parked message below." }
                }
            }
            section aria-labelledby="steps-h" {
                h2 id="steps-h" { "CRM steps" }
                @if steps.is_empty() {
                    p { "No CRM step was started." }
                } @else {
                    table {
                        thead { tr { th scope="col" { "step" } th scope="col" { "outcome" } th scope="col" { "CRM id" } th scope="col" { "started" } th scope="col" { "done" } } }
                        tbody { @for s in &steps {
                            tr {
                                td { (s.step) }
                                td { @if s.state == "done" { span class="ok" { "done" } } @else { "started, outcome unknown" } }
                                td { @if let Some(id) = &s.crm_object_id {
                                    @if let Some(url) = record_url(links, &s.step, id) {
                                        a href=(url) rel="noreferrer noopener" { code { (id) } }
                                    } @else { code { (id) } }
                                } }
                                td { (at(s.started_at)) }
                                td { (maybe_at(s.done_at)) }
                            }
                        } }
                    }
                }
            }
            @match &parked {
                Ok(copies) if !copies.is_empty() => (parked_section(copies)),
                Ok(_) => {},
                Err(e) => p class="bad" { "The parking queue could not be read: " (e) },
            }
        },
    ))
}

fn parked_section(copies: &[Parked]) -> Markup {
    let now = OffsetDateTime::now_utc();
    html! {
        section aria-labelledby="parked-h" {
            h2 id="parked-h" { "Parked" }
            @for p in copies {
                dl {
                    dt { "Reason" } dd { (p.reason) }
                    dt { "Attempts before parking" } dd { (p.attempts) }
                    dt { "Parked" } dd { (p.age(now).map_or_else(|| "unknown".to_owned(), |a| format!("{} ago", format_age(a)))) }
                    @if let Some(e) = &p.first_error { dt { "First error" } dd { (e) } }
                    @if let Some(e) = &p.last_error { dt { "Last error" } dd { (e) } }
                    dt { "Message id" } dd { code { (p.id) } }
                }
                form method="get" action="/parked/confirm" {
                    input type="hidden" name="action" value="replay";
                    input type="hidden" name="id" value=(p.id);
                    button type="submit" { "Replay this call…" }
                }
            }
        }
    }
}

/// The parked messages of one call.
async fn parked_copies(
    console: &Console,
    source: &str,
    call_id: &str,
) -> Result<Vec<Parked>, String> {
    let list = async {
        let (_turn, dlq) = console.dlq().await?;
        let list = dlq.list(PARKED_READ_MAX).await;
        dlq.close().await;
        list
    }
    .await
    .map_err(|e| {
        format!(
            "the broker did not answer: {}",
            callsync_shared::telemetry::Chain(&e)
        )
    })?;
    Ok(list
        .into_iter()
        .filter(|p| p.call_id == call_id && p.source == source)
        .collect())
}

/// The most parked messages a page reads (each is held, with its body, while
/// the page is made): a parking queue of millions must not exhaust the
/// console. The Parked page says when the queue holds more.
pub(super) const PARKED_READ_MAX: usize = 2_000;

/// The oldest parked messages, up to [`PARKED_READ_MAX`].
pub(super) async fn parked_list(console: &Console) -> Result<Vec<Parked>, Refusal> {
    let result = async {
        let (_turn, dlq) = console.dlq().await?;
        let list = dlq.list(PARKED_READ_MAX).await;
        dlq.close().await;
        list
    }
    .await;
    result.map_err(|e| {
        Refusal::Unavailable(format!(
            "The broker did not answer: {}. Nothing was changed.",
            callsync_shared::telemetry::Chain(&e)
        ))
    })
}

pub async fn parked(
    State(console): State<Arc<Console>>,
    session: Session,
) -> Result<Markup, Refusal> {
    let list = parked_list(&console).await?;
    let mut by_reason: BTreeMap<&str, Vec<&Parked>> = BTreeMap::new();
    for p in &list {
        by_reason.entry(p.reason.as_str()).or_default().push(p);
    }
    let now = OffsetDateTime::now_utc();
    Ok(page(
        "Parked",
        Some(&session),
        html! {
            h1 { "Parked calls" }
            p { (list.len()) " parked message(s), grouped by reason. A replay sends a call back to the work queue with every retry again; a purge deletes it." }
            @if list.len() >= PARKED_READ_MAX {
                p class="bad" { "Only the oldest " (PARKED_READ_MAX) " are shown; the queue holds more (see the overview). Replay or purge these, or use callsync-worker dlq." }
            }
            @for (i, (reason, group)) in by_reason.iter().enumerate() {
                section aria-labelledby={"reason-" (i)} {
                    h2 id={"reason-" (i)} { (reason) " (" (group.len()) ")" }
                    form method="get" action="/parked/confirm" {
                        input type="hidden" name="action" value="replay-reason";
                        input type="hidden" name="reason" value=(reason);
                        button type="submit" { "Replay all " (group.len()) " with this reason…" }
                    }
                    table {
                        thead { tr {
                            th scope="col" { "source" } th scope="col" { "call id" } th scope="col" { "attempts" }
                            th scope="col" { "parked" } th scope="col" { "last error" } th scope="col" { "actions" }
                        } }
                        tbody { @for p in group {
                            tr {
                                td { (p.source) }
                                td { a href=(call_path(&p.source, &p.call_id)) { code { (p.call_id) } } }
                                td.n { (p.attempts) }
                                td { (p.age(now).map_or_else(|| "unknown".to_owned(), |a| format!("{} ago", format_age(a)))) }
                                td { (short(p.last_error.as_deref().unwrap_or_default(), 120)) }
                                td {
                                    a href={"/parked/confirm?" (query(&[("action", "replay"), ("id", &p.id)]))}
                                      aria-label={"Replay call " (p.call_id)} { "Replay…" }
                                    " · "
                                    a href={"/parked/confirm?" (query(&[("action", "purge"), ("id", &p.id)]))}
                                      aria-label={"Purge call " (p.call_id)} { "Purge…" }
                                }
                            }
                        } }
                    }
                }
            }
        },
    ))
}

/// What the confirmation page is asked to confirm.
#[derive(Debug, serde::Deserialize)]
pub struct Confirm {
    #[serde(default)]
    action: String,
    #[serde(default)]
    id: String,
    #[serde(default)]
    reason: String,
}

pub async fn confirm(
    State(console): State<Arc<Console>>,
    session: Session,
    Query(ask): Query<Confirm>,
) -> Result<Markup, Refusal> {
    let list = parked_list(&console).await?;
    let (title, chosen, post, field, value, warning): (&str, Vec<&Parked>, &str, &str, &str, &str) =
        match ask.action.as_str() {
            "replay" => (
                "Replay this call?",
                list.iter().filter(|p| p.id == ask.id).collect(),
                "/parked/replay",
                "id",
                &ask.id,
                "It goes back to the work queue with every retry again; the ledger makes sure \
                 nothing already written to the CRM is written twice.",
            ),
            "purge" => (
                "Purge this call?",
                list.iter().filter(|p| p.id == ask.id).collect(),
                "/parked/purge",
                "id",
                &ask.id,
                "Its report is deleted from the queue for good: the call never reaches the CRM \
                 unless the platform sends it again.",
            ),
            "replay-reason" => (
                "Replay every call parked for this reason?",
                list.iter().filter(|p| p.reason == ask.reason).collect(),
                "/parked/replay-reason",
                "reason",
                &ask.reason,
                "They go back to the work queue with every retry again.",
            ),
            other => {
                return Err(Refusal::BadInput(format!(
                    "{other:?} is not an action; actions: replay, purge, replay-reason"
                )));
            }
        };
    if chosen.is_empty() {
        return Err(Refusal::NotFound(
            "Nothing parked matches any more (it may have been replayed or purged meanwhile)."
                .to_owned(),
        ));
    }
    Ok(page(
        title,
        Some(&session),
        html! {
            h1 { (title) }
            ul { @for p in &chosen {
                li { (p.source) " " code { (p.call_id) } ": " (short(&p.reason, 160)) }
            } }
            p { (warning) }
            form method="post" action=(post) {
                (csrf_field(&session))
                input type="hidden" name=(field) value=(value);
                @if ask.action == "purge" {
                    button type="submit" class="danger" { "Purge" }
                } @else {
                    button type="submit" { "Replay " (chosen.len()) " call(s)" }
                }
                " "
                a href="/parked" { "Cancel" }
            }
        },
    ))
}

/// Who published a call's report, in an operator's words.
fn came_by(published_by: Option<&str>) -> &str {
    match published_by {
        Some("callsync-ingest") => "by webhook, through ingest",
        Some(crate::reconcile::APP_ID) => "from the platform's call list, through the reconciler",
        Some(other) => other,
        None => "not recorded (claimed before the ledger kept it)",
    }
}
