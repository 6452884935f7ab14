//! The body of `POST /v1/intents`: what an agent may ask for, checked field by field.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::{Error, Result};
use super::lifecycle::{LifecycleInput, TimingRequest, optional_seconds};
use super::principal::{Principal, PrincipalKind, validate_agent_address};
use super::task::{HumanTask, OneOrMany, parse_fields, validate_assignee_list};
use super::time::Timestamp;

/// A validated request to create an intent.
#[derive(Debug, Clone, PartialEq)]
pub struct IntentRequest {
    pub intent_type: String,
    pub correlation_id: String,
    pub from_agent: String,
    pub to_agent: Option<String>,
    pub reply_to: Option<String>,
    pub payload: Value,
    pub human_task: Option<HumanTask>,
    /// Reminders, escalation and timeout as asked; resolved into a policy with the
    /// server's defaults when the intent is created.
    pub timing: TimingRequest,
}

#[derive(Deserialize)]
struct IntentInput {
    intent_type: Option<String>,
    correlation_id: Option<String>,
    from_agent: Option<String>,
    to_agent: Option<String>,
    reply_to: Option<String>,
    payload: Option<Value>,
    deadline_at: Option<String>,
    #[serde(default, deserialize_with = "optional_seconds")]
    remind_after_seconds: Option<u64>,
    #[serde(default, deserialize_with = "optional_seconds")]
    remind_interval_seconds: Option<u64>,
    max_reminders: Option<u32>,
    escalate_to: Option<OneOrMany>,
    lifecycle: Option<Value>,
    human_task: Option<Value>,
}

/// The rule for an `Idempotency-Key`: 1-255 visible ASCII characters, so that
/// a retry matches its first request byte for byte, whatever carried it.
pub fn check_idempotency_key(key: &str) -> Result<()> {
    if !key.is_empty() && key.len() <= 255 && key.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(Error::malformed(
            "Idempotency-Key must be 1-255 visible ASCII characters",
        ))
    }
}

/// `^[a-z0-9_]+(\.[a-z0-9_]+)+\.v[0-9]+$`, written out to avoid a regex engine.
pub fn is_valid_intent_type(text: &str) -> bool {
    let segments: Vec<&str> = text.split('.').collect();
    let Some((version, names)) = segments.split_last() else {
        return false;
    };
    let version_ok = version
        .strip_prefix('v')
        .is_some_and(|digits| !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()));
    let name_ok = |name: &&str| {
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    version_ok && names.len() >= 2 && names.iter().all(name_ok)
}

impl IntentRequest {
    /// The request behind a scenario's own intent: no recipient of its own, as
    /// its steps do the work; a fresh correlation id that every step shares.
    pub fn for_workflow(intent_type: String, payload: Value, from_agent: String) -> IntentRequest {
        IntentRequest {
            intent_type,
            correlation_id: uuid::Uuid::new_v4().to_string(),
            from_agent,
            to_agent: None,
            reply_to: None,
            payload,
            human_task: None,
            timing: TimingRequest::default(),
        }
    }

    pub fn parse(body: &Value, sender: &Principal) -> Result<IntentRequest> {
        if sender.kind == PrincipalKind::Reviewer {
            return Err(Error::forbidden(
                "reviewers decide tasks; only agent and admin keys may create intents",
            ));
        }
        let input: IntentInput = parse_fields("", body)?;

        let intent_type = input
            .intent_type
            .ok_or_else(|| Error::invalid_field("intent_type", "is required"))?;
        if !is_valid_intent_type(&intent_type) {
            return Err(Error::invalid_field(
                "intent_type",
                format!(
                    "`{intent_type}` must look like `intent.human_task.v1` (lowercase dotted names ending in .vN)"
                ),
            ));
        }

        let correlation_id = input
            .correlation_id
            .ok_or_else(|| Error::invalid_field("correlation_id", "is required"))?;
        let correlation_id = uuid::Uuid::parse_str(&correlation_id)
            .map_err(|_| {
                Error::invalid_field(
                    "correlation_id",
                    format!("`{correlation_id}` is not a UUID"),
                )
            })?
            .to_string();

        // The sender is whoever holds the key; only an admin may speak for an agent.
        let from_agent = match (sender.kind, input.from_agent) {
            (PrincipalKind::Admin, Some(address)) => {
                validate_agent_address("from_agent", &address)?;
                address
            }
            _ => sender.identity.clone(),
        };

        let to_agent = input.to_agent.filter(|a| !a.trim().is_empty());
        if let Some(address) = &to_agent {
            validate_agent_address("to_agent", address)?;
        }
        let reply_to = input.reply_to.filter(|a| !a.trim().is_empty());
        if let Some(address) = &reply_to {
            validate_agent_address("reply_to", address)?;
        }

        let payload = match input.payload {
            None | Some(Value::Null) => Value::Object(Map::new()),
            Some(Value::Object(fields)) => Value::Object(fields),
            Some(_) => return Err(Error::invalid_field("payload", "must be an object")),
        };

        let deadline_at = input
            .deadline_at
            .map(|text| {
                Timestamp::parse(&text).map_err(|why| Error::invalid_field("deadline_at", why))
            })
            .transpose()?;

        let human_task = match input.human_task {
            None | Some(Value::Null) => None,
            Some(spec) => Some(HumanTask::from_request(&spec)?),
        };
        if human_task.is_none() && to_agent.is_none() {
            return Err(Error::invalid(
                "no_recipient",
                "an intent needs a to_agent, a human_task, or both",
            ));
        }

        let escalate_to = match input.escalate_to {
            None => vec![],
            Some(targets) => validate_assignee_list("escalate_to", targets.into_vec())?,
        };
        let lifecycle = input
            .lifecycle
            .as_ref()
            .map(LifecycleInput::parse)
            .transpose()?;

        Ok(IntentRequest {
            intent_type,
            correlation_id,
            from_agent,
            to_agent,
            reply_to,
            payload,
            human_task,
            timing: TimingRequest {
                remind_after_seconds: input.remind_after_seconds,
                remind_interval_seconds: input.remind_interval_seconds,
                max_reminders: input.max_reminders,
                escalate_to,
                deadline_at,
                lifecycle,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn agent() -> Principal {
        Principal::new(PrincipalKind::Agent, "agent://acme/deployer", vec![]).unwrap()
    }

    fn base() -> Value {
        json!({
            "intent_type": "intent.human_task.v1",
            "correlation_id": "6f1c2b9e-3c1d-4a55-9a77-0f2b7a1f0c11",
            "human_task": {"title": "Deploy?"}
        })
    }

    #[test]
    fn intent_types_follow_the_axp_pattern() {
        for good in ["intent.human_task.v1", "a.b.v10", "x_1.y_2.z.v0"] {
            assert!(is_valid_intent_type(good), "{good}");
        }
        for bad in [
            "intent.v1",
            "Intent.human.v1",
            "intent.human_task",
            "intent..x.v1",
            "a.b.v",
            "a.b.v1x",
            "",
        ] {
            assert!(!is_valid_intent_type(bad), "{bad}");
        }
    }

    #[test]
    fn the_sender_is_the_key_holder() {
        let mut body = base();
        body["from_agent"] = json!("agent://someone/else");
        let request = IntentRequest::parse(&body, &agent()).unwrap();
        assert_eq!(request.from_agent, "agent://acme/deployer");
        let admin = Principal::new(PrincipalKind::Admin, "root", vec![]).unwrap();
        assert_eq!(
            IntentRequest::parse(&body, &admin).unwrap().from_agent,
            "agent://someone/else"
        );
    }

    #[test]
    fn reviewers_cannot_create_intents() {
        let reviewer = Principal::new(PrincipalKind::Reviewer, "alice", vec![]).unwrap();
        let err = IntentRequest::parse(&base(), &reviewer).unwrap_err();
        assert_eq!(err.kind, crate::domain::ErrorKind::Forbidden);
    }

    #[test]
    fn bad_fields_are_named() {
        for (field, value, named) in [
            ("intent_type", json!("nope"), "intent_type"),
            ("intent_type", json!(7), "intent_type"),
            ("correlation_id", json!("abc"), "correlation_id"),
            ("to_agent", json!("worker"), "to_agent"),
            ("reply_to", json!("x"), "reply_to"),
            ("payload", json!([1]), "payload"),
            ("deadline_at", json!("soon"), "deadline_at"),
            ("remind_after_seconds", json!(-5), "remind_after_seconds"),
            (
                "remind_interval_seconds",
                json!(1.5),
                "remind_interval_seconds",
            ),
            ("remind_after_seconds", json!("5m"), "remind_after_seconds"),
            ("escalate_to", json!(["bad name"]), "escalate_to"),
            ("lifecycle", json!("fast"), "lifecycle"),
        ] {
            let mut body = base();
            body[field] = value;
            let err = IntentRequest::parse(&body, &agent()).unwrap_err();
            assert_eq!(err.details["field"], named, "{field}: {err:?}");
        }
    }

    #[test]
    fn bad_durations_say_what_is_wrong_with_them() {
        for (value, why) in [
            (json!(-5), "a negative duration"),
            (json!(1.5), "not a whole number of seconds"),
            (json!("5m"), "not a number of seconds"),
        ] {
            let mut body = base();
            body["lifecycle"] =
                json!({"escalate": [{"after_seconds": value.clone(), "to": "b@example.com"}]});
            let err = IntentRequest::parse(&body, &agent()).unwrap_err();
            assert_eq!(err.details["field"], "lifecycle.escalate[0].after_seconds");
            assert!(err.message.contains(why), "{value}: {}", err.message);
            body = base();
            body["remind_after_seconds"] = value.clone();
            let err = IntentRequest::parse(&body, &agent()).unwrap_err();
            assert!(err.message.contains(why), "{value}: {}", err.message);
        }
        let mut body = base();
        body["remind_after_seconds"] = Value::Null;
        assert!(
            IntentRequest::parse(&body, &agent()).is_ok(),
            "null means absent"
        );
    }

    #[test]
    fn an_intent_needs_somebody_to_act() {
        let mut body = base();
        body.as_object_mut().unwrap().remove("human_task");
        assert_eq!(
            IntentRequest::parse(&body, &agent()).unwrap_err().code,
            "no_recipient"
        );
        body["to_agent"] = json!("agent://acme/worker");
        assert!(IntentRequest::parse(&body, &agent()).is_ok());
    }
}
