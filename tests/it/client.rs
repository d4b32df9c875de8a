//! The one HTTP client every test talks to the Admin API with: the in-process router and
//! `certgate serve` processes alike. One answer type, and OpenAI's error shape checked in one
//! place.

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{json, Value};

use crate::pki;

/// The Admin API at one address, as one caller (or as nobody).
#[derive(Clone)]
pub struct Api {
    /// `http://IP:PORT`; the API itself is under `/v1`.
    origin: String,
    key: Option<String>,
    http: reqwest::Client,
}

/// One answer: status, headers (`x-should-retry` and `x-request-id` among them), JSON body.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Answer {
    /// Asserts a 200 and returns the body.
    #[track_caller]
    pub fn ok(&self) -> &Value {
        assert_eq!(self.status, StatusCode::OK, "{}", self.body);
        &self.body
    }

    /// The `id` of a 200 answer.
    #[track_caller]
    pub fn id(&self) -> String {
        self.ok()["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no id: {}", self.body))
            .to_owned()
    }

    /// Asserts an OpenAI error: status, `code` and `param`, the four keys, and for 4xx
    /// `x-should-retry: false`. Returns the message.
    #[track_caller]
    pub fn err(&self, status: u16, code: Option<&str>, param: Option<&str>) -> &str {
        assert_eq!(self.status.as_u16(), status, "{}", self.body);
        let e = self.body["error"]
            .as_object()
            .unwrap_or_else(|| panic!("no error object: {}", self.body));
        assert_eq!(e.len(), 4, "{}", self.body);
        let kind = if status < 500 {
            "invalid_request_error"
        } else {
            "server_error"
        };
        assert_eq!(e["type"], kind, "{}", self.body);
        assert_eq!(e["code"].as_str(), code, "{}", self.body);
        assert_eq!(e["param"].as_str(), param, "{}", self.body);
        if status < 500 {
            assert_eq!(
                self.header("x-should-retry"),
                Some("false"),
                "4xx must carry x-should-retry: false"
            );
        }
        e["message"]
            .as_str()
            .unwrap_or_else(|| panic!("no message: {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Api {
    pub fn new(addr: SocketAddr, key: Option<&str>) -> Api {
        Api {
            origin: format!("http://{addr}"),
            key: key.map(str::to_owned),
            // A bound on every request, so that a hang fails the test instead of stalling the
            // run; far above anything a passing test waits for.
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("reqwest client"),
        }
    }

    /// `http://IP:PORT`, for requests outside `/v1`.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The same server as another caller.
    pub fn as_key(&self, key: &str) -> Api {
        Api {
            key: Some(key.to_owned()),
            ..self.clone()
        }
    }

    /// The same server with no key at all.
    pub fn anonymous(&self) -> Api {
        Api {
            key: None,
            ..self.clone()
        }
    }

    /// A request to `/v1{path}` carrying the key, to be finished and passed to [`Api::send`].
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let req = self
            .http
            .request(method, format!("{}/v1{path}", self.origin));
        match &self.key {
            Some(key) => req.bearer_auth(key),
            None => req,
        }
    }

    /// Sends an API request; every API answer is JSON and carries a request id.
    pub async fn send(&self, req: RequestBuilder) -> Answer {
        let a = read(req).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(
            a.header("x-request-id")
                .is_some_and(|id| id.starts_with("req_")),
            "x-request-id on every answer: {:?}",
            a.headers
        );
        a
    }

    /// Like a POST of `body`, but a failure to get an answer is returned, not a panic: for
    /// writers that run until the server is gone.
    pub async fn try_post(&self, path: &str, body: Value) -> Result<Answer, String> {
        read(self.request(Method::POST, path).json(&body)).await
    }

    /// `method` on `path`, with `body` as JSON if there is one.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        let req = self.request(method, path);
        self.send(match body {
            Some(body) => req.json(&body),
            None => req,
        })
        .await
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, None).await
    }

    pub async fn put_json(&self, path: &str, body: Value) -> Answer {
        self.call(Method::PUT, path, Some(body)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.call(Method::POST, path, Some(body)).await
    }

    /// A POST whose body is sent as is, labelled JSON.
    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> Answer {
        let req = self
            .request(Method::POST, path)
            .header("content-type", "application/json")
            .body(body);
        self.send(req).await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        self.call(Method::DELETE, path, None).await
    }

    /// `GET` of an operational endpoint outside `/v1` (`/healthz`, `/readyz`), without a key.
    pub async fn probe(&self, path: &str) -> Answer {
        read(self.http.get(format!("{}{path}", self.origin)))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    // ---------------------------------------------------------------- Admin API vocabulary

    /// Uploads a certificate (PEM text, as is).
    pub async fn upload(&self, pem: &str, name: Option<&str>) -> Answer {
        self.post(
            "/organization/certificates",
            json!({"certificate": pem, "name": name}),
        )
        .await
    }

    /// Uploads a fresh CA named `name`; returns its id.
    pub async fn upload_new(&self, name: &str) -> String {
        self.upload(&pki::ca(name).pem(), Some(name)).await.id()
    }

    /// Uploads `ca` and activates it for the whole organization; returns its id.
    pub async fn upload_active(&self, ca: &pki::Ca) -> String {
        let id = self.upload(&ca.pem(), None).await.id();
        self.toggle_org("activate", &[&id]).await;
        id
    }

    /// Uploads the CA `pem` with more `fields` (`crl_url`, `ocsp`, …) and activates it for the
    /// whole organization; returns its id.
    pub async fn upload_active_with(&self, pem: &str, fields: Value) -> String {
        let mut body = fields;
        body["certificate"] = json!(pem);
        let id = self.post("/organization/certificates", body).await.id();
        self.toggle_org("activate", &[&id]).await;
        id
    }

    /// `POST /organization/certificates/{activate|deactivate}` of `ids`; asserts success.
    pub async fn toggle_org(&self, verb: &str, ids: &[&str]) {
        self.post(
            &format!("/organization/certificates/{verb}"),
            json!({"certificate_ids": ids}),
        )
        .await
        .ok();
    }

    /// The same for one project; asserts success.
    pub async fn toggle_project(&self, project: &str, verb: &str, ids: &[&str]) {
        self.post(
            &format!("/organization/projects/{project}/certificates/{verb}"),
            json!({"certificate_ids": ids}),
        )
        .await
        .ok();
    }

    /// Creates a project; returns its id.
    pub async fn create_project(&self, name: &str) -> String {
        self.post("/organization/projects", json!({"name": name}))
            .await
            .id()
    }

    /// Every item of a list endpoint (`path` may carry a query of its own), walking all pages.
    pub async fn list_all(&self, path: &str) -> Vec<Value> {
        let mut items = Vec::new();
        let mut after = String::new();
        let sep = if path.contains('?') { '&' } else { '?' };
        loop {
            let page = self.get(&format!("{path}{sep}limit=100{after}")).await;
            let page = page.ok();
            items.extend(page["data"].as_array().expect("data").iter().cloned());
            if page["has_more"] != true {
                return items;
            }
            after = format!("&after={}", page["last_id"].as_str().expect("last_id"));
        }
    }

    /// Ids of the organization's certificates, all pages, newest first.
    pub async fn all_ids(&self) -> Vec<String> {
        self.list_all("/organization/certificates")
            .await
            .iter()
            .map(|c| c["id"].as_str().expect("id").to_owned())
            .collect()
    }
}

/// Sends `req` and reads a JSON answer, or says why there is none.
async fn read(req: RequestBuilder) -> Result<Answer, String> {
    let res = req.send().await.map_err(|e| format!("request: {e}"))?;
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res
        .bytes()
        .await
        .map_err(|e| format!("reading the body: {e}"))?;
    let body = serde_json::from_slice(&bytes).map_err(|_| {
        format!(
            "{status}, not JSON: {}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(2000)])
        )
    })?;
    Ok(Answer {
        status,
        headers,
        body,
    })
}
