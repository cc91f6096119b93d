//! CSV import: header detection, column types, and every bad row reported with its line and
//! column, so the user decides to skip them or cancel. Nothing is dropped silently.

use serde::{Deserialize, Serialize};
use wasmops_shared::dataset::Dataset;

use crate::catalog::Task;

/// A CSV file read into fields, before a target is chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CsvTable {
    pub name: String,
    pub has_header: bool,
    pub columns: Vec<Column>,
    /// Records with the right number of fields, with their 1-based line numbers.
    pub records: Vec<(u64, Vec<String>)>,
    /// Records with the wrong number of fields (never usable).
    pub ragged: Vec<RowProblem>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    /// Most (over half) of its non-empty values parse as finite numbers; the rest are bad values.
    pub numeric: bool,
    pub distinct: usize,
}

/// One bad row: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowProblem {
    pub line: u64,
    pub column: Option<String>,
    pub message: String,
}

impl std::fmt::Display for RowProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.column {
            Some(c) => write!(f, "line {}, column `{c}`: {}", self.line, self.message),
            None => write!(f, "line {}: {}", self.line, self.message),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsvError {
    #[error("{0} is empty")]
    Empty(String),
    #[error("{file}: line {line}: {message}")]
    Syntax {
        file: String,
        line: u64,
        message: String,
    },
    #[error("no column named `{0}`")]
    UnknownColumn(String),
    #[error("column `{column}` is not numeric (e.g. `{example}` on line {line}); features must be numbers")]
    NonNumericFeature {
        column: String,
        example: String,
        line: u64,
    },
    #[error("a dataset needs a target and at least one feature column; found {0} columns")]
    TooFewColumns(usize),
    #[error("no usable rows are left after skipping {0} bad rows")]
    NoRows(usize),
    #[error("{name} is not a text (CSV) file: it looks like {what}{hint}")]
    NotText {
        name: String,
        what: &'static str,
        hint: &'static str,
    },
    #[error("column `{0}` holds text, so it can only be a classification target")]
    TextTarget(String),
    #[error("every column but the target is left out: a dataset needs at least one feature")]
    NoFeatures,
}

/// A target choice applied to a table: the dataset of the good rows and every bad row.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    pub dataset: Dataset,
    pub problems: Vec<RowProblem>,
    /// Inferred from the target column unless the user chose it ([`CsvTable::prepare_as`]).
    pub task: Task,
}

/// A table's rows for a trained model ([`CsvTable::rows_for`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelRows {
    /// Row-major features, in the model's order.
    pub x: Vec<f64>,
    /// Class indices of the model's classes, or values.
    pub y: Vec<f64>,
    /// Rows left out, with why.
    pub problems: Vec<RowProblem>,
}

fn number(s: &str) -> Option<f64> {
    s.trim().parse::<f64>().ok().filter(|v| v.is_finite())
}

/// Binary data read as text: NUL bytes, or many characters that are neither printable nor
/// ordinary whitespace (U+FFFD is what a browser makes of bytes that are not UTF-8). A few
/// stray U+FFFD (a Latin-1 `é` in a UTF-8 read) do not make a file binary.
fn binary_kind(text: &str) -> Option<(&'static str, &'static str)> {
    let head: Vec<char> = text.chars().take(4096).collect();
    let odd = head
        .iter()
        .filter(|c| **c == '\u{FFFD}' || (c.is_control() && !matches!(c, '\t' | '\r' | '\n')))
        .count();
    if !head.contains(&'\0') && odd * 20 <= head.len() {
        return None;
    }
    let starts = |magic: &str| text.starts_with(magic);
    Some(if starts("\u{FFFD}PNG") {
        ("a PNG image", "")
    } else if starts("PK\u{3}\u{4}") {
        (
            "a ZIP archive (an Excel .xlsx workbook is one)",
            ": save the sheet as CSV first",
        )
    } else if starts("%PDF") {
        ("a PDF document", "")
    } else {
        ("binary data", "")
    })
}

/// Line numbers (1-based) of record positions, counting `\n` only: right for `\n`, `\r\n` and
/// mixed files alike. The CSV reader's own line count is not (one too low after `\r\n`, where
/// it counts the `\r` as the end of the record and starts the next one at the `\n`).
struct Lines<'a> {
    text: &'a [u8],
    offset: usize,
    line: u64,
}

impl Lines<'_> {
    /// The line of `byte`; offsets must come in increasing order (records do).
    fn at(&mut self, byte: u64) -> u64 {
        let mut byte = (byte as usize).min(self.text.len());
        // After `\r\n` the reader's record position is the `\n`: the record starts after it.
        while byte < self.text.len() && matches!(self.text[byte], b'\r' | b'\n') {
            byte += 1;
        }
        if byte < self.offset {
            self.offset = 0;
            self.line = 1;
        }
        self.line += self.text[self.offset..byte]
            .iter()
            .filter(|b| **b == b'\n')
            .count() as u64;
        self.offset = byte;
        self.line
    }
}

/// Reads CSV text. Fails only when the file has no data at all or is not CSV.
pub fn read(name: &str, text: &str) -> Result<CsvTable, CsvError> {
    if let Some((what, hint)) = binary_kind(text) {
        return Err(CsvError::NotText {
            name: name.into(),
            what,
            hint,
        });
    }
    let mut lines = Lines {
        text: text.as_bytes(),
        offset: 0,
        line: 1,
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut all: Vec<(u64, Vec<String>)> = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| CsvError::Syntax {
            file: name.into(),
            line: e.position().map(|p| lines.at(p.byte())).unwrap_or(0),
            message: e.to_string(),
        })?;
        let line = record.position().map(|p| lines.at(p.byte())).unwrap_or(0);
        if record.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        all.push((line, record.iter().map(|f| f.trim().to_string()).collect()));
    }
    let Some((_, first)) = all.first().cloned() else {
        return Err(CsvError::Empty(name.into()));
    };
    // A header is a first row with a non-numeric field in a column that is numeric below it,
    // or a first row of all non-numeric fields.
    let numeric_below = |j: usize| {
        let vals: Vec<&str> = all[1..]
            .iter()
            .filter_map(|(_, r)| r.get(j).map(String::as_str))
            .collect();
        !vals.is_empty() && vals.iter().filter(|v| number(v).is_some()).count() * 2 > vals.len()
    };
    let has_header = all.len() > 1
        && (first.iter().all(|f| number(f).is_none())
            || first
                .iter()
                .enumerate()
                .any(|(j, f)| number(f).is_none() && numeric_below(j)));
    let width = first.len();
    let names: Vec<String> = if has_header {
        first
            .iter()
            .enumerate()
            .map(|(j, f)| {
                if f.is_empty() {
                    format!("column {}", j + 1)
                } else {
                    f.clone()
                }
            })
            .collect()
    } else {
        (1..=width).map(|j| format!("column {j}")).collect()
    };
    let mut records = Vec::new();
    let mut ragged = Vec::new();
    for (line, fields) in all.into_iter().skip(usize::from(has_header)) {
        if fields.len() == width {
            records.push((line, fields));
        } else {
            ragged.push(RowProblem {
                line,
                column: None,
                message: format!("expected {width} fields, found {}", fields.len()),
            });
        }
    }
    let columns = names
        .into_iter()
        .enumerate()
        .map(|(j, name)| {
            let values: Vec<&str> = records
                .iter()
                .map(|(_, r)| r[j].as_str())
                .filter(|v| !v.is_empty())
                .collect();
            let numeric = !values.is_empty()
                && values.iter().filter(|v| number(v).is_some()).count() * 2 > values.len();
            let mut distinct: Vec<&str> = values.clone();
            distinct.sort_unstable();
            distinct.dedup();
            Column {
                name,
                numeric,
                distinct: distinct.len(),
            }
        })
        .collect();
    Ok(CsvTable {
        name: name.into(),
        has_header,
        columns,
        records,
        ragged,
    })
}

impl CsvTable {
    /// A good default target: the last column.
    pub fn default_target(&self) -> Option<&str> {
        self.columns.last().map(|c| c.name.as_str())
    }

    /// Splits the table into features and `target`, guessing the task from the target column;
    /// rows with a bad value become problems.
    pub fn prepare(&self, target: &str) -> Result<Prepared, CsvError> {
        self.prepare_as(target, None, &[])
    }

    /// Columns that cannot be features: not numeric (text), other than `target`, each with an
    /// example value and its line.
    pub fn text_columns(&self, target: &str) -> Vec<(String, String, u64)> {
        self.columns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.name != target && !c.numeric)
            .map(|(j, c)| {
                let (line, example) = self
                    .records
                    .iter()
                    .find(|(_, r)| !r[j].is_empty() && number(&r[j]).is_none())
                    .map(|(l, r)| (*l, r[j].clone()))
                    .unwrap_or((0, String::new()));
                (c.name.clone(), example, line)
            })
            .collect()
    }

    /// The task [`CsvTable::prepare`] guesses for `target`: classification when the target is
    /// text, or whole numbers with few distinct values.
    pub fn guess_task(&self, target: &str) -> Option<Task> {
        let t = self.columns.iter().position(|c| c.name == target)?;
        let c = &self.columns[t];
        let whole = self
            .records
            .iter()
            .all(|(_, r)| number(&r[t]).is_none_or(|v| v.fract() == 0.0));
        Some(if !c.numeric || (whole && c.distinct <= 20) {
            Task::Classification
        } else {
            Task::Regression
        })
    }

    /// As [`CsvTable::prepare`], with the task chosen by the user when `task` is given (a
    /// numeric target can be either; a text target only a classification one) and the
    /// `ignored` columns left out of the features (an id, a free-text note).
    pub fn prepare_as(
        &self,
        target: &str,
        task: Option<Task>,
        ignored: &[String],
    ) -> Result<Prepared, CsvError> {
        if self.columns.len() < 2 {
            return Err(CsvError::TooFewColumns(self.columns.len()));
        }
        let t = self
            .columns
            .iter()
            .position(|c| c.name == target)
            .ok_or_else(|| CsvError::UnknownColumn(target.into()))?;
        let used = |j: usize| j != t && !ignored.contains(&self.columns[j].name);
        if !(0..self.columns.len()).any(used) {
            return Err(CsvError::NoFeatures);
        }
        for (j, c) in self.columns.iter().enumerate() {
            if used(j) && !c.numeric {
                let (line, example) = self
                    .records
                    .iter()
                    .find(|(_, r)| !r[j].is_empty() && number(&r[j]).is_none())
                    .map(|(l, r)| (*l, r[j].clone()))
                    .unwrap_or((0, String::new()));
                return Err(CsvError::NonNumericFeature {
                    column: c.name.clone(),
                    example,
                    line,
                });
            }
        }
        let target_col = &self.columns[t];
        let task = match task {
            Some(task) => task,
            None => self
                .guess_task(target)
                .ok_or_else(|| CsvError::UnknownColumn(target.into()))?,
        };
        if task == Task::Regression && !target_col.numeric {
            return Err(CsvError::TextTarget(target_col.name.clone()));
        }
        let classification = task == Task::Classification;
        let mut class_names: Vec<String> = Vec::new();
        if classification {
            let mut labels: Vec<&str> = self
                .records
                .iter()
                .map(|(_, r)| r[t].as_str())
                .filter(|v| !v.is_empty())
                .collect();
            labels.sort_by(|a, b| match (number(a), number(b)) {
                (Some(x), Some(y)) => x.total_cmp(&y),
                _ => a.cmp(b),
            });
            labels.dedup();
            class_names = labels.into_iter().map(String::from).collect();
        }
        let mut problems = self.ragged.clone();
        let mut x = Vec::new();
        let mut y = Vec::new();
        'rows: for (line, r) in &self.records {
            let mut row = Vec::with_capacity(self.columns.len() - 1);
            for (j, c) in self.columns.iter().enumerate() {
                if !used(j) {
                    continue;
                }
                match number(&r[j]) {
                    Some(v) => row.push(v),
                    None => {
                        let message = if r[j].is_empty() {
                            "empty value (missing values are not supported yet)".to_string()
                        } else {
                            format!("`{}` is not a finite number", r[j])
                        };
                        problems.push(RowProblem {
                            line: *line,
                            column: Some(c.name.clone()),
                            message,
                        });
                        continue 'rows;
                    }
                }
            }
            let label = &r[t];
            let value = if label.is_empty() {
                None
            } else if classification {
                class_names
                    .iter()
                    .position(|c| c == label)
                    .map(|i| i as f64)
            } else {
                number(label)
            };
            match value {
                Some(v) => {
                    x.extend(row);
                    y.push(v);
                }
                None => problems.push(RowProblem {
                    line: *line,
                    column: Some(target_col.name.clone()),
                    message: if label.is_empty() {
                        "empty target".into()
                    } else {
                        format!("`{label}` is not a number")
                    },
                }),
            }
        }
        problems.sort_by_key(|p| p.line);
        if y.is_empty() {
            return Err(CsvError::NoRows(problems.len()));
        }
        let dataset = Dataset {
            name: self.name.clone(),
            feature_names: self
                .columns
                .iter()
                .enumerate()
                .filter(|(j, _)| used(*j))
                .map(|(_, c)| c.name.clone())
                .collect(),
            target_name: target_col.name.clone(),
            class_names,
            x,
            y,
        };
        Ok(Prepared {
            dataset,
            problems,
            task,
        })
    }

    /// The rows of this table as a trained model sees them: its features by name, in the
    /// model's order (other columns are left out), and its target as class indices of
    /// `classes` (a classifier; a label matches a class by its text, or as the same number) or
    /// as numbers (`classes` empty). Held-out files for gates and evaluations are read this way,
    /// so the model's class indices hold whatever classes the file happens to contain. Rows
    /// with a bad value or an unknown class become problems, as in [`CsvTable::prepare`].
    pub fn rows_for(
        &self,
        features: &[String],
        target: &str,
        classes: &[String],
    ) -> Result<ModelRows, CsvError> {
        let column = |name: &str| {
            self.columns
                .iter()
                .position(|c| c.name == name)
                .ok_or_else(|| CsvError::UnknownColumn(name.into()))
        };
        let used: Vec<usize> = features
            .iter()
            .map(|f| column(f))
            .collect::<Result<_, _>>()?;
        let t = column(target)?;
        let mut problems = self.ragged.clone();
        let (mut x, mut y) = (Vec::new(), Vec::new());
        'rows: for (line, r) in &self.records {
            let mut row = Vec::with_capacity(used.len());
            for &j in &used {
                match number(&r[j]) {
                    Some(v) => row.push(v),
                    None => {
                        problems.push(RowProblem {
                            line: *line,
                            column: Some(self.columns[j].name.clone()),
                            message: if r[j].is_empty() {
                                "empty value (missing values are not supported yet)".into()
                            } else {
                                format!("`{}` is not a finite number", r[j])
                            },
                        });
                        continue 'rows;
                    }
                }
            }
            let label = &r[t];
            let value = if classes.is_empty() {
                number(label).ok_or_else(|| format!("`{label}` is not a number"))
            } else {
                classes
                    .iter()
                    .position(|c| c == label)
                    .or_else(|| {
                        let v = number(label)?;
                        classes.iter().position(|c| number(c) == Some(v))
                    })
                    .map(|i| i as f64)
                    .ok_or_else(|| {
                        format!(
                            "`{label}` is not one of the model's classes ({})",
                            classes.join(", ")
                        )
                    })
            };
            match value {
                Ok(v) => {
                    x.extend(row);
                    y.push(v);
                }
                Err(message) => problems.push(RowProblem {
                    line: *line,
                    column: Some(self.columns[t].name.clone()),
                    message: if label.is_empty() {
                        "empty target".into()
                    } else {
                        message
                    },
                }),
            }
        }
        problems.sort_by_key(|p| p.line);
        if y.is_empty() {
            return Err(CsvError::NoRows(problems.len()));
        }
        Ok(ModelRows { x, y, problems })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_for_a_model_follow_its_features_and_classes() {
        let text = "id,b,a,label\n1,2,3,yes\n2,4,5,no\n3,6,7,maybe\n4,8,x,no\n";
        let table = read("h.csv", text).unwrap();
        let features = vec!["a".to_string(), "b".to_string()];
        let classes = vec!["no".to_string(), "yes".to_string()];
        let ModelRows { x, y, problems } = table.rows_for(&features, "label", &classes).unwrap();
        assert_eq!(x, vec![3.0, 2.0, 5.0, 4.0]);
        assert_eq!(y, vec![1.0, 0.0]);
        let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            vec![
                "line 4, column `label`: `maybe` is not one of the model's classes (no, yes)",
                "line 5, column `a`: `x` is not a finite number",
            ]
        );
        // Numeric classes match by value, whatever their spelling.
        let table = read("n.csv", "f,y\n1,1.0\n2,0\n").unwrap();
        let ModelRows { y, .. } = table
            .rows_for(&["f".into()], "y", &["0".into(), "1".into()])
            .unwrap();
        assert_eq!(y, vec![1.0, 0.0]);
        assert_eq!(
            table.rows_for(&["g".into()], "y", &[]).unwrap_err(),
            CsvError::UnknownColumn("g".into())
        );
    }

    #[test]
    fn reports_every_bad_row_with_line_and_column() {
        let text = "a,b,label\n1,2,x\n3,oops,y\n4,5\n,6,x\n7,8,\n9,10,y\n";
        let table = read("t.csv", text).unwrap();
        assert!(table.has_header);
        let p = table.prepare("label").unwrap();
        let shown: Vec<String> = p.problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            vec![
                "line 3, column `b`: `oops` is not a finite number",
                "line 4: expected 3 fields, found 2",
                "line 5, column `a`: empty value (missing values are not supported yet)",
                "line 6, column `label`: empty target",
            ]
        );
        assert_eq!(p.task, Task::Classification);
        assert_eq!(p.dataset.class_names, vec!["x", "y"]);
        assert_eq!(p.dataset.x, vec![1.0, 2.0, 9.0, 10.0]);
        assert_eq!(p.dataset.y, vec![0.0, 1.0]);
    }

    #[test]
    fn headerless_numeric_files_and_regression_targets() {
        let table = read("n.csv", "1,2,0.5\n3,4,1.5\n5,6,2.25\n").unwrap();
        assert!(!table.has_header);
        let p = table.prepare("column 3").unwrap();
        assert_eq!(p.task, Task::Regression);
        assert_eq!(p.dataset.feature_names, vec!["column 1", "column 2"]);
        assert!(p.problems.is_empty());
    }

    #[test]
    fn text_feature_columns_and_empty_files_are_refused_clearly() {
        let err = read("c.csv", "city,temp,y\nParis,3,1\nOslo,-2,0\n")
            .unwrap()
            .prepare("y")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "column `city` is not numeric (e.g. `Paris` on line 2); features must be numbers"
        );
        assert_eq!(
            read("e.csv", "\n\n").unwrap_err().to_string(),
            "e.csv is empty"
        );
        assert!(matches!(
            read("t.csv", "a,b\n1,2\n").unwrap().prepare("z"),
            Err(CsvError::UnknownColumn(_))
        ));
    }

    #[test]
    fn line_numbers_are_right_with_crlf_line_endings() {
        // Excel and Python's csv module write `\r\n`.
        let text = "a,b,label\r\n1,2,x\r\n3,oops,y\r\n4,5\r\n7,8,\r\n9,10,y\r\n";
        let p = read("t.csv", text).unwrap().prepare("label").unwrap();
        let shown: Vec<String> = p.problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            vec![
                "line 3, column `b`: `oops` is not a finite number",
                "line 4: expected 3 fields, found 2",
                "line 5, column `label`: empty target",
            ]
        );
        // A text column's example is on its own line, never on the header's.
        let err = read("c.csv", "id,city,y\r\n1,Paris,1\r\n2,Oslo,0\r\n")
            .unwrap()
            .prepare("y")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "column `city` is not numeric (e.g. `Paris` on line 2); features must be numbers"
        );
        // Mixed endings and blank lines count too.
        let p = read("m.csv", "a,y\n1,x\r\n\r\nbad,y\n2,x\n")
            .unwrap()
            .prepare("y")
            .unwrap();
        assert_eq!(p.problems[0].line, 4, "{:?}", p.problems);
    }

    #[test]
    fn ignored_columns_are_left_out_of_the_features() {
        let table = read("c.csv", "id,city,temp,y\n1,Paris,3,1\n2,Oslo,-2,0\n").unwrap();
        assert_eq!(
            table.text_columns("y"),
            vec![("city".to_string(), "Paris".to_string(), 2)]
        );
        let p = table
            .prepare_as("y", None, &["city".into(), "id".into()])
            .unwrap();
        assert_eq!(p.dataset.feature_names, ["temp"]);
        assert_eq!(p.dataset.x, [3.0, -2.0]);
        assert_eq!(
            table.prepare_as("y", None, &["city".into(), "id".into(), "temp".into()]),
            Err(CsvError::NoFeatures)
        );
    }

    #[test]
    fn binary_files_are_not_read_as_csv() {
        // What `File.text()` makes of a PNG: U+FFFD for the bytes that are not UTF-8.
        let png = String::from_utf8_lossy(&[
            0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d, b'I', b'H', b'D', b'R',
            0, 0, 1, 0, 0, 0, 1, 0, 8, 6, 0, 0, 0, 0x5c, 0x72, 0xa8, 0x66,
        ])
        .into_owned();
        assert_eq!(
            read("chart.png", &png).unwrap_err().to_string(),
            "chart.png is not a text (CSV) file: it looks like a PNG image"
        );
        let xlsx = "PK\u{3}\u{4}\u{14}\0\u{6}\0\u{8}\0\0\0!\0";
        assert!(matches!(
            read("book.xlsx", xlsx),
            Err(CsvError::NotText { .. })
        ));
        // A Latin-1 letter in an otherwise fine file is not binary.
        let t = read("l.csv", "name,v\ncaf\u{FFFD},1\nbar,2\n").unwrap();
        assert_eq!(t.records.len(), 2);
    }

    #[test]
    fn the_task_can_be_chosen_when_the_guess_is_wrong() {
        let mut text = String::from("a,b,grade\n");
        for i in 0..40 {
            text.push_str(&format!("{i},{},{}\n", i * 2, i % 10));
        }
        let table = read("g.csv", &text).unwrap();
        assert_eq!(table.guess_task("grade"), Some(Task::Classification));
        let p = table
            .prepare_as("grade", Some(Task::Regression), &[])
            .unwrap();
        assert_eq!(p.task, Task::Regression);
        assert!(p.dataset.class_names.is_empty());
        assert_eq!(p.dataset.y[..3], [0.0, 1.0, 2.0]);
        let text_target = read("t.csv", "a,kind\n1,x\n2,y\n").unwrap();
        assert_eq!(
            text_target
                .prepare_as("kind", Some(Task::Regression), &[])
                .unwrap_err(),
            CsvError::TextTarget("kind".into())
        );
    }
}
