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
///
/// The whole write has one deadline ([`super::deadline`]), taken here: the wait for this
/// process's turn to write, the connection, the statements, the commit and every retry
/// together end by it, and past it the write answers unavailable (503).
///
/// `in_transaction!(store, opening = statements, |tx, rows| body)` runs `statements` (a
/// `Vec<Statement>`, evaluated on every attempt) first and hands the body their rows: on
/// SQLite they travel in the same round trip as the writer's savepoint.
macro_rules! in_transaction {
    ($store:expr, |$tx:ident| $body:block) => {
        in_transaction!($store, opening = Vec::new(), |$tx, _opened| $body)
    };
    ($store:expr, opening = $opening:expr, |$tx:ident, $opened:ident| $body:block) => {{
        let deadline = $store.deadline();
        deadline
            .bound(async {
                let mut attempt = 0u32;
                loop {
                    attempt += 1;
                    let outcome: $crate::store::Result<_> = async {
                        let (mut writer, $opened) = $store.begin_write($opening, &deadline).await?;
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
                    match $crate::store::tx::after_failure(attempt, outcome) {
                        std::ops::ControlFlow::Break(result) => break result,
                        std::ops::ControlFlow::Continue(delay) => {
                            tokio::time::sleep(delay).await;
                        }
                    }
                }
            })
            .await
    }};
}
pub(super) use in_transaction;

/// After attempt number `attempt` of a writing transaction: its result (`Break`), or how long
/// to wait before running it again (`Continue`). A transient conflict is retried
/// [`MAX_ATTEMPTS`] times at most, then answered as unavailable (503).
pub(super) fn after_failure<T>(
    attempt: u32,
    outcome: Result<T>,
) -> std::ops::ControlFlow<Result<T>, std::time::Duration> {
    use std::ops::ControlFlow::{Break, Continue};
    match outcome {
        Err(StoreError::Retryable(why)) if attempt < MAX_ATTEMPTS => {
            tracing::debug!(attempt, error = %why, "retrying transaction");
            Continue(std::time::Duration::from_millis(5 * u64::from(attempt)))
        }
        Err(StoreError::Retryable(why)) => Break(Err(StoreError::Unavailable(why))),
        other => Break(other),
    }
}

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
    let rows = run_together(tx, vec![lock_statement(org)]).await?;
    locked_seq(rows.first(), org)
}

/// [`lock_organization`]'s statement, for a caller that runs it with others: its one row
/// (read by [`locked_seq`]) comes first.
pub(super) fn lock_statement(org: &OrgId) -> Statement {
    Statement::new("UPDATE organizations SET seq = seq + 1 WHERE id = $1 RETURNING seq")
        .bind(org.as_str())
}

/// The sequence value in the row [`lock_statement`] returned.
pub(super) fn locked_seq(row: Option<&impl Columns>, org: &OrgId) -> Result<i64> {
    match row {
        Some(row) => row.field("seq"),
        None => Err(StoreError::Internal(
            format!("organization {org} vanished").into(),
        )),
    }
}

/// A row's columns by name, read from sqlx's rows or from the SQLite writer thread's
/// ([`super::sqlite_writer`]), so that what a write decides from them is written once.
pub(super) trait Columns {
    fn field<T: Decoded>(&self, column: &str) -> Result<T>;
}

/// A value both drivers decode.
pub(super) trait Decoded:
    for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any> + rusqlite::types::FromSql
{
}

impl<T> Decoded for T where
    T: for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any> + rusqlite::types::FromSql
{
}

impl Columns for sqlx::any::AnyRow {
    fn field<T: Decoded>(&self, column: &str) -> Result<T> {
        Ok(self.try_get(column)?)
    }
}

/// How long a trust change record is kept by default: longer than the slowest reasonable
/// reader is away (a gateway that falls further behind reads the full state once).
pub(super) const DEFAULT_CHANGE_RETENTION_SECS: i64 = 3600;

/// What a trust-changing write touched (spec §13.3, decisions.md D50): recorded under the
/// generation it moves to, in its transaction, so that watchers re-read only these rows.
#[derive(Debug, Clone)]
pub(super) struct TrustChange {
    org: String,
    kind: &'static str,
    target: String,
}

impl TrustChange {
    /// The organization's existence and all its unarchived projects.
    pub(super) fn organization(org: &OrgId) -> Self {
        Self::new(org, "organization", org.as_str())
    }
    /// One project: whether it exists unarchived.
    pub(super) fn project(org: &OrgId, project: &str) -> Self {
        Self::new(org, "project", project)
    }
    /// One certificate object: its row, its activations and its CRL.
    pub(super) fn certificate(org: &OrgId, id: &str) -> Self {
        Self::new(org, "certificate", id)
    }
    /// One certificate object's CRL.
    pub(super) fn crl(org: &OrgId, certificate: &str) -> Self {
        Self::new(org, "crl", certificate)
    }
    /// One deny-list fingerprint (lowercase hex SHA-256).
    pub(super) fn deny(org: &OrgId, sha256: &str) -> Self {
        Self::new(org, "deny", sha256)
    }

    fn new(org: &OrgId, kind: &'static str, target: &str) -> Self {
        TrustChange {
            org: org.as_str().to_owned(),
            kind,
            target: target.to_owned(),
        }
    }
}

/// Moves the trust generation gateways watch, records `changes` under the new generation and
/// prunes records past the store's retention; on PostgreSQL also notifies the gateways
/// (delivered on commit). Always the last lock a transaction takes, after the organization's
/// row.
pub(super) async fn bump_trust_generation(
    tx: &mut sqlx::AnyConnection,
    store: &super::Store,
    changes: &[TrustChange],
) -> Result<()> {
    let generation: i64 = sqlx::query(
        "UPDATE trust_state SET generation = generation + 1 WHERE id = 1 RETURNING generation",
    )
    .fetch_one(&mut *tx)
    .await?
    .try_get("generation")?;
    let now = store.now();
    let mut statements = Vec::with_capacity(2);
    if let Some(record) = record_changes(Some(generation), now, changes) {
        statements.push(record);
    }
    statements.push(prune_changes(store, now));
    run_together(tx, statements).await?;
    if store.backend == Backend::Postgres {
        tx.execute(format!("NOTIFY certgate_trust, '{generation}'").as_str())
            .await?;
    }
    Ok(())
}

/// The INSERT of `changes` under `generation`; `None` for the generation the statement just
/// before it moved to, if it moved (SQLite's [`SQLITE_BUMP_IF_CHANGED`]: then nothing is
/// recorded when nothing moved).
pub(super) fn record_changes(
    generation: Option<i64>,
    now: i64,
    changes: &[TrustChange],
) -> Option<Statement> {
    if changes.is_empty() {
        return None;
    }
    // Duplicates (one certificate named twice) would break the primary key.
    let mut seen = std::collections::HashSet::new();
    let changes: Vec<&TrustChange> = changes
        .iter()
        .filter(|c| seen.insert((c.kind, c.target.as_str())))
        .collect();
    let rows = (0..changes.len())
        .map(|i| format!("(${}, ${}, ${})", 3 + 3 * i, 4 + 3 * i, 5 + 3 * i))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = match generation {
        Some(_) => format!(
            "INSERT INTO trust_changes (generation, org_id, kind, target, created_at)
             SELECT $1, v.column1, v.column2, v.column3, $2 FROM (VALUES {rows}) AS v"
        ),
        None => format!(
            "INSERT INTO trust_changes (generation, org_id, kind, target, created_at)
             SELECT s.generation, v.column1, v.column2, v.column3, $2
             FROM trust_state s, (VALUES {rows}) AS v WHERE s.id = 1 AND changes() > 0 AND $1 = 0"
        ),
    };
    let mut statement = Statement::new(sql).bind(generation.unwrap_or(0)).bind(now);
    for c in changes {
        statement = statement
            .bind(c.org.as_str())
            .bind(c.kind)
            .bind(c.target.as_str());
    }
    Some(statement)
}

/// Deletes the change records past the store's retention.
pub(super) fn prune_changes(store: &super::Store, now: i64) -> Statement {
    let keep = store
        .change_retention
        .load(std::sync::atomic::Ordering::Relaxed);
    Statement::new("DELETE FROM trust_changes WHERE created_at < $1").bind(now - keep)
}

/// A statement and its parameters, not yet run: see [`run_together`].
#[derive(Clone)]
pub(super) struct Statement {
    sql: String,
    params: Vec<Param>,
}

/// A parameter of a [`Statement`].
#[derive(Clone)]
pub(super) enum Param {
    Text(String),
    Int(i64),
    MaybeText(Option<String>),
}

impl From<&str> for Param {
    fn from(v: &str) -> Self {
        Param::Text(v.to_owned())
    }
}

impl From<String> for Param {
    fn from(v: String) -> Self {
        Param::Text(v)
    }
}

impl From<i64> for Param {
    fn from(v: i64) -> Self {
        Param::Int(v)
    }
}

impl From<Option<String>> for Param {
    fn from(v: Option<String>) -> Self {
        Param::MaybeText(v)
    }
}

impl Statement {
    /// `sql` numbers its parameters `$1`, `$2`, … in the order they are bound.
    pub(super) fn new(sql: impl Into<String>) -> Self {
        Statement {
            sql: sql.into(),
            params: Vec::new(),
        }
    }

    pub(super) fn bind(mut self, param: impl Into<Param>) -> Self {
        self.params.push(param.into());
        self
    }

    /// The SQL and its parameters, `$1` first.
    pub(super) fn parts(&self) -> (&str, &[Param]) {
        (&self.sql, &self.params)
    }
}

/// Runs `statements` in order inside the transaction and returns the rows they return, in
/// order. On SQLite in one call to the connection's worker thread: every statement sent is a
/// round trip to that thread (two thread wake-ups), which dominated the profile of the
/// writes, where the statements themselves take microseconds. PostgreSQL's extended protocol
/// takes one statement per message, so there they run one after another.
pub(super) async fn run_together(
    tx: &mut sqlx::AnyConnection,
    statements: Vec<Statement>,
) -> Result<Vec<sqlx::any::AnyRow>> {
    match backend_of(tx) {
        Backend::Sqlite => {
            // One script: each statement's `$n` renumbered after the parameters before it,
            // all bound in one list (SQLite binds `$n` by number in every statement).
            let mut sql = String::new();
            let mut offset = 0;
            for statement in &statements {
                renumber(&statement.sql, offset, &mut sql);
                sql.push_str(";\n");
                offset += statement.params.len();
            }
            let params = statements.into_iter().flat_map(|s| s.params);
            Ok(bind_all(sqlx::query(&sql), params).fetch_all(tx).await?)
        }
        Backend::Postgres => {
            let mut rows = Vec::new();
            for statement in statements {
                let query = bind_all(sqlx::query(&statement.sql), statement.params);
                rows.extend(query.fetch_all(&mut *tx).await?);
            }
            Ok(rows)
        }
    }
}

/// The backend a connection talks to.
pub(super) fn backend_of(conn: &sqlx::AnyConnection) -> Backend {
    if conn.backend_name() == "PostgreSQL" {
        Backend::Postgres
    } else {
        Backend::Sqlite
    }
}

fn bind_all<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    params: impl IntoIterator<Item = Param>,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    for param in params {
        query = match param {
            Param::Text(v) => query.bind(v),
            Param::Int(v) => query.bind(v),
            Param::MaybeText(v) => query.bind(v),
        };
    }
    query
}

/// Appends `sql` to `out` with every `$n` written as `$(n + offset)`. Our statements have no
/// `$` in literals or identifiers.
fn renumber(sql: &str, offset: usize, out: &mut String) {
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..=at]);
        rest = &rest[at + 1..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        match rest[..digits].parse::<usize>() {
            Ok(n) => out.push_str(&(n + offset).to_string()),
            Err(_) => out.push_str(&rest[..digits]),
        }
        rest = &rest[digits..];
    }
    out.push_str(rest);
}

/// On SQLite, the statement that moves the trust generation if the statement just before it
/// in a [`run_together`] script changed a row (`changes()` counts the rows the last completed
/// INSERT, UPDATE or DELETE changed). PostgreSQL calls [`bump_trust_generation`] instead,
/// which also notifies the gateways.
pub(super) const SQLITE_BUMP_IF_CHANGED: &str =
    "UPDATE trust_state SET generation = generation + 1 WHERE id = 1 AND changes() > 0";

#[cfg(test)]
mod tests {
    use super::renumber;

    #[test]
    fn renumbers_every_placeholder_after_the_offset() {
        let mut out = String::new();
        renumber(
            "UPDATE t SET a = $2 WHERE id = $1 AND b IN ($10, $3)",
            4,
            &mut out,
        );
        assert_eq!(out, "UPDATE t SET a = $6 WHERE id = $5 AND b IN ($14, $7)");
        let mut out = String::new();
        renumber("SELECT 1", 7, &mut out);
        assert_eq!(out, "SELECT 1");
    }
}
