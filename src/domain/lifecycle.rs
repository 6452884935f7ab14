//! What happens while nobody answers: reminders, an escalation ladder, and a
//! timeout with a fallback. A policy is resolved once, when the intent is created,
//! from the request, then the server's per-task-type SLA defaults, then the
//! built-in defaults; the timers a task needs and what each firing does are pure
//! functions of the policy, so they are unit-tested with a hand-driven clock.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::{Error, Result};
use super::task::{OneOrMany, TaskType, parse_fields, validate_assignee_list};
use super::time::Timestamp;

/// Built-in defaults: first reminder after 5 minutes, then every 30 minutes;
/// escalation after 30 minutes when there is someone to escalate to; timeout
/// after 8 hours, failing the intent.
pub const DEFAULT_REMIND_AFTER: u64 = 5 * 60;
pub const DEFAULT_REMIND_EVERY: u64 = 30 * 60;
pub const DEFAULT_ESCALATE_AFTER: u64 = 30 * 60;
pub const DEFAULT_TIMEOUT_AFTER: u64 = 8 * 3600;
/// The longest duration any lifecycle setting may have: ten years. Longer ones
/// are almost certainly unit mistakes, and would overflow the calendar.
pub const MAX_DURATION_SECONDS: u64 = 10 * 366 * 86_400;

/// Who a timeout's decision is recorded as: never a person.
pub const TIMEOUT_ACTOR: &str = "system:timeout";
/// Who reminders and escalations are recorded as.
pub const SCHEDULER_ACTOR: &str = "system:scheduler";
/// Who notification attempts are recorded as.
pub const NOTIFIER_ACTOR: &str = "system:notify";

/// Whether an actor is the system (a timeout, the scheduler, the notifier):
/// never a person, whatever it recorded.
pub fn is_system_actor(actor: &str) -> bool {
    actor.starts_with("system:")
}

/// A duration in whole seconds, refused with a message that says what is wrong
/// (rather than serde's "expected u64") when it is negative, fractional or text.
pub fn seconds<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<u64, D::Error> {
    let value = Value::deserialize(deserializer)?;
    value.as_u64().ok_or_else(|| {
        let why = match &value {
            Value::Number(number) if number.as_i64().is_some_and(|n| n < 0) => {
                "a negative duration"
            }
            Value::Number(_) => "not a whole number of seconds",
            _ => "not a number of seconds",
        };
        serde::de::Error::custom(format!("`{value}` is {why}; give whole seconds, 0 or more"))
    })
}

/// [`seconds`], for optional fields (`null` is absent).
pub fn optional_seconds<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Option<u64>, D::Error> {
    match Option::<Value>::deserialize(deserializer)? {
        None | Some(Value::Null) => Ok(None),
        Some(value) => seconds(value).map(Some).map_err(serde::de::Error::custom),
    }
}

/// What a timeout does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fallback {
    /// End `TIMED_OUT`.
    Fail,
    /// End `CANCELED`.
    Cancel,
    /// Complete with this outcome, decided by the system.
    Outcome(String),
}

impl Serialize for Fallback {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Fallback::Fail => serializer.serialize_str("fail"),
            Fallback::Cancel => serializer.serialize_str("cancel"),
            Fallback::Outcome(outcome) => {
                use serde::ser::SerializeMap;
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("outcome", outcome)?;
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Fallback {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Fallback::parse(&value).map_err(serde::de::Error::custom)
    }
}

impl Fallback {
    /// `"fail"`, `"cancel"`, `{"outcome": "rejected"}` (or, in config files, a bare outcome).
    pub fn parse(value: &Value) -> std::result::Result<Fallback, String> {
        match value {
            Value::String(text) if text == "fail" => Ok(Fallback::Fail),
            Value::String(text) if text == "cancel" => Ok(Fallback::Cancel),
            Value::Object(fields) => match fields.get("outcome") {
                Some(Value::String(outcome)) if !outcome.trim().is_empty() && fields.len() == 1 => {
                    Ok(Fallback::Outcome(outcome.trim().to_string()))
                }
                _ => Err("a fallback object must be {\"outcome\": \"...\"}".to_string()),
            },
            other => Err(format!(
                "`{other}` is not a fallback; use \"fail\", \"cancel\" or {{\"outcome\": \"...\"}}"
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemindPolicy {
    pub after_seconds: u64,
    pub every_seconds: u64,
    /// `None`: keep reminding until the task ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscalationStage {
    /// Seconds after the task started waiting.
    pub after_seconds: u64,
    pub to: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeoutPolicy {
    pub at: Timestamp,
    pub fallback: Fallback,
}

/// A task's resolved lifecycle, stored with the intent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecyclePolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remind: Option<RemindPolicy>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub escalate: Vec<EscalationStage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<TimeoutPolicy>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemindInput {
    #[serde(default, deserialize_with = "optional_seconds")]
    pub after_seconds: Option<u64>,
    #[serde(default, deserialize_with = "optional_seconds")]
    pub every_seconds: Option<u64>,
    pub max: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageInput {
    #[serde(deserialize_with = "seconds")]
    pub after_seconds: u64,
    pub to: OneOrMany,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutInput {
    #[serde(default, deserialize_with = "optional_seconds")]
    pub after_seconds: Option<u64>,
    pub fallback: Option<Fallback>,
}

/// The `lifecycle` object of a request, and the shape of a server's SLA defaults.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifecycleInput {
    pub remind: Option<RemindInput>,
    pub escalate: Option<Vec<StageInput>>,
    pub timeout: Option<TimeoutInput>,
}

impl LifecycleInput {
    pub fn parse(value: &Value) -> Result<LifecycleInput> {
        if !value.is_object() {
            return Err(Error::invalid_field("lifecycle", "must be an object"));
        }
        parse_fields("lifecycle", value)
    }
}

impl LifecycleInput {
    /// This input, with anything it leaves out taken from `base`.
    pub fn over(&self, base: &LifecycleInput) -> LifecycleInput {
        let remind = match (&self.remind, &base.remind) {
            (Some(mine), Some(theirs)) => Some(RemindInput {
                after_seconds: mine.after_seconds.or(theirs.after_seconds),
                every_seconds: mine.every_seconds.or(theirs.every_seconds),
                max: mine.max.or(theirs.max),
            }),
            (mine, theirs) => mine.clone().or_else(|| theirs.clone()),
        };
        let timeout = match (&self.timeout, &base.timeout) {
            (Some(mine), Some(theirs)) => Some(TimeoutInput {
                after_seconds: mine.after_seconds.or(theirs.after_seconds),
                fallback: mine.fallback.clone().or_else(|| theirs.fallback.clone()),
            }),
            (mine, theirs) => mine.clone().or_else(|| theirs.clone()),
        };
        LifecycleInput {
            remind,
            escalate: self.escalate.clone().or_else(|| base.escalate.clone()),
            timeout,
        }
    }
}

/// The server's SLA policy: lifecycle defaults for every task, and per task type.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SlaDefaults {
    pub all: LifecycleInput,
    pub by_type: std::collections::HashMap<TaskType, LifecycleInput>,
}

impl SlaDefaults {
    /// The defaults for one task type: its own settings over the general ones.
    pub fn for_task(&self, task_type: TaskType) -> LifecycleInput {
        match self.by_type.get(&task_type) {
            Some(own) => own.over(&self.all),
            None => self.all.clone(),
        }
    }
}

/// Everything a request says about timing: the AXP fields and the `lifecycle` object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TimingRequest {
    pub remind_after_seconds: Option<u64>,
    pub remind_interval_seconds: Option<u64>,
    pub max_reminders: Option<u32>,
    pub escalate_to: Vec<String>,
    pub deadline_at: Option<Timestamp>,
    pub lifecycle: Option<LifecycleInput>,
}

impl TimingRequest {
    /// Refuses any duration longer than [`MAX_DURATION_SECONDS`], naming it.
    fn check_durations(&self) -> Result<()> {
        let mut durations = vec![
            (
                "remind_after_seconds".to_string(),
                self.remind_after_seconds,
            ),
            (
                "remind_interval_seconds".to_string(),
                self.remind_interval_seconds,
            ),
        ];
        if let Some(lifecycle) = &self.lifecycle {
            if let Some(remind) = &lifecycle.remind {
                durations.push((
                    "lifecycle.remind.after_seconds".into(),
                    remind.after_seconds,
                ));
                durations.push((
                    "lifecycle.remind.every_seconds".into(),
                    remind.every_seconds,
                ));
            }
            for (index, stage) in lifecycle.escalate.iter().flatten().enumerate() {
                durations.push((
                    format!("lifecycle.escalate[{index}].after_seconds"),
                    Some(stage.after_seconds),
                ));
            }
            if let Some(timeout) = &lifecycle.timeout {
                durations.push((
                    "lifecycle.timeout.after_seconds".into(),
                    timeout.after_seconds,
                ));
            }
        }
        for (field, seconds) in durations {
            if let Some(seconds) = seconds
                && seconds > MAX_DURATION_SECONDS
            {
                return Err(Error::invalid_field(
                    &field,
                    format!(
                        "{seconds} seconds is more than the longest allowed, 10 years ({MAX_DURATION_SECONDS} seconds)"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn mentions_reminders_or_escalation(&self) -> bool {
        self.remind_after_seconds.is_some()
            || self.remind_interval_seconds.is_some()
            || self.max_reminders.is_some()
            || !self.escalate_to.is_empty()
            || self
                .lifecycle
                .as_ref()
                .is_some_and(|l| l.remind.is_some() || l.escalate.is_some())
    }
}

/// What resolving a policy needs to know about the task.
pub struct PolicyContext<'a> {
    pub started_at: Timestamp,
    /// `None` for agent work, which only ever times out.
    pub task_type: Option<TaskType>,
    pub allowed_outcomes: &'a [String],
    /// The server's SLA defaults for this task type, if configured.
    pub defaults: Option<&'a LifecycleInput>,
}

fn first<T: Copy>(options: [Option<T>; 3]) -> Option<T> {
    options.into_iter().flatten().next()
}

impl LifecyclePolicy {
    /// Resolves the policy: request first, then SLA defaults, then built-ins;
    /// refuses combinations that cannot work, saying why.
    pub fn resolve(request: &TimingRequest, context: &PolicyContext) -> Result<LifecyclePolicy> {
        request.check_durations()?;
        let lifecycle = request.lifecycle.clone().unwrap_or_default();
        let defaults = context.defaults.cloned().unwrap_or_default();
        if context.task_type.is_none() && request.mentions_reminders_or_escalation() {
            return Err(Error::invalid(
                "lifecycle_needs_human_task",
                "reminders and escalation apply to human tasks; this intent has no human_task",
            ));
        }
        if let Some(deadline) = request.deadline_at
            && deadline <= context.started_at
        {
            return Err(Error::invalid_field(
                "deadline_at",
                format!("{deadline} is not in the future"),
            ));
        }

        // Timeout: an explicit duration, else the deadline, else the SLA, else 8 h.
        let timeout_input = lifecycle.timeout.clone().unwrap_or_default();
        let default_timeout = defaults.timeout.clone().unwrap_or_default();
        let timeout_at = match (timeout_input.after_seconds, request.deadline_at) {
            (Some(_), Some(_)) => {
                return Err(Error::invalid_field(
                    "lifecycle.timeout.after_seconds",
                    "give either deadline_at or lifecycle.timeout.after_seconds, not both: they would disagree about when the task ends",
                ));
            }
            (Some(after), None) => Some(context.started_at.plus_seconds(after as i64)),
            (None, Some(deadline)) => Some(deadline),
            (None, None) if context.task_type.is_some() => Some(
                context.started_at.plus_seconds(
                    default_timeout
                        .after_seconds
                        .unwrap_or(DEFAULT_TIMEOUT_AFTER) as i64,
                ),
            ),
            (None, None) => None,
        };
        let allowed = |fallback: &Fallback| match fallback {
            Fallback::Outcome(outcome) => context.allowed_outcomes.contains(outcome),
            Fallback::Fail | Fallback::Cancel => true,
        };
        let fallback = match (timeout_input.fallback, default_timeout.fallback) {
            (Some(asked), _) => asked,
            // A server default the task cannot use (its outcomes are its own) is
            // not the agent's mistake: such a task simply fails on timeout.
            (None, Some(default)) if allowed(&default) => default,
            (None, _) => Fallback::Fail,
        };
        if let Fallback::Outcome(outcome) = &fallback
            && !allowed(&fallback)
        {
            let why = if context.task_type.is_none() {
                "agent work can only fail or cancel on timeout".to_string()
            } else {
                format!(
                    "`{outcome}` is not one of the task's outcomes ({})",
                    context.allowed_outcomes.join(", ")
                )
            };
            return Err(Error::invalid_field("lifecycle.timeout.fallback", why));
        }
        let timeout = timeout_at.map(|at| TimeoutPolicy { at, fallback });

        if context.task_type.is_none() {
            return Ok(LifecyclePolicy {
                remind: None,
                escalate: vec![],
                timeout,
            });
        }

        let remind_input = lifecycle.remind.clone().unwrap_or_default();
        let default_remind = defaults.remind.clone().unwrap_or_default();
        let remind = RemindPolicy {
            after_seconds: first([
                remind_input.after_seconds,
                request.remind_after_seconds,
                default_remind.after_seconds,
            ])
            .unwrap_or(DEFAULT_REMIND_AFTER),
            every_seconds: first([
                remind_input.every_seconds,
                request.remind_interval_seconds,
                default_remind.every_seconds,
            ])
            .unwrap_or(DEFAULT_REMIND_EVERY),
            max: first([remind_input.max, request.max_reminders, default_remind.max]),
        };
        if remind.every_seconds == 0 {
            return Err(Error::invalid_field(
                "remind_interval_seconds",
                "must be at least 1 second between reminders",
            ));
        }

        let deadline_passed = |after: u64| {
            timeout
                .as_ref()
                .is_some_and(|timeout| context.started_at.plus_seconds(after as i64) >= timeout.at)
        };
        let escalation_asked = lifecycle.escalate.is_some() || !request.escalate_to.is_empty();
        let escalate = match (lifecycle.escalate, request.escalate_to.is_empty()) {
            (Some(stages), _) => stages,
            // AXP: after the last reminder's interval has passed, reassign.
            (None, false) => {
                let after = match remind.max {
                    Some(max) if max > 0 => {
                        remind.after_seconds + u64::from(max) * remind.every_seconds
                    }
                    _ => DEFAULT_ESCALATE_AFTER,
                };
                vec![StageInput {
                    after_seconds: after,
                    to: OneOrMany::Many(request.escalate_to.clone()),
                }]
            }
            // Default stages the deadline leaves no room for are dropped, not refused.
            (None, true) => defaults
                .escalate
                .unwrap_or_default()
                .into_iter()
                .filter(|stage| !deadline_passed(stage.after_seconds))
                .collect(),
        };
        let mut stages = Vec::with_capacity(escalate.len());
        for (index, stage) in escalate.into_iter().enumerate() {
            let field = format!("lifecycle.escalate[{index}]");
            let to = validate_assignee_list(&format!("{field}.to"), stage.to.into_vec())?;
            if let Some(previous) = stages.last().map(|s: &EscalationStage| s.after_seconds)
                && stage.after_seconds <= previous
            {
                return Err(Error::invalid_field(
                    &format!("{field}.after_seconds"),
                    format!(
                        "stage {} at {}s must come after stage {index} at {previous}s",
                        index + 1,
                        stage.after_seconds
                    ),
                ));
            }
            if escalation_asked
                && let Some(timeout) = &timeout
                && deadline_passed(stage.after_seconds)
            {
                return Err(Error::invalid_field(
                    &format!("{field}.after_seconds"),
                    format!(
                        "escalation stage {} at {}s comes after the deadline ({})",
                        index + 1,
                        stage.after_seconds,
                        timeout.at
                    ),
                ));
            }
            stages.push(EscalationStage {
                after_seconds: stage.after_seconds,
                to,
            });
        }
        let first_reminder_asked =
            remind_input.after_seconds.is_some() || request.remind_after_seconds.is_some();
        let reminders_fit = !deadline_passed(remind.after_seconds);
        if let Some(timeout) = &timeout
            && remind.max != Some(0)
            && first_reminder_asked
            && !reminders_fit
        {
            return Err(Error::invalid_field(
                "remind_after_seconds",
                format!(
                    "the first reminder at {}s would come after the deadline ({})",
                    remind.after_seconds, timeout.at
                ),
            ));
        }
        Ok(LifecyclePolicy {
            remind: (remind.max != Some(0) && reminders_fit).then_some(remind),
            escalate: stages,
            timeout,
        })
    }

    /// The timers a task gets when it starts waiting at `started_at`.
    pub fn initial_timers(&self, started_at: Timestamp) -> Vec<TimerSpec> {
        let mut timers = Vec::new();
        if let Some(remind) = &self.remind {
            timers.push(TimerSpec {
                kind: TimerKind::Remind,
                due_at: started_at.plus_seconds(remind.after_seconds as i64),
                attempt: 1,
            });
        }
        if let Some(stage) = self.escalate.first() {
            timers.push(TimerSpec {
                kind: TimerKind::Escalate,
                due_at: started_at.plus_seconds(stage.after_seconds as i64),
                attempt: 1,
            });
        }
        if let Some(timeout) = &self.timeout {
            timers.push(TimerSpec {
                kind: TimerKind::Timeout,
                due_at: timeout.at,
                attempt: 1,
            });
        }
        timers
    }

    /// The reminder after reminder `sent`, which was due at `due_at` and fired at
    /// `now`. A reminder fired late is not repeated for the intervals missed: the
    /// next one comes a full interval after this one actually went out.
    pub fn next_reminder(&self, sent: u32, due_at: Timestamp, now: Timestamp) -> Option<TimerSpec> {
        let remind = self.remind.as_ref()?;
        if remind.max.is_some_and(|max| sent >= max) {
            return None;
        }
        let on_schedule = due_at.plus_seconds(remind.every_seconds as i64);
        let due_at = if on_schedule > now {
            on_schedule
        } else {
            now.plus_seconds(remind.every_seconds as i64)
        };
        Some(TimerSpec {
            kind: TimerKind::Remind,
            due_at,
            attempt: sent + 1,
        })
    }

    /// Stage `stage` (1-based) of the escalation ladder.
    pub fn escalation_stage(&self, stage: u32) -> Option<&EscalationStage> {
        self.escalate.get((stage as usize).checked_sub(1)?)
    }

    /// The escalation after stage `stage`, relative to when the task started.
    pub fn next_escalation(&self, stage: u32, started_at: Timestamp) -> Option<TimerSpec> {
        let next = self.escalation_stage(stage + 1)?;
        Some(TimerSpec {
            kind: TimerKind::Escalate,
            due_at: started_at.plus_seconds(next.after_seconds as i64),
            attempt: stage + 1,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimerKind {
    Remind,
    Escalate,
    Timeout,
}

impl TimerKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            TimerKind::Remind => "remind",
            TimerKind::Escalate => "escalate",
            TimerKind::Timeout => "timeout",
        }
    }

    pub fn parse(text: &str) -> Option<TimerKind> {
        [TimerKind::Remind, TimerKind::Escalate, TimerKind::Timeout]
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }
}

/// A timer to schedule: one per kind per intent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerSpec {
    pub kind: TimerKind,
    pub due_at: Timestamp,
    /// The reminder number, or the escalation stage, this timer fires.
    pub attempt: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn start() -> Timestamp {
        Timestamp::parse("2026-11-21T12:00:00Z").unwrap()
    }

    fn outcomes() -> Vec<String> {
        vec!["approved".into(), "rejected".into()]
    }

    fn resolve(
        request: TimingRequest,
        defaults: Option<&LifecycleInput>,
    ) -> Result<LifecyclePolicy> {
        LifecyclePolicy::resolve(
            &request,
            &PolicyContext {
                started_at: start(),
                task_type: Some(TaskType::Approval),
                allowed_outcomes: &outcomes(),
                defaults,
            },
        )
    }

    fn lifecycle(value: Value) -> Option<LifecycleInput> {
        Some(LifecycleInput::parse(&value).unwrap())
    }

    #[test]
    fn built_in_defaults_remind_at_5m_then_every_30m_and_time_out_at_8h() {
        let policy = resolve(TimingRequest::default(), None).unwrap();
        assert_eq!(
            policy.remind,
            Some(RemindPolicy {
                after_seconds: 300,
                every_seconds: 1800,
                max: None
            })
        );
        assert!(policy.escalate.is_empty(), "nobody to escalate to");
        let timeout = policy.timeout.clone().unwrap();
        assert_eq!(timeout.at, start().plus_seconds(8 * 3600));
        assert_eq!(timeout.fallback, Fallback::Fail);
        let timers = policy.initial_timers(start());
        assert_eq!(
            timers
                .iter()
                .map(|t| (t.kind, start().seconds_until(&t.due_at)))
                .collect::<Vec<_>>(),
            [(TimerKind::Remind, 300), (TimerKind::Timeout, 28_800)]
        );
    }

    #[test]
    fn the_lifecycle_objects_max_also_times_the_axp_escalation() {
        let policy = resolve(
            TimingRequest {
                remind_after_seconds: Some(60),
                remind_interval_seconds: Some(120),
                max_reminders: Some(5),
                escalate_to: vec!["backup@example.com".into()],
                lifecycle: lifecycle(json!({"remind": {"max": 1}})),
                ..Default::default()
            },
            None,
        )
        .unwrap();
        assert_eq!(policy.remind.as_ref().unwrap().max, Some(1));
        assert_eq!(
            policy.escalate[0].after_seconds,
            60 + 120,
            "after the one reminder's interval"
        );
    }

    #[test]
    fn axp_fields_escalate_after_the_last_reminder() {
        let policy = resolve(
            TimingRequest {
                remind_after_seconds: Some(60),
                remind_interval_seconds: Some(120),
                max_reminders: Some(2),
                escalate_to: vec!["backup@example.com".into()],
                ..Default::default()
            },
            None,
        )
        .unwrap();
        assert_eq!(policy.remind.as_ref().unwrap().max, Some(2));
        // Reminders at 60s and 180s; escalation one interval after the second.
        assert_eq!(
            policy.escalate,
            [EscalationStage {
                after_seconds: 300,
                to: vec!["backup@example.com".into()]
            }]
        );
        let reminder = policy
            .next_reminder(1, start().plus_seconds(60), start().plus_seconds(60))
            .unwrap();
        assert_eq!(
            (reminder.attempt, start().seconds_until(&reminder.due_at)),
            (2, 180)
        );
        assert!(
            policy
                .next_reminder(2, start().plus_seconds(180), start().plus_seconds(180))
                .is_none()
        );
    }

    #[test]
    fn the_lifecycle_object_beats_the_sla_which_beats_the_built_ins() {
        let sla = LifecycleInput::parse(&json!({
            "remind": {"after_seconds": 600, "every_seconds": 900},
            "escalate": [{"after_seconds": 1200, "to": "team:oncall"}],
            "timeout": {"after_seconds": 7200, "fallback": {"outcome": "rejected"}}
        }))
        .unwrap();
        let from_sla = resolve(TimingRequest::default(), Some(&sla)).unwrap();
        assert_eq!(from_sla.remind.as_ref().unwrap().after_seconds, 600);
        assert_eq!(from_sla.escalate[0].to, ["team:oncall"]);
        assert_eq!(
            from_sla.timeout.as_ref().unwrap().fallback,
            Fallback::Outcome("rejected".into())
        );

        let request = TimingRequest {
            lifecycle: lifecycle(json!({
                "remind": {"after_seconds": 30},
                "escalate": [
                    {"after_seconds": 60, "to": ["backup@example.com"]},
                    {"after_seconds": 120, "to": ["team:oncall"]},
                    {"after_seconds": 180, "to": ["team:leads"]}
                ],
                "timeout": {"after_seconds": 300, "fallback": "cancel"}
            })),
            ..Default::default()
        };
        let policy = resolve(request, Some(&sla)).unwrap();
        assert_eq!(policy.remind.as_ref().unwrap().after_seconds, 30);
        assert_eq!(
            policy.remind.as_ref().unwrap().every_seconds,
            900,
            "unset parts fall back to the SLA"
        );
        assert_eq!(policy.escalate.len(), 3);
        assert_eq!(policy.timeout.unwrap().fallback, Fallback::Cancel);
    }

    #[test]
    fn the_ladder_climbs_stage_by_stage_from_the_start() {
        let policy = resolve(
            TimingRequest {
                lifecycle: lifecycle(json!({"escalate": [
                    {"after_seconds": 60, "to": "b@x.io"},
                    {"after_seconds": 120, "to": "team:oncall"}
                ]})),
                ..Default::default()
            },
            None,
        )
        .unwrap();
        assert_eq!(policy.escalation_stage(1).unwrap().to, ["b@x.io"]);
        let next = policy.next_escalation(1, start()).unwrap();
        assert_eq!(
            (next.attempt, start().seconds_until(&next.due_at)),
            (2, 120)
        );
        assert!(policy.next_escalation(2, start()).is_none());
        assert!(policy.escalation_stage(0).is_none());
    }

    #[test]
    fn a_late_reminder_is_sent_once_not_once_per_missed_interval() {
        let policy = resolve(TimingRequest::default(), None).unwrap();
        let due = start().plus_seconds(300);
        let hours_late = due.plus_seconds(5 * 3600);
        let next = policy.next_reminder(1, due, hours_late).unwrap();
        assert_eq!(next.attempt, 2);
        assert_eq!(
            hours_late.seconds_until(&next.due_at),
            1800,
            "a full interval after it actually went out"
        );
    }

    #[test]
    fn impossible_combinations_are_refused_with_a_reason() {
        let cases = [
            (
                TimingRequest {
                    remind_interval_seconds: Some(0),
                    ..Default::default()
                },
                "remind_interval_seconds",
                "at least 1",
            ),
            (
                TimingRequest {
                    deadline_at: Some(start().plus_seconds(-10)),
                    ..Default::default()
                },
                "deadline_at",
                "not in the future",
            ),
            (
                TimingRequest {
                    deadline_at: Some(start().plus_seconds(600)),
                    lifecycle: lifecycle(
                        json!({"escalate": [{"after_seconds": 900, "to": "b@x.io"}]}),
                    ),
                    ..Default::default()
                },
                "lifecycle.escalate[0].after_seconds",
                "after the deadline",
            ),
            (
                TimingRequest {
                    lifecycle: lifecycle(
                        json!({"escalate": [{"after_seconds": 90, "to": "b@x.io"}, {"after_seconds": 60, "to": "c@x.io"}]}),
                    ),
                    ..Default::default()
                },
                "lifecycle.escalate[1].after_seconds",
                "must come after",
            ),
            (
                TimingRequest {
                    lifecycle: lifecycle(
                        json!({"escalate": [{"after_seconds": 90, "to": "bad name"}]}),
                    ),
                    ..Default::default()
                },
                "lifecycle.escalate[0].to",
                "bad name",
            ),
            (
                TimingRequest {
                    lifecycle: lifecycle(
                        json!({"timeout": {"after_seconds": 60, "fallback": {"outcome": "maybe"}}}),
                    ),
                    ..Default::default()
                },
                "lifecycle.timeout.fallback",
                "maybe",
            ),
            (
                TimingRequest {
                    remind_after_seconds: Some(7200),
                    lifecycle: lifecycle(json!({"timeout": {"after_seconds": 3600}})),
                    ..Default::default()
                },
                "remind_after_seconds",
                "after the deadline",
            ),
        ];
        for (request, field, words) in cases {
            let err = resolve(request, None).unwrap_err();
            assert_eq!(err.details["field"], field, "{err:?}");
            assert!(err.message.contains(words), "{}", err.message);
        }
        for bad in [
            json!({"remind": {"after_seconds": -5}}),
            json!({"timeout": {"fallback": "explode"}}),
            json!({"snooze": {}}),
        ] {
            assert!(LifecycleInput::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn agent_work_only_times_out() {
        let context = PolicyContext {
            started_at: start(),
            task_type: None,
            allowed_outcomes: &[],
            defaults: None,
        };
        let plain = LifecyclePolicy::resolve(&TimingRequest::default(), &context).unwrap();
        assert_eq!(plain, LifecyclePolicy::default(), "no timers unless asked");
        let deadline = TimingRequest {
            deadline_at: Some(start().plus_seconds(60)),
            ..Default::default()
        };
        let policy = LifecyclePolicy::resolve(&deadline, &context).unwrap();
        assert_eq!(policy.timeout.unwrap().at, start().plus_seconds(60));
        let reminders = TimingRequest {
            remind_after_seconds: Some(5),
            ..Default::default()
        };
        let err = LifecyclePolicy::resolve(&reminders, &context).unwrap_err();
        assert_eq!(err.code, "lifecycle_needs_human_task");
    }

    #[test]
    fn max_zero_means_no_reminders() {
        let policy = resolve(
            TimingRequest {
                max_reminders: Some(0),
                ..Default::default()
            },
            None,
        )
        .unwrap();
        assert!(policy.remind.is_none());
        assert!(
            policy
                .initial_timers(start())
                .iter()
                .all(|t| t.kind != TimerKind::Remind)
        );
    }

    #[test]
    fn fallbacks_round_trip() {
        for fallback in [
            Fallback::Fail,
            Fallback::Cancel,
            Fallback::Outcome("rejected".into()),
        ] {
            let text = serde_json::to_value(&fallback).unwrap();
            assert_eq!(Fallback::parse(&text).unwrap(), fallback);
        }
    }
}
