//! How text from outside (a request, a module's metadata) appears in error messages and logs:
//! in backticks, with control and invisible characters escaped (a byte-order mark shows as
//! `\u{feff}`), and at most [`MAX_CHARS`] characters of it, so a 1 MiB name costs a line, not
//! a megabyte. Messages of parsers that may repeat their input are [`clipped`].

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

/// Characters of a message from a parser (which may quote the input it refused) that are kept.
pub const MAX_MESSAGE_CHARS: usize = 300;

/// A parser's message about outside input, cut after [`MAX_MESSAGE_CHARS`] characters: serde's
/// `invalid type: string "..."` repeats the whole string it was given.
pub fn clipped(message: &str) -> String {
    match message.char_indices().nth(MAX_MESSAGE_CHARS) {
        None => message.to_string(),
        Some((at, _)) => format!("{}... ({} bytes in all)", &message[..at], message.len()),
    }
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
    fn long_messages_are_clipped() {
        assert_eq!(clipped("short"), "short");
        let long = format!("invalid type: string \"{}\"", "y".repeat(100_000));
        let shown = clipped(&long);
        assert!(shown.len() < 400, "{shown}");
        assert!(shown.ends_with("... (100023 bytes in all)"), "{shown}");
    }

    #[test]
    fn long_text_is_cut() {
        let long = "x".repeat(1 << 20);
        let shown = bounded(&long);
        assert!(shown.len() < 100, "{shown}");
        assert!(shown.ends_with("...` (1048576 bytes)"), "{shown}");
    }
}
