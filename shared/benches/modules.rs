//! Module predict throughput in wasmtime against onnxruntime and native Rust, same models.
//!
//! `cargo xtask bench` (or `cargo bench -p wasmops-shared --bench modules`). For every model
//! kind: 10,000 varied rows (fresh random rows, not one row replayed: a branch predictor learns
//! a replayed tree), the median of several batch calls, in these settings:
//! - onnx: scikit-learn fits the model of that shape on those rows (labels from a random linear
//!   rule), skl2onnx exports it, onnxruntime runs it with one thread (`onnx_baseline.py`, in a
//!   venv this benchmark makes once under the target dir). The module is compiled from the
//!   fitted parameters, so both run the same model (trees: thresholds moved one ulp up, since
//!   scikit-learn sends `x <= t` left and modules `x < t`; forests vote by majority in modules,
//!   by averaged probabilities in scikit-learn: same trees, same work per row);
//! - native: `wasmops_shared::reference::predict`, the plain-Rust computation every module must
//!   equal bit for bit (release build, scratch buffers reused across rows);
//! - wasm: the module (`Codegen::Simd`) in wasmtime (cranelift); wasm+fuel the same with fuel
//!   metering on, as the device runs it; scalar: the module as compiled before issue 17
//!   (`Codegen::Scalar`), same run;
//! - v8: the same modules through the WebAssembly JS API under node (`v8.mjs`), if node is on
//!   the PATH.
//!
//! Single-row calls in process: onnxruntime's `run` on one row from Python; the module with its
//! instance kept (write the row, call, read the outputs) and with a fresh instance per call (as
//! the device runs it), both with fuel.
//!
//! `WASMOPS_BENCH_BASELINE=0` skips onnxruntime (and uses random models of the same shapes).
//! Prints markdown tables; read ratios, which are measured in the same run.

use std::time::{Duration, Instant};

use std::path::Path;
use std::process::Command;

use wasmops_shared::compiler::Codegen;
use wasmops_shared::pipeline::{Model, Pipeline, StandardScaler, Tree, TreeNode};
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

/// One benchmark model: a kind and its shape.
struct Case {
    name: &'static str,
    /// As `onnx_baseline.py` names it.
    kind: &'static str,
    d: usize,
    /// Classes (clusters for k-means; 1 for linear).
    k: usize,
    scaled: bool,
    depth: usize,
    trees: usize,
}

const fn case(name: &'static str, kind: &'static str, d: usize, k: usize, scaled: bool) -> Case {
    Case {
        name,
        kind,
        d,
        k,
        scaled,
        depth: 8,
        trees: 1,
    }
}

const CASES: &[Case] = &[
    case("linear (20 features, scaled)", "linear", 20, 1, true),
    case(
        "logistic (20 features, 3 classes, scaled)",
        "logistic",
        20,
        3,
        true,
    ),
    case(
        "logistic (64 features, 10 classes, scaled)",
        "logistic",
        64,
        10,
        true,
    ),
    case(
        "gaussian NB (20 features, 3 classes)",
        "gaussian_nb",
        20,
        3,
        false,
    ),
    case("k-means (20 features, k = 8)", "kmeans", 20, 8, false),
    case("decision tree (depth 8)", "decision_tree", 20, 3, false),
    Case {
        trees: 50,
        ..case(
            "random forest (50 trees, depth 8)",
            "random_forest",
            20,
            3,
            false,
        )
    },
];

/// A random model of the case's shape (when onnxruntime is skipped).
fn random_pipeline(c: &Case, r: &mut Rng) -> Pipeline {
    let (d, k) = (c.d, c.k);
    let model = match c.kind {
        "linear" => Model::Linear {
            weights: r.vec(d, 3.0),
            intercept: 0.5,
        },
        "logistic" => Model::LogisticRegression {
            weights: (0..k).map(|_| r.vec(d, 2.0)).collect(),
            intercepts: r.vec(k, 1.0),
        },
        "gaussian_nb" => Model::GaussianNb {
            means: (0..k).map(|_| r.vec(d, 1.0)).collect(),
            neg_half_inv_var: (0..k).map(|_| vec![-0.7; d]).collect(),
            log_prior_norm: r.vec(k, 1.0).iter().map(|v| v - 1.0).collect(),
        },
        "kmeans" => Model::KMeans {
            centroids: (0..k).map(|_| r.vec(d, 1.0)).collect(),
        },
        "decision_tree" => Model::DecisionTree {
            n_classes: k,
            tree: random_tree(r, d, k, c.depth as u32),
        },
        _ => Model::RandomForest {
            n_classes: k,
            trees: (0..c.trees)
                .map(|_| random_tree(r, d, k, c.depth as u32))
                .collect(),
        },
    };
    Pipeline {
        n_features: d,
        scaler: c.scaled.then(|| StandardScaler {
            mean: r.vec(d, 1.0),
            scale: vec![1.5; d],
        }),
        model,
    }
}

fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|x| x.as_f64().expect("a number"))
        .collect()
}

fn matrix(v: &serde_json::Value) -> Vec<Vec<f64>> {
    v.as_array().expect("an array").iter().map(floats).collect()
}

/// A scikit-learn tree (`onnx_baseline.py`'s arrays) as a module tree.
fn sklearn_tree(t: &serde_json::Value) -> Tree {
    let ints = |key: &str| -> Vec<i64> {
        t[key]
            .as_array()
            .expect("an array")
            .iter()
            .map(|x| x.as_i64().expect("an integer"))
            .collect()
    };
    let (feature, left, right) = (ints("feature"), ints("left"), ints("right"));
    let threshold = floats(&t["threshold"]);
    let value = matrix(&t["value"]);
    let nodes = (0..feature.len())
        .map(|i| {
            if left[i] < 0 {
                let p = &value[i];
                let class = (0..p.len()).fold(0, |b, c| if p[c] > p[b] { c } else { b });
                TreeNode::Leaf {
                    class,
                    probabilities: p.clone(),
                }
            } else {
                TreeNode::Split {
                    feature: feature[i] as usize,
                    // scikit-learn: x <= t goes left; modules: x < t.
                    threshold: threshold[i].next_up(),
                    left: left[i] as usize,
                    right: right[i] as usize,
                }
            }
        })
        .collect();
    Tree { nodes }
}

/// The module pipeline of a model scikit-learn fitted (`onnx_baseline.py`'s parameters).
fn fitted_pipeline(c: &Case, params: &serde_json::Value) -> Pipeline {
    let model = match c.kind {
        "linear" => Model::Linear {
            weights: matrix(&params["coef"])[0].clone(),
            intercept: floats(&params["intercept"])[0],
        },
        "logistic" => Model::LogisticRegression {
            weights: matrix(&params["coef"]),
            intercepts: floats(&params["intercept"]),
        },
        "gaussian_nb" => {
            let var = matrix(&params["var"]);
            let prior = floats(&params["prior"]);
            Model::GaussianNb {
                means: matrix(&params["theta"]),
                neg_half_inv_var: var
                    .iter()
                    .map(|v| v.iter().map(|s| -0.5 / s).collect())
                    .collect(),
                log_prior_norm: prior
                    .iter()
                    .zip(&var)
                    .map(|(p, v)| {
                        p.ln()
                            - 0.5
                                * v.iter()
                                    .map(|s| (2.0 * std::f64::consts::PI * s).ln())
                                    .sum::<f64>()
                    })
                    .collect(),
            }
        }
        "kmeans" => Model::KMeans {
            centroids: matrix(&params["centers"]),
        },
        kind => {
            let mut trees: Vec<Tree> = params["trees"]
                .as_array()
                .expect("trees")
                .iter()
                .map(sklearn_tree)
                .collect();
            if kind == "decision_tree" {
                Model::DecisionTree {
                    n_classes: c.k,
                    tree: trees.remove(0),
                }
            } else {
                Model::RandomForest {
                    n_classes: c.k,
                    trees,
                }
            }
        }
    };
    let p = Pipeline {
        n_features: c.d,
        scaler: c.scaled.then(|| StandardScaler {
            mean: floats(&params["mean"]),
            scale: floats(&params["scale"]),
        }),
        model,
    };
    p.validate().expect("the fitted model is a valid pipeline");
    p
}

/// Labels for the case: the arg-max of a random linear rule (regression: its value).
fn labels(c: &Case, rows: &[f64], r: &mut Rng) -> Vec<f64> {
    let classes = c.k.max(1);
    let w: Vec<Vec<f64>> = (0..classes).map(|_| r.vec(c.d, 1.0)).collect();
    rows.chunks_exact(c.d)
        .map(|x| {
            let z: Vec<f64> = w
                .iter()
                .map(|wc| wc.iter().zip(x).map(|(a, b)| a * b).sum::<f64>())
                .collect();
            if c.kind == "linear" {
                z[0] + 0.1 * r.next()
            } else {
                (0..classes).fold(0, |b, i| if z[i] > z[b] { i } else { b }) as f64
            }
        })
        .collect()
}

fn write_f64s(path: &Path, v: &[f64]) {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(path, bytes).expect("bench data written");
}

/// What onnxruntime measured for one case.
struct Onnx {
    params: serde_json::Value,
    bytes: usize,
    batch_s: f64,
    single_s: f64,
}

/// Runs `onnx_baseline.py` over every case's rows (in `dir`) in the benchmark's venv.
fn onnx_baseline(dir: &Path) -> Result<Vec<Onnx>, String> {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("onnx-venv");
    let bin = venv.join("bin");
    let run = |cmd: &mut Command| -> Result<String, String> {
        let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr)))
        }
    };
    if !bin.join("python").exists()
        || run(
            Command::new(bin.join("python")).args(["-c", "import onnxruntime, skl2onnx, sklearn"])
        )
        .is_err()
    {
        eprintln!(
            "bench: installing scikit-learn, skl2onnx and onnxruntime into {} (once)",
            venv.display()
        );
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
        run(Command::new(bin.join("pip")).args([
            "install",
            "-q",
            "scikit-learn",
            "skl2onnx",
            "onnxruntime",
        ]))?;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/onnx_baseline.py");
    let out = run(Command::new(bin.join("python")).arg(script).arg(dir))?;
    out.lines()
        .map(|line| {
            let v: serde_json::Value =
                serde_json::from_str(line).map_err(|e| format!("{e}: {line}"))?;
            Ok(Onnx {
                params: v["params"].clone(),
                bytes: v["onnx_bytes"].as_u64().unwrap_or(0) as usize,
                batch_s: v["batch_s"].as_f64().unwrap_or(f64::NAN),
                single_s: v["single_s"].as_f64().unwrap_or(f64::NAN),
            })
        })
        .collect()
}

/// V8 batch times (seconds) per job, from `v8.mjs` under node; `None` without node.
fn v8_times(dir: &Path, jobs: &[serde_json::Value]) -> Option<Vec<(f64, bool)>> {
    std::fs::write(
        dir.join("jobs.json"),
        serde_json::to_vec(jobs).expect("json"),
    )
    .ok()?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/v8.mjs");
    let out = Command::new("node").arg(script).arg(dir).output().ok()?;
    if !out.status.success() {
        eprintln!(
            "bench: node failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).ok()?;
            Some((v["batch_s"].as_f64()?, v["bit_identical"].as_bool()?))
        })
        .collect()
}

#[path = "../tests/support/wasm.rs"]
mod support;
use support::{code_size, Batch};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Median time of one predict call over all rows, in wasmtime; checks the outputs.
fn time_wasm(bytes: &[u8], rows: &[f64], d: usize, fuel: bool, expect: &[f64]) -> Duration {
    let mut batch = Batch::new(bytes, rows, d, fuel).expect("module instantiates");
    let mut times = Vec::new();
    for _ in 0..REPEATS {
        let t = Instant::now();
        batch.call().expect("predict");
        times.push(t.elapsed());
    }
    let got = batch.outputs();
    assert!(
        got.iter()
            .zip(expect)
            .all(|(a, b)| a.to_bits() == b.to_bits()),
        "module disagrees with native"
    );
    median(times)
}

const SINGLE_CALLS: usize = 2000;

/// Median time of a one-row call with the instance kept: write the row, predict, read.
fn time_single_kept(bytes: &[u8], rows: &[f64], d: usize) -> Duration {
    let mut batch = Batch::new(bytes, &rows[..d], d, true).expect("module instantiates");
    let mut times = Vec::new();
    for i in 0..SINGLE_CALLS {
        let row = &rows[(i % ROWS) * d..][..d];
        let t = Instant::now();
        batch.write_rows(row).expect("row fits");
        batch.call().expect("predict");
        std::hint::black_box(batch.outputs());
        times.push(t.elapsed());
    }
    median(times)
}

/// Median time of a one-row call in a fresh instance (pooling allocator keeping 1 MiB of each
/// memory resident, fuel), as the device's sandbox makes one per call.
fn time_single_fresh(bytes: &[u8], rows: &[f64], d: usize) -> Duration {
    let mut config = wasmtime::Config::new();
    config.consume_fuel(true);
    let mut pool = wasmtime::PoolingAllocationConfig::default();
    pool.linear_memory_keep_resident(1 << 20)
        .table_keep_resident(1 << 20);
    config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
    let engine = wasmtime::Engine::new(&config).expect("engine");
    let module = wasmtime::Module::new(&engine, bytes).expect("module compiles");
    let pre = wasmtime::Linker::<()>::new(&engine)
        .instantiate_pre(&module)
        .expect("nothing to import");
    let mut times = Vec::new();
    for i in 0..SINGLE_CALLS {
        let row = &rows[(i % ROWS) * d..][..d];
        let t = Instant::now();
        let out = support::run_in(&engine, &pre, row, d).expect("predict");
        std::hint::black_box(out);
        times.push(t.elapsed());
    }
    median(times)
}

fn main() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-modules");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench dir");
    let data: Vec<Vec<f64>> = CASES.iter().map(|c| rng.vec(ROWS * c.d, 2.5)).collect();
    let cases_json: Vec<serde_json::Value> = CASES
        .iter()
        .enumerate()
        .map(|(i, c)| {
            write_f64s(&dir.join(format!("{i}.x")), &data[i]);
            write_f64s(&dir.join(format!("{i}.y")), &labels(c, &data[i], &mut rng));
            serde_json::json!({
                "kind": c.kind, "d": c.d, "k": c.k, "scaled": c.scaled,
                "depth": c.depth, "trees": c.trees, "repeats": REPEATS,
            })
        })
        .collect();
    std::fs::write(
        dir.join("cases.json"),
        serde_json::to_vec(&cases_json).expect("json"),
    )
    .expect("cases written");
    let onnx = if std::env::var("WASMOPS_BENCH_BASELINE").as_deref() == Ok("0") {
        None
    } else {
        match onnx_baseline(&dir) {
            Ok(o) => Some(o),
            Err(e) => {
                eprintln!("bench: no onnxruntime baseline: {e}");
                None
            }
        }
    };

    let rps = |t: f64| ROWS as f64 / t;
    let mut v8_jobs = Vec::new();
    let mut batch_rows = Vec::new();
    let mut single_rows = Vec::new();
    let mut size_rows = Vec::new();
    for (i, c) in CASES.iter().enumerate() {
        let p = match &onnx {
            Some(o) => fitted_pipeline(c, &o[i].params),
            None => random_pipeline(c, &mut Rng(7 + i as u64)),
        };
        let d = p.n_features;
        let rows = &data[i];
        let conformance = &rows[..4 * d];
        let simd = support::build_codegen(&p, conformance, Codegen::Simd);
        let scalar = support::build_codegen(&p, conformance, Codegen::Scalar);
        let mut native = Vec::new();
        let mut expect = Vec::new();
        for _ in 0..REPEATS {
            let t = Instant::now();
            expect = std::hint::black_box(reference::predict(&p, std::hint::black_box(rows)));
            native.push(t.elapsed());
        }
        let native = median(native).as_secs_f64();
        let wasm = time_wasm(&simd, rows, d, false, &expect).as_secs_f64();
        let fuel = time_wasm(&simd, rows, d, true, &expect).as_secs_f64();
        let old = time_wasm(&scalar, rows, d, false, &expect).as_secs_f64();
        let kept = time_single_kept(&simd, rows, d).as_secs_f64();
        let fresh = time_single_fresh(&simd, rows, d).as_secs_f64();
        for (tag, bytes) in [("simd", &simd), ("scalar", &scalar)] {
            std::fs::write(dir.join(format!("{i}.{tag}.wasm")), bytes).expect("module written");
            v8_jobs.push(serde_json::json!({
                "module": format!("{i}.{tag}.wasm"), "rows": format!("{i}.x"),
                "expected": format!("{i}.expected"), "repeats": REPEATS,
            }));
        }
        write_f64s(&dir.join(format!("{i}.expected")), &expect);
        let (onnx_rps, ratio, onnx_single, onnx_size) = match &onnx {
            Some(o) => (
                format!("{:.2e}", rps(o[i].batch_s)),
                format!("**{:.2}**", wasm / o[i].batch_s),
                format!("{:.1} us", o[i].single_s * 1e6),
                format!("{:.1} KB", o[i].bytes as f64 / 1024.0),
            ),
            None => ("-".into(), "-".into(), "-".into(), "-".into()),
        };
        batch_rows.push(format!(
            "| {} | {onnx_rps} | {:.2e} | {:.2e} | {:.2e} | {ratio} | {:.2} | {:.2} | {:.2} |",
            c.name,
            rps(old),
            rps(wasm),
            rps(fuel),
            wasm / native,
            old / wasm,
            fuel / wasm,
        ));
        single_rows.push(format!(
            "| {} | {onnx_single} | {:.1} us | {:.1} us |",
            c.name,
            kept * 1e6,
            fresh * 1e6
        ));
        size_rows.push(format!(
            "| {} | {onnx_size} | {:.1} KB / {:.1} KB | {:.1} KB / {:.1} KB |",
            c.name,
            code_size(&simd) as f64 / 1024.0,
            simd.len() as f64 / 1024.0,
            code_size(&scalar) as f64 / 1024.0,
            scalar.len() as f64 / 1024.0,
        ));
    }
    let v8 = v8_times(&dir, &v8_jobs);

    println!("\n10,000 rows per batch call, median of {REPEATS}; module = SIMD codegen in wasmtime; scalar = the module as compiled before issue 17\n");
    println!("| model | onnxruntime rows/s | scalar module rows/s | module rows/s | module+fuel rows/s | **module / onnxruntime time** | module / native time | scalar / module time | fuel / plain time |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in &batch_rows {
        println!("{r}");
    }
    println!("\nSingle-row calls in process, median of {SINGLE_CALLS}\n");
    println!("| model | onnxruntime (Python `run`) | module, instance kept | module, fresh instance per call |");
    println!("|---|---|---|---|");
    for r in &single_rows {
        println!("{r}");
    }
    println!("\nSizes (module: code / whole module with card, profile and conformance vectors)\n");
    println!("| model | ONNX file | module | scalar module |");
    println!("|---|---|---|---|");
    for r in &size_rows {
        println!("{r}");
    }
    match v8 {
        Some(v8) => {
            println!("\nV8 (node {}), same modules and rows\n", node_version());
            println!(
                "| model | module rows/s | scalar module rows/s | bit-identical to the reference |"
            );
            println!("|---|---|---|---|");
            for (c, pair) in CASES.iter().zip(v8.chunks(2)) {
                println!(
                    "| {} | {:.2e} | {:.2e} | {} |",
                    c.name,
                    rps(pair[0].0),
                    rps(pair[1].0),
                    if pair[0].1 && pair[1].1 {
                        "yes"
                    } else {
                        "**NO**"
                    }
                );
            }
        }
        None => println!("\n(no V8 figures: node is not on the PATH)"),
    }
}

fn node_version() -> String {
    Command::new("node")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
