//! Rotation (decisions.md D21): one CA takes over from another in every scope where the old one is
//! active, in one transaction, so no gateway ever sees a state where such a scope has neither.

use sqlx::Row;

use super::audit::TxAudit;
use super::tx::{bump_trust_generation, in_transaction, lock_organization, TrustChange};
use super::{Result, Store};
use crate::domain::{
    self, Actor, AuditEvent, CertificateId, CertificateRef, DomainError, OrgId, ProjectId,
    ProjectRef, Rotation,
};

impl Store {
    /// Activates `to` wherever `from` is active (the organization flag and every unarchived
    /// project), and with `retire_from` deactivates `from` there. Writes one
    /// `certificates.activated` (and one `certificates.deactivated`) per scope, the project
    /// ones naming their project. Everything is read and checked after the organization lock,
    /// so a concurrent toggle, delete, archive or rotation lands wholly before or after it.
    pub async fn rotate_certificate(
        &self,
        org: &OrgId,
        from: &CertificateId,
        to: &CertificateId,
        retire_from: bool,
        actor: &Actor,
    ) -> Result<Rotation> {
        let now = self.now();
        in_transaction!(self, |tx| {
            let seq = lock_organization(tx, org).await?;
            let rows = sqlx::query(
                "SELECT id, name, active_org, valid_at, expires_at FROM certificates
                 WHERE org_id = $1 AND deleted_at IS NULL AND id IN ($2, $3)",
            )
            .bind(org.as_str())
            .bind(from.as_str())
            .bind(to.as_str())
            .fetch_all(&mut *tx)
            .await?;
            let find = |id: &CertificateId, param: &'static str| {
                rows.iter()
                    .find(|r| r.try_get::<String, _>("id").is_ok_and(|v| v == id.as_str()))
                    .ok_or_else(|| DomainError::UnknownCertificate {
                        param,
                        id: id.to_string(),
                    })
            };
            let from_row = find(from, "from")?;
            let to_row = find(to, "to")?;
            domain::check_rotation_target(
                to,
                to_row.try_get("valid_at")?,
                to_row.try_get("expires_at")?,
                now,
                retire_from,
            )?;
            let organization = from_row.try_get::<i64, _>("active_org")? != 0;
            let projects: Vec<ProjectRef> = sqlx::query(
                "SELECT p.id, p.name FROM project_activations pa JOIN projects p ON p.id = pa.project_id
                 WHERE pa.org_id = $1 AND pa.certificate_id = $2 AND p.archived_at IS NULL
                 ORDER BY p.created_at, p.seq",
            )
            .bind(org.as_str())
            .bind(from.as_str())
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| {
                Ok(ProjectRef {
                    id: ProjectId::trusted(r.try_get("id")?),
                    name: r.try_get("name")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()?;
            domain::check_rotation_source(from, organization, projects.len())?;

            let cert_ref =
                |row: &sqlx::any::AnyRow, id: &CertificateId| -> Result<CertificateRef> {
                    Ok(CertificateRef {
                        id: id.clone(),
                        name: row.try_get("name")?,
                    })
                };
            let (to_ref, from_ref) = (cert_ref(to_row, to)?, cert_ref(from_row, from)?);
            let mut audit = TxAudit::new(org, seq, now, actor);
            let mut changed = 0;
            // The organization scope first, then each project: per scope, `to` in, then
            // `from` out (in the same transaction, so never seen apart).
            let scopes = organization
                .then_some(None)
                .into_iter()
                .chain(projects.iter().map(Some));
            for project in scopes {
                changed += match project {
                    None => sqlx::query(
                        "UPDATE certificates SET active_org = 1 WHERE id = $1 AND active_org = 0",
                    )
                    .bind(to.as_str())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected(),
                    Some(p) => sqlx::query(
                        "INSERT INTO project_activations (certificate_id, project_id, org_id)
                         VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    )
                    .bind(to.as_str())
                    .bind(p.id.as_str())
                    .bind(org.as_str())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected(),
                };
                audit
                    .append(
                        tx,
                        &AuditEvent::CertificatesActivated {
                            project: project.cloned(),
                            certificates: vec![to_ref.clone()],
                        },
                    )
                    .await?;
                if !retire_from {
                    continue;
                }
                changed += match project {
                    None => sqlx::query("UPDATE certificates SET active_org = 0 WHERE id = $1")
                        .bind(from.as_str())
                        .execute(&mut *tx)
                        .await?
                        .rows_affected(),
                    Some(p) => sqlx::query(
                        "DELETE FROM project_activations WHERE certificate_id = $1 AND project_id = $2",
                    )
                    .bind(from.as_str())
                    .bind(p.id.as_str())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected(),
                };
                audit
                    .append(
                        tx,
                        &AuditEvent::CertificatesDeactivated {
                            project: project.cloned(),
                            certificates: vec![from_ref.clone()],
                        },
                    )
                    .await?;
            }
            if changed > 0 {
                let touched = [
                    TrustChange::certificate(org, from.as_str()),
                    TrustChange::certificate(org, to.as_str()),
                ];
                bump_trust_generation(tx, self, &touched).await?;
            }
            Ok(Rotation {
                from: from.clone(),
                to: to.clone(),
                organization,
                projects: projects.iter().map(|p| p.id.clone()).collect(),
                retired: retire_from,
            })
        })
    }
}
