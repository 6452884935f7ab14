//! `/health`: whether this instance can serve now, check by check, as a load
//! balancer asks it.

use std::time::{Duration, Instant};

use super::Engine;
use crate::store::HealthCheck;

/// How long `/health` waits for the database: load balancers give up on a
/// check after a few seconds, and a database this slow to answer one indexed
/// read is not serving requests either.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long the database's answer stands. `/health` needs no key, so however
/// often anyone asks, the database is read at most this often, and checks never
/// take more than one of the pool's connections from the requests.
const PROBE_FRESH_FOR: Duration = Duration::from_secs(1);

/// When the database was last read for `/health`, and why it failed if it did.
#[derive(Default)]
pub struct DatabaseProbe {
    last: Option<(Instant, Option<String>)>,
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
    /// or setting (anyone may ask); the error goes to the log when the
    /// database starts failing, and its recovery too.
    async fn probe_database(&self) -> Option<String> {
        let mut probe = self.database_probe.lock().await;
        if let Some((at, failure)) = &probe.last
            && at.elapsed() < PROBE_FRESH_FOR
        {
            return failure.clone();
        }
        let (failure, error) = match tokio::time::timeout(PROBE_TIMEOUT, self.store.probe()).await {
            Ok(Ok(())) => (None, String::new()),
            Ok(Err(err)) => (
                Some("cannot read the database".to_string()),
                format!(": {err}"),
            ),
            Err(_) => (
                Some(format!(
                    "the database did not answer within {} s",
                    PROBE_TIMEOUT.as_secs()
                )),
                String::new(),
            ),
        };
        let was_failing = probe
            .last
            .as_ref()
            .is_some_and(|(_, failure)| failure.is_some());
        match (&failure, was_failing) {
            (Some(failure), false) => tracing::warn!("health check: {failure}{error}"),
            (None, true) => tracing::info!("health check: the database answers again"),
            _ => {}
        }
        probe.last = Some((Instant::now(), failure.clone()));
        failure
    }
}
