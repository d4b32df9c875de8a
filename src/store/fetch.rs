//! What the CRL fetcher reads and writes (decisions.md D59): the certificates that name a
//! `crl_url`, one lease row per URL (so that replicas fetch each URL once per interval between
//! them), and the `certificate.crl_fetched` event. A fetched CRL itself is stored by
//! [`Store::put_crl`], exactly as a PUT one.

use sqlx::Row;

use super::audit::TxAudit;
use super::tx::{in_transaction, lock_organization};
use super::{Result, Store};
use crate::domain::{Actor, AuditEvent, CertificateId, CrlFetch, OrgId};

/// A certificate whose CRL certgate keeps fetched.
#[derive(Debug, Clone)]
pub struct CrlSource {
    pub org_id: OrgId,
    pub certificate_id: CertificateId,
    pub url: String,
    /// The CA certificate's PEM, which the fetched CRL must be issued and signed by.
    pub pem: String,
    /// SHA-256 (hex) of the CRL stored now, if any: an unchanged fetch stores nothing.
    pub stored_sha256: Option<String>,
}

impl Store {
    /// The URLs worth trying to claim now: named by a live certificate, due for a fetch
    /// (never fetched, or its next fetch has come) and leased by no replica. The fetcher asks
    /// every tick, so this reads URLs only, never certificates.
    pub async fn due_crl_urls(&self) -> Result<Vec<String>> {
        let now = self.now();
        let rows = self
            .read(|pool| {
                sqlx::query(
                    "SELECT DISTINCT c.crl_url
                     FROM certificates c
                     LEFT JOIN crl_fetch_leases l ON l.url = c.crl_url
                     WHERE c.deleted_at IS NULL AND c.crl_url IS NOT NULL
                       AND (l.url IS NULL OR (l.next_fetch_at <= $1 AND l.lease_until <= $1))
                     ORDER BY c.crl_url",
                )
                .bind(now)
                .fetch_all(pool)
            })
            .await?;
        rows.iter().map(|row| Ok(row.try_get("crl_url")?)).collect()
    }

    /// Every live certificate naming `url`, with its PEM: read once a replica holds the URL's
    /// lease.
    pub async fn crl_sources(&self, url: &str) -> Result<Vec<CrlSource>> {
        let url = url.to_owned();
        let rows = self
            .read(|pool| {
                sqlx::query(
                    "SELECT c.org_id, c.id, c.crl_url, c.content, r.der_sha256
                     FROM certificates c
                     LEFT JOIN certificate_crls r ON r.certificate_id = c.id
                     WHERE c.deleted_at IS NULL AND c.crl_url = $1
                     ORDER BY c.id",
                )
                .bind(url.clone())
                .fetch_all(pool)
            })
            .await?;
        rows.iter()
            .map(|row| {
                Ok(CrlSource {
                    org_id: OrgId::trusted(row.try_get("org_id")?),
                    certificate_id: CertificateId::trusted(row.try_get("id")?),
                    url: row.try_get("crl_url")?,
                    pem: row.try_get("content")?,
                    stored_sha256: row.try_get("der_sha256")?,
                })
            })
            .collect()
    }

    /// Claims `url` for one fetch by `holder` until `lease_until`, if it is due at `now` and no
    /// other replica holds a live lease on it (a row is created, due at once, for a URL seen
    /// for the first time). Returns the failures in a row so far, or `None`: not this
    /// replica's to fetch now.
    pub async fn claim_crl_fetch(
        &self,
        url: &str,
        holder: &str,
        lease_until: i64,
    ) -> Result<Option<i64>> {
        let now = self.now();
        in_transaction!(self, |tx| {
            sqlx::query(
                "INSERT INTO crl_fetch_leases (url, next_fetch_at, holder, lease_until, failures)
                 VALUES ($1, 0, NULL, 0, 0) ON CONFLICT (url) DO NOTHING",
            )
            .bind(url)
            .execute(&mut *tx)
            .await?;
            let claimed = sqlx::query(
                "UPDATE crl_fetch_leases SET holder = $1, lease_until = $2
                 WHERE url = $3 AND next_fetch_at <= $4 AND lease_until <= $4
                 RETURNING failures",
            )
            .bind(holder)
            .bind(lease_until)
            .bind(url)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            Ok(match claimed {
                Some(row) => Some(row.try_get::<i64, _>("failures")?),
                None => None,
            })
        })
    }

    /// Moves `holder`'s lease on `url` to `lease_until`, while its fetch is still being
    /// applied; `false` when the lease is no longer `holder`'s.
    pub async fn extend_crl_fetch(
        &self,
        url: &str,
        holder: &str,
        lease_until: i64,
    ) -> Result<bool> {
        in_transaction!(self, |tx| {
            let done = sqlx::query(
                "UPDATE crl_fetch_leases SET lease_until = $1 WHERE url = $2 AND holder = $3",
            )
            .bind(lease_until)
            .bind(url)
            .bind(holder)
            .execute(&mut *tx)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Ends `holder`'s lease on `url`: the next fetch is due at `next_fetch_at`, after
    /// `failures` failed fetches in a row.
    pub async fn finish_crl_fetch(
        &self,
        url: &str,
        holder: &str,
        next_fetch_at: i64,
        failures: i64,
    ) -> Result<()> {
        in_transaction!(self, |tx| {
            sqlx::query(
                "UPDATE crl_fetch_leases SET next_fetch_at = $1, failures = $2, holder = NULL, lease_until = 0
                 WHERE url = $3 AND holder = $4",
            )
            .bind(next_fetch_at)
            .bind(failures)
            .bind(url)
            .bind(holder)
            .execute(&mut *tx)
            .await?;
            Ok(())
        })
    }

    /// Appends a `certificate.crl_fetched` event (by certgate itself: `actor: null`).
    pub async fn record_crl_fetch(&self, org: &OrgId, fetch: CrlFetch) -> Result<()> {
        let now = self.now();
        in_transaction!(self, |tx| {
            let seq = lock_organization(tx, org).await?;
            TxAudit::new(org, seq, now, &Actor::System)
                .append(tx, &AuditEvent::CrlFetched(fetch.clone()))
                .await?;
            Ok(())
        })
    }
}
