//! The runs table's filter language, e.g. `metrics.accuracy > 0.9 and params.max_depth = 4`.
//!
//! ```text
//! query := and ("or" and)*        and := cond ("and" cond)*
//! cond  := "(" query ")" | field op value
//! field := name ("." name)*       op := = != > >= < <= ~   (~ is "contains")
//! value := number | 'text' | "text" | word
//! ```
//! Numbers compare as numbers; everything else compares as text. A field a run does not have
//! never matches. A list field (a run's tags) matches `=` and `~` when any element does, and
//! `!=` when none is equal. Parse errors say what was expected and at which column.

/// A value a run exposes to filters.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Num(f64),
    Text(String),
    /// Several texts, e.g. tags.
    List(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Contains,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Or(Vec<Filter>),
    And(Vec<Filter>),
    Cond {
        field: String,
        op_text: String,
        value: Value,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("filter, column {column}: {message}")]
pub struct FilterError {
    pub column: usize,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Text(String),
    Op(String),
    Open,
    Close,
}

fn tokenize(q: &str) -> Result<Vec<(usize, Tok)>, FilterError> {
    let chars: Vec<char> = q.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let col = i + 1;
        if c.is_whitespace() {
            i += 1;
        } else if c == '(' || c == ')' {
            out.push((col, if c == '(' { Tok::Open } else { Tok::Close }));
            i += 1;
        } else if c == '\'' || c == '"' {
            let end = chars[i + 1..]
                .iter()
                .position(|x| *x == c)
                .ok_or(FilterError {
                    column: col,
                    message: format!("unclosed {c}"),
                })?;
            out.push((col, Tok::Text(chars[i + 1..i + 1 + end].iter().collect())));
            i += end + 2;
        } else if "=!<>~".contains(c) {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let op = if ["!=", ">=", "<="].contains(&two.as_str()) {
                two
            } else {
                c.to_string()
            };
            if op == "!" {
                return Err(FilterError {
                    column: col,
                    message: "`!` must be followed by `=`".into(),
                });
            }
            i += op.len();
            out.push((col, Tok::Op(op)));
        } else {
            let start = i;
            while i < chars.len() && !chars[i].is_whitespace() && !"()=!<>~'\"".contains(chars[i]) {
                i += 1;
            }
            out.push((col, Tok::Word(chars[start..i].iter().collect())));
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    len: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.1)
    }
    fn column(&self) -> usize {
        self.toks.get(self.pos).map(|t| t.0).unwrap_or(self.len + 1)
    }
    fn err<T>(&self, message: String) -> Result<T, FilterError> {
        Err(FilterError {
            column: self.column(),
            message,
        })
    }
    fn keyword(&mut self, k: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(k)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn query(&mut self) -> Result<Filter, FilterError> {
        let mut parts = vec![self.and()?];
        while self.keyword("or") {
            parts.push(self.and()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Filter::Or(parts)
        })
    }
    fn and(&mut self) -> Result<Filter, FilterError> {
        let mut parts = vec![self.cond()?];
        while self.keyword("and") {
            parts.push(self.cond()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Filter::And(parts)
        })
    }
    fn cond(&mut self) -> Result<Filter, FilterError> {
        if self.peek() == Some(&Tok::Open) {
            self.pos += 1;
            let q = self.query()?;
            if self.peek() != Some(&Tok::Close) {
                return self.err("expected `)`".into());
            }
            self.pos += 1;
            return Ok(q);
        }
        let field = match self.peek() {
            Some(Tok::Word(w)) => w.clone(),
            _ => return self.err("expected a field such as `metrics.accuracy`".into()),
        };
        self.pos += 1;
        let op_text = match self.peek() {
            Some(Tok::Op(o)) => o.clone(),
            _ => {
                return self.err(format!(
                    "expected an operator (= != > >= < <= ~) after `{field}`"
                ))
            }
        };
        self.pos += 1;
        let value = match self.peek() {
            Some(Tok::Word(w)) => match w.parse::<f64>() {
                Ok(n) => Value::Num(n),
                Err(_) => Value::Text(w.clone()),
            },
            Some(Tok::Text(t)) => Value::Text(t.clone()),
            _ => return self.err(format!("expected a value after `{op_text}`")),
        };
        self.pos += 1;
        Ok(Filter::Cond {
            field,
            op_text,
            value,
        })
    }
}

impl Filter {
    /// Parses a query; an empty query is `None` (everything matches).
    pub fn parse(q: &str) -> Result<Option<Filter>, FilterError> {
        let toks = tokenize(q)?;
        if toks.is_empty() {
            return Ok(None);
        }
        let mut p = Parser {
            toks,
            pos: 0,
            len: q.chars().count(),
        };
        let f = p.query()?;
        if p.pos < p.toks.len() {
            return p.err("expected `and`, `or` or the end of the filter".into());
        }
        Ok(Some(f))
    }

    /// Whether a run matches; `get` looks a field up (`None`: the run has no such field).
    pub fn matches(&self, get: &dyn Fn(&str) -> Option<Value>) -> bool {
        match self {
            Filter::Or(parts) => parts.iter().any(|p| p.matches(get)),
            Filter::And(parts) => parts.iter().all(|p| p.matches(get)),
            Filter::Cond {
                field,
                op_text,
                value,
            } => {
                let Some(actual) = get(field) else {
                    return false;
                };
                let op = match op_text.as_str() {
                    "=" => Op::Eq,
                    "!=" => Op::Ne,
                    ">" => Op::Gt,
                    ">=" => Op::Ge,
                    "<" => Op::Lt,
                    "<=" => Op::Le,
                    _ => Op::Contains,
                };
                compare(&actual, op, value)
            }
        }
    }
}

fn compare(actual: &Value, op: Op, wanted: &Value) -> bool {
    use std::cmp::Ordering::*;
    if let Value::List(items) = actual {
        let each = |i: &String| compare(&Value::Text(i.clone()), op, wanted);
        return match op {
            Op::Ne => items.iter().all(each),
            _ => items.iter().any(each),
        };
    }
    let ord = match (actual, wanted) {
        (Value::Num(a), Value::Num(b)) => a.partial_cmp(b),
        (a, b) => Some(text(a).cmp(&text(b))),
    };
    match op {
        Op::Contains => text(actual)
            .to_lowercase()
            .contains(&text(wanted).to_lowercase()),
        Op::Eq => ord == Some(Equal),
        Op::Ne => ord != Some(Equal),
        Op::Gt => ord == Some(Greater),
        Op::Ge => matches!(ord, Some(Greater | Equal)),
        Op::Lt => ord == Some(Less),
        Op::Le => matches!(ord, Some(Less | Equal)),
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::Num(n) => n.to_string(),
        Value::Text(t) => t.clone(),
        Value::List(items) => items.join(","),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(field: &str) -> Option<Value> {
        match field {
            "metrics.accuracy" => Some(Value::Num(0.93)),
            "params.max_depth" => Some(Value::Num(4.0)),
            "params.algorithm" => Some(Value::Text("decision_tree".into())),
            "dataset" => Some(Value::Text("iris".into())),
            "tags" => Some(Value::List(vec!["baseline".into(), "scaled".into()])),
            _ => None,
        }
    }

    fn check(q: &str) -> bool {
        Filter::parse(q)
            .unwrap()
            .map(|f| f.matches(&run))
            .unwrap_or(true)
    }

    #[test]
    fn evaluates_comparisons_and_boolean_structure() {
        assert!(check("metrics.accuracy > 0.9 and params.max_depth = 4"));
        assert!(!check("metrics.accuracy > 0.95"));
        assert!(check("metrics.accuracy > 0.95 or dataset = iris"));
        assert!(check(
            "(metrics.accuracy >= 0.93 or dataset = wine) and params.algorithm ~ TREE"
        ));
        assert!(!check("metrics.rmse < 1"), "a missing field never matches");
        assert!(check("params.algorithm != 'random_forest'"));
        assert!(check(""));
    }

    #[test]
    fn list_fields_match_any_element() {
        assert!(check("tags = baseline"));
        assert!(check("tags = scaled and tags ~ BASE"));
        assert!(!check("tags = base"), "= is the whole tag");
        assert!(!check("tags != baseline"));
        assert!(check("tags != candidate"));
    }

    #[test]
    fn errors_say_what_and_where() {
        let e = |q: &str| Filter::parse(q).unwrap_err().to_string();
        assert_eq!(
            e("metrics.accuracy >"),
            "filter, column 19: expected a value after `>`"
        );
        assert_eq!(
            e("metrics.accuracy 0.9"),
            "filter, column 18: expected an operator (= != > >= < <= ~) after `metrics.accuracy`"
        );
        assert_eq!(e("(dataset = iris"), "filter, column 16: expected `)`");
        assert_eq!(e("dataset = 'iris"), "filter, column 11: unclosed '");
        assert_eq!(
            e("a = 1 b = 2"),
            "filter, column 7: expected `and`, `or` or the end of the filter"
        );
    }
}
