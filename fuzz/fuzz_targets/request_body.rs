//! Request bodies through the Admin API's extractor (`api::extract::JsonBody`), into every
//! request type of `api::requests` (and `NoFields`). Input: `[request type][body bytes]`.
//!
//! Properties beside no panic: a body is either parsed or refused with a 4xx (400, or 413 past
//! the limit) in OpenAI's error shape (`{"error":{"message","type","param","code"}}`, a
//! non-empty message, `param` a field name or null); never a 5xx; the same body gets the same
//! answer twice.
#![no_main]

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::response::IntoResponse;
use certgate::api::extract::{JsonBody, NoFields};
use certgate::api::requests::*;
use certgate_fuzz::runtime;
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;

/// The answer to `body` when parsed as `T`: `None` when it parsed, else the status and the
/// error body.
fn answer<T: DeserializeOwned>(body: &[u8]) -> Option<(u16, serde_json::Value)> {
    runtime().block_on(async {
        let req = Request::builder()
            .method("POST")
            .header("content-type", "application/json")
            .body(Body::from(body.to_vec()))
            .expect("a request");
        match JsonBody::<T>::from_request(req, &()).await {
            Ok(_) => None,
            Err(refusal) => {
                let res = refusal.into_response();
                let status = res.status().as_u16();
                let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
                    .await
                    .expect("the error body");
                let json = serde_json::from_slice(&bytes).expect("the error body is JSON");
                Some((status, json))
            }
        }
    })
}

fn check<T: DeserializeOwned>(body: &[u8]) {
    let first = answer::<T>(body);
    assert_eq!(first, answer::<T>(body), "not deterministic");
    let Some((status, json)) = first else {
        return;
    };
    assert!(status == 400 || status == 413, "status {status}: {json}");
    let error = json["error"].as_object().expect("an `error` object");
    let mut keys: Vec<&str> = error.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["code", "message", "param", "type"], "{json}");
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{json}"
    );
    assert_eq!(error["type"], "invalid_request_error", "{json}");
    assert!(
        error["param"].is_null() || error["param"].is_string(),
        "{json}"
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    match kind % 11 {
        0 => check::<UploadCertificateRequest>(body),
        1 => check::<ModifyCertificateRequest>(body),
        2 => check::<CheckCertificateRequest>(body),
        3 => check::<RotateCertificateRequest>(body),
        4 => check::<RevokeCertificateRequest>(body),
        5 => check::<PutCrlRequest>(body),
        6 => check::<ToggleCertificatesRequest>(body),
        7 => check::<ProjectCreateRequest>(body),
        8 => check::<ProjectUpdateRequest>(body),
        9 => check::<AdminApiKeyCreateRequest>(body),
        _ => check::<NoFields>(body),
    }
});
