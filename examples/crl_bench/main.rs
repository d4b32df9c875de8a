//! Benchmark helper for `bench/hostile/crls.sh`: one tenant's CRLs against another tenant's
//! traffic and propagation (spec §13.5, issue 30 item 4).
//!
//! - `pki DIR`: the gateway's server certificate; the legitimate tenant's CA (`legit`) with a
//!   client, and a second CA (`toggled`) with a client, whose (de)activation is timed.
//! - `setup BASE KEY_L KEY_H DIR N`: through the Admin API at BASE (`http://…/v1`): uploads and
//!   activates `legit` and `toggled` with `KEY_L`; uploads N hostile CAs (made here) with `KEY_H`.
//!   Writes `setup.json`.
//! - `crls DIR ENTRIES`: the hostile CAs' CRLs of ENTRIES entries each, made once into
//!   `DIR/crls/` (two versions for the first 8 CAs, which differ only in their CRL number).
//! - `store BASE KEY_H DIR`: PUTs every hostile CA's CRL; prints how many were stored and
//!   refused (and why).
//! - `activate BASE KEY_H DIR`: activates every hostile CA for the organization.
//! - `churn BASE KEY_H DIR SECONDS`: for SECONDS, replaces the stored CRLs with their other
//!   version, back to back: every stored PUT is a version every gateway must read once.
//! - `parse DIR`: how long the upload's checks (`crl::parse_crl`) and the gateway's parse
//!   (`crl::revoked_serials`) take on the first CRL of `crls`, and what its serials hold.
//! - `measure ADDR BASE KEY_L DIR SECONDS ROUNDS`: one check request (serve's `TrustCache`), then
//!   for SECONDS the legitimate client's fresh handshake + request, sequentially, while ROUNDS
//!   deactivations and activations of `toggled` are timed from the API's answer to the first
//!   request through the gateway that sees them. One JSON line.
//!
//! `fetch-pki`, `fetch-crl` and `fetch-measure` serve `bench/crl_fetch/run.sh` (see `fetch`).

#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap
)]

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod crls;
mod fetch;
#[path = "../common/http1.rs"]
mod http1;
mod measure;
#[path = "../common/pki.rs"]
mod pki;
#[path = "../common/proc.rs"]
mod proc;
#[path = "../common/tls.rs"]
mod tls;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// CAs whose CRL has a second version for `churn`.
const CHURNED: usize = 8;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    match a.as_slice() {
        ["pki", dir] => pki(Path::new(dir)),
        ["setup", base, key_l, key_h, dir, n] => {
            setup(base, key_l, key_h, Path::new(dir), n.parse()?).await
        }
        ["crls", dir, entries] => crls::crls(Path::new(dir), entries.parse()?),
        ["parse", dir] => crls::parse(Path::new(dir)),
        ["store", base, key_h, dir] => store(base, key_h, Path::new(dir)).await,
        ["activate", base, key_h, dir] => activate(base, key_h, Path::new(dir)).await,
        ["churn", base, key_h, dir, secs] => {
            churn(base, key_h, Path::new(dir), secs.parse()?).await
        }
        ["measure", addr, base, key_l, dir, secs, rounds] => {
            measure::measure(
                addr.parse()?,
                base,
                key_l,
                Path::new(dir),
                secs.parse()?,
                rounds.parse()?,
            )
            .await
        }
        ["fetch-pki", dir] => fetch::pki(Path::new(dir)),
        ["fetch-crl", dir, entries, out] => {
            fetch::make_crl(Path::new(dir), entries.parse()?, Path::new(out))
        }
        ["fetch-measure", addr, base, key, dir, crl, serve_pid, gateway_pid] => {
            fetch::measure(fetch::Measure {
                addr: addr.parse()?,
                base,
                key,
                dir: Path::new(dir),
                crl: Path::new(crl),
                serve_pid,
                gateway_pid,
            })
            .await
        }
        _ => {
            eprintln!(
                "usage: crl_bench pki DIR | setup BASE KEY_L KEY_H DIR N | crls DIR ENTRIES | \
                 store BASE KEY_H DIR | activate BASE KEY_H DIR | churn BASE KEY_H DIR SECONDS | \
                 measure ADDR BASE KEY_L DIR SECONDS ROUNDS | fetch-pki DIR | \
                 fetch-crl DIR ENTRIES OUT | \
                 fetch-measure ADDR BASE KEY DIR CRL SERVE_PID GATEWAY_PID"
            );
            std::process::exit(2)
        }
    }
}

/// The gateway's server certificate, and two CAs each with a client: `legit` and `toggled`
/// (`DIR/NAME-ca.pem`, `DIR/NAME.pem`, `DIR/NAME.key`).
fn pki(dir: &Path) -> Result<(), BoxError> {
    pki::write_server(dir)?;
    for name in ["legit", "toggled"] {
        let ca = pki::Ca::new(&format!("{name} CA"))?;
        std::fs::write(dir.join(format!("{name}-ca.pem")), ca.cert.pem())?;
        ca.write_client(dir, name, None)?;
    }
    Ok(())
}

/// The Admin API, as one tenant.
struct Api {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Api {
    fn new(base: &str, key: &str) -> Api {
        Api {
            http: reqwest::Client::new(),
            base: base.trim_end_matches('/').to_owned(),
            key: key.to_owned(),
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: String,
    ) -> Result<(u16, Value), BoxError> {
        let res = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        let status = res.status().as_u16();
        Ok((status, res.json().await.unwrap_or(Value::Null)))
    }

    async fn post(&self, path: &str, body: &Value) -> Result<Value, BoxError> {
        match self
            .send(reqwest::Method::POST, path, body.to_string())
            .await?
        {
            (200, v) => Ok(v),
            (s, v) => Err(format!("POST {path}: {s} {v}").into()),
        }
    }

    async fn upload(&self, pem: &str) -> Result<String, BoxError> {
        let v = self
            .post("/organization/certificates", &json!({"certificate": pem}))
            .await?;
        Ok(v["id"].as_str().ok_or("no id")?.to_owned())
    }

    async fn toggle(&self, verb: &str, ids: &[String]) -> Result<(), BoxError> {
        for chunk in ids.chunks(10) {
            self.post(
                &format!("/organization/certificates/{verb}"),
                &json!({"certificate_ids": chunk}),
            )
            .await?;
        }
        Ok(())
    }

    /// PUTs a CRL (base64 DER, the body written by hand: 7 MiB of JSON).
    async fn put_crl(&self, id: &str, der: &[u8]) -> Result<(u16, Value), BoxError> {
        use base64::Engine as _;
        let body = format!(
            r#"{{"crl":"{}"}}"#,
            base64::engine::general_purpose::STANDARD.encode(der)
        );
        self.send(
            reqwest::Method::PUT,
            &format!("/organization/certificates/{id}/crl"),
            body,
        )
        .await
    }
}

fn read_setup(dir: &Path) -> Result<Value, BoxError> {
    Ok(serde_json::from_slice(&std::fs::read(
        dir.join("setup.json"),
    )?)?)
}

fn hostile_ids(setup: &Value) -> Vec<String> {
    setup["hostile"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

async fn setup(base: &str, key_l: &str, key_h: &str, dir: &Path, n: usize) -> Result<(), BoxError> {
    let legit = Api::new(base, key_l);
    let mut ids = Vec::new();
    for name in ["legit", "toggled"] {
        let pem = std::fs::read_to_string(dir.join(format!("{name}-ca.pem")))?;
        ids.push(legit.upload(&pem).await?);
    }
    legit.toggle("activate", &ids).await?;
    let hostile = Api::new(base, key_h);
    let hdir = dir.join("hostile");
    std::fs::create_dir_all(&hdir)?;
    let mut hostile_ids = Vec::new();
    for i in 0..n {
        let ca = pki::Ca::new(&format!("Hostile CA {i}"))?;
        std::fs::write(hdir.join(format!("ca-{i}.der")), ca.cert.der())?;
        std::fs::write(hdir.join(format!("ca-{i}.key")), ca.key.serialize_der())?;
        hostile_ids.push(hostile.upload(&ca.cert.pem()).await?);
    }
    let info = json!({"legit": ids[0], "toggled": ids[1], "hostile": hostile_ids});
    std::fs::write(dir.join("setup.json"), info.to_string())?;
    println!("{info}");
    Ok(())
}

async fn store(base: &str, key_h: &str, dir: &Path) -> Result<(), BoxError> {
    let api = Api::new(base, key_h);
    let ids = hostile_ids(&read_setup(dir)?);
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    let (mut stored_bytes, started) = (0, Instant::now());
    for (i, id) in ids.iter().enumerate() {
        let der = std::fs::read(crls::crl_path(dir, i, 0))?;
        let (status, body) = api.put_crl(id, &der).await?;
        let outcome = if status == 200 {
            stored_bytes += der.len();
            "stored".to_owned()
        } else {
            format!("{status} {}", body["error"]["code"].as_str().unwrap_or("?"))
        };
        *outcomes.entry(outcome).or_default() += 1;
    }
    println!(
        "{}",
        json!({"puts": ids.len(), "outcomes": outcomes, "stored_bytes": stored_bytes,
               "seconds": started.elapsed().as_secs_f64()})
    );
    Ok(())
}

async fn activate(base: &str, key_h: &str, dir: &Path) -> Result<(), BoxError> {
    let ids = hostile_ids(&read_setup(dir)?);
    Api::new(base, key_h).toggle("activate", &ids).await?;
    println!("{}", json!({"activated": ids.len()}));
    Ok(())
}

async fn churn(base: &str, key_h: &str, dir: &Path, secs: f64) -> Result<(), BoxError> {
    let api = Api::new(base, key_h);
    let ids = hostile_ids(&read_setup(dir)?);
    let mut versions = Vec::new();
    for i in 0..CHURNED.min(ids.len()) {
        versions.push([
            std::fs::read(crls::crl_path(dir, i, 0))?,
            std::fs::read(crls::crl_path(dir, i, 1))?,
        ]);
    }
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    let (mut round, mut stored_bytes) = (0usize, 0usize);
    while Instant::now() < until {
        round += 1;
        for (i, pair) in versions.iter().enumerate() {
            let der = &pair[round % 2];
            let (status, body) = api.put_crl(&ids[i], der).await?;
            let outcome = if status == 200 {
                stored_bytes += der.len();
                "stored".to_owned()
            } else {
                format!("{status} {}", body["error"]["code"].as_str().unwrap_or("?"))
            };
            *outcomes.entry(outcome).or_default() += 1;
        }
    }
    println!(
        "{}",
        json!({"churn_outcomes": outcomes, "new_versions_bytes": stored_bytes})
    );
    Ok(())
}
