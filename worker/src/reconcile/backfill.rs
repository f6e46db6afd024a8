//! `callsync-worker backfill`: one window of one platform's call list,
//! on demand, for the hours a webhook outage lost (docs/operations.md, "We were down for an hour").
//!
//! It walks the window as a scheduled round does, without a lease or a
//! checkpoint: running it twice, or beside the reconciler, queues nothing
//! twice that the ledger knows, and the worker's de-duplication makes any
//! call queued twice one effect.

use std::time::Duration;

use callsync_shared::config::parse_duration;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::round::{Counts, RoundError, Sink, Walker};
use super::{Outbox, Platform, Window};
use crate::ledger::Ledger;

/// A `--since`/`--until` value: a duration before now (`2h`, `3d`) or an
/// RFC 3339 time (`2026-11-30T09:00:00Z`).
pub fn parse_time(text: &str, now: OffsetDateTime) -> Result<OffsetDateTime, String> {
    if let Ok(ago) = parse_duration(text) {
        return Ok(now - ago);
    }
    OffsetDateTime::parse(text, &Rfc3339).map_err(|_| {
        format!(
            "expected a duration such as 2h or a time such as 2026-11-30T09:00:00Z, got {text:?}"
        )
    })
}

/// The window `[since, until)`, refused when empty.
pub fn window(since: OffsetDateTime, until: OffsetDateTime) -> Result<Window, String> {
    if since >= until {
        return Err(format!(
            "--since ({}) must be before --until ({})",
            since.format(&Rfc3339).unwrap_or_default(),
            until.format(&Rfc3339).unwrap_or_default()
        ));
    }
    Ok(Window {
        start: since,
        end: until,
    })
}

/// Walks `window` of `platform` to its end, calling `progress` after each
/// page with the counts so far. With `outbox` `None` it only counts.
pub async fn walk(
    platform: &dyn Platform,
    ledger: &Ledger,
    outbox: Option<&Outbox>,
    window: &Window,
    grace: Duration,
    mut progress: impl FnMut(&Counts),
) -> Result<Counts, (RoundError, Counts)> {
    let sink = outbox.map_or(Sink::DryRun, Sink::Queue);
    let mut walker = Walker::new(platform, ledger, sink, grace);
    let mut counts = Counts::default();
    let mut cursor = None;
    loop {
        let (found, next) = match walker.page(window, cursor.as_deref()).await {
            Ok(page) => page,
            Err(e) => return Err((e, counts)),
        };
        counts += found;
        progress(&counts);
        match next {
            Some(next) => cursor = Some(next),
            None => return Ok(counts),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_reads_a_duration_before_now_or_a_time() {
        let now = time::macros::datetime!(2026-11-30 12:00 UTC);
        assert_eq!(
            parse_time("2h", now).unwrap(),
            time::macros::datetime!(2026-11-30 10:00 UTC)
        );
        assert_eq!(
            parse_time("2026-11-29T08:30:00Z", now).unwrap(),
            time::macros::datetime!(2026-11-29 08:30 UTC)
        );
        let error = parse_time("yesterday", now).unwrap_err();
        assert!(error.contains("\"yesterday\""), "{error}");
    }

    #[test]
    fn an_empty_window_is_refused() {
        let now = OffsetDateTime::now_utc();
        assert!(window(now, now).is_err());
        assert!(window(now - Duration::from_secs(60), now).is_ok());
    }
}
