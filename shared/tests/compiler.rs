//! The compiler against the reference: every model kind, random models and inputs (NaN,
//! infinities, subnormals, huge values), run in real wasmtime, must match bit for bit.

use proptest::prelude::*;
use wasmops_shared::abi::{self, Status};
use wasmops_shared::compiler::Codegen;
use wasmops_shared::module::{ModuleInfo, WasmFeature};
use wasmops_shared::pipeline::{Model, Pipeline, StandardScaler, Tree, TreeNode};
use wasmops_shared::reference;

#[path = "support/wasm.rs"]
mod support;
use support::{code_size, run};

fn build(p: &Pipeline) -> Vec<u8> {
    build_codegen(p, Codegen::Simd)
}

fn build_codegen(p: &Pipeline, codegen: Codegen) -> Vec<u8> {
    let rows: Vec<f64> = (0..10 * p.n_features).map(|i| (i % 5) as f64).collect();
    support::build_codegen(p, &rows, codegen)
}

/// Whether the kind runs two rows at a time in SIMD modules.
fn dense(p: &Pipeline) -> bool {
    !matches!(
        p.model,
        Model::DecisionTree { .. } | Model::RandomForest { .. } | Model::GradientBoosting { .. }
    )
}

fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

// ---------------------------------------------------------------------------------------------
// Strategies: random models of every kind.

fn matrix(
    rows: usize,
    cols: usize,
    range: std::ops::Range<f64>,
) -> impl Strategy<Value = Vec<Vec<f64>>> {
    prop::collection::vec(prop::collection::vec(range, cols), rows)
}

/// A random tree over `d` features with `k` classes, children always after parents.
fn tree(d: usize, k: usize) -> impl Strategy<Value = Tree> {
    let splits = prop::collection::vec((0..d, -10.0..10.0f64), 0..20);
    let leaves = prop::collection::vec((0..k, prop::collection::vec(0.0..1.0f64, k)), 21);
    (splits, leaves).prop_map(move |(splits, leaves)| {
        // Build breadth-first: node i (a split) has children 2i+1 and 2i+2.
        let n_splits = splits.len();
        let total = 2 * n_splits + 1;
        let mut nodes = Vec::with_capacity(total);
        for i in 0..total {
            if i < n_splits {
                let (feature, threshold) = splits[i];
                nodes.push(TreeNode::Split {
                    feature,
                    threshold,
                    left: 2 * i + 1,
                    right: 2 * i + 2,
                });
            } else {
                let (class, probabilities) = leaves[(i - n_splits) % leaves.len()].clone();
                nodes.push(TreeNode::Leaf {
                    class,
                    probabilities,
                });
            }
        }
        Tree { nodes }
    })
}

/// A random boosted tree: leaves hold values (now and then huge ones, whose sums overflow).
fn value_tree(d: usize) -> impl Strategy<Value = Tree> {
    tree(d, 1).prop_map(|mut t| {
        for node in &mut t.nodes {
            if let TreeNode::Leaf { probabilities, .. } = node {
                let u = probabilities[0];
                probabilities[0] = if u < 0.03 { 1e308 } else { u * 20.0 - 10.0 };
            }
        }
        t
    })
}

/// A random boosted model: a regression, two classes or `k` (at least 3), 1 to 5 iterations.
fn boosted(d: usize, k: usize) -> impl Strategy<Value = Model> {
    (0..3usize, 1usize..6).prop_flat_map(move |(task, iterations)| {
        let n_classes = [None, Some(2), Some(k.max(3))][task];
        let scores = n_classes.filter(|k| *k > 2).unwrap_or(1);
        (
            prop::collection::vec(-3.0..3.0f64, scores),
            prop::collection::vec(value_tree(d), iterations * scores),
        )
            .prop_map(move |(baseline, trees)| Model::GradientBoosting {
                n_classes,
                baseline,
                trees,
            })
    })
}

fn model(d: usize, k: usize) -> impl Strategy<Value = Model> {
    prop_oneof![
        (prop::collection::vec(-20.0..20.0f64, d), -5.0..5.0f64)
            .prop_map(|(weights, intercept)| Model::Linear { weights, intercept }),
        (
            matrix(k, d, -20.0..20.0),
            prop::collection::vec(-5.0..5.0f64, k)
        )
            .prop_map(|(weights, intercepts)| Model::LogisticRegression {
                weights,
                intercepts
            }),
        (
            matrix(k, d, -5.0..5.0),
            matrix(k, d, -10.0..-0.01),
            prop::collection::vec(-5.0..0.0f64, k)
        )
            .prop_map(
                |(means, neg_half_inv_var, log_prior_norm)| Model::GaussianNb {
                    means,
                    neg_half_inv_var,
                    log_prior_norm
                }
            ),
        matrix(k, d, -10.0..10.0).prop_map(|centroids| Model::KMeans { centroids }),
        tree(d, k).prop_map(move |tree| Model::DecisionTree { n_classes: k, tree }),
        prop::collection::vec(tree(d, k), 1..8).prop_map(move |trees| Model::RandomForest {
            n_classes: k,
            trees
        }),
        boosted(d, k),
    ]
}

fn pipeline() -> impl Strategy<Value = Pipeline> {
    (1usize..8, 2usize..5, any::<bool>()).prop_flat_map(|(d, k, scaled)| {
        let scaler = prop::collection::vec((-10.0..10.0f64, 0.01..10.0f64), d);
        (model(d, k), scaler).prop_map(move |(model, sc)| Pipeline {
            n_features: d,
            scaler: scaled.then(|| StandardScaler {
                mean: sc.iter().map(|s| s.0).collect(),
                scale: sc.iter().map(|s| s.1).collect(),
            }),
            model,
        })
    })
}

fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        8 => -20.0..20.0f64,
        1 => prop::num::f64::ANY,
        1 => Just(f64::NAN),
        1 => Just(-f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => Just(5e-324),
        1 => Just(-2.2250738585072014e-308),
        1 => Just(1e308),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn every_kind_compiles_to_a_module_equal_to_the_reference(
        p in pipeline(),
        raw in prop::collection::vec(value(), 1..300),
    ) {
        let d = p.n_features;
        let rows = &raw[..raw.len() / d * d];
        prop_assume!(!rows.is_empty());
        let bytes = build(&p);
        let info = ModuleInfo::parse(&bytes).expect("the compiler's output passes the loader");
        let conformance = run(&bytes, &info.conformance.input_values(), d).unwrap();
        prop_assert!(info.conformance.verify(&conformance).is_ok());
        let want = bits(&reference::predict(&p, rows));
        let got = run(&bytes, rows, d).unwrap();
        prop_assert_eq!(bits(&got), want.clone());
        prop_assert!(got.iter().all(|v| !v.is_nan() || v.to_bits() == abi::CANONICAL_NAN_BITS));
        // Several prefix lengths, so pairs and blocks of four, odd and leftover last rows and a
        // single row are all covered.
        let n = rows.len() / d;
        let o = p.n_outputs();
        for m in [1, 2, 3, 4, 5, n - 1, n].into_iter().filter(|m| (1..=n).contains(m)) {
            let got = run(&bytes, &rows[..m * d], d).unwrap();
            prop_assert_eq!(bits(&got), want[..m * o].to_vec(), "first {} rows", m);
        }
        // The scalar module (as before issue 17) gives the same bits.
        let scalar = build_codegen(&p, Codegen::Scalar);
        prop_assert_eq!(bits(&run(&scalar, rows, d).unwrap()), want);
        prop_assert_eq!(
            ModuleInfo::parse(&bytes).unwrap().wasm_features,
            if dense(&p) { vec![WasmFeature::Simd128] } else { vec![] }
        );
        prop_assert!(ModuleInfo::parse(&scalar).unwrap().wasm_features.is_empty());
        // Reproducible: same inputs, same bytes.
        prop_assert_eq!(build(&p), bytes);
    }
}

#[test]
fn bad_calls_return_status_codes_instead_of_trapping() {
    let p = Pipeline {
        n_features: 2,
        scaler: None,
        model: Model::KMeans {
            centroids: vec![vec![0.0, 0.0], vec![5.0, 5.0]],
        },
    };
    let bytes = build(&p);
    let engine = wasmtime::Engine::default();
    let module = wasmtime::Module::new(&engine, &bytes).unwrap();
    let mut store = wasmtime::Store::new(&engine, ());
    let instance = wasmtime::Instance::new(&mut store, &module, &[]).unwrap();
    let predict = instance
        .get_typed_func::<(i32, i32, i32, i32), i32>(&mut store, abi::EXPORT_PREDICT)
        .unwrap();
    let mut call = |args| predict.call(&mut store, args).unwrap();
    assert_eq!(call((0, 1, 3, 64)), Status::WrongFeatureCount as i32);
    assert_eq!(call((0, 0, 2, 64)), Status::BadRowCount as i32);
    assert_eq!(call((0, -5, 2, 64)), Status::BadRowCount as i32);
    assert_eq!(call((65_530, 1, 2, 0)), Status::OutOfBounds as i32);
    assert_eq!(
        call((0, 1, 2, -8)),
        Status::OutOfBounds as i32,
        "a negative pointer is a huge unsigned one"
    );
    assert_eq!(call((0, 1_000_000, 2, 0)), Status::OutOfBounds as i32);
    assert_eq!(call((0, 1, 2, 64)), Status::Ok as i32);
}

#[test]
fn trees_walk_like_linfa_nan_goes_right() {
    let tree = Tree {
        nodes: vec![
            TreeNode::Split {
                feature: 0,
                threshold: 1.0,
                left: 1,
                right: 2,
            },
            TreeNode::Leaf {
                class: 0,
                probabilities: vec![1.0, 0.0],
            },
            TreeNode::Leaf {
                class: 1,
                probabilities: vec![0.25, 0.75],
            },
        ],
    };
    let p = Pipeline {
        n_features: 1,
        scaler: None,
        model: Model::DecisionTree { n_classes: 2, tree },
    };
    let out = run(&build(&p), &[0.5, 1.0, f64::NAN, f64::NEG_INFINITY], 1).unwrap();
    assert_eq!(
        out,
        vec![0.0, 1.0, 0.0, 1.0, 0.25, 0.75, 1.0, 0.25, 0.75, 0.0, 1.0, 0.0]
    );
}

#[test]
fn module_code_stays_smaller_than_onnx() {
    // Goals from the issue: no larger than scikit-learn -> ONNX (logistic 576 B for iris-sized
    // models, depth-8 tree 19 KB).
    let logistic = Pipeline {
        n_features: 4,
        scaler: None,
        model: Model::LogisticRegression {
            weights: vec![vec![0.5; 4]; 3],
            intercepts: vec![0.1, 0.2, 0.3],
        },
    };
    let mut nodes = Vec::new();
    let n_splits = 255; // complete tree of depth 8
    for i in 0..(2 * n_splits + 1) {
        nodes.push(if i < n_splits {
            TreeNode::Split {
                feature: i % 30,
                threshold: i as f64,
                left: 2 * i + 1,
                right: 2 * i + 2,
            }
        } else {
            TreeNode::Leaf {
                class: i % 2,
                probabilities: vec![0.5, 0.5],
            }
        });
    }
    let tree = Pipeline {
        n_features: 30,
        scaler: None,
        model: Model::DecisionTree {
            n_classes: 2,
            tree: Tree { nodes },
        },
    };
    for codegen in [Codegen::Simd, Codegen::Scalar] {
        let (lb, tb) = (
            build_codegen(&logistic, codegen),
            build_codegen(&tree, codegen),
        );
        let (a, b) = (code_size(&lb), code_size(&tb));
        println!(
            "{codegen:?} module code: logistic 4x3 = {a} B (whole module {} B); depth-8 tree = {b} B (whole {} B)",
            lb.len(),
            tb.len()
        );
        // Not yet at the 576 B goal: the in-module `exp` (~250 B, twice that again as f64x2)
        // and the ABI's call checks cost more than ONNX's graph, and SIMD modules carry the
        // two-row body (16-byte constants) besides the one-row body for an odd last row. These
        // bounds guard against regressions; docs/benchmarks.md has the figures.
        let logistic_bound = match codegen {
            Codegen::Simd => 2800,
            Codegen::Scalar => 1200,
        };
        assert!(
            a < logistic_bound,
            "{codegen:?}: logistic code is {a} bytes"
        );
        assert!(b < 19 * 1024, "{codegen:?}: depth-8 tree code is {b} bytes");
    }
}

/// Rebuilds `bytes`; `edit` may write its own version of a section into the module (or none,
/// to drop it) and returns true, or returns false to keep the section as it is.
fn rewrite(
    bytes: &[u8],
    mut edit: impl FnMut(&wasmparser::Payload, &mut wasm_encoder::Module) -> bool,
) -> Vec<u8> {
    let mut m = wasm_encoder::Module::new();
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        let payload = payload.unwrap();
        let Some((id, range)) = payload.as_section() else {
            continue;
        };
        if !edit(&payload, &mut m) {
            m.section(&wasm_encoder::RawSection {
                id,
                data: &bytes[range.start as usize..range.end as usize],
            });
        }
    }
    m.finish()
}

#[test]
fn loader_names_what_is_missing_or_wrong() {
    use wasmops_shared::module::ModuleError;
    let p = Pipeline {
        n_features: 2,
        scaler: None,
        model: Model::Linear {
            weights: vec![1.0, 2.0],
            intercept: 0.0,
        },
    };
    let good = build(&p);
    assert!(ModuleInfo::parse(&good).is_ok());

    let no_predict = rewrite(&good, |payload, m| {
        let wasmparser::Payload::ExportSection(reader) = payload else {
            return false;
        };
        let mut exports = wasm_encoder::ExportSection::new();
        for e in reader.clone() {
            let e = e.unwrap();
            let kind = match e.kind {
                wasmparser::ExternalKind::Memory => wasm_encoder::ExportKind::Memory,
                _ => wasm_encoder::ExportKind::Func,
            };
            if e.name != abi::EXPORT_PREDICT {
                exports.export(e.name, kind, e.index);
            }
        }
        m.section(&exports);
        true
    });
    assert_eq!(
        ModuleInfo::parse(&no_predict),
        Err(ModuleError::MissingExport(abi::EXPORT_PREDICT))
    );

    let no_card = rewrite(
        &good,
        |payload, _| matches!(payload, wasmparser::Payload::CustomSection(r) if r.name() == abi::SECTION_CARD),
    );
    assert_eq!(
        ModuleInfo::parse(&no_card),
        Err(ModuleError::MissingSection(abi::SECTION_CARD))
    );

    let err = ModuleInfo::parse(b"\0asm\x01\0\0\0garbage").unwrap_err();
    assert!(
        err.to_string().contains("not a valid WebAssembly module"),
        "{err}"
    );
}

#[test]
fn pairs_mix_nan_infinite_subnormal_and_ordinary_lanes() {
    // Each pair of rows puts a different special value next to an ordinary one, in both lane
    // orders, so every select in the vector `exp` and arg-max sees one lane taken, one not.
    let specials = [
        f64::NAN,
        -f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        5e-324,
        -2.2250738585072014e-308,
        1e308,
        -1e308,
        800.0,
        -800.0,
        0.0,
        -0.0,
    ];
    let d = 3;
    let mut rows = Vec::new();
    for (i, s) in specials.iter().enumerate() {
        let ordinary = [0.3 * i as f64, -1.25, 2.0];
        let special = [*s, 0.5, *s];
        rows.extend(ordinary);
        rows.extend(special);
        rows.extend(special);
        rows.extend(ordinary);
    }
    rows.extend([1.0, 2.0, 3.0]); // odd last row
    let w = vec![
        vec![1.0, -2.0, 300.0],
        vec![-0.5, 4.0, -300.0],
        vec![2.0, 0.0, 1e-300],
    ];
    let models = [
        Model::Linear {
            weights: w[0].clone(),
            intercept: 0.25,
        },
        Model::LogisticRegression {
            weights: w.clone(),
            intercepts: vec![0.1, -0.2, 0.0],
        },
        Model::GaussianNb {
            means: w.clone(),
            neg_half_inv_var: vec![vec![-0.5, -2.0, -1e-3]; 3],
            log_prior_norm: vec![-1.0, -1.1, -0.9],
        },
        Model::KMeans { centroids: w },
    ];
    for model in models {
        for scaled in [false, true] {
            let p = Pipeline {
                n_features: d,
                scaler: scaled.then(|| StandardScaler {
                    mean: vec![0.5, -1.0, 2.0],
                    scale: vec![0.25, 3.0, 1e-3],
                }),
                model: model.clone(),
            };
            let want = bits(&reference::predict(&p, &rows));
            let bytes = build(&p);
            assert_eq!(
                ModuleInfo::parse(&bytes).unwrap().wasm_features,
                vec![WasmFeature::Simd128]
            );
            assert_eq!(
                bits(&run(&bytes, &rows, d).unwrap()),
                want,
                "{}",
                p.model.kind()
            );
        }
    }
}

#[test]
fn loader_checks_declared_wasm_features() {
    use wasmops_shared::module::ModuleError;
    let p = Pipeline {
        n_features: 2,
        scaler: None,
        model: Model::LogisticRegression {
            weights: vec![vec![1.0, 2.0], vec![-1.0, 0.5]],
            intercepts: vec![0.0, 0.1],
        },
    };
    let good = build(&p);
    assert_eq!(
        ModuleInfo::parse(&good).unwrap().wasm_features,
        vec![WasmFeature::Simd128]
    );
    let requires = |json: Option<&'static str>| {
        rewrite(&good, move |payload, m| {
            if !matches!(payload, wasmparser::Payload::CustomSection(r) if r.name() == abi::SECTION_REQUIRES)
            {
                return false;
            }
            if let Some(json) = json {
                m.section(&wasm_encoder::CustomSection {
                    name: abi::SECTION_REQUIRES.into(),
                    data: json.as_bytes().into(),
                });
            }
            true
        })
    };
    // SIMD used but not declared.
    let err = ModuleInfo::parse(&requires(None)).unwrap_err();
    assert_eq!(err, ModuleError::UndeclaredFeature(WasmFeature::Simd128));
    assert!(err.to_string().contains("simd128"), "{err}");
    assert_eq!(
        ModuleInfo::parse(&requires(Some(r#"{"wasm_features":[]}"#))).unwrap_err(),
        ModuleError::UndeclaredFeature(WasmFeature::Simd128)
    );
    // A feature this build does not know.
    let err = ModuleInfo::parse(&requires(Some(
        r#"{"wasm_features":["simd128","threads"]}"#,
    )))
    .unwrap_err();
    assert_eq!(err, ModuleError::UnknownFeature("`threads`".into()));
    // A corrupt section.
    assert!(matches!(
        ModuleInfo::parse(&requires(Some("[1"))).unwrap_err(),
        ModuleError::CorruptSection {
            section: abi::SECTION_REQUIRES,
            ..
        }
    ));

    // Relaxed SIMD is refused even when SIMD is declared (a hand-made function using
    // `f64x2.relaxed_madd`, which may or may not round twice depending on the host).
    let mut module = wasm_encoder::Module::new();
    let mut types = wasm_encoder::TypeSection::new();
    types
        .ty()
        .function([wasm_encoder::ValType::V128], [wasm_encoder::ValType::V128]);
    module.section(&types);
    let mut funcs = wasm_encoder::FunctionSection::new();
    funcs.function(0);
    module.section(&funcs);
    let mut code = wasm_encoder::CodeSection::new();
    let mut f = wasm_encoder::Function::new([]);
    f.instruction(&wasm_encoder::Instruction::LocalGet(0))
        .instruction(&wasm_encoder::Instruction::LocalGet(0))
        .instruction(&wasm_encoder::Instruction::LocalGet(0))
        .instruction(&wasm_encoder::Instruction::F64x2RelaxedMadd)
        .instruction(&wasm_encoder::Instruction::End);
    code.function(&f);
    module.section(&code);
    module.section(&wasm_encoder::CustomSection {
        name: abi::SECTION_REQUIRES.into(),
        data: br#"{"wasm_features":["simd128"]}"#.as_slice().into(),
    });
    let err = ModuleInfo::parse(&module.finish()).unwrap_err();
    assert!(
        matches!(&err, ModuleError::Invalid(m) if m.contains("relaxed")),
        "{err}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Wide models: more features than the SIMD body's step between sink stores (8) and more
    /// classes than fit one group (12), so the grouped and stepped paths are compared too.
    #[test]
    fn wide_dense_models_equal_the_reference(
        d in 9usize..27,
        k in prop_oneof![2usize..5, 11usize..14, 24usize..31],
        scaled in any::<bool>(),
        kind in 0usize..4,
        seed in any::<u64>(),
        raw in prop::collection::vec(value(), 27 * 9..27 * 9 + 1),
    ) {
        let mut s = seed | 1;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f64 / (1u64 << 53) as f64 * 20.0 - 10.0
        };
        let mut matrix = |lo: f64| -> Vec<Vec<f64>> {
            (0..k).map(|_| (0..d).map(|_| next().min(-lo)).collect()).collect()
        };
        let model = match kind {
            0 => Model::Linear { weights: matrix(-10.0)[0].clone(), intercept: 0.5 },
            1 => Model::LogisticRegression { weights: matrix(-10.0), intercepts: vec![0.25; k] },
            2 => Model::GaussianNb {
                means: matrix(-10.0),
                neg_half_inv_var: matrix(0.01),
                log_prior_norm: vec![-1.5; k],
            },
            _ => Model::KMeans { centroids: matrix(-10.0) },
        };
        let p = Pipeline {
            n_features: d,
            scaler: scaled.then(|| StandardScaler {
                mean: vec![0.5; d],
                scale: (0..d).map(|j| 0.1 + j as f64).collect(),
            }),
            model,
        };
        let n = raw.len() / d;
        let rows = &raw[..n * d];
        let want = bits(&reference::predict(&p, rows));
        let bytes = build(&p);
        for m in [1, 2, 3, n - 1, n] {
            let got = run(&bytes, &rows[..m * d], d).unwrap();
            prop_assert_eq!(bits(&got), want[..m * p.n_outputs()].to_vec(), "first {} rows", m);
        }
    }
}

#[test]
fn deep_unbalanced_trees_walk_every_row_to_its_leaf() {
    // A chain: split i sends x[i % d] < t_i left to a leaf and the rest on, 40 levels deep, so
    // rows stop at every depth; four rows are walked side by side for the deepest leaf's levels.
    let d = 3;
    let chain = |offset: f64| {
        let mut nodes = Vec::new();
        for i in 0..40 {
            let at = nodes.len();
            nodes.push(TreeNode::Split {
                feature: i % d,
                threshold: (i as f64 - 20.0) * 0.5 + offset,
                left: at + 1,
                right: at + 2,
            });
            nodes.push(TreeNode::Leaf {
                class: i % 3,
                probabilities: vec![i as f64 / 40.0, 0.5, 1.0 - i as f64 / 40.0],
            });
        }
        nodes.push(TreeNode::Leaf {
            class: 2,
            probabilities: vec![0.0, 0.0, 1.0],
        });
        Tree { nodes }
    };
    // The same chain as a boosted tree: each leaf's value is its first share minus its last.
    let values = |offset: f64| {
        let mut t = chain(offset);
        for node in &mut t.nodes {
            if let TreeNode::Leaf {
                class,
                probabilities,
            } = node
            {
                *probabilities = vec![probabilities[0] - probabilities[2] + offset];
                *class = 0;
            }
        }
        t
    };
    let rows: Vec<f64> = (0..23 * d)
        .map(|i| match i % 11 {
            7 => f64::NAN,
            9 => f64::INFINITY,
            _ => (i as f64 * 0.77) % 25.0 - 12.0,
        })
        .collect();
    for scaled in [false, true] {
        let scaler = scaled.then(|| StandardScaler {
            mean: vec![1.0, -2.0, 0.5],
            scale: vec![0.5, 2.0, 1.5],
        });
        for model in [
            Model::DecisionTree {
                n_classes: 3,
                tree: chain(0.0),
            },
            Model::RandomForest {
                n_classes: 3,
                trees: vec![chain(0.0), chain(3.0), chain(-7.5)],
            },
            Model::GradientBoosting {
                n_classes: Some(3),
                baseline: vec![0.5, -0.25, 0.0],
                trees: [0.0, 3.0, -7.5, 1.0, -1.0, 2.5].map(values).to_vec(),
            },
            Model::GradientBoosting {
                n_classes: None,
                baseline: vec![10.0],
                trees: [0.0, 3.0, -7.5].map(values).to_vec(),
            },
        ] {
            let p = Pipeline {
                n_features: d,
                scaler: scaler.clone(),
                model,
            };
            let want = bits(&reference::predict(&p, &rows));
            let bytes = build(&p);
            for m in [1, 3, 4, 5, 8, 23] {
                assert_eq!(
                    bits(&run(&bytes, &rows[..m * d], d).unwrap()),
                    want[..m * p.n_outputs()],
                    "{} scaled={scaled}, {m} rows",
                    p.model.kind()
                );
            }
        }
    }
}
