//! Organizations and the bootstrap of an empty database. An organization is born with its
//! Default project and its first admin key, and their audit events (actor null).

use sqlx::Row;

use super::audit::TxAudit;
use super::keys::insert_key;
use super::tx::{bump_trust_generation, in_transaction, TrustChange};
use super::{Result, Store};
use crate::domain::{
    Actor, AuditEvent, KeyOwner, NewAdminKey, OrgId, Organization, ProjectId, ProjectRef,
};

/// The name of every organization's undeletable first project (as in OpenAI).
pub const DEFAULT_PROJECT_NAME: &str = "Default project";

impl Store {
    /// Creates an organization with its Default project and first admin key.
    pub async fn create_organization(&self, name: &str) -> Result<(Organization, NewAdminKey)> {
        let now = self.now();
        in_transaction!(self, |tx| {
            insert_organization(tx, name, now, self).await
        })
    }

    /// Whether an empty database was already given its default organization (by any
    /// replica): then [`Store::bootstrap`] makes nothing.
    pub async fn is_bootstrapped(&self) -> Result<bool> {
        let row = self
            .read(|pool| {
                sqlx::query("SELECT key FROM meta WHERE key = 'bootstrap'").fetch_optional(pool)
            })
            .await?;
        Ok(row.is_some())
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
                insert_organization(tx, "Default Organization", now, self).await?,
            ))
        })
    }
}

/// The organization row, its Default project and first key, all at the organization's
/// counter 0 (every later write takes 1 and up), with their events.
async fn insert_organization(
    tx: &mut sqlx::AnyConnection,
    name: &str,
    now: i64,
    store: &Store,
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
    let project = ProjectRef {
        id: ProjectId::generate(),
        name: DEFAULT_PROJECT_NAME.to_owned(),
    };
    sqlx::query(
        "INSERT INTO projects (id, org_id, name, created_at, seq, is_default) VALUES ($1, $2, $3, $4, 0, 1)",
    )
    .bind(project.id.as_str())
    .bind(org.id.as_str())
    .bind(&project.name)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let key = insert_key(tx, KeyOwner::of(&org), "Initial admin key", now, None, 0).await?;
    let mut audit = TxAudit::new(&org.id, 0, now, &Actor::System);
    audit
        .append(tx, &AuditEvent::ProjectCreated(project))
        .await?;
    audit
        .append(tx, &AuditEvent::ApiKeyCreated(key.key.id.clone()))
        .await?;
    // Gateways answer `unknown_organization` (and `unknown_project`) for what they do not
    // know of.
    bump_trust_generation(tx, store, &[TrustChange::organization(&org.id)]).await?;
    Ok((org, key))
}
