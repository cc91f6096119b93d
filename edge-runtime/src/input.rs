//! Predict inputs: JSON (`{"rows": [[...], ...]}`) or CSV (`text/csv`, header optional),
//! checked against the active model's features before anything reaches a module.
//!
//! Every refusal names the row and column it is about, and shows at most a bounded, escaped
//! piece of the text it refuses ([`wasmops_shared::quote`]).
//!
//! JSON is read in one pass straight into the row-major batch (no `Vec<Vec<f64>>` first), so
//! a value of the wrong type is reported by row and column, not by character position. CSV
//! goes through the `csv` crate, as the dashboard's import does (`trainer/src/csv_import.rs`),
//! so the device reads what the dashboard reads: quoted fields, fields trimmed of spaces, a
//! UTF-8 byte-order mark at the start.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use wasmops_shared::quote::{bounded, clipped};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum InputError {
    #[error("malformed JSON predict request: {0} (expected {{\"rows\": [[number, ...], ...]}})")]
    Json(String),
    #[error("row {row}: {reason} (each row is an array of numbers, one per feature)")]
    JsonRow { row: usize, reason: String },
    #[error("row {row}, column {column}{}: {reason}", feature_suffix(feature))]
    JsonValue {
        row: usize,
        column: usize,
        /// The feature of that column (`None` past the model's last feature).
        feature: Option<String>,
        reason: String,
    },
    #[error("no rows to predict")]
    Empty,
    #[error("row {row} has {found} values; the active model takes {expected} features ({names})")]
    WrongWidth {
        row: usize,
        found: usize,
        expected: usize,
        names: String,
    },
    #[error(
        "row {row}, column {column} ({}): {} is not a number",
        bounded(feature),
        bounded(text)
    )]
    NotANumber {
        row: usize,
        column: usize,
        feature: String,
        text: String,
    },
    #[error(
        "row {row}, column {column} ({}): {value} is not a finite number",
        bounded(feature)
    )]
    NotFinite {
        row: usize,
        column: usize,
        feature: String,
        value: f64,
    },
    #[error("CSV header names {} (column {column}), which is not a feature of the active model ({names})", bounded(name))]
    UnknownColumn {
        name: String,
        column: usize,
        names: String,
    },
    #[error(
        "CSV header names {} twice (columns {first} and {second})",
        bounded(name)
    )]
    DuplicateColumn {
        name: String,
        first: usize,
        second: usize,
    },
    #[error(
        "CSV header lists {found} columns; the active model takes {expected} features ({names})"
    )]
    HeaderWidth {
        found: usize,
        expected: usize,
        names: String,
    },
    #[error("CSV body is not UTF-8 text (first bad byte at offset {offset})")]
    NotUtf8 { offset: usize },
    #[error("CSV line {line}: {message}")]
    Csv { line: u64, message: String },
}

fn feature_suffix(feature: &Option<String>) -> String {
    match feature {
        Some(f) => format!(" ({})", bounded(f)),
        None => " (past the model's last feature)".into(),
    }
}

/// Row-major, validated input: `rows * features.len()` finite values.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub values: Vec<f64>,
    pub rows: usize,
}

/// Parses a JSON predict body: an object whose `rows` is an array of rows, each an array of
/// exactly one number per feature. Other keys are ignored, and so is a UTF-8 byte-order mark
/// at the start (RFC 8259 lets a parser ignore it). The first problem is the error.
pub fn from_json(body: &[u8], features: &[String]) -> Result<Batch, InputError> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let problem = RefCell::new(None);
    let mut values = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed = RequestSeed {
        features,
        values: &mut values,
        problem: &problem,
    }
    .deserialize(&mut de)
    .and_then(|rows| de.end().map(|()| rows));
    match parsed {
        Ok(0) => Err(InputError::Empty),
        Ok(rows) => Ok(Batch { values, rows }),
        // A value of the wrong type or a row of the wrong width: the problem a visitor
        // recorded says its row and column. Broken syntax: serde_json's line and column.
        Err(e) => match (e.classify(), problem.into_inner()) {
            (serde_json::error::Category::Data, Some(problem)) => Err(problem),
            _ => Err(InputError::Json(clipped(&e.to_string()))),
        },
    }
}

/// The request object; yields the number of rows.
struct RequestSeed<'a> {
    features: &'a [String],
    values: &'a mut Vec<f64>,
    problem: &'a RefCell<Option<InputError>>,
}

enum Field {
    Rows,
    Other,
}

impl<'de> de::Deserialize<'de> for Field {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Field, D::Error> {
        struct FieldVisitor;
        impl Visitor<'_> for FieldVisitor {
            type Value = Field;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Field, E> {
                Ok(if v == "rows" {
                    Field::Rows
                } else {
                    Field::Other
                })
            }
        }
        d.deserialize_identifier(FieldVisitor)
    }
}

impl<'de> DeserializeSeed<'de> for RequestSeed<'_> {
    type Value = usize;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RequestSeed<'_> {
    type Value = usize;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object with `rows`")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<usize, A::Error> {
        let mut rows = None;
        while let Some(key) = map.next_key::<Field>()? {
            match key {
                Field::Rows if rows.is_some() => return Err(de::Error::duplicate_field("rows")),
                Field::Rows => {
                    rows = Some(map.next_value_seed(RowsSeed {
                        features: self.features,
                        values: &mut *self.values,
                        problem: self.problem,
                    })?)
                }
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        rows.ok_or_else(|| de::Error::missing_field("rows"))
    }
}

/// The array of rows; yields how many there were.
struct RowsSeed<'a> {
    features: &'a [String],
    values: &'a mut Vec<f64>,
    problem: &'a RefCell<Option<InputError>>,
}

impl<'de> DeserializeSeed<'de> for RowsSeed<'_> {
    type Value = usize;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RowsSeed<'_> {
    type Value = usize;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of rows")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        let mut row = 0;
        loop {
            let seed = RowSeed {
                row,
                features: self.features,
                values: &mut *self.values,
                problem: self.problem,
            };
            match seq.next_element_seed(seed) {
                Ok(Some(())) => row += 1,
                Ok(None) => return Ok(row),
                Err(e) => {
                    // A row that is not an array fails before its visitor runs.
                    let mut problem = self.problem.borrow_mut();
                    if problem.is_none() {
                        *problem = Some(InputError::JsonRow {
                            row,
                            reason: without_json_position(&e),
                        });
                    }
                    return Err(e);
                }
            }
        }
    }
}

/// One row: its values are appended to the batch, and its width checked.
struct RowSeed<'a> {
    row: usize,
    features: &'a [String],
    values: &'a mut Vec<f64>,
    problem: &'a RefCell<Option<InputError>>,
}

impl<'de> DeserializeSeed<'de> for RowSeed<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RowSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "an array of {} numbers", self.features.len())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let d = self.features.len();
        let mut column = 0;
        loop {
            match seq.next_element_seed(Number) {
                Ok(Some(v)) => {
                    if column < d {
                        if let Err(e) = check_finite(self.row, column, v, self.features) {
                            return Err(self.fail(e));
                        }
                        self.values.push(v);
                    }
                    column += 1;
                }
                Ok(None) => break,
                Err(e) => {
                    let problem = InputError::JsonValue {
                        row: self.row,
                        column,
                        feature: self.features.get(column).cloned(),
                        reason: without_json_position(&e),
                    };
                    self.problem.borrow_mut().get_or_insert(problem);
                    return Err(e);
                }
            }
        }
        if column != d {
            let e = InputError::WrongWidth {
                row: self.row,
                found: column,
                expected: d,
                names: self.features.join(", "),
            };
            return Err(self.fail(e));
        }
        Ok(())
    }
}

impl RowSeed<'_> {
    /// Records `problem` as the request's error and gives serde an error to stop with.
    fn fail<E: de::Error>(&self, problem: InputError) -> E {
        let message = problem.to_string();
        self.problem.borrow_mut().get_or_insert(problem);
        E::custom(message)
    }
}

/// The message of a deserializer's error, without the position serde_json appends, and
/// clipped (serde repeats a refused string in full).
fn without_json_position<E: de::Error + fmt::Display>(e: &E) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) if text[i..].contains(" column ") => clipped(&text[..i]),
        _ => clipped(&text),
    }
}

/// One value: any JSON number (integers convert as serde's `f64` does).
struct Number;

impl<'de> DeserializeSeed<'de> for Number {
    type Value = f64;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<f64, D::Error> {
        d.deserialize_f64(self)
    }
}

impl Visitor<'_> for Number {
    type Value = f64;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number")
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
        Ok(v)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
        Ok(v as f64)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
        Ok(v as f64)
    }
}

/// Parses a CSV body. A first record without any number in it is a header: its names must be
/// the model's features (any order; columns are reordered to the model's order). A record
/// with some numbers is data, so a bad cell in the first row is reported as such.
/// Rows are counted from 0 among data records; blank lines are skipped. Fields are trimmed of
/// spaces and may be quoted (`"1.5"`, `"a,b"`); a UTF-8 byte-order mark at the start is
/// dropped.
pub fn from_csv(body: &[u8], features: &[String]) -> Result<Batch, InputError> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    if let Err(e) = std::str::from_utf8(body) {
        return Err(InputError::NotUtf8 {
            offset: e.valid_up_to(),
        });
    }
    let d = features.len();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(body);
    let mut record = csv::StringRecord::new();
    // Position in the record of each feature, in the model's order (`None`: the same order).
    let mut order: Option<Vec<usize>> = None;
    let mut first = true;
    let mut values = Vec::new();
    let mut rows = 0;
    loop {
        match reader.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                return Err(InputError::Csv {
                    line: e.position().map_or(0, csv::Position::line),
                    message: bounded(&e.to_string()),
                })
            }
        }
        if record.iter().all(str::is_empty) {
            continue;
        }
        if std::mem::take(&mut first) && record.iter().all(|c| c.parse::<f64>().is_err()) {
            order = header_order(&record, features)?;
            continue;
        }
        check_width(rows, record.len(), features)?;
        for j in 0..d {
            let pos = order.as_ref().map_or(j, |o| o[j]);
            let text = record.get(pos).unwrap_or("");
            let v: f64 = text.parse().map_err(|_| InputError::NotANumber {
                row: rows,
                column: j,
                feature: features[j].clone(),
                text: text.to_string(),
            })?;
            check_finite(rows, j, v, features)?;
            values.push(v);
        }
        rows += 1;
    }
    if rows == 0 {
        return Err(InputError::Empty);
    }
    Ok(Batch { values, rows })
}

/// Maps a header to the model's features: `None` when it lists them in the model's order,
/// else the record position of each feature.
fn header_order(
    header: &csv::StringRecord,
    features: &[String],
) -> Result<Option<Vec<usize>>, InputError> {
    let d = features.len();
    if header.len() != d {
        return Err(InputError::HeaderWidth {
            found: header.len(),
            expected: d,
            names: features.join(", "),
        });
    }
    if header.iter().eq(features.iter().map(String::as_str)) {
        return Ok(None);
    }
    let mut order: Vec<Option<usize>> = vec![None; d];
    for (pos, name) in header.iter().enumerate() {
        let Some(j) = features.iter().position(|f| f == name) else {
            return Err(InputError::UnknownColumn {
                name: name.to_string(),
                column: pos,
                names: features.join(", "),
            });
        };
        if let Some(first) = order[j] {
            return Err(InputError::DuplicateColumn {
                name: name.to_string(),
                first,
                second: pos,
            });
        }
        order[j] = Some(pos);
    }
    // As many names as features, none unknown and none twice: every feature has its column
    // (unless the model itself lists a name twice, which only the same order can match).
    order
        .into_iter()
        .enumerate()
        .map(|(j, pos)| {
            pos.ok_or_else(|| InputError::UnknownColumn {
                name: features[j].clone(),
                column: j,
                names: features.join(", "),
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
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
    fn csv_reads_what_the_dashboard_reads() {
        let bom = from_csv(b"\xEF\xBB\xBFa,b\n1,2\n", &names()).unwrap();
        assert_eq!(bom.values, vec![1.0, 2.0]);
        let quoted = from_csv(b"\"1.5\",\" 2\"\r\n  \n3 , 4\n", &names()).unwrap();
        assert_eq!(quoted.values, vec![1.5, 2.0, 3.0, 4.0]);
        // As in the dashboard's import, a quote opens a quoted field only as its first byte.
        let e = from_csv(b"1, \"2\"\n", &names()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "row 0, column 1 (`b`): `\\\"2\\\"` is not a number"
        );
        let comma: Vec<String> = vec!["a,b".into(), "c".into()];
        let header = from_csv(b"c,\"a,b\"\n1,2\n", &comma).unwrap();
        assert_eq!(header.values, vec![2.0, 1.0]);
        let e = from_csv(b"\"a,b\",c\n1,2\n", &names()).unwrap_err();
        assert!(e.to_string().contains("`a,b` (column 0)"), "{e}");
        let e = from_csv(b"a,a\n1,2\n", &names()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "CSV header names `a` twice (columns 0 and 1)"
        );
    }

    #[test]
    fn json_type_errors_name_row_and_column() {
        let e = from_json(br#"{"rows":[[1,2],[3,"x"]]}"#, &names()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "row 1, column 1 (`b`): invalid type: string \"x\", expected a number"
        );
        let e = from_json(br#"{"rows":[[1,2],7]}"#, &names()).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("row 1: invalid type: integer `7`"),
            "{e}"
        );
        let e = from_json(br#"{"rows":[[1,2,null]]}"#, &names()).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("row 0, column 2 (past the model's last feature): invalid type: null"),
            "{e}"
        );
        let bom = from_json(b"\xEF\xBB\xBF{\"rows\":[[1,2]]}", &names()).unwrap();
        assert_eq!(bom.values, vec![1.0, 2.0]);
        let ok = from_json(br#"{"model":"x","rows":[[1,2.5],[-3,4e2]]}"#, &names()).unwrap();
        assert_eq!((ok.rows, ok.values), (2, vec![1.0, 2.5, -3.0, 400.0]));
        let e = from_json(br#"{"rows":[[1,2]],"rows":[[1,2]]}"#, &names()).unwrap_err();
        assert!(e.to_string().contains("duplicate field `rows`"), "{e}");
        let e = from_json(br#"{"rows":[[1,2]]} x"#, &names()).unwrap_err();
        assert!(e.to_string().contains("trailing characters"), "{e}");
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
