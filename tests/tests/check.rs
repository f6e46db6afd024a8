//! `callsync-worker check` against crm-sim, the local broker and database:
//! every line ✓ and exit 0 for a good set-up of each CRM; for each kind of
//! fault (wrong token, missing scope, database down, broker down) its ✗
//! line, naming what to fix, and a non-zero exit. Test names read
//! `<scenario>::<crm>` where they run per CRM.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use callsync_shared::config::Env;
use callsync_tests::app::TestApp;
use callsync_tests::harness::run_check;

/// What one run of `check` printed, and whether it exited 0.
#[derive(Debug)]
struct Checked {
    success: bool,
    lines: Vec<String>,
}

impl Checked {
    /// The one line about `requirement` (its text after the mark).
    fn line(&self, requirement: &str) -> &str {
        let found: Vec<&String> = self
            .lines
            .iter()
            .filter(|l| {
                // "<mark> <requirement>: <detail>"
                let rest: String = l.chars().skip(2).collect();
                rest.starts_with(&format!("{requirement}:"))
            })
            .collect();
        assert_eq!(found.len(), 1, "one line about {requirement}: {self:#?}");
        found[0]
    }

    fn marks(&self) -> Vec<char> {
        self.lines
            .iter()
            .filter_map(|l| l.chars().next())
            .filter(|c| matches!(c, '✓' | '✗' | '·'))
            .collect()
    }
}

async fn check(env: &Env) -> Checked {
    let (success, lines) = run_check(env).await;
    Checked { success, lines }
}

async fn a_good_set_up_passes_every_check(crm: &'static str) {
    let app = TestApp::builder().crm(crm).workers(0).start().await;
    let checked = check(&app.worker_env()).await;
    assert!(checked.success, "{checked:#?}");
    let marks = checked.marks();
    assert!(
        marks.len() >= 5 && marks.iter().all(|m| *m == '✓'),
        "{checked:#?}"
    );
    assert!(
        checked
            .lines
            .last()
            .is_some_and(|l| l.starts_with("all ") && l.ends_with("requirements hold")),
        "{checked:#?}"
    );
    // Creating the custom fields is the only change in the CRM.
    let s = app.snapshot();
    assert!(
        s.contacts.is_empty() && s.calls.is_empty() && s.tasks.is_empty(),
        "{s:?}"
    );
    app.shutdown().await;
}

async fn a_refused_token_fails_the_credential_line_and_names_the_variable(crm: &'static str) {
    let app = TestApp::builder().crm(crm).workers(0).start().await;
    // The worker keeps the token it was given; the CRM stops accepting it.
    let env = app.worker_env();
    app.env.sim.set_token("rotated-in-the-crm");
    let checked = check(&env).await;
    assert!(!checked.success, "{checked:#?}");
    let line = checked.line(&format!("{crm} credential accepted"));
    assert!(line.starts_with('✗'), "{line}");
    assert!(
        line.contains("CALLSYNC_"),
        "the line names what to set: {line}"
    );
    assert!(
        checked.line("contact search accepted").starts_with('·'),
        "what needs the credential is not checked again: {checked:#?}"
    );
    app.shutdown().await;
}

callsync_tests::for_crms!(
    [hubspot, pipedrive, gohighlevel, salesforce]:
    a_good_set_up_passes_every_check,
    a_refused_token_fails_the_credential_line_and_names_the_variable,
);

#[test]
fn the_suite_runs_every_registered_crm_that_keeps_contacts() {
    assert_eq!(LISTED_CRMS, callsync_tests::harness::crms_with_contacts());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hubspot_token_without_a_scope_fails_that_scopes_line() {
    let app = TestApp::builder().crm("hubspot").workers(0).start().await;
    app.env
        .sim
        .grant_hubspot_scopes(&["crm.objects.contacts.read", "crm.objects.contacts.write"]);
    let checked = check(&app.worker_env()).await;
    assert!(!checked.success, "{checked:#?}");
    let scope = checked.line("permission crm.schemas.contacts.write");
    assert!(
        scope.starts_with('✗') && scope.contains("missing"),
        "{scope}"
    );
    assert!(
        checked
            .line("permission crm.objects.contacts.read")
            .starts_with('✓')
    );
    // Creating the custom fields is refused for the same reason, and says so.
    let fields = checked.line("custom fields present or created");
    assert!(
        fields.starts_with('✗') && fields.contains("MISSING_SCOPES"),
        "{fields}"
    );
    assert!(checked.line("contact search accepted").starts_with('✓'));
    app.shutdown().await;
}

/// `check` with `variable` set to `url`, a service on port 1 on loopback
/// (nothing listens: the connection is refused): the `failing` line fails
/// and names the variable, the `passing` line still passes.
async fn an_unreachable_service_fails_its_line(
    variable: &str,
    url: &str,
    failing: &str,
    passing: &str,
) {
    let app = TestApp::builder().crm("hubspot").workers(0).start().await;
    let checked = check(&app.worker_env().with(variable, url)).await;
    assert!(!checked.success, "{checked:#?}");
    let line = checked.line(failing);
    assert!(line.starts_with('✗') && line.contains(variable), "{line}");
    assert!(checked.line(passing).starts_with('✓'));
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_fails_the_database_line() {
    an_unreachable_service_fails_its_line(
        "CALLSYNC_DATABASE_URL",
        "postgres://postgres@127.0.0.1:1/callsync",
        "database reachable and migrated",
        "broker reachable and queues declared",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_fails_the_broker_line() {
    an_unreachable_service_fails_its_line(
        "CALLSYNC_AMQP_URL",
        "amqp://guest:guest@127.0.0.1:1/%2f",
        "broker reachable and queues declared",
        "database reachable and migrated",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_target_passes_when_its_url_answers_and_fails_when_it_does_not() {
    let app = TestApp::builder().crm("webhook").workers(0).start().await;
    let checked = check(&app.worker_env()).await;
    assert!(checked.success, "{checked:#?}");
    assert!(checked.line("webhook target answers").starts_with('✓'));

    let env = app
        .worker_env()
        .with("CALLSYNC_WEBHOOK_URL", "http://127.0.0.1:1/hooks/callsync");
    let checked = check(&env).await;
    assert!(!checked.success, "{checked:#?}");
    let line = checked.line("webhook target answers");
    assert!(
        line.starts_with('✗') && line.contains("reachable"),
        "{line}"
    );
    app.shutdown().await;
}

/// Every scope the gohighlevel adapter uses, from GoHighLevel's OpenAPI
/// files: `check` proves each with a request that needs it and names the
/// one missing, whichever it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gohighlevel_token_without_a_scope_fails_that_scopes_line_and_only_it() {
    use callsync_tests::sim::gohighlevel::ALL_SCOPES;
    let app = TestApp::builder()
        .crm("gohighlevel")
        .workers(0)
        .start()
        .await;
    for missing in ALL_SCOPES {
        let held: Vec<&str> = ALL_SCOPES.into_iter().filter(|s| *s != missing).collect();
        app.env.sim.grant_gohighlevel_scopes(&held);
        let checked = check(&app.worker_env()).await;
        assert!(!checked.success, "{checked:#?}");
        let line = checked.line(&format!("permission {missing}"));
        assert!(
            line.starts_with('✗') && line.contains("missing") && line.contains(missing),
            "{line}"
        );
        for scope in &held {
            let line = checked.line(&format!("permission {scope}"));
            assert!(line.starts_with('✓'), "{line}");
        }
    }
    // Proving the scopes created nothing: no contact, and no field but
    // callsync's three (made by the runs whose token could make them).
    let s = app.snapshot();
    assert!(s.contacts.is_empty() && s.calls.is_empty(), "{s:?}");
    app.shutdown().await;
}

/// A Salesforce org where the admin created the marker but not all the
/// last-call fields, and the marker without its External ID flag: the
/// custom fields' line names each, and the credential still holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_salesforce_org_without_a_custom_field_fails_the_fields_line_naming_each() {
    use callsync_tests::sim::salesforce::Org;
    let app = TestApp::builder()
        .crm("salesforce")
        .workers(0)
        .start()
        .await;
    app.env.sim.set_salesforce_org(Org {
        missing_fields: vec![
            ("Contact".into(), "Callsync_Last_Call_At__c".into()),
            ("Lead".into(), "Callsync_Last_Sentiment__c".into()),
        ],
        ..Org::default()
    });
    let checked = check(&app.worker_env()).await;
    assert!(!checked.success, "{checked:#?}");
    assert!(
        checked
            .line("salesforce credential accepted")
            .starts_with('✓')
    );
    let fields = checked.line("custom fields present or created");
    assert!(fields.starts_with('✗'), "{fields}");
    for named in [
        "Contact.Callsync_Last_Call_At__c is missing",
        "Lead.Callsync_Last_Sentiment__c is missing",
    ] {
        assert!(fields.contains(named), "{fields}");
    }
    assert!(
        !fields.contains("Task.Callsync_Marker__c"),
        "only the missing ones: {fields}"
    );
    app.shutdown().await;
}
