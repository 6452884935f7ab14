//! The detail pane: everything about the selected task, scrollable.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};

use super::list::due_label;
use super::markdown;
use super::theme::Theme;
use crate::domain::time::human_duration;
use crate::tui::state::{Detail, State};
use crate::tui::text::sanitize_line;

/// `12:03:04`, in UTC (the inbox shows UTC throughout).
pub fn clock(at: crate::domain::Timestamp) -> String {
    let at = at.datetime();
    format!("{:02}:{:02}:{:02}", at.hour(), at.minute(), at.second())
}

fn field<'a>(label: &'static str, value: String, theme: &Theme) -> Line<'a> {
    Line::from(vec![
        Span::styled(format!("{label:<10}"), theme.muted),
        Span::styled(value, theme.text),
    ])
}

pub fn lines(state: &State, theme: &Theme) -> Vec<Line<'static>> {
    let Some(row) = state.selected_row() else {
        return vec![Line::from(Span::styled(
            "Select a task to see it here.",
            theme.muted,
        ))];
    };
    let task = &row.task;
    let human = &task.human_task;
    let mut lines = vec![
        Line::from(Span::styled(human.title.clone(), theme.title)),
        Line::default(),
    ];
    lines.push(field("type", human.task_type.as_str().to_string(), theme));
    lines.push(field("outcomes", human.allowed_outcomes.join(" / "), theme));
    lines.push(field("from", task.from_agent.clone(), theme));
    let assignees = if task.assignees.is_empty() {
        "admins".to_string()
    } else {
        task.assignees.join(", ")
    };
    lines.push(field("assignees", assignees, theme));
    if let Some(needed) = human.quorum {
        let approvals = task
            .votes
            .iter()
            .filter(|vote| {
                crate::domain::verdict_of(&vote.outcome) == crate::domain::Verdict::Approving
            })
            .count();
        let mut quorum = format!("{approvals} of {needed} approvals");
        for vote in &task.votes {
            quorum.push_str(&format!(" · {} {}", vote.voter, vote.outcome));
        }
        lines.push(field("quorum", quorum, theme));
    }
    lines.push(field(
        "age",
        human_duration(task.created_at.seconds_until(&state.now)),
        theme,
    ));
    lines.push(field("due", due_label(task.due_at, state.now), theme));
    lines.push(field(
        "lifecycle",
        format!(
            "escalation stage {} · {} reminder(s)",
            task.escalation_stage, task.reminders_sent
        ),
        theme,
    ));
    let mut rules = Vec::new();
    if human.required_comment {
        rules.push("comment required");
    }
    if human.evidence_required {
        rules.push("evidence required");
    }
    if !rules.is_empty() {
        lines.push(field("rules", rules.join(", "), theme));
    }
    lines.push(field("id", task.intent_id.clone(), theme));
    if row.pending {
        lines.push(Line::from(Span::styled(
            "~ a decision is queued (undo window)",
            theme.warning,
        )));
    }
    if let Some(description) = &human.description {
        lines.push(Line::default());
        lines.extend(markdown::render(description, theme));
    }
    lines.push(Line::default());
    lines.push(Line::from(Span::styled("Payload", theme.header)));
    let (payload, events) = match state.details.get(&task.intent_id) {
        None | Some(Detail::Loading) => {
            lines.push(Line::from(Span::styled("loading…", theme.muted)));
            return lines;
        }
        Some(Detail::Failed(error)) => {
            let text = format!("unavailable: {}", sanitize_line(error));
            lines.push(Line::from(Span::styled(text, theme.error)));
            return lines;
        }
        Some(Detail::Loaded { payload, events }) => (payload, events),
    };
    // Pretty JSON escapes control characters, so the payload cannot inject anything.
    let pretty = serde_json::to_string_pretty(payload).unwrap_or_default();
    lines.extend(
        pretty
            .lines()
            .map(|line| Line::from(Span::styled(line.to_string(), theme.text))),
    );
    lines.push(Line::default());
    lines.push(Line::from(Span::styled("History", theme.header)));
    for event in events {
        lines.push(Line::from(vec![
            Span::styled(
                format!("#{:<3} {} ", event.seq, clock(event.at)),
                theme.muted,
            ),
            Span::styled(
                event.event_type.trim_start_matches("intent.").to_string(),
                theme.text,
            ),
            Span::styled(format!("  {}", sanitize_line(&event.actor)), theme.muted),
        ]));
    }
    lines
}

pub fn render(state: &State, theme: &Theme, frame: &mut Frame, area: Rect) {
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.border)
        .title(Span::styled(" Detail ", theme.title));
    let paragraph = Paragraph::new(lines(state, theme))
        .block(block)
        .wrap(Wrap { trim: false })
        .scroll((state.detail_scroll, 0));
    frame.render_widget(paragraph, area);
}
