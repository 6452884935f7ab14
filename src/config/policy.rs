//! `[sla.*]` and `[notify]`: the server's lifecycle defaults and notification
//! channels, parsed from `config.toml` and checked with messages that name the key.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{ConfigError, invalid};
use crate::domain::lifecycle::{MAX_DURATION_SECONDS, RemindInput, StageInput, TimeoutInput};
use crate::domain::task::{OneOrMany, TaskType, validate_assignee_list};
use crate::domain::time::parse_duration;
use crate::domain::{Fallback, LifecycleInput, SlaDefaults};
use crate::engine::notify::{NotifyRoute, NotifySettings, SmtpSecurity, SmtpSettings};

/// A duration: `"30m"`, `"1h30m"`, or a number of seconds.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum DurationValue {
    Seconds(i64),
    Text(String),
}

impl DurationValue {
    fn seconds(&self, key: &str) -> Result<u64, ConfigError> {
        let seconds = match self {
            DurationValue::Seconds(seconds) => Some(*seconds),
            DurationValue::Text(text) => parse_duration(text),
        };
        match seconds {
            Some(seconds) if seconds < 0 => Err(invalid(key, "must not be negative")),
            Some(seconds) if seconds as u64 > MAX_DURATION_SECONDS => {
                Err(invalid(key, "is longer than 10 years"))
            }
            Some(seconds) => Ok(seconds as u64),
            None => Err(invalid(
                key,
                "is not a duration; write e.g. \"90s\", \"30m\", \"1h30m\", \"2d\" or a number of seconds",
            )),
        }
    }
}

/// `fail`, `cancel`, an outcome name, or `{ outcome = "..." }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum FallbackValue {
    Word(String),
    Table { outcome: String },
}

impl FallbackValue {
    fn fallback(&self) -> Fallback {
        match self {
            FallbackValue::Word(word) if word == "fail" => Fallback::Fail,
            FallbackValue::Word(word) if word == "cancel" => Fallback::Cancel,
            FallbackValue::Word(outcome) | FallbackValue::Table { outcome } => {
                Fallback::Outcome(outcome.trim().to_string())
            }
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageSection {
    pub after: DurationValue,
    pub to: OneOrMany,
}

/// `[sla.default]` or `[sla.<task_type>]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlaSection {
    pub remind_after: Option<DurationValue>,
    pub remind_every: Option<DurationValue>,
    pub max_reminders: Option<u32>,
    pub escalate: Option<Vec<StageSection>>,
    pub timeout: Option<DurationValue>,
    pub fallback: Option<FallbackValue>,
}

fn optional_seconds(
    value: &Option<DurationValue>,
    key: String,
) -> Result<Option<u64>, ConfigError> {
    value.as_ref().map(|value| value.seconds(&key)).transpose()
}

impl SlaSection {
    /// `task_type` is `None` for `[sla.default]`.
    fn input(
        &self,
        name: &str,
        task_type: Option<TaskType>,
    ) -> Result<LifecycleInput, ConfigError> {
        let key = |field: &str| format!("sla.{name}.{field}");
        let remind_after = optional_seconds(&self.remind_after, key("remind_after"))?;
        let remind_every = optional_seconds(&self.remind_every, key("remind_every"))?;
        if remind_every == Some(0) {
            return Err(invalid(&key("remind_every"), "must be at least 1 second"));
        }
        let remind =
            (remind_after.is_some() || remind_every.is_some() || self.max_reminders.is_some())
                .then_some(RemindInput {
                    after_seconds: remind_after,
                    every_seconds: remind_every,
                    max: self.max_reminders,
                });
        let escalate = match &self.escalate {
            None => None,
            Some(stages) => {
                let mut parsed: Vec<StageInput> = Vec::with_capacity(stages.len());
                for (index, stage) in stages.iter().enumerate() {
                    let stage_key = key(&format!("escalate[{index}]"));
                    let after_seconds = stage.after.seconds(&format!("{stage_key}.after"))?;
                    if let Some(previous) = parsed.last()
                        && after_seconds <= previous.after_seconds
                    {
                        return Err(invalid(
                            &format!("{stage_key}.after"),
                            "each stage must come later than the one before",
                        ));
                    }
                    let to = validate_assignee_list(
                        &format!("{stage_key}.to"),
                        stage.to.clone().into_vec(),
                    )
                    .map_err(|err| invalid(&format!("{stage_key}.to"), err.message))?;
                    parsed.push(StageInput {
                        after_seconds,
                        to: OneOrMany::Many(to),
                    });
                }
                Some(parsed)
            }
        };
        let timeout_after = optional_seconds(&self.timeout, key("timeout"))?;
        if timeout_after == Some(0) {
            return Err(invalid(&key("timeout"), "must be longer than 0 seconds"));
        }
        let fallback = self.fallback.as_ref().map(FallbackValue::fallback);
        if let Some(Fallback::Outcome(outcome)) = &fallback {
            match task_type {
                None => {
                    return Err(invalid(
                        &key("fallback"),
                        format!(
                            "`{outcome}` is an outcome, and outcomes differ by task type: use \"fail\" or \"cancel\" here, or set the outcome under [sla.<task_type>]"
                        ),
                    ));
                }
                Some(task_type) if !task_type.default_outcomes().contains(&outcome.as_str()) => {
                    return Err(invalid(
                        &key("fallback"),
                        format!(
                            "`{outcome}` is not an outcome of {task_type} tasks; use \"fail\", \"cancel\" or one of: {}",
                            task_type.default_outcomes().join(", ")
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        let timeout = (timeout_after.is_some() || fallback.is_some()).then_some(TimeoutInput {
            after_seconds: timeout_after,
            fallback,
        });
        if let (Some(stages), Some(timeout)) = (&escalate, timeout_after)
            && let Some(late) = stages
                .iter()
                .position(|stage| stage.after_seconds >= timeout)
        {
            return Err(invalid(
                &key(&format!("escalate[{late}].after")),
                "comes at or after the timeout, so it would never happen",
            ));
        }
        Ok(LifecycleInput {
            remind,
            escalate,
            timeout,
        })
    }
}

/// Builds the SLA defaults from `[sla.default]` and `[sla.<task_type>]` tables.
pub fn sla_defaults(sections: &BTreeMap<String, SlaSection>) -> Result<SlaDefaults, ConfigError> {
    let mut defaults = SlaDefaults::default();
    for (name, section) in sections {
        if name == "default" {
            defaults.all = section.input(name, None)?;
            continue;
        }
        let task_type = TaskType::parse(name).map_err(|_| {
            invalid(
                &format!("sla.{name}"),
                format!(
                    "`{name}` is not a task type; use `default` or one of: {}",
                    TaskType::ALL
                        .iter()
                        .map(|t| t.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })?;
        defaults
            .by_type
            .insert(task_type, section.input(name, Some(task_type))?);
    }
    Ok(defaults)
}

/// `[notify.smtp]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSection {
    pub host: String,
    pub port: Option<u16>,
    pub security: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// The name of an environment variable holding the password, to keep it out
    /// of the file.
    pub password_env: Option<String>,
    pub from: String,
}

/// `[[notify.routes]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    #[serde(rename = "for")]
    pub recipient: String,
    pub email: Option<String>,
    pub slack_webhook: Option<String>,
    pub webhook: Option<String>,
    pub webhook_secret: Option<String>,
}

/// `[notify]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySection {
    pub retry_initial: Option<DurationValue>,
    pub max_attempts: Option<u32>,
    pub smtp: Option<SmtpSection>,
    #[serde(default)]
    pub routes: Vec<RouteSection>,
}

fn http_url(key: &str, text: &str) -> Result<String, ConfigError> {
    match url::Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() => {
            Ok(text.to_string())
        }
        _ => Err(invalid(key, format!("`{text}` is not an http(s) URL"))),
    }
}

fn email_address(key: &str, text: &str) -> Result<String, ConfigError> {
    text.parse::<lettre::message::Mailbox>()
        .map(|_| text.to_string())
        .map_err(|err| invalid(key, format!("`{text}` is not an email address ({err})")))
}

impl SmtpSection {
    fn settings(&self) -> Result<SmtpSettings, ConfigError> {
        if self.host.trim().is_empty() {
            return Err(invalid("notify.smtp.host", "is empty"));
        }
        let security = match &self.security {
            None => SmtpSecurity::StartTls,
            Some(text) => SmtpSecurity::parse(text).ok_or_else(|| {
                invalid(
                    "notify.smtp.security",
                    format!("`{text}` is not one of: none, starttls, tls"),
                )
            })?,
        };
        let port = self.port.unwrap_or(match security {
            SmtpSecurity::None => 25,
            SmtpSecurity::StartTls => 587,
            SmtpSecurity::Tls => 465,
        });
        if port == 0 {
            return Err(invalid("notify.smtp.port", "must be between 1 and 65535"));
        }
        let password = match (&self.password, &self.password_env) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "notify.smtp.password_env",
                    "give password or password_env, not both",
                ));
            }
            (Some(password), None) => Some(password.clone()),
            (None, Some(variable)) => Some(std::env::var(variable).map_err(|_| {
                invalid(
                    "notify.smtp.password_env",
                    format!("the environment variable {variable} is not set"),
                )
            })?),
            (None, None) => None,
        };
        if password.is_some() != self.username.is_some() {
            return Err(invalid(
                "notify.smtp.username",
                "a login needs both username and a password",
            ));
        }
        email_address("notify.smtp.from", &self.from)?;
        Ok(SmtpSettings {
            host: self.host.trim().to_string(),
            port,
            security,
            username: self.username.clone(),
            password,
            from: self.from.clone(),
        })
    }
}

impl RouteSection {
    fn route(&self, index: usize, has_smtp: bool) -> Result<NotifyRoute, ConfigError> {
        let key = |field: &str| format!("notify.routes[{index}].{field}");
        let recipient = self.recipient.trim();
        if recipient != "*" {
            validate_assignee_list(&key("for"), vec![recipient.to_string()])
                .map_err(|err| invalid(&key("for"), err.message))?;
        }
        let email = self
            .email
            .as_deref()
            .map(|text| email_address(&key("email"), text))
            .transpose()?;
        if email.is_some() && !has_smtp {
            return Err(invalid(
                &key("email"),
                "email needs [notify.smtp] to say how to send it",
            ));
        }
        let slack_webhook = self
            .slack_webhook
            .as_deref()
            .map(|text| http_url(&key("slack_webhook"), text))
            .transpose()?;
        let webhook = self
            .webhook
            .as_deref()
            .map(|text| http_url(&key("webhook"), text))
            .transpose()?;
        match (&webhook, &self.webhook_secret) {
            (Some(_), None) => {
                return Err(invalid(
                    &key("webhook_secret"),
                    "a webhook needs a secret to sign its requests with",
                ));
            }
            (Some(_), Some(secret)) if secret.len() < 16 => {
                return Err(invalid(
                    &key("webhook_secret"),
                    "must be at least 16 characters",
                ));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    &key("webhook_secret"),
                    "is set but there is no webhook",
                ));
            }
            _ => {}
        }
        if email.is_none() && slack_webhook.is_none() && webhook.is_none() {
            return Err(invalid(
                &format!("notify.routes[{index}]"),
                "names no channel: give email, slack_webhook or webhook",
            ));
        }
        Ok(NotifyRoute {
            recipient: recipient.to_string(),
            email,
            slack_webhook,
            webhook,
            webhook_secret: self.webhook_secret.clone(),
        })
    }
}

impl NotifySection {
    pub fn settings(&self) -> Result<NotifySettings, ConfigError> {
        let defaults = NotifySettings::default();
        let smtp = self.smtp.as_ref().map(SmtpSection::settings).transpose()?;
        let routes = self
            .routes
            .iter()
            .enumerate()
            .map(|(index, route)| route.route(index, smtp.is_some()))
            .collect::<Result<Vec<_>, _>>()?;
        let retry_initial_seconds = match &self.retry_initial {
            None => defaults.retry_initial_seconds,
            Some(value) => match value.seconds("notify.retry_initial")? {
                0 => return Err(invalid("notify.retry_initial", "must be at least 1 second")),
                seconds => seconds,
            },
        };
        let max_attempts = match self.max_attempts {
            None => defaults.max_attempts,
            Some(0) => return Err(invalid("notify.max_attempts", "must be at least 1")),
            Some(attempts) => attempts,
        };
        Ok(NotifySettings {
            smtp,
            routes,
            retry_initial_seconds,
            max_attempts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FileConfig;

    fn parse(text: &str) -> Result<FileConfig, String> {
        toml::from_str(text).map_err(|err| err.to_string())
    }

    fn sla(text: &str) -> Result<SlaDefaults, String> {
        sla_defaults(&parse(text)?.sla).map_err(|err| err.to_string())
    }

    fn notify(text: &str) -> Result<NotifySettings, String> {
        parse(text)?
            .notify
            .settings()
            .map_err(|err| err.to_string())
    }

    #[test]
    fn sla_tables_become_per_type_defaults_over_the_general_ones() {
        let defaults = sla(
            r#"
            [sla.default]
            remind_after = "10m"
            remind_every = 3600
            timeout = "4h"
            fallback = "cancel"
            escalate = [{ after = "30m", to = "backup@example.com" }, { after = "2h", to = ["team:oncall"] }]
            [sla.approval]
            timeout = "1h30m"
            fallback = "rejected"
            max_reminders = 2
            "#,
        )
        .unwrap();
        let approval = defaults.for_task(TaskType::Approval);
        let remind = approval.remind.unwrap();
        assert_eq!(
            (remind.after_seconds, remind.every_seconds, remind.max),
            (Some(600), Some(3600), Some(2))
        );
        let timeout = approval.timeout.unwrap();
        assert_eq!(timeout.after_seconds, Some(5400));
        assert_eq!(timeout.fallback, Some(Fallback::Outcome("rejected".into())));
        let review = defaults.for_task(TaskType::Review);
        assert_eq!(review.timeout.unwrap().fallback, Some(Fallback::Cancel));
        assert_eq!(review.escalate.unwrap().len(), 2);
    }

    #[test]
    fn bad_sla_values_are_refused_naming_the_key() {
        let cases = [
            ("[sla.approvals]\ntimeout = \"1h\"", "sla.approvals"),
            ("[sla.default]\ntimeout = \"soon\"", "sla.default.timeout"),
            ("[sla.default]\ntimeout = -5", "must not be negative"),
            ("[sla.default]\ntimeout = \"4000d\"", "longer than 10 years"),
            (
                "[sla.default]\nremind_every = 0",
                "sla.default.remind_every",
            ),
            (
                "[sla.default]\nfallback = \"rejected\"",
                "outcomes differ by task type",
            ),
            (
                "[sla.review]\nfallback = \"approved_maybe\"",
                "not an outcome of review tasks",
            ),
            (
                "[sla.default]\nescalate = [{ after = \"1h\", to = \"a@x.io\" }, { after = \"30m\", to = \"b@x.io\" }]",
                "escalate[1].after",
            ),
            (
                "[sla.default]\ntimeout = \"1h\"\nescalate = [{ after = \"2h\", to = \"a@x.io\" }]",
                "never happen",
            ),
            (
                "[sla.default]\nescalate = [{ after = \"1h\", to = \"not a reviewer\" }]",
                "escalate[0].to",
            ),
            (
                "[sla.default]\nremind_after = \"later\"",
                "sla.default.remind_after",
            ),
            ("[sla.approval]\nmax_reminders = -1", "max_reminders"),
            ("[sla.approval]\nmax_reminders = \"3\"", "max_reminders"),
            ("[sla.default]\nremind_soon = \"1h\"", "unknown field"),
        ];
        for (text, expected) in cases {
            let error = sla(text).unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }

    #[test]
    fn notify_routes_and_smtp_are_checked() {
        let settings = notify(
            r#"
            [notify]
            retry_initial = "2s"
            max_attempts = 3
            [notify.smtp]
            host = "127.0.0.1"
            port = 2525
            security = "none"
            from = "signoff <signoff@example.com>"
            [[notify.routes]]
            for = "alice@example.com"
            email = "alice@example.com"
            webhook = "http://127.0.0.1:9/hook"
            webhook_secret = "0123456789abcdef"
            [[notify.routes]]
            for = "team:oncall"
            slack_webhook = "https://hooks.slack.com/services/T/B/x"
            "#,
        )
        .unwrap();
        assert_eq!(
            (settings.retry_initial_seconds, settings.max_attempts),
            (2, 3)
        );
        assert_eq!(settings.smtp.unwrap().port, 2525);
        assert_eq!(settings.routes.len(), 2);
        assert_eq!(settings.routes[1].recipient, "team:oncall");
    }

    #[test]
    fn bad_notify_values_are_refused_naming_the_key() {
        let smtp = "[notify.smtp]\nhost = \"localhost\"\nfrom = \"s@example.com\"\n";
        let cases = [
            ("[[notify.routes]]\nfor = \"a@x.io\"\nemail = \"a@x.io\"".to_string(), "needs [notify.smtp]"),
            ("[[notify.routes]]\nfor = \"a@x.io\"\nwebhook = \"http://h/x\"".to_string(), "webhook_secret"),
            ("[[notify.routes]]\nfor = \"a@x.io\"\nwebhook = \"ftp://h/x\"\nwebhook_secret = \"0123456789abcdef\"".to_string(), "not an http(s) URL"),
            ("[[notify.routes]]\nfor = \"a@x.io\"\nwebhook = \"http://h/x\"\nwebhook_secret = \"short\"".to_string(), "16 characters"),
            ("[[notify.routes]]\nfor = \"a@x.io\"".to_string(), "names no channel"),
            ("[[notify.routes]]\nfor = \"a@x.io\"\nslack_webhook = \"hooks.slack.com/x\"".to_string(), "notify.routes[0].slack_webhook"),
            (format!("{smtp}[[notify.routes]]\nfor = \"a@x.io\"\nemail = \"a at x.io\""), "notify.routes[0].email"),
            ("[notify.smtp]\nhost = \" \"\nfrom = \"s@example.com\"".to_string(), "notify.smtp.host"),
            (format!("{smtp}password = \"p\""), "needs both"),
            (format!("{smtp}username = \"u\"\npassword = \"p\"\npassword_env = \"P\""), "not both"),
            ("[[notify.routes]]\nfor = \"team:\"\nslack_webhook = \"https://h/x\"".to_string(), "notify.routes[0].for"),
            (format!("{smtp}security = \"ssl\""), "none, starttls, tls"),
            (format!("{smtp}port = 0"), "notify.smtp.port"),
            (format!("{smtp}username = \"u\""), "needs both"),
            (format!("{smtp}password_env = \"SIGNOFF_TEST_SURELY_UNSET\"\nusername = \"u\""), "is not set"),
            ("[notify.smtp]\nhost = \"localhost\"\nfrom = \"not an address\"".to_string(), "notify.smtp.from"),
            ("[notify]\nretry_initial = 0".to_string(), "notify.retry_initial"),
            ("[notify]\nmax_attempts = 0".to_string(), "notify.max_attempts"),
            ("[notify]\nchannels = []".to_string(), "unknown field"),
        ];
        for (text, expected) in cases {
            let error = notify(&text).unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }
}
