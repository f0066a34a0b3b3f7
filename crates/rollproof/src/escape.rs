//! One escaping policy for every text sink a log value can reach: the terminal summary, stderr
//! messages, Markdown (a PR comment, the GitHub step summary), JUnit XML, GitHub annotations and
//! the HTML page. The JSON report keeps values exactly (it is data, for tools to escape).
//!
//! [`neutral`] is the base of every sink: control characters (C0, DEL, C1), bidirectional
//! overrides and isolates, and Unicode noncharacters become U+FFFD, and `##[` (which a GitHub
//! runner's legacy parser takes as a command anywhere in a line) is broken with a word joiner.
//! With line breaks gone, a value can never start a line, so it can never be a `::` workflow
//! command. [`capped`] bounds what is echoed, noting the full length.

use std::borrow::Cow;

/// Whether `c` must not reach a human sink as itself.
fn hostile(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200e}' | '\u{200f}' | '\u{061c}'      // directional marks
            | '\u{202a}'..='\u{202e}'                 // embeddings and overrides
            | '\u{2066}'..='\u{2069}'                 // isolates
            | '\u{fdd0}'..='\u{fdef}'                 // noncharacters
            | '\u{fffe}' | '\u{ffff}')
        || (c as u32 & 0xfffe) == 0xfffe // the noncharacters of every plane
}

/// `s` with hostile characters replaced by U+FFFD and `##[` broken; borrowed when already safe.
pub(crate) fn neutral(s: &str) -> Cow<'_, str> {
    if !s.chars().any(hostile) && !s.contains("##[") {
        return Cow::Borrowed(s);
    }
    let cleaned: String = s
        .chars()
        .map(|c| if hostile(c) { '\u{fffd}' } else { c })
        .collect();
    Cow::Owned(cleaned.replace("##[", "##\u{2060}["))
}

/// At most `max` bytes of `s` (at a character boundary); a longer value ends with `… (N bytes)`.
pub(crate) fn capped(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return Cow::Borrowed(s);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}… ({} bytes)", &s[..end], s.len()))
}

/// A value shown in a message: neutral, and at most `max` bytes.
pub(crate) fn shown(s: &str, max: usize) -> String {
    neutral(&capped(s, max)).into_owned()
}

/// Markdown from log text: neutral, with Markdown syntax taken literally — no link, image,
/// autolink, mention, code span, HTML or table cell break can be built from the text.
pub(crate) fn markdown(s: &str, max: usize) -> String {
    let s = shown(s, max);
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            // With `[` and `]` escaped no link or image can form; `*`, `~` and backticks would
            // restyle the text, `|` would end a table cell.
            '\\' | '`' | '*' | '~' | '[' | ']' | '|' => {
                out.push('\\');
                out.push(c);
            }
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            // A zero-width joiner after `@` keeps GitHub from resolving a mention.
            '@' => out.push_str("@\u{2060}"),
            c => out.push(c),
        }
    }
    // Bare URLs and `www.` become links in GitHub Markdown: break the scheme separator.
    out.replace("://", ":\u{2060}//")
        .replace("www.", "www\u{2060}.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_text_is_neutralised() {
        assert_eq!(neutral("plain"), Cow::Borrowed("plain"));
        let n = neutral("a\n::error title=x::y\u{1b}[2J\u{202e}z##[add-mask]");
        assert!(!n.contains('\n') && !n.contains('\u{1b}') && !n.contains('\u{202e}'));
        assert!(!n.contains("##["), "{n}");
        assert_eq!(
            neutral("x\u{fffe}\u{ffff}\u{1fffe}"),
            "x\u{fffd}\u{fffd}\u{fffd}"
        );
        assert_eq!(capped("abcdef", 3), "abc… (6 bytes)");
        assert_eq!(capped("ééé", 3), "é… (6 bytes)");
    }

    #[test]
    fn markdown_from_log_text_is_literal() {
        let md = markdown(
            "[click](https://evil.example) ![x](y) @admin *b* `c` <i>",
            1000,
        );
        // Every bracket, star and backtick is escaped: no link, image or code span can form.
        let chars: Vec<char> = md.chars().collect();
        for (i, c) in chars.iter().enumerate() {
            if matches!(c, '[' | ']' | '*' | '`') {
                assert_eq!(chars.get(i.wrapping_sub(1)), Some(&'\\'), "{md}");
            }
        }
        assert!(
            !md.contains("@admin") && !md.contains("https://") && !md.contains("<i>"),
            "{md}"
        );
    }
}
