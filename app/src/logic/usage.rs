//! How to call a device, as shell commands with its URL (and, when its model is known, one of
//! the model's own held-out rows) filled in: the same as `docs/device-api.md`.

use wasmops_shared::wire::paths;

use crate::registry::ModelVersion;

/// The predict and feedback commands for the device at `base` (no trailing `/`).
pub fn commands(base: &str, version: Option<&ModelVersion>) -> String {
    let (header, row) = match version {
        Some(v) if !v.card.feature_names.is_empty() => {
            let d = v.card.feature_names.len();
            let row: Vec<String> = v.check_rows.iter().take(d).map(|x| x.to_string()).collect();
            (v.card.feature_names.join(","), row)
        }
        _ => (String::new(), vec!["1.0".into(), "2.0".into()]),
    };
    let json_row = row.join(",");
    let csv = if header.is_empty() {
        String::new()
    } else {
        format!(
            "\n# or CSV, columns named as the model's features:\nprintf '{header}\\n{}\\n' | curl -H \"$AUTH\" -H 'Content-Type: text/csv' --data-binary @- {base}{}",
            row.join(","),
            paths::PREDICT
        )
    };
    format!(
        "AUTH=\"Authorization: Bearer $TOKEN\"   # the token saved for this device\n\
         # predict (each answer has first_id: row i gets prediction id first_id + i)\n\
         curl -H \"$AUTH\" -H 'Content-Type: application/json' -d '{{\"rows\":[[{json_row}]]}}' {base}{}{csv}\n\
         # send the true label of prediction 0 (class index or value) for live accuracy\n\
         curl -H \"$AUTH\" -H 'Content-Type: application/json' -d '{{\"labels\":[{{\"id\":0,\"label\":0}}]}}' {base}{}",
        paths::PREDICT,
        paths::FEEDBACK
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_known_model_gets_its_first_held_out_row_and_a_csv_example() {
        let v: ModelVersion = serde_json::from_value(crate::logic::tests::version_json()).unwrap();
        let text = commands("http://127.0.0.1:7878", Some(&v));
        assert!(
            text.contains(&format!(
                r#"-d '{{"rows":[[5.1,3.5]]}}' http://127.0.0.1:7878{}"#,
                paths::PREDICT
            )),
            "{text}"
        );
        assert!(
            text.contains(r"printf 'sepal_length,sepal_width\n5.1,3.5\n'"),
            "{text}"
        );
        assert!(
            text.contains(&format!("http://127.0.0.1:7878{}", paths::FEEDBACK)),
            "{text}"
        );
        assert_eq!(text.lines().count(), 7, "{text}");
    }

    #[test]
    fn an_unknown_model_gets_a_placeholder_row_and_no_csv() {
        let text = commands("https://edge.example", None);
        assert!(text.contains(r#"{"rows":[[1.0,2.0]]}"#), "{text}");
        assert!(!text.contains("text/csv"), "{text}");
        assert!(
            text.starts_with("AUTH=\"Authorization: Bearer $TOKEN\""),
            "{text}"
        );
    }
}
