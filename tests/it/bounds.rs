//! Bounds tested from both sides (decisions.md D44): what a timeout ends happens not before the
//! timeout and at most [`LATE`] after it. Tests that use these set every other timeout far
//! apart, so one cannot pass for another.

use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};

/// How late past its bound a timeout may fire (decisions.md D44).
pub const LATE: Duration = Duration::from_secs(1);

/// How early a timeout may seem to fire: deadlines are kept in whole milliseconds, and the
/// test's clock starts a moment before the server's does. Far below any bound tested.
pub const EARLY: Duration = Duration::from_millis(20);

/// Asserts that `took` is within `bound` from both sides: not before it, and not later than
/// [`LATE`] past it.
#[track_caller]
pub fn assert_on_time(what: &str, took: Duration, bound: Duration) {
    assert!(
        took + EARLY >= bound,
        "{what}: after {took:?}, before its bound of {bound:?}"
    );
    assert!(
        took <= bound + LATE,
        "{what}: after {took:?}, more than {LATE:?} past its bound of {bound:?}"
    );
}

/// How long after `started` the peer closed `stream` (end of file or an error), reading and
/// discarding whatever it sends until then; `None` if it is still open `limit` after
/// `started`.
pub async fn closed_after<S: AsyncRead + Unpin>(
    stream: &mut S,
    started: Instant,
    limit: Duration,
) -> Option<Duration> {
    let mut buf = [0u8; 4096];
    loop {
        // Polled at least once, also when `limit` has already passed.
        let left = (started + limit).saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) if !left.is_zero() => {}
            Ok(Ok(_)) | Err(_) => return None,
        }
    }
}

/// Asserts that the peer closes `stream` on time: `bound` after `started`, from both sides.
pub async fn assert_closed_on_time<S: AsyncRead + Unpin>(
    what: &str,
    stream: &mut S,
    started: Instant,
    bound: Duration,
) {
    let limit = bound + LATE + Duration::from_secs(5);
    match closed_after(stream, started, limit).await {
        Some(took) => assert_on_time(what, took, bound),
        None => panic!("{what}: still open after {limit:?} (bound {bound:?})"),
    }
}

/// Asserts that `stream` is still open (nothing to read, no end of file) when `until` after
/// `started` has passed.
pub async fn assert_open_until<S: AsyncRead + Unpin>(
    what: &str,
    stream: &mut S,
    started: Instant,
    until: Duration,
) {
    if let Some(took) = closed_after(stream, started, until).await {
        panic!("{what}: closed after {took:?}, before {until:?}");
    }
}
