//! What several of the trainer's test files use: scikit-learn's digits, and a trained run
//! compiled to its module.

#![allow(dead_code)] // each test file uses some of these

use std::io::Read;

use wasmops_shared::compiler::{compile, CompileInput};
use wasmops_shared::dataset::Dataset;
use wasmops_shared::module::{DatasetRef, ModelCard};
use wasmops_shared::profile::Profile;
use wasmops_trainer::Trained;

/// scikit-learn's digits (`tests/data/README.md`): 1,797 rows, 64 features, 10 classes.
pub fn digits() -> Dataset {
    let gz = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/digits.csv.gz"
    ))
    .unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_string(&mut text)
        .unwrap();
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().unwrap().split(',').map(String::from).collect();
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for line in lines {
        let v: Vec<f64> = line.split(',').map(|f| f.parse().unwrap()).collect();
        x.extend_from_slice(&v[..64]);
        y.push(v[64]);
    }
    assert_eq!(y.len(), 1797);
    Dataset {
        name: "digits".into(),
        feature_names: header[..64].to_vec(),
        target_name: "digit".into(),
        class_names: (0..10).map(|c| c.to_string()).collect(),
        x,
        y,
    }
}

/// The compiled module, conformance vectors from the held-out rows.
pub fn module_bytes(t: &Trained, data: &Dataset) -> Vec<u8> {
    let card = ModelCard {
        abi_version: 1,
        kind: t.pipeline.model.kind().into(),
        feature_names: data.feature_names.clone(),
        target_name: data.target_name.clone(),
        classes: t.class_names.clone(),
        outputs: t.pipeline.output_names(&t.class_names),
        dataset: DatasetRef {
            name: data.name.clone(),
            hash: data.content_hash(),
            n_rows: data.n_rows(),
        },
        params: Default::default(),
        metrics: t.metrics.clone(),
        code_version: "test".into(),
    };
    let profile = Profile::from_rows(&data.feature_names, &t.train_x);
    compile(&CompileInput {
        pipeline: &t.pipeline,
        card: &card,
        profile: &profile,
        conformance_rows: &t.test_x,
    })
    .unwrap()
}
