//! Admin keys: the check every request makes, and create, read, list, delete (decisions.md D15).
//!
//! A deleted key stays as a tombstone (`revoked_at` set): it never authenticates and is not
//! listed, but its id remains a valid list cursor. An expired key stops working at its
//! `expires_at`, by the store's clock, also when its check is served from the SQLite key cache.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::audit::TxAudit;
use super::error::SharedError;
use super::paging;
use super::tx::{in_transaction, lock_organization};
use super::{Authenticated, Result, Store};
use crate::domain::{
    self, key_expired, Actor, AdminKey, AdminKeySecret, AuditEvent, DomainError, KeyId, KeyKind,
    KeyOwner, NewAdminKey, OrgId, Organization, Page, PageRequest,
};

const KEY_COLUMNS: &str = "k.id, k.name, k.redacted, k.created_at, k.expires_at, k.last_used_at,
     o.id AS org_id, o.name AS org_name, o.created_at AS org_created_at";

fn key_from_row(row: &AnyRow) -> Result<AdminKey, sqlx::Error> {
    Ok(AdminKey {
        id: KeyId::trusted(row.try_get("id")?),
        name: row.try_get("name")?,
        redacted_value: row.try_get("redacted")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        last_used_at: row.try_get("last_used_at")?,
        owner: KeyOwner {
            org_id: OrgId::trusted(row.try_get("org_id")?),
            name: row.try_get("org_name")?,
            created_at: row.try_get("org_created_at")?,
        },
    })
}

/// Makes a key and inserts it, at the organization's counter `seq`.
pub(super) async fn insert_key(
    tx: &mut sqlx::AnyConnection,
    owner: KeyOwner,
    name: &str,
    now: i64,
    expires_at: Option<i64>,
    seq: i64,
) -> Result<NewAdminKey> {
    let value = AdminKeySecret::generate();
    let key = AdminKey {
        id: KeyId::generate(),
        name: name.to_owned(),
        redacted_value: value.redacted(),
        created_at: now,
        expires_at,
        last_used_at: None,
        owner,
    };
    sqlx::query(
        "INSERT INTO admin_keys (id, org_id, name, key_sha256, redacted, created_at, expires_at, seq)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(key.id.as_str())
    .bind(key.owner.org_id.as_str())
    .bind(&key.name)
    .bind(value.digest())
    .bind(&key.redacted_value)
    .bind(now)
    .bind(expires_at)
    .bind(seq)
    .execute(&mut *tx)
    .await?;
    Ok(NewAdminKey { key, value })
}

impl Store {
    /// Finds the organization an admin key belongs to, and the organization's write sequence
    /// (bumped by every write to it) in the same statement. The database is looked up by the
    /// key's SHA-256; the stored digest is then compared in constant time. Deleted and expired
    /// keys are refused. A success records the key's use (in memory, see `key_usage`). One
    /// deadline bounds the check: the change marker, the shared read and its wait together.
    pub async fn authenticate(&self, presented: &str) -> Result<Option<Authenticated>> {
        self.deadline().bound(self.check_key(presented)).await
    }

    async fn check_key(&self, presented: &str) -> Result<Option<Authenticated>> {
        use subtle::ConstantTimeEq;
        let digest = domain::admin_key_digest(presented);
        let now = self.now();
        // Read before the query: a commit in between makes the entry's marker stale, never
        // its contents.
        let marker = self.change_marker().await;
        if let (Some(m), Some(local)) = (marker, &self.sqlite) {
            if let Some(hit) = local.keys.get(&digest, m) {
                // Nothing was committed since the check, but time went on.
                if key_expired(hit.expires_at, now) {
                    return Ok(None);
                }
                self.record_key_use(&hit.key_id, now);
                return Ok(Some(hit));
            }
        }
        let found = if self.sqlite.is_some() {
            self.look_up_key(&digest).await?
        } else {
            // PostgreSQL: the checks of one key that arrive together share a query that
            // started after each of them arrived (`coalesce`).
            let store = self.clone();
            self.key_reads
                .read(
                    digest.clone(),
                    move |digest| {
                        let store = store.clone();
                        async move { store.look_up_key(&digest).await.map_err(SharedError::from) }
                    },
                    Err(SharedError::lost()),
                )
                .await?
        };
        let Some((stored, who)) = found else {
            return Ok(None);
        };
        if !bool::from(stored.as_bytes().ct_eq(digest.as_bytes())) {
            return Ok(None);
        }
        if let (Some(m), Some(local)) = (marker, &self.sqlite) {
            local.keys.put(digest, m, who.clone());
        }
        if key_expired(who.expires_at, now) {
            return Ok(None);
        }
        self.record_key_use(&who.key_id, now);
        Ok(Some(who))
    }

    /// The live key with this digest (its stored digest, to compare in constant time), with
    /// its organization's write sequence, in one statement.
    async fn look_up_key(&self, digest: &str) -> Result<Option<(String, Authenticated)>> {
        let row = self
            .read(|pool| {
                sqlx::query(
                    "SELECT k.id, k.org_id, k.key_sha256, k.expires_at, o.seq
                     FROM admin_keys k JOIN organizations o ON o.id = k.org_id
                     WHERE k.key_sha256 = $1 AND k.revoked_at IS NULL",
                )
                .bind(digest)
                .fetch_optional(pool)
            })
            .await?;
        let Some(row) = row else { return Ok(None) };
        let who = Authenticated {
            org_id: OrgId::trusted(row.try_get("org_id")?),
            key_id: KeyId::trusted(row.try_get("id")?),
            version: row.try_get("seq")?,
            expires_at: row.try_get("expires_at")?,
        };
        Ok(Some((row.try_get("key_sha256")?, who)))
    }

    /// A new admin key for `org`; its value exists only in the answer.
    pub async fn create_admin_key(
        &self,
        org: &OrgId,
        name: &str,
        expires_in: Option<i64>,
        actor: &Actor,
    ) -> Result<NewAdminKey> {
        let now = self.now();
        let expires_at = expires_in.map(|secs| now.saturating_add(secs));
        in_transaction!(self, |tx| {
            let seq = lock_organization(tx, org).await?;
            let owner = owner_of(tx, org).await?;
            let new = insert_key(tx, owner, name, now, expires_at, seq).await?;
            TxAudit::new(org, seq, now, actor)
                .append(tx, &AuditEvent::ApiKeyCreated(new.key.id.clone()))
                .await?;
            Ok(new)
        })
    }

    /// A key of `org` that is not deleted (expired ones included).
    pub async fn get_admin_key(&self, org: &OrgId, id: &KeyId) -> Result<AdminKey> {
        let sql = format!(
            "SELECT {KEY_COLUMNS} FROM admin_keys k JOIN organizations o ON o.id = k.org_id
             WHERE k.id = $1 AND k.org_id = $2 AND k.revoked_at IS NULL"
        );
        let row = self.read_one_of_org(&sql, id.as_str(), org).await?;
        match row {
            Some(row) => Ok(key_from_row(&row)?),
            None => Err(id.not_found().into()),
        }
    }

    /// The organization's keys that are not deleted, by creation (`page.order`).
    pub async fn list_admin_keys(&self, org: &OrgId, page: &PageRequest) -> Result<Page<AdminKey>> {
        let select = format!(
            "SELECT {KEY_COLUMNS} FROM admin_keys k JOIN organizations o ON o.id = k.org_id
             WHERE k.org_id = $1 AND k.revoked_at IS NULL"
        );
        self.read(|pool| async move {
            // Deleted keys stay valid cursors: the tombstone keeps its position.
            let cursor =
                paging::cursor::<KeyKind>(pool, "admin_keys", org, page.after.as_deref()).await?;
            paging::fetch(pool, &select, "k.", org, page, cursor, key_from_row).await
        })
        .await
    }

    /// Deletes (revokes) a key. The last unexpired key of the organization is refused
    /// (`last_admin_key`) unless `force`: checked after the organization's lock, so two
    /// deletes racing for the last two keys cannot both succeed.
    pub async fn delete_admin_key(
        &self,
        org: &OrgId,
        id: &KeyId,
        actor: &Actor,
        force: bool,
    ) -> Result<()> {
        let now = self.now();
        in_transaction!(self, |tx| {
            let seq = lock_organization(tx, org).await?;
            let row = sqlx::query(
                "SELECT expires_at FROM admin_keys WHERE id = $1 AND org_id = $2 AND revoked_at IS NULL",
            )
            .bind(id.as_str())
            .bind(org.as_str())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| id.not_found())?;
            let expires_at: Option<i64> = row.try_get("expires_at")?;
            if !force && !key_expired(expires_at, now) {
                let others: i64 = sqlx::query(
                    "SELECT COUNT(*) AS n FROM admin_keys
                     WHERE org_id = $1 AND id <> $2 AND revoked_at IS NULL
                       AND (expires_at IS NULL OR expires_at > $3)",
                )
                .bind(org.as_str())
                .bind(id.as_str())
                .bind(now)
                .fetch_one(&mut *tx)
                .await?
                .try_get("n")?;
                if others == 0 {
                    return Err(DomainError::LastAdminKey(id.to_string()).into());
                }
            }
            sqlx::query("UPDATE admin_keys SET revoked_at = $1 WHERE id = $2")
                .bind(now)
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
            TxAudit::new(org, seq, now, actor)
                .append(tx, &AuditEvent::ApiKeyDeleted(id.clone()))
                .await?;
            Ok(())
        })
    }

    /// The organization a key (deleted or not) belongs to: what `certgate key revoke` acts on.
    pub async fn admin_key_organization(&self, id: &KeyId) -> Result<OrgId> {
        let row = self
            .read(|pool| {
                sqlx::query("SELECT org_id FROM admin_keys WHERE id = $1 AND revoked_at IS NULL")
                    .bind(id.as_str())
                    .fetch_optional(pool)
            })
            .await?
            .ok_or_else(|| id.not_found())?;
        Ok(OrgId::trusted(row.try_get("org_id")?))
    }

    /// Every organization, oldest first.
    pub async fn list_organizations(&self) -> Result<Vec<Organization>> {
        self.read(|pool| {
            sqlx::query("SELECT id, name, created_at FROM organizations ORDER BY created_at, id")
                .fetch_all(pool)
        })
        .await?
        .iter()
        .map(|row| {
            Ok(Organization {
                id: OrgId::trusted(row.try_get("id")?),
                name: row.try_get("name")?,
                created_at: row.try_get("created_at")?,
            })
        })
        .collect()
    }

    /// One organization, or 404.
    pub async fn get_organization(&self, id: &OrgId) -> Result<Organization> {
        let row = self
            .read(|pool| {
                sqlx::query("SELECT id, name, created_at FROM organizations WHERE id = $1")
                    .bind(id.as_str())
                    .fetch_optional(pool)
            })
            .await?
            .ok_or_else(|| id.not_found())?;
        Ok(Organization {
            id: OrgId::trusted(row.try_get("id")?),
            name: row.try_get("name")?,
            created_at: row.try_get("created_at")?,
        })
    }
}

/// The owner shown on the organization's keys.
async fn owner_of(tx: &mut sqlx::AnyConnection, org: &OrgId) -> Result<KeyOwner> {
    let row = sqlx::query("SELECT name, created_at FROM organizations WHERE id = $1")
        .bind(org.as_str())
        .fetch_one(&mut *tx)
        .await?;
    Ok(KeyOwner {
        org_id: org.clone(),
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
    })
}
