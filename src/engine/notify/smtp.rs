//! Email over SMTP (lettre): plain text, STARTTLS or TLS, with optional login.

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::Value;

use super::{NotifyKind, SEND_TIMEOUT, SmtpSecurity, SmtpSettings, text_field};

pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    /// Builds the transport; the error explains a bad host or sender address.
    pub fn new(settings: &SmtpSettings) -> Result<Mailer, String> {
        let host = settings.host.as_str();
        let builder = match settings.security {
            SmtpSecurity::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
            SmtpSecurity::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)
                .map_err(|err| format!("SMTP host {host}: {err}"))?,
            SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host)
                .map_err(|err| format!("SMTP host {host}: {err}"))?,
        };
        let mut builder = builder.port(settings.port).timeout(Some(SEND_TIMEOUT));
        if let (Some(username), Some(password)) = (&settings.username, &settings.password) {
            builder = builder.credentials(Credentials::new(username.clone(), password.clone()));
        }
        let from = settings
            .from
            .parse::<Mailbox>()
            .map_err(|err| format!("notify.smtp.from `{}`: {err}", settings.from))?;
        Ok(Mailer {
            transport: builder.build(),
            from,
        })
    }

    pub async fn send(&self, to: &str, message: &Value) -> Result<(), String> {
        let to = to
            .parse::<Mailbox>()
            .map_err(|err| format!("`{to}` is not an email address: {err}"))?;
        let email = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(format!("[signoff] {}", NotifyKind::headline(message)))
            .header(ContentType::TEXT_PLAIN)
            .body(body(message))
            .map_err(|err| format!("cannot build the message: {err}"))?;
        self.transport
            .send(email)
            .await
            .map(|_| ())
            .map_err(|err| format!("SMTP: {err}"))
    }
}

/// The plain-text body: what the task is, who asks, until when, and how to decide.
pub fn body(message: &Value) -> String {
    let due = message
        .get("due_at")
        .and_then(Value::as_str)
        .unwrap_or("no deadline");
    let intent_id = text_field(message, "intent_id");
    format!(
        "{headline}\n\nType:   {task_type}\nAgent:  {agent}\nDue:    {due}\nTask:   {intent_id}\n\n\
         Decide in the signoff inbox (run `signoff`), or: signoff tasks get {intent_id}\n",
        headline = NotifyKind::headline(message),
        task_type = text_field(message, "task_type"),
        agent = text_field(message, "agent"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_body_names_the_task_agent_due_time_and_id() {
        let text = body(&json!({
            "event": "task.escalated", "stage": 2, "title": "Rotate keys",
            "agent": "agent://sec/rotator", "due_at": "2026-11-22T08:00:00.000000Z",
            "task_type": "confirmation", "intent_id": "abc-123",
        }));
        assert!(
            text.starts_with("Escalated (stage 2): Rotate keys"),
            "{text}"
        );
        for expected in [
            "agent://sec/rotator",
            "2026-11-22T08:00:00.000000Z",
            "abc-123",
            "confirmation",
        ] {
            assert!(text.contains(expected), "{expected} in {text}");
        }
    }

    #[test]
    fn bad_sender_addresses_are_refused_when_building() {
        let settings = SmtpSettings {
            host: "127.0.0.1".into(),
            port: 25,
            security: SmtpSecurity::None,
            username: None,
            password: None,
            from: "not an address".into(),
        };
        let error = Mailer::new(&settings).err().unwrap();
        assert!(error.contains("notify.smtp.from"), "{error}");
    }
}
