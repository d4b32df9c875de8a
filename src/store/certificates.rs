//! Certificates: upload, read, rename, delete (as a tombstone), toggles, and both lists.

use std::collections::HashMap;

use sqlx::Row;

use super::audit::TxAudit;
use super::projects::{project_state, project_state_from, project_state_statement, ProjectState};
use super::tx::{
    bump_trust_generation, in_transaction, lock_organization, lock_statement, locked_seq,
    run_together, Columns, Statement, SQLITE_BUMP_IF_CHANGED,
};
use super::{Backend, Result, Store};
use crate::domain::{
    self, unknown_cursor, Activations, Actor, AuditEvent, Certificate, CertificateId,
    CertificateInclude, CertificateRef, DomainError, Order, OrgId, Page, PageRequest, ProjectId,
    Scope, ScopedCertificate, ToggleIds,
};
use crate::x509::ParsedCa;

const CERT_COLUMNS: &str = "id, name, created_at, valid_at, expires_at, client_filter";

fn certificate_from_row(row: &impl Columns, with_content: bool) -> Result<Certificate> {
    Ok(Certificate {
        id: CertificateId::trusted(row.field("id")?),
        name: row.field("name")?,
        created_at: row.field("created_at")?,
        valid_at: row.field("valid_at")?,
        expires_at: row.field("expires_at")?,
        content: if with_content {
            Some(row.field("content")?)
        } else {
            None
        },
        activations: None,
        crl: None,
        client_filter: row.field("client_filter")?,
    })
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
        }
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
            }
        }
        Ok((items, writes))
    }
}

pub(super) fn order_sql(order: Order) -> (&'static str, &'static str) {
    match order {
        Order::Asc => (">", "ASC"),
        Order::Desc => ("<", "DESC"),
    }
}

impl Store {
    pub async fn upload_certificate(
        &self,
        org: &OrgId,
        name: Option<String>,
        content: &str,
        parsed: &ParsedCa,
        client_filter: Option<String>,
        actor: &Actor,
    ) -> Result<Certificate> {
        let now = self.now();
        in_transaction!(self, |tx| {
            let seq = lock_organization(tx, org).await?;
            if let Some(row) = sqlx::query(
                "SELECT id FROM certificates WHERE org_id = $1 AND sha256 = $2 AND deleted_at IS NULL",
            )
            .bind(org.as_str())
            .bind(&parsed.sha256)
            .fetch_optional(&mut *tx)
            .await?
            {
                return Err(DomainError::CertificateAlreadyExists {
                    existing_id: row.try_get("id")?,
                }
                .into());
            }
            let count: i64 = sqlx::query(
                "SELECT COUNT(*) AS n FROM certificates WHERE org_id = $1 AND deleted_at IS NULL",
            )
            .bind(org.as_str())
            .fetch_one(&mut *tx)
            .await?
            .try_get("n")?;
            domain::check_certificate_limit(count)?;
            let id = CertificateId::generate();
            sqlx::query(
                "INSERT INTO certificates (id, org_id, name, content, sha256, subject_der, ski, valid_at, expires_at, created_at, seq, active_org, client_filter)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 0, $12)",
            )
            .bind(id.as_str())
            .bind(org.as_str())
            .bind(name.clone())
            .bind(content)
            .bind(&parsed.sha256)
            .bind(&parsed.subject_der)
            .bind(&parsed.ski)
            .bind(parsed.valid_at)
            .bind(parsed.expires_at)
            .bind(now)
            .bind(seq)
            .bind(client_filter.clone())
            .execute(&mut *tx)
            .await?;
            let created = CertificateRef {
                id: id.clone(),
                name: name.clone(),
            };
            TxAudit::new(org, seq, now, actor)
                .append(tx, &AuditEvent::CertificateCreated(created))
                .await?;
            Ok(Certificate {
                id,
                name: name.clone(),
                created_at: now,
                valid_at: parsed.valid_at,
                expires_at: parsed.expires_at,
                content: None,
                activations: None,
                crl: None,
                client_filter: client_filter.clone(),
            })
        })
    }

    /// One certificate; with `include.details` its row and its activations are read in one
    /// read transaction, so they describe the same committed state.
    pub async fn get_certificate(
        &self,
        org: &OrgId,
        id: &CertificateId,
        include: CertificateInclude,
    ) -> Result<Certificate> {
        let sql = format!("SELECT {CERT_COLUMNS}, content, active_org FROM certificates WHERE id = $1 AND org_id = $2 AND deleted_at IS NULL");
        let query = sqlx::query(&sql).bind(id.as_str()).bind(org.as_str());
        if !include.details {
            return match query.fetch_optional(&self.pool).await? {
                Some(row) => Ok(certificate_from_row(&row, include.content)?),
                None => Err(id.not_found().into()),
            };
        }
        let mut tx = self.read_transaction().await?;
        let row = query
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| id.not_found())?;
        let mut cert = certificate_from_row(&row, true)?;
        let org_wide = row.try_get::<i64, _>("active_org")? != 0;
        let mut projects = project_activations(&mut tx, org, std::slice::from_ref(id)).await?;
        let mut crls =
            super::revocations::crl_summaries(&mut tx, org, std::slice::from_ref(id)).await?;
        tx.commit().await?;
        cert.activations = Some(Activations {
            organization: org_wide,
            projects: projects.remove(id).unwrap_or_default(),
        });
        cert.crl = crls.remove(id);
        Ok(cert)
    }

    /// Changes the name (the only mutable field). `None` leaves it as it is; every call
    /// answered 200 writes one `certificate.updated`, whatever it changed.
    pub async fn modify_certificate(
        &self,
        org: &OrgId,
        id: &CertificateId,
        name: Option<Option<String>>,
        client_filter: Option<Option<String>>,
        actor: &Actor,
    ) -> Result<Certificate> {
        let now = self.now();
        let select = format!("SELECT {CERT_COLUMNS} FROM certificates WHERE id = $1 AND org_id = $2 AND deleted_at IS NULL");
        in_transaction!(self, |tx| {
            let seq = lock_organization(tx, org).await?;
            let before = sqlx::query(&select)
                .bind(id.as_str())
                .bind(org.as_str())
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| id.not_found())?;
            let mut cert = certificate_from_row(&before, false)?;
            if let Some(name) = &name {
                sqlx::query("UPDATE certificates SET name = $1 WHERE id = $2")
                    .bind(name.clone())
                    .bind(id.as_str())
                    .execute(&mut *tx)
                    .await?;
                cert.name.clone_from(name);
            }
            if let Some(filter) = &client_filter {
                sqlx::query("UPDATE certificates SET client_filter = $1 WHERE id = $2")
                    .bind(filter.clone())
                    .bind(id.as_str())
                    .execute(&mut *tx)
                    .await?;
                if *filter != cert.client_filter {
                    // Who may connect changes: gateways reload (and re-judge open upgrades).
                    bump_trust_generation(tx, self.backend).await?;
                }
                cert.client_filter.clone_from(filter);
            }
            let updated = AuditEvent::CertificateUpdated {
                certificate: CertificateRef {
                    id: cert.id.clone(),
                    name: cert.name.clone(),
                },
                client_filter: cert.client_filter.clone(),
            };
            TxAudit::new(org, seq, now, actor)
                .append(tx, &updated)
                .await?;
            Ok(cert)
        })
    }

    /// Deletes a certificate that is inactive everywhere; it stays as a tombstone (content
    /// cleared) so its id remains a valid list cursor.
    pub async fn delete_certificate(
        &self,
        org: &OrgId,
        id: &CertificateId,
        actor: &Actor,
    ) -> Result<()> {
        let now = self.now();
        in_transaction!(self, |tx| {
            let seq = lock_organization(tx, org).await?;
            let row = sqlx::query(
                "SELECT active_org, name, content FROM certificates WHERE id = $1 AND org_id = $2 AND deleted_at IS NULL",
            )
            .bind(id.as_str())
            .bind(org.as_str())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| id.not_found())?;
            let active_org: i64 = row.try_get("active_org")?;
            let projects: Vec<String> = sqlx::query(
                "SELECT project_id FROM project_activations WHERE certificate_id = $1 ORDER BY project_id",
            )
            .bind(id.as_str())
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| r.try_get("project_id"))
            .collect::<Result<_, _>>()?;
            domain::check_deletable(id, org.as_str(), active_org != 0, &projects)?;
            sqlx::query(
                "UPDATE certificates SET deleted_at = $1, content = '', name = NULL WHERE id = $2",
            )
            .bind(now)
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
            let event = AuditEvent::CertificateDeleted {
                certificate: CertificateRef {
                    id: id.clone(),
                    name: row.try_get("name")?,
                },
                pem: row.try_get("content")?,
            };
            TxAudit::new(org, seq, now, actor)
                .append(tx, &event)
                .await?;
            // Its CRL goes with it (it may have covered intermediates clients send).
            let crl = sqlx::query("DELETE FROM certificate_crls WHERE certificate_id = $1")
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
            if crl.rows_affected() > 0 {
                bump_trust_generation(tx, self.backend).await?;
            }
            Ok(())
        })
    }

    /// Activates or deactivates every named certificate in `scope`, or none of them.
    pub async fn toggle_certificates(
        &self,
        org: &OrgId,
        scope: &Scope,
        ids: &ToggleIds,
        activate: bool,
        actor: &Actor,
    ) -> Result<Vec<ScopedCertificate>> {
        let toggle = Toggle::new(self.backend, org, scope, ids, activate, actor, self.now());
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
                bump_trust_generation(tx, self.backend).await?;
            }
            Ok(items)
        })
    }

    /// The organization's certificates; `active` is the organization-level flag.
    pub async fn list_certificates(
        &self,
        org: &OrgId,
        page: &PageRequest,
        include: CertificateInclude,
    ) -> Result<Page<ScopedCertificate>> {
        self.certificate_page(org, None, page, include).await
    }

    /// Every certificate of the organization; `active` means active for `project`.
    pub async fn list_project_certificates(
        &self,
        org: &OrgId,
        project: &ProjectId,
        page: &PageRequest,
        include: CertificateInclude,
    ) -> Result<Page<ScopedCertificate>> {
        let mut conn = self.pool.acquire().await?;
        project_state(&mut conn, org, project).await?;
        drop(conn);
        self.certificate_page(org, Some(project), page, include)
            .await
    }

    /// One page. With `include.details`, the page and its certificates' activations are read
    /// in one read transaction (so `active` and `activations` never describe different
    /// states); otherwise in one statement, as before details existed.
    async fn certificate_page(
        &self,
        org: &OrgId,
        project: Option<&ProjectId>,
        page: &PageRequest,
        include: CertificateInclude,
    ) -> Result<Page<ScopedCertificate>> {
        let cursor = self.certificate_cursor(org, page.after.as_deref()).await?;
        let (cmp, dir) = order_sql(page.order);
        // Parameters: $1 org, $2 limit, then the project (if any), then the cursor (if any).
        let (active, join, next) = match project {
            None => ("c.active_org", "", 3),
            Some(_) => (
                "CAST(CASE WHEN pa.project_id IS NULL THEN 0 ELSE 1 END AS BIGINT)",
                "LEFT JOIN project_activations pa ON pa.certificate_id = c.id AND pa.project_id = $3",
                4,
            ),
        };
        let cursor_sql = match cursor {
            Some(_) => format!("AND (c.created_at, c.seq) {cmp} (${next}, ${})", next + 1),
            None => String::new(),
        };
        let content = if include.needs_content() {
            ", c.content, c.active_org"
        } else {
            ""
        };
        let sql = format!(
            "SELECT c.id, c.name, c.created_at, c.valid_at, c.expires_at, c.client_filter, {active} AS active{content}
             FROM certificates c {join}
             WHERE c.org_id = $1 AND c.deleted_at IS NULL {cursor_sql}
             ORDER BY c.created_at {dir}, c.seq {dir} LIMIT $2"
        );
        let limit = i64::from(page.limit.get());
        let mut q = sqlx::query(&sql).bind(org.as_str()).bind(limit + 1);
        if let Some(p) = project {
            q = q.bind(p.as_str());
        }
        if let Some((at, seq)) = cursor {
            q = q.bind(at).bind(seq);
        }
        let limit = page.limit.get() as usize;
        let (rows, mut activations, mut crls) = if include.details {
            let mut tx = self.read_transaction().await?;
            let rows = q.fetch_all(&mut *tx).await?;
            let ids: Vec<CertificateId> = rows
                .iter()
                .take(limit)
                .map(|r| r.try_get("id").map(CertificateId::trusted))
                .collect::<Result<_, _>>()?;
            let activations = project_activations(&mut tx, org, &ids).await?;
            let crls = super::revocations::crl_summaries(&mut tx, org, &ids).await?;
            tx.commit().await?;
            (rows, activations, crls)
        } else {
            (
                q.fetch_all(&self.pool).await?,
                HashMap::new(),
                HashMap::new(),
            )
        };
        let has_more = rows.len() > limit;
        let items = rows
            .iter()
            .take(limit)
            .map(|row| {
                let mut certificate = certificate_from_row(row, include.needs_content())?;
                if include.details {
                    certificate.activations = Some(Activations {
                        organization: row.field::<i64>("active_org")? != 0,
                        projects: activations.remove(&certificate.id).unwrap_or_default(),
                    });
                    certificate.crl = crls.remove(&certificate.id);
                }
                Ok(ScopedCertificate {
                    certificate,
                    active: row.field::<i64>("active")? != 0,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Page { items, has_more })
    }

    /// A read-only transaction that sees one committed state throughout (REPEATABLE READ on
    /// PostgreSQL, where each statement would otherwise see its own; on SQLite a read
    /// transaction in WAL mode already does).
    pub(super) async fn read_transaction(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        let mut tx = self.pool.begin().await?;
        if self.backend == super::Backend::Postgres {
            sqlx::Executor::execute(
                &mut *tx,
                "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY",
            )
            .await?;
        }
        Ok(tx)
    }

    /// Position of a cursor id, deleted or not; ids this list never handed out are refused.
    async fn certificate_cursor(
        &self,
        org: &OrgId,
        after: Option<&str>,
    ) -> Result<Option<(i64, i64)>> {
        let Some(after) = after else { return Ok(None) };
        let Some(id) = CertificateId::parse_opt(after) else {
            return Err(unknown_cursor("after", after).into());
        };
        let row =
            sqlx::query("SELECT created_at, seq FROM certificates WHERE id = $1 AND org_id = $2")
                .bind(id.as_str())
                .bind(org.as_str())
                .fetch_optional(&self.pool)
                .await?;
        match row {
            Some(row) => Ok(Some((row.try_get("created_at")?, row.try_get("seq")?))),
            None => Err(unknown_cursor("after", after).into()),
        }
    }
}

/// The unarchived projects each of `ids` is active for, in the projects' creation order.
async fn project_activations(
    conn: &mut sqlx::AnyConnection,
    org: &OrgId,
    ids: &[CertificateId],
) -> Result<HashMap<CertificateId, Vec<ProjectId>>> {
    let mut out: HashMap<CertificateId, Vec<ProjectId>> = HashMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    let placeholders = super::placeholders(2, ids.len());
    let sql = format!(
        "SELECT pa.certificate_id, pa.project_id FROM project_activations pa
         JOIN projects p ON p.id = pa.project_id
         WHERE pa.org_id = $1 AND p.archived_at IS NULL AND pa.certificate_id IN ({placeholders})
         ORDER BY p.created_at, p.seq"
    );
    let mut q = sqlx::query(&sql).bind(org.as_str());
    for id in ids {
        q = q.bind(id.as_str());
    }
    for row in q.fetch_all(&mut *conn).await? {
        out.entry(CertificateId::trusted(row.try_get("certificate_id")?))
            .or_default()
            .push(ProjectId::trusted(row.try_get("project_id")?));
    }
    Ok(out)
}
