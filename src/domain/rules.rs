//! The rules: limits, names, residency, toggles and the delete guard. The store calls the
//! guards *inside* its writing transactions, so each is checked against the state it is about
//! to change.

use super::ids::{echo, CertificateId, ProjectId};
use super::DomainError;

/// Most certificates one organization may hold (OpenAI: "Organizations can upload up to 50").
pub const MAX_CERTIFICATES_PER_ORG: i64 = 50;
/// Ids per activate/deactivate call (OpenAI: "up to 10 certificates at a time").
pub const MAX_TOGGLE_IDS: usize = 10;
/// Longest accepted certificate, project or key name, in characters.
pub const MAX_NAME_CHARS: usize = 256;
/// Largest accepted certificate text (OpenAI: "total certificate size … less than 16kb").
pub const MAX_CERTIFICATE_BYTES: usize = 16 * 1024;

/// Residency values OpenAI's spec and SDK know.
pub const RESIDENCIES: &[&str] = &[
    "GLOBAL",
    "US_STORAGE_PROCESSING",
    "EU_STORAGE_PROCESSING",
    "JP_STORAGE",
    "JP_STORAGE_PROCESSING",
    "KR_STORAGE",
    "CA_STORAGE",
    "SG_STORAGE",
    "IN_STORAGE",
    "IN_STORAGE_PROCESSING",
    "AU_STORAGE",
    "AU_STORAGE_PROCESSING",
    "GB_STORAGE",
    "AE_STORAGE",
    "AE_STORAGE_PROCESSING",
];

/// The certificates named by one activate/deactivate call: 1..=10 distinct ids, in request order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToggleIds(Vec<CertificateId>);

impl ToggleIds {
    pub fn parse(ids: &[String]) -> Result<ToggleIds, DomainError> {
        if ids.is_empty() {
            return Err(DomainError::InvalidToggleIds(
                "'certificate_ids' must name at least 1 certificate.".into(),
            ));
        }
        if ids.len() > MAX_TOGGLE_IDS {
            return Err(DomainError::InvalidToggleIds(format!(
                "'certificate_ids' names {} certificates; at most {MAX_TOGGLE_IDS} can be changed at a time.",
                ids.len()
            )));
        }
        for (i, id) in ids.iter().enumerate() {
            if ids[..i].contains(id) {
                return Err(DomainError::InvalidToggleIds(format!(
                    "'certificate_ids' names '{}' more than once.",
                    echo(id)
                )));
            }
        }
        ids.iter()
            .map(|id| {
                CertificateId::parse_opt(id).ok_or_else(|| DomainError::UnknownToggleId(echo(id)))
            })
            .collect::<Result<_, _>>()
            .map(ToggleIds)
    }

    pub fn as_slice(&self) -> &[CertificateId] {
        &self.0
    }
}

/// Where a toggle applies. Organization and project scope never change each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Organization,
    Project(ProjectId),
}

/// A name as given by a client: at most [`MAX_NAME_CHARS`] characters.
pub fn parse_name(param: &'static str, name: String) -> Result<String, DomainError> {
    let chars = name.chars().count();
    if chars > MAX_NAME_CHARS {
        return Err(DomainError::invalid(
            param,
            format!("'{param}' is {chars} characters long; the limit is {MAX_NAME_CHARS}."),
        ));
    }
    Ok(name)
}

/// A name that must also say something: not empty or only whitespace.
pub fn parse_required_name(param: &'static str, name: String) -> Result<String, DomainError> {
    if name.trim().is_empty() {
        return Err(DomainError::invalid(
            param,
            format!("'{param}' must not be empty."),
        ));
    }
    parse_name(param, name)
}

/// A project's residency: one of [`RESIDENCIES`].
pub fn parse_residency(param: &'static str, raw: String) -> Result<String, DomainError> {
    if RESIDENCIES.contains(&raw.as_str()) {
        Ok(raw)
    } else {
        Err(DomainError::invalid(
            param,
            format!(
                "Invalid '{param}': expected one of {}.",
                RESIDENCIES.join(", ")
            ),
        ))
    }
}

/// The upload guard, run inside the upload transaction with the organization's live count.
pub fn check_certificate_limit(current: i64) -> Result<(), DomainError> {
    if current >= MAX_CERTIFICATES_PER_ORG {
        Err(DomainError::CertificateLimitReached)
    } else {
        Ok(())
    }
}

/// The delete guard, run inside the delete transaction: a certificate may go only when it is
/// inactive for the organization and for every (unarchived) project.
pub fn check_deletable(
    cert_id: &CertificateId,
    org_id: &str,
    active_for_org: bool,
    active_projects: &[String],
) -> Result<(), DomainError> {
    let mut places = Vec::new();
    if active_for_org {
        places.push(format!("organization '{org_id}'"));
    }
    match active_projects {
        [] => {}
        [one] => places.push(format!("project '{one}'")),
        many => places.push(format!(
            "projects {}",
            many.iter()
                .map(|p| format!("'{p}'"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
    if places.is_empty() {
        return Ok(());
    }
    Err(DomainError::CertificateInUse(format!(
        "Certificate '{cert_id}' is still active for {}. Deactivate it there before deleting it.",
        places.join(" and ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toggle_ids() {
        assert!(ToggleIds::parse(&[]).is_err());
        assert!(
            ToggleIds::parse(&(0..11).map(|i| format!("cert_{i}")).collect::<Vec<_>>()).is_err()
        );
        assert!(ToggleIds::parse(&["cert_a".into(), "cert_a".into()]).is_err());
        assert_eq!(
            ToggleIds::parse(&["cert_a".into(), "nope".into()]),
            Err(DomainError::UnknownToggleId("nope".into()))
        );
        let ids = ToggleIds::parse(&["cert_b".into(), "cert_a".into()]).unwrap();
        let raw: Vec<&str> = ids.as_slice().iter().map(CertificateId::as_str).collect();
        assert_eq!(raw, ["cert_b", "cert_a"]);
    }

    #[test]
    fn delete_guard_names_every_place() {
        let id = CertificateId::parse("cert_1").unwrap();
        assert!(check_deletable(&id, "org-1", false, &[]).is_ok());
        let msg = check_deletable(&id, "org-1", true, &["proj_a".into(), "proj_b".into()])
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("organization 'org-1'") && msg.contains("'proj_a', 'proj_b'"),
            "{msg}"
        );
    }

    #[test]
    fn limit_guard() {
        assert!(check_certificate_limit(49).is_ok());
        assert_eq!(
            check_certificate_limit(50),
            Err(DomainError::CertificateLimitReached)
        );
    }

    #[test]
    fn names_and_residency() {
        assert!(parse_name("name", "x".repeat(256)).is_ok());
        assert!(parse_name("name", "x".repeat(257)).is_err());
        assert!(parse_required_name("name", "  ".into()).is_err());
        assert!(parse_residency("residency", "EU_STORAGE_PROCESSING".into()).is_ok());
        assert!(parse_residency("residency", "MARS".into()).is_err());
    }
}
