//! certgate: an OpenAI-compatible Admin API for mTLS CA certificates, and the gateway that
//! enforces them. See ARCHITECTURE.md for the map.

/// The Admin API's HTTP boundary (axum, JSON).
pub mod api;
/// Command line parsing and dispatch.
pub mod cli;
/// Pure CRL parsing and checks.
pub mod crl;
/// Rules, ids, limits, admin key values and the clock; no I/O.
pub mod domain;
/// The mTLS gateway (`certgate gateway`); the only module that imports rustls.
pub mod gateway;
/// Where a new admin key's value goes: a new 0600 file, or stdout; never a log line.
pub mod key_output;
/// Prometheus metrics of `serve` and `gateway`, and their plain-HTTP listener.
pub mod metrics;
/// OpenAI's error body, shared by the Admin API and the gateway.
pub mod openai_error;
/// What long-running processes share: the shutdown signal.
pub mod runtime;
/// `certgate serve`.
pub mod serve;
/// Persistence on SQLite or PostgreSQL.
pub mod store;
/// Logging set-up.
pub mod telemetry;
/// The trust decision: which active CA (if any) admits a client certificate chain; pure.
pub mod trust;
/// Pure X.509 upload checks.
pub mod x509;
