//! The decision itself: given the index, the chain, what the connection already checked and
//! the request's scope, admit (naming the CA) or refuse (with the code the gateway answers and
//! the check endpoint reports). Cheap: hash lookups and comparisons, no signature work.

use std::fmt;
use std::sync::Arc;

use super::chain::{AnchorCheck, ChainChecks, ChainProblem, PeerChain};
use super::filter::StoredFilter;
use super::index::TrustIndex;

/// The organization and project a request is for. Where they come from (headers, the
/// gateway's default, a request body) is the caller's business; the organization is never
/// inferred from the certificate (spec §12.9: CA certificates are public).
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub organization: &'a str,
    pub project: Option<&'a str>,
}

/// Why a request was admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    pub organization: String,
    pub project: Option<String>,
    /// The certificate object (the CA) that admitted the client.
    pub certificate_id: String,
}

/// Why a request was refused. [`Rejection::code`] is the `code` of OpenAI's error body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// No trust state has loaded yet (the database has never answered).
    TrustStateUnavailable,
    /// No organization was named and the gateway has no default.
    OrganizationRequired,
    UnknownOrganization,
    /// The project is not an unarchived project of the organization.
    UnknownProject,
    CertificateRequired,
    Untrusted(Untrusted),
    /// The client's chain, or the CA it chains to, is outside its validity at this instant.
    Expired,
    NotActiveForProject,
    /// The verified path holds a deny-listed certificate, or one its issuer's CRL lists, or
    /// the leaf's OCSP responder says it is revoked.
    Revoked,
    /// The CA's client filter does not admit the certificate.
    Filtered,
    /// The CA's OCSP mode is `hard_fail` and its responder gave no valid answer about the
    /// certificate (decisions.md D62).
    RevocationUnknown,
}

/// What "untrusted" means in a given refusal, for the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Untrusted {
    ChainTooLong,
    NoClientAuth,
    Malformed,
    /// No active CA of the organization verifies the chain.
    NoActiveCa,
}

/// How a refusal is answered: which family of HTTP status it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectionKind {
    /// The request itself is wrong (400).
    BadRequest,
    /// The client certificate is not good enough (403).
    Forbidden,
    /// certgate cannot decide yet (503).
    Unavailable,
}

impl Rejection {
    pub fn code(self) -> &'static str {
        match self {
            Rejection::TrustStateUnavailable => "trust_state_unavailable",
            Rejection::OrganizationRequired => "organization_required",
            Rejection::UnknownOrganization => "unknown_organization",
            Rejection::UnknownProject => "unknown_project",
            Rejection::CertificateRequired => "client_certificate_required",
            Rejection::Untrusted(_) => "client_certificate_untrusted",
            Rejection::Expired => "client_certificate_expired",
            Rejection::NotActiveForProject => "client_certificate_not_active_for_project",
            Rejection::Revoked => "client_certificate_revoked",
            Rejection::Filtered => "client_certificate_filtered",
            Rejection::RevocationUnknown => "client_certificate_revocation_unknown",
        }
    }

    pub fn kind(self) -> RejectionKind {
        match self {
            Rejection::TrustStateUnavailable => RejectionKind::Unavailable,
            Rejection::OrganizationRequired
            | Rejection::UnknownOrganization
            | Rejection::UnknownProject => RejectionKind::BadRequest,
            Rejection::CertificateRequired
            | Rejection::Untrusted(_)
            | Rejection::Expired
            | Rejection::NotActiveForProject
            | Rejection::Revoked
            | Rejection::Filtered
            | Rejection::RevocationUnknown => RejectionKind::Forbidden,
        }
    }
}

impl fmt::Display for Rejection {
    /// The message: what happened and what to do, for a person.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rejection::TrustStateUnavailable => "The gateway has not loaded its trust state yet; try again shortly.",
            Rejection::OrganizationRequired => "Send an OpenAI-Organization header naming your organization (this gateway has no default organization).",
            Rejection::UnknownOrganization => "The OpenAI-Organization header does not name a known organization.",
            Rejection::UnknownProject => "The OpenAI-Project header does not name an active project of this organization.",
            Rejection::CertificateRequired => "A client certificate is required: connect with a certificate signed by a CA active for this organization or project.",
            Rejection::Untrusted(Untrusted::ChainTooLong) => "The client certificate chain is too long: send the leaf and at most 4 intermediate certificates.",
            Rejection::Untrusted(Untrusted::NoClientAuth) => "The client certificate has no clientAuth usage: it needs an extended key usage extension that includes TLS client authentication.",
            Rejection::Untrusted(Untrusted::Malformed) => "The client certificate could not be parsed as an X.509 certificate.",
            Rejection::Untrusted(Untrusted::NoActiveCa) => "The client certificate does not chain to a CA certificate active for this organization.",
            Rejection::Expired => "The client certificate, or the CA certificate it chains to, is outside its validity period.",
            Rejection::NotActiveForProject => "The client certificate's CA is not active for this project (send OpenAI-Project for a project-level CA).",
            Rejection::Revoked => "The client certificate (or a certificate of its chain) is revoked: it is on this organization's deny-list, in its issuer's certificate revocation list, or revoked according to its CA's OCSP responder.",
            Rejection::Filtered => "The client certificate chains to an active CA, but that CA's client filter does not admit it.",
            Rejection::RevocationUnknown => "The client certificate's revocation status is unknown: its CA requires an OCSP answer (hard_fail) and the responder named in the certificate gave no valid one (unreachable, too slow, unknown or unverifiable). Try again shortly, or ask the CA's operator to fix its OCSP responder.",
        })
    }
}

/// Refusals that need no chain work: the trust state, the scope, and the chain's own shape.
/// The gateway asks this first, so a bad request costs no signature checks.
pub fn precheck(
    index: &TrustIndex,
    peer: Option<&PeerChain>,
    scope: Scope<'_>,
) -> Result<(), Rejection> {
    if index.generation.is_none() {
        return Err(Rejection::TrustStateUnavailable);
    }
    if !index.has_organization(scope.organization) {
        return Err(Rejection::UnknownOrganization);
    }
    if let Some(project) = scope.project {
        if !index.has_project(scope.organization, project) {
            return Err(Rejection::UnknownProject);
        }
    }
    let Some(peer) = peer else {
        return Err(Rejection::CertificateRequired);
    };
    match peer.problem() {
        None => Ok(()),
        Some(ChainProblem::TooLong) => Err(Rejection::Untrusted(Untrusted::ChainTooLong)),
        Some(ChainProblem::NoClientAuth) => Err(Rejection::Untrusted(Untrusted::NoClientAuth)),
        Some(ChainProblem::Malformed) => Err(Rejection::Untrusted(Untrusted::Malformed)),
    }
}

/// Decides one request from the chain checks and client filter verdicts already made (see
/// [`ChainChecks::missing`] and [`ChainChecks::filter_work`]; an anchor not checked counts as
/// not verifying and a filter without a verdict as false, which can only refuse). When several
/// refusals apply, the code is that of the first failing check, for the active CA that got
/// furthest: untrusted, then expired, then not active for the project, then revoked, then
/// filtered. Evaluates nothing: hash lookups and comparisons.
pub fn decide(
    index: &TrustIndex,
    peer: Option<&PeerChain>,
    checks: &ChainChecks,
    scope: Scope<'_>,
    now: i64,
) -> Result<Admission, Rejection> {
    precheck(index, peer, scope)?;
    let Some(peer) = peer else {
        return Err(Rejection::CertificateRequired);
    };
    judge(index, peer, checks, scope, now, |_, filter| {
        checks.verdict(filter) == Some(true)
    })
}

/// The decision for a chain that passed [`precheck`], asking `filter` (certificate id, its
/// filter) whether a CA's filter admits the leaf.
pub(super) fn judge(
    index: &TrustIndex,
    peer: &PeerChain,
    checks: &ChainChecks,
    scope: Scope<'_>,
    now: i64,
    mut filter: impl FnMut(&str, &Arc<StoredFilter>) -> bool,
) -> Result<Admission, Rejection> {
    // How far the best active CA of the organization got.
    let mut furthest: Option<Stage> = None;
    let mut reached = |stage: Stage| furthest = furthest.max(Some(stage));
    let mut admitting: Option<&str> = None;
    for (group, members) in peer.candidates(index, scope.organization) {
        let check = checks.get(&group).unwrap_or(AnchorCheck::Invalid);
        let AnchorCheck::Genuine { path, .. } = &check else {
            reached(Stage::Untrusted);
            continue;
        };
        if !check.valid_at(now) {
            reached(Stage::Expired);
            continue;
        }
        for i in members {
            let Some(anchor) = index
                .part(scope.organization)
                .and_then(|p| p.anchors.get(i))
            else {
                continue;
            };
            if !(anchor.valid_at <= now && now <= anchor.expires_at) {
                reached(Stage::Expired);
                continue;
            }
            let in_org = anchor
                .activations
                .iter()
                .filter(|a| a.org_id == scope.organization);
            for act in in_org {
                if !act.covers(scope.project) {
                    reached(Stage::NotActiveForProject);
                } else if index.revokes(scope.organization, path) {
                    reached(Stage::Revoked);
                } else if act
                    .filter
                    .as_ref()
                    .is_some_and(|f| !filter(&act.certificate_id, f))
                {
                    reached(Stage::Filtered);
                } else if admitting.is_none_or(|id| act.certificate_id.as_str() < id) {
                    // Deterministic: the smallest certificate id among those that admit.
                    admitting = Some(&act.certificate_id);
                }
            }
        }
    }
    if let Some(certificate_id) = admitting {
        return Ok(Admission {
            organization: scope.organization.to_owned(),
            project: scope.project.map(str::to_owned),
            certificate_id: certificate_id.to_owned(),
        });
    }
    Err(match furthest {
        None | Some(Stage::Untrusted) => Rejection::Untrusted(Untrusted::NoActiveCa),
        Some(Stage::Expired) => Rejection::Expired,
        Some(Stage::NotActiveForProject) => Rejection::NotActiveForProject,
        Some(Stage::Revoked) => Rejection::Revoked,
        Some(Stage::Filtered) => Rejection::Filtered,
    })
}

/// The checks an active CA passes, in order; a refusal names the furthest any CA got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    Untrusted,
    Expired,
    NotActiveForProject,
    Revoked,
    Filtered,
}

#[cfg(test)]
mod tests;
