//! The operator console for one test: `callsync-worker console` served
//! in-process on a free port, against the app's ledger and queues, and a
//! client that sees every answer as it is (no redirect followed, cookies
//! handled by hand so that a test can leave them out).

use callsync_shared::config::Env;
use callsync_worker::console::{ConsoleConfig, Server};
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};

use crate::harness::WAIT;

/// The token the tests' console accepts.
pub const CONSOLE_TOKEN: &str = "console-token-for-tests-0123456789";

/// A running console.
#[derive(Debug)]
pub struct ConsoleUnderTest {
    pub base_url: String,
    pub client: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

/// An answer: status, headers that matter, body.
#[derive(Debug)]
pub struct Page {
    pub status: StatusCode,
    pub location: Option<String>,
    pub set_cookie: Option<String>,
    pub body: String,
}

impl ConsoleUnderTest {
    /// Starts the console with the worker's variables `worker_env` (its
    /// broker, database and CRM) plus the console's own.
    pub async fn start(worker_env: Env) -> Self {
        let env = worker_env
            .with("CALLSYNC_CONSOLE_TOKEN", CONSOLE_TOKEN)
            .with("CALLSYNC_CONSOLE_ADDR", "127.0.0.1:0")
            .with("CALLSYNC_CONSOLE_HUBSPOT_PORTAL_ID", "4242")
            .with("CALLSYNC_CONSOLE_GRAFANA_URL", "http://grafana.test:3000");
        Self::start_with(env).await
    }

    pub async fn start_with(env: Env) -> Self {
        let config = ConsoleConfig::from_env(&env).expect("the console's configuration");
        let server = Server::build(config).await.expect("the console starts");
        let addr = server.addr().expect("a bound address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = server
                .run_until(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Self {
            base_url: format!("http://{addr}"),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(WAIT)
                .build()
                .expect("an HTTP client"),
            stop: Some(stop),
            task,
        }
    }

    async fn page(response: reqwest::Response) -> Page {
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let (location, set_cookie) = (header(LOCATION), header(SET_COOKIE));
        let status = response.status();
        Page {
            status,
            location,
            set_cookie,
            body: response.text().await.unwrap_or_default(),
        }
    }

    /// GETs `path` with `cookie` (a session cookie's `name=value`), if any.
    pub async fn get(&self, path: &str, cookie: Option<&str>) -> Page {
        let mut request = self.client.get(format!("{}{path}", self.base_url));
        if let Some(cookie) = cookie {
            request = request.header(COOKIE, cookie);
        }
        Self::page(request.send().await.expect("the console answers")).await
    }

    /// GETs `path` with `Authorization: Bearer <token>`.
    pub async fn get_bearer(&self, path: &str, token: &str) -> Page {
        let request = self
            .client
            .get(format!("{}{path}", self.base_url))
            .bearer_auth(token);
        Self::page(request.send().await.expect("the console answers")).await
    }

    /// POSTs a form to `path` with `cookie`, if any.
    pub async fn post(&self, path: &str, cookie: Option<&str>, form: &[(&str, &str)]) -> Page {
        let mut request = self
            .client
            .post(format!("{}{path}", self.base_url))
            .form(form);
        if let Some(cookie) = cookie {
            request = request.header(COOKIE, cookie);
        }
        Self::page(request.send().await.expect("the console answers")).await
    }

    /// Signs in with the token and returns the session cookie (`name=value`).
    pub async fn login(&self) -> String {
        let page = self
            .post("/login", None, &[("token", CONSOLE_TOKEN), ("next", "/")])
            .await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
        let set = page.set_cookie.expect("the login sets a cookie");
        set.split(';').next().expect("name=value").to_owned()
    }

    /// The CSRF token a page's forms carry.
    pub fn csrf(page: &Page) -> String {
        let marker = "name=\"csrf\" value=\"";
        let start = page.body.find(marker).expect("a form with a CSRF token") + marker.len();
        let end = page.body[start..].find('"').expect("the value's end");
        page.body[start..start + end].to_owned()
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for ConsoleUnderTest {
    fn drop(&mut self) {
        self.task.abort();
    }
}
