//! `/health`: whether this instance can serve now, check by check, as a load
//! balancer asks it.

use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use super::Engine;
use crate::domain::Result;
use crate::store::HealthCheck;

/// How long `/health` waits for the database: load balancers give up on a
/// check after a few seconds, and a database this slow to answer one indexed
/// read is not serving requests either.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long the database's answer stands. `/health` needs no key, so however
/// often anyone asks, the database is read at most this often, and checks never
/// take more than one of the pool's connections from the requests.
const PROBE_FRESH_FOR: Duration = Duration::from_secs(1);

/// When the database was last read for `/health` and why it failed if it did,
/// and the read still under way, if one is.
#[derive(Default)]
pub(crate) struct DatabaseProbe {
    last: Option<(Instant, Option<String>)>,
    /// The read under way: one that outlived its time limit, or whose check
    /// was called off. A blocking read cannot be called off, so while it runs
    /// no other is started: a stalled database ties up one reader, not one
    /// more every second.
    running: Option<JoinHandle<Result<()>>>,
}

impl Engine {
    /// Every check of the engine and its store: the database answers a read
    /// within [`PROBE_TIMEOUT`], and the store's background parts run.
    pub async fn health(&self) -> Vec<HealthCheck> {
        let mut checks = vec![HealthCheck {
            name: "database",
            failure: self.probe_database().await,
        }];
        checks.extend(self.store.background_checks());
        checks
    }

    /// Why the database cannot serve, if it cannot. Callers at the same moment
    /// wait for one read and share its answer. The reason given names no host
    /// or setting (anyone may ask); the error goes to the log whenever the
    /// reason changes, and the recovery too.
    async fn probe_database(&self) -> Option<String> {
        let mut probe = self.database_probe.lock().await;
        if let Some((at, failure)) = &probe.last
            && at.elapsed() < PROBE_FRESH_FOR
        {
            return failure.clone();
        }
        // The read is kept before it is waited for: if this check is called
        // off (its client hung up), the next one waits for the same read.
        let read = probe.running.get_or_insert_with(|| {
            let store = self.store.clone();
            tokio::spawn(async move { store.probe().await })
        });
        let answer = tokio::time::timeout(PROBE_TIMEOUT, read).await;
        if answer.is_ok() {
            probe.running = None;
        }
        let (failure, error) = match answer {
            Ok(Ok(Ok(()))) => (None, String::new()),
            Ok(Ok(Err(err))) => (
                Some("cannot read the database".to_string()),
                format!(": {err}"),
            ),
            Ok(Err(err)) => (
                Some("cannot read the database".to_string()),
                format!(": the read failed: {err}"),
            ),
            Err(_) => (
                Some(format!(
                    "the database did not answer within {} s",
                    PROBE_TIMEOUT.as_secs()
                )),
                String::new(),
            ),
        };
        let before = probe
            .last
            .as_ref()
            .and_then(|(_, failure)| failure.as_ref());
        match (&failure, before) {
            (Some(failure), before) if before != Some(failure) => {
                tracing::warn!("health check: {failure}{error}");
            }
            (None, Some(_)) => tracing::info!("health check: the database answers again"),
            _ => {}
        }
        probe.last = Some((Instant::now(), failure.clone()));
        failure
    }
}
