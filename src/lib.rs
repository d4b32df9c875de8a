//! certgate: an OpenAI-compatible Admin API for mTLS CA certificates, and the gateway that
//! enforces them. See ARCHITECTURE.md for the map and docs/decisions.md for the decisions the
//! code cites.
//!
//! - [`admission`]: a decision's chain checks and client filters, off the async workers on a
//!   bounded pool (shared by the gateway and the check endpoint);
//! - [`api`]: the Admin API's HTTP boundary (axum, JSON);
//! - [`authz`]: `certgate authz`, the gateway's trust decision served to other proxies (Envoy
//!   `ext_authz` over gRPC, forward auth over HTTP);
//! - [`cli`]: command line parsing and dispatch;
//! - [`crl`]: pure CRL parsing and checks;
//! - [`domain`]: rules, ids, limits, admin key values and the clock; no I/O;
//! - [`fetch`]: revocation the CAs publish, fetched from tenant-chosen URLs through one guarded
//!   HTTP client (CRLs from `crl_url`);
//! - [`gateway`]: the mTLS gateway (`certgate gateway`); the only module that imports rustls;
//! - [`insight`]: the check and rotate use case, called by the API and the CLI alike;
//! - [`key_output`]: where a new admin key's value goes: a new 0600 file, or stdout; never a log
//!   line;
//! - [`metrics`]: Prometheus metrics of `serve` and `gateway`, and their plain-HTTP listener;
//! - [`openai_error`]: OpenAI's error body, shared by the Admin API and the gateway;
//! - [`runtime`]: what long-running processes share: the shutdown signal, the bounded
//!   connection loop;
//! - [`serve`]: `certgate serve`;
//! - [`store`]: persistence on SQLite or PostgreSQL;
//! - [`telemetry`]: logging set-up;
//! - [`trust`]: the trust decision: which active CA (if any) admits a client certificate chain;
//!   pure;
//! - [`x509`]: pure X.509 upload checks.

// Each module's documentation is its own `//!` text. (Outer `///` lines here as well would make
// rustdoc resolve the links of that text from the crate root, not from the module.)
pub mod admission;
pub mod api;
pub mod authz;
pub mod cli;
pub mod crl;
pub mod domain;
pub mod fetch;
pub mod gateway;
pub mod insight;
pub mod key_output;
pub mod metrics;
pub mod ocsp;
pub mod openai_error;
pub mod runtime;
pub mod serve;
pub mod store;
pub mod telemetry;
pub mod trust;
pub mod x509;
