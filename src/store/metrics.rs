//! What a metrics scrape of `serve` reads (decisions.md D40).

use sqlx::Row;

use super::{Result, Store};

/// One stored CA's expiry, for `certgate_certificate_expiry_timestamp_seconds`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateExpiry {
    pub org_id: String,
    pub certificate_id: String,
    /// notAfter, Unix seconds.
    pub expires_at: i64,
}

impl Store {
    /// Every stored (not deleted) certificate of every organization, with its notAfter, in a
    /// stable order. At most 50 per organization, so one statement does.
    pub async fn certificate_expiries(&self) -> Result<Vec<CertificateExpiry>> {
        let rows = self
            .read(|pool| {
                sqlx::query(
                    "SELECT org_id, id, expires_at FROM certificates WHERE deleted_at IS NULL ORDER BY org_id, id",
                )
                .fetch_all(pool)
            })
            .await?;
        rows.iter()
            .map(|row| {
                Ok(CertificateExpiry {
                    org_id: row.try_get("org_id")?,
                    certificate_id: row.try_get("id")?,
                    expires_at: row.try_get("expires_at")?,
                })
            })
            .collect()
    }
}
