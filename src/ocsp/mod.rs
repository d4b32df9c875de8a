//! OCSP for client certificates (spec §13.4, decisions.md D61, D62): for a CA whose `ocsp`
//! mode is `soft_fail` or `hard_fail`, the gateway, `certgate authz` and the check endpoint ask
//! the leaf's OCSP responder (named in its Authority Information Access) whether the leaf is
//! revoked, and apply the CA's mode to the answer.
//!
//! - [`request`]: pure: the responder URL, the `CertID` and the DER request for a leaf and its
//!   issuer;
//! - [`response`]: pure: a response parsed and verified (signed by the issuer, or by a
//!   delegated responder the issuer certified for OCSP signing and valid now; the `CertID` is
//!   the leaf's; `thisUpdate` not in the future, `nextUpdate` not past);
//! - [`checker`]: the answers kept until their `nextUpdate` (at most 1 h, failures 10 s), one
//!   request per leaf among concurrent handshakes, fetched through [`crate::fetch::client`]
//!   (its SSRF guard, no redirects) with a 2 s limit; and [`judge`], the one step the gateway,
//!   authz and the check endpoint share.
//!
//! Imports `fetch` (its client only), `trust`, `x509` and `domain`; never `api`, `cli`,
//! `gateway`, `serve` or `store`. Clients of a CA with `ocsp: off` never reach this module.

pub mod checker;
pub mod request;
pub mod response;

pub use checker::{judge, OcspChecker, OcspMetrics, OcspSaid, OCSP_TIMEOUT};
pub use request::OcspTarget;
pub use response::{CertState, OcspAnswer};

/// Why no valid OCSP answer was had. `Display` is certgate's own words (and numbers): nothing
/// a responder sent is ever in it, so it may be logged and shown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OcspError {
    #[error("the client certificate names no http(s) OCSP responder in its Authority Information Access")]
    NoResponder,
    #[error("the client certificate or its issuer could not be read for an OCSP request")]
    BadCertificate,
    #[error("the OCSP responder could not be reached: {0}")]
    Fetch(#[from] crate::fetch::FetchError),
    #[error("the OCSP response is not a well-formed basic OCSP response")]
    Malformed,
    #[error("the OCSP responder answered with status {0} instead of a response")]
    NotSuccessful(u8),
    #[error("the OCSP response is signed neither by the issuing CA nor by a responder it delegated OCSP signing to")]
    WrongSigner,
    #[error("the OCSP response does not speak about this client certificate")]
    NotForThisCertificate,
    #[error("the OCSP response is not valid yet (its thisUpdate is in the future)")]
    NotYetValid,
    #[error("the OCSP response is stale (its nextUpdate has passed)")]
    Stale,
    #[error("the OCSP check did not complete")]
    Interrupted,
}
