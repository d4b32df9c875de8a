//! The audit log (OpenAI's shapes; decisions.md D16-D18): one event per change, written with it; exact payloads,
//! actors and projects; every filter; `after`/`before`; completeness under concurrent writers;
//! retention.
//!
//! By concern: what is written and when (`events.rs`: payloads, refusals, concurrent writers,
//! retention) and how it is read (`queries.rs`: filters, cursors, bad queries). The helpers
//! below serve both.

mod events;
mod queries;

use serde_json::Value;

use crate::client::Api;
use crate::helpers::TestApp;

const LOGS: &str = "/organization/audit_logs";

/// Every event `api` can see, newest first, all pages (following `last_id`, like the SDK).
async fn all_events(api: &Api, query: &str) -> Vec<Value> {
    let sep = if query.is_empty() { "" } else { "&" };
    let mut items = Vec::new();
    let mut after = String::new();
    loop {
        let page = api
            .get(&format!("{LOGS}?limit=100{sep}{query}{after}"))
            .await;
        let page = page.ok();
        items.extend(page["data"].as_array().expect("data").iter().cloned());
        if page["has_more"] != true {
            return items;
        }
        after = format!("&after={}", page["last_id"].as_str().expect("last_id"));
    }
}

/// The types of `events`, oldest first.
fn types(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .rev()
        .map(|e| e["type"].as_str().unwrap())
        .collect()
}

/// The key id of the API's caller, and the organization owner's user id.
async fn me(app: &TestApp) -> (String, String) {
    let keys = app.api.get("/organization/admin_api_keys").await;
    let key = keys.ok()["data"][0]["id"].as_str().unwrap().to_owned();
    let owner = format!("user_{}", app.org_id.strip_prefix("org-").unwrap());
    (key, owner)
}
