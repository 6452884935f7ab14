//! Help, the command palette, and the bulk-approval confirmation.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};

use super::dialog::centered;
use super::theme::Theme;
use crate::tui::input::LineInput;
use crate::tui::keymap::Command;
use crate::tui::state::State;
use crate::tui::update::palette_matches;

fn popup(frame: &mut Frame, area: Rect, title: &str, theme: &Theme) -> Rect {
    frame.render_widget(Clear, area);
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.focus_border)
        .title(Span::styled(format!(" {title} "), theme.title));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    inner
}

/// Help built from the live keymap, so it shows rebound keys as they are.
pub fn help_lines(state: &State, theme: &Theme) -> Vec<Line<'static>> {
    let keymap = &state.settings.keymap;
    let mut lines = vec![Line::from(Span::styled("Keys", theme.header))];
    for command in Command::ALL {
        lines.push(Line::from(vec![
            Span::styled(
                format!("{:<18}", keymap.keys_for(command).join(", ")),
                theme.key,
            ),
            Span::styled(command.description().to_string(), theme.text),
        ]));
    }
    let fixed = [
        (
            "esc",
            "clear the filter; in a dialog: stop typing, then cancel",
        ),
        ("ctrl-c", "quit (queued decisions are sent first)"),
        ("dialog: tab/j/k", "move between parts"),
        ("dialog: ←/→ space", "pick an outcome or option"),
        ("dialog: i, enter", "type into a field (-- INSERT --)"),
        ("dialog: enter", "submit (then an undo window)"),
        ("dialog: ctrl-e", "edit the comment in $EDITOR"),
    ];
    for (keys, what) in fixed {
        lines.push(Line::from(vec![
            Span::styled(format!("{keys:<18}"), theme.key),
            Span::styled(what, theme.text),
        ]));
    }
    lines.push(Line::default());
    lines.push(Line::from(Span::styled("Filter", theme.header)));
    for example in [
        "type:review agent:deploy due<30m urgent",
        "assignee:me is:unseen -type:form stage>=1 age>2h",
    ] {
        lines.push(Line::from(Span::styled(format!("  {example}"), theme.text)));
    }
    lines
}

pub fn render_help(state: &State, scroll: u16, theme: &Theme, frame: &mut Frame) {
    let area = centered(frame.area(), 76, 44);
    let inner = popup(frame, area, "Help · esc to close", theme);
    frame.render_widget(
        Paragraph::new(help_lines(state, theme)).scroll((scroll, 0)),
        inner,
    );
}

pub fn render_palette(input: &LineInput, selected: usize, theme: &Theme, frame: &mut Frame) {
    let screen = frame.area();
    let matches = palette_matches(input.text());
    let height = (matches.len().min(10) as u16 + 3).min(screen.height);
    let area = Rect::new(
        screen.x + 2.min(screen.width),
        screen.y + 1.min(screen.height),
        screen.width.saturating_sub(4).min(60),
        height,
    );
    let inner = popup(frame, area, "Command · tab completes", theme);
    let mut lines = vec![Line::from(vec![
        Span::styled(": ", theme.key),
        Span::styled(input.text().to_string(), theme.text),
        Span::styled(" ", theme.selected),
    ])];
    for (index, command) in matches.iter().take(10).enumerate() {
        let style = if index == selected {
            theme.selected
        } else {
            theme.muted
        };
        let marker = if index == selected { "▶ " } else { "  " };
        lines.push(Line::from(Span::styled(
            format!("{marker}{command}"),
            style,
        )));
    }
    frame.render_widget(Paragraph::new(lines), inner);
}

pub fn render_confirm_bulk(state: &State, intent_ids: &[String], theme: &Theme, frame: &mut Frame) {
    let area = centered(frame.area(), 64, (intent_ids.len().min(8) + 5) as u16);
    let inner = popup(frame, area, "Bulk approval", theme);
    let mut lines = vec![
        Line::from(Span::styled(
            format!("Approve {} task(s)? y: yes · n: no", intent_ids.len()),
            theme.warning,
        )),
        Line::default(),
    ];
    for id in intent_ids.iter().take(8) {
        if let Some(row) = state.inbox.row(id) {
            lines.push(Line::from(Span::styled(
                format!("  {}", row.task.human_task.title),
                theme.text,
            )));
        }
    }
    frame.render_widget(Paragraph::new(lines), inner);
}
