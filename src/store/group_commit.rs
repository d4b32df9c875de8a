//! Group commit for SQLite: the writing transactions of one process that queue while another
//! is running share one SQLite transaction and therefore one fsync, each still atomic and each
//! acknowledged only after that fsync.
//!
//! How: the writer queue (a fair async mutex) guards an open [`Batch`], one SQLite
//! transaction. A writer takes the queue, runs its body inside a savepoint of the batch
//! (`ROLLBACK TO` undoes exactly its writes if it fails), releases the savepoint, leaves the
//! queue, and queues again to commit. Writers that were queued behind it append to the same
//! batch meanwhile; whoever of them gets the queue first at its commit step commits the whole
//! batch and tells every member. One writer alone costs two turns of the queue instead of one;
//! under load the fsync is shared by everyone who queued while the previous one ran.
//!
//! Cancellation (a client hanging up, or the write's deadline passing, drops its future
//! anywhere):
//! - during the body: the savepoint is still open, so [`Batch::member_open`] stays set and the
//!   next writer to take the queue rolls that member back first;
//! - after the body, before the commit: the writes are in the batch, unacknowledged, and are
//!   committed with it; a task is spawned to commit the batch if nobody else is queued to,
//!   so the database's write lock is never left held.

use std::sync::Arc;

use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Executor, Transaction};
use tokio::sync::{oneshot, Mutex, OwnedMutexGuard};

use super::deadline::{Deadline, Pool};
use super::tx::{run_together, Statement};
use super::{Result, StoreError};

/// The open SQLite transaction shared by the writers queued together.
#[derive(Default)]
pub(super) struct Batch {
    tx: Option<Transaction<'static, Any>>,
    /// Writers whose body is in `tx`, waiting for its commit.
    members: Vec<oneshot::Sender<Outcome>>,
    /// A writer's savepoint is open: set while its body runs. Still set when the next writer
    /// takes the queue means that body was abandoned half-way.
    member_open: bool,
    /// The last finished writer's savepoint is still open: it is released by the next
    /// statement sent anyway (the next writer's `SAVEPOINT`, or the commit), which saves each
    /// writer a round trip to SQLite's worker thread.
    release_pending: bool,
    /// A script that opens or closes a savepoint (a writer's opening script, or the undoing of
    /// an abandoned writer) was sent and its answer never awaited (whoever sent it was
    /// dropped): how much of it ran is unknown, so the batch can only be rolled back whole.
    in_doubt: bool,
    stats: GroupCommitStats,
}

/// What the group commit has done since the store opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupCommitStats {
    /// SQLite commits that succeeded.
    pub commits: u64,
    /// Writing transactions those commits acknowledged (`commits` or more).
    pub transactions: u64,
}

/// Ends whatever batch is open (committing what its members wrote), waiting for the queue at
/// most `wait`: a store closing must give its connection back to the pool first.
pub(super) async fn settle(queue: &Arc<Mutex<Batch>>, wait: std::time::Duration) {
    if let Ok(batch) = tokio::time::timeout(wait, queue.clone().lock_owned()).await {
        if batch.tx.is_some() {
            commit_batch(batch).await;
        }
    }
}

/// For SQLite's writer thread ([`super::sqlite_writer`]), which is not in the runtime: takes
/// the queue, first committing a batch left open (its members are waiting for that commit,
/// and it holds SQLite's write lock), so that the thread's own transaction can begin.
pub(super) fn take_blocking(
    queue: &Arc<Mutex<Batch>>,
    runtime: &tokio::runtime::Handle,
) -> OwnedMutexGuard<Batch> {
    loop {
        let batch = queue.clone().blocking_lock_owned();
        if batch.tx.is_none() && !batch.member_open && !batch.in_doubt {
            return batch;
        }
        runtime.block_on(commit_batch(batch));
    }
}

impl Batch {
    /// A commit, made outside this module, that acknowledged `transactions` writes.
    pub(super) fn count_commit(&mut self, transactions: usize) {
        self.stats.commits += 1;
        self.stats.transactions += transactions as u64;
    }
}

/// The counts so far (waits for the writer queue).
pub(super) async fn stats(queue: &Mutex<Batch>) -> GroupCommitStats {
    queue.lock().await.stats
}

/// What the commit of a batch meant for its members: a copy of the error for each.
#[derive(Clone)]
pub(super) enum Outcome {
    Committed,
    Failed { retryable: bool, why: String },
}

impl Outcome {
    pub(super) fn into_result(self) -> Result<()> {
        match self {
            Outcome::Committed => Ok(()),
            Outcome::Failed {
                retryable: true,
                why,
            } => Err(StoreError::Retryable(why.into())),
            Outcome::Failed {
                retryable: false,
                why,
            } => Err(StoreError::Unavailable(why.into())),
        }
    }

    pub(super) fn of(result: &Result<()>) -> Outcome {
        match result {
            Ok(()) => Outcome::Committed,
            Err(e) => Outcome::Failed {
                retryable: matches!(e, StoreError::Retryable(_)),
                why: crate::telemetry::ErrorChain(e).to_string(),
            },
        }
    }
}

const SAVEPOINT: &str = "SAVEPOINT certgate_write";
/// Releases the previous writer's savepoint and opens the next one, in one round trip.
const RELEASE_AND_SAVEPOINT: &str = "RELEASE certgate_write; SAVEPOINT certgate_write";
/// Undoes exactly the open savepoint's writes and closes it.
const UNDO: &str = "ROLLBACK TO certgate_write; RELEASE certgate_write";

/// A writer's turn: the queue held and its savepoint open in the batch.
pub(super) struct Member {
    guard: Option<OwnedMutexGuard<Batch>>,
    queue: Arc<Mutex<Batch>>,
    /// Set once the body's writes are released into the batch.
    pending: Option<oneshot::Receiver<Outcome>>,
}

/// Takes the queue, repairs what an abandoned writer left, opens the batch if none is open,
/// and opens this writer's savepoint, running `opening` (the first statements of the writer's
/// body) in the same round trip; returns their rows. All of it before `deadline`, which the
/// caller's statements share (`in_transaction!`): the wait for the queue is not a wait of its
/// own.
pub(super) async fn join(
    queue: &Arc<Mutex<Batch>>,
    pool: &Pool,
    deadline: &Deadline,
    opening: Vec<Statement>,
) -> Result<(Member, Vec<AnyRow>)> {
    let mut guard = deadline
        .bound(async { Ok(queue.clone().lock_owned().await) })
        .await?;
    repair(&mut guard).await;
    if guard.tx.is_none() {
        guard.tx = Some(pool.begin(deadline).await?);
    }
    let open = if guard.release_pending {
        RELEASE_AND_SAVEPOINT
    } else {
        SAVEPOINT
    };
    let script: Vec<Statement> = std::iter::once(Statement::new(open))
        .chain(opening)
        .collect();
    // Dropped while the script runs: the next holder of the queue rolls the batch back, and
    // if nobody else comes, `abandoned` spawns one that does (the script may have taken
    // SQLite's write lock).
    guard.in_doubt = true;
    let abandoned = Abandoned(Some(queue.clone()));
    let opened = match guard.tx.as_mut() {
        Some(tx) => run_together(tx, script).await,
        None => Ok(Vec::new()),
    };
    abandoned.disarm();
    guard.in_doubt = false;
    guard.release_pending = false;
    // Failed anywhere in the script: whether the savepoint opened (or the previous one was
    // released) is unknown, so the batch goes back whole and its members run again.
    let rows = match opened {
        Ok(rows) => rows,
        Err(e) => {
            fail_batch(&mut guard, &e).await;
            return Err(e);
        }
    };
    guard.member_open = true;
    let member = Member {
        guard: Some(guard),
        queue: queue.clone(),
        pending: None,
    };
    Ok((member, rows))
}

/// Armed while a writer's opening script runs; dropped armed (the writer was dropped
/// there), it ends the batch from a task of its own.
struct Abandoned(Option<Arc<Mutex<Batch>>>);

impl Abandoned {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for Abandoned {
    fn drop(&mut self) {
        if let Some(queue) = self.0.take() {
            end_batch_later(queue);
        }
    }
}

/// For a writer dropped mid-way: ends the open batch from a task of its own once it gets the
/// queue (repairing, then committing, what the batch holds), so SQLite's write lock is never
/// left held even if no other writer comes.
fn end_batch_later(queue: Arc<Mutex<Batch>>) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move { commit_batch(queue.lock_owned().await).await });
    }
}

/// Repairs what an abandoned writer left. Dropped inside its body (its savepoint still open):
/// undo exactly its writes. Dropped while its opening script ran: roll the batch back whole
/// (its members run again).
async fn repair(batch: &mut Batch) {
    if batch.in_doubt {
        let why = StoreError::Retryable(
            "a writer was abandoned while opening or undoing its savepoint".into(),
        );
        fail_batch(batch, &why).await;
        return;
    }
    if !batch.member_open {
        return;
    }
    // Run twice, `ROLLBACK TO` would undo the previous writer's savepoint (still open until
    // the next statement releases it): a repairer dropped here leaves the batch in doubt.
    batch.in_doubt = true;
    let undone = match batch.tx.as_mut() {
        Some(tx) => undo_member(tx).await,
        None => Ok(()),
    };
    batch.in_doubt = false;
    match undone {
        Ok(()) => batch.member_open = false,
        Err(e) => fail_batch(batch, &e.into()).await,
    }
}

async fn undo_member(tx: &mut Transaction<'static, Any>) -> sqlx::Result<()> {
    tx.execute(UNDO).await.map(drop)
}

/// Rolls the whole batch back and tells its members (they run their transactions again).
/// For them the failure is retryable whatever `why` was: their own writes were sound, and the
/// batch was undone because of another writer (whose own call answers `why` as classified).
/// The message keeps `why`'s whole cause chain.
async fn fail_batch(batch: &mut Batch, why: &StoreError) {
    if let Some(tx) = batch.tx.take() {
        let _ = tx.rollback().await;
    }
    let outcome = Outcome::Failed {
        retryable: true,
        why: format!(
            "the batch was rolled back: {}",
            crate::telemetry::ErrorChain(why)
        ),
    };
    for member in batch.members.drain(..) {
        let _ = member.send(outcome.clone());
    }
    batch.member_open = false;
    batch.release_pending = false;
    batch.in_doubt = false;
}

/// Commits the open batch, if any, and tells every member. Runs in a task of its own, so that
/// a writer dropped while awaiting it cannot stop a commit half-way (and leave members
/// without an outcome).
async fn commit_batch(mut batch: OwnedMutexGuard<Batch>) {
    let committing = tokio::spawn(async move {
        repair(&mut batch).await;
        // COMMIT also ends the savepoint a finished writer left open.
        batch.release_pending = false;
        let outcome = match batch.tx.take() {
            Some(tx) => Outcome::of(&tx.commit().await.map_err(StoreError::from)),
            // Only after a rollback that was itself interrupted: nothing was committed.
            None => Outcome::Failed {
                retryable: true,
                why: "the batch was rolled back".into(),
            },
        };
        if matches!(outcome, Outcome::Committed) && !batch.members.is_empty() {
            let members = batch.members.len();
            batch.count_commit(members);
        }
        for member in batch.members.drain(..) {
            let _ = member.send(outcome.clone());
        }
    });
    let _ = committing.await;
}

impl Member {
    /// The batch's connection, for the body.
    pub(super) fn conn(&mut self) -> &mut AnyConnection {
        match self.guard.as_mut().and_then(|g| g.tx.as_mut()) {
            Some(tx) => tx,
            // `join` returns a member only with the batch open, and only `finish`/`abort`
            // (which consume it) give the queue up.
            None => unreachable!("a member's batch is open until it finishes"),
        }
    }

    /// The body failed: undo its writes (the batch goes on without them). A batch left with
    /// no member waiting for its commit is ended here: nobody else would end it, and an open
    /// SQLite transaction holds the database's write lock (or an old snapshot) and its pooled
    /// connection.
    /// The guard stays in `self` until the end: dropped half-way (the request's future
    /// dropped), `Drop` spawns the task that ends the batch.
    pub(super) async fn abort(mut self) {
        if let Some(guard) = self.guard.as_mut() {
            repair(guard).await;
            if guard.members.is_empty() {
                if let Some(tx) = guard.tx.take() {
                    let _ = tx.rollback().await;
                }
                guard.release_pending = false;
            }
        }
        // Done: give the queue back without spawning anything.
        self.guard = None;
    }

    /// The body succeeded: its writes join the batch (its savepoint is released by the next
    /// statement the batch sends), then wait for the batch's commit, committing it if this
    /// writer is the first at the queue to do so.
    pub(super) async fn finish(mut self) -> Result<()> {
        let Some(mut guard) = self.guard.take() else {
            return Err(StoreError::Internal("a writer finished twice".into()));
        };
        guard.member_open = false;
        guard.release_pending = true;
        let (sender, receiver) = oneshot::channel();
        guard.members.push(sender);
        self.pending = Some(receiver);
        // Let the writers queued behind this one join the batch, then come back to commit it,
        // unless one of them (or SQLite's writer thread, which commits an open batch before
        // its own) does first: then its outcome is the answer, without waiting for the queue
        // behind whatever that holder does next.
        drop(guard);
        let turn = {
            let Some(receiver) = self.pending.as_mut() else {
                return Err(StoreError::Internal("a writer lost its place".into()));
            };
            tokio::select! {
                outcome = receiver => Err(outcome),
                guard = self.queue.clone().lock_owned() => Ok(guard),
            }
        };
        let guard = match turn {
            Ok(guard) => guard,
            Err(outcome) => {
                self.pending = None;
                return match outcome {
                    Ok(outcome) => outcome.into_result(),
                    Err(_) => Err(StoreError::Internal(
                        "the batch ended without an outcome".into(),
                    )),
                };
            }
        };
        let Some(mut receiver) = self.pending.take() else {
            return Err(StoreError::Internal("a writer lost its place".into()));
        };
        if let Ok(outcome) = receiver.try_recv() {
            return outcome.into_result();
        }
        commit_batch(guard).await;
        match receiver.await {
            Ok(outcome) => outcome.into_result(),
            Err(_) => Err(StoreError::Internal(
                "the batch ended without an outcome".into(),
            )),
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        // Dropped inside the body (or while aborting): the queue goes back with `member_open`
        // (or `in_doubt`) still set, and whoever takes it next undoes the body's writes (or
        // the whole batch) first. Dropped while waiting for the commit: the writes are in the
        // batch. Either way, the batch is then ended even if no other writer comes, so
        // SQLite's write lock is never left held.
        let inside_body = self.guard.take().is_some();
        if inside_body || self.pending.is_some() {
            end_batch_later(self.queue.clone());
        }
    }
}
