//! `GET /openapi.json` (decisions.md D41): served without a key, the same document `api::openapi()`
//! builds, and, for every path and method OpenAI's reference
//! (`tests/data/openai-admin-subset.json`) shares with certgate, structurally compatible with
//! it.
//!
//! "Compatible" is judged in the direction a client feels:
//! - a **response** of certgate must be valid for the reference: every property the reference
//!   requires is there and required, no value is null where the reference says it cannot be,
//!   constant and enum values are among the reference's, types agree; a property the reference
//!   does not know (an extension, decisions.md D2) is tolerated only when certgate's schema marks it
//!   optional;
//! - a **request** the reference allows must be accepted by certgate: every property and
//!   parameter the reference names is accepted, certgate requires nothing the reference leaves
//!   optional, accepts null where the reference does (query strings have no null) and accepts
//!   every enum value the reference lists.
//!
//! Descriptions, examples, `format`, defaults and numeric or length bounds are not compared.
//! Differences certgate makes on purpose are listed in [`KNOWN`], each with its reason; the
//! test fails on any other difference, and on a listed one that no longer occurs.

use std::fmt::Write as _;

use serde_json::Value;

use crate::helpers::{backend_tests, TestApp};

mod compare;

use compare::{differences, Compare};

/// Differences from the reference that certgate makes on purpose: (a part of the finding,
/// why). Each must still occur.
const KNOWN: &[(&str, &str)] = &[
    (
        ".actor.api_key.user.email: null in certgate",
        "decisions.md D15: certgate's synthetic owner has no email; the actor says so with null",
    ),
    (
        ".certificate.created.name: null in certgate",
        "an unnamed certificate's name is null in its events, as in the certificate itself (whose `name` the reference makes nullable)",
    ),
    (
        ".certificate.updated.name: null in certgate",
        "as certificate.created",
    ),
    (
        ".certificate.deleted.name: null in certgate",
        "as certificate.created",
    ),
    (
        ".certificates.activated.certificates[].name: null in certgate",
        "as certificate.created",
    ),
    (
        ".certificates.deactivated.certificates[].name: null in certgate",
        "as certificate.created",
    ),
    (
        ".residency: value \"JP_STORAGE_PROCESSING\" not in the reference",
        "certgate accepts every residency OpenAI's project API takes (domain::RESIDENCIES); the reference's PublicProjectResidency lists fewer, and a project answers with the one it was created with",
    ),
    (
        ".residency: value \"IN_STORAGE_PROCESSING\" not in the reference",
        "as JP_STORAGE_PROCESSING",
    ),
    (
        ".residency: value \"AU_STORAGE_PROCESSING\" not in the reference",
        "as JP_STORAGE_PROCESSING",
    ),
    (
        ".type: value \"certificate.revoked\" not in the reference",
        "decisions.md D22: certgate's deny-list writes its own events; only a client that uses the extension ever sees them",
    ),
    (
        ".type: value \"certificate.unrevoked\" not in the reference",
        "as certificate.revoked",
    ),
    (
        ".type: value \"certificate.crl_updated\" not in the reference",
        "decisions.md D23: as certificate.revoked, for a CA's CRL",
    ),
    (
        ".type: value \"certificate.crl_deleted\" not in the reference",
        "as certificate.crl_updated",
    ),
    (
        ".type: value \"certificate.crl_fetched\" not in the reference",
        "decisions.md D59: as certificate.crl_updated, for a fetch of a CA's crl_url",
    ),
];

/// OpenAI's reference, kept in the repository as data (see tests/data/README.md).
const REFERENCE: &str = include_str!("../../data/openai-admin-subset.json");

fn reference() -> Value {
    serde_json::from_str(REFERENCE).expect("tests/data/openai-admin-subset.json is JSON")
}

fn served() -> Value {
    serde_json::to_value(certgate::api::openapi()).expect("the document serializes")
}

/// What is left after [`KNOWN`], and the entries of [`KNOWN`] that match nothing.
fn unexplained(findings: &[String]) -> (Vec<&String>, Vec<&'static str>) {
    let unexpected = findings
        .iter()
        .filter(|f| !KNOWN.iter().any(|(part, _)| f.contains(part)))
        .collect();
    let stale = KNOWN
        .iter()
        .filter(|(part, _)| !findings.iter().any(|f| f.contains(part)))
        .map(|(part, _)| *part)
        .collect();
    (unexpected, stale)
}

#[test]
fn shared_paths_agree_with_the_reference() {
    let findings = differences(&reference(), &served());
    let (unexpected, stale) = unexplained(&findings);
    let mut report = String::new();
    if !unexpected.is_empty() {
        report.push_str(
            "certgate's /openapi.json differs from OpenAI's reference \
             (tests/data/openai-admin-subset.json):\n",
        );
        for f in &unexpected {
            let _ = writeln!(report, "  - {f}");
        }
        report.push_str(
            "Fix the schema (or the server), or, if the difference is on purpose (an extension \
             decisions.md D2 allows), add it to KNOWN in tests/it/openapi/mod.rs with its reason.\n",
        );
    }
    if !stale.is_empty() {
        report.push_str("KNOWN lists differences that no longer occur; remove them:\n");
        for s in &stale {
            let _ = writeln!(report, "  - {s}");
        }
    }
    assert!(report.is_empty(), "{report}");
}

/// A change made to a copy of the served document.
type Drift = Box<dyn Fn(&mut Value)>;

/// The comparison catches what it must: a sample of drifts, each introduced into a copy of
/// the served document, is reported with a readable location.
#[test]
fn the_comparison_reports_drift() {
    let reference = reference();
    let base = served();
    let certificate = "/components/schemas/Certificate";
    let cases: Vec<(&str, Drift)> = vec![
        (
            "GET /organization/certificates/{certificate_id} response 200.name: required by the reference, absent in certgate",
            Box::new(|d| {
                let c = d.pointer_mut(certificate).unwrap();
                c["properties"].as_object_mut().unwrap().remove("name");
                c["required"] = serde_json::json!(["object", "id", "created_at", "certificate_details"]);
            }),
        ),
        (
            "GET /organization/certificates/{certificate_id} response 200.created_at: type {\"integer\"} in the reference, {\"string\"} in certgate",
            Box::new(|d| {
                d.pointer_mut(certificate).unwrap()["properties"]["created_at"] = serde_json::json!({"type": "string"});
            }),
        ),
        (
            "POST /organization/certificates response 200.object: value \"cert\" not in the reference",
            Box::new(|d| {
                d.pointer_mut(certificate).unwrap()["properties"]["object"] = serde_json::json!({"type": "string", "enum": ["cert"]});
            }),
        ),
        (
            "GET /organization/certificates/{certificate_id} response 200.fingerprint: an extension certgate requires",
            Box::new(|d| {
                let c = d.pointer_mut(certificate).unwrap();
                c["properties"]["fingerprint"] = serde_json::json!({"type": "string"});
                c["required"].as_array_mut().unwrap().push("fingerprint".into());
            }),
        ),
        (
            "GET /organization/certificates/{certificate_id} response 200.id: null in certgate",
            Box::new(|d| {
                d.pointer_mut(certificate).unwrap()["properties"]["id"] = serde_json::json!({"type": ["string", "null"]});
            }),
        ),
        (
            "POST /organization/certificates request body.name: required by certgate",
            Box::new(|d| {
                let u = d.pointer_mut("/components/schemas/UploadCertificateRequest").unwrap();
                u["required"].as_array_mut().unwrap().push("name".into());
            }),
        ),
        (
            "GET /organization/certificates query parameter order: value \"asc\" of the reference refused by certgate",
            Box::new(|d| {
                let params = d.pointer_mut("/paths/~1v1~1organization~1certificates/get/parameters").unwrap();
                for p in params.as_array_mut().unwrap() {
                    if p["name"] == "order" {
                        p["schema"]["enum"] = serde_json::json!(["desc"]);
                    }
                }
            }),
        ),
        (
            "DELETE /organization/certificates/{certificate_id}: in the reference, not served by certgate",
            Box::new(|d| {
                d.pointer_mut("/paths/~1v1~1organization~1certificates~1{certificate_id}")
                    .unwrap()
                    .as_object_mut()
                    .unwrap()
                    .remove("delete");
            }),
        ),
    ];
    let before = differences(&reference, &base);
    for (expected, drift) in cases {
        let mut doc = base.clone();
        drift(&mut doc);
        let after = differences(&reference, &doc);
        let new: Vec<_> = after.iter().filter(|f| !before.contains(f)).collect();
        assert!(
            new.iter().any(|f| f.contains(expected)),
            "expected a finding containing\n  {expected}\ngot\n  {new:#?}"
        );
    }
}

/// The document itself: OpenAPI 3.1, every response described, every `/v1` operation behind
/// the admin key, and nothing else.
#[test]
fn the_document_is_complete() {
    let doc = served();
    assert_eq!(doc["openapi"], "3.1.0");
    let schemes = &doc["components"]["securitySchemes"]["AdminApiKeyAuth"];
    assert_eq!(schemes["scheme"], "bearer", "{schemes}");
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let label = format!("{method} {path}");
            let secured = op["security"][0].get("AdminApiKeyAuth").is_some();
            assert_eq!(secured, path.starts_with("/v1/"), "{label}: security");
            assert!(op["operationId"].is_string(), "{label}: operationId");
            for (status, response) in op["responses"].as_object().unwrap() {
                let response = Compare::response(&doc, response);
                assert!(
                    response["description"]
                        .as_str()
                        .is_some_and(|d| !d.is_empty()),
                    "{label} {status}: OpenAPI requires a description"
                );
            }
        }
    }
}

backend_tests!(served_without_a_key_and_every_path_is_routed);

/// `/openapi.json` needs no key and is the document `api::openapi()` builds; every operation
/// it lists is routed (the answer is never the router's own "no such route" or 405).
async fn served_without_a_key_and_every_path_is_routed(app: TestApp) {
    let res = reqwest::get(format!("{}/openapi.json", app.api.origin()))
        .await
        .expect("GET /openapi.json");
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    let body: Value = res.json().await.expect("JSON");
    assert_eq!(body, served());
    let http = reqwest::Client::new();
    for (path, item) in body["paths"].as_object().unwrap() {
        let concrete = path
            .replace("{certificate_id}", "cert_doesnotexist")
            .replace("{project_id}", "proj_doesnotexist")
            .replace("{key_id}", "key_doesnotexist");
        for method in item.as_object().unwrap().keys() {
            let res = http
                .request(
                    method.to_uppercase().parse().unwrap(),
                    format!("{}{concrete}", app.api.origin()),
                )
                .bearer_auth(&app.key)
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            let text = res.text().await.unwrap();
            assert!(
                status != 405 && !text.contains("Invalid URL"),
                "{method} {path}: {status} {text}"
            );
        }
    }
}
