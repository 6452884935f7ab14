//! Reading the event log for `signoff audit`, from either backend: read-only,
//! streaming, in commit order, safe while servers run.

use crate::domain::audit::{AuditRecord, BrokenLink};
use crate::domain::{Error, Result, Timestamp};

use super::postgres::audit::PgAuditReader;
use super::rows::{self, Columns};
use super::sqlite::AuditReader;

/// Which events an audit export covers.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub intent_id: Option<String>,
    /// Events at or after this time.
    pub since: Option<Timestamp>,
}

/// Why an audit walk stopped.
#[derive(Debug)]
pub enum AuditError {
    /// A row could not be read as an event: it was changed outside signoff.
    Damaged(BrokenLink),
    Failed(Error),
}

impl From<Error> for AuditError {
    fn from(error: Error) -> Self {
        AuditError::Failed(error)
    }
}

impl std::fmt::Display for AuditError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuditError::Damaged(link) => write!(
                f,
                "the event at cursor {} (intent {}, seq {}) {}",
                link.cursor, link.intent_id, link.seq, link.reason
            ),
            AuditError::Failed(error) => error.fmt(f),
        }
    }
}

impl std::error::Error for AuditError {}

/// Refuses a database whose schema is not the one this build reads.
pub(crate) fn check_schema_version(database: &str, version: i64, expected: usize) -> Result<()> {
    if usize::try_from(version).ok() == Some(expected) {
        return Ok(());
    }
    Err(Error::invalid(
        "schema_version",
        format!(
            "{database} has schema version {version}; this signoff reads version {expected} (start `signoff serve` on it once to migrate)"
        ),
    ))
}

/// Reads `EVENT_COLUMNS` followed by `hash` as an audit record. A row too damaged
/// to read is a broken link, with whatever of its identity can still be read.
pub(crate) fn record(row: &impl Columns) -> std::result::Result<AuditRecord, AuditError> {
    let decoded = rows::event(row).and_then(|event| {
        Ok(AuditRecord {
            cursor: rows::unsigned(row, 0, "cursor")?,
            event,
            hash: rows::text(row, 9, "hash")?,
        })
    });
    decoded.map_err(|damage| {
        AuditError::Damaged(BrokenLink {
            cursor: row.int(0).map_or(0, |cursor| cursor as u64),
            intent_id: row.text(1).ok().flatten().unwrap_or_else(|| "?".into()),
            seq: row.int(2).map_or(0, |seq| seq as u64),
            reason: format!("cannot be read ({damage}): it was changed outside signoff"),
        })
    })
}

/// The event log of a SQLite file or a PostgreSQL database.
pub enum AuditSource {
    Sqlite(AuditReader),
    Postgres(PgAuditReader),
}

impl AuditSource {
    /// Calls `visit` with each matching event in commit order; see
    /// [`AuditReader::for_each`].
    pub async fn for_each(
        &mut self,
        filter: &AuditFilter,
        visit: impl FnMut(AuditRecord) -> Result<()>,
    ) -> std::result::Result<(), AuditError> {
        match self {
            AuditSource::Sqlite(reader) => reader.for_each(filter, visit),
            AuditSource::Postgres(reader) => reader.for_each(filter, visit).await,
        }
    }
}
