//! Building and running model modules in wasmtime, for the compiler's tests and benchmark
//! (included by both with `#[path]`).

#![allow(dead_code)]

use std::collections::BTreeMap;

use wasmops_shared::abi::{self, BatchLayout, Status};
use wasmops_shared::compiler::{compile_with, Codegen, CompileInput};
use wasmops_shared::module::{DatasetRef, ModelCard};
use wasmops_shared::pipeline::Pipeline;
use wasmops_shared::profile::Profile;

/// Compiles `p` with a synthetic card and profile; `conformance_rows` feed the conformance set.
pub fn build_with(p: &Pipeline, conformance_rows: &[f64]) -> Vec<u8> {
    build_codegen(p, conformance_rows, Codegen::Simd)
}

/// [`build_with`] with the given code generation.
pub fn build_codegen(p: &Pipeline, conformance_rows: &[f64], codegen: Codegen) -> Vec<u8> {
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
            name: "synthetic".into(),
            hash: "0".repeat(64),
            n_rows: 0,
        },
        params: BTreeMap::new(),
        metrics: BTreeMap::new(),
        code_version: "test".into(),
    };
    let rows: Vec<f64> = (0..10 * p.n_features).map(|i| (i % 5) as f64).collect();
    let profile = Profile::from_rows(&card.feature_names, &rows);
    compile_with(
        &CompileInput {
            pipeline: p,
            card: &card,
            profile: &profile,
            conformance_rows,
        },
        codegen,
    )
    .expect("compiles")
}

/// A module instance with one batch written into its memory.
pub struct Batch {
    store: wasmtime::Store<()>,
    predict: wasmtime::TypedFunc<(i32, i32, i32, i32), i32>,
    memory: wasmtime::Memory,
    args: (i32, i32, i32, i32),
    out_len: usize,
}

impl Batch {
    /// Instantiates `bytes` (optionally with fuel metering) and writes `rows` at the ABI layout.
    pub fn new(bytes: &[u8], rows: &[f64], n_features: usize, fuel: bool) -> Result<Batch, String> {
        let mut config = wasmtime::Config::new();
        config.consume_fuel(fuel);
        let engine = wasmtime::Engine::new(&config).map_err(|e| e.to_string())?;
        let module = wasmtime::Module::new(&engine, bytes).map_err(|e| e.to_string())?;
        let mut store = wasmtime::Store::new(&engine, ());
        if fuel {
            store.set_fuel(u64::MAX / 2).map_err(|e| e.to_string())?;
        }
        let instance =
            wasmtime::Instance::new(&mut store, &module, &[]).map_err(|e| e.to_string())?;
        let mut get = |name: &str| -> Result<i32, String> {
            let f = instance
                .get_typed_func::<(), i32>(&mut store, name)
                .map_err(|e| e.to_string())?;
            f.call(&mut store, ()).map_err(|e| e.to_string())
        };
        let n_outputs = get(abi::EXPORT_N_OUTPUTS)? as usize;
        let heap_base = get(abi::EXPORT_HEAP_BASE)? as u32;
        let memory = instance
            .get_memory(&mut store, abi::EXPORT_MEMORY)
            .ok_or("no memory")?;
        let n_rows = rows.len() / n_features;
        let layout =
            BatchLayout::new(heap_base, n_rows, n_features, n_outputs).ok_or("batch too large")?;
        let have = memory.size(&store);
        if layout.pages() > have {
            memory
                .grow(&mut store, layout.pages() - have)
                .map_err(|e| e.to_string())?;
        }
        let input: Vec<u8> = rows.iter().flat_map(|v| v.to_le_bytes()).collect();
        memory
            .write(&mut store, layout.in_ptr as usize, &input)
            .map_err(|e| e.to_string())?;
        let predict = instance
            .get_typed_func(&mut store, abi::EXPORT_PREDICT)
            .map_err(|e| e.to_string())?;
        let args = (
            layout.in_ptr as i32,
            n_rows as i32,
            n_features as i32,
            layout.out_ptr as i32,
        );
        Ok(Batch {
            store,
            predict,
            memory,
            args,
            out_len: n_rows * n_outputs,
        })
    }

    /// Replaces the batch's rows (the same number of rows).
    pub fn write_rows(&mut self, rows: &[f64]) -> Result<(), String> {
        if rows.len() != self.args.1 as usize * self.args.2 as usize {
            return Err("a different number of values".into());
        }
        let mem = self.memory.data_mut(&mut self.store);
        let at = self.args.0 as usize;
        for (dst, v) in mem[at..at + rows.len() * 8].chunks_exact_mut(8).zip(rows) {
            dst.copy_from_slice(&v.to_le_bytes());
        }
        Ok(())
    }

    /// Runs predict over the batch.
    pub fn call(&mut self) -> Result<(), String> {
        let code = self
            .predict
            .call(&mut self.store, self.args)
            .map_err(|e| e.to_string())?;
        if code == Status::Ok as i32 {
            Ok(())
        } else {
            Err(Status::describe(code))
        }
    }

    /// The outputs of the last call.
    pub fn outputs(&self) -> Vec<f64> {
        let mut out = vec![0u8; self.out_len * 8];
        self.memory
            .read(&self.store, self.args.3 as usize, &mut out)
            .expect("outputs in memory");
        out.chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
            .collect()
    }
}

/// Compiles nothing: runs `bytes` once over `rows`.
pub fn run(bytes: &[u8], rows: &[f64], n_features: usize) -> Result<Vec<f64>, String> {
    let mut batch = Batch::new(bytes, rows, n_features, false)?;
    batch.call()?;
    Ok(batch.outputs())
}

/// Bytes of a module without its custom sections (card, profile, conformance vectors).
pub fn code_size(bytes: &[u8]) -> usize {
    let custom: usize = wasmparser::Parser::new(0)
        .parse_all(bytes)
        .filter_map(|p| match p.ok()? {
            wasmparser::Payload::CustomSection(r) => {
                Some((r.range().end - r.range().start) as usize)
            }
            _ => None,
        })
        .sum();
    bytes.len() - custom
}

/// One call in a fresh instance of `pre` (fuel on), as a device makes one per call.
pub fn run_in(
    engine: &wasmtime::Engine,
    pre: &wasmtime::InstancePre<()>,
    rows: &[f64],
    n_features: usize,
) -> Result<Vec<f64>, String> {
    let mut store = wasmtime::Store::new(engine, ());
    store.set_fuel(u64::MAX / 2).map_err(|e| e.to_string())?;
    let instance = pre.instantiate(&mut store).map_err(|e| e.to_string())?;
    let mut get = |name: &str| -> Result<i32, String> {
        let f = instance
            .get_typed_func::<(), i32>(&mut store, name)
            .map_err(|e| e.to_string())?;
        f.call(&mut store, ()).map_err(|e| e.to_string())
    };
    let n_outputs = get(abi::EXPORT_N_OUTPUTS)? as usize;
    let heap_base = get(abi::EXPORT_HEAP_BASE)? as u32;
    let memory = instance
        .get_memory(&mut store, abi::EXPORT_MEMORY)
        .ok_or("no memory")?;
    let n_rows = rows.len() / n_features;
    let layout =
        BatchLayout::new(heap_base, n_rows, n_features, n_outputs).ok_or("batch too large")?;
    let have = memory.size(&store);
    if layout.pages() > have {
        memory
            .grow(&mut store, layout.pages() - have)
            .map_err(|e| e.to_string())?;
    }
    let mem = memory.data_mut(&mut store);
    let at = layout.in_ptr as usize;
    for (dst, v) in mem[at..at + rows.len() * 8].chunks_exact_mut(8).zip(rows) {
        dst.copy_from_slice(&v.to_le_bytes());
    }
    let predict = instance
        .get_typed_func::<(i32, i32, i32, i32), i32>(&mut store, abi::EXPORT_PREDICT)
        .map_err(|e| e.to_string())?;
    let code = predict
        .call(
            &mut store,
            (
                layout.in_ptr as i32,
                n_rows as i32,
                n_features as i32,
                layout.out_ptr as i32,
            ),
        )
        .map_err(|e| e.to_string())?;
    if code != Status::Ok as i32 {
        return Err(Status::describe(code));
    }
    let out = &memory.data(&store)[layout.out_ptr as usize..][..n_rows * n_outputs * 8];
    Ok(out
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
        .collect())
}
