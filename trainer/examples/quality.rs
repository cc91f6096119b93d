//! Quality on a split both sides can use: trains a spec with the trainer and writes the split
//! (test-row indices into the file, in order), so scikit-learn can be fitted on the same rows
//! (`docs/benchmarks.md`, "Training quality against scikit-learn").
//!
//! `cargo run --release -p wasmops-trainer --example quality -- DATA SPEC_JSON SEED [SPLIT_OUT]`
//! where DATA is a built-in dataset's name or a CSV file (header, numeric columns, the last
//! one the target; `class:FILE` reads the target as class labels 0, 1, ...) or `synthetic:ROWS`
//! (the benchmark dataset, 20 features).

use rand::seq::SliceRandom;
use rand_xoshiro::rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256Plus;
use wasmops_shared::dataset::Dataset;
use wasmops_shared::pipeline::Model;
use wasmops_trainer::{datasets, train, Algorithm, TrainSpec};

fn load_csv(path: &str, classes: bool) -> Dataset {
    let text = std::fs::read_to_string(path).expect("read the CSV file");
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .expect("a header")
        .split(',')
        .map(str::to_string)
        .collect();
    let d = header.len() - 1;
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let v: Vec<f64> = line.split(',').map(|f| f.trim().parse().unwrap()).collect();
        x.extend_from_slice(&v[..d]);
        y.push(v[d]);
    }
    let n_classes = if classes {
        y.iter().fold(0.0f64, |a, b| a.max(*b)) as usize + 1
    } else {
        0
    };
    Dataset {
        name: path.rsplit('/').next().unwrap_or(path).to_string(),
        feature_names: header[..d].to_vec(),
        target_name: header[d].clone(),
        class_names: (0..n_classes).map(|c| c.to_string()).collect(),
        x,
        y,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let data = match args[1].strip_prefix("class:") {
        Some(path) => load_csv(path, true),
        None if args[1].ends_with(".csv") => load_csv(&args[1], false),
        None if args[1].starts_with("synthetic:") => {
            datasets::synthetic(args[1][10..].parse().unwrap(), 20, 42)
        }
        None => datasets::builtin(&args[1]).unwrap(),
    };
    let algorithm: Algorithm = serde_json::from_str(&args[2]).unwrap();
    let seed: u64 = args[3].parse().unwrap();
    let spec = TrainSpec {
        algorithm,
        scale: false,
        test_fraction: 0.25,
        seed,
    };
    let started = std::time::Instant::now();
    let t = train(&data, &spec, |_, _| {}).unwrap();
    let secs = started.elapsed().as_secs_f64();
    // The trainer's split: linfa shuffles the row indices with the seeded generator, then
    // the first ceil(n * 0.75) rows train.
    let n = data.n_rows();
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut Xoshiro256Plus::seed_from_u64(seed));
    let n_train = (n as f32 * 0.75f32).ceil() as usize;
    if let Some(out) = args.get(4) {
        let text: Vec<String> = order.iter().map(|i| i.to_string()).collect();
        std::fs::write(out, format!("{n_train}\n{}\n", text.join(","))).unwrap();
        // The rows as the trainer read them (last column the target), for the other side.
        let d = data.n_features();
        let rows: Vec<String> = (0..n)
            .map(|i| {
                let mut v: Vec<String> = data.x[i * d..i * d + d]
                    .iter()
                    .map(f64::to_string)
                    .collect();
                v.push(data.y[i].to_string());
                v.join(",")
            })
            .collect();
        std::fs::write(format!("{out}.data.csv"), rows.join("\n") + "\n").unwrap();
    }
    // The split must be the trainer's: its first test row is row order[n_train].
    let d = data.n_features();
    assert_eq!(
        t.test_x[..d],
        data.x[order[n_train] * d..order[n_train] * d + d]
    );
    let nodes: usize = match &t.pipeline.model {
        Model::DecisionTree { tree, .. } => tree.nodes.len(),
        Model::RandomForest { trees, .. } => trees.iter().map(|t| t.nodes.len()).sum(),
        _ => 0,
    };
    println!(
        "{} seed {seed}: {:?} ({secs:.2} s, {nodes} tree nodes)",
        data.name, t.metrics
    );
}
