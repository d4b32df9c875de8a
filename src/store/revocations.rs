//! Revocation without rotating a CA (spec §12.5): the organization's deny-list of certificate
//! fingerprints, and one CRL per CA certificate. Every change bumps the trust generation (so
//! gateways enforce it within the propagation bound, also on open connections) and writes its
//! audit event in the same transaction.

use base64::Engine as _;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::audit::TxAudit;
use super::paging;
use super::tx::{bump_trust_generation, in_transaction, lock_organization, TrustChange};
use super::{Result, Store};
use crate::crl::ParsedCrl;
use crate::domain::{
    check_crl_newer, check_crl_storage, check_revocation_limit, Actor, AuditEvent, CertificateId,
    CrlSummary, DomainError, OrgId, Page, PageRequest, RevokedCertificate, RevokedCertificateId,
    RevokedCertificateKind,
};

const REVOKED_COLUMNS: &str = "id, sha256, reason, created_at";

/// The DER size of a CRL a previous version stored without `der_bytes` (migration 0004), from
/// its base64, as the migration computes it.
pub(super) const LEGACY_SIZE: &str = "(length(der_base64) / 4 * 3 - (CASE WHEN der_base64 LIKE '%==' THEN 2 WHEN der_base64 LIKE '%=' THEN 1 ELSE 0 END))";

fn revoked_from_row(row: &AnyRow) -> Result<RevokedCertificate, sqlx::Error> {
    Ok(RevokedCertificate {
        id: RevokedCertificateId::trusted(row.try_get("id")?),
        sha256_fingerprint: row.try_get("sha256")?,
        reason: row.try_get("reason")?,
        created_at: row.try_get("created_at")?,
    })
}

fn crl_from_row(row: &AnyRow) -> Result<CrlSummary, sqlx::Error> {
    Ok(CrlSummary {
        certificate_id: CertificateId::trusted(row.try_get("certificate_id")?),
        this_update: row.try_get("this_update")?,
        next_update: row.try_get("next_update")?,
        revoked_count: row.try_get("revoked_count")?,
    })
}

impl Store {
    /// Adds `sha256` (lowercase hex) to the organization's deny-list.
    pub async fn revoke_certificate(
        &self,
        org: &OrgId,
        sha256: &str,
        reason: Option<String>,
        actor: &Actor,
    ) -> Result<RevokedCertificate> {
        let now = self.now();
        in_transaction!(self, |tx| {
            let seq = lock_organization(tx, org).await?;
            if let Some(row) = sqlx::query(
                "SELECT id FROM revoked_certificates WHERE org_id = $1 AND sha256 = $2 AND deleted_at IS NULL",
            )
            .bind(org.as_str())
            .bind(sha256)
            .fetch_optional(&mut *tx)
            .await?
            {
                return Err(DomainError::CertificateAlreadyRevoked {
                    existing_id: row.try_get("id")?,
                }
                .into());
            }
            let count: i64 = sqlx::query(
                "SELECT COUNT(*) AS n FROM revoked_certificates WHERE org_id = $1 AND deleted_at IS NULL",
            )
            .bind(org.as_str())
            .fetch_one(&mut *tx)
            .await?
            .try_get("n")?;
            check_revocation_limit(count)?;
            let entry = RevokedCertificate {
                id: RevokedCertificateId::generate(),
                sha256_fingerprint: sha256.to_owned(),
                reason: reason.clone(),
                created_at: now,
            };
            sqlx::query(
                "INSERT INTO revoked_certificates (id, org_id, sha256, reason, created_at, seq) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(entry.id.as_str())
            .bind(org.as_str())
            .bind(sha256)
            .bind(entry.reason.clone())
            .bind(now)
            .bind(seq)
            .execute(&mut *tx)
            .await?;
            TxAudit::new(org, seq, now, actor)
                .append(tx, &AuditEvent::CertificateRevoked(entry.clone()))
                .await?;
            bump_trust_generation(tx, self, &[TrustChange::deny(org, sha256)]).await?;
            Ok(entry)
        })
    }

    pub async fn get_revoked_certificate(
        &self,
        org: &OrgId,
        id: &RevokedCertificateId,
    ) -> Result<RevokedCertificate> {
        let sql = format!(
            "SELECT {REVOKED_COLUMNS} FROM revoked_certificates WHERE id = $1 AND org_id = $2 AND deleted_at IS NULL"
        );
        let row = self.read_one_of_org(&sql, id.as_str(), org).await?;
        match row {
            Some(row) => Ok(revoked_from_row(&row)?),
            None => Err(id.not_found().into()),
        }
    }

    /// Removes an entry from the deny-list; it stays as a tombstone (a valid list cursor).
    pub async fn unrevoke_certificate(
        &self,
        org: &OrgId,
        id: &RevokedCertificateId,
        actor: &Actor,
    ) -> Result<RevokedCertificate> {
        let now = self.now();
        let select = format!(
            "SELECT {REVOKED_COLUMNS} FROM revoked_certificates WHERE id = $1 AND org_id = $2 AND deleted_at IS NULL"
        );
        in_transaction!(self, |tx| {
            let seq = lock_organization(tx, org).await?;
            let entry = match sqlx::query(&select)
                .bind(id.as_str())
                .bind(org.as_str())
                .fetch_optional(&mut *tx)
                .await?
            {
                Some(row) => revoked_from_row(&row)?,
                None => return Err(id.not_found().into()),
            };
            sqlx::query("UPDATE revoked_certificates SET deleted_at = $1 WHERE id = $2")
                .bind(now)
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
            TxAudit::new(org, seq, now, actor)
                .append(tx, &AuditEvent::CertificateUnrevoked(entry.clone()))
                .await?;
            let change = TrustChange::deny(org, &entry.sha256_fingerprint);
            bump_trust_generation(tx, self, &[change]).await?;
            Ok(entry)
        })
    }

    /// The deny-list, newest first by default (spec §12.5: paged like §11.2).
    pub async fn list_revoked_certificates(
        &self,
        org: &OrgId,
        page: &PageRequest,
    ) -> Result<Page<RevokedCertificate>> {
        let select = format!(
            "SELECT {REVOKED_COLUMNS} FROM revoked_certificates WHERE org_id = $1 AND deleted_at IS NULL"
        );
        self.read(|pool| async move {
            let cursor = paging::cursor::<RevokedCertificateKind>(
                pool,
                "revoked_certificates",
                org,
                page.after.as_deref(),
            )
            .await?;
            paging::fetch(pool, &select, "", org, page, cursor, revoked_from_row).await
        })
        .await
    }

    /// Stores `crl` (already checked against the certificate's key by the caller: a
    /// certificate's content never changes) for `certificate`, unless an older one is offered
    /// or the organization's stored CRLs would outgrow their limit (counted here, after the
    /// organization lock: the new size minus the size of the CRL it replaces).
    pub async fn put_crl(
        &self,
        org: &OrgId,
        certificate: &CertificateId,
        crl: &ParsedCrl,
        actor: &Actor,
    ) -> Result<CrlSummary> {
        let now = self.now();
        let der = base64::engine::general_purpose::STANDARD.encode(&crl.der);
        let size = i64::try_from(crl.der.len()).unwrap_or(i64::MAX);
        let stored_size = format!("CAST(COALESCE(der_bytes, {LEGACY_SIZE}) AS BIGINT)");
        let this_crl =
            format!("SELECT this_update, {stored_size} AS bytes FROM certificate_crls WHERE certificate_id = $1");
        let org_total = format!(
            "SELECT CAST(COALESCE(SUM({stored_size}), 0) AS BIGINT) AS bytes FROM certificate_crls WHERE org_id = $1"
        );
        in_transaction!(self, |tx| {
            let seq = lock_organization(tx, org).await?;
            certificate_exists(tx, org, certificate).await?;
            let stored = sqlx::query(&this_crl)
                .bind(certificate.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            let (stored_this_update, replaced) = match &stored {
                Some(r) => (Some(r.try_get("this_update")?), r.try_get("bytes")?),
                None => (None, 0),
            };
            check_crl_newer(stored_this_update, crl.this_update)?;
            let total: i64 = sqlx::query(&org_total)
                .bind(org.as_str())
                .fetch_one(&mut *tx)
                .await?
                .try_get("bytes")?;
            check_crl_storage(total, replaced, size)?;
            sqlx::query("DELETE FROM certificate_crls WHERE certificate_id = $1")
                .bind(certificate.as_str())
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO certificate_crls (certificate_id, org_id, der_base64, this_update, next_update, revoked_count, seq, der_sha256, der_bytes)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(certificate.as_str())
            .bind(org.as_str())
            .bind(&der)
            .bind(crl.this_update)
            .bind(crl.next_update)
            .bind(crl.revoked_count)
            .bind(seq)
            .bind(&crl.sha256)
            .bind(size)
            .execute(&mut *tx)
            .await?;
            let summary = CrlSummary {
                certificate_id: certificate.clone(),
                this_update: crl.this_update,
                next_update: crl.next_update,
                revoked_count: crl.revoked_count,
            };
            TxAudit::new(org, seq, now, actor)
                .append(tx, &AuditEvent::CrlUpdated(summary.clone()))
                .await?;
            // Every CRL stored (uploaded or fetched) goes through here: gateways re-read it.
            let change = TrustChange::crl(org, certificate.as_str());
            bump_trust_generation(tx, self, &[change]).await?;
            Ok(summary)
        })
    }

    /// The stored CRL's summary; 404 when the certificate has none (or does not exist).
    pub async fn get_crl(&self, org: &OrgId, certificate: &CertificateId) -> Result<CrlSummary> {
        let row = self
            .read(|pool| {
                sqlx::query(
                    "SELECT r.certificate_id, r.this_update, r.next_update, r.revoked_count
                     FROM certificate_crls r JOIN certificates c ON c.id = r.certificate_id
                     WHERE r.certificate_id = $1 AND r.org_id = $2 AND c.deleted_at IS NULL",
                )
                .bind(certificate.as_str())
                .bind(org.as_str())
                .fetch_optional(pool)
            })
            .await?;
        match row {
            Some(row) => Ok(crl_from_row(&row)?),
            None => Err(no_crl(certificate)),
        }
    }

    pub async fn delete_crl(
        &self,
        org: &OrgId,
        certificate: &CertificateId,
        actor: &Actor,
    ) -> Result<()> {
        let now = self.now();
        in_transaction!(self, |tx| {
            let seq = lock_organization(tx, org).await?;
            certificate_exists(tx, org, certificate).await?;
            let deleted = sqlx::query(
                "DELETE FROM certificate_crls WHERE certificate_id = $1 AND org_id = $2",
            )
            .bind(certificate.as_str())
            .bind(org.as_str())
            .execute(&mut *tx)
            .await?;
            if deleted.rows_affected() == 0 {
                return Err(no_crl(certificate));
            }
            TxAudit::new(org, seq, now, actor)
                .append(tx, &AuditEvent::CrlDeleted(certificate.clone()))
                .await?;
            let change = TrustChange::crl(org, certificate.as_str());
            bump_trust_generation(tx, self, &[change]).await?;
            Ok(())
        })
    }
}

/// 404 unless the organization has the (undeleted) certificate.
async fn certificate_exists(
    tx: &mut sqlx::AnyConnection,
    org: &OrgId,
    certificate: &CertificateId,
) -> Result<()> {
    sqlx::query("SELECT id FROM certificates WHERE id = $1 AND org_id = $2 AND deleted_at IS NULL")
        .bind(certificate.as_str())
        .bind(org.as_str())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| certificate.not_found())?;
    Ok(())
}

fn no_crl(certificate: &CertificateId) -> super::StoreError {
    DomainError::NotFound {
        kind: "CRL for certificate",
        id: certificate.to_string(),
    }
    .into()
}

/// The stored CRL summaries of `ids`, for certificate details (read in the caller's
/// transaction, so they describe the same state as the rest of the page).
pub(super) async fn crl_summaries(
    conn: &mut sqlx::AnyConnection,
    org: &OrgId,
    ids: &[CertificateId],
) -> Result<std::collections::HashMap<CertificateId, CrlSummary>> {
    let mut out = std::collections::HashMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    let placeholders = super::placeholders(2, ids.len());
    let sql = format!(
        "SELECT certificate_id, this_update, next_update, revoked_count FROM certificate_crls
         WHERE org_id = $1 AND certificate_id IN ({placeholders})"
    );
    let mut q = sqlx::query(&sql).bind(org.as_str());
    for id in ids {
        q = q.bind(id.as_str());
    }
    for row in q.fetch_all(&mut *conn).await? {
        let crl = crl_from_row(&row)?;
        out.insert(crl.certificate_id.clone(), crl);
    }
    Ok(out)
}
