//! The text callsync writes into CRM records, shared by every adapter so
//! that a call looks the same whichever CRM it lands in.

use callsync_shared::{CallReport, Outcome, Transcript};

/// Longest summary written into a contact field: CRMs cap text fields
/// (HubSpot at 65 536 characters) and a last-call field is a glance, not an archive.
const FIELD_SUMMARY_MAX: usize = 1_000;

/// Escapes text for CRM fields that render HTML (HubSpot call and task
/// bodies, Pipedrive notes): a summary must never inject markup.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The call record's body: the platform, summary, sentiment, analysis,
/// links and the marker.
pub fn call_body_html(report: &CallReport) -> String {
    // A salesperson sees calls from several platforms on one contact.
    let mut parts = vec![format!(
        "<p><b>Platform:</b> {}</p>",
        escape(report.source.platform())
    )];
    // The CRMs without direction and outcome fields (Pipedrive notes,
    // GoHighLevel notes) show them here only.
    for (label, value) in line_facts(report) {
        parts.push(format!("<p><b>{label}:</b> {}</p>", escape(&value)));
    }
    if let Some(summary) = &report.summary {
        parts.push(format!("<p>{}</p>", escape(summary)));
    }
    if let Some(sentiment) = &report.sentiment {
        parts.push(format!("<p><b>Sentiment:</b> {}</p>", escape(sentiment)));
    }
    if !report.analysis.is_empty() {
        let items: Vec<String> = report
            .analysis
            .lines()
            .map(|line| format!("<li>{}</li>", escape(&line)))
            .collect();
        parts.push(format!("<p><b>Analysis</b></p><ul>{}</ul>", items.join("")));
    }
    if let Some(url) = &report.recording_url {
        parts.push(format!("<p><b>Recording:</b> {}</p>", escape(url)));
    }
    match &report.transcript {
        Some(Transcript::Uri(uri)) => {
            parts.push(format!("<p><b>Transcript:</b> {}</p>", escape(uri)));
        }
        Some(Transcript::Lines(lines)) => {
            let text: Vec<String> = lines
                .iter()
                .map(|l| format!("{}: {}", escape(&l.role), escape(&l.content)))
                .collect();
            parts.push(format!("<p><b>Transcript</b><br>{}</p>", text.join("<br>")));
        }
        None => {}
    }
    parts.push(format!("<p>{}</p>", escape(&report.marker())));
    parts.join("\n")
}

/// Whether a note's or task's text carries `marker` whole, as the bodies
/// above write it: HTML-escaped, alone in its paragraph. A bare substring
/// test would let `callsync:vapi:c1` find the record of call `c10`; the
/// escaped marker must stand between a tag, a line break or the text's
/// ends, none of which an escaped call id can hold (a printable id has no
/// line breaks, and its `<` and `>` are escaped).
pub fn holds_marker(text: &str, marker: &str) -> bool {
    let escaped = escape(marker);
    let edge = |c: Option<char>| matches!(c, None | Some('<' | '>' | '\n' | '\r'));
    text.match_indices(&escaped).any(|(at, found)| {
        edge(text[..at].chars().next_back()) && edge(text[at + found.len()..].chars().next())
    })
}

/// What happened on the line, as labelled lines: the direction, and the
/// outcome with the platform's own reason beside it (or the reason alone
/// when callsync cannot map it). A direction or reason the platform did
/// not report is left out rather than guessed.
pub fn line_facts(report: &CallReport) -> Vec<(&'static str, String)> {
    let mut facts = Vec::new();
    if let Some(direction) = report.direction {
        facts.push(("Direction", direction.to_string()));
    }
    let reason = report.ended_reason.as_deref();
    match (report.outcome, reason) {
        (Some(outcome), Some(reason)) => {
            facts.push(("Outcome", format!("{} ({reason})", outcome_words(outcome))));
        }
        (Some(outcome), None) => facts.push(("Outcome", outcome_words(outcome).to_owned())),
        (None, Some(reason)) => facts.push(("Ended", reason.to_owned())),
        (None, None) => {}
    }
    facts
}

/// An outcome as a person reads it.
pub fn outcome_words(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Connected => "connected",
        Outcome::Voicemail => "voicemail",
        Outcome::NoAnswer => "no answer",
        Outcome::Busy => "busy",
        Outcome::Failed => "failed",
    }
}

/// A one-line title for the call record, naming the platform.
pub fn call_title(report: &CallReport) -> String {
    format!(
        "AI call with {} ({})",
        report.caller.display_name(),
        report.source.platform()
    )
}

/// The follow-up task's subject, naming the caller.
pub fn task_subject(report: &CallReport) -> String {
    format!("Follow up: call from {}", report.caller.display_name())
}

/// The follow-up task's body: the summary and the marker.
pub fn task_body_html(report: &CallReport) -> String {
    let summary = report.summary.as_deref().unwrap_or("(no summary)");
    format!(
        "<p>{}</p>\n<p>{}</p>",
        escape(summary),
        escape(&report.marker())
    )
}

/// The summary for a contact's last-call field, shortened on a character boundary.
pub fn field_summary(report: &CallReport) -> String {
    let summary = report.summary.as_deref().unwrap_or_default();
    match summary.char_indices().nth(FIELD_SUMMARY_MAX) {
        Some((cut, _)) => format!("{}…", &summary[..cut]),
        None => summary.to_owned(),
    }
}

/// First and last name from a full name ("John Smith" → "John", "Smith").
pub fn split_name(name: &str) -> (String, Option<String>) {
    match name.trim().split_once(char::is_whitespace) {
        Some((first, last)) => (first.to_owned(), Some(last.trim().to_owned())),
        None => (name.trim().to_owned(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_is_found_whole_and_never_inside_a_longer_call_id_or_marker() {
        let body = |id: &str| format!("<p>Summary</p>\n<p>callsync:vapi:{id}</p>");
        assert!(holds_marker(&body("c1"), "callsync:vapi:c1"));
        // The marker of call c1 is a prefix of c10's and a suffix of x-c1's.
        assert!(!holds_marker(&body("c10"), "callsync:vapi:c1"));
        assert!(!holds_marker(&body("c1 x"), "callsync:vapi:c1"));
        assert!(!holds_marker(
            "<p>xcallsync:vapi:c1</p>",
            "callsync:vapi:c1"
        ));
        // Escaped as written, and whole when the CRM keeps the text only.
        assert!(holds_marker(
            "<p>callsync:vapi:a&amp;b</p>",
            "callsync:vapi:a&b"
        ));
        assert!(holds_marker(
            "Summary\ncallsync:vapi:c1",
            "callsync:vapi:c1"
        ));
        assert!(holds_marker("callsync:vapi:c1", "callsync:vapi:c1"));
        // Found at its second place when the first is another call's.
        let both = format!("{}\n<p>callsync:vapi:c1</p>", body("c10"));
        assert!(holds_marker(&both, "callsync:vapi:c1"));
    }

    #[test]
    fn markup_in_a_summary_is_escaped() {
        assert_eq!(
            escape("<b>hi</b> & 'x'"),
            "&lt;b&gt;hi&lt;/b&gt; &amp; &#39;x&#39;"
        );
    }

    #[test]
    fn the_call_record_names_the_platform() {
        let report = CallReport {
            source: callsync_shared::Source::Retell,
            call_id: callsync_shared::CallId::new("c-1").unwrap(),
            caller: callsync_shared::Caller {
                name: Some("Jordan".into()),
                ..Default::default()
            },
            ended_at: time::OffsetDateTime::UNIX_EPOCH,
            ended_at_is_receipt_time: false,
            duration: None,
            summary: None,
            sentiment: None,
            analysis: Default::default(),
            recording_url: None,
            transcript: None,
            crm_id: None,
            called_number: None,
            direction: None,
            ended_reason: None,
            outcome: None,
            agent_id: None,
            follow_up_needed: false,
            extra: Default::default(),
        };
        assert_eq!(call_title(&report), "AI call with Jordan (Retell AI)");
        let body = call_body_html(&report);
        assert!(
            body.starts_with("<p><b>Platform:</b> Retell AI</p>"),
            "{body}"
        );
        assert!(body.ends_with("<p>callsync:retell:c-1</p>"), "{body}");
        assert!(!body.contains("Direction"), "none reported, none written");

        let outbound = CallReport {
            direction: Some(callsync_shared::Direction::Outbound),
            ended_reason: Some("dial_no_answer".into()),
            outcome: Some(Outcome::NoAnswer),
            ..report.clone()
        };
        let body = call_body_html(&outbound);
        assert!(
            body.contains(
                "<p><b>Direction:</b> outbound</p>\n<p><b>Outcome:</b> no answer (dial_no_answer)</p>"
            ),
            "{body}"
        );
        let unmapped = CallReport {
            outcome: None,
            ended_reason: Some("ivr_reached".into()),
            ..report
        };
        assert!(call_body_html(&unmapped).contains("<p><b>Ended:</b> ivr_reached</p>"));
    }

    #[test]
    fn names_split_on_the_first_space() {
        assert_eq!(
            split_name("John Smith"),
            ("John".to_owned(), Some("Smith".to_owned()))
        );
        assert_eq!(
            split_name("Maria van der Berg"),
            ("Maria".to_owned(), Some("van der Berg".to_owned()))
        );
        assert_eq!(split_name("Cher"), ("Cher".to_owned(), None));
    }
}
