//! Shared output helpers: aligned tables for people, JSON for scripts.

use std::io::IsTerminal;

/// An error chain on one line: "outer: inner: root cause".
pub fn one_line(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if !parts.iter().any(|earlier| earlier.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ").replace('\n', " ")
}

/// Colour only on a terminal, and never when `NO_COLOR` is set.
pub fn use_colour() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty())
        && std::io::stdout().is_terminal()
}

/// `text` in an ANSI style (`1` bold, `32` green, `31` red...) on a colour
/// terminal; plain otherwise.
pub fn paint(text: &str, style: &str) -> String {
    if use_colour() {
        format!("\x1b[{style}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

/// Left-aligned columns separated by two spaces; the header is bold on a colour terminal.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let columns = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (index, cell) in row.iter().enumerate().take(columns) {
            widths[index] = widths[index].max(cell.chars().count());
        }
    }
    let render = |cells: Vec<String>| {
        let line: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(index, cell)| {
                let pad = widths[index].saturating_sub(cell.chars().count());
                format!("{cell}{}", " ".repeat(pad))
            })
            .collect();
        line.join("  ").trim_end().to_string()
    };
    let mut out = String::new();
    let head = render(header.iter().map(|h| h.to_string()).collect());
    out.push_str(&paint(&head, "1"));
    out.push('\n');
    for row in rows {
        out.push_str(&render(row.clone()));
        out.push('\n');
    }
    out
}

/// Pretty JSON for `--json` output.
/// A JSON file named on the command line, `-` meaning standard input; `what`
/// names it in errors ("the form schema").
pub fn read_json_file(path: &std::path::Path, what: &str) -> anyhow::Result<serde_json::Value> {
    use anyhow::Context;
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
            .with_context(|| format!("cannot read {what} from standard input"))?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?
    };
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

pub fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| "null".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_by_characters() {
        let text = table(
            &["ID", "NAME"],
            &[
                vec!["1".into(), "ä-wide".into()],
                vec!["22".into(), "b".into()],
            ],
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "ID  NAME");
        assert_eq!(lines[1], "1   ä-wide");
        assert_eq!(lines[2], "22  b");
    }

    #[test]
    fn error_chains_fit_on_one_line() {
        let err = anyhow::anyhow!("root\ncause").context("outer");
        assert_eq!(one_line(&err), "outer: root cause");
    }
}
