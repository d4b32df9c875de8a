//! The audit log's vocabulary: who acts ([`Actor`]) and what happened ([`AuditEvent`]), one
//! variant per event type with its payload. The store writes events inside the transaction
//! that makes the change (decisions.md D16); how a payload looks as JSON is the store's business,
//! not this module's.

use super::ids::{CertificateId, KeyId, ProjectId};
use super::revocation::{CrlSummary, RevokedCertificate};
use super::sources::{RevocationSources, SourcesChange};

/// Who makes a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A request authenticated with this admin key.
    ApiKey(KeyId),
    /// certgate itself, on an operator's behalf: the CLI, the bootstrap, a migration.
    /// Shown as `actor: null`.
    System,
}

/// A certificate as an event names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRef {
    pub id: CertificateId,
    pub name: Option<String>,
}

/// A project as an event names it (its name after the change).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectRef {
    pub id: ProjectId,
    pub name: String,
}

/// One change, as the audit log records it. Several events may be written by one
/// transaction; they keep the order in which they were appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditEvent {
    /// An upload, with the client filter it set (decisions.md D18: a filter set at upload is in the
    /// log like any other change of who may connect).
    CertificateCreated {
        certificate: CertificateRef,
        client_filter: Option<String>,
        /// The CRL URL and OCSP mode it set (shown only when set; decisions.md D58).
        sources: RevocationSources,
    },
    /// One per modify call, whatever it changed; the name after it, and the client filter
    /// (see [`FilterChange`]).
    CertificateUpdated {
        certificate: CertificateRef,
        client_filter: FilterChange,
        /// What the call set of `crl_url` and `ocsp` (shown only when it named them).
        sources: SourcesChange,
    },
    CertificateDeleted {
        certificate: CertificateRef,
        /// The PEM exactly as uploaded.
        pem: String,
    },
    /// One per toggle call answered 200, naming every id of the call in request order; a
    /// project toggle also names its project.
    CertificatesActivated {
        project: Option<ProjectRef>,
        certificates: Vec<CertificateRef>,
    },
    CertificatesDeactivated {
        project: Option<ProjectRef>,
        certificates: Vec<CertificateRef>,
    },
    ProjectCreated(ProjectRef),
    /// `title` is the new name when the call renamed the project.
    ProjectUpdated {
        project: ProjectRef,
        title: Option<String>,
    },
    ProjectArchived(ProjectRef),
    ApiKeyCreated(KeyId),
    /// Deleted through the API or revoked with the CLI.
    ApiKeyDeleted(KeyId),
    /// A deny-list entry added.
    CertificateRevoked(RevokedCertificate),
    /// A deny-list entry removed.
    CertificateUnrevoked(RevokedCertificate),
    /// A CA certificate's CRL stored.
    CrlUpdated(CrlSummary),
    /// A CA certificate's CRL removed.
    CrlDeleted(CertificateId),
    /// A fetch of a CA certificate's `crl_url` (decisions.md D59): stored, or why not.
    CrlFetched(CrlFetch),
}

/// One fetch of a CA certificate's CRL from its `crl_url`, as the audit log records it. The
/// reason is certgate's own words (a fixed set), never anything from the fetched body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlFetch {
    pub certificate_id: CertificateId,
    pub url: String,
    /// The CRL stored (`ok: true`): its CRL number, when it has one, and its summary.
    pub stored: Option<(Option<String>, CrlSummary)>,
    /// Why nothing was stored (`ok: false`).
    pub reason: Option<String>,
}

/// What a `certificate.updated` event says of the client filter. Clearing a filter widens who
/// may connect, so it must never read like a call that left the filter alone (decisions.md D18).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterChange {
    /// The call did not name the filter and the certificate has none: the payload has no
    /// `client_filter`.
    Untouched,
    /// The filter in force after the call (set by it, or kept from before): `client_filter`
    /// is this string.
    InForce(String),
    /// The call cleared the filter: `client_filter` is null.
    Cleared,
}

impl FilterChange {
    /// The change made by a call that set the filter to `requested` (`None`: the call did not
    /// name it), on a certificate whose filter is `after` once the call is done.
    pub fn of(requested: Option<&Option<String>>, after: Option<&String>) -> FilterChange {
        match (requested, after) {
            (_, Some(filter)) => FilterChange::InForce(filter.clone()),
            (Some(None), None) => FilterChange::Cleared,
            (None | Some(Some(_)), None) => FilterChange::Untouched,
        }
    }
}

/// Every event type certgate writes, as `type` spells it.
pub const AUDIT_EVENT_TYPES: &[&str] = &[
    "certificate.created",
    "certificate.updated",
    "certificate.deleted",
    "certificates.activated",
    "certificates.deactivated",
    "project.created",
    "project.updated",
    "project.archived",
    "api_key.created",
    "api_key.deleted",
    "certificate.revoked",
    "certificate.unrevoked",
    "certificate.crl_updated",
    "certificate.crl_deleted",
    "certificate.crl_fetched",
];

impl AuditEvent {
    /// The event's `type` (also the name of its payload property).
    pub fn kind(&self) -> &'static str {
        match self {
            AuditEvent::CertificateCreated { .. } => "certificate.created",
            AuditEvent::CertificateUpdated { .. } => "certificate.updated",
            AuditEvent::CertificateDeleted { .. } => "certificate.deleted",
            AuditEvent::CertificatesActivated { .. } => "certificates.activated",
            AuditEvent::CertificatesDeactivated { .. } => "certificates.deactivated",
            AuditEvent::ProjectCreated(_) => "project.created",
            AuditEvent::ProjectUpdated { .. } => "project.updated",
            AuditEvent::ProjectArchived(_) => "project.archived",
            AuditEvent::ApiKeyCreated(_) => "api_key.created",
            AuditEvent::ApiKeyDeleted(_) => "api_key.deleted",
            AuditEvent::CertificateRevoked(_) => "certificate.revoked",
            AuditEvent::CertificateUnrevoked(_) => "certificate.unrevoked",
            AuditEvent::CrlUpdated(_) => "certificate.crl_updated",
            AuditEvent::CrlDeleted(_) => "certificate.crl_deleted",
            AuditEvent::CrlFetched(_) => "certificate.crl_fetched",
        }
    }

    /// The top-level `project`: the project acted on, for project toggles and `project.*`
    /// events; none otherwise.
    pub fn project(&self) -> Option<&ProjectRef> {
        match self {
            AuditEvent::CertificatesActivated { project, .. }
            | AuditEvent::CertificatesDeactivated { project, .. } => project.as_ref(),
            AuditEvent::ProjectCreated(p)
            | AuditEvent::ProjectUpdated { project: p, .. }
            | AuditEvent::ProjectArchived(p) => Some(p),
            _ => None,
        }
    }

    /// What `resource_ids[]` matches: the certificate, project or key the event is about. A
    /// toggle is about each certificate it names, not about its project.
    pub fn resource_ids(&self) -> Vec<&str> {
        match self {
            AuditEvent::CertificateCreated { certificate: c, .. }
            | AuditEvent::CertificateUpdated { certificate: c, .. }
            | AuditEvent::CertificateDeleted { certificate: c, .. } => vec![c.id.as_str()],
            AuditEvent::CertificatesActivated { certificates, .. }
            | AuditEvent::CertificatesDeactivated { certificates, .. } => {
                certificates.iter().map(|c| c.id.as_str()).collect()
            }
            AuditEvent::ProjectCreated(p)
            | AuditEvent::ProjectUpdated { project: p, .. }
            | AuditEvent::ProjectArchived(p) => vec![p.id.as_str()],
            AuditEvent::ApiKeyCreated(k) | AuditEvent::ApiKeyDeleted(k) => vec![k.as_str()],
            AuditEvent::CertificateRevoked(r) | AuditEvent::CertificateUnrevoked(r) => {
                vec![r.id.as_str()]
            }
            AuditEvent::CrlUpdated(c) => vec![c.certificate_id.as_str()],
            AuditEvent::CrlDeleted(id) => vec![id.as_str()],
            AuditEvent::CrlFetched(f) => vec![f.certificate_id.as_str()],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_listed_and_toggles_are_about_their_certificates() {
        let cert = |id: &str| CertificateRef {
            id: CertificateId::parse(id).unwrap(),
            name: None,
        };
        let project = ProjectRef {
            id: ProjectId::parse("proj_p").unwrap(),
            name: "P".into(),
        };
        let toggle = AuditEvent::CertificatesActivated {
            project: Some(project.clone()),
            certificates: vec![cert("cert_b"), cert("cert_a")],
        };
        assert!(AUDIT_EVENT_TYPES.contains(&toggle.kind()));
        assert_eq!(toggle.resource_ids(), ["cert_b", "cert_a"]);
        assert_eq!(toggle.project(), Some(&project));
        let created = AuditEvent::CertificateCreated {
            certificate: cert("cert_a"),
            client_filter: None,
            sources: RevocationSources::default(),
        };
        assert_eq!(created.project(), None);
        let archived = AuditEvent::ProjectArchived(project);
        assert_eq!(archived.resource_ids(), ["proj_p"]);
    }

    #[test]
    fn a_cleared_filter_is_never_an_untouched_one() {
        let set = Some("true".to_owned());
        assert_eq!(FilterChange::of(Some(&None), None), FilterChange::Cleared);
        assert_eq!(FilterChange::of(None, None), FilterChange::Untouched);
        assert_eq!(
            FilterChange::of(Some(&set), set.as_ref()),
            FilterChange::InForce("true".into())
        );
        assert_eq!(
            FilterChange::of(None, set.as_ref()),
            FilterChange::InForce("true".into()),
            "a rename keeps naming the filter in force (decisions.md D16)"
        );
    }
}
