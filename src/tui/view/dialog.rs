//! The decision dialog, drawn over the inbox.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

use super::theme::Theme;
use crate::tui::dialog::{Dialog, OVERRIDE_CONFIRMATION, Part};
use crate::tui::input::LineInput;
use crate::tui::state::State;

/// A popup of at most `width` x `height`, centred and kept inside `area`.
pub fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let width = width.min(area.width);
    let height = height.min(area.height);
    Rect::new(
        area.x + (area.width - width) / 2,
        area.y + (area.height - height) / 2,
        width,
        height,
    )
}

fn focus_marker(focused: bool) -> &'static str {
    if focused { "▶ " } else { "  " }
}

/// A one-line input showing its cursor while typed into.
fn input_spans(input: &LineInput, typing: bool, theme: &Theme) -> Vec<Span<'static>> {
    if !typing {
        let text = if input.text().is_empty() {
            "…".to_string()
        } else {
            input.text().to_string()
        };
        return vec![Span::styled(
            text,
            theme.text.add_modifier(Modifier::UNDERLINED),
        )];
    }
    let chars: Vec<char> = input.text().chars().collect();
    let (before, after) = chars.split_at(input.cursor().min(chars.len()));
    let at_cursor = after.first().map_or(" ".to_string(), char::to_string);
    vec![
        Span::styled(before.iter().collect::<String>(), theme.text),
        Span::styled(at_cursor, theme.selected),
        Span::styled(after.iter().skip(1).collect::<String>(), theme.text),
    ]
}

fn error_line(error: &Option<String>, theme: &Theme) -> Option<Line<'static>> {
    error
        .as_ref()
        .map(|error| Line::from(Span::styled(format!("    ! {error}"), theme.error)))
}

/// The lines for the parts before the comment box (ending with its label), and
/// for the parts after it.
fn part_lines(
    dialog: &Dialog,
    reviewers: &[String],
    theme: &Theme,
) -> (Vec<Line<'static>>, Vec<Line<'static>>) {
    let focused = dialog.focused();
    let typing = |part: Part| dialog.inserting && focused == part;
    let mut before = Vec::new();
    let mut after = Vec::new();
    for part in dialog.parts() {
        let lines = if dialog.parts().iter().position(|p| *p == part)
            > dialog.parts().iter().position(|p| *p == Part::Comment)
        {
            &mut after
        } else {
            &mut before
        };
        let marker = focus_marker(focused == part);
        match part {
            Part::Outcome => {
                let mut spans = vec![Span::styled(format!("{marker}Outcome   "), theme.title)];
                for (index, outcome) in dialog.task.allowed_outcomes.iter().enumerate() {
                    if index == dialog.outcome {
                        spans.push(Span::styled(format!("[{outcome}]"), theme.selected));
                    } else {
                        spans.push(Span::styled(format!(" {outcome} "), theme.muted));
                    }
                    spans.push(Span::raw(" "));
                }
                lines.push(Line::from(spans));
            }
            Part::Field(index) => {
                let Some(field) = dialog.fields.get(index) else {
                    continue;
                };
                let required = if field.required { "*" } else { "" };
                let mut spans = vec![Span::styled(
                    format!("{marker}{}{required}: ", field.label),
                    theme.text,
                )];
                if field.is_text() {
                    spans.extend(input_spans(&field.input, typing(part), theme));
                } else {
                    spans.push(Span::styled(field.display(), theme.accent));
                }
                lines.push(Line::from(spans));
                if let Some(help) = &field.help {
                    lines.push(Line::from(Span::styled(format!("    {help}"), theme.muted)));
                }
                lines.extend(error_line(&field.error, theme));
            }
            Part::Assignee => {
                let mut spans = vec![Span::styled(format!("{marker}Assignee: "), theme.text)];
                spans.extend(input_spans(&dialog.assignee, typing(part), theme));
                lines.push(Line::from(spans));
                if typing(part) {
                    for (index, suggestion) in
                        dialog.completions(reviewers.iter()).iter().enumerate()
                    {
                        let style = if index == dialog.completion {
                            theme.selected
                        } else {
                            theme.muted
                        };
                        lines.push(Line::from(Span::styled(
                            format!("      {suggestion}"),
                            style,
                        )));
                    }
                }
                lines.extend(error_line(&dialog.errors.assignee, theme));
            }
            Part::Evidence => {
                let required = if dialog.task.evidence_required {
                    "*"
                } else {
                    ""
                };
                let mut spans = vec![Span::styled(
                    format!("{marker}Evidence{required}: "),
                    theme.text,
                )];
                spans.extend(input_spans(&dialog.evidence, typing(part), theme));
                lines.push(Line::from(spans));
                lines.extend(error_line(&dialog.errors.evidence, theme));
            }
            Part::Comment => {
                let label = dialog.comment_label();
                let hint = if typing(part) {
                    "  (ctrl-e: $EDITOR)"
                } else {
                    ""
                };
                lines.push(Line::from(vec![
                    Span::styled(format!("{marker}{label}:"), theme.text),
                    Span::styled(hint, theme.muted),
                ]));
            }
            Part::Confirmation => {
                let mut spans = vec![Span::styled(
                    format!("{marker}Type `{OVERRIDE_CONFIRMATION}` to confirm: "),
                    theme.warning,
                )];
                spans.extend(input_spans(&dialog.confirmation, typing(part), theme));
                lines.push(Line::from(spans));
                lines.extend(error_line(&dialog.errors.confirmation, theme));
            }
        }
    }
    (before, after)
}

pub fn render(state: &State, dialog: &Dialog, theme: &Theme, frame: &mut Frame) {
    let reviewers: Vec<String> = state.reviewers.iter().cloned().collect();
    let mut top = vec![
        Line::from(Span::styled(dialog.task.title.clone(), theme.title)),
        Line::default(),
    ];
    let (before, after) = part_lines(dialog, &reviewers, theme);
    top.extend(before);
    let comment_focused = dialog.focused() == Part::Comment;
    let comment_height: u16 = if comment_focused { 6 } else { 4 };
    let mut bottom = after;
    if let Some(error) = &dialog.errors.comment {
        bottom.push(Line::from(Span::styled(format!("! {error}"), theme.error)));
    }
    if let Some(error) = &dialog.errors.general {
        bottom.push(Line::from(Span::styled(format!("! {error}"), theme.error)));
    }
    let hints = if dialog.inserting {
        "-- INSERT --  esc: stop typing"
    } else {
        "tab/j/k: move  ←/→: choose  i: type  enter: submit  esc: cancel"
    };
    bottom.push(Line::from(Span::styled(
        hints,
        if dialog.inserting {
            theme.warning
        } else {
            theme.muted
        },
    )));

    let content_height = top.len() as u16 + comment_height + bottom.len() as u16;
    let area = centered(frame.area(), 84, content_height + 2);
    frame.render_widget(Clear, area);
    let title = format!(" Decide · {} ", dialog.task.task_type.as_str());
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.focus_border)
        .title(Span::styled(title, theme.title));
    let inner = block.inner(area);
    frame.render_widget(block, area);

    // When space is short the box shrinks first, then the lines above it scroll off.
    let [top_area, comment_area, bottom_area] = Layout::vertical([
        Constraint::Length(top.len() as u16),
        Constraint::Length(comment_height),
        Constraint::Length(bottom.len() as u16),
    ])
    .areas(inner);
    frame.render_widget(Paragraph::new(top).wrap(Wrap { trim: false }), top_area);
    let mut comment = dialog.comment.clone();
    comment.set_block(
        Block::default()
            .borders(Borders::ALL)
            .border_style(if comment_focused {
                theme.focus_border
            } else {
                theme.border
            }),
    );
    comment.set_cursor_style(if dialog.inserting && comment_focused {
        theme.selected
    } else {
        theme.text
    });
    comment.set_cursor_line_style(theme.text);
    frame.render_widget(&comment, comment_area);
    frame.render_widget(
        Paragraph::new(bottom).wrap(Wrap { trim: false }),
        bottom_area,
    );
}
