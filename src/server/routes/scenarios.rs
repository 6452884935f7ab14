//! `/v1/scenarios/...`: apply a ScenarioBundle, or check one without running it.

use axum::Json;
use axum::extract::State;
use serde_json::Value;

use crate::domain::workflow::validation_report;
use crate::server::AppState;
use crate::server::error::ApiResult;
use crate::server::extract::Write;

pub async fn apply(State(state): State<AppState>, write: Write) -> ApiResult<Json<Value>> {
    let applied = state
        .engine
        .apply_scenario(&write.caller, &write.body, write.claim)
        .await?;
    Ok(Json(applied))
}

/// A dry run: every problem with its JSON path, and nothing created.
pub async fn validate(write: Write) -> ApiResult<Json<Value>> {
    Ok(Json(validation_report(&write.body)))
}
