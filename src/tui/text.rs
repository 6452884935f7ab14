//! Text from agents is untrusted: it may carry escape sequences that would drive
//! the reviewer's terminal. Everything agent-supplied passes through `sanitize`
//! before it is stored in the inbox state. Widths are measured in display columns
//! so CJK and emoji line up.

use unicode_width::UnicodeWidthStr;

/// Bidirectional overrides can make text read differently from what it is.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}')
}

/// Removes control characters (C0, C1, DEL, ESC) and bidi overrides, keeping line
/// breaks; tabs become spaces. An escape sequence such as `ESC ] 0 ; x BEL` loses
/// its ESC and BEL and is left as harmless printable text.
pub fn sanitize(text: &str) -> String {
    text.chars()
        .filter_map(|c| match c {
            '\n' => Some('\n'),
            '\t' => Some(' '),
            c if c.is_control() || is_bidi_control(c) => None,
            c => Some(c),
        })
        .collect()
}

/// `sanitize`, and the result on one line.
pub fn sanitize_line(text: &str) -> String {
    sanitize(text).replace('\n', " ")
}

pub fn width(text: &str) -> usize {
    UnicodeWidthStr::width(text)
}

/// Cuts `text` to at most `max` display columns, ending with `…` when cut.
pub fn truncate(text: &str, max: usize) -> String {
    if width(text) <= max {
        return text.to_string();
    }
    if max == 0 {
        return String::new();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        let w = unicode_width::UnicodeWidthChar::width(c).unwrap_or(0);
        if used + w > max - 1 {
            break;
        }
        out.push(c);
        used += w;
    }
    out.push('…');
    out
}

/// Pads with spaces to exactly `columns` display columns (truncating if longer).
pub fn fit(text: &str, columns: usize) -> String {
    let cut = truncate(text, columns);
    let pad = columns.saturating_sub(width(&cut));
    format!("{cut}{}", " ".repeat(pad))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_are_defused() {
        assert_eq!(sanitize("a\x1b]0;pwned\x07b"), "a]0;pwnedb");
        assert_eq!(sanitize("red\x1b[31m!\u{9b}2J"), "red[31m!2J");
        assert_eq!(sanitize("line1\nline2\tx\r"), "line1\nline2 x");
        assert_eq!(sanitize("abc\u{202E}cba"), "abccba");
        assert_eq!(sanitize_line("a\nb"), "a b");
    }

    #[test]
    fn widths_count_display_columns() {
        assert_eq!(width("デプロイ"), 8);
        assert_eq!(width("🚀 go"), 5);
        assert_eq!(truncate("デプロイ承認", 7), "デプロ…");
        assert_eq!(width(&truncate("デプロイ承認", 7)), 7);
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("abc", 0), "");
        assert_eq!(fit("ab", 4), "ab  ");
        assert_eq!(width(&fit("🚀🚀🚀", 4)), 4);
    }
}
