//! What gateways read between full snapshots (spec §13.3, decisions.md D50): the change
//! records since the generation they hold, and just the rows those records name, in one read
//! transaction; or word of a gap when a record they need is gone.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use sqlx::Row;

use super::trust::{
    active_crls, anchor_from_row, begin_read, begin_read_on, counted, counted_one, snapshot_in,
    ACTIVE, ANCHOR_COLUMNS,
};
use super::{Result, Store};
use crate::trust::{
    CertificateState, CrlState, OrganizationState, StoredCrl, TrustChanges, TrustDelta,
    TrustSnapshot,
};

/// Ids bound by one statement of the delta read.
const IDS_PER_STATEMENT: usize = 200;

/// Tells, for a CRL version the read found, whether the caller already holds it (its DER is
/// then not fetched).
pub type HeldCrl<'a> = &'a (dyn Fn(&StoredCrl) -> bool + Sync);

impl Store {
    /// The changes since generation `since`, re-read as of the database's generation in one
    /// read transaction; [`TrustChanges::Gap`] when a generation after `since` has no record
    /// (pruned, or written by a version that records none), so the caller must read
    /// [`Store::trust_snapshot`] instead.
    pub async fn trust_changes(&self, since: i64, held: HeldCrl<'_>) -> Result<TrustChanges> {
        self.read(|pool| async move {
            let mut conn = pool.acquire().await?;
            let mut tx = begin_read_on(&mut conn, self.backend).await?;
            let changes = changes_in(&mut tx, since, held).await?;
            tx.commit().await?;
            Ok::<_, super::StoreError>(changes)
        })
        .await
    }

    /// [`Store::trust_changes`] when the generation moved from `since`, else `None`: the
    /// generation first (one row, what an idle poll costs), then the changes on the same
    /// connection (one acquisition, and on PostgreSQL one liveness check, instead of two).
    pub async fn trust_changes_if_moved(
        &self,
        since: i64,
        held: HeldCrl<'_>,
    ) -> Result<Option<TrustChanges>> {
        self.read(|pool| async move {
            let mut conn = pool.acquire().await?;
            let generation: i64 = counted_one(
                sqlx::query("SELECT generation FROM trust_state WHERE id = 1")
                    .fetch_one(&mut *conn)
                    .await?,
            )
            .try_get("generation")?;
            if generation == since {
                return Ok::<_, super::StoreError>(None);
            }
            let mut tx = begin_read_on(&mut conn, self.backend).await?;
            let changes = changes_in(&mut tx, since, held).await?;
            tx.commit().await?;
            Ok(Some(changes))
        })
        .await
    }

    /// A full snapshot and the changes since `since`, both as of the same state (one read
    /// transaction): what a reconcile compares.
    pub async fn trust_snapshot_and_changes(
        &self,
        since: i64,
        held: HeldCrl<'_>,
        held_versions: &HashSet<crate::trust::CrlVersion>,
    ) -> Result<(TrustSnapshot, TrustChanges)> {
        self.read(|pool| async move {
            let mut tx = begin_read(pool, self.backend).await?;
            let changes = changes_in(&mut tx, since, held).await?;
            let in_full = |c: &StoredCrl| {
                held_versions.contains(&(c.certificate_id.clone(), c.content.clone()))
            };
            let snapshot = snapshot_in(&mut tx, &in_full).await?;
            tx.commit().await?;
            Ok::<_, super::StoreError>((snapshot, changes))
        })
        .await
    }
}

/// What the records since a generation named.
#[derive(Default)]
struct Touched {
    organizations: BTreeSet<String>,
    /// Project id → organization.
    projects: BTreeMap<String, String>,
    /// Certificate id → organization: its row and activations.
    certificates: BTreeMap<String, String>,
    /// Certificate id → organization: its CRL (every certificate named, too).
    crls: BTreeMap<String, String>,
    /// (organization, SHA-256).
    denied: BTreeSet<(String, String)>,
}

async fn changes_in(
    tx: &mut sqlx::AnyConnection,
    since: i64,
    held: HeldCrl<'_>,
) -> Result<TrustChanges> {
    // The generation and the records since `since` up to it, in one statement (one round
    // trip): one row with no record when nothing is recorded in between.
    let rows = counted(
        sqlx::query(
            "SELECT s.generation AS current, c.generation, c.org_id, c.kind, c.target
             FROM trust_state s
             LEFT JOIN trust_changes c ON c.generation > $1 AND c.generation <= s.generation
             WHERE s.id = 1",
        )
        .bind(since)
        .fetch_all(&mut *tx)
        .await?,
    );
    let generation: i64 = rows
        .first()
        .ok_or_else(|| super::StoreError::Internal("no trust_state row".into()))?
        .try_get("current")?;
    let mut delta = TrustDelta {
        since,
        generation,
        ..TrustDelta::default()
    };
    if generation == since {
        return Ok(TrustChanges::Delta(delta));
    }
    if generation < since {
        // The database went back (a restore): only a full read says what holds now.
        return Ok(TrustChanges::Gap { generation });
    }
    let mut records = Vec::with_capacity(rows.len());
    for r in &rows {
        if let Some(g) = r.try_get::<Option<i64>, _>("generation")? {
            records.push((
                g,
                r.try_get::<String, _>("org_id")?,
                r.try_get::<String, _>("kind")?,
                r.try_get::<String, _>("target")?,
            ));
        }
    }
    delta.records = records.len();
    let mut generations = HashSet::new();
    let mut touched = Touched::default();
    for (g, org, kind, target) in records {
        generations.insert(g);
        match kind.as_str() {
            "organization" => {
                touched.organizations.insert(target);
            }
            "project" => {
                touched.projects.insert(target, org);
            }
            "certificate" => {
                touched.crls.insert(target.clone(), org.clone());
                touched.certificates.insert(target, org);
            }
            "crl" => {
                touched.crls.insert(target, org);
            }
            "deny" => {
                touched.denied.insert((org, target));
            }
            // Written by a later version: what it means is not known here.
            _ => return Ok(TrustChanges::Gap { generation }),
        }
    }
    // Every generation since must have its record, or some change would be missed.
    if i64::try_from(generations.len()).ok() != Some(generation - since) {
        return Ok(TrustChanges::Gap { generation });
    }
    read_organizations(tx, &touched, &mut delta).await?;
    read_projects(tx, &touched, &mut delta).await?;
    read_certificates(tx, &touched, &mut delta).await?;
    read_denied(tx, &touched, &mut delta).await?;
    let ids: Vec<String> = touched.crls.keys().cloned().collect();
    let mut found: HashMap<String, StoredCrl> = HashMap::new();
    for chunk in ids.chunks(IDS_PER_STATEMENT) {
        for crl in active_crls(tx, held, Some(chunk)).await? {
            found.insert(crl.certificate_id.clone(), crl);
        }
    }
    for (id, org) in &touched.crls {
        delta.crls.push(CrlState {
            org_id: org.clone(),
            certificate_id: id.clone(),
            crl: found.remove(id),
        });
    }
    Ok(TrustChanges::Delta(delta))
}

/// `SELECT … WHERE column IN (ids)` a chunk at a time: `sql` ends with `IN (` + `)` added.
async fn rows_in(
    tx: &mut sqlx::AnyConnection,
    sql: &str,
    ids: &[String],
) -> Result<Vec<sqlx::any::AnyRow>> {
    let mut out = Vec::new();
    for chunk in ids.chunks(IDS_PER_STATEMENT) {
        let sql = format!("{sql}{})", super::placeholders(1, chunk.len()));
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind(id.as_str());
        }
        out.extend(counted(q.fetch_all(&mut *tx).await?));
    }
    Ok(out)
}

async fn read_organizations(
    tx: &mut sqlx::AnyConnection,
    touched: &Touched,
    delta: &mut TrustDelta,
) -> Result<()> {
    let ids: Vec<String> = touched.organizations.iter().cloned().collect();
    let mut existing = HashSet::new();
    for r in rows_in(tx, "SELECT id FROM organizations WHERE id IN (", &ids).await? {
        existing.insert(r.try_get::<String, _>("id")?);
    }
    let mut projects: HashMap<String, Vec<String>> = HashMap::new();
    for r in rows_in(
        tx,
        "SELECT org_id, id FROM projects WHERE archived_at IS NULL AND org_id IN (",
        &ids,
    )
    .await?
    {
        projects
            .entry(r.try_get("org_id")?)
            .or_default()
            .push(r.try_get("id")?);
    }
    for org in ids {
        delta.organizations.push(OrganizationState {
            exists: existing.contains(&org),
            projects: projects.remove(&org).unwrap_or_default(),
            org_id: org,
        });
    }
    Ok(())
}

async fn read_projects(
    tx: &mut sqlx::AnyConnection,
    touched: &Touched,
    delta: &mut TrustDelta,
) -> Result<()> {
    let ids: Vec<String> = touched.projects.keys().cloned().collect();
    let mut live = HashSet::new();
    for r in rows_in(
        tx,
        "SELECT id FROM projects WHERE archived_at IS NULL AND id IN (",
        &ids,
    )
    .await?
    {
        live.insert(r.try_get::<String, _>("id")?);
    }
    for (id, org) in &touched.projects {
        delta
            .projects
            .push((org.clone(), id.clone(), live.contains(id)));
    }
    Ok(())
}

async fn read_certificates(
    tx: &mut sqlx::AnyConnection,
    touched: &Touched,
    delta: &mut TrustDelta,
) -> Result<()> {
    let ids: Vec<String> = touched.certificates.keys().cloned().collect();
    let mut anchors = HashMap::new();
    let sql = format!("SELECT {ANCHOR_COLUMNS} FROM certificates c WHERE {ACTIVE} AND c.id IN (");
    for r in rows_in(tx, &sql, &ids).await? {
        let anchor = anchor_from_row(&r)?;
        anchors.insert(anchor.certificate_id.clone(), anchor);
    }
    for r in rows_in(
        tx,
        "SELECT certificate_id, project_id FROM project_activations WHERE certificate_id IN (",
        &ids,
    )
    .await?
    {
        if let Some(a) = anchors.get_mut(&r.try_get::<String, _>("certificate_id")?) {
            a.projects.push(r.try_get("project_id")?);
        }
    }
    for (id, org) in &touched.certificates {
        delta.certificates.push(CertificateState {
            org_id: org.clone(),
            certificate_id: id.clone(),
            anchor: anchors.remove(id),
        });
    }
    Ok(())
}

async fn read_denied(
    tx: &mut sqlx::AnyConnection,
    touched: &Touched,
    delta: &mut TrustDelta,
) -> Result<()> {
    let shas: Vec<String> = touched
        .denied
        .iter()
        .map(|(_, sha)| sha.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut listed = HashSet::new();
    for r in rows_in(
        tx,
        "SELECT org_id, sha256 FROM revoked_certificates WHERE deleted_at IS NULL AND sha256 IN (",
        &shas,
    )
    .await?
    {
        listed.insert((
            r.try_get::<String, _>("org_id")?,
            r.try_get::<String, _>("sha256")?,
        ));
    }
    for (org, sha) in &touched.denied {
        let denied = listed.contains(&(org.clone(), sha.clone()));
        delta.revoked.push((org.clone(), sha.clone(), denied));
    }
    Ok(())
}
