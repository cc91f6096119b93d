//! What a run's details accept when the user edits a run.

/// A run's new name: trimmed, not empty.
pub fn run_name(text: &str) -> Result<String, String> {
    let name = text.trim();
    if name.is_empty() {
        return Err("a run needs a name".into());
    }
    Ok(name.to_string())
}

/// Comma-separated tags: each trimmed, empty ones and repeats dropped, in the order typed; a
/// tag with a space inside is refused (the filter language matches single words).
pub fn tags(text: &str) -> Result<Vec<String>, String> {
    let mut list: Vec<String> = Vec::new();
    for t in text.split(',') {
        let t = t.trim().to_string();
        if t.is_empty() || list.contains(&t) {
            continue;
        }
        if t.contains(char::is_whitespace) {
            return Err(format!("tag `{t}`: tags are single words (use - or _)"));
        }
        list.push(t);
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_never_empty() {
        assert_eq!(run_name("  tree #3 "), Ok("tree #3".to_string()));
        assert_eq!(run_name(" \t"), Err("a run needs a name".to_string()));
    }

    #[test]
    fn tags_are_trimmed_deduplicated_and_single_words() {
        assert_eq!(
            tags(" baseline, scaled,,baseline ,v2"),
            Ok(vec!["baseline".into(), "scaled".into(), "v2".into()])
        );
        assert_eq!(tags(""), Ok(vec![]));
        assert_eq!(
            tags("ok, two words"),
            Err("tag `two words`: tags are single words (use - or _)".into())
        );
    }
}
