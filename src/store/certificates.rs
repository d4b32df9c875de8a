//! Certificates: upload, read, rename, delete (as a tombstone), and both lists. Toggles are in
//! `toggles`.

use std::collections::HashMap;

use sqlx::{AnyPool, Row};

use super::audit::TxAudit;
use super::projects::project_state;
use super::tx::{bump_trust_generation, in_transaction, lock_organization, Columns, TrustChange};
use super::{Result, Store};
use crate::domain::{
    self, unknown_cursor, Activations, Actor, AuditEvent, Certificate, CertificateId,
    CertificateInclude, CertificateRef, DomainError, FilterChange, OcspMode, Order, OrgId, Page,
    PageRequest, ProjectId, RevocationSources, ScopedCertificate, SourcesChange,
};
use crate::x509::ParsedCa;

pub(super) const CERT_COLUMNS: &str =
    "id, name, created_at, valid_at, expires_at, client_filter, crl_url, ocsp";

/// The stored OCSP mode: NULL is off. A value this version does not know (written by a newer
/// one) asks and refuses without an answer: never fail open.
pub(super) fn ocsp_from_column(stored: Option<String>) -> OcspMode {
    stored.map_or(OcspMode::Off, |s| {
        OcspMode::parse(&s).unwrap_or(OcspMode::HardFail)
    })
}

pub(super) fn certificate_from_row(row: &impl Columns, with_content: bool) -> Result<Certificate> {
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
        sources: RevocationSources {
            crl_url: row.field("crl_url")?,
            ocsp: ocsp_from_column(row.field("ocsp")?),
        },
    })
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
        let sources = RevocationSources::default();
        self.upload_certificate_with_sources(
            org,
            name,
            content,
            parsed,
            client_filter,
            sources,
            actor,
        )
        .await
    }

    /// [`Store::upload_certificate`] with a CRL URL and an OCSP mode (decisions.md D58).
    #[allow(clippy::too_many_arguments)]
    pub async fn upload_certificate_with_sources(
        &self,
        org: &OrgId,
        name: Option<String>,
        content: &str,
        parsed: &ParsedCa,
        client_filter: Option<String>,
        sources: RevocationSources,
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
                "INSERT INTO certificates (id, org_id, name, content, sha256, subject_der, ski, valid_at, expires_at, created_at, seq, active_org, client_filter, crl_url, ocsp)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 0, $12, $13, $14)",
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
            .bind(sources.crl_url.clone())
            .bind(sources.ocsp.stored())
            .execute(&mut *tx)
            .await?;
            let created = AuditEvent::CertificateCreated {
                certificate: CertificateRef {
                    id: id.clone(),
                    name: name.clone(),
                },
                client_filter: client_filter.clone(),
                sources: sources.clone(),
            };
            TxAudit::new(org, seq, now, actor)
                .append(tx, &created)
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
                sources: sources.clone(),
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
        self.read(|pool| self.read_certificate(pool, org, id, include))
            .await
    }

    async fn read_certificate(
        &self,
        pool: &AnyPool,
        org: &OrgId,
        id: &CertificateId,
        include: CertificateInclude,
    ) -> Result<Certificate> {
        let sql = format!("SELECT {CERT_COLUMNS}, content, active_org FROM certificates WHERE id = $1 AND org_id = $2 AND deleted_at IS NULL");
        let query = sqlx::query(&sql).bind(id.as_str()).bind(org.as_str());
        if !include.details {
            return match query.fetch_optional(pool).await? {
                Some(row) => Ok(certificate_from_row(&row, include.content)?),
                None => Err(id.not_found().into()),
            };
        }
        let mut tx = self.read_transaction(pool).await?;
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

    /// Changes the name and the client filter (the only mutable fields; the filter already
    /// checked by the caller). `None` leaves a field as it is; every call
    /// answered 200 writes one `certificate.updated`, whatever it changed.
    pub async fn modify_certificate(
        &self,
        org: &OrgId,
        id: &CertificateId,
        name: Option<Option<String>>,
        client_filter: Option<Option<String>>,
        actor: &Actor,
    ) -> Result<Certificate> {
        let sources = SourcesChange::default();
        self.modify_certificate_with_sources(org, id, name, client_filter, sources, actor)
            .await
    }

    /// [`Store::modify_certificate`] that may also set the CRL URL and the OCSP mode.
    pub async fn modify_certificate_with_sources(
        &self,
        org: &OrgId,
        id: &CertificateId,
        name: Option<Option<String>>,
        client_filter: Option<Option<String>>,
        sources: SourcesChange,
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
                    bump_trust_generation(tx, self, &[TrustChange::certificate(org, id.as_str())])
                        .await?;
                }
                cert.client_filter.clone_from(filter);
            }
            if let Some(url) = &sources.crl_url {
                // Nothing changes for clients until a CRL is fetched from it (decisions.md D58).
                sqlx::query("UPDATE certificates SET crl_url = $1 WHERE id = $2")
                    .bind(url.clone())
                    .bind(id.as_str())
                    .execute(&mut *tx)
                    .await?;
                cert.sources.crl_url.clone_from(url);
            }
            if let Some(ocsp) = sources.ocsp {
                sqlx::query("UPDATE certificates SET ocsp = $1 WHERE id = $2")
                    .bind(ocsp.stored())
                    .bind(id.as_str())
                    .execute(&mut *tx)
                    .await?;
                if ocsp != cert.sources.ocsp {
                    // Who may connect can change: gateways reload.
                    bump_trust_generation(tx, self, &[TrustChange::certificate(org, id.as_str())])
                        .await?;
                }
                cert.sources.ocsp = ocsp;
            }
            let updated = AuditEvent::CertificateUpdated {
                certificate: CertificateRef {
                    id: cert.id.clone(),
                    name: cert.name.clone(),
                },
                client_filter: FilterChange::of(
                    client_filter.as_ref(),
                    cert.client_filter.as_ref(),
                ),
                sources: sources.clone(),
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
                bump_trust_generation(tx, self, &[TrustChange::certificate(org, id.as_str())])
                    .await?;
            }
            Ok(())
        })
    }

    /// The organization's certificates; `active` is the organization-level flag.
    pub async fn list_certificates(
        &self,
        org: &OrgId,
        page: &PageRequest,
        include: CertificateInclude,
    ) -> Result<Page<ScopedCertificate>> {
        self.read(|pool| self.certificate_page(pool, org, None, page, include))
            .await
    }

    /// Every certificate of the organization; `active` means active for `project`.
    pub async fn list_project_certificates(
        &self,
        org: &OrgId,
        project: &ProjectId,
        page: &PageRequest,
        include: CertificateInclude,
    ) -> Result<Page<ScopedCertificate>> {
        self.read(|pool| async move {
            let mut conn = pool.acquire().await?;
            project_state(&mut conn, org, project).await?;
            drop(conn);
            self.certificate_page(pool, org, Some(project), page, include)
                .await
        })
        .await
    }

    /// One page. With `include.details`, the page and its certificates' activations are read
    /// in one read transaction (so `active` and `activations` never describe different
    /// states); otherwise in one statement, as before details existed.
    async fn certificate_page(
        &self,
        pool: &AnyPool,
        org: &OrgId,
        project: Option<&ProjectId>,
        page: &PageRequest,
        include: CertificateInclude,
    ) -> Result<Page<ScopedCertificate>> {
        let cursor = certificate_cursor(pool, org, page.after.as_deref()).await?;
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
            "SELECT c.id, c.name, c.created_at, c.valid_at, c.expires_at, c.client_filter, c.crl_url, c.ocsp, {active} AS active{content}
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
            let mut tx = self.read_transaction(pool).await?;
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
            (q.fetch_all(pool).await?, HashMap::new(), HashMap::new())
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
    async fn read_transaction(
        &self,
        pool: &AnyPool,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        let mut tx = pool.begin().await?;
        if self.backend == super::Backend::Postgres {
            sqlx::Executor::execute(
                &mut *tx,
                "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY",
            )
            .await?;
        }
        Ok(tx)
    }
}

/// Position of a cursor id, deleted or not; ids this list never handed out are refused.
async fn certificate_cursor(
    pool: &AnyPool,
    org: &OrgId,
    after: Option<&str>,
) -> Result<Option<(i64, i64)>> {
    let Some(after) = after else { return Ok(None) };
    let Some(id) = CertificateId::parse_opt(after) else {
        return Err(unknown_cursor("after", after).into());
    };
    let row = sqlx::query("SELECT created_at, seq FROM certificates WHERE id = $1 AND org_id = $2")
        .bind(id.as_str())
        .bind(org.as_str())
        .fetch_optional(pool)
        .await?;
    match row {
        Some(row) => Ok(Some((row.try_get("created_at")?, row.try_get("seq")?))),
        None => Err(unknown_cursor("after", after).into()),
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
