//! The lines around the panes: view tabs, the offline banner, the filter line and
//! the status bar.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::detail::clock;
use super::theme::Theme;
use crate::domain::time::human_duration;
use crate::tui::inbox::View;
use crate::tui::keymap::Command;
use crate::tui::state::{Connection, Mode, State, Tone};

pub fn render_tabs(state: &State, theme: &Theme, frame: &mut Frame, area: Rect) {
    let mut spans = Vec::new();
    for view in View::ALL {
        let label = format!(" {} {} ", view.label(), state.inbox.count(view));
        if view == state.inbox.view {
            spans.push(Span::styled(
                format!("[{}]", label.trim()),
                theme.tab_active,
            ));
        } else {
            spans.push(Span::styled(label, theme.tab));
        }
        spans.push(Span::styled("│", theme.border));
    }
    let arrow = if state.inbox.descending { "↓" } else { "↑" };
    spans.push(Span::styled(
        format!(" sort: {} {arrow}", state.inbox.sort.label()),
        theme.muted,
    ));
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

pub fn render_banner(state: &State, theme: &Theme, frame: &mut Frame, area: Rect) {
    let Connection::Offline { error, retry_at } = &state.connection else {
        return;
    };
    let retry = state.now.seconds_until(retry_at).max(0);
    let last_sync = state.last_sync.map_or("never".to_string(), clock);
    let text = format!(
        " OFFLINE · reconnecting in {retry} s · last sync {last_sync} · decisions disabled · {error}"
    );
    frame.render_widget(Paragraph::new(Span::styled(text, theme.banner)), area);
}

/// The latest activity lines: agents resuming, decisions sent.
pub fn render_activity(state: &State, theme: &Theme, frame: &mut Frame, area: Rect) {
    let lines: Vec<Line> = state
        .notices
        .iter()
        .take(usize::from(super::layout::ACTIVITY_LINES))
        .map(|(at, text)| {
            Line::from(vec![
                Span::styled(format!("{} ", clock(*at)), theme.muted),
                Span::styled(text.clone(), theme.text),
            ])
        })
        .collect();
    let block = ratatui::widgets::Block::default()
        .borders(ratatui::widgets::Borders::ALL)
        .border_style(theme.border)
        .title(Span::styled(" Activity ", theme.title));
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

pub fn render_filter(state: &State, theme: &Theme, frame: &mut Frame, area: Rect) {
    let filter = &state.inbox.filter;
    let mut spans = match &state.mode {
        Mode::Filter { input } => vec![
            Span::styled("/ ", theme.key),
            Span::styled(input.text().to_string(), theme.text),
            Span::styled(" ", theme.selected),
        ],
        _ => vec![
            Span::styled("filter: ", theme.muted),
            Span::styled(filter.text.clone(), theme.accent),
            Span::styled("  (esc clears)", theme.muted),
        ],
    };
    if let Some(error) = &filter.error {
        spans.push(Span::styled(format!("  ! {error}"), theme.error));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn key_hints(state: &State) -> String {
    let keymap = &state.settings.keymap;
    match &state.mode {
        Mode::Normal => format!(
            "{} move  {} decide  {} yes  {} no  {} filter  {} commands  {} help",
            "j/k",
            keymap.hint(Command::Open),
            keymap.hint(Command::Approve),
            keymap.hint(Command::Reject),
            keymap.hint(Command::Filter),
            keymap.hint(Command::Palette),
            keymap.hint(Command::Help)
        ),
        Mode::Filter { .. } => "enter keep  esc clear".to_string(),
        Mode::Palette { .. } => "tab complete  ↑/↓ choose  enter run  esc close".to_string(),
        Mode::Help { .. } => "j/k scroll  esc close".to_string(),
        Mode::Dialog(_) => "see the dialog".to_string(),
        Mode::ConfirmBulk { .. } => "y approve all  n cancel".to_string(),
    }
}

pub fn render_status(state: &State, theme: &Theme, frame: &mut Frame, area: Rect) {
    let (connection, connection_style) = match &state.connection {
        Connection::Online => ("● online", theme.ok),
        Connection::Connecting => ("… connecting", theme.warning),
        Connection::Offline { .. } => ("○ OFFLINE", theme.error),
    };
    let mut spans = vec![
        Span::styled(connection, connection_style),
        Span::styled(format!(" │ {} waiting", state.inbox.len()), theme.text),
    ];
    if let Some(due) = state.next_deadline() {
        let left = state.now.seconds_until(&due);
        let text = if left < 0 {
            format!(" │ overdue {}", human_duration(-left))
        } else {
            format!(" │ next due {}", human_duration(left))
        };
        spans.push(Span::styled(
            text,
            if left < 0 { theme.warning } else { theme.text },
        ));
    }
    let waiting = state.queued.iter().filter(|q| !q.sent).count();
    if waiting > 0 {
        spans.push(Span::styled(format!(" │ {waiting} queued"), theme.warning));
    }
    spans.push(Span::styled(" │ ", theme.border));
    match &state.message {
        Some(message) => {
            let style = match message.tone {
                Tone::Info => theme.accent,
                Tone::Success => theme.ok,
                Tone::Error => theme.error,
            };
            spans.push(Span::styled(message.text.clone(), style));
        }
        None => spans.push(Span::styled(key_hints(state), theme.muted)),
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}
