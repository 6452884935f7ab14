//! Agent-written markdown (task descriptions) as styled terminal text: headings,
//! emphasis, code, lists and links. The text is sanitized before it gets here.

use pulldown_cmark::{Event, HeadingLevel, Parser, Tag, TagEnd};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};

use super::theme::Theme;

pub fn render(markdown: &str, theme: &Theme) -> Vec<Line<'static>> {
    let mut lines: Vec<Line<'static>> = Vec::new();
    let mut current: Vec<Span<'static>> = Vec::new();
    let mut styles: Vec<Style> = vec![theme.text];
    let mut list_depth = 0usize;
    let mut link: Option<String> = None;
    let mut in_code_block = false;
    let flush = |current: &mut Vec<Span<'static>>, lines: &mut Vec<Line<'static>>| {
        if !current.is_empty() {
            lines.push(Line::from(std::mem::take(current)));
        }
    };
    for event in Parser::new(markdown) {
        let style = *styles.last().unwrap_or(&theme.text);
        match event {
            Event::Start(Tag::Heading { level, .. }) => {
                flush(&mut current, &mut lines);
                // Top-level headings are underlined; the rest are only emphasised.
                let heading = if level == HeadingLevel::H1 {
                    theme.title.add_modifier(Modifier::UNDERLINED)
                } else {
                    theme.title
                };
                styles.push(heading);
            }
            Event::Start(Tag::Strong) => styles.push(style.add_modifier(Modifier::BOLD)),
            Event::Start(Tag::Emphasis) => styles.push(style.add_modifier(Modifier::ITALIC)),
            Event::Start(Tag::Strikethrough) => {
                styles.push(style.add_modifier(Modifier::CROSSED_OUT))
            }
            Event::Start(Tag::CodeBlock(_)) => {
                flush(&mut current, &mut lines);
                in_code_block = true;
            }
            Event::Start(Tag::List(_)) => {
                flush(&mut current, &mut lines);
                list_depth += 1;
            }
            Event::Start(Tag::Item) => {
                flush(&mut current, &mut lines);
                current.push(Span::styled(
                    format!("{}• ", "  ".repeat(list_depth.saturating_sub(1))),
                    theme.accent,
                ));
            }
            Event::Start(Tag::Link { dest_url, .. }) => {
                link = Some(dest_url.to_string());
                styles.push(style.add_modifier(Modifier::UNDERLINED));
            }
            Event::Start(_) => {}
            Event::End(TagEnd::Heading(_)) | Event::End(TagEnd::Paragraph) => {
                if matches!(event, Event::End(TagEnd::Heading(_))) {
                    styles.pop();
                }
                flush(&mut current, &mut lines);
                if list_depth == 0 {
                    lines.push(Line::default());
                }
            }
            Event::End(TagEnd::Strong | TagEnd::Emphasis | TagEnd::Strikethrough) => {
                styles.pop();
            }
            Event::End(TagEnd::CodeBlock) => {
                in_code_block = false;
                lines.push(Line::default());
            }
            Event::End(TagEnd::List(_)) => {
                flush(&mut current, &mut lines);
                list_depth = list_depth.saturating_sub(1);
                if list_depth == 0 {
                    lines.push(Line::default());
                }
            }
            Event::End(TagEnd::Item) => flush(&mut current, &mut lines),
            Event::End(TagEnd::Link) => {
                styles.pop();
                if let Some(url) = link.take() {
                    current.push(Span::styled(format!(" ({url})"), theme.muted));
                }
            }
            Event::End(_) => {}
            Event::Text(text) if in_code_block => {
                for code_line in text.lines() {
                    lines.push(Line::from(Span::styled(
                        format!("  {code_line}"),
                        theme.accent,
                    )));
                }
            }
            Event::Text(text) => current.push(Span::styled(text.to_string(), style)),
            Event::Code(code) => current.push(Span::styled(format!("`{code}`"), theme.accent)),
            Event::SoftBreak => current.push(Span::styled(" ", style)),
            Event::HardBreak => flush(&mut current, &mut lines),
            Event::Rule => {
                flush(&mut current, &mut lines);
                lines.push(Line::from(Span::styled("────────", theme.muted)));
            }
            _ => {}
        }
    }
    flush(&mut current, &mut lines);
    while lines.last().is_some_and(|line| line.spans.is_empty()) {
        lines.pop();
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::view::theme::ThemeName;

    fn plain(lines: &[Line]) -> Vec<String> {
        lines
            .iter()
            .map(|line| {
                line.spans
                    .iter()
                    .map(|span| span.content.as_ref())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn common_markdown_becomes_readable_lines() {
        let theme = Theme::new(ThemeName::Dark, true);
        let lines = render(
            "# Deploy\n\nShip **v2.3** to `prod`:\n\n- canary first\n- then [all](https://x.io)\n\n```\nkubectl apply\n```",
            &theme,
        );
        assert_eq!(
            plain(&lines),
            [
                "Deploy",
                "",
                "Ship v2.3 to `prod`:",
                "",
                "• canary first",
                "• then all (https://x.io)",
                "",
                "  kubectl apply"
            ]
        );
        let bold = &lines[2].spans[1];
        assert!(bold.style.add_modifier.contains(Modifier::BOLD));
    }
}
