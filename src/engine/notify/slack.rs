//! A Slack incoming webhook: a Block Kit message with the task's title, the agent
//! asking, the due time and the task id.

use serde_json::{Value, json};

use super::{NotifyKind, check_status, clip, describe_http_error, text_field};

/// Slack limits a header to 150 characters.
const HEADER_LIMIT: usize = 150;

/// `&`, `<` and `>` are control characters in Slack's mrkdwn.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The Block Kit payload for a notification message.
pub fn blocks(message: &Value) -> Value {
    let headline = NotifyKind::headline(message);
    let due = message
        .get("due_at")
        .and_then(Value::as_str)
        .unwrap_or("no deadline");
    let field = |label: &str, value: &str| json!({"type": "mrkdwn", "text": format!("*{label}*\n{}", escape(value))});
    let intent_id = text_field(message, "intent_id");
    json!({
        // The notification text is mrkdwn: a title must not @-mention a channel.
        "text": escape(&headline),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": clip(&headline, HEADER_LIMIT), "emoji": true}},
            {"type": "section", "fields": [
                field("Agent", text_field(message, "agent")),
                field("Due", due),
                field("Type", text_field(message, "task_type")),
                {"type": "mrkdwn", "text": format!("*Task*\n`{}`", escape(intent_id))},
            ]},
            {"type": "context", "elements": [
                {"type": "mrkdwn", "text": format!("Decide in the signoff inbox, or: `signoff tasks get {}`", escape(intent_id))}
            ]}
        ]
    })
}

pub async fn send(client: &reqwest::Client, url: &str, message: &Value) -> Result<(), String> {
    let response = client
        .post(url)
        .json(&blocks(message))
        .send()
        .await
        .map_err(describe_http_error)?;
    check_status(response).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reminder_renders_title_agent_due_time_and_id() {
        let message = json!({
            "event": "task.reminder", "reminder_no": 2, "title": "Deploy <v2> & more",
            "agent": "agent://ci/deploy", "due_at": "2026-11-21T20:00:00.000000Z",
            "task_type": "approval", "intent_id": "0193-abc",
        });
        let payload = blocks(&message);
        assert_eq!(payload["text"], "Reminder 2: Deploy &lt;v2&gt; &amp; more");
        assert_eq!(payload["blocks"][0]["type"], "header");
        let fields = payload["blocks"][1]["fields"].to_string();
        for expected in [
            "agent://ci/deploy",
            "2026-11-21T20:00:00.000000Z",
            "`0193-abc`",
            "approval",
        ] {
            assert!(fields.contains(expected), "{expected} in {fields}");
        }
        assert!(payload.to_string().contains("0193-abc"));
    }

    #[test]
    fn long_headers_are_clipped_to_slacks_limit() {
        let message = json!({"event": "task.assigned", "title": "x".repeat(400)});
        let header = blocks(&message)["blocks"][0]["text"]["text"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(header.chars().count(), HEADER_LIMIT);
    }
}
