//! Revocation a CA publishes itself, fetched from tenant-chosen URLs (spec §13.4): the guarded
//! HTTP client every such fetch goes through (`client`, decisions.md D60) and the CRL fetcher
//! `serve` runs (`crl`, decisions.md D59).
//!
//! Imports `store`, `crl`, `domain` (and `metrics`'s registry types): never `api`, `gateway`,
//! `cli` or `serve`, which call it.

pub mod client;
mod crl;

pub use client::{
    FetchError, FetchPolicy, MAX_BODY_BYTES, MAX_BODY_BYTES_SETTING, MIN_BODY_BYTES_SETTING,
};
pub use crl::{CrlFetchMetrics, CrlFetcher, CrlTiming};
