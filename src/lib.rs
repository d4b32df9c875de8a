//! certgate: an OpenAI-compatible Admin API for mTLS CA certificates, and the gateway that
//! enforces them. See ARCHITECTURE.md for the map.

/// The Admin API's HTTP boundary (axum, JSON).
pub mod api;
/// Command line parsing and dispatch.
pub mod cli;
/// Rules, ids, limits and the clock; no I/O.
pub mod domain;
/// The mTLS gateway (`certgate gateway`); the only module that imports rustls.
pub mod gateway;
/// `certgate serve`.
pub mod serve;
/// Persistence on SQLite or PostgreSQL.
pub mod store;
/// Logging set-up.
pub mod telemetry;
/// Pure X.509 upload checks.
pub mod x509;
