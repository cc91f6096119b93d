//! Module predict throughput in wasmtime against native Rust for the same model.
//!
//! `cargo xtask bench` (or `cargo bench -p wasmops-shared --bench modules`). For every model
//! kind: 10,000 varied rows (fresh random rows, not one row replayed: a branch predictor learns
//! a replayed tree), the median of several batch calls, in three settings:
//! - native: `wasmops_shared::reference::predict`, the plain-Rust computation every module must
//!   equal bit for bit (release build, scratch buffers reused across rows);
//! - wasm: the compiled module in wasmtime (cranelift), plain;
//! - wasm+fuel: the same with fuel metering on, as the device runs it.
//! Prints a markdown table; figures are ratios against native measured in the same run.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use wasmops_shared::abi::{self, BatchLayout};
use wasmops_shared::compiler::{compile, CompileInput};
use wasmops_shared::module::{DatasetRef, ModelCard};
use wasmops_shared::pipeline::{Model, Pipeline, StandardScaler, Tree, TreeNode};
use wasmops_shared::profile::Profile;
use wasmops_shared::reference;

const ROWS: usize = 10_000;
const REPEATS: usize = 15;

/// xorshift64*: deterministic, varied benchmark data without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let v = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (v >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
    fn vec(&mut self, n: usize, scale: f64) -> Vec<f64> {
        (0..n).map(|_| self.next() * scale).collect()
    }
}

fn random_tree(rng: &mut Rng, d: usize, k: usize, depth: u32) -> Tree {
    let n_splits = (1usize << depth) - 1;
    let mut nodes = Vec::new();
    for i in 0..(2 * n_splits + 1) {
        nodes.push(if i < n_splits {
            let feature = ((rng.next() + 1.0) * 0.5 * d as f64) as usize % d;
            TreeNode::Split {
                feature,
                threshold: rng.next() * 2.0,
                left: 2 * i + 1,
                right: 2 * i + 2,
            }
        } else {
            let class = ((rng.next() + 1.0) * 0.5 * k as f64) as usize % k;
            let mut probabilities = vec![0.0; k];
            probabilities[class] = 1.0;
            TreeNode::Leaf {
                class,
                probabilities,
            }
        });
    }
    Tree { nodes }
}

fn models(rng: &mut Rng) -> Vec<(&'static str, Pipeline)> {
    let d = 20;
    let scaler = Some(StandardScaler {
        mean: rng.vec(d, 1.0),
        scale: vec![1.5; d],
    });
    let m = |model: Model, scaled: bool| Pipeline {
        n_features: d,
        scaler: if scaled { scaler.clone() } else { None },
        model,
    };
    let mut r = Rng(7);
    vec![
        (
            "linear (20 features, scaled)",
            m(
                Model::Linear {
                    weights: r.vec(d, 3.0),
                    intercept: 0.5,
                },
                true,
            ),
        ),
        (
            "logistic (20 features, 3 classes, scaled)",
            m(
                Model::LogisticRegression {
                    weights: (0..3).map(|_| r.vec(d, 2.0)).collect(),
                    intercepts: r.vec(3, 1.0),
                },
                true,
            ),
        ),
        (
            "gaussian NB (20 features, 3 classes)",
            m(
                Model::GaussianNb {
                    means: (0..3).map(|_| r.vec(d, 1.0)).collect(),
                    neg_half_inv_var: (0..3).map(|_| vec![-0.7; d]).collect(),
                    log_prior_norm: vec![-1.0, -1.2, -0.9],
                },
                false,
            ),
        ),
        (
            "k-means (20 features, k = 8)",
            m(
                Model::KMeans {
                    centroids: (0..8).map(|_| r.vec(d, 1.0)).collect(),
                },
                false,
            ),
        ),
        (
            "decision tree (depth 8)",
            m(
                Model::DecisionTree {
                    n_classes: 3,
                    tree: random_tree(&mut r, d, 3, 8),
                },
                false,
            ),
        ),
        (
            "random forest (50 trees, depth 8)",
            m(
                Model::RandomForest {
                    n_classes: 3,
                    trees: (0..50).map(|_| random_tree(&mut r, d, 3, 8)).collect(),
                },
                false,
            ),
        ),
    ]
}

fn build(p: &Pipeline) -> Vec<u8> {
    let classes: Vec<String> = (0..p.model.n_classes().unwrap_or(0))
        .map(|c| format!("c{c}"))
        .collect();
    let card = ModelCard {
        abi_version: abi::ABI_VERSION,
        kind: p.model.kind().into(),
        feature_names: (0..p.n_features).map(|j| format!("f{j}")).collect(),
        target_name: "y".into(),
        outputs: p.output_names(&classes),
        classes,
        dataset: DatasetRef {
            name: "bench".into(),
            hash: "0".repeat(64),
            n_rows: 0,
        },
        params: BTreeMap::new(),
        metrics: BTreeMap::new(),
        code_version: "bench".into(),
    };
    let profile = Profile::from_rows(&card.feature_names, &vec![0.0; p.n_features * 10]);
    compile(&CompileInput {
        pipeline: p,
        card: &card,
        profile: &profile,
        conformance_rows: &vec![0.5; p.n_features * 4],
    })
    .expect("compiles")
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Median time of one predict call over all rows, in wasmtime.
fn time_wasm(bytes: &[u8], rows: &[f64], d: usize, fuel: bool, expect: &[f64]) -> Duration {
    let mut config = wasmtime::Config::new();
    config.consume_fuel(fuel);
    let engine = wasmtime::Engine::new(&config).unwrap();
    let module = wasmtime::Module::new(&engine, bytes).unwrap();
    let mut store = wasmtime::Store::new(&engine, ());
    if fuel {
        store.set_fuel(u64::MAX / 2).unwrap();
    }
    let instance = wasmtime::Instance::new(&mut store, &module, &[]).unwrap();
    let call0 = |store: &mut wasmtime::Store<()>, name: &str| {
        instance
            .get_typed_func::<(), i32>(&mut *store, name)
            .unwrap()
            .call(&mut *store, ())
            .unwrap()
    };
    let n_outputs = call0(&mut store, abi::EXPORT_N_OUTPUTS) as usize;
    let heap_base = call0(&mut store, abi::EXPORT_HEAP_BASE) as u32;
    let memory = instance.get_memory(&mut store, abi::EXPORT_MEMORY).unwrap();
    let n = rows.len() / d;
    let layout = BatchLayout::new(heap_base, n, d, n_outputs).unwrap();
    let have = memory.size(&store);
    if layout.pages() > have {
        memory.grow(&mut store, layout.pages() - have).unwrap();
    }
    let input: Vec<u8> = rows.iter().flat_map(|v| v.to_le_bytes()).collect();
    memory
        .write(&mut store, layout.in_ptr as usize, &input)
        .unwrap();
    let predict = instance
        .get_typed_func::<(i32, i32, i32, i32), i32>(&mut store, abi::EXPORT_PREDICT)
        .unwrap();
    let args = (
        layout.in_ptr as i32,
        n as i32,
        d as i32,
        layout.out_ptr as i32,
    );
    let mut times = Vec::new();
    for _ in 0..REPEATS {
        let t = Instant::now();
        assert_eq!(predict.call(&mut store, args).unwrap(), 0);
        times.push(t.elapsed());
    }
    let mut out = vec![0u8; n * n_outputs * 8];
    memory
        .read(&store, layout.out_ptr as usize, &mut out)
        .unwrap();
    let got: Vec<u64> = out
        .chunks_exact(8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert!(
        got.iter().zip(expect).all(|(a, b)| *a == b.to_bits()),
        "module disagrees with native"
    );
    median(times)
}

fn main() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    println!("| model | module size (code / total) | native rows/s | wasm rows/s | wasm / native time | wasm+fuel / native time |");
    println!("|---|---|---|---|---|---|");
    for (name, p) in models(&mut rng) {
        let d = p.n_features;
        let rows = rng.vec(ROWS * d, 2.5);
        let bytes = build(&p);
        let code = bytes.len()
            - wasmparser::Parser::new(0)
                .parse_all(&bytes)
                .filter_map(|x| match x.ok()? {
                    wasmparser::Payload::CustomSection(r) => {
                        Some((r.range().end - r.range().start) as usize)
                    }
                    _ => None,
                })
                .sum::<usize>();
        let mut native = Vec::new();
        let mut expect = Vec::new();
        for _ in 0..REPEATS {
            let t = Instant::now();
            expect = std::hint::black_box(reference::predict(&p, std::hint::black_box(&rows)));
            native.push(t.elapsed());
        }
        let native = median(native);
        let wasm = time_wasm(&bytes, &rows, d, false, &expect);
        let fuel = time_wasm(&bytes, &rows, d, true, &expect);
        let rps = |t: Duration| ROWS as f64 / t.as_secs_f64();
        println!(
            "| {name} | {:.1} KB / {:.1} KB | {:.2e} | {:.2e} | {:.2} | {:.2} |",
            code as f64 / 1024.0,
            bytes.len() as f64 / 1024.0,
            rps(native),
            rps(wasm),
            wasm.as_secs_f64() / native.as_secs_f64(),
            fuel.as_secs_f64() / native.as_secs_f64()
        );
    }
}
