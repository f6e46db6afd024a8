//! The CRM set-up guides followed word for word against crm-sim: what
//! `docs/crm/gohighlevel.md` and `docs/crm/salesforce.md` tell an admin to
//! create (scopes; custom fields with their types and flags) is read from
//! the guide itself and made in the simulator, nothing more; then
//! `callsync-worker check` passes, prints the lines the guide shows, and a
//! call syncs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use callsync_shared::config::Env;
use callsync_tests::app::TestApp;
use callsync_tests::harness::{run_check, voicedock_marker, voicedock_report};
use callsync_tests::sim::salesforce::{Org, custom_fields};

fn guide(name: &str) -> String {
    let path = format!("{}/../docs/crm/{name}.md", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The section of `text` under the heading `heading` (any level), up to
/// the next heading of the same or a higher level.
fn section<'a>(text: &'a str, heading: &str) -> &'a str {
    let start = text
        .find(heading)
        .unwrap_or_else(|| panic!("no heading {heading:?}"));
    let level = heading.chars().take_while(|c| *c == '#').count();
    let rest = &text[start..];
    let body_start = rest.find('\n').map_or(rest.len(), |i| i + 1);
    let end = rest[body_start..]
        .match_indices("\n#")
        .find(|(i, _)| {
            let hashes = rest[body_start + i + 1..]
                .chars()
                .take_while(|c| *c == '#')
                .count();
            hashes <= level
        })
        .map_or(rest.len(), |(i, _)| body_start + i);
    &rest[..end]
}

/// The cells of the table rows of `text` (header and rule left out).
fn table_rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .filter(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| {
            l.trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_owned())
                .collect()
        })
        .collect()
}

/// The lines of the first `text` code block in `text`.
fn text_block(text: &str) -> Vec<String> {
    let start = text.find("```text\n").expect("a text block") + "```text\n".len();
    let end = start + text[start..].find("```").expect("the block ends");
    text[start..end].lines().map(str::to_owned).collect()
}

fn backticked(cell: &str) -> String {
    cell.trim_matches('`').to_owned()
}

async fn check(env: &Env) -> (bool, Vec<String>) {
    run_check(env).await
}

/// Posts one report with a follow-up and waits until it is synced.
async fn a_call_syncs(app: &TestApp, id: &str) {
    app.post_voicedock(voicedock_report(id, "+31612345678", true))
        .await;
    let s = app.settle().await;
    assert_eq!(s.call_markers(), [voicedock_marker(id)]);
    assert_eq!(s.task_markers(), [voicedock_marker(id)]);
    app.assert_ledger(1, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gohighlevel_guide_followed_word_for_word_passes_check_and_syncs_a_call() {
    let text = guide("gohighlevel");
    let scopes_section = section(&text, "## Credential and scopes");
    let scopes: Vec<String> = table_rows(scopes_section)
        .iter()
        .map(|row| backticked(&row[0]))
        .collect();
    assert_eq!(scopes.len(), 4, "{scopes:?}");
    let app = TestApp::builder()
        .crm("gohighlevel")
        .workers(1)
        .start()
        .await;
    // The token holds the scopes the guide's step 2 selects, no other.
    let step: String = scopes_section
        .lines()
        .skip_while(|l| !l.starts_with("2. Select the four scopes"))
        .take_while(|l| !l.starts_with("3. "))
        .collect::<Vec<_>>()
        .join(" ");
    assert!(!step.is_empty(), "the step selecting scopes");
    for scope in &scopes {
        assert!(step.contains(&format!("`{scope}`")), "step 2 names {scope}");
    }
    let granted: Vec<&str> = scopes.iter().map(String::as_str).collect();
    app.env.sim.grant_gohighlevel_scopes(&granted);

    let (success, lines) = check(&app.worker_env()).await;
    assert!(success, "{lines:#?}");
    // The guide's example shows the ✓ lines check prints, word for word.
    for shown in text_block(scopes_section)
        .iter()
        .filter(|l| l.starts_with('✓'))
    {
        assert!(lines.contains(shown), "check prints {shown:?}: {lines:#?}");
    }
    // And its ✗ line, for a token without the write scope of the fields.
    let example = text_block(scopes_section);
    let failing = example.iter().find(|l| l.starts_with('✗')).unwrap();
    let held: Vec<&str> = granted
        .iter()
        .copied()
        .filter(|s| *s != "locations/customFields.write")
        .collect();
    app.env.sim.grant_gohighlevel_scopes(&held);
    let (success, lines) = check(&app.worker_env()).await;
    assert!(!success);
    let prefix = failing.trim_end_matches('…');
    assert!(
        lines.iter().any(|l| l.starts_with(prefix)),
        "check prints {prefix:?}…: {lines:#?}"
    );
    app.env.sim.grant_gohighlevel_scopes(&granted);
    a_call_syncs(&app, "ghl-guide").await;
    app.shutdown().await;
}

/// The describe `type` of a field type as the guide names it.
fn describe_type(guide_type: &str) -> &'static str {
    match guide_type.split(',').next().unwrap_or_default().trim() {
        "Text" => "string",
        "Date/Time" => "datetime",
        "Long Text Area" => "textarea",
        other => panic!("the guide names a type crm-sim does not know: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_salesforce_guide_followed_word_for_word_passes_check_and_syncs_a_call() {
    let text = guide("salesforce");
    let fields = table_rows(section(&text, "### 1. The custom fields"));
    let all = custom_fields();
    // An org where the admin has created nothing yet.
    let mut org = Org {
        missing_fields: all
            .iter()
            .map(|(o, f, _)| ((*o).to_owned(), (*f).to_owned()))
            .collect(),
        marker_external_id: false,
        marker_unique: false,
        ..Org::default()
    };
    for row in &fields {
        let object = match row[0].as_str() {
            "Activity (Task)" => "Task",
            other => other,
        };
        let name = backticked(&row[2]);
        let known = all
            .iter()
            .find(|(o, f, _)| *o == object && *f == name)
            .unwrap_or_else(|| {
                panic!("the guide asks for {object}.{name}, which callsync does not write")
            });
        assert_eq!(describe_type(&row[3]), known.2, "{object}.{name}'s type");
        org.missing_fields
            .retain(|(o, f)| !(o == object && *f == name));
        if name == "Callsync_Marker__c" {
            org.marker_external_id = row[4].contains("External ID");
            org.marker_unique = row[4].contains("Unique");
        }
    }
    assert!(
        org.missing_fields.is_empty(),
        "the guide lists every field callsync writes: {:?}",
        org.missing_fields
    );
    let app = TestApp::builder()
        .crm("salesforce")
        .workers(1)
        .start()
        .await;
    app.env.sim.set_salesforce_org(org);

    let (success, lines) = check(&app.worker_env()).await;
    assert!(success, "{lines:#?}");
    for shown in text_block(section(&text, "### 4. Check")) {
        assert!(lines.contains(&shown), "check prints {shown:?}: {lines:#?}");
    }
    a_call_syncs(&app, "sf-guide").await;
    app.shutdown().await;
}

/// The guide's example of a failing check is what check prints for that
/// org: one field missing and the marker without its External ID flag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_salesforce_guide_s_failing_example_is_what_check_prints() {
    let text = guide("salesforce");
    let example = text_block(section(&text, "### 1. The custom fields"));
    let app = TestApp::builder()
        .crm("salesforce")
        .workers(0)
        .start()
        .await;
    app.env.sim.set_salesforce_org(Org {
        missing_fields: vec![("Contact".into(), "Callsync_Last_Call_At__c".into())],
        marker_external_id: false,
        ..Org::default()
    });
    let (success, lines) = check(&app.worker_env()).await;
    assert!(!success);
    assert!(
        lines.contains(&example[0]),
        "{:?} in {lines:#?}",
        example[0]
    );
    app.shutdown().await;
}
