//! Predict inputs: JSON (`{"rows": [[...], ...]}`) or CSV (`text/csv`, header optional),
//! checked against the active model's features before anything reaches a module.
//!
//! Every refusal names the row and column it is about. CSV is parsed here rather than with
//! the `csv` crate: inputs are plain numbers, so a split on commas plus quote-trimming of
//! header names covers it without another dependency.

use wasmops_shared::wire::PredictRequest;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum InputError {
    #[error("malformed JSON predict request: {0} (expected {{\"rows\": [[number, ...], ...]}})")]
    Json(String),
    #[error("no rows to predict")]
    Empty,
    #[error("row {row} has {found} values; the active model takes {expected} features ({names})")]
    WrongWidth {
        row: usize,
        found: usize,
        expected: usize,
        names: String,
    },
    #[error("row {row}, column {column} (`{feature}`): `{text}` is not a number")]
    NotANumber {
        row: usize,
        column: usize,
        feature: String,
        text: String,
    },
    #[error("row {row}, column {column} (`{feature}`): {value} is not a finite number")]
    NotFinite {
        row: usize,
        column: usize,
        feature: String,
        value: f64,
    },
    #[error("CSV header names `{0}`, which is not a feature of the active model ({1})")]
    UnknownColumn(String, String),
    #[error(
        "CSV header lists {found} columns; the active model takes {expected} features ({names})"
    )]
    HeaderWidth {
        found: usize,
        expected: usize,
        names: String,
    },
    #[error("CSV body is not UTF-8 text")]
    NotUtf8,
}

/// Row-major, validated input: `rows * features.len()` finite values.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub values: Vec<f64>,
    pub rows: usize,
}

/// Parses a JSON predict body.
pub fn from_json(body: &[u8], features: &[String]) -> Result<Batch, InputError> {
    let req: PredictRequest =
        serde_json::from_slice(body).map_err(|e| InputError::Json(e.to_string()))?;
    let d = features.len();
    let mut values = Vec::with_capacity(req.rows.len() * d);
    for (i, row) in req.rows.iter().enumerate() {
        check_width(i, row.len(), features)?;
        for (j, v) in row.iter().enumerate() {
            check_finite(i, j, *v, features)?;
        }
        values.extend_from_slice(row);
    }
    if req.rows.is_empty() {
        return Err(InputError::Empty);
    }
    Ok(Batch {
        values,
        rows: req.rows.len(),
    })
}

/// Parses a CSV body. A first line without any number in it is a header: its names must be
/// the model's features (any order; columns are reordered to the model's order). A line with
/// some numbers is data, so a bad cell in the first row is reported as such.
/// Rows are counted from 0 among data lines; blank lines are skipped.
pub fn from_csv(body: &[u8], features: &[String]) -> Result<Batch, InputError> {
    let text = std::str::from_utf8(body).map_err(|_| InputError::NotUtf8)?;
    let d = features.len();
    let mut lines = text.lines().filter(|l| !l.trim().is_empty()).peekable();
    let mut order: Vec<usize> = (0..d).collect();
    if let Some(first) = lines.peek() {
        let cells: Vec<&str> = first.split(',').map(str::trim).collect();
        if cells.iter().all(|c| c.parse::<f64>().is_err()) {
            if cells.len() != d {
                return Err(InputError::HeaderWidth {
                    found: cells.len(),
                    expected: d,
                    names: features.join(", "),
                });
            }
            order = Vec::with_capacity(d);
            for feature in features {
                let pos = cells
                    .iter()
                    .position(|c| c.trim_matches('"') == feature)
                    .ok_or_else(|| {
                        let unknown = cells
                            .iter()
                            .map(|c| c.trim_matches('"'))
                            .find(|c| !features.iter().any(|f| f == c))
                            .unwrap_or(feature.as_str());
                        InputError::UnknownColumn(unknown.to_string(), features.join(", "))
                    })?;
                order.push(pos);
            }
            lines.next();
        }
    }
    let mut values = Vec::new();
    let mut rows = 0;
    for (i, line) in lines.enumerate() {
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        check_width(i, cells.len(), features)?;
        for (j, pos) in order.iter().enumerate() {
            let text = cells[*pos];
            let v: f64 = text.parse().map_err(|_| InputError::NotANumber {
                row: i,
                column: j,
                feature: features[j].clone(),
                text: text.chars().take(40).collect(),
            })?;
            check_finite(i, j, v, features)?;
            values.push(v);
        }
        rows += 1;
    }
    if rows == 0 {
        return Err(InputError::Empty);
    }
    Ok(Batch { values, rows })
}

fn check_width(row: usize, found: usize, features: &[String]) -> Result<(), InputError> {
    if found == features.len() {
        Ok(())
    } else {
        Err(InputError::WrongWidth {
            row,
            found,
            expected: features.len(),
            names: features.join(", "),
        })
    }
}

fn check_finite(row: usize, column: usize, v: f64, features: &[String]) -> Result<(), InputError> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(InputError::NotFinite {
            row,
            column,
            feature: features[column].clone(),
            value: v,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        vec!["a".into(), "b".into()]
    }

    #[test]
    fn csv_with_and_without_header() {
        let plain = from_csv(b"1,2\n3,4\n", &names()).unwrap();
        assert_eq!((plain.rows, plain.values), (2, vec![1.0, 2.0, 3.0, 4.0]));
        let reordered = from_csv(b"\"b\",a\n2,1\n\n4,3\n", &names()).unwrap();
        assert_eq!(reordered.values, vec![1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn refusals_name_row_and_column() {
        let e = from_csv(b"a,b\n1,2\n3,x\n", &names()).unwrap_err();
        assert_eq!(e.to_string(), "row 1, column 1 (`b`): `x` is not a number");
        let e = from_csv(b"1,inf\n", &names()).unwrap_err();
        assert!(
            matches!(
                e,
                InputError::NotFinite {
                    row: 0,
                    column: 1,
                    ..
                }
            ),
            "{e}"
        );
        let e = from_csv(b"1,x\n", &names()).unwrap_err();
        assert_eq!(e.to_string(), "row 0, column 1 (`b`): `x` is not a number");
        let e = from_csv(b"a,c\n1,2\n", &names()).unwrap_err();
        assert!(e.to_string().contains("`c`"), "{e}");
        let e = from_json(br#"{"rows":[[1,2],[3]]}"#, &names()).unwrap_err();
        assert!(e.to_string().starts_with("row 1 has 1 values"), "{e}");
        assert_eq!(
            from_json(br#"{"rows":[]}"#, &names()),
            Err(InputError::Empty)
        );
        assert_eq!(from_csv(b"a,b\n", &names()), Err(InputError::Empty));
    }
}
