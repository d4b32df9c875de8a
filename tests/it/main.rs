//! certgate's integration tests, in one binary: the Admin API over real HTTP, the mTLS
//! gateway through real TLS handshakes, and the `certgate` binary as operators run it. Every
//! API and gateway case runs on SQLite and on PostgreSQL (`backend_tests!`, `db_tests!`).

mod client;
mod helpers;
mod pki;
mod process;

mod api;
mod gateway;
mod outage;
mod replicas;
