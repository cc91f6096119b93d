//! How text from outside (a request, a module's metadata) appears in error messages and logs:
//! in backticks, with control and invisible characters escaped (a byte-order mark shows as
//! `\u{feff}`), and at most [`MAX_CHARS`] characters of it, so a 1 MiB name costs a line, not
//! a megabyte.

/// Characters of a name shown before it is cut off.
pub const MAX_CHARS: usize = 64;

/// `text` quoted for a message: escaped, cut after [`MAX_CHARS`] characters (then its length
/// in bytes follows).
pub fn bounded(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_CHARS * 2) + 2);
    out.push('`');
    for (i, c) in text.chars().enumerate() {
        if i == MAX_CHARS {
            out.push_str(&format!("...` ({} bytes)", text.len()));
            return out;
        }
        out.extend(c.escape_debug());
    }
    out.push('`');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_quoted_and_invisible_characters_show() {
        assert_eq!(bounded("petal"), "`petal`");
        assert_eq!(bounded("\u{feff}a\n"), "`\\u{feff}a\\n`");
    }

    #[test]
    fn long_text_is_cut() {
        let long = "x".repeat(1 << 20);
        let shown = bounded(&long);
        assert!(shown.len() < 100, "{shown}");
        assert!(shown.ends_with("...` (1048576 bytes)"), "{shown}");
    }
}
