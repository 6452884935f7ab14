//! The loop both background workers (the scheduler and the notification
//! sender) run: do what is due, then sleep until the next due time or until a
//! commit brings something earlier. Never a tight poll, never one sleep per task.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::domain::{Result, Timestamp};

/// The longest a worker sleeps without looking at the database again, so a
/// changed wall clock is noticed.
const MAX_SLEEP: Duration = Duration::from_secs(60);
/// How long to wait before trying again after the store failed.
const ERROR_PAUSE: Duration = Duration::from_secs(1);

/// Wakes a sleeping background worker when a commit gives it something to do
/// before the time it planned to wake up.
pub struct Wakeup {
    /// When the worker plans to wake, in Unix microseconds; `i64::MAX` while it is
    /// awake and about to look at the database (so every commit leaves a wake-up).
    planned: AtomicI64,
    notify: Notify,
}

impl Default for Wakeup {
    fn default() -> Self {
        Self {
            planned: AtomicI64::new(i64::MAX),
            notify: Notify::new(),
        }
    }
}

impl Wakeup {
    /// Called after a commit that created work due at `at`.
    pub fn work_due(&self, at: Timestamp) {
        if at.unix_micros() < self.planned.load(Ordering::Acquire) {
            self.notify.notify_one();
        }
    }

    /// The worker is about to read what is due; anything committed from now on
    /// must wake it again.
    fn awake(&self) {
        self.planned.store(i64::MAX, Ordering::Release);
    }

    /// Sleeps until `until` (capped at [`MAX_SLEEP`]), an earlier commit, or shutdown.
    /// Returns false on shutdown.
    pub async fn sleep(
        &self,
        now: Timestamp,
        until: Option<Timestamp>,
        shutdown: &CancellationToken,
    ) -> bool {
        let cap = now.plus_seconds(MAX_SLEEP.as_secs() as i64);
        let until = until.map_or(cap, |until| until.min(cap));
        self.planned.store(until.unix_micros(), Ordering::Release);
        let micros = (until.unix_micros() - now.unix_micros()).max(0) as u64;
        tokio::select! {
            _ = shutdown.cancelled() => false,
            _ = self.notify.notified() => true,
            _ = tokio::time::sleep(Duration::from_micros(micros)) => true,
        }
    }

    /// After a store error: pause briefly rather than spin.
    async fn pause(&self, shutdown: &CancellationToken) -> bool {
        tokio::select! {
            _ = shutdown.cancelled() => false,
            _ = tokio::time::sleep(ERROR_PAUSE) => true,
        }
    }

    /// The loop of a background worker, until `shutdown`: `work` handles what is
    /// due now (at most `batch` items; a full batch means more may be waiting, so
    /// it goes again at once), then it sleeps until `next_due` says, or until a
    /// commit wakes it. Store errors are logged and retried after a pause.
    pub async fn drive<Work, Next>(
        &self,
        what: &str,
        clock: &dyn Clock,
        shutdown: &CancellationToken,
        batch: usize,
        mut work: impl FnMut() -> Work,
        mut next_due: impl FnMut() -> Next,
    ) where
        Work: Future<Output = Result<usize>>,
        Next: Future<Output = Result<Option<Timestamp>>>,
    {
        loop {
            self.awake();
            let next = match work().await {
                Ok(done) if done >= batch => continue,
                Ok(_) => next_due().await,
                Err(err) => Err(err),
            };
            let keep_going = match next {
                Ok(next) => self.sleep(clock.now(), next, shutdown).await,
                Err(err) => {
                    tracing::error!("{what} failed: {err}");
                    self.pause(shutdown).await
                }
            };
            if !keep_going {
                return;
            }
        }
    }
}
