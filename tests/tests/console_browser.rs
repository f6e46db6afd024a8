//! The operator console in a real browser: headless Chromium driven over
//! WebDriver (chromedriver). An operator signs in with the keyboard, searches
//! a number typed another way, opens the parked call's story, presses
//! replay and sees it synced, which the ledger and crm-sim confirm. Every
//! page is checked for the accessibility basics (a language, a title, one
//! `h1` and no skipped heading level, a label on every input, a name on
//! every link and button, header cells in every table), and every step is
//! taken with Tab and Enter only, so every action is keyboard-reachable.
//! Screenshots of the overview and of the call's story are written to
//! `CALLSYNC_BROWSER_SCREENSHOTS` (default: a directory under `target/`).
//!
//! It needs Debian's `chromium` and `chromium-driver`, so it runs only when
//! `CALLSYNC_BROWSER_TESTS=1` (`.ci/run` sets it after installing them);
//! otherwise it is listed as ignored, with the reason. That is why this
//! file has its own `main` (`harness = false`): the standard harness can
//! only ignore a test at compile time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use callsync_tests::app::TestApp;
use callsync_tests::console::{CONSOLE_TOKEN, ConsoleUnderTest};
use callsync_tests::harness::{SEED_000_CALL_ID, SEED_000_MARKER};
use callsync_tests::sim::Fault;
use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

const NAME: &str = "a_browser_signs_in_finds_a_parked_call_replays_it_and_sees_it_synced";
const OPT_IN: &str = "CALLSYNC_BROWSER_TESTS";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        println!("{NAME}: test");
        return ExitCode::SUCCESS;
    }
    if !selected(&args) {
        println!(
            "\nrunning 0 tests\n\ntest result: ok. 0 passed; 0 failed; 0 ignored; 1 filtered out\n"
        );
        return ExitCode::SUCCESS;
    }
    println!("\nrunning 1 test");
    if std::env::var(OPT_IN).as_deref() != Ok("1") {
        println!(
            "test {NAME} ... ignored, not run: needs headless Chromium over WebDriver; \
             install chromium and chromium-driver and set {OPT_IN}=1 (.ci/run does)"
        );
        println!("\ntest result: ok. 0 passed; 0 failed; 1 ignored; 0 filtered out\n");
        return ExitCode::SUCCESS;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    // A panic fails the test: the process exits non-zero with its message.
    runtime.block_on(in_a_browser());
    println!("test {NAME} ... ok");
    println!("\ntest result: ok. 1 passed; 0 failed; 0 ignored; 0 filtered out\n");
    ExitCode::SUCCESS
}

/// Whether the command line's name filters (if any) select this test.
fn selected(args: &[String]) -> bool {
    // Options of the standard harness that take a value.
    const VALUED: &[&str] = &[
        "--test-threads",
        "--skip",
        "--color",
        "--format",
        "--logfile",
        "-Z",
    ];
    let mut filters = Vec::new();
    let mut skip_next = false;
    for arg in args {
        if skip_next {
            skip_next = false;
        } else if VALUED.contains(&arg.as_str()) {
            skip_next = true;
        } else if !arg.starts_with('-') {
            filters.push(arg.as_str());
        }
    }
    let exact = args.iter().any(|a| a == "--exact");
    filters.is_empty()
        || filters
            .iter()
            .any(|f| if exact { *f == NAME } else { NAME.contains(f) })
}

/// chromedriver on a free port, killed when dropped.
struct Chromedriver {
    url: String,
    _process: tokio::process::Child,
}

impl Chromedriver {
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let program =
            std::env::var("CALLSYNC_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let process = tokio::process::Command::new(&program)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {program} ({e}): install chromium-driver, or unset {OPT_IN}")
            });
        let url = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        for _ in 0..100 {
            if client
                .get(format!("{url}/status"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Self {
                    url,
                    _process: process,
                };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{program} did not answer on port {port}");
    }

    async fn browser(&self) -> Client {
        let mut options = json!({
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-dev-shm-usage",
                "--disable-gpu",
                "--window-size=1280,1000",
            ]
        });
        if std::path::Path::new("/usr/bin/chromium").exists() {
            options["binary"] = json!("/usr/bin/chromium");
        }
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("goog:chromeOptions".to_owned(), options);
        ClientBuilder::rustls()
            .expect("a WebDriver client")
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .expect("a Chromium session")
    }
}

/// Presses one key in the page.
async fn press(browser: &Client, key: Key) {
    let key = char::from(key);
    let keys = KeyActions::new("keyboard".to_owned())
        .then(KeyAction::Down { value: key })
        .then(KeyAction::Up { value: key });
    browser.perform_actions(keys).await.expect("a key press");
}

/// Presses Tab until the focused element matches `selector`: proves it is
/// reachable with the keyboard.
async fn tab_to(browser: &Client, selector: &str) {
    for _ in 0..60 {
        press(browser, Key::Tab).await;
        let focused = browser
            .execute(
                "return !!document.activeElement && document.activeElement.matches(arguments[0]);",
                vec![json!(selector)],
            )
            .await
            .expect("a script");
        if focused == Value::Bool(true) {
            return;
        }
    }
    let page = browser.source().await.unwrap_or_default();
    panic!("Tab never reaches {selector}: {page}");
}

/// Tabs to `selector` and presses Enter, then waits for the next page.
async fn activate(browser: &Client, selector: &str, then_path: &str) {
    tab_to(browser, selector).await;
    press(browser, Key::Enter).await;
    wait_for_path(browser, then_path).await;
}

async fn wait_for_path(browser: &Client, path: &str) {
    for _ in 0..300 {
        let url = browser.current_url().await.expect("a URL");
        if url.path() == path {
            // The page has loaded once its main region is there.
            if browser.find(Locator::Css("main h1")).await.is_ok() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let url = browser.current_url().await.expect("a URL");
    panic!("expected {path}, the browser is at {url}");
}

/// The accessibility basics of the page in the browser.
async fn check_accessibility(browser: &Client, page: &str) {
    let problems = browser
        .execute(
            r#"
            const problems = [];
            if (!document.documentElement.lang) problems.push('no lang on <html>');
            if (!document.title.trim()) problems.push('no title');
            const h1s = document.querySelectorAll('h1').length;
            if (h1s !== 1) problems.push(h1s + ' h1 headings');
            let level = 0;
            for (const h of document.querySelectorAll('h1, h2, h3, h4, h5, h6')) {
                const l = Number(h.tagName[1]);
                if (l > level + 1) problems.push('heading level skips to ' + h.tagName + ': ' + h.textContent);
                level = l;
            }
            for (const el of document.querySelectorAll('input:not([type=hidden]), select, textarea')) {
                const byFor = el.id && document.querySelector('label[for="' + CSS.escape(el.id) + '"]');
                if (!byFor && !el.closest('label') && !el.getAttribute('aria-label'))
                    problems.push('no label: ' + el.outerHTML);
            }
            for (const el of document.querySelectorAll('a, button')) {
                if (!el.textContent.trim() && !el.getAttribute('aria-label'))
                    problems.push('no name: ' + el.outerHTML);
            }
            for (const t of document.querySelectorAll('table')) {
                if (!t.querySelector('th')) problems.push('a table without header cells');
            }
            if (!document.querySelector('main')) problems.push('no <main>');
            return problems;
            "#,
            vec![],
        )
        .await
        .expect("a script");
    assert_eq!(problems, json!([]), "accessibility of {page}");
}

async fn text(browser: &Client) -> String {
    browser
        .find(Locator::Css("main"))
        .await
        .expect("a main region")
        .text()
        .await
        .expect("its text")
}

async fn screenshot(browser: &Client, name: &str) {
    let dir = std::env::var("CALLSYNC_BROWSER_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots"));
    std::fs::create_dir_all(&dir).expect("the screenshot directory");
    let png = browser.screenshot().await.expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(dir.join(name), png).expect("the screenshot written");
}

async fn in_a_browser() {
    // Seed 000's call record refused once: the call is parked.
    let app = TestApp::spawn().await;
    app.env.sim.inject("create_call", Fault::Status(400), 1);
    app.post_fixture("voicedock_000_end_of_call_report.json")
        .await;
    app.settle().await;
    assert_eq!(app.parked().await.len(), 1);
    let console = ConsoleUnderTest::start(app.worker_env()).await;
    let driver = Chromedriver::start().await;
    let browser = driver.browser().await;
    let base = &console.base_url;

    // Not signed in: the sign-in form, filled and sent with the keyboard.
    browser
        .goto(&format!("{base}/"))
        .await
        .expect("the console");
    wait_for_path(&browser, "/login").await;
    check_accessibility(&browser, "the sign-in form").await;
    tab_to(&browser, "input#token").await;
    browser
        .active_element()
        .await
        .unwrap()
        .send_keys(&format!("{CONSOLE_TOKEN}{}", char::from(Key::Enter)))
        .await
        .unwrap();
    wait_for_path(&browser, "/").await;
    check_accessibility(&browser, "the overview").await;
    let overview = text(&browser).await;
    assert!(overview.contains("none paused"), "{overview}");
    screenshot(&browser, "console-overview.png").await;

    // The number, typed with spaces, finds the call.
    activate(&browser, r#"nav a[href="/calls"]"#, "/calls").await;
    check_accessibility(&browser, "the calls search").await;
    tab_to(&browser, "input#phone").await;
    browser
        .active_element()
        .await
        .unwrap()
        .send_keys(&format!("+31 6 12 34 56 78{}", char::from(Key::Enter)))
        .await
        .unwrap();
    for _ in 0..100 {
        if text(&browser).await.contains(SEED_000_CALL_ID) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(text(&browser).await.contains(SEED_000_CALL_ID));
    check_accessibility(&browser, "the search's results").await;

    // The parked calls, then the call's story.
    let story = format!("/calls/voicedock/{SEED_000_CALL_ID}");
    activate(&browser, r#"nav a[href="/parked"]"#, "/parked").await;
    check_accessibility(&browser, "the parked calls").await;
    assert!(
        text(&browser)
            .await
            .contains("call_log: CRM rejected the request (400)")
    );
    activate(&browser, &format!(r#"a[href="{story}"]"#), &story).await;
    check_accessibility(&browser, "the call's story").await;
    assert!(
        text(&browser)
            .await
            .contains("call_log: CRM rejected the request (400)")
    );

    // Replay: the confirmation, then the result.
    activate(
        &browser,
        r#"form[action="/parked/confirm"] button"#,
        "/parked/confirm",
    )
    .await;
    check_accessibility(&browser, "the confirmation").await;
    activate(
        &browser,
        r#"form[action="/parked/replay"] button[type="submit"]"#,
        "/parked/replay",
    )
    .await;
    check_accessibility(&browser, "the replay's result").await;
    let result = text(&browser).await;
    assert!(result.contains("Replayed 1 call(s)"), "{result}");
    assert!(result.contains("synced"), "{result}");

    // The ledger and the CRM agree.
    let s = app.settle().await;
    assert_eq!(s.call_markers(), [SEED_000_MARKER]);
    app.assert_ledger(1, 0).await;
    assert!(app.parked().await.is_empty());

    browser.goto(&format!("{base}{story}")).await.unwrap();
    wait_for_path(&browser, &story).await;
    check_accessibility(&browser, "the synced call's story").await;
    assert!(text(&browser).await.contains("synced"));
    screenshot(&browser, "console-call.png").await;

    browser.close().await.expect("the session closed");
    console.stop().await;
    app.shutdown().await;
}
