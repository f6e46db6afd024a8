//! A started simulator and an HTTP client speaking to it as each vendor's
//! clients do (credentials in the vendor's header, its API version), for
//! the tests that check what the simulator accepts and refuses.

use std::net::SocketAddr;

use reqwest::{Client, Method, RequestBuilder, StatusCode};
use serde_json::Value;

use super::{CrmSim, SimConfig};

#[derive(Debug)]
pub struct SimClient {
    pub sim: CrmSim,
    client: Client,
}

impl std::ops::Deref for SimClient {
    type Target = CrmSim;

    fn deref(&self) -> &CrmSim {
        &self.sim
    }
}

impl SimClient {
    /// A simulator with the default configuration on a free port.
    pub async fn start() -> Self {
        let sim = CrmSim::start(SocketAddr::from(([127, 0, 0, 1], 0)), SimConfig::default())
            .await
            .unwrap_or_else(|e| panic!("crm-sim does not start: {e}"));
        Self {
            sim,
            client: Client::new(),
        }
    }

    /// A request to `path`, without credentials.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.sim.base_url()))
    }

    /// A request to HubSpot's API with the simulator's token.
    pub fn hubspot(&self, method: Method, path: &str) -> RequestBuilder {
        self.request(method, path).bearer_auth(self.sim.token())
    }

    /// A request to Salesforce's REST API (v60.0) with the token.
    pub fn salesforce(&self, method: Method, path: &str) -> RequestBuilder {
        self.request(method, &format!("/services/data/v60.0{path}"))
            .bearer_auth(self.sim.token())
    }

    /// A request to Pipedrive's API with the token in its header.
    pub fn pipedrive(&self, method: Method, path: &str) -> RequestBuilder {
        self.request(method, path)
            .header("x-api-token", self.sim.token())
    }

    /// A request to GoHighLevel's API (version 2021-07-28) with the token.
    pub fn gohighlevel(&self, method: Method, path: &str) -> RequestBuilder {
        self.hubspot(method, path).header("Version", "2021-07-28")
    }
}

/// Sends `request` and returns the status and the JSON body (`Null` when
/// empty).
pub async fn send(request: RequestBuilder) -> (StatusCode, Value) {
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("crm-sim does not answer: {e}"));
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
    };
    (status, body)
}

/// Sends `request`, asserts the answer's status is `status` and returns
/// its JSON body.
pub async fn expect(status: StatusCode, request: RequestBuilder) -> Value {
    let (answered, body) = send(request).await;
    assert_eq!(answered, status, "{body}");
    body
}
