//! The event log of a PostgreSQL database, for `signoff audit`: one read-only
//! snapshot, streamed in commit order, while the fleet keeps writing.

use futures::TryStreamExt;
use tokio_postgres::IsolationLevel;

use super::{Connector, MIGRATIONS, connect, storage_error};
use crate::domain::Result;
use crate::domain::audit::AuditRecord;
use crate::store::audit::{self, AuditError, AuditFilter, check_schema_version};
use crate::store::rows::EVENT_COLUMNS;

pub struct PgAuditReader {
    client: tokio_postgres::Client,
}

impl PgAuditReader {
    /// Connects to `url` (`shown` is the same URL without its password, for
    /// messages) and checks the schema is the one this build reads.
    pub async fn open(url: &str, shown: &str) -> Result<PgAuditReader> {
        let client = connect(&Connector::from_url(url)?).await?;
        // A database signoff never started on has no version table: version 0.
        let exists: bool = client
            .query_one("SELECT to_regclass('signoff_schema') IS NOT NULL", &[])
            .await
            .map_err(storage_error)?
            .get(0);
        let version: i64 = match exists {
            false => 0,
            true => client
                .query_opt("SELECT version FROM signoff_schema", &[])
                .await
                .map_err(storage_error)?
                .map_or(0, |row| row.get(0)),
        };
        check_schema_version(shown, version, MIGRATIONS.len())?;
        Ok(PgAuditReader { client })
    }

    /// Calls `visit` with each matching event in commit order, streaming.
    pub async fn for_each(
        &mut self,
        filter: &AuditFilter,
        mut visit: impl FnMut(AuditRecord) -> Result<()>,
    ) -> std::result::Result<(), AuditError> {
        let tx = self
            .client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(storage_error)?;
        let since = filter.since.map(|at| at.to_string());
        let params: [Option<&str>; 2] = [filter.intent_id.as_deref(), since.as_deref()];
        let found = tx
            .query_raw(
                &format!(
                    "SELECT {EVENT_COLUMNS}, hash FROM events
                     WHERE ($1::text IS NULL OR intent_id = $1) AND ($2::text IS NULL OR at >= $2)
                     ORDER BY cursor"
                ),
                params,
            )
            .await
            .map_err(storage_error)?;
        futures::pin_mut!(found);
        while let Some(row) = found.try_next().await.map_err(storage_error)? {
            visit(audit::record(&row)?)?;
        }
        tx.commit().await.map_err(storage_error)?;
        Ok(())
    }
}
