//! One deadline per store operation (decisions.md D44): taken when the operation starts, it bounds
//! every wait the operation makes for the database together: this process's turn to write
//! (SQLite's writer queue, PostgreSQL's [`super::PG_WRITERS`]), a pooled connection, each
//! statement, the commit, and the retries of a transient conflict. When it passes, the
//! operation is dropped wherever it was and answers [`StoreError::Unavailable`] (503).
//!
//! Dropping is the same cancellation a client hanging up causes, which every path already
//! survives: a group-commit member is undone or committed with its batch, a PostgreSQL
//! transaction is rolled back when its connection returns to the pool. It is also the only
//! bound that holds when the database is black-holed (packets dropped, nothing refused):
//! PostgreSQL's own `statement_timeout` is enforced by the server, whose answer never comes.
//! A write cut during its commit may still have committed, as with any timeout at commit.
//!
//! The pool is reached only through [`Pool::within`] and [`Pool::begin`], which both take the
//! deadline, so a read cannot forget it; [`Pool::unbounded`] is for start-up and shutdown.

use std::future::Future;
use std::time::Duration;

use sqlx::AnyPool;
use tokio::time::Instant;

use super::{Result, StoreError};

/// When a store operation gives up waiting for the database.
#[derive(Debug, Clone, Copy)]
pub(super) struct Deadline {
    at: Instant,
    /// `--db-timeout`, for the message.
    timeout: Duration,
}

tokio::task_local! {
    /// The deadline of the request being served, when the caller set one
    /// ([`one_deadline`]): every operation the request makes ends by then.
    static REQUEST_DEADLINE: Instant;
}

/// Runs `work` (one request) so that all of its store operations together end within
/// `timeout` of now: each operation's own deadline is cut to the request's (decisions.md D44:
/// a request's waits for the database share one deadline, whether it makes one operation or
/// several, such as the key check and then its write).
pub(super) async fn one_deadline<F: Future>(timeout: Duration, work: F) -> F::Output {
    REQUEST_DEADLINE.scope(Instant::now() + timeout, work).await
}

impl Deadline {
    /// `timeout` from now, or the request's deadline when that comes first.
    pub(super) fn after(timeout: Duration) -> Deadline {
        let own = Instant::now() + timeout;
        let at = REQUEST_DEADLINE
            .try_with(|request| own.min(*request))
            .unwrap_or(own);
        Deadline { at, timeout }
    }

    /// The same instant on the standard clock, for SQLite's writer thread.
    pub(super) fn instant(&self) -> std::time::Instant {
        self.at.into_std()
    }

    /// Runs `work` until it ends or the deadline passes, whichever is first; in the second
    /// case `work` is dropped where it was.
    pub(super) async fn bound<T>(&self, work: impl Future<Output = Result<T>>) -> Result<T> {
        match tokio::time::timeout_at(self.at, work).await {
            Ok(result) => result,
            Err(_) => Err(self.passed()),
        }
    }

    /// The error of an operation that ran out of time.
    pub(super) fn passed(&self) -> StoreError {
        StoreError::unavailable(format!(
            "the database did not answer within {:?} (--db-timeout), waits for this \
             process's turn to write included",
            self.timeout
        ))
    }
}

/// The connection pool, reached only within a deadline.
#[derive(Clone)]
pub(super) struct Pool(AnyPool);

impl Pool {
    pub(super) fn new(pool: AnyPool) -> Pool {
        Pool(pool)
    }

    /// Runs `work` on the pool (connections it acquires, statements it runs), cut at
    /// `deadline`.
    pub(super) async fn within<'p, T, E, F>(
        &'p self,
        deadline: &Deadline,
        work: impl FnOnce(&'p AnyPool) -> F,
    ) -> Result<T>
    where
        F: Future<Output = std::result::Result<T, E>> + 'p,
        StoreError: From<E>,
    {
        let work = work(&self.0);
        deadline
            .bound(async move { work.await.map_err(StoreError::from) })
            .await
    }

    /// A transaction, begun before `deadline`; the caller bounds what it runs in it by the
    /// same deadline (see `in_transaction!`).
    pub(super) async fn begin(
        &self,
        deadline: &Deadline,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        deadline.bound(async { Ok(self.0.begin().await?) }).await
    }

    /// The pool without a deadline: for start-up (migrations, the migration check) and
    /// shutdown only, which `--db-connect-timeout` and the shutdown grace bound instead.
    pub(super) fn unbounded(&self) -> &AnyPool {
        &self.0
    }

    pub(super) fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
}
