//! The trust decision: which active CA, if any, admits a client certificate chain for a
//! request's organization and project at this instant. Used by the gateway for every request
//! and by `POST /v1/organization/certificates/check`: one implementation, so the two can never
//! disagree.
//!
//! - [`snapshot`]: what the store reads (active anchors, organizations, projects, the deny-list,
//!   the CRLs of active CAs) for one trust generation;
//! - [`index`]: [`TrustIndex`], the anchors indexed by subject and Subject Key Identifier (as
//!   recorded at upload), each PEM decoded once and reused across rebuilds;
//! - [`chain`]: the client's chain, its candidate anchors (found through the issuer names and
//!   Authority Key Identifiers it carries, so the cost does not grow with the number of active
//!   anchors), and the bounded, expensive part: webpki's path building against one anchor
//!   group, remembered per connection in [`ChainChecks`];
//! - [`filter`]: tenants' CEL client filters: checked without running when written (syntax,
//!   unknown names, non-boolean results, nesting, a static cost estimate), compiled on first
//!   use, evaluated only on leaves within the bounds the estimate assumes;
//! - [`SIGNATURE_ALGORITHMS`]: the one list of signature algorithms (handshake, chain checks,
//!   CRLs, uploads), re-exported from `x509`;
//! - [`mod@decide`]: the cheap part: scope, the anchors' own validity windows (webpki does not
//!   look at an anchor's), activations, revocation, filter verdicts already made, and the
//!   refusal codes.
//!
//! This module knows no HTTP, SQL, sockets or threads: the expensive work a decision needs
//! runs in [`crate::admission`].

pub mod chain;
mod check_cache;
pub mod decide;
pub mod filter;
pub mod index;
pub mod snapshot;

/// The one list of signature algorithms (kept in `x509`, the lowest module that verifies).
pub use crate::x509::SIGNATURE_ALGORITHMS;
pub use chain::{AnchorCheck, ChainChecks, ChainProblem, PeerChain, MAX_INTERMEDIATES};
pub use check_cache::CheckCache;
pub use decide::{decide, precheck, Admission, Rejection, RejectionKind, Scope, Untrusted};
pub use filter::ClientFilter;
pub use index::{AnchorGroup, AnchorView, IndexView, OrgView, ParsedAnchor, TrustIndex};
pub use snapshot::{
    CertificateState, CrlState, CrlVersion, FetchedCrl, OcspSubject, OrganizationState, StoredCrl,
    TrustAnchor, TrustChanges, TrustDelta, TrustSnapshot,
};
