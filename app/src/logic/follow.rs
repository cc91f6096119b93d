//! What a device says it follows, in a few words.

/// What a device follows and where it stands, in a few words: `iris@champion v3, in sync`;
/// a refusal or an error with the device's reason. Labels and trusted keys follow.
pub fn follow_summary(info: &wasmops_shared::wire::DeviceInfo) -> String {
    use wasmops_shared::wire::FollowState;
    let mut parts = Vec::new();
    if let Some(f) = &info.follow {
        let want = f.desired_version.as_deref().map(|v| format!("v{v}"));
        let runs = f.running_version.as_deref().map(|v| format!("v{v}"));
        let mut text = format!("{}@{}", f.model, f.alias);
        match (f.state, &want, &runs) {
            (FollowState::InSync, _, Some(r)) => text.push_str(&format!(" {r}, in sync")),
            (FollowState::Starting, ..) => text.push_str(", first check pending"),
            (_, Some(w), r) if Some(w) != r.as_ref() => text.push_str(&format!(
                " wants {w}, runs {}",
                r.clone().unwrap_or_else(|| "nothing".into())
            )),
            _ => text.push_str(&format!(", {}", f.state)),
        }
        if let Some(e) = &f.last_error {
            text.push_str(&format!(" ({}: {e})", f.state));
        }
        parts.push(text);
    }
    if !info.labels.is_empty() {
        parts.push(
            info.labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" "),
        );
    }
    if !info.trusted_keys.is_empty() {
        parts.push(format!(
            "signed modules only (keys {})",
            info.trusted_keys.join(", ")
        ));
    }
    if parts.is_empty() {
        "–".into()
    } else {
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmops_shared::wire::{DeviceInfo, FollowState, FollowStatus};

    fn info(follow: Option<FollowStatus>) -> DeviceInfo {
        DeviceInfo {
            name: "edge".into(),
            version: "0.1.0".into(),
            uptime_s: 5,
            active: None,
            modules: vec![],
            follow,
            labels: Default::default(),
            trusted_keys: vec![],
        }
    }

    fn follows(state: FollowState, want: Option<&str>, runs: Option<&str>) -> FollowStatus {
        FollowStatus {
            tracking_uri: "http://mlflow:5000".into(),
            model: "iris".into(),
            alias: "champion".into(),
            desired_version: want.map(String::from),
            running_version: runs.map(String::from),
            state,
            last_check: None,
            last_error: None,
        }
    }

    #[test]
    fn a_device_that_follows_nothing_says_so_in_a_dash() {
        assert_eq!(follow_summary(&info(None)), "–");
    }

    #[test]
    fn where_a_following_device_stands_in_a_few_words() {
        let s = |f| follow_summary(&info(Some(f)));
        assert_eq!(
            s(follows(FollowState::InSync, Some("3"), Some("3"))),
            "iris@champion v3, in sync"
        );
        assert_eq!(
            s(follows(FollowState::Starting, None, None)),
            "iris@champion, first check pending"
        );
        assert_eq!(
            s(follows(FollowState::Updating, Some("4"), Some("3"))),
            "iris@champion wants v4, runs v3"
        );
        assert_eq!(
            s(follows(FollowState::Updating, Some("4"), None)),
            "iris@champion wants v4, runs nothing"
        );
        let mut refused = follows(FollowState::Refused, Some("4"), Some("4"));
        refused.last_error = Some("signature does not verify".into());
        assert_eq!(
            s(refused),
            "iris@champion, refused (refused: signature does not verify)"
        );
    }

    #[test]
    fn labels_and_trusted_keys_follow_the_alias() {
        let mut i = info(Some(follows(FollowState::InSync, Some("1"), Some("1"))));
        i.labels = [
            ("group".to_string(), "canary".to_string()),
            ("site".to_string(), "b".to_string()),
        ]
        .into();
        i.trusted_keys = vec!["0123abcd".into()];
        assert_eq!(
            follow_summary(&i),
            "iris@champion v1, in sync; group=canary site=b; signed modules only (keys 0123abcd)"
        );
    }
}
