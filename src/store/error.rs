//! How database failures reach the rest of certgate: a refused rule, an unavailable database
//! (503), a transient conflict (retried inside the store, never surfaced), or an internal
//! error (500). The driver's error is kept as the source, so logs show the whole chain.

use crate::domain::DomainError;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A rule refused the change; nothing was written.
    #[error(transparent)]
    Rule(#[from] DomainError),
    /// The database could not be reached or did not answer in time.
    #[error("database unavailable")]
    Unavailable(#[source] BoxError),
    /// A conflict that running the transaction again resolves (retried inside the store).
    #[error("transient conflict")]
    Retryable(#[source] BoxError),
    #[error("internal store error")]
    Internal(#[source] BoxError),
}

impl StoreError {
    pub(super) fn unavailable(why: impl Into<BoxError>) -> Self {
        StoreError::Unavailable(why.into())
    }
}

/// A copy of a [`StoreError`] for each of several waiters on one query (`coalesce`): the
/// same variant, with the cause chain as text.
#[derive(Debug, Clone)]
pub(super) struct SharedError {
    unavailable: bool,
    retryable: bool,
    why: String,
}

impl SharedError {
    /// The query's task ended without an answer (the runtime is shutting down).
    pub(super) fn lost() -> Self {
        SharedError {
            unavailable: true,
            retryable: false,
            why: "the shared query ended without an answer".into(),
        }
    }
}

impl From<StoreError> for SharedError {
    fn from(e: StoreError) -> Self {
        SharedError {
            unavailable: matches!(e, StoreError::Unavailable(_)),
            retryable: matches!(e, StoreError::Retryable(_)),
            why: crate::telemetry::ErrorChain(&e).to_string(),
        }
    }
}

impl From<SharedError> for StoreError {
    fn from(e: SharedError) -> Self {
        let why: BoxError = e.why.into();
        if e.unavailable {
            StoreError::Unavailable(why)
        } else if e.retryable {
            StoreError::Retryable(why)
        } else {
            StoreError::Internal(why)
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        classify(&e).wrap(e)
    }
}

/// From SQLite's writer thread (`sqlite_writer`), classified as sqlx's SQLite errors
/// are (`sqlite_class`).
impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        let class = match &e {
            rusqlite::Error::SqliteFailure(failure, _) => {
                sqlite_class(failure.extended_code).unwrap_or(Class::Internal)
            }
            _ => Class::Internal,
        };
        class.wrap(e)
    }
}

enum Class {
    Retryable,
    Unavailable,
    Internal,
}

impl Class {
    fn wrap(self, e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
        match self {
            Class::Retryable => StoreError::Retryable(Box::new(e)),
            Class::Unavailable => StoreError::Unavailable(Box::new(e)),
            Class::Internal => StoreError::Internal(Box::new(e)),
        }
    }
}

/// A SQLite result code (extended codes keep the primary one in the low byte): BUSY, the busy
/// timeout already waited out, is unavailable; LOCKED and the extended BUSY codes (e.g.
/// `BUSY_SNAPSHOT`) are worth running the transaction again. `None` for the other codes.
fn sqlite_class(code: i32) -> Option<Class> {
    match code {
        5 => Some(Class::Unavailable),
        n if n & 0xff == 5 || n & 0xff == 6 => Some(Class::Retryable),
        _ => None,
    }
}

fn classify(e: &sqlx::Error) -> Class {
    match e {
        sqlx::Error::Database(db) => {
            let code = db
                .code()
                .map(std::borrow::Cow::into_owned)
                .unwrap_or_default();
            // SQLite's codes are numbers (none of the SQLSTATEs named below reads as a BUSY or
            // LOCKED one).
            if let Some(class) = code.parse::<i32>().ok().and_then(sqlite_class) {
                return class;
            }
            match code.as_str() {
                // PostgreSQL serialization failure and deadlock.
                "40001" | "40P01" => Class::Retryable,
                // query_canceled (statement_timeout), lock_not_available (lock_timeout),
                // shutdown, connection exceptions.
                c if c == "57014"
                    || c == "55P03"
                    || c.starts_with("57P")
                    || c.starts_with("08") =>
                {
                    Class::Unavailable
                }
                _ => Class::Internal,
            }
        }
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => Class::Unavailable,
        _ => Class::Internal,
    }
}
