//! Property-based fuzz targets on stable Rust (proptest): the module loader on mutated valid
//! modules (bytes and custom sections), and the JSON and CSV predict parsers on mutated valid
//! bodies. The property is the same for all: no input panics, and whatever is accepted is what
//! the host relies on (a loaded module can be called and its outputs and profile used; a parsed
//! batch holds whole rows of finite numbers, equal to what a reference parser reads).
//!
//! Each target runs a few cases in every test run; `WASMOPS_FUZZ_CASES=N` runs N cases each
//! (`cargo xtask fuzz [N]` does that).

use std::sync::OnceLock;

use wasmops_edge::input::{self, InputError};
use wasmops_shared::profile::N_BINS;

use super::*;

/// Cases for a target: `WASMOPS_FUZZ_CASES` when set, else `default` (kept to seconds).
fn config(default: u32) -> ProptestConfig {
    let cases = std::env::var("WASMOPS_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        // Failures are printed with their minimal input; no files are written into the tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Module loader

/// Valid modules of different shapes: 3-class logistic (with and without scaler), linear
/// regression, k-means.
fn valid_modules() -> &'static [Vec<u8>] {
    static MODULES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    MODULES.get_or_init(|| {
        let mut scaled = iris_like();
        scaled.scaler = Some(StandardScaler {
            mean: vec![5.8, 3.0, 3.7, 1.2],
            scale: vec![0.8, 0.4, 1.7, 0.7],
        });
        let linear = Pipeline {
            n_features: 2,
            scaler: None,
            model: Model::Linear {
                weights: vec![1.5, -2.0],
                intercept: 0.25,
            },
        };
        let kmeans = Pipeline {
            n_features: 3,
            scaler: None,
            model: Model::KMeans {
                centroids: vec![vec![0.0, 0.0, 0.0], vec![1.0, 2.0, 3.0]],
            },
        };
        vec![
            build(&iris_like(), &[5.1, 3.5, 1.4, 0.2]),
            build(&scaled, &[]),
            build(&linear, &[1.0, 2.0]),
            build(&kmeans, &[]),
        ]
    })
}

fn shared_sandbox() -> &'static Sandbox {
    static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
    SANDBOX.get_or_init(sandbox)
}

/// A JSON value that a section might hold instead of the right one.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::json;
    prop_oneof![
        Just(json!(null)),
        Just(json!(true)),
        Just(json!(0)),
        Just(json!(1)),
        Just(json!(-1)),
        Just(json!(u64::MAX)),
        Just(json!(i64::MIN)),
        Just(json!(0.5)),
        Just(json!(1e308)),
        Just(json!("")),
        Just(json!("f0")),
        Just(json!("3ff0000000000000")),
        Just(json!([])),
        Just(json!({})),
        Just(json!([1.0])),
        (0usize..40, -1e3..1e3f64).prop_map(|(n, v)| json!(vec![v; n])),
        (0usize..40).prop_map(|n| json!(vec![u64::MAX / 2; n])),
        (0usize..20).prop_map(|n| json!(vec!["0000000000000000"; n])),
    ]
}

/// How one section's JSON is changed: the node reached by following `path` (an index into
/// each object's keys or array's elements) is replaced, removed or duplicated.
#[derive(Debug, Clone)]
enum JsonEdit {
    Replace(serde_json::Value),
    Remove,
    Duplicate,
}

#[derive(Debug, Clone)]
enum Mutation {
    /// XOR bytes at positions (scaled to the module's length).
    Flip(Vec<(prop::sample::Index, u8)>),
    /// Keep only a prefix.
    Truncate(prop::sample::Index),
    /// Change one custom section's JSON.
    Section {
        section: usize,
        path: Vec<prop::sample::Index>,
        edit: JsonEdit,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let edit = prop_oneof![
        4 => json_value().prop_map(JsonEdit::Replace),
        1 => Just(JsonEdit::Remove),
        1 => Just(JsonEdit::Duplicate),
    ];
    prop_oneof![
        1 => prop::collection::vec((any::<prop::sample::Index>(), 1..=255u8), 1..4)
            .prop_map(Mutation::Flip),
        1 => any::<prop::sample::Index>().prop_map(Mutation::Truncate),
        6 => (0usize..3, prop::collection::vec(any::<prop::sample::Index>(), 0..5), edit)
            .prop_map(|(section, path, edit)| Mutation::Section { section, path, edit }),
    ]
}

fn edit_json(value: &mut serde_json::Value, path: &[prop::sample::Index], edit: &JsonEdit) {
    use serde_json::Value;
    // Stop one level early, so Remove and Duplicate have a container to act in.
    let child_key = match value {
        Value::Object(map) if !map.is_empty() => {
            let key = path.first().map_or(0, |i| i.index(map.len()));
            Some(serde_json::Value::String(
                map.keys().nth(key).unwrap().clone(),
            ))
        }
        Value::Array(items) if !items.is_empty() => Some(Value::from(
            path.first().map_or(0, |i| i.index(items.len())),
        )),
        _ => None,
    };
    let Some(child_key) = child_key else {
        if let JsonEdit::Replace(v) = edit {
            *value = v.clone();
        }
        return;
    };
    if path.len() > 1 {
        let child = match (value, &child_key) {
            (Value::Object(map), Value::String(k)) => map.get_mut(k).unwrap(),
            (Value::Array(items), Value::Number(i)) => &mut items[i.as_u64().unwrap() as usize],
            _ => unreachable!(),
        };
        return edit_json(child, &path[1..], edit);
    }
    match (value, &child_key, edit) {
        (Value::Object(map), Value::String(k), JsonEdit::Replace(v)) => {
            map.insert(k.clone(), v.clone());
        }
        (Value::Object(map), Value::String(k), JsonEdit::Remove) => {
            map.remove(k);
        }
        (Value::Array(items), Value::Number(i), edit) => {
            let i = i.as_u64().unwrap() as usize;
            match edit {
                JsonEdit::Replace(v) => items[i] = v.clone(),
                JsonEdit::Remove => {
                    items.remove(i);
                }
                JsonEdit::Duplicate => {
                    let copy = items[i].clone();
                    items.insert(i, copy);
                }
            }
        }
        _ => {}
    }
}

fn mutate(module: &[u8], m: &Mutation) -> Vec<u8> {
    match m {
        Mutation::Flip(flips) => {
            let mut bytes = module.to_vec();
            for (at, x) in flips {
                let i = at.index(bytes.len());
                bytes[i] ^= x;
            }
            bytes
        }
        Mutation::Truncate(at) => module[..at.index(module.len())].to_vec(),
        Mutation::Section {
            section,
            path,
            edit,
        } => {
            let name = [
                abi::SECTION_CARD,
                abi::SECTION_PROFILE,
                abi::SECTION_CONFORMANCE,
            ][*section];
            // After a byte-level mutation the section may be gone or no longer JSON.
            let Some(mut value) = section_json(module, name) else {
                return module.to_vec();
            };
            edit_json(&mut value, path, edit);
            with_section(module, name, &serde_json::to_vec(&value).unwrap())
        }
    }
}

/// The section's JSON, if the module still parses as a whole and the section is JSON.
fn section_json(bytes: &[u8], name: &str) -> Option<serde_json::Value> {
    let mut found = None;
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        match payload {
            Ok(wasmparser::Payload::CustomSection(r)) if r.name() == name => {
                found = serde_json::from_slice(r.data()).ok();
            }
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    found
}

/// What the host does with a loaded module on every predict call, none of which may panic.
fn use_like_the_host(m: &wasmops_edge::sandbox::LoadedModule, value: f64) {
    let sb = shared_sandbox();
    let d = m.n_features();
    let o = m.n_outputs();
    assert!(d >= 1 && o >= 1, "a loaded module has features and outputs");
    assert_eq!(m.info.profile.features.len(), d);
    let rows = vec![value; 2 * d];
    if let Ok(outputs) = sb.predict(m, &rows) {
        assert_eq!(outputs.len(), 2 * o);
        let first: Vec<f64> = outputs.chunks_exact(o).map(|r| r[0]).collect();
        assert_eq!(first.len(), 2);
    }
    for f in &m.info.profile.features {
        for v in [value, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0] {
            assert!(f.bin(v) < N_BINS);
        }
    }
    let _ = m.info.card.check_label(value);
}

proptest! {
    #![proptest_config(config(24))]

    #[test]
    fn module_loader_never_panics_and_what_loads_is_usable(
        which in 0usize..4,
        mutations in prop::collection::vec(mutation(), 1..3),
        value in special_f64(),
    ) {
        let mut bytes = valid_modules()[which].clone();
        for m in &mutations {
            bytes = mutate(&bytes, m);
        }
        if ModuleInfo::parse(&bytes).is_ok() {
            if let Ok(m) = shared_sandbox().load(&bytes) {
                use_like_the_host(&m, value);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Predict parsers

fn features(d: usize) -> Vec<String> {
    (0..d).map(|j| format!("f{j}")).collect()
}

/// A cell as text: mostly numbers as a client would write them, sometimes anything else.
fn cell_text() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => special_f64().prop_map(|v| format!("{v}")),
        2 => (-1_000_000i64..1_000_000).prop_map(|v| v.to_string()),
        1 => special_f64().prop_map(|v| format!("{v:e}")),
        1 => prop::sample::select(vec![
            "", " ", "-0", "1e999", "-1e999", "01", "1.", ".5", "+1", "0x10", "1_0", "NaN",
            "inf", "-Infinity", "\"1\"", "\"\"", "null", "true", "[1]", "{}", "\"a,b\"",
            "f0", "\u{feff}1", "1\u{0}", "é", "\"", "\\",
        ])
        .prop_map(str::to_string),
        1 => "[ -~]{0,8}",
    ]
}

/// A byte-level change after the body is written: flip, cut or insert.
fn body_mutation() -> impl Strategy<Value = Option<(prop::sample::Index, u8, u8)>> {
    prop::option::weighted(0.3, (any::<prop::sample::Index>(), 0u8..3, any::<u8>()))
}

fn mutate_body(mut body: Vec<u8>, m: &Option<(prop::sample::Index, u8, u8)>) -> Vec<u8> {
    if let Some((at, how, byte)) = m {
        let i = at.index(body.len() + 1);
        match how {
            0 if i < body.len() => body[i] ^= byte | 1,
            1 => body.truncate(i),
            _ => body.insert(i, *byte),
        }
    }
    body
}

/// Any finite f64: everyday values, and every bit pattern class but infinities and NaN.
fn finite_f64() -> impl Strategy<Value = f64> {
    use prop::num::f64::{NEGATIVE, NORMAL, POSITIVE, SUBNORMAL, ZERO};
    prop_oneof![
        3 => -1e3..1e3f64,
        3 => POSITIVE | NEGATIVE | NORMAL | SUBNORMAL | ZERO,
        1 => Just(-0.0),
        1 => Just(f64::MAX),
        1 => Just(5e-324),
    ]
}

/// The batch's invariant: whole rows of finite numbers, at least one.
fn check_batch(batch: &input::Batch, d: usize) -> Result<(), TestCaseError> {
    prop_assert!(batch.rows >= 1);
    prop_assert_eq!(batch.values.len(), batch.rows * d);
    prop_assert!(batch.values.iter().all(|v| v.is_finite()));
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    /// JSON bodies against serde_json's own reading of `PredictRequest`: whenever either
    /// accepts a body (an object with rows of the model's width), both read the same bits.
    #[test]
    fn json_predict_parser_agrees_with_serde_and_never_panics(
        d in 1usize..5,
        rows in prop::collection::vec(prop::collection::vec(cell_text(), 0..6), 0..5),
        extra_key in any::<bool>(),
        mutation in body_mutation(),
    ) {
        let names = features(d);
        let rows_text: Vec<String> = rows
            .iter()
            .map(|r| format!("[{}]", r.join(", ")))
            .collect();
        let extra = if extra_key { r#""model": {"a": [1, "x"]}, "# } else { "" };
        let body = format!(r#"{{{extra}"rows": [{}]}}"#, rows_text.join(", ")).into_bytes();
        let body = mutate_body(body, &mutation);
        let ours = input::from_json(&body, &names);
        let reference = serde_json::from_slice::<wire::PredictRequest>(&body).ok().filter(|r| {
            !r.rows.is_empty() && r.rows.iter().all(|row| row.len() == d)
        });
        match (&ours, &reference) {
            (Ok(batch), Some(r)) => {
                check_batch(batch, d)?;
                prop_assert_eq!(bits(&batch.values), bits(&r.rows.concat()));
            }
            (Err(_), None) => {}
            // A body that starts as an array is a struct to serde's derive, not to the device.
            (Err(_), Some(_)) if body.trim_ascii_start().starts_with(b"[") => {}
            _ => prop_assert!(false, "disagree on {:?}: {:?} vs {:?}", String::from_utf8_lossy(&body), ours, reference),
        }
    }

    /// CSV bodies: never a panic; an accepted batch is whole rows of finite numbers; a clean
    /// body (numbers, optional header in any order, quotes, spaces, BOM, CRLF) reads exactly.
    #[test]
    fn csv_predict_parser_reads_clean_bodies_exactly_and_never_panics(
        d in 1usize..5,
        values in prop::collection::vec(finite_f64(), 4..20),
        order_seed in any::<prop::sample::Index>(),
        header in any::<bool>(),
        quoted in any::<bool>(),
        bom in any::<bool>(),
        crlf in any::<bool>(),
        junk in prop::collection::vec((any::<prop::sample::Index>(), cell_text()), 0..3),
        mutation in body_mutation(),
    ) {
        let names = features(d);
        let n = values.len() / d;
        let values = &values[..n * d];
        // A permutation of the columns (only with a header can they be reordered).
        let mut order: Vec<usize> = (0..d).collect();
        if header {
            order.rotate_left(order_seed.index(d));
        }
        let field = |text: String| if quoted { format!("\" {text}\"") } else { format!(" {text} ") };
        let eol = if crlf { "\r\n" } else { "\n" };
        let mut lines: Vec<Vec<String>> = Vec::new();
        if header {
            lines.push(order.iter().map(|&j| field(names[j].clone())).collect());
        }
        for row in values.chunks(d) {
            lines.push(order.iter().map(|&j| field(format!("{}", row[j]))).collect());
        }
        let text = |lines: &[Vec<String>]| {
            let mut body = if bom { "\u{feff}".to_string() } else { String::new() };
            for line in lines {
                body.push_str(&line.join(","));
                body.push_str(eol);
            }
            body.into_bytes()
        };
        let clean = input::from_csv(&text(&lines), &names);
        match &clean {
            Ok(batch) => {
                check_batch(batch, d)?;
                prop_assert_eq!(batch.rows, n);
                prop_assert_eq!(bits(&batch.values), bits(values));
            }
            Err(e) => prop_assert!(false, "clean body refused: {}", e),
        }
        // Then damaged: junk cells and a byte mutation. Anything may be refused; nothing panics.
        for (at, cell) in &junk {
            let i = at.index(lines.len());
            let j = at.index(lines[i].len());
            lines[i][j] = cell.clone();
        }
        let body = mutate_body(text(&lines), &mutation);
        match input::from_csv(&body, &names) {
            Ok(batch) => check_batch(&batch, d)?,
            Err(InputError::Empty) => {}
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }
}
