//! Toggles: activating or deactivating certificates for the organization or one project, all
//! of the named ids or none. Decided once ([`Toggle::decide`]); run on SQLite's writer thread
//! when the store has one, in `in_transaction!` otherwise.

use std::collections::HashMap;

use super::audit::TxAudit;
use super::certificates::{certificate_from_row, CERT_COLUMNS};
use super::projects::{project_state, project_state_from, project_state_statement, ProjectState};
use super::tx::{
    bump_trust_generation, in_transaction, lock_statement, locked_seq, prune_changes,
    record_changes, run_together, Columns, Statement, TrustChange, SQLITE_BUMP_IF_CHANGED,
};
use super::{Backend, Result, Store};
use crate::domain::{
    Actor, AuditEvent, Certificate, CertificateId, CertificateRef, DomainError, OrgId, ProjectId,
    Scope, ScopedCertificate, ToggleIds,
};

impl Store {
    /// Activates or deactivates every named certificate in `scope`, or none of them.
    pub async fn toggle_certificates(
        &self,
        org: &OrgId,
        scope: &Scope,
        ids: &ToggleIds,
        activate: bool,
        actor: &Actor,
    ) -> Result<Vec<ScopedCertificate>> {
        let mut toggle = Toggle::new(self.backend, org, scope, ids, activate, actor, self.now());
        toggle.prune = Some(prune_changes(self, toggle.now));
        // SQLite: on its writer thread, the whole toggle without a round trip.
        if let Some(writer) = self.sqlite_writer() {
            return writer
                .write(self.timeout, move |tx| {
                    let rows = tx.run(toggle.opening())?;
                    let project = match toggle.project() {
                        Some(p) => {
                            let state = tx.run(vec![project_state_statement(&toggle.org, p)])?;
                            Some(project_state_from(state.first(), p)?)
                        }
                        None => None,
                    };
                    let (items, writes) = toggle.decide(&rows, project)?;
                    tx.run(writes)?;
                    Ok(items)
                })
                .await;
        }
        in_transaction!(self, opening = toggle.opening(), |tx, rows| {
            let project = match toggle.project() {
                Some(p) => Some(project_state(tx, org, p).await?),
                None => None,
            };
            let (items, writes) = toggle.decide(&rows, project)?;
            // PostgreSQL: the change, last, returned the rows it changed.
            let changed = !run_together(tx, writes).await?.is_empty();
            if changed && self.backend == Backend::Postgres {
                bump_trust_generation(tx, self, &toggle.changes()).await?;
            }
            Ok(items)
        })
    }
}

/// One toggle call, decided the same way on every path that runs it: the statements it
/// starts with, and from their rows the answer and the writes.
struct Toggle {
    backend: Backend,
    org: OrgId,
    scope: Scope,
    ids: ToggleIds,
    activate: bool,
    actor: Actor,
    now: i64,
    /// The named certificates, read after the organization's lock.
    select: Statement,
    /// The change: the organization flags, or the project's activations.
    change: Statement,
    /// SQLite: the pruning of old trust change records, run with the bump.
    prune: Option<Statement>,
}

impl Toggle {
    fn new(
        backend: Backend,
        org: &OrgId,
        scope: &Scope,
        ids: &ToggleIds,
        activate: bool,
        actor: &Actor,
        now: i64,
    ) -> Toggle {
        // One statement per step whatever the number of ids.
        let n = ids.as_slice().len();
        let placeholders = |first: usize| super::placeholders(first, n);
        let mut select = Statement::new(format!(
            "SELECT {CERT_COLUMNS} FROM certificates WHERE org_id = $1 AND deleted_at IS NULL AND id IN ({})",
            placeholders(2)
        ))
        .bind(org.as_str());
        // In the changing statement: $1 org, $2 the new flag or the project id, $3.. the ids.
        // On PostgreSQL it returns the rows it changed (whether to bump the trust generation);
        // SQLite's script bumps it with `changes()` instead, and every row returned would be
        // one more row to carry back for nothing.
        let id_list = placeholders(3);
        let returning = |column: &str| match backend {
            Backend::Postgres => format!(" RETURNING {column}"),
            Backend::Sqlite => String::new(),
        };
        let mut change = match scope {
            Scope::Organization => Statement::new(format!(
                "UPDATE certificates SET active_org = $2 WHERE org_id = $1 AND active_org <> $2 AND id IN ({id_list}){}",
                returning("id")
            ))
            .bind(org.as_str())
            .bind(i64::from(activate)),
            Scope::Project(p) if activate => Statement::new(format!(
                "INSERT INTO project_activations (certificate_id, project_id, org_id)
                 SELECT id, $2, org_id FROM certificates WHERE org_id = $1 AND id IN ({id_list})
                 ON CONFLICT DO NOTHING{}",
                returning("certificate_id")
            ))
            .bind(org.as_str())
            .bind(p.as_str()),
            Scope::Project(p) => Statement::new(format!(
                "DELETE FROM project_activations WHERE org_id = $1 AND project_id = $2 AND certificate_id IN ({id_list}){}",
                returning("certificate_id")
            ))
            .bind(org.as_str())
            .bind(p.as_str()),
        };
        for id in ids.as_slice() {
            select = select.bind(id.as_str());
            change = change.bind(id.as_str());
        }
        Toggle {
            backend,
            org: org.clone(),
            scope: scope.clone(),
            ids: ids.clone(),
            activate,
            actor: actor.clone(),
            now,
            select,
            change,
            prune: None,
        }
    }

    /// What gateways re-read when the toggle changed something: each named certificate.
    fn changes(&self) -> Vec<TrustChange> {
        self.ids
            .as_slice()
            .iter()
            .map(|id| TrustChange::certificate(&self.org, id.as_str()))
            .collect()
    }

    /// The organization's lock, then the named certificates.
    fn opening(&self) -> Vec<Statement> {
        vec![lock_statement(&self.org), self.select.clone()]
    }

    /// The project whose state [`Toggle::decide`] needs, if the scope is one.
    fn project(&self) -> Option<&ProjectId> {
        match &self.scope {
            Scope::Project(p) => Some(p),
            Scope::Organization => None,
        }
    }

    /// From the rows [`Toggle::opening`] returned (and the project's state): the answer, and
    /// the writes (the audit event, the change, on SQLite the trust bump), or the refusal.
    fn decide(
        &self,
        rows: &[impl Columns],
        project: Option<ProjectState>,
    ) -> Result<(Vec<ScopedCertificate>, Vec<Statement>)> {
        let seq = locked_seq(rows.first(), &self.org)?;
        let mut archived_project = false;
        let mut project_ref = None;
        if let Some(state) = project {
            if state.archived_at.is_some() {
                if self.activate {
                    return Err(DomainError::ProjectArchived(state.as_ref.id.to_string()).into());
                }
                archived_project = true;
            }
            project_ref = Some(state.as_ref);
        }
        let n = self.ids.as_slice().len();
        let mut found: HashMap<CertificateId, Certificate> = HashMap::with_capacity(n);
        for row in rows.iter().skip(1) {
            let cert = certificate_from_row(row, false)?;
            found.insert(cert.id.clone(), cert);
        }
        // All or nothing: the first unknown id (in request order) refuses the whole call.
        let mut items = Vec::with_capacity(n);
        for id in self.ids.as_slice() {
            let certificate = found
                .remove(id)
                .ok_or_else(|| DomainError::UnknownToggleId(id.to_string()))?;
            items.push(ScopedCertificate {
                certificate,
                active: self.activate,
            });
        }
        // One event per call answered 200, no-ops included, naming every id in order.
        let certificates = items
            .iter()
            .map(|c| CertificateRef {
                id: c.certificate.id.clone(),
                name: c.certificate.name.clone(),
            })
            .collect();
        let event = if self.activate {
            AuditEvent::CertificatesActivated {
                project: project_ref,
                certificates,
            }
        } else {
            AuditEvent::CertificatesDeactivated {
                project: project_ref,
                certificates,
            }
        };
        let mut writes = TxAudit::new(&self.org, seq, self.now, &self.actor).statements(&event);
        // An archived project has no activations left: deactivating is a no-op.
        if !archived_project {
            writes.push(self.change.clone());
            if self.backend == Backend::Sqlite {
                writes.push(Statement::new(SQLITE_BUMP_IF_CHANGED));
                // Recorded only when the bump just before it moved the generation.
                writes.extend(record_changes(None, self.now, &self.changes()));
                writes.extend(self.prune.clone());
            }
        }
        Ok((items, writes))
    }
}
