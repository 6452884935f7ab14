//! [ext] `/v1/keys`: admin-only key management, used by `signoff keys`.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::domain::task::parse_fields;
use crate::domain::{Principal, PrincipalKind};
use crate::server::AppState;
use crate::server::error::ApiResult;
use crate::server::extract::{Caller, PathParams, Write};
use crate::store::KeyRecord;

#[derive(Deserialize)]
struct NewKeyRequest {
    kind: String,
    identity: String,
    #[serde(default)]
    teams: Vec<String>,
    #[serde(default)]
    label: Option<String>,
}

fn key_json(record: &KeyRecord) -> Value {
    json!({
        "key_id": record.key_id,
        "key_prefix": record.key_prefix,
        "kind": record.principal.kind,
        "identity": record.principal.identity,
        "teams": record.principal.teams,
        "label": record.label,
        "created_at": record.created_at,
        "revoked_at": record.revoked_at,
    })
}

pub async fn create(State(state): State<AppState>, write: Write) -> ApiResult<Json<Value>> {
    // A non-admin learns it may not do this before learning what is wrong with its body.
    crate::engine::require_admin(&write.caller, "create keys")?;
    let (caller, request) = (
        write.caller,
        parse_fields::<NewKeyRequest>("", &write.body)?,
    );
    let kind = PrincipalKind::parse(&request.kind)?;
    let principal = Principal::new(kind, &request.identity, request.teams)?;
    let (record, secret) = state
        .engine
        .create_key(&caller, principal, request.label)
        .await?;
    Ok(Json(
        json!({ "ok": true, "key": secret, "record": key_json(&record) }),
    ))
}

pub async fn list(State(state): State<AppState>, Caller(caller): Caller) -> ApiResult<Json<Value>> {
    let keys = state.engine.list_keys(&caller).await?;
    Ok(Json(
        json!({ "ok": true, "keys": keys.iter().map(key_json).collect::<Vec<_>>() }),
    ))
}

pub async fn revoke(
    State(state): State<AppState>,
    Caller(caller): Caller,
    PathParams(key_id): PathParams<String>,
) -> ApiResult<Json<Value>> {
    state.engine.revoke_key(&caller, &key_id).await?;
    Ok(Json(
        json!({ "ok": true, "key_id": key_id, "revoked": true }),
    ))
}
