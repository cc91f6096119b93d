//! wasmops-edge integration tests: compiled modules against the reference in real wasmtime,
//! the loader's refusals, and the HTTP API over real sockets on 127.0.0.1.
//!
//! More tests live in `edge/*.rs` (child modules, so they share the fixtures below):
//! `bad_input` (the table of refusals), `hostile_input` (issue 15's wrong answers to bad
//! input), `hostile` (clients and modules that try to stall or bloat the device: tokens,
//! bodies, connections, slots, big feedback), `load` (the real binary under all of those at
//! once, and under a flood of idle connections), `fuzz` (property-based fuzz targets: loader,
//! JSON and CSV parsers), `versions` (activation under load, rollback,
//! restart), `telemetry` (cursor, feedback, windows, metrics), `process` (the real binary:
//! `kill -9` durability, `run`, `inspect`), `tls` (HTTPS and its startup errors), `signing`
//! (issue 12 on the real binary: trusted keys, signed pushes, restart and rotation; following
//! an alias without MLflow: 409 on manual activation, errors reported, the follow CA).

#[path = "edge/bad_input.rs"]
mod bad_input;
#[path = "edge/fuzz.rs"]
mod fuzz;
#[path = "edge/hostile.rs"]
mod hostile;
#[path = "edge/hostile_input.rs"]
mod hostile_input;
#[path = "edge/load.rs"]
mod load;
#[path = "edge/process.rs"]
mod process;
#[path = "edge/signing.rs"]
mod signing;
#[path = "edge/telemetry.rs"]
mod telemetry;
#[path = "edge/tls.rs"]
mod tls;
#[path = "edge/versions.rs"]
mod versions;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use proptest::prelude::*;
use wasmops_edge::device::Device;
use wasmops_edge::sandbox::{Limits, Sandbox, SandboxError};
use wasmops_edge::server::{self, HttpConfig};
use wasmops_shared::compiler::{compile, CompileInput};
use wasmops_shared::module::{DatasetRef, ModelCard, ModuleError, ModuleInfo, WasmFeature};
use wasmops_shared::pipeline::{Model, Pipeline, StandardScaler, Tree, TreeNode};
use wasmops_shared::profile::Profile;
use wasmops_shared::{abi, reference, wire};

// ---------------------------------------------------------------------------------------------
// Fixtures

fn card_for(p: &Pipeline) -> ModelCard {
    let classes: Vec<String> = (0..p.model.n_classes().unwrap_or(0))
        .map(|c| format!("class{c}"))
        .collect();
    let outputs = p.output_names(&classes);
    ModelCard {
        abi_version: abi::ABI_VERSION,
        kind: p.model.kind().into(),
        feature_names: (0..p.n_features).map(|j| format!("f{j}")).collect(),
        target_name: "y".into(),
        classes,
        outputs,
        dataset: DatasetRef {
            name: "synthetic".into(),
            hash: "0".repeat(64),
            n_rows: 10,
        },
        params: BTreeMap::new(),
        metrics: BTreeMap::new(),
        code_version: "test".into(),
    }
}

fn build(p: &Pipeline, conformance_rows: &[f64]) -> Vec<u8> {
    let card = card_for(p);
    let rows: Vec<f64> = (0..20 * p.n_features)
        .map(|i| (i % 7) as f64 - 3.0)
        .collect();
    let profile = Profile::from_rows(&card.feature_names, &rows);
    compile(&CompileInput {
        pipeline: p,
        card: &card,
        profile: &profile,
        conformance_rows,
    })
    .expect("compiles")
}

/// Iris-like 4-feature, 3-class model with fixed weights.
fn iris_like() -> Pipeline {
    Pipeline {
        n_features: 4,
        scaler: None,
        model: Model::LogisticRegression {
            weights: vec![
                vec![0.41, 1.46, -2.26, -1.03],
                vec![0.42, -1.57, 0.58, -1.38],
                vec![-0.83, 0.11, 1.68, 2.41],
            ],
            intercepts: vec![0.26, 1.09, -1.35],
        },
    }
}

/// A 4-feature linear regression (labels for it are any finite number).
fn linear_4() -> Pipeline {
    Pipeline {
        n_features: 4,
        scaler: None,
        model: Model::Linear {
            weights: vec![1.0, 2.0, 3.0, 4.0],
            intercept: 0.5,
        },
    }
}

fn sandbox() -> Sandbox {
    Sandbox::new(Limits::default()).expect("engine starts")
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wasmops-edge-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

// ---------------------------------------------------------------------------------------------
// Compiled module == reference, in wasmtime

fn special_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        6 => -1e3..1e3f64,
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

fn pipeline_strategy() -> impl Strategy<Value = Pipeline> {
    (1usize..7, 2usize..5, any::<bool>()).prop_flat_map(|(d, k, scaled)| {
        let weights = prop::collection::vec(prop::collection::vec(-20.0..20.0f64, d), k);
        let intercepts = prop::collection::vec(-5.0..5.0f64, k);
        let scaler = prop::collection::vec((-10.0..10.0f64, 0.01..10.0f64), d);
        (weights, intercepts, scaler).prop_map(move |(weights, intercepts, sc)| Pipeline {
            n_features: d,
            scaler: scaled.then(|| StandardScaler {
                mean: sc.iter().map(|s| s.0).collect(),
                scale: sc.iter().map(|s| s.1).collect(),
            }),
            model: Model::LogisticRegression {
                weights,
                intercepts,
            },
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn compiled_module_equals_reference_bit_for_bit(
        p in pipeline_strategy(),
        raw in prop::collection::vec(special_f64(), 1..240),
    ) {
        let d = p.n_features;
        let rows = &raw[..raw.len() / d * d];
        prop_assume!(!rows.is_empty());
        let bytes = build(&p, &rows[..d]);
        let sb = sandbox();
        let loaded = sb.load(&bytes).expect("module loads and passes its conformance vectors");
        let got = sb.predict(&loaded, rows).expect("predict");
        let want = reference::predict(&p, rows);
        prop_assert_eq!(bits(&got), bits(&want));
        // Every NaN the module writes is the canonical one.
        prop_assert!(got.iter().all(|v| !v.is_nan() || v.to_bits() == abi::CANONICAL_NAN_BITS));
    }
}

/// Gradient boosting (a regression, two classes and three) loads in the device's sandbox,
/// passes its conformance vectors and answers as the reference, bit for bit, one row or many.
#[test]
fn boosted_modules_run_in_the_sandbox_as_the_reference() {
    // Two levels: x[f] < t, then x[g] < u on the left; leaves hold values.
    let tree = |f: usize, t: f64, g: usize, u: f64, v: [f64; 3]| Tree {
        nodes: vec![
            TreeNode::Split {
                feature: f,
                threshold: t,
                left: 1,
                right: 2,
            },
            TreeNode::Split {
                feature: g,
                threshold: u,
                left: 3,
                right: 4,
            },
            TreeNode::Leaf {
                class: 0,
                probabilities: vec![v[0]],
            },
            TreeNode::Leaf {
                class: 0,
                probabilities: vec![v[1]],
            },
            TreeNode::Leaf {
                class: 0,
                probabilities: vec![v[2]],
            },
        ],
    };
    let trees = |n: usize| -> Vec<Tree> {
        (0..n)
            .map(|i| {
                let x = i as f64;
                tree(
                    i % 3,
                    x * 0.3 - 1.0,
                    (i + 1) % 3,
                    0.5 - x * 0.1,
                    [0.1 * x, -0.2, 0.3 - x * 0.05],
                )
            })
            .collect()
    };
    let rows: Vec<f64> = (0..11 * 3)
        .map(|i| match i % 13 {
            5 => f64::NAN,
            _ => (i as f64 * 0.37) % 4.0 - 2.0,
        })
        .collect();
    for (n_classes, baseline, n_trees) in [
        (None, vec![1.5], 4),
        (Some(2), vec![-0.3], 5),
        (Some(3), vec![0.2, -0.1, -0.1], 6),
    ] {
        for scaled in [false, true] {
            let p = Pipeline {
                n_features: 3,
                scaler: scaled.then(|| StandardScaler {
                    mean: vec![0.5, -0.5, 0.0],
                    scale: vec![2.0, 1.0, 0.5],
                }),
                model: Model::GradientBoosting {
                    n_classes,
                    baseline: baseline.clone(),
                    trees: trees(n_trees),
                },
            };
            let bytes = build(&p, &rows[..6]);
            let sb = sandbox();
            let loaded = sb
                .load(&bytes)
                .expect("loads and passes its conformance vectors");
            for m in [1, 4, 11] {
                let got = sb.predict(&loaded, &rows[..m * 3]).expect("predict");
                let want = reference::predict(&p, &rows[..m * 3]);
                assert_eq!(
                    bits(&got),
                    bits(&want),
                    "{n_classes:?} scaled={scaled}, {m} rows"
                );
            }
        }
    }
}

#[test]
fn compiling_twice_gives_the_same_bytes() {
    let p = iris_like();
    let a = build(&p, &[5.1, 3.5, 1.4, 0.2]);
    let b = build(&p, &[5.1, 3.5, 1.4, 0.2]);
    assert_eq!(a, b);
    assert!(
        a.len() < 8 * 1024,
        "an iris model module should be a few KB, is {} bytes",
        a.len()
    );
}

#[test]
fn probabilities_sum_to_one_and_class_is_the_argmax() {
    let p = iris_like();
    let sb = sandbox();
    let m = sb.load(&build(&p, &[])).unwrap();
    let out = sb
        .predict(&m, &[5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3])
        .unwrap();
    for row in out.chunks(4) {
        let probs = &row[1..];
        assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-12, "{row:?}");
        let argmax = probs
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0;
        assert_eq!(row[0], argmax as f64);
    }
    assert_eq!(out[0], 0.0, "a typical setosa row");
    assert_eq!(out[4], 2.0, "a typical virginica row");
}

/// The pipeline inside `fixtures/scalar-v1-logistic.wasm`: a module as every build wrote them
/// before issue 17 (one row at a time, no `wasmops.requires` section), compiled at `198c142`.
fn scalar_fixture_pipeline() -> Pipeline {
    let mut p = iris_like();
    p.scaler = Some(StandardScaler {
        mean: vec![5.8, 3.0, 3.7, 1.2],
        scale: vec![0.8, 0.4, 1.7, 0.75],
    });
    p
}

#[test]
fn modules_compiled_before_simd_keep_running_and_simd_modules_need_simd() {
    let old: &[u8] = include_bytes!("fixtures/scalar-v1-logistic.wasm");
    let p = scalar_fixture_pipeline();
    let rows: Vec<f64> = (0..7 * 4).map(|i| f64::from(i) * 0.37 - 2.0).collect();
    let want = bits(&reference::predict(&p, &rows));
    let new = build(&p, &rows[..8]);
    let with_simd = sandbox();
    let without_simd =
        Sandbox::with_simd(Limits::default(), false).expect("an engine without SIMD starts");
    for (name, sb) in [("SIMD", &with_simd), ("no SIMD", &without_simd)] {
        let m = sb
            .load(old)
            .unwrap_or_else(|e| panic!("{name}: old module refused: {e}"));
        assert!(m.info.wasm_features.is_empty());
        assert_eq!(bits(&sb.predict(&m, &rows).unwrap()), want, "{name}");
    }
    // The same model compiled now runs two rows at a time, says so, and gives the same bits.
    let m = with_simd.load(&new).expect("SIMD module loads");
    assert_eq!(m.info.wasm_features, vec![WasmFeature::Simd128]);
    assert_eq!(bits(&with_simd.predict(&m, &rows).unwrap()), want);
    assert_eq!(bits(&with_simd.predict(&m, &rows[..4]).unwrap()), want[..4]);
    // A runtime without SIMD refuses it at load, saying why, instead of running it some other way.
    let err = without_simd.load(&new).err().expect("refused");
    assert!(
        matches!(err, SandboxError::FeatureDisabled(WasmFeature::Simd128)),
        "{err}"
    );
    assert!(err.to_string().contains("SIMD (simd128)"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// The loader refuses what is not a model module, each with its own reason

/// A module with the real module's custom sections but a hand-written predict body.
fn hostile(
    predict_body: &[wasm_encoder::Instruction<'static>],
    min_pages: u64,
    with_import: bool,
) -> Vec<u8> {
    let real = build(&iris_like(), &[]);
    let sections: Vec<(String, Vec<u8>)> = wasmparser::Parser::new(0)
        .parse_all(&real)
        .filter_map(|payload| match payload {
            Ok(wasmparser::Payload::CustomSection(r)) => {
                Some((r.name().to_string(), r.data().to_vec()))
            }
            _ => None,
        })
        .collect();
    let sections: Vec<(&str, Vec<u8>)> = sections
        .iter()
        .map(|(n, d)| (n.as_str(), d.clone()))
        .collect();
    raw_module(
        [1, 4, 4, 0],
        predict_body,
        min_pages,
        with_import,
        &sections,
    )
}

/// A hand-written module: ABI exports returning `consts` (ABI version, features, outputs,
/// heap base), `predict_body` as predict, one memory of `min_pages`, an import if asked, and
/// the given custom sections.
fn raw_module(
    consts: [i32; 4],
    predict_body: &[wasm_encoder::Instruction<'static>],
    min_pages: u64,
    with_import: bool,
    sections: &[(&str, Vec<u8>)],
) -> Vec<u8> {
    use wasm_encoder::*;
    let mut m = Module::new();
    let mut types = TypeSection::new();
    types.ty().function([], [ValType::I32]);
    types.ty().function([ValType::I32; 4], [ValType::I32]);
    m.section(&types);
    let offset = if with_import {
        let mut imports = ImportSection::new();
        imports.import("env", "clock", EntityType::Function(0));
        m.section(&imports);
        1
    } else {
        0
    };
    let mut funcs = FunctionSection::new();
    for ty in [0, 0, 0, 0, 1] {
        funcs.function(ty);
    }
    m.section(&funcs);
    let mut mems = MemorySection::new();
    mems.memory(MemoryType {
        minimum: min_pages,
        maximum: None,
        memory64: false,
        shared: false,
        page_size_log2: None,
    });
    m.section(&mems);
    let mut exports = ExportSection::new();
    exports.export(abi::EXPORT_MEMORY, ExportKind::Memory, 0);
    for (i, name) in [
        abi::EXPORT_ABI_VERSION,
        abi::EXPORT_N_FEATURES,
        abi::EXPORT_N_OUTPUTS,
        abi::EXPORT_HEAP_BASE,
        abi::EXPORT_PREDICT,
    ]
    .iter()
    .enumerate()
    {
        exports.export(name, ExportKind::Func, offset + i as u32);
    }
    m.section(&exports);
    let mut code = CodeSection::new();
    for v in consts {
        let mut f = Function::new([]);
        f.instruction(&Instruction::I32Const(v))
            .instruction(&Instruction::End);
        code.function(&f);
    }
    let mut f = Function::new([]);
    for i in predict_body {
        f.instruction(i);
    }
    f.instruction(&Instruction::End);
    code.function(&f);
    m.section(&code);
    for (name, data) in sections {
        m.section(&CustomSection {
            name: Cow::Owned(name.to_string()),
            data: Cow::Borrowed(data),
        });
    }
    m.finish()
}

fn endless_loop() -> Vec<wasm_encoder::Instruction<'static>> {
    use wasm_encoder::{BlockType, Instruction as I};
    vec![I::Loop(BlockType::Empty), I::Br(0), I::End, I::I32Const(0)]
}

/// Replaces one custom section's payload, keeping every other section as it is.
fn with_section(bytes: &[u8], name: &str, data: &[u8]) -> Vec<u8> {
    let mut m = wasm_encoder::Module::new();
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        let payload = payload.unwrap();
        if let wasmparser::Payload::CustomSection(r) = &payload {
            if r.name() == name {
                m.section(&wasm_encoder::CustomSection {
                    name: Cow::Owned(name.into()),
                    data: Cow::Borrowed(data),
                });
                continue;
            }
        }
        if let Some((id, range)) = payload.as_section() {
            m.section(&wasm_encoder::RawSection {
                id,
                data: &bytes[range.start as usize..range.end as usize],
            });
        }
    }
    m.finish()
}

#[test]
fn loader_rejects_each_kind_of_bad_module_with_its_own_reason() {
    let sb = sandbox();
    let good = build(&iris_like(), &[1.0, 2.0, 3.0, 4.0]);
    let info = ModuleInfo::parse(&good).unwrap();

    let err = |bytes: &[u8]| {
        sb.load(bytes)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_else(|| "accepted".into())
    };

    assert!(err(b"\0asm garbage").contains("not a valid WebAssembly module"));
    assert!(
        err(&hostile(&[wasm_encoder::Instruction::I32Const(0)], 1, true))
            .contains("imports env::clock")
    );

    let mut card = info.card.clone().into_inner();
    card.abi_version = 99;
    let wrong_abi = with_section(
        &good,
        abi::SECTION_CARD,
        &serde_json::to_vec(&card).unwrap(),
    );
    let parsed = ModuleInfo::parse(&wrong_abi);
    assert!(
        matches!(
            parsed,
            Err(ModuleError::UnsupportedAbi {
                found: 99,
                supported: 1
            })
        ),
        "{parsed:?}"
    );

    let corrupt = with_section(&good, abi::SECTION_PROFILE, b"{ not json");
    assert!(
        err(&corrupt).contains("custom section `wasmops.profile` is corrupt"),
        "{}",
        err(&corrupt)
    );

    let mut conf = info.conformance.clone().into_inner();
    conf.expected[1].0 ^= 1;
    let tampered = with_section(
        &good,
        abi::SECTION_CONFORMANCE,
        &serde_json::to_vec(&conf).unwrap(),
    );
    let msg = err(&tampered);
    assert!(
        msg.contains("conformance vectors do not reproduce") && msg.contains("row 0, output 1"),
        "{msg}"
    );

    match sb.load(&hostile(&endless_loop(), 1, false)) {
        Err(SandboxError::OutOfFuel) => {}
        other => panic!("endless loop must run out of fuel, got {:?}", other.err()),
    }
    // 30,000 pages = ~2 GB of initial memory, far above the 64 MiB cap.
    match sb.load(&hostile(
        &[wasm_encoder::Instruction::I32Const(0)],
        30_000,
        false,
    )) {
        Err(SandboxError::Instantiate(m)) => assert!(m.contains("memory"), "{m}"),
        other => panic!(
            "memory bomb must fail to instantiate, got {:?}",
            other.err()
        ),
    }
    // And the good module still loads on the same engine afterwards.
    sb.load(&good).expect("good module loads");
}

#[test]
fn module_reports_bad_calls_with_status_codes() {
    let sb = sandbox();
    let m = sb.load(&build(&iris_like(), &[])).unwrap();
    assert!(matches!(
        sb.predict(&m, &[1.0, 2.0, 3.0]),
        Err(SandboxError::RaggedBatch { .. })
    ));
    let too_many = vec![0.0; 4 * (Limits::default().max_rows + 1)];
    assert!(matches!(
        sb.predict(&m, &too_many),
        Err(SandboxError::TooManyRows { .. })
    ));
}

/// A module that passes its own conformance vectors but carries state, bombs and loops on
/// request: output = a counter it keeps in linear memory (then increments); first input above
/// 100 grows memory past the cap (and traps when refused); first input below -100 loops.
fn stateful_hostile() -> Vec<u8> {
    use wasm_encoder::{BlockType, Instruction as I, MemArg, MemArgTarget};
    let at = |offset: u64| MemArg {
        offset,
        align: 3,
        target: MemArgTarget::Memory(0),
        ordering: None,
    };
    const COUNTER: i32 = 60_000;
    let mut body = vec![
        // Memory bomb: 2,000 pages (125 MiB) on top of what the module has.
        I::LocalGet(0),
        I::F64Load(at(0)),
        I::F64Const(100.0.into()),
        I::F64Gt,
        I::If(BlockType::Empty),
        I::I32Const(2_000),
        I::MemoryGrow(0),
        I::I32Const(-1),
        I::I32Eq,
        I::If(BlockType::Empty),
        I::Unreachable,
        I::End,
        I::End,
        // Endless loop.
        I::LocalGet(0),
        I::F64Load(at(0)),
        I::F64Const((-100.0).into()),
        I::F64Lt,
        I::If(BlockType::Empty),
        I::Loop(BlockType::Empty),
        I::Br(0),
        I::End,
        I::End,
    ];
    // out[k] = counter for the four outputs of row 0, then counter += 1.
    for k in 0..4 {
        body.extend([
            I::LocalGet(3),
            I::I32Const(COUNTER),
            I::F64Load(at(0)),
            I::F64Store(at(8 * k)),
        ]);
    }
    body.extend([
        I::I32Const(COUNTER),
        I::I32Const(COUNTER),
        I::F64Load(at(0)),
        I::F64Const(1.0.into()),
        I::F64Add,
        I::F64Store(at(0)),
        I::I32Const(0),
    ]);
    let module = hostile(&body, 1, false);
    let conformance = wasmops_shared::module::Conformance {
        abi_version: abi::ABI_VERSION,
        n_rows: 1,
        n_features: 4,
        n_outputs: 4,
        inputs: vec![wasmops_shared::module::Hex64(0); 4],
        expected: vec![wasmops_shared::module::Hex64(0); 4],
    };
    with_section(
        &module,
        abi::SECTION_CONFORMANCE,
        &serde_json::to_vec(&conformance).unwrap(),
    )
}

#[test]
fn every_call_gets_a_fresh_instance_and_a_failed_call_fails_alone() {
    // Few slots, so the same pooled slots are reused many times.
    let sb = Sandbox::new(Limits {
        max_concurrent_calls: 2,
        max_concurrent_loads: 2,
        ..Limits::default()
    })
    .unwrap();
    let m = sb
        .load(&stateful_hostile())
        .expect("passes its conformance vectors");
    let fresh = |sb: &Sandbox| {
        let out = sb
            .predict(&m, &[1.0, 2.0, 3.0, 4.0])
            .expect("a normal call");
        assert_eq!(out, vec![0.0; 4], "state leaked from an earlier call");
    };
    for _ in 0..10 {
        fresh(&sb);
    }
    for _ in 0..3 {
        match sb.predict(&m, &[1000.0, 0.0, 0.0, 0.0]) {
            Err(SandboxError::Trap(msg)) => assert!(msg.contains("unreachable"), "{msg}"),
            other => panic!("memory bomb must fail its call, got {other:?}"),
        }
        fresh(&sb);
        match sb.predict(&m, &[-1000.0, 0.0, 0.0, 0.0]) {
            Err(SandboxError::OutOfFuel) => {}
            other => panic!("endless loop must run out of fuel, got {other:?}"),
        }
        fresh(&sb);
    }
    // Calls from several threads at once share the two slots (the rest wait) and all succeed.
    std::thread::scope(|scope| {
        for _ in 0..6 {
            scope.spawn(|| {
                for _ in 0..20 {
                    fresh(&sb);
                }
            });
        }
    });
}

// ---------------------------------------------------------------------------------------------
// HTTP API over real sockets

struct TestDevice {
    base: String,
    http: reqwest::Client,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

const TOKEN: &str = "s3cret-token";

impl TestDevice {
    async fn start(data_dir: &std::path::Path) -> TestDevice {
        let http = HttpConfig {
            allowed_origins: vec!["http://127.0.0.1:8080".into()],
            max_body: 1 << 20,
            ..HttpConfig::new(TOKEN)
        };
        TestDevice::start_with(data_dir, http, Limits::default()).await
    }

    /// A device with its own HTTP settings and sandbox limits.
    async fn start_with(
        data_dir: &std::path::Path,
        http: HttpConfig,
        limits: Limits,
    ) -> TestDevice {
        let sandbox = Sandbox::new(limits).expect("engine starts");
        let device = Device::open("test-device".into(), data_dir, sandbox).expect("device opens");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server::run(listener, Arc::new(device), http, async {
            let _ = rx.await;
        }));
        TestDevice {
            base,
            http: reqwest::Client::new(),
            shutdown: Some(tx),
            task,
        }
    }

    async fn stop(mut self) {
        let _ = self.shutdown.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
    }

    async fn upload(&self, module: &[u8]) -> String {
        let up: wire::UploadResponse = ok_json(
            self.post("/v1/modules")
                .header("Content-Type", "application/wasm")
                .body(module.to_vec()),
        )
        .await;
        up.hash
    }

    async fn activate(&self, hash: &str) -> wire::ActivateResponse {
        ok_json(self.post(&wire::paths::activate(hash))).await
    }

    async fn predict(&self, rows: &[Vec<f64>]) -> wire::PredictResponse {
        ok_json(self.post("/v1/predict").json(&wire::PredictRequest {
            rows: rows.to_vec(),
        }))
        .await
    }

    async fn counters(&self) -> wire::Telemetry {
        ok_json(self.get("/v1/telemetry")).await
    }

    /// Every stored record, read page by page through the cursor.
    async fn all_records(&self, page: usize) -> Vec<wire::TelemetryRecord> {
        read_all_records(&self.http, &self.base, page).await
    }
}

/// Sends a request that must succeed and decodes its JSON answer.
/// Uploads and activates `module` on the device at `base`; returns its hash.
async fn deploy(http: &reqwest::Client, base: &str, module: Vec<u8>) -> String {
    let up: wire::UploadResponse = ok_json(
        http.post(format!("{base}/v1/modules"))
            .bearer_auth(TOKEN)
            .body(module),
    )
    .await;
    let _: wire::ActivateResponse = ok_json(
        http.post(format!("{base}{}", wire::paths::activate(&up.hash)))
            .bearer_auth(TOKEN),
    )
    .await;
    up.hash
}

/// `GET /metrics` of the device at `base`, as text.
async fn metrics_text(http: &reqwest::Client, base: &str) -> String {
    let r = http
        .get(format!("{base}/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r.text().await.unwrap()
}

/// `n` CSV rows of 4 features, varied from row to row.
fn csv_rows(n: usize) -> String {
    (0..n)
        .map(|i| format!("{},{},{},{}\n", i % 7, i % 5, i % 3, i % 11))
        .collect()
}

async fn ok_json<T: serde::de::DeserializeOwned>(req: reqwest::RequestBuilder) -> T {
    let r = req.send().await.expect("request reaches the device");
    let status = r.status();
    let text = r.text().await.expect("body");
    assert!(status.is_success(), "{status}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

async fn read_all_records(
    http: &reqwest::Client,
    base: &str,
    page: usize,
) -> Vec<wire::TelemetryRecord> {
    let mut out: Vec<wire::TelemetryRecord> = Vec::new();
    let mut after = 0;
    // Bounded: at most 100,000 pages.
    for _ in 0..100_000 {
        let p: wire::TelemetryPage = ok_json(
            http.get(format!(
                "{base}/v1/telemetry/records?after={after}&limit={page}"
            ))
            .bearer_auth(TOKEN),
        )
        .await;
        if p.records.is_empty() {
            assert_eq!(p.next, after, "an empty page keeps the cursor");
            return out;
        }
        assert!(p.records.len() <= page);
        out.extend(p.records);
        after = p.next;
    }
    panic!("records never ended");
}

/// A second model (different weights, same shape) for version tests.
fn iris_like_v2() -> Pipeline {
    Pipeline {
        n_features: 4,
        scaler: None,
        model: Model::LogisticRegression {
            weights: vec![
                vec![0.41, 1.46, -2.26, -1.03],
                vec![0.42, -1.57, 0.58, -1.38],
                vec![-0.83, 0.11, 1.68, 2.41],
            ],
            intercepts: vec![3.26, 1.09, -1.35],
        },
    }
}

async fn error_of(r: reqwest::Response) -> (u16, wire::ApiError) {
    let status = r.status().as_u16();
    (status, r.json().await.expect("error bodies are JSON"))
}

#[tokio::test]
async fn device_api_deploys_predicts_and_restores_after_restart() {
    let dir = temp_dir("api");
    let dev = TestDevice::start(&dir).await;
    let p = iris_like();
    let module = build(&p, &[5.1, 3.5, 1.4, 0.2]);

    let health: wire::Health = dev
        .http
        .get(format!("{}/v1/health", dev.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health.status, "ok");

    // No token, wrong token.
    let r = dev
        .http
        .post(format!("{}/v1/modules", dev.base))
        .body(module.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await.0, 401);
    let r = dev
        .http
        .post(format!("{}/v1/modules", dev.base))
        .bearer_auth("nope")
        .body(module.clone())
        .send()
        .await
        .unwrap();
    let (status, body) = error_of(r).await;
    assert_eq!((status, body.kind.as_str()), (401, "unauthorized"));

    // A rejected module says why.
    let r = dev
        .post("/v1/modules")
        .body(b"not wasm".to_vec())
        .send()
        .await
        .unwrap();
    let (status, body) = error_of(r).await;
    assert_eq!(status, 422);
    assert!(
        body.error.contains("not a valid WebAssembly module"),
        "{}",
        body.error
    );

    // Predict before anything is active.
    let r = dev
        .post("/v1/predict")
        .json(&wire::PredictRequest {
            rows: vec![vec![1.0; 4]],
        })
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await.0, 409);

    let up: wire::UploadResponse = dev
        .post("/v1/modules")
        .body(module.clone())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(up.hash, wasmops_shared::digest::content_hash(&module));
    assert_eq!(up.conformance_rows, 1 + 8);

    let bad_hash = dev
        .post("/v1/modules/..%2F..%2Fetc%2Fpasswd/activate")
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(bad_hash).await.0, 400);
    let unknown = dev
        .post(&format!("/v1/modules/{}/activate", "a".repeat(64)))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(unknown).await.0, 404);

    let act: wire::ActivateResponse = dev
        .post(&format!("/v1/modules/{}/activate", up.hash))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(act.previous, None);

    // Predictions are bit-identical to the reference (JSON floats round-trip exactly).
    let rows = vec![
        vec![5.1, 3.5, 1.4, 0.2],
        vec![6.7, 3.0, 5.2, 2.3],
        vec![5.9, 3.0, 4.2, 1.5],
    ];
    let resp: wire::PredictResponse = dev
        .post("/v1/predict")
        .json(&wire::PredictRequest { rows: rows.clone() })
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(resp.model, up.hash);
    assert_eq!(resp.first_id, 0);
    let flat: Vec<f64> = rows.concat();
    assert_eq!(
        bits(&resp.outputs.concat()),
        bits(&reference::predict(&p, &flat))
    );

    // Wrong feature count names the row.
    let r = dev
        .post("/v1/predict")
        .json(&wire::PredictRequest {
            rows: vec![vec![1.0; 4], vec![1.0; 3]],
        })
        .send()
        .await
        .unwrap();
    let (status, body) = error_of(r).await;
    assert_eq!(status, 400);
    assert!(body.error.contains("row 1 has 3 values"), "{}", body.error);

    let t: wire::Telemetry = dev
        .get("/v1/telemetry")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // Three predict calls: one before activation, one good (3 rows), one with a short row.
    assert_eq!((t.requests, t.predictions, t.errors), (3, 3, 2));

    // CORS preflight from the dashboard's origin.
    let pre = dev
        .http
        .request(reqwest::Method::OPTIONS, format!("{}/v1/predict", dev.base))
        .header("Origin", "http://127.0.0.1:8080")
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "authorization,content-type",
        )
        .header("Access-Control-Request-Private-Network", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(
        pre.headers().get("access-control-allow-origin").unwrap(),
        "http://127.0.0.1:8080"
    );
    assert_eq!(
        pre.headers()
            .get("access-control-allow-private-network")
            .unwrap(),
        "true"
    );

    dev.stop().await;

    // A restart restores the active module from the data dir.
    let dev = TestDevice::start(&dir).await;
    let info: wire::DeviceInfo = dev
        .get("/v1/info")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info.active.map(|a| a.hash), Some(up.hash.clone()));
    assert_eq!(info.modules, vec![up.hash.clone()]);
    dev.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
