//! The task list. Only the rows on screen are built, so drawing costs the same
//! with 10 tasks or 10,000.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};

use super::theme::Theme;
use crate::domain::time::human_duration;
use crate::domain::{TaskType, Timestamp};
use crate::tui::inbox::TaskRow;
use crate::tui::state::State;
use crate::tui::text::fit;

pub fn short_type(task_type: TaskType) -> &'static str {
    match task_type {
        TaskType::Approval => "approve",
        TaskType::Review => "review",
        TaskType::Form => "form",
        TaskType::Override => "override",
        TaskType::Confirmation => "confirm",
        TaskType::Assignment => "assign",
        TaskType::Clarification => "clarify",
        TaskType::ManualAction => "manual",
    }
}

/// Which optional columns fit at this width.
struct Columns {
    agent: usize,
    counters: bool,
    title: usize,
}

const MARKER: usize = 3;
const TYPE: usize = 9;
const AGE: usize = 5;
const DUE: usize = 6;
const COUNTER: usize = 4;

fn columns(width: usize) -> Columns {
    let fixed = MARKER + TYPE + AGE + DUE;
    let counters = width >= fixed + 2 * COUNTER + 30;
    let rest = width.saturating_sub(fixed + if counters { 2 * COUNTER } else { 0 });
    // The requesting agent matters for triage; it gets a third of the room once
    // the title keeps at least 20 columns.
    let agent = if rest >= 30 {
        (rest / 3).clamp(10, 24)
    } else {
        0
    };
    Columns {
        agent,
        counters,
        title: rest.saturating_sub(agent),
    }
}

/// Time left until a deadline: `14m`, `!-5m` when overdue, `-` when none.
pub fn due_label(due: Option<Timestamp>, now: Timestamp) -> String {
    match due {
        None => "-".to_string(),
        Some(due) => {
            let left = now.seconds_until(&due);
            if left < 0 {
                format!("!{}", human_duration(left))
            } else {
                human_duration(left)
            }
        }
    }
}

fn row_line<'a>(
    row: &TaskRow,
    selected: bool,
    columns: &Columns,
    now: Timestamp,
    theme: &Theme,
) -> Line<'a> {
    let task = &row.task;
    // Markers say in text what colour would: selection, unseen, marked, queued.
    let state_marker = if row.pending {
        '~'
    } else if row.marked {
        '+'
    } else if row.unseen {
        '•'
    } else {
        ' '
    };
    let marker = format!("{}{state_marker} ", if selected { '▶' } else { ' ' });
    let mut cells = vec![
        marker,
        fit(short_type(task.human_task.task_type), TYPE),
        fit(&task.human_task.title, columns.title.saturating_sub(1)) + " ",
    ];
    if columns.agent > 0 {
        cells.push(
            fit(
                task.from_agent.trim_start_matches("agent://"),
                columns.agent.saturating_sub(1),
            ) + " ",
        );
    }
    cells.push(fit(
        &human_duration(task.created_at.seconds_until(&now)),
        AGE,
    ));
    cells.push(fit(&due_label(task.due_at, now), DUE));
    if columns.counters {
        let stage = if task.escalation_stage > 0 {
            format!("E{}", task.escalation_stage)
        } else {
            "-".into()
        };
        cells.push(fit(&stage, COUNTER));
        cells.push(fit(&task.reminders_sent.to_string(), COUNTER));
    }
    let overdue = task.due_at.is_some_and(|due| now.seconds_until(&due) < 0);
    let style = if selected {
        theme.selected
    } else if overdue {
        theme.warning
    } else if row.unseen {
        theme.title
    } else {
        theme.text
    };
    Line::from(Span::styled(cells.concat(), style))
}

fn header_line<'a>(columns: &Columns, theme: &Theme) -> Line<'a> {
    let mut cells = vec![
        " ".repeat(MARKER),
        fit("TYPE", TYPE),
        fit("TITLE", columns.title),
    ];
    if columns.agent > 0 {
        cells.push(fit("AGENT", columns.agent));
    }
    cells.push(fit("AGE", AGE));
    cells.push(fit("DUE", DUE));
    if columns.counters {
        cells.push(fit("ESC", COUNTER));
        cells.push(fit("REM", COUNTER));
    }
    Line::from(Span::styled(cells.concat(), theme.header))
}

pub fn render(state: &State, theme: &Theme, frame: &mut Frame, area: Rect) {
    let visible = state.inbox.visible();
    let title = format!(" Tasks {}/{} ", visible.len(), state.inbox.len());
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.border)
        .title(Span::styled(title, theme.title));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let width = usize::from(inner.width);
    let columns = columns(width);
    let rows = usize::from(inner.height.saturating_sub(1));
    let mut lines = vec![header_line(&columns, theme)];
    if visible.is_empty() {
        let empty = if state.inbox.is_empty() {
            "No tasks waiting for you."
        } else {
            "No task matches this view and filter."
        };
        lines.push(Line::from(Span::styled(empty, theme.muted)));
    }
    for id in visible.iter().skip(state.offset).take(rows) {
        if let Some(row) = state.inbox.row(id) {
            let selected = state.selected.as_deref() == Some(id.as_str());
            lines.push(row_line(row, selected, &columns, state.now, theme));
        }
    }
    frame.render_widget(Paragraph::new(lines), inner);
}
