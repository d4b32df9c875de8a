//! What gateways read: the trust generation, a consistent snapshot of everything that decides
//! who may connect, and (PostgreSQL) a wake-up when it changes.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::AnyRow;
use sqlx::Row;

use super::revocations::LEGACY_SIZE;
use super::{Backend, Result, Store, StoreError};
use crate::trust::{CrlVersion, FetchedCrl, StoredCrl, TrustAnchor, TrustSnapshot};

/// Certificates active somewhere: for the organization, or for a project (archiving a project
/// deletes its activations).
pub(super) const ACTIVE: &str =
    "c.deleted_at IS NULL AND (c.active_org <> 0 OR c.id IN (SELECT certificate_id FROM project_activations))";

/// Most base64 text fetched by one statement of [`active_crls`] (a CRL larger than this is
/// fetched alone), so what the read holds at once beyond the DER it returns stays small.
const CRL_FETCH_BYTES: i64 = 8 << 20;
/// Most CRLs fetched by one statement (bound parameters).
const CRL_FETCH_ROWS: usize = 256;

/// Rows the trust reads of this process fetched ([`Store::trust_reads`]).
static READ_ROWS: AtomicU64 = AtomicU64::new(0);
/// Bytes of those rows: a text column counts its length, any other column 8.
static READ_BYTES: AtomicU64 = AtomicU64::new(0);

/// What the trust reads of this process fetched from the database so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrustReads {
    pub rows: u64,
    pub bytes: u64,
}

/// Counts `rows` into [`TrustReads`] and hands them back.
pub(super) fn counted(rows: Vec<AnyRow>) -> Vec<AnyRow> {
    let bytes: u64 = rows.iter().map(row_bytes).sum();
    READ_ROWS.fetch_add(rows.len() as u64, Ordering::Relaxed);
    READ_BYTES.fetch_add(bytes, Ordering::Relaxed);
    rows
}

/// Counts one row into [`TrustReads`] and hands it back.
pub(super) fn counted_one(row: AnyRow) -> AnyRow {
    READ_ROWS.fetch_add(1, Ordering::Relaxed);
    READ_BYTES.fetch_add(row_bytes(&row), Ordering::Relaxed);
    row
}

/// A row's size as [`TrustReads`] counts it.
fn row_bytes(row: &AnyRow) -> u64 {
    (0..row.len())
        .map(|i| match row.try_get::<Option<&str>, _>(i) {
            Ok(text) => text.map_or(0, |t| t.len() as u64),
            Err(_) => 8,
        })
        .sum()
}

impl Store {
    /// Rows and bytes fetched by this process's trust reads (generation, snapshots, changes)
    /// since it started: what `bench/sync` reports per change, and
    /// `certgate_trust_rows_read_total` / `certgate_trust_bytes_read_total`.
    pub fn trust_reads() -> TrustReads {
        TrustReads {
            rows: READ_ROWS.load(Ordering::Relaxed),
            bytes: READ_BYTES.load(Ordering::Relaxed),
        }
    }

    /// How long trust change records are kept (default 1 h): a watcher that falls further
    /// behind than this reads the full state once instead of the changes.
    pub fn set_trust_change_retention(&self, keep: Duration) {
        self.change_retention.store(
            i64::try_from(keep.as_secs()).unwrap_or(i64::MAX),
            Ordering::Relaxed,
        );
    }

    /// The generation gateways watch; it moves with every change of who may connect.
    pub async fn trust_generation(&self) -> Result<i64> {
        let row = self
            .read(|pool| {
                sqlx::query("SELECT generation FROM trust_state WHERE id = 1").fetch_one(pool)
            })
            .await?;
        Ok(counted_one(row).try_get("generation")?)
    }

    /// The active anchors of every organization, with the generation they belong to, all read
    /// from one snapshot of the database (a read transaction; REPEATABLE READ on PostgreSQL,
    /// where each statement would otherwise see its own). The CRLs are those of active CAs;
    /// the DER of the versions in `held` (the caller's, from its last index) is left out.
    pub async fn trust_snapshot(&self, held: &HashSet<CrlVersion>) -> Result<TrustSnapshot> {
        self.read(|pool| snapshot(pool, self.backend, held)).await
    }

    /// On PostgreSQL, a receiver woken (its value bumped) whenever a trust-changing write
    /// commits anywhere, via LISTEN/NOTIFY; it reconnects by itself and stops once the
    /// receiver is dropped. `None` on SQLite, where watchers poll [`Store::trust_generation`],
    /// which is cheap.
    pub fn listen_trust_changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        if self.backend != Backend::Postgres {
            return None;
        }
        let (tx, rx) = tokio::sync::watch::channel(0u64);
        let url = self.url.clone();
        tokio::spawn(async move {
            let mut wakes = 0u64;
            loop {
                tokio::select! {
                    () = tx.closed() => return,
                    e = listen_until_error(&url, &tx, &mut wakes) => {
                        tracing::warn!(error = %e, "trust change listener lost its connection; reconnecting");
                    }
                }
                tokio::select! {
                    () = tx.closed() => return,
                    () = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        });
        Some(rx)
    }
}

/// The CRLs of the certificates active somewhere, in the caller's read transaction: first
/// what identifies each (certificate, organization, issuer, content hash), then the DER of
/// those not in `held`, a few MiB at a time, decoded and parsed off the async workers. Only
/// the serials are kept, so the read holds at most one batch of DER at once.
pub(super) async fn active_crls(
    tx: &mut sqlx::AnyConnection,
    held: &(dyn Fn(&StoredCrl) -> bool + Sync),
    only: Option<&[String]>,
) -> Result<Vec<StoredCrl>> {
    let mut crls = Vec::new();
    let mut wanted: Vec<(usize, i64)> = Vec::new();
    let restrict = only.map_or(String::new(), |ids| {
        format!(
            " AND r.certificate_id IN ({})",
            super::placeholders(1, ids.len())
        )
    });
    let sql = format!(
        "SELECT r.org_id, r.certificate_id, c.sha256,
                COALESCE(r.der_sha256, 'seq:' || CAST(r.seq AS TEXT)) AS content,
                CAST(COALESCE(r.der_bytes, {LEGACY_SIZE}) AS BIGINT) AS bytes
         FROM certificate_crls r JOIN certificates c ON c.id = r.certificate_id
         WHERE {ACTIVE}{restrict}"
    );
    let mut query = sqlx::query(&sql);
    for id in only.unwrap_or(&[]) {
        query = query.bind(id.as_str());
    }
    for r in counted(query.fetch_all(&mut *tx).await?) {
        let crl = StoredCrl {
            org_id: r.try_get("org_id")?,
            certificate_id: r.try_get("certificate_id")?,
            issuer_sha256: r.try_get("sha256")?,
            content: r.try_get("content")?,
            fetched: None,
        };
        if !held(&crl) {
            wanted.push((crls.len(), r.try_get("bytes")?));
        }
        crls.push(crl);
    }
    let mut batch: Vec<usize> = Vec::new();
    let mut batch_bytes = 0i64;
    for (n, &(i, bytes)) in wanted.iter().enumerate() {
        batch.push(i);
        batch_bytes += bytes;
        let last = n + 1 == wanted.len();
        let next_bytes = wanted.get(n + 1).map_or(0, |w| w.1);
        if last || batch.len() >= CRL_FETCH_ROWS || batch_bytes + next_bytes > CRL_FETCH_BYTES {
            fetch_crls(tx, &mut crls, &batch).await?;
            batch.clear();
            batch_bytes = 0;
        }
    }
    Ok(crls)
}

/// Fetches the CRLs `crls[i]` for every `i` in `batch` and parses them on the blocking pool,
/// keeping their serials, not their DER.
async fn fetch_crls(
    tx: &mut sqlx::AnyConnection,
    crls: &mut [StoredCrl],
    batch: &[usize],
) -> Result<()> {
    let sql = format!(
        "SELECT certificate_id, der_base64 FROM certificate_crls WHERE certificate_id IN ({})",
        super::placeholders(1, batch.len())
    );
    let mut q = sqlx::query(&sql);
    for &i in batch {
        q = q.bind(crls[i].certificate_id.as_str());
    }
    let mut texts = HashMap::with_capacity(batch.len());
    for r in counted(q.fetch_all(&mut *tx).await?) {
        texts.insert(
            r.try_get::<String, _>("certificate_id")?,
            r.try_get::<String, _>("der_base64")?,
        );
    }
    let mut parsed = tokio::task::spawn_blocking(move || {
        use base64::Engine as _;
        texts
            .into_iter()
            .map(|(id, text)| {
                let fetched = match base64::engine::general_purpose::STANDARD.decode(text) {
                    Ok(der) => FetchedCrl {
                        bytes: der.len() as u64,
                        serials: crate::crl::revoked_serials(&der).map(Arc::new),
                    },
                    Err(e) => FetchedCrl {
                        bytes: 0,
                        serials: Err(format!("base64: {e}")),
                    },
                };
                (id, fetched)
            })
            .collect::<HashMap<_, _>>()
    })
    .await
    .map_err(|e| StoreError::Internal(Box::new(e)))?;
    for &i in batch {
        let id = &crls[i].certificate_id;
        // Same transaction: the row read a moment ago is there.
        let fetched = parsed
            .remove(id)
            .ok_or_else(|| StoreError::Internal(format!("CRL of {id} vanished").into()))?;
        crls[i].fetched = Some(fetched);
    }
    Ok(())
}

/// LISTENs until the connection fails, bumping `tx` on (re)connection and on every
/// notification; returns the failure.
async fn listen_until_error(
    url: &str,
    tx: &tokio::sync::watch::Sender<u64>,
    wakes: &mut u64,
) -> sqlx::Error {
    let mut listener = match sqlx::postgres::PgListener::connect(url).await {
        Ok(l) => l,
        Err(e) => return e,
    };
    if let Err(e) = listener.listen("certgate_trust").await {
        return e;
    }
    // (Re)connected: changes may have been missed, so wake once.
    loop {
        *wakes += 1;
        tx.send_replace(*wakes);
        if let Err(e) = listener.recv().await {
            return e;
        }
    }
}

/// On PostgreSQL, what opens a trust read: REPEATABLE READ (each statement would otherwise
/// see its own state), read only, in the `BEGIN` itself (one round trip, not two).
const BEGIN_READ_PG: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";

/// A read transaction that sees one state throughout (REPEATABLE READ on PostgreSQL, where
/// each statement would otherwise see its own).
pub(super) async fn begin_read(
    pool: &sqlx::AnyPool,
    backend: Backend,
) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
    Ok(match backend {
        Backend::Postgres => pool.begin_with(BEGIN_READ_PG).await?,
        Backend::Sqlite => pool.begin().await?,
    })
}

/// [`begin_read`] on a connection the caller holds.
pub(super) async fn begin_read_on(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
) -> Result<sqlx::Transaction<'_, sqlx::Any>> {
    use sqlx::Connection as _;
    Ok(match backend {
        Backend::Postgres => conn.begin_with(BEGIN_READ_PG).await?,
        Backend::Sqlite => conn.begin().await?,
    })
}

/// [`Store::trust_snapshot`]'s reads, in one read transaction.
async fn snapshot(
    pool: &sqlx::AnyPool,
    backend: Backend,
    held: &HashSet<CrlVersion>,
) -> Result<TrustSnapshot> {
    let mut tx = begin_read(pool, backend).await?;
    let held = |c: &StoredCrl| held.contains(&(c.certificate_id.clone(), c.content.clone()));
    let snapshot = snapshot_in(&mut tx, &held).await?;
    tx.commit().await?;
    Ok(snapshot)
}

/// The full trust state, in the caller's read transaction.
pub(super) async fn snapshot_in(
    tx: &mut sqlx::AnyConnection,
    held: &(dyn Fn(&StoredCrl) -> bool + Sync),
) -> Result<TrustSnapshot> {
    let generation: i64 = counted_one(
        sqlx::query("SELECT generation FROM trust_state WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?,
    )
    .try_get("generation")?;
    let rows = counted(
        sqlx::query(&format!(
            "SELECT {ANCHOR_COLUMNS} FROM certificates c WHERE {ACTIVE}"
        ))
        .fetch_all(&mut *tx)
        .await?,
    );
    let mut anchors = Vec::with_capacity(rows.len());
    let mut index = HashMap::with_capacity(rows.len());
    for row in &rows {
        let anchor = anchor_from_row(row)?;
        index.insert(anchor.certificate_id.clone(), anchors.len());
        anchors.push(anchor);
    }
    for row in counted(
        sqlx::query("SELECT certificate_id, project_id FROM project_activations")
            .fetch_all(&mut *tx)
            .await?,
    ) {
        if let Some(&i) = index.get(&row.try_get::<String, _>("certificate_id")?) {
            anchors[i].projects.push(row.try_get("project_id")?);
        }
    }
    let organizations = counted(
        sqlx::query("SELECT id FROM organizations")
            .fetch_all(&mut *tx)
            .await?,
    )
    .iter()
    .map(|r| r.try_get("id"))
    .collect::<Result<_, _>>()?;
    let projects = counted(
        sqlx::query("SELECT org_id, id FROM projects WHERE archived_at IS NULL")
            .fetch_all(&mut *tx)
            .await?,
    )
    .iter()
    .map(|r| Ok((r.try_get("org_id")?, r.try_get("id")?)))
    .collect::<Result<_, sqlx::Error>>()?;
    let revoked = counted(
        sqlx::query("SELECT org_id, sha256 FROM revoked_certificates WHERE deleted_at IS NULL")
            .fetch_all(&mut *tx)
            .await?,
    )
    .iter()
    .map(|r| Ok((r.try_get("org_id")?, r.try_get("sha256")?)))
    .collect::<Result<_, sqlx::Error>>()?;
    let crls = active_crls(&mut *tx, held, None).await?;
    Ok(TrustSnapshot {
        generation,
        anchors,
        organizations,
        projects,
        revoked,
        crls,
    })
}

/// The columns [`anchor_from_row`] reads, of `certificates c`.
pub(super) const ANCHOR_COLUMNS: &str =
    "c.id, c.org_id, c.active_org, c.content, c.subject_der, c.ski, c.valid_at, c.expires_at, c.client_filter, c.ocsp";

/// An active certificate's row ([`ANCHOR_COLUMNS`]) as an anchor, its projects not yet filled.
pub(super) fn anchor_from_row(row: &AnyRow) -> Result<TrustAnchor> {
    let id: String = row.try_get("id")?;
    let hex_column = |name: &str| -> Result<Vec<u8>> {
        hex::decode(row.try_get::<String, _>(name)?).map_err(|e| {
            StoreError::Internal(format!("certificate {id}: column {name}: {e}").into())
        })
    };
    Ok(TrustAnchor {
        subject_der: hex_column("subject_der")?,
        ski: hex_column("ski")?,
        org_id: row.try_get("org_id")?,
        org_wide: row.try_get::<i64, _>("active_org")? != 0,
        projects: Vec::new(),
        pem: row.try_get("content")?,
        valid_at: row.try_get("valid_at")?,
        expires_at: row.try_get("expires_at")?,
        client_filter: row.try_get("client_filter")?,
        ocsp: super::certificates::ocsp_from_column(row.try_get("ocsp")?),
        certificate_id: id,
    })
}
