//! `certgate authz` (spec §13.2): the gateway's decision answered to proxies, over Envoy's
//! gRPC `Authorization/Check` (asked by a real tonic client) and over HTTP forward auth (asked
//! by reqwest), with trust changes made through the real Admin API, on both backends. This
//! module is the harness; the cases are in its children. The real proxies in front of it are
//! in `proxies`.

mod answers;
mod binary;
mod cache;
mod cast;
mod live;
mod parity;
mod proxies;
mod proxy_configs;

use std::collections::HashMap;
use std::net::SocketAddr;

pub use certgate::authz::cert::escape;
use certgate::authz::listen::{Bound, ListenAddr};
use certgate::authz::{Authz, AuthzOptions};
use certgate::runtime::ConnectionLimits;
use certgate::store::Store;
use envoy_types::pb::envoy::config::core::v3::{HeaderMap as RawHeaders, HeaderValue};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{
    HttpRequest, Peer, Request as AttrRequest,
};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest, CheckResponse};
use serde_json::Value;

use crate::gateway::Identity;
use crate::helpers::TestApp;

/// A running authz on loopback ports.
pub struct Az {
    pub authz: Authz,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
}

pub async fn authz(store: Store, tweak: impl FnOnce(&mut AuthzOptions)) -> Az {
    let mut options = AuthzOptions {
        trust_poll: std::time::Duration::from_millis(50),
        ..AuthzOptions::default()
    };
    tweak(&mut options);
    let authz = Authz::start(store, options).await;
    let mut addrs = Vec::new();
    for router in [authz.grpc_router(), authz.http_router()] {
        let bound = Bound::bind(&ListenAddr::Tcp("127.0.0.1:0".parse().unwrap()))
            .await
            .unwrap();
        let ListenAddr::Tcp(addr) = bound.local().unwrap() else {
            unreachable!()
        };
        addrs.push(addr);
        tokio::spawn(certgate::authz::serve(
            router,
            bound,
            ConnectionLimits::default(),
            std::future::pending(),
        ));
    }
    Az {
        authz,
        grpc: addrs[0],
        http: addrs[1],
    }
}

/// Authz on the app's store, with the app's organization as the default.
pub async fn setup(app: &TestApp) -> Az {
    let org = app.org_id.clone();
    authz(app.store.clone(), |o| o.default_organization = Some(org)).await
}

/// Waits until authz has loaded everything written so far.
pub async fn caught_up(app: &TestApp, az: &Az) {
    let target = app.store.trust_generation().await.unwrap();
    let trust = az.authz.trust();
    crate::gateway::eventually!(
        format!("authz reaches generation {target}"),
        trust.readiness().generation >= Some(target)
    );
}

/// The chain as PEM, leaf first.
pub fn chain_pem(id: &Identity) -> String {
    let blocks: Vec<pem::Pem> = id
        .chain
        .iter()
        .map(|der| pem::Pem::new("CERTIFICATE", der.as_ref().to_vec()))
        .collect();
    pem::encode_many(&blocks)
}

/// Where a gRPC question carries the certificate.
#[derive(Clone, Copy, Debug)]
pub enum Via {
    /// `x-forwarded-client-cert: ...;Chain="<escaped PEM chain>"`.
    Xfcc,
    /// `attributes.source.certificate` (the escaped leaf only).
    Source,
}

/// An Envoy `CheckRequest`: the certificate (if any) where `via` says, the request headers in
/// Envoy's `headers` map (repeated names joined with `,`, as Envoy does), and the route's
/// context extensions.
pub fn check_request(
    id: Option<&Identity>,
    via: Via,
    headers: &[(&str, &str)],
    context: &[(&str, &str)],
) -> CheckRequest {
    let mut map: HashMap<String, String> = HashMap::new();
    for (k, v) in headers {
        map.entry(k.to_ascii_lowercase())
            .and_modify(|old| {
                old.push(',');
                old.push_str(v);
            })
            .or_insert_with(|| (*v).to_owned());
    }
    let mut source = Peer::default();
    if let Some(id) = id {
        match via {
            Via::Xfcc => {
                map.insert(
                    "x-forwarded-client-cert".into(),
                    format!(
                        "By=spiffe://envoy;Hash=00;Chain=\"{}\";Subject=\"CN=client\"",
                        escape(&chain_pem(id))
                    ),
                );
            }
            Via::Source => {
                let leaf = pem::encode(&pem::Pem::new("CERTIFICATE", id.chain[0].to_vec()));
                source.certificate = escape(&leaf);
            }
        }
    }
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(source),
            request: Some(AttrRequest {
                http: Some(HttpRequest {
                    method: "GET".into(),
                    path: "/v1/models".into(),
                    headers: map,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            context_extensions: context
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..Default::default()
        }),
    }
}

/// The same request with its headers in Envoy's raw `header_map` (every repetition kept).
pub fn raw_headers(mut request: CheckRequest) -> CheckRequest {
    let http = request
        .attributes
        .as_mut()
        .and_then(|a| a.request.as_mut())
        .and_then(|r| r.http.as_mut())
        .unwrap();
    let mut raw = Vec::new();
    for (k, v) in std::mem::take(&mut http.headers) {
        let parts: Vec<&str> = if k.starts_with("openai-") {
            v.split(',').collect()
        } else {
            vec![v.as_str()]
        };
        for part in parts {
            raw.push(HeaderValue {
                key: k.clone(),
                raw_value: part.as_bytes().to_vec(),
                ..Default::default()
            });
        }
    }
    http.header_map = Some(RawHeaders { headers: raw });
    request
}

pub async fn grpc_client(az: &Az) -> AuthorizationClient<tonic::transport::Channel> {
    AuthorizationClient::connect(format!("http://{}", az.grpc))
        .await
        .expect("gRPC connection to authz")
}

/// What a transport answered, in the gateway's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Admitted by this CA id.
    Admitted(String),
    /// Refused: the gateway's HTTP status, the code (null for a malformed request) and the
    /// message.
    Refused {
        status: u16,
        code: Option<String>,
        message: String,
    },
}

impl Outcome {
    fn of_error(status: u16, body: &Value) -> Outcome {
        let e = &body["error"];
        assert_eq!(e.as_object().map(serde_json::Map::len), Some(4), "{body}");
        Outcome::Refused {
            status,
            code: e["code"].as_str().map(str::to_owned),
            message: e["message"].as_str().unwrap_or_default().to_owned(),
        }
    }

    #[track_caller]
    pub fn code(&self) -> Option<&str> {
        match self {
            Outcome::Refused { code, .. } => code.as_deref(),
            Outcome::Admitted(_) => panic!("admitted, not refused"),
        }
    }
}

/// A gRPC answer as an [`Outcome`], checking the answer's own shape: the gRPC status code
/// matches the HTTP status, the denial is JSON with OpenAI's four keys.
pub fn grpc_outcome(res: &CheckResponse) -> Outcome {
    let code = res.status.as_ref().map_or(-1, |s| s.code);
    match res.http_response.as_ref().expect("an http_response") {
        HttpResponse::OkResponse(ok) => {
            assert_eq!(code, 0, "OK");
            let id = ok
                .headers
                .iter()
                .filter_map(|h| h.header.as_ref())
                .find(|h| h.key == "x-certgate-certificate-id")
                .expect("x-certgate-certificate-id")
                .value
                .clone();
            Outcome::Admitted(id)
        }
        HttpResponse::ErrorResponse(e) => panic!("authz answered an error: {e:?}"),
        HttpResponse::DeniedResponse(denied) => {
            let status = u16::try_from(denied.status.as_ref().expect("status").code).unwrap();
            let expected = match status {
                400 => 3,
                403 => 7,
                503 => 14,
                other => panic!("unexpected denial status {other}"),
            };
            assert_eq!(code, expected, "gRPC status for HTTP {status}");
            let content_type = denied
                .headers
                .iter()
                .filter_map(|h| h.header.as_ref())
                .find(|h| h.key == "content-type")
                .map(|h| h.value.as_str());
            assert_eq!(content_type, Some("application/json"));
            Outcome::of_error(status, &serde_json::from_str(&denied.body).unwrap())
        }
    }
}

/// The headers an admitted gRPC answer sets, by name.
pub fn grpc_set_headers(res: &CheckResponse) -> HashMap<String, String> {
    match res.http_response.as_ref() {
        Some(HttpResponse::OkResponse(ok)) => ok
            .headers
            .iter()
            .filter_map(|h| h.header.as_ref())
            .map(|h| (h.key.clone(), h.value.clone()))
            .collect(),
        _ => panic!("not admitted: {res:?}"),
    }
}

pub async fn grpc_check(az: &Az, request: CheckRequest) -> CheckResponse {
    grpc_client(az)
        .await
        .check(request)
        .await
        .expect("Check answers")
        .into_inner()
}

/// One forward-auth answer.
pub struct HttpAnswer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl HttpAnswer {
    /// As an [`Outcome`], with the gateway's status recovered: forward auth answers 401
    /// without a certificate and 403 for every other refusal, `X-Certgate-Refusal` naming it.
    pub fn outcome(&self) -> Outcome {
        if self.status == 200 {
            let id = self.headers["x-certgate-certificate-id"].to_str().unwrap();
            assert_eq!(self.body, Value::Null, "an empty body");
            return Outcome::Admitted(id.to_owned());
        }
        let refusal = self.headers["x-certgate-refusal"]
            .to_str()
            .unwrap()
            .to_owned();
        let code = self.body["error"]["code"].as_str();
        assert_eq!(
            refusal,
            code.unwrap_or("invalid_request_error"),
            "X-Certgate-Refusal names the code"
        );
        let gateway_status = if self.status == 401 {
            assert_eq!(code, Some("client_certificate_required"));
            403
        } else {
            assert_eq!(self.status, 403, "{}", self.body);
            match self.body["error"]["type"].as_str() {
                Some("invalid_request_error") => 400,
                Some("server_error") => 503,
                _ => 403,
            }
        };
        Outcome::of_error(gateway_status, &self.body)
    }
}

pub async fn http_check(az: &Az, cert: Option<&str>, headers: &[(&str, &str)]) -> HttpAnswer {
    http_check_with(&reqwest::Client::new(), az, cert, headers).await
}

pub async fn http_check_with(
    client: &reqwest::Client,
    az: &Az,
    cert: Option<&str>,
    headers: &[(&str, &str)],
) -> HttpAnswer {
    let mut req = client.get(format!("http://{}/auth/any/path", az.http));
    if let Some(cert) = cert {
        req = req.header("x-ssl-client-cert", cert);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = req.send().await.expect("forward auth answers");
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let bytes = res.bytes().await.unwrap();
    HttpAnswer {
        status,
        headers,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}
