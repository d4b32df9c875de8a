//! `--metrics-listen` (decisions.md D40): `certgate serve` as operators run it, scraped after real
//! traffic, on both backends. The gateway's metrics are tested with the gateway
//! (`gateway/metrics.rs`, `gateway/binary.rs`); the parser here serves both.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde_json::json;

use crate::client::Api;
use crate::helpers::{db_tests, TestDb};
use crate::pki;
use crate::process::Process;

/// One sample of a scrape: metric name, labels, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A whole scrape, parsed.
pub struct Scrape {
    pub text: String,
    pub samples: Vec<Sample>,
}

impl Scrape {
    /// `GET /metrics` at `addr` (no credentials: the listener has none) and parses it.
    pub async fn of(addr: SocketAddr) -> Scrape {
        let res = reqwest::get(format!("http://{addr}/metrics"))
            .await
            .expect("scrape /metrics");
        assert_eq!(res.status(), 200, "GET /metrics");
        let content_type = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(
            content_type.starts_with("text/plain; version=0.0.4"),
            "Prometheus text format: {content_type}"
        );
        let text = res.text().await.expect("scrape body");
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| parse_line(l).unwrap_or_else(|| panic!("not a sample line: {l}")))
            .collect();
        Scrape { text, samples }
    }

    /// The samples named `name` whose labels include every pair of `labels`.
    pub fn find(&self, name: &str, labels: &[(&str, &str)]) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect()
    }

    /// The value of the one sample named `name` with exactly these labels, a whole number (every
    /// counter and gauge here is); fails, showing the scrape, if there is none.
    #[track_caller]
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> i64 {
        let found: Vec<_> = self
            .find(name, labels)
            .into_iter()
            .filter(|s| s.labels.len() == labels.len())
            .collect();
        assert_eq!(
            found.len(),
            1,
            "one {name}{labels:?} expected in:\n{}",
            self.text
        );
        let value = found[0].value;
        assert!(
            value.fract().abs() < f64::EPSILON && value.abs() < 2e15,
            "{name}: {value}"
        );
        #[allow(clippy::cast_possible_truncation)]
        let whole = value as i64;
        whole
    }

    /// Every value of label `label` on samples named `name`.
    pub fn label_values(&self, name: &str, label: &str) -> Vec<String> {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter_map(|s| s.labels.get(label).cloned())
            .collect()
    }
}

/// `name{k="v",…} value` or `name value`.
fn parse_line(line: &str) -> Option<Sample> {
    let (name_and_labels, value) = line.rsplit_once(' ')?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        v => v.parse().ok()?,
    };
    let Some((name, rest)) = name_and_labels.split_once('{') else {
        return Some(Sample {
            name: name_and_labels.to_owned(),
            labels: BTreeMap::new(),
            value,
        });
    };
    let body = rest.strip_suffix('}')?;
    let mut labels = BTreeMap::new();
    let mut chars = body.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        if chars.next() != Some('"') {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '\\' => value.push(chars.next()?),
                '"' => break,
                c => value.push(c),
            }
        }
        labels.insert(key, value);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// The bootstrap key, once the process's stdout reader has it.
async fn bootstrap_key(process: &Process) -> String {
    for _ in 0..500 {
        if let Some(key) = process.bootstrap_key() {
            return key;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("no bootstrap key:\n{}", process.output());
}

db_tests!(serve_metrics_after_traffic);

/// A real `certgate serve --metrics-listen` after real traffic: names and labels as decisions.md
/// D40 (route templates, never an id), counts, the expiry of every stored CA, database up; and
/// `/metrics` is on the metrics listener only, without authentication.
async fn serve_metrics_after_traffic(db: TestDb) {
    let server = Process::serve(&db.url, &["--metrics-listen", "127.0.0.1:0"]).await;
    let metrics_addr = server
        .process
        .logged_address("certgate metrics listening")
        .expect("the metrics listener is announced before the API's");
    let api = server.api(&bootstrap_key(&server.process).await);
    let printed: serde_json::Value =
        serde_json::from_str(server.process.stdout().trim()).expect("the bootstrap's JSON");
    let org_id = printed["organization"]["id"].as_str().expect("org id");

    let now = crate::helpers::wall_clock();
    let (a_until, b_until) = (now + 90 * 86_400, now + 400 * 86_400);
    let a = api
        .upload(&pki::ca_valid("Metrics A", now - 60, a_until).pem(), None)
        .await
        .id();
    let b = api
        .upload(&pki::ca_valid("Metrics B", now - 60, b_until).pem(), None)
        .await
        .id();
    for _ in 0..2 {
        api.get(&format!("/organization/certificates/{a}"))
            .await
            .ok();
    }
    api.get("/organization/certificates/cert_doesnotexist")
        .await
        .err(404, None, None);
    api.anonymous()
        .get("/organization/certificates")
        .await
        .err(401, Some("invalid_api_key"), None);
    api.get("/no/such/route/cert_x").await.err(404, None, None);

    let scrape = Scrape::of(metrics_addr).await;
    let requests = "certgate_http_requests_total";
    let one = "/v1/organization/certificates/{certificate_id}";
    let list = "/v1/organization/certificates";
    let labels = |route, method, status| {
        [
            ("role", "serve"),
            ("route", route),
            ("method", method),
            ("status", status),
        ]
    };
    assert_eq!(scrape.value(requests, &labels(one, "GET", "200")), 2);
    assert_eq!(scrape.value(requests, &labels(one, "GET", "404")), 1);
    assert_eq!(scrape.value(requests, &labels(list, "POST", "200")), 2);
    assert_eq!(scrape.value(requests, &labels(list, "GET", "401")), 1);
    assert_eq!(
        scrape.value(requests, &labels("unmatched", "GET", "404")),
        1
    );
    // Durations are by route and method, whatever the status: two 200s and a 404.
    let duration = [("role", "serve"), ("route", one), ("method", "GET")];
    assert_eq!(
        scrape.value("certgate_http_request_duration_seconds_count", &duration),
        3
    );
    let inf = [duration.as_slice(), &[("le", "+Inf")]].concat();
    assert_eq!(
        scrape.value("certgate_http_request_duration_seconds_bucket", &inf),
        3
    );
    // Templates only: no id and no raw path ever becomes a label value.
    for route in scrape.label_values(requests, "route") {
        assert!(
            route == "unmatched" || !route.contains("cert_") && !route.contains("/no/such"),
            "raw path as a route label: {route}\n{}",
            scrape.text
        );
    }
    assert_eq!(scrape.value("certgate_database_up", &[]), 1);
    let expiry = "certgate_certificate_expiry_timestamp_seconds";
    let expiries = scrape.find(expiry, &[]);
    assert_eq!(expiries.len(), 2, "{}", scrape.text);
    for (id, until) in [(&a, a_until), (&b, b_until)] {
        let labels = [("organization", org_id), ("certificate", id.as_str())];
        assert_eq!(scrape.value(expiry, &labels), until, "{id}'s notAfter");
    }

    // A deleted certificate leaves the gauge at the next scrape.
    api.delete(&format!("/organization/certificates/{b}"))
        .await
        .ok();
    let scrape = Scrape::of(metrics_addr).await;
    assert_eq!(scrape.label_values(expiry, "certificate"), vec![a.clone()]);
    // The scrape itself is not an API request.
    assert!(scrape.find(requests, &[("route", "/metrics")]).is_empty());

    // Health beside it; /metrics is not on the API port.
    let beside = Api::new(metrics_addr, None);
    assert_eq!(beside.probe("/healthz").await.status, 200);
    let ready = beside.probe("/readyz").await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    let on_api = reqwest::get(format!("http://{}/metrics", server.addr))
        .await
        .expect("GET /metrics on the API port");
    assert_eq!(on_api.status(), 404);
    let body = on_api.text().await.expect("body");
    assert!(!body.contains("certgate_"), "{body}");
    // Nor is /metrics reachable with a key on the API port.
    let with_key = api.post("/../metrics", json!({})).await;
    assert_eq!(with_key.status, 404, "{}", with_key.body);
}

#[test]
fn the_parser_reads_templates_and_escapes() {
    let s = parse_line(
        r#"certgate_http_requests_total{role="serve",route="/v1/a/{id}",method="GET",status="200"} 3"#,
    )
    .unwrap();
    assert_eq!(s.labels["route"], "/v1/a/{id}");
    assert_eq!(s.labels["status"], "200");
    assert!((s.value - 3.0).abs() < f64::EPSILON);
    let s = parse_line(r#"x{a="q\"uote"} +Inf"#).unwrap();
    assert_eq!(s.labels["a"], "q\"uote");
    assert!(parse_line("certgate_database_up 1")
        .unwrap()
        .labels
        .is_empty());
}

/// PostgreSQL vanishes: `certgate_database_up` drops to 0 and the expiry gauges keep their
/// last values (an expiry alert must not clear because the database is down); both recover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_down_shows_and_expiries_stay() {
    // Without PostgreSQL (outside CI) this says "skipped" and ends; in CI it fails.
    let Some(db) = TestDb::new(crate::helpers::Db::Postgres).await else {
        return;
    };
    let (proxy, proxied_url) = crate::process::CuttableProxy::in_front_of(&db.url).await;
    let server = Process::serve(
        &proxied_url,
        &["--metrics-listen", "127.0.0.1:0", "--db-timeout", "1s"],
    )
    .await;
    let metrics_addr = server
        .process
        .logged_address("certgate metrics listening")
        .expect("metrics listener");
    let api = server.api(&bootstrap_key(&server.process).await);
    let id = api.upload_new("Outage CA").await;
    let expiry = "certgate_certificate_expiry_timestamp_seconds";
    let scrape = Scrape::of(metrics_addr).await;
    assert_eq!(scrape.value("certgate_database_up", &[]), 1);
    assert_eq!(scrape.label_values(expiry, "certificate"), vec![id.clone()]);

    proxy.cut();
    let scrape = Scrape::of(metrics_addr).await;
    assert_eq!(
        scrape.value("certgate_database_up", &[]),
        0,
        "{}",
        scrape.text
    );
    assert_eq!(scrape.label_values(expiry, "certificate"), vec![id.clone()]);

    proxy.restore();
    let mut up = 0;
    for _ in 0..100 {
        up = Scrape::of(metrics_addr)
            .await
            .value("certgate_database_up", &[]);
        if up == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(up, 1, "database_up after the database returned");
}

/// The alert rules in docs/operations.md are valid YAML in Prometheus' rule-file shape and name
/// only metrics certgate exports (a renamed family would otherwise leave them silently empty).
#[test]
fn documented_alerts_name_exported_metrics() {
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/operations.md"),
    )
    .expect("docs/operations.md");
    let rules = doc
        .split("```yaml\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .find(|b| b.starts_with("groups:"))
        .expect("a ```yaml block of alert rules");
    let parsed = yaml_rust2::YamlLoader::load_from_str(rules).expect("alert rules are YAML");
    assert_eq!(parsed.len(), 1, "one YAML document of alert rules");
    let rules = parsed[0]["groups"][0]["rules"]
        .as_vec()
        .expect("groups[0].rules");
    assert!(rules.len() >= 3, "expiry, database and refusal alerts");
    // The families certgate exports (decisions.md D40); the scrape tests above see each of them
    // after traffic.
    let exported = [
        "certgate_http_requests_total",
        "certgate_http_request_duration_seconds",
        "certgate_database_up",
        "certgate_certificate_expiry_timestamp_seconds",
        "certgate_gateway_decisions_total",
        "certgate_trust_generation",
    ];
    let mut seen = 0;
    for rule in rules {
        let alert = rule["alert"].as_str().expect("alert name");
        let expr = rule["expr"].as_str().expect("expr");
        for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("certgate_") {
                let family = word
                    .trim_end_matches("_bucket")
                    .trim_end_matches("_count")
                    .trim_end_matches("_sum");
                assert!(
                    exported.contains(&family) || exported.contains(&word),
                    "{alert} names {word}, which certgate does not export"
                );
                seen += 1;
            }
        }
        assert!(
            rule["annotations"]["summary"].as_str().is_some(),
            "{alert}: summary"
        );
    }
    assert!(seen >= 3);
}
