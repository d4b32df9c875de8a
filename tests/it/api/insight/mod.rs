//! Certificate insight (decisions.md D19-D21): `include[]=details` on get and both lists
//! (`details.rs`), the check endpoint's answers and refusals (`check.rs`), and rotation: its
//! scopes, audit events, refusals, and rotations racing other writes (`rotation.rs`). The
//! check's agreement with the real gateway is in `gateway::insight`. The helpers below serve
//! all three.

mod check;
mod details;
mod rotation;

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::client::{Answer, Api};

const DAY: i64 = 86_400;
const CERTS: &str = "/organization/certificates";

fn keys(v: &Value) -> BTreeSet<&str> {
    v.as_object()
        .unwrap_or_else(|| panic!("an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect()
}

fn set<'a>(k: &[&'a str]) -> BTreeSet<&'a str> {
    k.iter().copied().collect()
}

async fn get_details(api: &Api, id: &str) -> Value {
    api.get(&format!("{CERTS}/{id}?include[]=details"))
        .await
        .ok()
        .clone()
}

/// The item `id` of a list answer.
fn item<'a>(list: &'a Value, id: &str) -> &'a Value {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("{id} not listed: {list}"))
}

pub async fn check(api: &Api, pem: &str, project: Option<&str>) -> Answer {
    let mut body = json!({ "certificate": pem });
    if let Some(p) = project {
        body["project_id"] = json!(p);
    }
    api.post(&format!("{CERTS}/check"), body).await
}

async fn rotate(api: &Api, from: &str, to: &str, retire: Option<bool>) -> Answer {
    let mut body = json!({ "from": from, "to": to });
    if let Some(r) = retire {
        body["retire_from"] = json!(r);
    }
    api.post(&format!("{CERTS}/rotate"), body).await
}

/// Every audit event of the organization, newest first.
async fn audit(api: &Api) -> Vec<Value> {
    api.list_all("/organization/audit_logs").await
}
