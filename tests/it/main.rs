//! certgate's integration tests, in one binary: the Admin API over real HTTP, the mTLS
//! gateway through real TLS handshakes, and the `certgate` binary as operators run it. Every
//! API and gateway case runs on SQLite and on PostgreSQL (`backend_tests!`, `db_tests!`).

// Test code: a failed unwrap is a failed test, and helpers are `pub` for the sibling modules.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod bounds;
mod client;
mod helpers;
mod openssl_ca;
mod pki;
mod process;

mod api;
mod authz;
mod cert_cli;
mod cli;
mod crl_lease;
mod deadline;
mod fetch;
mod gateway;
mod group_commit;
mod install;
mod layering;
mod limits;
mod metrics;
mod openapi;
mod outage;
mod replicas;
mod shutdown;
mod startup;
mod trust_sync;
mod trust_sync_timing;
