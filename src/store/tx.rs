//! Writing transactions: the retry loop, the organization lock every write starts with, and
//! the trust generation every change of who may connect bumps.

use sqlx::{Executor, Row};

use super::{Backend, Result, StoreError};
use crate::domain::OrgId;

/// How often a transaction that hit a serialization failure, deadlock or busy database is
/// run again before the request is answered with 503.
pub(super) const MAX_ATTEMPTS: u32 = 8;

/// Runs `$body` in a transaction on `$store`, retrying transient conflicts. Inside the body,
/// `$tx` is the transaction's connection (`&mut AnyConnection`); `?` aborts (undoes the
/// body's writes) with that error. On SQLite the transaction may be shared with the writers
/// queued beside it ([`super::group_commit`]): the body's writes are still all or nothing,
/// and the macro returns only once they are committed. A macro rather than a function taking
/// a closure: the body borrows the transaction across awaits, which closures returning
/// futures cannot express without boxing every call site.
macro_rules! in_transaction {
    ($store:expr, |$tx:ident| $body:block) => {{
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let outcome: $crate::store::Result<_> = async {
                let mut writer = $store.begin_write().await?;
                let body_result: $crate::store::Result<_> = async {
                    #[allow(unused_mut)]
                    let mut $tx = writer.conn();
                    $body
                }
                .await;
                match body_result {
                    Ok(value) => {
                        writer.commit().await?;
                        Ok(value)
                    }
                    Err(e) => {
                        writer.abort().await;
                        Err(e)
                    }
                }
            }
            .await;
            match outcome {
                Err($crate::store::StoreError::Retryable(why))
                    if attempt < $crate::store::tx::MAX_ATTEMPTS =>
                {
                    tracing::debug!(attempt, error = %why, "retrying transaction");
                    tokio::time::sleep(std::time::Duration::from_millis(5 * u64::from(attempt)))
                        .await;
                }
                Err($crate::store::StoreError::Retryable(why)) => {
                    break Err($crate::store::StoreError::Unavailable(why));
                }
                other => break other,
            }
        }
    }};
}
pub(super) use in_transaction;

/// One writing transaction: its own on PostgreSQL, a member of a group commit on SQLite.
pub(super) enum Writer {
    /// With this process's permit to write (PostgreSQL), held until the transaction ends.
    Alone(
        sqlx::Transaction<'static, sqlx::Any>,
        Option<tokio::sync::OwnedSemaphorePermit>,
    ),
    Grouped(super::group_commit::Member),
}

impl Writer {
    pub(super) fn conn(&mut self) -> &mut sqlx::AnyConnection {
        match self {
            Writer::Alone(tx, _) => tx,
            Writer::Grouped(member) => member.conn(),
        }
    }

    /// Returns once the body's writes are durable.
    pub(super) async fn commit(self) -> Result<()> {
        match self {
            Writer::Alone(tx, _permit) => Ok(tx.commit().await?),
            Writer::Grouped(member) => member.finish().await,
        }
    }

    /// Undoes the body's writes.
    pub(super) async fn abort(self) {
        match self {
            Writer::Alone(tx, _permit) => {
                let _ = tx.rollback().await;
            }
            Writer::Grouped(member) => member.abort().await,
        }
    }
}

/// Locks the organization's row for the rest of the transaction and returns the next value of
/// its sequence (used to order objects created in the same second, and to validate caches).
pub(super) async fn lock_organization(tx: &mut sqlx::AnyConnection, org: &OrgId) -> Result<i64> {
    let row = sqlx::query("UPDATE organizations SET seq = seq + 1 WHERE id = $1 RETURNING seq")
        .bind(org.as_str())
        .fetch_optional(&mut *tx)
        .await?;
    match row {
        Some(row) => Ok(row.try_get("seq")?),
        None => Err(StoreError::Internal(
            format!("organization {org} vanished").into(),
        )),
    }
}

/// Moves the trust generation gateways watch; on PostgreSQL also notifies them (delivered on
/// commit). Always the last lock a transaction takes, after the organization's row.
pub(super) async fn bump_trust_generation(
    tx: &mut sqlx::AnyConnection,
    backend: Backend,
) -> Result<()> {
    let generation: i64 = sqlx::query(
        "UPDATE trust_state SET generation = generation + 1 WHERE id = 1 RETURNING generation",
    )
    .fetch_one(&mut *tx)
    .await?
    .try_get("generation")?;
    if backend == Backend::Postgres {
        tx.execute(format!("NOTIFY certgate_trust, '{generation}'").as_str())
            .await?;
    }
    Ok(())
}
