//! Organizations, their admin keys, the bootstrap of an empty database, and key checks.

use sqlx::Row;

use super::tx::{bump_trust_generation, in_transaction};
use super::{Authenticated, Backend, Result, Store};
use crate::domain::{self, AdminKeySecret, KeyId, NewAdminKey, OrgId, Organization};

impl Store {
    /// Finds the organization an admin key belongs to, and the organization's write sequence
    /// (bumped by every write to it) in the same statement. The database is looked up by the
    /// key's SHA-256; the stored digest is then compared in constant time.
    pub async fn authenticate(&self, presented: &str) -> Result<Option<Authenticated>> {
        use subtle::ConstantTimeEq;
        let digest = domain::admin_key_digest(presented);
        // Read before the query: a commit in between makes the entry's marker stale, never
        // its contents.
        let marker = self.change_marker().await;
        if let (Some(m), Some(local)) = (marker, &self.sqlite) {
            if let Some(hit) = local.keys.get(&digest, m) {
                return Ok(Some(hit));
            }
        }
        let row = sqlx::query(
            "SELECT k.org_id, k.key_sha256, o.seq FROM admin_keys k JOIN organizations o ON o.id = k.org_id
             WHERE k.key_sha256 = $1 AND k.revoked_at IS NULL",
        )
        .bind(&digest)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let stored: String = row.try_get("key_sha256")?;
        if !bool::from(stored.as_bytes().ct_eq(digest.as_bytes())) {
            return Ok(None);
        }
        let who = Authenticated {
            org_id: OrgId::trusted(row.try_get("org_id")?),
            version: row.try_get("seq")?,
        };
        if let (Some(m), Some(local)) = (marker, &self.sqlite) {
            local.keys.put(digest, m, who.clone());
        }
        Ok(Some(who))
    }

    /// Creates an organization with its first admin key.
    pub async fn create_organization(&self, name: &str) -> Result<(Organization, NewAdminKey)> {
        let now = self.now();
        in_transaction!(self, |tx| {
            insert_organization(&mut tx, name, now, self.backend).await
        })
    }

    /// On an empty database, creates the default organization, exactly once however many
    /// replicas start together. Returns it (and its key) only to the caller that created it.
    pub async fn bootstrap(&self) -> Result<Option<(Organization, NewAdminKey)>> {
        let now = self.now();
        in_transaction!(self, |tx| {
            let claimed = sqlx::query(
                "INSERT INTO meta (key, value) VALUES ('bootstrap', $1) ON CONFLICT (key) DO NOTHING",
            )
            .bind(now.to_string())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if claimed == 0 {
                return Ok(None);
            }
            let orgs: i64 = sqlx::query("SELECT COUNT(*) AS n FROM organizations")
                .fetch_one(&mut *tx)
                .await?
                .try_get("n")?;
            if orgs > 0 {
                return Ok(None);
            }
            Ok(Some(
                insert_organization(&mut tx, "Default Organization", now, self.backend).await?,
            ))
        })
    }
}

async fn insert_organization(
    tx: &mut sqlx::AnyConnection,
    name: &str,
    now: i64,
    backend: Backend,
) -> Result<(Organization, NewAdminKey)> {
    let org = Organization {
        id: OrgId::generate(),
        name: name.to_owned(),
        created_at: now,
    };
    sqlx::query("INSERT INTO organizations (id, name, created_at, seq) VALUES ($1, $2, $3, 0)")
        .bind(org.id.as_str())
        .bind(&org.name)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    let value = AdminKeySecret::generate();
    let key = NewAdminKey {
        id: KeyId::generate(),
        name: "Initial admin key".to_owned(),
        redacted_value: value.redacted(),
        value,
        created_at: now,
    };
    sqlx::query(
        "INSERT INTO admin_keys (id, org_id, name, key_sha256, redacted, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(key.id.as_str())
    .bind(org.id.as_str())
    .bind(&key.name)
    .bind(key.value.digest())
    .bind(&key.redacted_value)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    // Gateways answer `unknown_organization` for organizations they do not know of.
    bump_trust_generation(tx, backend).await?;
    Ok((org, key))
}
