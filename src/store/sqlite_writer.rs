//! SQLite's writer thread: writes decided from rows read in their own transaction, run as
//! plain Rust on one thread holding its own connection, queued together under one commit.
//!
//! Why a thread: sqlx's SQLite driver runs each connection on a worker thread and sends every
//! statement, every row and every statement's end between it and the async caller as a
//! message of its own. A toggle of 10 ids is a few dozen such messages, each a thread
//! wake-up, and under load those wake-ups, not SQLite, set the rate (measured:
//! `docs/benchmarks-api.md`, "Where the time goes"). Here a whole batch runs without leaving
//! the thread; each writer is woken once, with its answer.
//!
//! The same guarantees as [`super::group_commit`], which the other writes use: each job runs in
//! a savepoint of the batch's transaction (all or nothing), is answered only after the commit
//! (durable), and a failed batch fails every job in it with its error (a transient one is run
//! again by the caller, as `in_transaction!` does). The two take turns through the same writer
//! queue: the thread takes it for each batch, first committing a group-commit batch left open,
//! so SQLite's one write lock is never fought over inside the process.
//!
//! A job whose caller has gone (a client that hung up, or a write past its deadline) or
//! whose deadline passed before the thread reached it is skipped; once started it runs to its
//! commit, as a group-commit member past its body does. The thread waits for another
//! process's write lock (SQLite's busy handler, at `BEGIN IMMEDIATE`) only until the latest
//! deadline of the jobs it took: past it, none of them could be answered.

use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::types::Value;
use tokio::sync::oneshot;

use super::deadline::Deadline;
use super::group_commit::{self, Batch, Outcome};
use super::tx::{Columns, Decoded, Param, Statement};
use super::{Result, StoreError};

/// The most jobs one commit takes: a bound on how long the writer queue is held at once.
const MAX_BATCH: usize = 64;

/// A write sent to the thread.
trait Job: Send {
    /// Runs the body in the batch's transaction (inside its savepoint).
    fn run(self: Box<Self>, tx: &mut WriteTx<'_>) -> Step;
    /// The batch failed before reaching this job: answers with why.
    fn fail(self: Box<Self>, outcome: &Outcome);
    /// When its caller stops waiting.
    fn deadline(&self) -> Instant;
}

/// What running a job did.
enum Step {
    /// The caller is gone, or waited past its deadline: nothing ran.
    Skipped,
    /// The body failed and was answered: its savepoint is undone.
    Refused,
    /// The body's writes are in the batch; answer with the batch's outcome.
    Wrote(Reply),
}

/// Answers a job whose writes are in the batch, with the batch's outcome.
type Reply = Box<dyn FnOnce(&Outcome) + Send>;

/// A caller's write: its body, and where its answer goes.
struct Request<T, F> {
    body: Arc<F>,
    reply: oneshot::Sender<Result<T>>,
    /// The write's deadline: when its caller stops waiting.
    deadline: Deadline,
}

impl<T, F> Job for Request<T, F>
where
    T: Send + 'static,
    F: Fn(&mut WriteTx<'_>) -> Result<T> + Send + Sync + 'static,
{
    fn run(self: Box<Self>, tx: &mut WriteTx<'_>) -> Step {
        let Request {
            body,
            reply,
            deadline,
        } = *self;
        if reply.is_closed() {
            return Step::Skipped;
        }
        if Instant::now() >= deadline.instant() {
            let _ = reply.send(Err(deadline.passed()));
            return Step::Skipped;
        }
        match body(tx) {
            Ok(value) => Step::Wrote(Box::new(move |outcome: &Outcome| {
                let _ = reply.send(outcome.clone().into_result().map(|()| value));
            })),
            Err(e) => {
                let _ = reply.send(Err(e));
                Step::Refused
            }
        }
    }

    fn fail(self: Box<Self>, outcome: &Outcome) {
        let why = match outcome.clone().into_result() {
            Err(e) => e,
            Ok(()) => StoreError::Internal("the batch ended before reaching this write".into()),
        };
        let _ = self.reply.send(Err(why));
    }

    fn deadline(&self) -> Instant {
        self.deadline.instant()
    }
}

/// The handle the store keeps: sends jobs to the thread.
pub(super) struct SqliteWriter {
    jobs: Mutex<Option<mpsc::Sender<Box<dyn Job>>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl SqliteWriter {
    /// Opens the thread's connection to `path` with the pool's settings. `None` (the caller
    /// then writes through the group commit alone) if it cannot be opened.
    pub(super) fn start(
        path: &str,
        busy_timeout: Duration,
        queue: Arc<tokio::sync::Mutex<Batch>>,
        runtime: tokio::runtime::Handle,
    ) -> Option<SqliteWriter> {
        let conn = match open(path, busy_timeout) {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(error = %e, "no SQLite writer thread; writes use the group commit");
                return None;
            }
        };
        let (sender, receiver) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("certgate-sqlite-writer".into())
            .spawn(move || run(&conn, &receiver, &queue, &runtime))
            .ok()?;
        Some(SqliteWriter {
            jobs: Mutex::new(Some(sender)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Runs `body` on the thread in a transaction (shared with the jobs queued beside it, its
    /// writes still all or nothing) and returns its value once committed. Transient failures
    /// run it again, as [`super::tx::in_transaction`] does. The whole write, its retries
    /// included, has one deadline, `timeout` from now ([`super::deadline`]).
    pub(super) async fn write<T, F>(&self, timeout: Duration, body: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&mut WriteTx<'_>) -> Result<T> + Send + Sync + 'static,
    {
        let deadline = Deadline::after(timeout);
        let body = Arc::new(body);
        deadline
            .bound(async {
                let mut attempt = 0u32;
                loop {
                    attempt += 1;
                    let outcome = self.write_once(deadline, body.clone()).await;
                    match super::tx::after_failure(attempt, outcome) {
                        std::ops::ControlFlow::Break(result) => return result,
                        std::ops::ControlFlow::Continue(delay) => tokio::time::sleep(delay).await,
                    }
                }
            })
            .await
    }

    async fn write_once<T, F>(&self, deadline: Deadline, body: Arc<F>) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&mut WriteTx<'_>) -> Result<T> + Send + Sync + 'static,
    {
        let (reply, answer) = oneshot::channel::<Result<T>>();
        let job: Box<dyn Job> = Box::new(Request {
            body,
            reply,
            deadline,
        });
        let sent = match self.jobs.lock() {
            Ok(jobs) => jobs.as_ref().is_some_and(|jobs| jobs.send(job).is_ok()),
            Err(_) => false,
        };
        if !sent {
            return Err(StoreError::unavailable("the store is closing"));
        }
        answer.await.unwrap_or_else(|_| {
            Err(StoreError::Internal(
                "the SQLite writer thread dropped a write".into(),
            ))
        })
    }

    /// Stops the thread once it has answered every job sent so far, and closes its connection.
    pub(super) async fn close(&self) {
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.take();
        }
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

fn open(path: &str, busy_timeout: Duration) -> rusqlite::Result<rusqlite::Connection> {
    let flags =
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = rusqlite::Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(busy_timeout)?;
    // As the pool's connections; the file is already in WAL mode.
    conn.execute_batch(super::SQLITE_PRAGMAS)?;
    Ok(conn)
}

/// The thread: waits for a job, takes every job queued by then (up to [`MAX_BATCH`]), runs
/// them in one transaction with the writer queue held, then answers them.
fn run(
    conn: &rusqlite::Connection,
    jobs: &mpsc::Receiver<Box<dyn Job>>,
    queue: &Arc<tokio::sync::Mutex<Batch>>,
    runtime: &tokio::runtime::Handle,
) {
    while let Ok(first) = jobs.recv() {
        let batch: Vec<Box<dyn Job>> = std::iter::once(first)
            .chain(jobs.try_iter().take(MAX_BATCH - 1))
            .collect();
        let mut turn = group_commit::take_blocking(queue, runtime);
        // Wait for another process's write lock no longer than someone waits for an answer
        // (rounded up: never shorter than that).
        let latest = batch.iter().map(|job| job.deadline()).max();
        let left = latest.map_or(Duration::ZERO, |at| {
            at.saturating_duration_since(Instant::now())
        });
        let _ = conn.busy_timeout(left + Duration::from_millis(1));
        let (outcome, answers) = run_batch(conn, batch);
        if matches!(outcome, Outcome::Committed) && !answers.is_empty() {
            turn.count_commit(answers.len());
        }
        drop(turn);
        for answer in answers {
            answer(&outcome);
        }
    }
}

/// Runs `batch` in one transaction; returns its outcome and the answers of the jobs that wrote.
/// A failure part-way (SQLite refusing `BEGIN`, a savepoint or the commit) undoes the whole
/// batch: the jobs that wrote hear the outcome, those not reached are failed with it.
fn run_batch(conn: &rusqlite::Connection, batch: Vec<Box<dyn Job>>) -> (Outcome, Vec<Reply>) {
    let mut answers = Vec::with_capacity(batch.len());
    let mut jobs = batch.into_iter();
    let ran = (|| -> Result<()> {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        for job in jobs.by_ref() {
            conn.execute_batch("SAVEPOINT certgate_write")?;
            let mut tx = WriteTx { conn };
            // A body that panicked is undone like a refused one; its caller hears that its
            // write was dropped, and the thread goes on serving the others.
            let step = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.run(&mut tx)))
                .unwrap_or(Step::Refused);
            match step {
                Step::Wrote(answer) => {
                    conn.execute_batch("RELEASE certgate_write")?;
                    answers.push(answer);
                }
                Step::Skipped | Step::Refused => {
                    conn.execute_batch("ROLLBACK TO certgate_write; RELEASE certgate_write")?;
                }
            }
        }
        conn.execute_batch("COMMIT")?;
        Ok(())
    })();
    let outcome = Outcome::of(&ran);
    if ran.is_err() {
        if !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        for job in jobs {
            job.fail(&outcome);
        }
    }
    (outcome, answers)
}

/// A job's view of the batch's transaction.
pub(super) struct WriteTx<'c> {
    conn: &'c rusqlite::Connection,
}

impl WriteTx<'_> {
    /// Runs `statements` in order and returns the rows they return, in order.
    pub(super) fn run(&mut self, statements: Vec<Statement>) -> Result<Vec<Row>> {
        let mut rows = Vec::new();
        for statement in statements {
            let (sql, params) = statement.parts();
            let mut stmt = self.conn.prepare_cached(sql)?;
            // `$n` is a named parameter to SQLite: bind each by the number in its name.
            for index in 1..=stmt.parameter_count() {
                let param = stmt
                    .parameter_name(index)
                    .and_then(|name| name.strip_prefix('$'))
                    .and_then(|n| n.parse::<usize>().ok())
                    .and_then(|n| params.get(n.checked_sub(1)?))
                    .ok_or_else(|| {
                        StoreError::Internal(format!("unbound parameter {index} in {sql}").into())
                    })?;
                stmt.raw_bind_parameter(index, value_of(param))?;
            }
            let columns: Arc<[String]> =
                stmt.column_names().into_iter().map(String::from).collect();
            let width = columns.len();
            let mut raw = stmt.raw_query();
            while let Some(row) = raw.next()? {
                let values = (0..width)
                    .map(|i| row.get::<_, Value>(i))
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                rows.push(Row {
                    columns: columns.clone(),
                    values,
                });
            }
        }
        Ok(rows)
    }
}

fn value_of(param: &Param) -> Value {
    match param {
        Param::Text(v) | Param::MaybeText(Some(v)) => Value::Text(v.clone()),
        Param::Int(v) => Value::Integer(*v),
        Param::MaybeText(None) => Value::Null,
    }
}

/// A row read on the writer thread, by column name as sqlx's rows are ([`super::tx::Columns`]).
pub(super) struct Row {
    columns: Arc<[String]>,
    values: Vec<Value>,
}

impl Columns for Row {
    fn field<T: Decoded>(&self, column: &str) -> Result<T> {
        let value = self
            .columns
            .iter()
            .position(|c| c == column)
            .map(|i| &self.values[i])
            .ok_or_else(|| StoreError::Internal(format!("no column {column} in the row").into()))?;
        T::column_result(value.into())
            .map_err(|e| StoreError::Internal(format!("column {column}: {e}").into()))
    }
}
