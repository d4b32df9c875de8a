//! What gateways read: the trust generation, a consistent snapshot of everything that decides
//! who may connect, and (PostgreSQL) a wake-up when it changes.

use std::collections::HashMap;
use std::time::Duration;

use sqlx::{Executor, Row};

use super::{Backend, Result, Store, StoreError};
use crate::trust::{StoredCrl, TrustAnchor, TrustSnapshot};

impl Store {
    /// The generation gateways watch; it moves with every change of who may connect.
    pub async fn trust_generation(&self) -> Result<i64> {
        let row = self
            .read(|pool| {
                sqlx::query("SELECT generation FROM trust_state WHERE id = 1").fetch_one(pool)
            })
            .await?;
        Ok(row.try_get("generation")?)
    }

    /// The active anchors of every organization, with the generation they belong to, all read
    /// from one snapshot of the database (a read transaction; REPEATABLE READ on PostgreSQL,
    /// where each statement would otherwise see its own).
    pub async fn trust_snapshot(&self) -> Result<TrustSnapshot> {
        self.read(|pool| snapshot(pool, self.backend)).await
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

/// [`Store::trust_snapshot`]'s reads, in one read transaction.
async fn snapshot(pool: &sqlx::AnyPool, backend: Backend) -> Result<TrustSnapshot> {
    let mut tx = pool.begin().await?;
    if backend == Backend::Postgres {
        tx.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await?;
    }
    let generation: i64 = sqlx::query("SELECT generation FROM trust_state WHERE id = 1")
        .fetch_one(&mut *tx)
        .await?
        .try_get("generation")?;
    let rows = sqlx::query(
    "SELECT c.id, c.org_id, c.active_org, c.content, c.subject_der, c.ski, c.valid_at, c.expires_at, c.client_filter
     FROM certificates c
     WHERE c.deleted_at IS NULL
       AND (c.active_org <> 0 OR c.id IN (SELECT certificate_id FROM project_activations))",
)
.fetch_all(&mut *tx)
.await?;
    let mut anchors = Vec::with_capacity(rows.len());
    let mut index = HashMap::with_capacity(rows.len());
    for row in &rows {
        let id: String = row.try_get("id")?;
        let hex_column = |name: &str| -> Result<Vec<u8>> {
            hex::decode(row.try_get::<String, _>(name)?).map_err(|e| {
                StoreError::Internal(format!("certificate {id}: column {name}: {e}").into())
            })
        };
        let anchor = TrustAnchor {
            subject_der: hex_column("subject_der")?,
            ski: hex_column("ski")?,
            certificate_id: id.clone(),
            org_id: row.try_get("org_id")?,
            org_wide: row.try_get::<i64, _>("active_org")? != 0,
            projects: Vec::new(),
            pem: row.try_get("content")?,
            valid_at: row.try_get("valid_at")?,
            expires_at: row.try_get("expires_at")?,
            client_filter: row.try_get("client_filter")?,
        };
        index.insert(id, anchors.len());
        anchors.push(anchor);
    }
    for row in sqlx::query("SELECT certificate_id, project_id FROM project_activations")
        .fetch_all(&mut *tx)
        .await?
    {
        if let Some(&i) = index.get(&row.try_get::<String, _>("certificate_id")?) {
            anchors[i].projects.push(row.try_get("project_id")?);
        }
    }
    let organizations = sqlx::query("SELECT id FROM organizations")
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| r.try_get("id"))
        .collect::<Result<_, _>>()?;
    let projects = sqlx::query("SELECT org_id, id FROM projects WHERE archived_at IS NULL")
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| Ok((r.try_get("org_id")?, r.try_get("id")?)))
        .collect::<Result<_, sqlx::Error>>()?;
    let revoked =
        sqlx::query("SELECT org_id, sha256 FROM revoked_certificates WHERE deleted_at IS NULL")
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| Ok((r.try_get("org_id")?, r.try_get("sha256")?)))
            .collect::<Result<_, sqlx::Error>>()?;
    let mut crls = Vec::new();
    for r in sqlx::query(
        "SELECT r.org_id, r.certificate_id, r.seq, r.der_base64, c.sha256
     FROM certificate_crls r JOIN certificates c ON c.id = r.certificate_id
     WHERE c.deleted_at IS NULL",
    )
    .fetch_all(&mut *tx)
    .await?
    {
        use base64::Engine as _;
        let certificate_id: String = r.try_get("certificate_id")?;
        let der = base64::engine::general_purpose::STANDARD
            .decode(r.try_get::<String, _>("der_base64")?)
            .map_err(|e| StoreError::Internal(format!("CRL of {certificate_id}: {e}").into()))?;
        crls.push(StoredCrl {
            org_id: r.try_get("org_id")?,
            issuer_sha256: r.try_get("sha256")?,
            version: r.try_get("seq")?,
            certificate_id,
            der,
        });
    }
    tx.commit().await?;
    Ok(TrustSnapshot {
        generation,
        anchors,
        organizations,
        projects,
        revoked,
        crls,
    })
}
