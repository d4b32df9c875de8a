//! The Admin API over HTTP: the real router on a real socket, on a real SQLite file and on a
//! fresh PostgreSQL schema (every test runs on both backends).

mod audit;
mod auth;
mod bounds;
mod certificates;
mod console;
mod crls;
mod default_project;
mod filters;
mod hostile;
mod insight;
mod keys;
mod lists;
mod projects;
mod revocations;
mod sources;
mod toggles;

use serde_json::Value;

/// The ids of a list answer's `data`, in order.
fn ids(v: &Value) -> Vec<&str> {
    v["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|c| c["id"].as_str().expect("id"))
        .collect()
}
