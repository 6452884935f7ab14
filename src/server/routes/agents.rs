//! `GET /v1/agents/{address}/intents/stream`: intents delivered to an agent.

use axum::Extension;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::json;

use super::intents::{resume_position, wait_seconds};
use crate::domain::principal::{AGENT_PREFIX, validate_agent_address};
use crate::domain::{Error, Status};
use crate::server::AppState;
use crate::server::error::ApiResult;
use crate::server::extract::{AuthenticatedKey, Caller, PathParams, Query};
use crate::server::sse;
use crate::store::AgentDelivery;

const STREAM_SUFFIX: &str = "/intents/stream";

fn status_filter(query: &Query) -> ApiResult<Option<Vec<Status>>> {
    let Some(text) = query.text("status") else {
        return Ok(None);
    };
    text.split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(|name| {
            Status::parse(&name.to_ascii_uppercase()).ok_or_else(|| {
                Error::malformed(format!("`{name}` in `status` is not an intent status")).into()
            })
        })
        .collect::<ApiResult<Vec<_>>>()
        .map(Some)
}

/// The address is everything between `/v1/agents/` and `/intents/stream`, without
/// `agent://`, with any number of segments.
pub async fn stream(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Extension(key): Extension<AuthenticatedKey>,
    PathParams(rest): PathParams<String>,
    headers: HeaderMap,
    query: Query,
) -> ApiResult<Response> {
    let Some(path) = rest.strip_suffix(STREAM_SUFFIX) else {
        return Err(Error::new(
            crate::domain::ErrorKind::NotFound,
            "no_such_endpoint",
            format!(
                "no endpoint at /v1/agents/{rest}; did you mean /v1/agents/ADDRESS{STREAM_SUFFIX}?"
            ),
        )
        .into());
    };
    let agent = format!("{AGENT_PREFIX}{}", path.trim_start_matches(AGENT_PREFIX));
    validate_agent_address("address", &agent).map_err(|err| Error::malformed(err.message))?;
    let since = resume_position(&headers, &query)?.unwrap_or(0);
    let wait = wait_seconds(&query)?;
    let statuses = status_filter(&query)?;
    let deliveries = state
        .engine
        .agent_stream(&caller, &agent, since, statuses)
        .await?;
    let body = sse::bounded(
        deliveries,
        since,
        wait,
        sse::stop_signal(&state, &key),
        |delivery: AgentDelivery| {
            let payload = json!({
                "intent_id": delivery.intent_id,
                "seq": delivery.seq,
                "event_type": delivery.event_type,
                "status": delivery.status,
                "at": delivery.at,
            });
            sse::Step {
                frame: sse::frame(Some(delivery.seq), &delivery.event_type, &payload),
                position: delivery.seq,
                last: false,
            }
        },
    );
    Ok(sse::response(body))
}
