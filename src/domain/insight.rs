//! Certificate insight (decisions.md D19, D21): what `include[]=details` adds, a certificate's
//! status at a given instant, and the rules of a rotation (swapping one CA for another in every
//! scope at once).

use super::ids::{echo, CertificateId, ProjectId};
use super::DomainError;

/// A certificate is `expiring_soon` from this many seconds before its `expires_at`.
pub const EXPIRING_SOON_SECS: i64 = 30 * 24 * 60 * 60;

/// What a certificate read adds to the fields every answer has (`include[]=…`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct CertificateInclude {
    /// `certificate_details.content`: the PEM as uploaded.
    pub content: bool,
    /// The computed details and `activations`.
    pub details: bool,
}

impl CertificateInclude {
    /// Whether the read needs the stored PEM (shown, or computed from).
    pub fn needs_content(self) -> bool {
        self.content || self.details
    }
}

/// Where a certificate is active: the organization flag and the unarchived projects it is
/// active for on its own (in the projects' creation order).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Activations {
    pub organization: bool,
    pub projects: Vec<ProjectId>,
}

/// A certificate's validity at one instant, as `certificate_details.status` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateStatus {
    NotYetValid,
    Valid,
    /// Valid, and expiring within [`EXPIRING_SOON_SECS`].
    ExpiringSoon,
    Expired,
}

impl CertificateStatus {
    /// The status at `now` of a certificate valid from `valid_at` to `expires_at`, both
    /// inclusive (as X.509 and the gateway read them).
    pub fn at(valid_at: i64, expires_at: i64, now: i64) -> CertificateStatus {
        if now < valid_at {
            CertificateStatus::NotYetValid
        } else if now > expires_at {
            CertificateStatus::Expired
        } else if expires_at.saturating_sub(now) <= EXPIRING_SOON_SECS {
            CertificateStatus::ExpiringSoon
        } else {
            CertificateStatus::Valid
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CertificateStatus::NotYetValid => "not_yet_valid",
            CertificateStatus::Valid => "valid",
            CertificateStatus::ExpiringSoon => "expiring_soon",
            CertificateStatus::Expired => "expired",
        }
    }
}

/// What a rotation did: the scopes where `from` was active (and `to` now is), and whether
/// `from` was deactivated there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    pub from: CertificateId,
    pub to: CertificateId,
    pub organization: bool,
    pub projects: Vec<ProjectId>,
    pub retired: bool,
}

/// The two ends of a rotation, as a client sent them. A malformed id is unknown (404 naming
/// its parameter); the same id twice is refused before anything is read.
pub fn parse_rotation_ids(
    from: &str,
    to: &str,
) -> Result<(CertificateId, CertificateId), DomainError> {
    let from_id =
        CertificateId::parse_opt(from).ok_or_else(|| DomainError::UnknownCertificate {
            param: "from",
            id: echo(from),
        })?;
    let to_id = CertificateId::parse_opt(to).ok_or_else(|| DomainError::UnknownCertificate {
        param: "to",
        id: echo(to),
    })?;
    if from_id == to_id {
        return Err(DomainError::invalid(
            "to",
            format!("'to' must name another certificate than 'from' (both are '{from_id}')."),
        ));
    }
    Ok((from_id, to_id))
}

/// The rotation guard for `to`, run inside the rotation's transaction with its stored validity:
/// an expired CA admits no one, and retiring `from` in favour of a CA not valid yet would lock
/// `from`'s clients out until it is.
pub fn check_rotation_target(
    to: &CertificateId,
    valid_at: i64,
    expires_at: i64,
    now: i64,
    retire_from: bool,
) -> Result<(), DomainError> {
    if now > expires_at {
        return Err(DomainError::InvalidRotationTarget(format!(
            "certificate '{to}' expired at {expires_at} (Unix seconds); rotate to a valid CA."
        )));
    }
    if retire_from && now < valid_at {
        return Err(DomainError::CertificateNotYetValid(format!(
            "Certificate '{to}' is not valid until {valid_at} (Unix seconds); retiring 'from' now would lock its clients out. Rotate without retire_from now, and retire it once '{to}' is valid."
        )));
    }
    Ok(())
}

/// The rotation guard for `from`: it must be active somewhere, else there is nothing to swap.
pub fn check_rotation_source(
    from: &CertificateId,
    active_for_org: bool,
    active_projects: usize,
) -> Result<(), DomainError> {
    if active_for_org || active_projects > 0 {
        Ok(())
    } else {
        Err(DomainError::CertificateNotActive(format!(
            "Certificate '{from}' is not active for the organization or any unarchived project; there is nothing to rotate. Activate 'to' directly instead."
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_boundaries() {
        let (from, until) = (1_000, 1_000 + 100 * 86_400);
        let at = |now| CertificateStatus::at(from, until, now).as_str();
        assert_eq!(at(from - 1), "not_yet_valid");
        assert_eq!(at(from), "valid");
        assert_eq!(at(until - EXPIRING_SOON_SECS - 1), "valid");
        assert_eq!(at(until - EXPIRING_SOON_SECS), "expiring_soon");
        assert_eq!(at(until), "expiring_soon");
        assert_eq!(at(until + 1), "expired");
        // A certificate shorter than the window is expiring soon from its first second.
        assert_eq!(CertificateStatus::at(0, 10, 0).as_str(), "expiring_soon");
    }

    #[test]
    fn rotation_ids() {
        let (from, to) = parse_rotation_ids("cert_a", "cert_b").unwrap();
        assert_eq!((from.as_str(), to.as_str()), ("cert_a", "cert_b"));
        assert!(matches!(
            parse_rotation_ids("nope", "cert_b"),
            Err(DomainError::UnknownCertificate { param: "from", .. })
        ));
        assert!(matches!(
            parse_rotation_ids("cert_a", "proj_b"),
            Err(DomainError::UnknownCertificate { param: "to", .. })
        ));
        assert!(matches!(
            parse_rotation_ids("cert_a", "cert_a"),
            Err(DomainError::InvalidParam { param: "to", .. })
        ));
    }

    #[test]
    fn rotation_guards() {
        let id = CertificateId::parse("cert_a").unwrap();
        assert!(check_rotation_target(&id, 0, 100, 100, true).is_ok());
        assert!(matches!(
            check_rotation_target(&id, 0, 100, 101, false),
            Err(DomainError::InvalidRotationTarget(_))
        ));
        // Not valid yet: fine to stage (both stay active), refused when retiring `from`.
        assert!(check_rotation_target(&id, 50, 100, 10, false).is_ok());
        assert!(matches!(
            check_rotation_target(&id, 50, 100, 10, true),
            Err(DomainError::CertificateNotYetValid(_))
        ));
        assert!(check_rotation_source(&id, true, 0).is_ok());
        assert!(check_rotation_source(&id, false, 1).is_ok());
        assert!(matches!(
            check_rotation_source(&id, false, 0),
            Err(DomainError::CertificateNotActive(_))
        ));
    }
}
