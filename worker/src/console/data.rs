//! What the console reads from the ledger: counts for the overview, the
//! calls search and one call's rows. Read-only: the console changes calls
//! only through the parking queue, as the worker would.

use callsync_shared::{Phone, Region};
use sqlx::{PgPool, Postgres, QueryBuilder, Row};
use time::OffsetDateTime;

use crate::ledger::{LedgerError, Receipt};

/// Calls synced, in retry and parked in the last hour and day, and now.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    pub synced_hour: i64,
    pub synced_day: i64,
    pub retry_hour: i64,
    pub retry_day: i64,
    pub parked_hour: i64,
    pub parked_day: i64,
    /// Pending now: being synced or waiting for a retry.
    pub pending_now: i64,
    /// Of those, released after a failed attempt (waiting for a retry).
    pub retry_now: i64,
    pub parked_now: i64,
}

/// A live worker and whether it is paused.
#[derive(Debug, Clone)]
pub struct WorkerRow {
    pub crm: String,
    pub last_seen: OffsetDateTime,
    pub paused_reason: Option<String>,
    pub paused_detail: Option<String>,
}

/// A platform's reconcile state.
#[derive(Debug, Clone)]
pub struct RoundRow {
    pub source: String,
    pub last_success_at: Option<OffsetDateTime>,
    pub last_window_end: Option<OffsetDateTime>,
    pub last_listed: Option<i64>,
    pub last_queued: Option<i64>,
    pub last_error: Option<String>,
    pub due_at: OffsetDateTime,
    /// The round in progress: its window's start, and what it queued so far.
    pub running_since: Option<OffsetDateTime>,
    pub queued: i64,
}

/// One call's row.
#[derive(Debug, Clone)]
pub struct CallRow {
    pub source: String,
    pub call_id: String,
    pub status: String,
    pub attempts: i32,
    pub contact_id: Option<String>,
    pub first_seen_at: OffsetDateTime,
    pub synced_at: Option<OffsetDateTime>,
    pub parked_at: Option<OffsetDateTime>,
    pub last_error: Option<String>,
}

/// One CRM step of a call.
#[derive(Debug, Clone)]
pub struct StepRow {
    pub step: String,
    pub state: String,
    pub crm_object_id: Option<String>,
    pub started_at: OffsetDateTime,
    pub done_at: Option<OffsetDateTime>,
}

/// The calls search, as typed into its form (empty fields are ignored).
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct Search {
    #[serde(default)]
    pub call_id: String,
    #[serde(default)]
    pub phone: String,
    #[serde(default)]
    pub contact: String,
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub to: String,
    /// Read by [`Search::page_number`], so that a bad value gets the
    /// console's own refusal page.
    #[serde(default)]
    pub page: String,
}

impl Search {
    /// The page asked for, counted from 0.
    pub fn page_number(&self) -> Result<u32, String> {
        match self.page.trim() {
            "" => Ok(0),
            text => text
                .parse::<u32>()
                .ok()
                .filter(|n| *n <= 100_000)
                .ok_or_else(|| format!("{text:?} is not a page number")),
        }
    }
}

/// Calls per page of the search.
pub const PAGE: i64 = 50;

/// The statuses a call can have.
pub const STATUSES: [&str; 3] = ["pending", "synced", "parked"];

/// A page of the search, and whether there is a next one.
#[derive(Debug, Clone, Default)]
pub struct Found {
    pub calls: Vec<CallRow>,
    pub more: bool,
    /// The number as the search looked it up (E.164 when it parses).
    pub phone_as: Option<String>,
}

const CALL_COLUMNS: &str = "source, call_id, status, attempts, contact_id, first_seen_at, \
                            synced_at, parked_at, last_error";

fn call_row(row: &sqlx::postgres::PgRow) -> Result<CallRow, sqlx::Error> {
    Ok(CallRow {
        source: row.try_get("source")?,
        call_id: row.try_get("call_id")?,
        status: row.try_get("status")?,
        attempts: row.try_get("attempts")?,
        contact_id: row.try_get("contact_id")?,
        first_seen_at: row.try_get("first_seen_at")?,
        synced_at: row.try_get("synced_at")?,
        parked_at: row.try_get("parked_at")?,
        last_error: row.try_get("last_error")?,
    })
}

pub async fn counts(pool: &PgPool) -> Result<Counts, LedgerError> {
    let row = sqlx::query(
        "SELECT
            count(*) FILTER (WHERE status = 'synced' AND synced_at > now() - interval '1 hour') AS synced_hour,
            count(*) FILTER (WHERE status = 'synced' AND synced_at > now() - interval '1 day') AS synced_day
           FROM calls WHERE synced_at > now() - interval '1 day'",
    )
    .fetch_one(pool)
    .await?;
    let unsynced = sqlx::query(
        "SELECT
            count(*) FILTER (WHERE status = 'pending') AS pending_now,
            count(*) FILTER (WHERE status = 'pending' AND last_error IS NOT NULL) AS retry_now,
            count(*) FILTER (WHERE status = 'pending' AND last_error IS NOT NULL
                               AND first_seen_at > now() - interval '1 hour') AS retry_hour,
            count(*) FILTER (WHERE status = 'pending' AND last_error IS NOT NULL
                               AND first_seen_at > now() - interval '1 day') AS retry_day,
            count(*) FILTER (WHERE status = 'parked') AS parked_now,
            count(*) FILTER (WHERE status = 'parked' AND parked_at > now() - interval '1 hour') AS parked_hour,
            count(*) FILTER (WHERE status = 'parked' AND parked_at > now() - interval '1 day') AS parked_day
           FROM calls WHERE status <> 'synced'",
    )
    .fetch_one(pool)
    .await?;
    Ok(Counts {
        synced_hour: row.try_get("synced_hour")?,
        synced_day: row.try_get("synced_day")?,
        retry_hour: unsynced.try_get("retry_hour")?,
        retry_day: unsynced.try_get("retry_day")?,
        parked_hour: unsynced.try_get("parked_hour")?,
        parked_day: unsynced.try_get("parked_day")?,
        pending_now: unsynced.try_get("pending_now")?,
        retry_now: unsynced.try_get("retry_now")?,
        parked_now: unsynced.try_get("parked_now")?,
    })
}

/// Workers seen within the last 10 seconds (they beat every 2).
pub async fn workers(pool: &PgPool) -> Result<Vec<WorkerRow>, LedgerError> {
    let rows = sqlx::query(
        "SELECT crm, last_seen, paused_reason, paused_detail FROM workers
          WHERE last_seen > now() - interval '10 seconds' ORDER BY id",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(WorkerRow {
                crm: row.try_get("crm")?,
                last_seen: row.try_get("last_seen")?,
                paused_reason: row.try_get("paused_reason")?,
                paused_detail: row.try_get("paused_detail")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Into::into)
}

pub async fn rounds(pool: &PgPool) -> Result<Vec<RoundRow>, LedgerError> {
    let rows = sqlx::query(
        "SELECT source, last_success_at, last_window_end, last_listed, last_queued, last_error,
                due_at, window_start, queued
           FROM reconcile_rounds ORDER BY source",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(RoundRow {
                source: row.try_get("source")?,
                last_success_at: row.try_get("last_success_at")?,
                last_window_end: row.try_get("last_window_end")?,
                last_listed: row.try_get("last_listed")?,
                last_queued: row.try_get("last_queued")?,
                last_error: row.try_get("last_error")?,
                due_at: row.try_get("due_at")?,
                running_since: row.try_get("window_start")?,
                queued: row.try_get("queued")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Into::into)
}

/// The contact ids the ledger resolved a phone number to, however it was
/// typed: parsed as the worker parses a caller's number (E.164 with the
/// default region), and also as typed, for numbers that were stored raw.
pub async fn contacts_of_number(
    pool: &PgPool,
    typed: &str,
    region: Region,
) -> Result<(String, Vec<String>), LedgerError> {
    let phone = Phone::parse(typed.trim(), region);
    let keys = vec![
        format!("phone:{}", phone.best()),
        format!("phone:{}", typed.trim()),
    ];
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT contact_id FROM contacts
          WHERE lookup_key = ANY($1) AND contact_id IS NOT NULL",
    )
    .bind(&keys)
    .fetch_all(pool)
    .await?;
    Ok((phone.best().to_owned(), ids))
}

/// A page of calls matching the search, newest first.
pub async fn search(
    pool: &PgPool,
    search: &Search,
    page: u32,
    range: (Option<OffsetDateTime>, Option<OffsetDateTime>),
    region: Region,
) -> Result<Found, LedgerError> {
    let mut found = Found::default();
    let mut contact_ids: Option<Vec<String>> = None;
    if !search.phone.trim().is_empty() {
        let (as_e164, ids) = contacts_of_number(pool, &search.phone, region).await?;
        found.phone_as = Some(as_e164);
        if ids.is_empty() {
            return Ok(found);
        }
        contact_ids = Some(ids);
    }
    let mut q: QueryBuilder<Postgres> =
        QueryBuilder::new(format!("SELECT {CALL_COLUMNS} FROM calls c WHERE true"));
    if !search.call_id.trim().is_empty() {
        // The ids that start with it, as a range over the byte-ordered
        // index (every such id sorts between the prefix and the prefix
        // followed by the highest code point), then checked exactly.
        let prefix = search.call_id.trim().to_owned();
        q.push(" AND c.call_id COLLATE \"C\" >= ")
            .push_bind(prefix.clone())
            .push(" AND c.call_id COLLATE \"C\" < ")
            .push_bind(format!("{prefix}\u{10FFFF}"))
            .push(" AND starts_with(c.call_id, ")
            .push_bind(prefix)
            .push(")");
    }
    if !search.source.is_empty() {
        q.push(" AND c.source = ").push_bind(search.source.clone());
    }
    if !search.status.is_empty() {
        q.push(" AND c.status = ").push_bind(search.status.clone());
    }
    if let Some(from) = range.0 {
        q.push(" AND c.first_seen_at >= ").push_bind(from);
    }
    if let Some(to) = range.1 {
        q.push(" AND c.first_seen_at < ").push_bind(to);
    }
    let by_contact = |q: &mut QueryBuilder<Postgres>, ids: Vec<String>| {
        // A synced call names its contact; one still pending or parked may
        // have resolved it in its contact step. A union of the two index
        // lookups, which an OR of them would turn into a scan of every call.
        q.push(" AND (c.source, c.call_id) IN (SELECT source, call_id FROM calls WHERE contact_id = ANY(")
            .push_bind(ids.clone())
            .push(") UNION SELECT source, call_id FROM call_steps WHERE step = 'contact' AND crm_object_id = ANY(")
            .push_bind(ids)
            .push("))");
    };
    if let Some(ids) = contact_ids {
        by_contact(&mut q, ids);
    }
    if !search.contact.trim().is_empty() {
        by_contact(&mut q, vec![search.contact.trim().to_owned()]);
    }
    q.push(" ORDER BY c.first_seen_at DESC, c.source, c.call_id LIMIT ")
        .push_bind(PAGE + 1)
        .push(" OFFSET ")
        .push_bind(i64::from(page) * PAGE);
    let rows = q.build().fetch_all(pool).await?;
    let mut calls = rows
        .iter()
        .map(call_row)
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    found.more = calls.len() as i64 > PAGE;
    calls.truncate(PAGE as usize);
    found.calls = calls;
    Ok(found)
}

pub async fn call(
    pool: &PgPool,
    source: &str,
    call_id: &str,
) -> Result<Option<CallRow>, LedgerError> {
    let row = sqlx::query(
        "SELECT source, call_id, status, attempts, contact_id, first_seen_at,
                synced_at, parked_at, last_error
           FROM calls WHERE source = $1 AND call_id = $2",
    )
    .bind(source)
    .bind(call_id)
    .fetch_optional(pool)
    .await?;
    Ok(row.as_ref().map(call_row).transpose()?)
}

/// How the call's report reached callsync, as its first claim recorded it
/// (empty for a call claimed before the ledger kept it).
pub async fn receipt(pool: &PgPool, source: &str, call_id: &str) -> Result<Receipt, LedgerError> {
    let row = sqlx::query(
        "SELECT received_at, published_by, verified_by
           FROM calls WHERE source = $1 AND call_id = $2",
    )
    .bind(source)
    .bind(call_id)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        return Ok(Receipt::default());
    };
    Ok(Receipt {
        received_at: row.try_get("received_at")?,
        published_by: row.try_get("published_by")?,
        verified_by: row.try_get("verified_by")?,
    })
}

/// A call's steps, in the order the worker performs them.
pub async fn steps(
    pool: &PgPool,
    source: &str,
    call_id: &str,
) -> Result<Vec<StepRow>, LedgerError> {
    let rows = sqlx::query(
        "SELECT step, state, crm_object_id, started_at, done_at FROM call_steps
          WHERE source = $1 AND call_id = $2
          ORDER BY array_position(ARRAY['contact', 'call_log', 'contact_update', 'follow_up_task'], step)",
    )
    .bind(source)
    .bind(call_id)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(StepRow {
                step: row.try_get("step")?,
                state: row.try_get("state")?,
                crm_object_id: row.try_get("crm_object_id")?,
                started_at: row.try_get("started_at")?,
                done_at: row.try_get("done_at")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Into::into)
}

/// The numbers (or addresses) the ledger looked a contact up by, as stored.
pub async fn lookup_keys(pool: &PgPool, contact_id: &str) -> Result<Vec<String>, LedgerError> {
    let keys: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT lookup_key FROM contacts WHERE contact_id = $1 ORDER BY lookup_key",
    )
    .bind(contact_id)
    .fetch_all(pool)
    .await?;
    Ok(keys)
}

/// The ledger rows of the given calls, in their order (`None` for a call
/// the ledger does not know), for a replay's result: one query however many.
pub async fn statuses(
    pool: &PgPool,
    calls: &[(String, String)],
) -> Result<Vec<Option<CallRow>>, LedgerError> {
    let sources: Vec<&str> = calls.iter().map(|(s, _)| s.as_str()).collect();
    let ids: Vec<&str> = calls.iter().map(|(_, c)| c.as_str()).collect();
    let rows = sqlx::query(
        "SELECT c.source, c.call_id, c.status, c.attempts, c.contact_id, c.first_seen_at,
                c.synced_at, c.parked_at, c.last_error
           FROM calls c JOIN unnest($1::text[], $2::text[]) AS k(source, call_id)
             ON c.source = k.source AND c.call_id = k.call_id",
    )
    .bind(&sources)
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    let found = rows
        .iter()
        .map(call_row)
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(calls
        .iter()
        .map(|(source, call_id)| {
            found
                .iter()
                .find(|r| r.source == *source && r.call_id == *call_id)
                .cloned()
        })
        .collect())
}

/// Reads `2026-12-04`, `2026-12-04T09:30` (what a browser's date and
/// datetime-local inputs send) or RFC 3339, as UTC unless an offset is given.
pub fn parse_time(text: &str) -> Result<Option<OffsetDateTime>, String> {
    use time::format_description::well_known::Rfc3339;
    use time::macros::format_description;
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(Some(t));
    }
    let minutes = format_description!("[year]-[month]-[day]T[hour]:[minute]");
    let seconds = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    if let Ok(t) = time::PrimitiveDateTime::parse(text, &minutes)
        .or_else(|_| time::PrimitiveDateTime::parse(text, &seconds))
    {
        return Ok(Some(t.assume_utc()));
    }
    if let Ok(d) = time::Date::parse(text, format_description!("[year]-[month]-[day]")) {
        return Ok(Some(d.midnight().assume_utc()));
    }
    Err(format!(
        "{text:?} is not a time: use 2026-12-04, 2026-12-04T09:30 (UTC) or RFC 3339"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_read_as_browsers_send_them() {
        assert_eq!(
            parse_time("2026-12-04").unwrap().unwrap().unix_timestamp(),
            1_796_342_400
        );
        assert_eq!(
            parse_time("2026-12-04T01:00")
                .unwrap()
                .unwrap()
                .unix_timestamp(),
            1_796_342_400 + 3_600
        );
        assert_eq!(
            parse_time("2026-12-04T02:00:00+01:00")
                .unwrap()
                .unwrap()
                .unix_timestamp(),
            1_796_342_400 + 3_600
        );
        assert_eq!(parse_time(" ").unwrap(), None);
        assert!(parse_time("friday").is_err());
    }
}
