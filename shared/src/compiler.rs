//! The model compiler: a validated [`Pipeline`] becomes one self-contained WebAssembly module.
//!
//! The module imports nothing, exports the ABI in `abi.rs`, computes exactly what
//! `reference.rs` computes (same operations, same order) and carries its card, profile and
//! conformance vectors as custom sections. Output is a pure function of the input: no
//! timestamps, no random ids, deterministic section order, so the same inputs give the same
//! bytes and the same hash.

use std::borrow::Cow;

use wasm_encoder::{
    BlockType, CodeSection, ConstExpr, CustomSection, DataSection, ExportKind, ExportSection,
    Function, FunctionSection, Ieee64, Instruction as I, MemArg, MemArgTarget, MemorySection,
    MemoryType, Module, TypeSection, ValType,
};

use crate::abi::{self, Status, ABI_VERSION, CANONICAL_NAN_BITS};
use crate::math;
use crate::module::{encode_section, Conformance, Hex64, ModelCard, Requires, WasmFeature};
use crate::pipeline::{Model, Pipeline, PipelineError, Tree, TreeNode};
use crate::profile::Profile;
use crate::reference;

mod simd;
mod trees;

/// How the compiler emits the model's arithmetic. Both give the same outputs bit for bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codegen {
    /// WebAssembly SIMD (`simd128`): the dense kinds (linear, logistic, Gaussian NB, k-means)
    /// run two rows per instruction; trees walk one row at a time as in `Scalar`. Modules
    /// that use SIMD declare it (`wasmops.requires`); runtimes without SIMD refuse them.
    Simd,
    /// One row at a time, MVP instructions only: the modules every build wrote before issue 17.
    /// Kept for old-module tests and as the benchmark's baseline.
    Scalar,
}

/// Everything a module is built from.
#[derive(Debug, Clone)]
pub struct CompileInput<'a> {
    pub pipeline: &'a Pipeline,
    pub card: &'a ModelCard,
    pub profile: &'a Profile,
    /// Row-major rows whose outputs become the conformance vectors (edge cases are added).
    pub conformance_rows: &'a [f64],
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    #[error("invalid pipeline: {0}")]
    Pipeline(#[from] PipelineError),
    #[error("the model card lists {card} features, the pipeline has {pipeline}")]
    CardMismatch { card: usize, pipeline: usize },
    #[error("the model card lists {card} outputs, the pipeline produces {pipeline}")]
    OutputMismatch { card: usize, pipeline: usize },
    #[error("conformance rows hold {0} values, not a whole number of rows")]
    RaggedRows(usize),
}

/// Rows of edge cases appended to every conformance set (per feature, broadcast).
const EDGE_VALUES: [f64; 8] = [
    0.0,
    -0.0,
    1e300,
    -1e300,
    5e-324,
    f64::NAN,
    f64::INFINITY,
    f64::NEG_INFINITY,
];

/// Compiles a pipeline into module bytes (with [`Codegen::Simd`]).
pub fn compile(input: &CompileInput<'_>) -> Result<Vec<u8>, CompileError> {
    compile_with(input, Codegen::Simd)
}

/// Compiles a pipeline into module bytes with the given code generation.
pub fn compile_with(input: &CompileInput<'_>, codegen: Codegen) -> Result<Vec<u8>, CompileError> {
    let p = input.pipeline;
    p.validate()?;
    let d = p.n_features;
    if input.card.feature_names.len() != d {
        return Err(CompileError::CardMismatch {
            card: input.card.feature_names.len(),
            pipeline: d,
        });
    }
    if input.card.outputs.len() != p.n_outputs() {
        return Err(CompileError::OutputMismatch {
            card: input.card.outputs.len(),
            pipeline: p.n_outputs(),
        });
    }
    if !input.conformance_rows.len().is_multiple_of(d) {
        return Err(CompileError::RaggedRows(input.conformance_rows.len()));
    }
    let mut card = input.card.clone();
    card.abi_version = ABI_VERSION;

    let mut rows = input.conformance_rows.to_vec();
    for v in EDGE_VALUES {
        rows.extend(std::iter::repeat_n(v, d));
    }
    let expected = reference::predict(p, &rows);
    let conformance = Conformance {
        abi_version: ABI_VERSION,
        n_rows: rows.len() / d,
        n_features: d,
        n_outputs: p.n_outputs(),
        inputs: rows.iter().map(|v| Hex64(v.to_bits())).collect(),
        expected: expected.iter().map(|v| Hex64(v.to_bits())).collect(),
    };

    let simd = codegen == Codegen::Simd && simd::supports(&p.model);
    // The vector `exp`, for the softmax kinds.
    let exp2 = simd
        && matches!(
            p.model,
            Model::LogisticRegression { .. } | Model::GaussianNb { .. }
        );

    let mut module = Module::new();

    let mut types = TypeSection::new();
    types.ty().function([], [ValType::I32]); // 0: () -> i32
    types.ty().function([ValType::I32; 4], [ValType::I32]); // 1: predict
    types.ty().function([ValType::F64], [ValType::F64]); // 2: exp
    if exp2 {
        types.ty().function([ValType::V128], [ValType::V128]); // 3: exp on f64x2
    }
    module.section(&types);

    const F_ABI: u32 = 0;
    const F_N_FEATURES: u32 = 1;
    const F_N_OUTPUTS: u32 = 2;
    const F_HEAP_BASE: u32 = 3;
    const F_PREDICT: u32 = 4;
    const F_EXP: u32 = 5;
    const F_EXP2: u32 = 6;
    let mut funcs = FunctionSection::new();
    for ty in [0, 0, 0, 0, 1, 2] {
        funcs.function(ty);
    }
    if exp2 {
        funcs.function(3);
    }
    module.section(&funcs);

    // Trees walk several rows at once in SIMD modules (see `trees.rs`); their nodes differ.
    let blocked = codegen == Codegen::Simd && trees::supports(&p.model);
    let layout = DataLayout::new(p, blocked);
    let mut memories = MemorySection::new();
    memories.memory(MemoryType {
        minimum: layout.pages(),
        maximum: None,
        memory64: false,
        shared: false,
        page_size_log2: None,
    });
    module.section(&memories);

    let mut exports = ExportSection::new();
    exports.export(abi::EXPORT_MEMORY, ExportKind::Memory, 0);
    exports.export(abi::EXPORT_ABI_VERSION, ExportKind::Func, F_ABI);
    exports.export(abi::EXPORT_N_FEATURES, ExportKind::Func, F_N_FEATURES);
    exports.export(abi::EXPORT_N_OUTPUTS, ExportKind::Func, F_N_OUTPUTS);
    exports.export(abi::EXPORT_HEAP_BASE, ExportKind::Func, F_HEAP_BASE);
    exports.export(abi::EXPORT_PREDICT, ExportKind::Func, F_PREDICT);
    module.section(&exports);

    let mut code = CodeSection::new();
    code.function(&const_i32(ABI_VERSION as i32));
    code.function(&const_i32(d as i32));
    code.function(&const_i32(p.n_outputs() as i32));
    code.function(&const_i32(layout.heap_base as i32));
    code.function(&predict_fn(
        p,
        &layout,
        F_EXP,
        simd.then_some(F_EXP2),
        blocked,
    ));
    code.function(&exp_fn());
    if exp2 {
        code.function(&simd::exp2_fn());
    }
    module.section(&code);

    if !layout.data.is_empty() {
        let mut data = DataSection::new();
        data.active(0, &ConstExpr::i32_const(0), layout.data.iter().copied());
        module.section(&data);
    }

    if simd {
        // Only modules that use SIMD carry the section, so scalar modules stay as before.
        module.section(&CustomSection {
            name: Cow::Borrowed(abi::SECTION_REQUIRES),
            data: Cow::Owned(encode_section(&Requires::new(&[WasmFeature::Simd128]))),
        });
    }
    for (name, data) in [
        (abi::SECTION_CARD, encode_section(&card)),
        (abi::SECTION_PROFILE, encode_section(input.profile)),
        (abi::SECTION_CONFORMANCE, encode_section(&conformance)),
    ] {
        module.section(&CustomSection {
            name: Cow::Borrowed(name),
            data: Cow::Owned(data),
        });
    }
    Ok(module.finish())
}

fn const_i32(v: i32) -> Function {
    let mut f = Function::new([]);
    f.instruction(&I::I32Const(v)).instruction(&I::End);
    f
}

fn f64c(v: f64) -> I<'static> {
    I::F64Const(Ieee64::from(v))
}

fn mem(offset: u64) -> MemArg {
    MemArg {
        offset,
        align: 3,
        target: MemArgTarget::Memory(0),
        ordering: None,
    }
}

/// Pushes `return code` if the i32 condition on the stack is true.
fn return_if(f: &mut Function, code: Status) {
    f.instruction(&I::If(BlockType::Empty))
        .instruction(&I::I32Const(code as i32))
        .instruction(&I::Return)
        .instruction(&I::End);
}

/// Emits: `if (u64(ptr) + u64(n_rows) * row_bytes > memory bytes) return OutOfBounds`.
fn bounds_check(f: &mut Function, ptr_local: u32, n_rows_local: u32, row_bytes: u64) {
    f.instruction(&I::LocalGet(ptr_local))
        .instruction(&I::I64ExtendI32U)
        .instruction(&I::LocalGet(n_rows_local))
        .instruction(&I::I64ExtendI32U)
        .instruction(&I::I64Const(row_bytes as i64))
        .instruction(&I::I64Mul)
        .instruction(&I::I64Add)
        .instruction(&I::MemorySize(0))
        .instruction(&I::I64ExtendI32U)
        .instruction(&I::I64Const(16))
        .instruction(&I::I64Shl)
        .instruction(&I::I64GtU);
    return_if(f, Status::OutOfBounds);
}

/// Memory a module needs besides batches: tree nodes, a scratch row and vote counters.
struct DataLayout {
    /// Bytes placed at address 0 by the data segment (tree nodes and leaf values).
    data: Vec<u8>,
    /// Byte address of each tree's root.
    roots: Vec<u32>,
    /// Scratch copy of the (scaled) row, for data-driven tree walks.
    x_addr: u32,
    /// Per-class vote counters (forests), per-score sums (boosting).
    votes_addr: u32,
    /// Levels of each tree's deepest leaf (splits on the way from the root).
    depths: Vec<u32>,
    heap_base: u32,
}

const NODE_BYTES: u32 = 24;

impl DataLayout {
    /// Node encoding (24 bytes): `feature: i32` (-1 for a leaf), `left: i32` and `right: i32`
    /// (byte addresses of the children), `leaf: i32` (forest: class index; tree: byte address
    /// of the leaf's output values), `threshold: f64`.
    ///
    /// `blocked` (trees walked [`trees::ROWS`] rows at a time, a fixed number of levels): a
    /// split's `feature` holds the feature's byte offset (`8 * feature`); a leaf points both
    /// children at itself (feature 0, threshold 0), so further levels stay on it, and a forest
    /// leaf's `leaf` holds `8 * class`. The scratch rows and vote counters hold
    /// [`trees::ROWS`] rows.
    ///
    /// A boosted tree's leaf holds its value in `threshold` (a blocked walk compares against
    /// it and stays on the leaf either way).
    fn new(p: &Pipeline, blocked: bool) -> DataLayout {
        let (trees, leaf_values): (Vec<&Tree>, bool) = match &p.model {
            Model::DecisionTree { tree, .. } => (vec![tree], true),
            Model::RandomForest { trees, .. } | Model::GradientBoosting { trees, .. } => {
                (trees.iter().collect(), false)
            }
            _ => (Vec::new(), false),
        };
        let boosted = matches!(p.model, Model::GradientBoosting { .. });
        let total_nodes: usize = trees.iter().map(|t| t.nodes.len()).sum();
        let mut data = vec![0u8; total_nodes * NODE_BYTES as usize];
        let mut values: Vec<u8> = Vec::new();
        let mut leaf_blocks: std::collections::BTreeMap<Vec<u8>, u32> =
            std::collections::BTreeMap::new();
        let values_base = data.len() as u32;
        let mut roots = Vec::new();
        let mut base = 0u32;
        for tree in &trees {
            roots.push(base);
            let addr = |i: usize| base + i as u32 * NODE_BYTES;
            for (i, node) in tree.nodes.iter().enumerate() {
                let at = addr(i) as usize;
                let (feature, left, right, leaf, threshold) = match node {
                    TreeNode::Split {
                        feature,
                        threshold,
                        left,
                        right,
                    } => (
                        if blocked {
                            8 * *feature as i32
                        } else {
                            *feature as i32
                        },
                        addr(*left) as i32,
                        addr(*right) as i32,
                        0,
                        *threshold,
                    ),
                    TreeNode::Leaf {
                        class,
                        probabilities,
                    } => {
                        let leaf = if leaf_values {
                            // Identical leaf outputs (e.g. every pure leaf of a class) are stored once.
                            let mut block = (*class as f64).to_le_bytes().to_vec();
                            for v in probabilities {
                                block.extend(v.to_le_bytes());
                            }
                            let ptr = *leaf_blocks.entry(block.clone()).or_insert_with(|| {
                                let ptr = values_base + values.len() as u32;
                                values.extend(&block);
                                ptr
                            });
                            ptr as i32
                        } else if blocked {
                            8 * *class as i32
                        } else {
                            *class as i32
                        };
                        let value = if boosted { probabilities[0] } else { 0.0 };
                        if blocked {
                            (0, addr(i) as i32, addr(i) as i32, leaf, value)
                        } else {
                            (-1, 0, 0, leaf, value)
                        }
                    }
                };
                data[at..at + 4].copy_from_slice(&feature.to_le_bytes());
                data[at + 4..at + 8].copy_from_slice(&left.to_le_bytes());
                data[at + 8..at + 12].copy_from_slice(&right.to_le_bytes());
                data[at + 12..at + 16].copy_from_slice(&leaf.to_le_bytes());
                data[at + 16..at + 24].copy_from_slice(&threshold.to_le_bytes());
            }
            base += tree.nodes.len() as u32 * NODE_BYTES;
        }
        data.extend(values);
        let depths = trees.iter().map(|t| tree_depth(t)).collect();
        let rows = if blocked { trees::ROWS } else { 1 };
        let x_addr = align8(data.len() as u32);
        let votes_addr = x_addr + 8 * rows * p.n_features as u32;
        let counters = match &p.model {
            Model::GradientBoosting { n_classes, .. } => n_classes.unwrap_or(1),
            model => model.n_classes().unwrap_or(0),
        };
        let heap_base = votes_addr + 8 * rows * counters as u32;
        DataLayout {
            data,
            roots,
            x_addr,
            votes_addr,
            depths,
            heap_base,
        }
    }

    fn pages(&self) -> u64 {
        u64::from(self.heap_base).div_ceil(abi::PAGE_SIZE).max(1)
    }
}

/// Splits on the longest path from the root to a leaf (children come after their parents).
fn tree_depth(t: &Tree) -> u32 {
    let mut depth = vec![0u32; t.nodes.len()];
    let mut max = 0;
    for (i, node) in t.nodes.iter().enumerate() {
        if let TreeNode::Split { left, right, .. } = node {
            depth[*left] = depth[*left].max(depth[i] + 1);
            depth[*right] = depth[*right].max(depth[i] + 1);
            max = max.max(depth[i] + 1);
        }
    }
    max
}

fn align8(v: u32) -> u32 {
    (v + 7) & !7
}

// Locals of `wasmops_predict`. Params: 0 in_ptr, 1 n_rows, 2 n_features, 3 out_ptr.
const IN_PTR: u32 = 0;
const N_ROWS: u32 = 1;
const N_FEATURES: u32 = 2;
const OUT_PTR: u32 = 3;
// i32 locals.
const INP: u32 = 4;
const OUTP: u32 = 5;
const ROW: u32 = 6;
const BEST: u32 = 7;
const NODE: u32 = 8;
const FEAT: u32 = 9;
const N_I32: u32 = 6;
/// First f64 local: x_0..x_{d-1}, then z_0..z_{k-1}, then m, s, t.
const F64_BASE: u32 = 4 + N_I32;

struct Locals {
    d: u32,
    k: u32,
}

impl Locals {
    fn x(&self, j: u32) -> u32 {
        F64_BASE + j
    }
    fn z(&self, c: u32) -> u32 {
        F64_BASE + self.d + c
    }
    fn m(&self) -> u32 {
        F64_BASE + self.d + self.k
    }
    fn s(&self) -> u32 {
        self.m() + 1
    }
    fn t(&self) -> u32 {
        self.m() + 2
    }
    fn n_f64(&self) -> u32 {
        self.d + self.k + 3
    }
}

/// `f_exp2`: the vector `exp` when the model runs two rows at a time (see `simd.rs`).
/// `blocked`: trees walk [`trees::ROWS`] rows at a time (see `trees.rs`).
fn predict_fn(
    p: &Pipeline,
    layout: &DataLayout,
    f_exp: u32,
    f_exp2: Option<u32>,
    blocked: bool,
) -> Function {
    let d = p.n_features as u32;
    let n_out = p.n_outputs() as u64;
    let l = Locals {
        d,
        k: p.model.n_classes().unwrap_or(1) as u32,
    };
    let v = simd::V::new(&l, F64_BASE + l.n_f64());
    let w = trees::W::new(F64_BASE + l.n_f64());
    let mut f = match (f_exp2, blocked) {
        (Some(_), _) => Function::new([
            (N_I32, ValType::I32),
            (l.n_f64(), ValType::F64),
            (v.count(), ValType::V128),
        ]),
        (None, true) => Function::new([
            (N_I32, ValType::I32),
            (l.n_f64(), ValType::F64),
            (w.n_locals(), ValType::I32),
        ]),
        (None, false) => Function::new([(N_I32, ValType::I32), (l.n_f64(), ValType::F64)]),
    };

    f.instruction(&I::LocalGet(N_FEATURES))
        .instruction(&I::I32Const(d as i32))
        .instruction(&I::I32Ne);
    return_if(&mut f, Status::WrongFeatureCount);
    f.instruction(&I::LocalGet(N_ROWS))
        .instruction(&I::I32Const(0))
        .instruction(&I::I32LeS);
    return_if(&mut f, Status::BadRowCount);
    bounds_check(&mut f, IN_PTR, N_ROWS, u64::from(d) * 8);
    bounds_check(&mut f, OUT_PTR, N_ROWS, n_out * 8);

    f.instruction(&I::LocalGet(IN_PTR))
        .instruction(&I::LocalSet(INP));
    f.instruction(&I::LocalGet(OUT_PTR))
        .instruction(&I::LocalSet(OUTP));
    if blocked {
        // Blocks of rows, then the rest one at a time, through the same walk.
        for (rows, count) in [(trees::ROWS, I::I32ShrU), (1, I::I32And)] {
            f.instruction(&I::LocalGet(N_ROWS))
                .instruction(&I::I32Const(if rows == 1 {
                    trees::ROWS as i32 - 1
                } else {
                    trees::ROWS.trailing_zeros() as i32
                }))
                .instruction(&count)
                .instruction(&I::LocalTee(ROW))
                .instruction(&I::If(BlockType::Empty))
                .instruction(&I::Loop(BlockType::Empty));
            trees::emit_block(&mut f, p, layout, &l, &w, rows, n_out, f_exp);
            emit_advance(&mut f, rows * d * 8, rows as u64 * n_out * 8);
            f.instruction(&I::End) // loop
                .instruction(&I::End); // if
        }
        f.instruction(&I::I32Const(Status::Ok as i32))
            .instruction(&I::End);
        return f;
    }
    if let Some(f_exp2) = f_exp2 {
        // Pairs of rows first (ROW counts pairs down), then an odd last row in the scalar loop.
        f.instruction(&I::LocalGet(N_ROWS))
            .instruction(&I::I32Const(1))
            .instruction(&I::I32ShrU)
            .instruction(&I::LocalTee(ROW))
            .instruction(&I::If(BlockType::Empty))
            .instruction(&I::Loop(BlockType::Empty));
        simd::emit_pair(&mut f, p, &v, n_out, f_exp2, layout.x_addr);
        emit_advance(&mut f, 2 * d * 8, 2 * n_out * 8);
        f.instruction(&I::End) // loop
            .instruction(&I::End); // if
        f.instruction(&I::LocalGet(N_ROWS))
            .instruction(&I::I32Const(1))
            .instruction(&I::I32And)
            .instruction(&I::LocalTee(ROW))
            .instruction(&I::I32Eqz)
            .instruction(&I::If(BlockType::Empty))
            .instruction(&I::I32Const(Status::Ok as i32))
            .instruction(&I::Return)
            .instruction(&I::End);
    } else {
        f.instruction(&I::LocalGet(N_ROWS))
            .instruction(&I::LocalSet(ROW));
    }
    f.instruction(&I::Loop(BlockType::Empty));

    // Load (and scale) the row into x_j.
    for j in 0..d {
        f.instruction(&I::LocalGet(INP))
            .instruction(&I::F64Load(mem(u64::from(j) * 8)));
        if let Some(sc) = &p.scaler {
            f.instruction(&f64c(sc.mean[j as usize]))
                .instruction(&I::F64Sub)
                .instruction(&f64c(sc.scale[j as usize]))
                .instruction(&I::F64Div);
        }
        f.instruction(&I::LocalSet(l.x(j)));
    }

    match &p.model {
        Model::Linear { weights, intercept } => {
            f.instruction(&I::LocalGet(OUTP));
            emit_dot(&mut f, &l, *intercept, weights);
            canonicalize_top(&mut f, l.t());
            f.instruction(&I::F64Store(mem(0)));
        }
        Model::LogisticRegression {
            weights,
            intercepts,
        } => {
            for c in 0..l.k {
                emit_dot(&mut f, &l, intercepts[c as usize], &weights[c as usize]);
                f.instruction(&I::LocalSet(l.z(c)));
            }
            emit_softmax_outputs(&mut f, &l, f_exp, 0);
        }
        Model::GaussianNb {
            means,
            neg_half_inv_var,
            log_prior_norm,
        } => {
            for c in 0..l.k {
                let cu = c as usize;
                f.instruction(&f64c(log_prior_norm[cu]));
                for j in 0..d {
                    let ju = j as usize;
                    f.instruction(&I::LocalGet(l.x(j)))
                        .instruction(&f64c(means[cu][ju]))
                        .instruction(&I::F64Sub)
                        .instruction(&I::LocalTee(l.t()))
                        .instruction(&I::LocalGet(l.t()))
                        .instruction(&I::F64Mul)
                        .instruction(&f64c(neg_half_inv_var[cu][ju]))
                        .instruction(&I::F64Mul)
                        .instruction(&I::F64Add);
                }
                f.instruction(&I::LocalSet(l.z(c)));
            }
            emit_softmax_outputs(&mut f, &l, f_exp, 0);
        }
        Model::KMeans { centroids } => {
            for c in 0..l.k {
                f.instruction(&f64c(0.0));
                for j in 0..d {
                    f.instruction(&I::LocalGet(l.x(j)))
                        .instruction(&f64c(centroids[c as usize][j as usize]))
                        .instruction(&I::F64Sub)
                        .instruction(&I::LocalTee(l.t()))
                        .instruction(&I::LocalGet(l.t()))
                        .instruction(&I::F64Mul)
                        .instruction(&I::F64Add);
                }
                if c == 0 {
                    f.instruction(&I::LocalSet(l.m()))
                        .instruction(&I::I32Const(0))
                        .instruction(&I::LocalSet(BEST));
                } else {
                    f.instruction(&I::LocalTee(l.t()))
                        .instruction(&I::LocalGet(l.m()))
                        .instruction(&I::F64Lt)
                        .instruction(&I::If(BlockType::Empty))
                        .instruction(&I::LocalGet(l.t()))
                        .instruction(&I::LocalSet(l.m()))
                        .instruction(&I::I32Const(c as i32))
                        .instruction(&I::LocalSet(BEST))
                        .instruction(&I::End);
                }
            }
            f.instruction(&I::LocalGet(OUTP))
                .instruction(&I::LocalGet(BEST))
                .instruction(&I::F64ConvertI32S)
                .instruction(&I::F64Store(mem(0)));
        }
        Model::DecisionTree { .. } => {
            emit_store_row(&mut f, &l, layout);
            emit_walk(&mut f, layout, layout.roots[0]);
            // Copy the leaf's [class, probabilities...] to the output row.
            f.instruction(&I::LocalGet(NODE))
                .instruction(&I::I32Load(mem32(12)))
                .instruction(&I::LocalSet(FEAT));
            for i in 0..n_out {
                f.instruction(&I::LocalGet(OUTP))
                    .instruction(&I::LocalGet(FEAT))
                    .instruction(&I::F64Load(mem(i * 8)))
                    .instruction(&I::F64Store(mem(i * 8)));
            }
        }
        Model::RandomForest { trees, .. } => {
            emit_store_row(&mut f, &l, layout);
            for c in 0..l.k {
                f.instruction(&I::I32Const(0))
                    .instruction(&f64c(0.0))
                    .instruction(&I::F64Store(mem(u64::from(layout.votes_addr + 8 * c))));
            }
            for root in &layout.roots {
                emit_walk(&mut f, layout, *root);
                // votes[class] += 1
                f.instruction(&I::LocalGet(NODE))
                    .instruction(&I::I32Load(mem32(12)))
                    .instruction(&I::I32Const(3))
                    .instruction(&I::I32Shl)
                    .instruction(&I::LocalTee(FEAT))
                    .instruction(&I::LocalGet(FEAT))
                    .instruction(&I::F64Load(mem(u64::from(layout.votes_addr))))
                    .instruction(&f64c(1.0))
                    .instruction(&I::F64Add)
                    .instruction(&I::F64Store(mem(u64::from(layout.votes_addr))));
            }
            for c in 0..l.k {
                f.instruction(&I::I32Const(0))
                    .instruction(&I::F64Load(mem(u64::from(layout.votes_addr + 8 * c))))
                    .instruction(&I::LocalSet(l.z(c)));
            }
            emit_argmax(&mut f, &l);
            f.instruction(&I::LocalGet(OUTP))
                .instruction(&I::LocalGet(BEST))
                .instruction(&I::F64ConvertI32S)
                .instruction(&I::F64Store(mem(0)));
            let n = trees.len() as f64;
            for c in 0..l.k {
                f.instruction(&I::LocalGet(OUTP))
                    .instruction(&I::LocalGet(l.z(c)))
                    .instruction(&f64c(n))
                    .instruction(&I::F64Div)
                    .instruction(&I::F64Store(mem(8 * (1 + u64::from(c)))));
            }
        }
        Model::GradientBoosting {
            n_classes,
            baseline,
            ..
        } => {
            emit_store_row(&mut f, &l, layout);
            let first = emit_boost_init(&mut f, &l, *n_classes, baseline);
            for (t, root) in layout.roots.iter().enumerate() {
                emit_walk(&mut f, layout, *root);
                // z_s += the leaf's value
                let z = l.z(first + (t % baseline.len()) as u32);
                f.instruction(&I::LocalGet(z))
                    .instruction(&I::LocalGet(NODE))
                    .instruction(&I::F64Load(mem(16)))
                    .instruction(&I::F64Add)
                    .instruction(&I::LocalSet(z));
            }
            emit_boost_outputs(&mut f, &l, *n_classes, f_exp, 0);
        }
    }

    // Advance to the next row.
    f.instruction(&I::LocalGet(INP))
        .instruction(&I::I32Const((d * 8) as i32))
        .instruction(&I::I32Add)
        .instruction(&I::LocalSet(INP));
    f.instruction(&I::LocalGet(OUTP))
        .instruction(&I::I32Const((n_out * 8) as i32))
        .instruction(&I::I32Add)
        .instruction(&I::LocalSet(OUTP));
    f.instruction(&I::LocalGet(ROW))
        .instruction(&I::I32Const(1))
        .instruction(&I::I32Sub)
        .instruction(&I::LocalTee(ROW))
        .instruction(&I::BrIf(0));
    f.instruction(&I::End); // loop

    f.instruction(&I::I32Const(Status::Ok as i32))
        .instruction(&I::End);
    f
}

/// The end of a counted row loop: INP and OUTP move on by the given bytes, ROW counts down and
/// the loop repeats while it is not zero.
fn emit_advance(f: &mut Function, in_bytes: u32, out_bytes: u64) {
    f.instruction(&I::LocalGet(INP))
        .instruction(&I::I32Const(in_bytes as i32))
        .instruction(&I::I32Add)
        .instruction(&I::LocalSet(INP));
    f.instruction(&I::LocalGet(OUTP))
        .instruction(&I::I32Const(out_bytes as i32))
        .instruction(&I::I32Add)
        .instruction(&I::LocalSet(OUTP));
    f.instruction(&I::LocalGet(ROW))
        .instruction(&I::I32Const(1))
        .instruction(&I::I32Sub)
        .instruction(&I::LocalTee(ROW))
        .instruction(&I::BrIf(0));
}

fn mem32(offset: u64) -> MemArg {
    MemArg {
        offset,
        align: 2,
        target: MemArgTarget::Memory(0),
        ordering: None,
    }
}

/// Pushes `b + sum_j w_j * x_j`, left to right.
fn emit_dot(f: &mut Function, l: &Locals, b: f64, w: &[f64]) {
    f.instruction(&f64c(b));
    for j in 0..l.d {
        f.instruction(&f64c(w[j as usize]))
            .instruction(&I::LocalGet(l.x(j)))
            .instruction(&I::F64Mul)
            .instruction(&I::F64Add);
    }
}

/// `BEST, m = argmax z` by strict `>` from class 0.
fn emit_argmax(f: &mut Function, l: &Locals) {
    f.instruction(&I::I32Const(0))
        .instruction(&I::LocalSet(BEST));
    f.instruction(&I::LocalGet(l.z(0)))
        .instruction(&I::LocalSet(l.m()));
    for c in 1..l.k {
        f.instruction(&I::LocalGet(l.z(c)))
            .instruction(&I::LocalGet(l.m()))
            .instruction(&I::F64Gt)
            .instruction(&I::If(BlockType::Empty))
            .instruction(&I::LocalGet(l.z(c)))
            .instruction(&I::LocalSet(l.m()))
            .instruction(&I::I32Const(c as i32))
            .instruction(&I::LocalSet(BEST))
            .instruction(&I::End);
    }
}

/// Sets a boosted model's scores to its baseline (a binary model's logits are `[0, z_0]`);
/// returns the index of the first score among the z locals.
fn emit_boost_init(
    f: &mut Function,
    l: &Locals,
    n_classes: Option<usize>,
    baseline: &[f64],
) -> u32 {
    let first = u32::from(n_classes == Some(2));
    if first == 1 {
        f.instruction(&f64c(0.0)).instruction(&I::LocalSet(l.z(0)));
    }
    for (s, b) in baseline.iter().enumerate() {
        f.instruction(&f64c(*b))
            .instruction(&I::LocalSet(l.z(first + s as u32)));
    }
    first
}

/// Writes a boosted model's output row at OUTP + `out` from its scores in the z locals:
/// `[z_0]` for a regression, else as logistic regression's.
fn emit_boost_outputs(
    f: &mut Function,
    l: &Locals,
    n_classes: Option<usize>,
    f_exp: u32,
    out: u64,
) {
    match n_classes {
        None => {
            f.instruction(&I::LocalGet(OUTP))
                .instruction(&I::LocalGet(l.z(0)));
            canonicalize_top(f, l.t());
            f.instruction(&I::F64Store(mem(out)));
        }
        Some(_) => emit_softmax_outputs(f, l, f_exp, out),
    }
}

/// Writes `[argmax z, softmax(z)...]` (canonical NaN) to the output row at OUTP + `out`.
fn emit_softmax_outputs(f: &mut Function, l: &Locals, f_exp: u32, out: u64) {
    emit_argmax(f, l);
    // e_c = exp(z_c - m) kept in z_c; s = sum in class order.
    for c in 0..l.k {
        f.instruction(&I::LocalGet(l.z(c)))
            .instruction(&I::LocalGet(l.m()))
            .instruction(&I::F64Sub)
            .instruction(&I::Call(f_exp))
            .instruction(&I::LocalSet(l.z(c)));
    }
    f.instruction(&f64c(0.0)).instruction(&I::LocalSet(l.s()));
    for c in 0..l.k {
        f.instruction(&I::LocalGet(l.s()))
            .instruction(&I::LocalGet(l.z(c)))
            .instruction(&I::F64Add)
            .instruction(&I::LocalSet(l.s()));
    }
    f.instruction(&I::LocalGet(OUTP))
        .instruction(&I::LocalGet(BEST))
        .instruction(&I::F64ConvertI32S)
        .instruction(&I::F64Store(mem(out)));
    for c in 0..l.k {
        f.instruction(&I::LocalGet(OUTP))
            .instruction(&I::LocalGet(l.z(c)))
            .instruction(&I::LocalGet(l.s()))
            .instruction(&I::F64Div);
        canonicalize_top(f, l.t());
        f.instruction(&I::F64Store(mem(out + 8 * (1 + u64::from(c)))));
    }
}

/// Copies x_j into the scratch row so tree walks can index it.
fn emit_store_row(f: &mut Function, l: &Locals, layout: &DataLayout) {
    for j in 0..l.d {
        f.instruction(&I::I32Const(0))
            .instruction(&I::LocalGet(l.x(j)))
            .instruction(&I::F64Store(mem(u64::from(layout.x_addr + 8 * j))));
    }
}

/// Walks one tree from `root`; leaves NODE at the leaf's address. Branch-free per level:
/// `NODE = x[feature] < threshold ? left : right` (NaN goes right).
fn emit_walk(f: &mut Function, layout: &DataLayout, root: u32) {
    f.instruction(&I::I32Const(root as i32))
        .instruction(&I::LocalSet(NODE));
    f.instruction(&I::Block(BlockType::Empty))
        .instruction(&I::Loop(BlockType::Empty));
    f.instruction(&I::LocalGet(NODE))
        .instruction(&I::I32Load(mem32(0)))
        .instruction(&I::LocalTee(FEAT))
        .instruction(&I::I32Const(0))
        .instruction(&I::I32LtS)
        .instruction(&I::BrIf(1));
    f.instruction(&I::LocalGet(NODE))
        .instruction(&I::I32Load(mem32(4)))
        .instruction(&I::LocalGet(NODE))
        .instruction(&I::I32Load(mem32(8)))
        .instruction(&I::LocalGet(FEAT))
        .instruction(&I::I32Const(3))
        .instruction(&I::I32Shl)
        .instruction(&I::F64Load(mem(u64::from(layout.x_addr))))
        .instruction(&I::LocalGet(NODE))
        .instruction(&I::F64Load(mem(16)))
        .instruction(&I::F64Lt)
        .instruction(&I::Select)
        .instruction(&I::LocalSet(NODE))
        .instruction(&I::Br(0));
    f.instruction(&I::End).instruction(&I::End);
}

/// Replaces the f64 on top of the stack by the canonical NaN if it is a NaN (`t` is scratch).
fn canonicalize_top(f: &mut Function, t: u32) {
    f.instruction(&I::LocalTee(t))
        .instruction(&I::F64Const(Ieee64::new(CANONICAL_NAN_BITS)))
        .instruction(&I::LocalGet(t))
        .instruction(&I::LocalGet(t))
        .instruction(&I::F64Eq)
        .instruction(&I::Select);
}

/// `math::exp`, instruction for instruction.
fn exp_fn() -> Function {
    const X: u32 = 0;
    const K: u32 = 1;
    const R: u32 = 2;
    const P: u32 = 3;
    const KI: u32 = 4;
    const HALF: u32 = 5;
    let mut f = Function::new([(3, ValType::F64), (2, ValType::I64)]);
    let early = |f: &mut Function, cmp: I<'static>, bound: f64, result: I<'static>| {
        f.instruction(&I::LocalGet(X))
            .instruction(&f64c(bound))
            .instruction(&cmp)
            .instruction(&I::If(BlockType::Empty))
            .instruction(&result)
            .instruction(&I::Return)
            .instruction(&I::End);
    };
    f.instruction(&I::LocalGet(X))
        .instruction(&I::LocalGet(X))
        .instruction(&I::F64Ne)
        .instruction(&I::If(BlockType::Empty))
        .instruction(&I::F64Const(Ieee64::new(CANONICAL_NAN_BITS)))
        .instruction(&I::Return)
        .instruction(&I::End);
    early(&mut f, I::F64Gt, math::EXP_OVERFLOW, f64c(f64::INFINITY));
    early(&mut f, I::F64Lt, math::EXP_UNDERFLOW, f64c(0.0));

    f.instruction(&I::LocalGet(X))
        .instruction(&f64c(math::LOG2_E))
        .instruction(&I::F64Mul)
        .instruction(&I::F64Nearest)
        .instruction(&I::LocalSet(K));
    f.instruction(&I::LocalGet(X))
        .instruction(&I::LocalGet(K))
        .instruction(&f64c(math::LN2_HI))
        .instruction(&I::F64Mul)
        .instruction(&I::F64Sub)
        .instruction(&I::LocalGet(K))
        .instruction(&f64c(math::LN2_LO))
        .instruction(&I::F64Mul)
        .instruction(&I::F64Sub)
        .instruction(&I::LocalSet(R));
    f.instruction(&f64c(math::EXP_POLY[0]));
    for c in &math::EXP_POLY[1..] {
        f.instruction(&I::LocalGet(R))
            .instruction(&I::F64Mul)
            .instruction(&f64c(*c))
            .instruction(&I::F64Add);
    }
    f.instruction(&I::LocalSet(P));
    f.instruction(&I::LocalGet(K))
        .instruction(&I::I64TruncSatF64S)
        .instruction(&I::LocalTee(KI))
        .instruction(&I::I64Const(2))
        .instruction(&I::I64DivS)
        .instruction(&I::LocalSet(HALF));
    f.instruction(&I::LocalGet(P));
    f.instruction(&I::LocalGet(HALF));
    pow2_top(&mut f);
    f.instruction(&I::F64Mul);
    f.instruction(&I::LocalGet(KI))
        .instruction(&I::LocalGet(HALF))
        .instruction(&I::I64Sub);
    pow2_top(&mut f);
    f.instruction(&I::F64Mul).instruction(&I::End);
    f
}

/// Turns the i64 `k` on top of the stack into the f64 `2^k` (as `math::pow2`).
fn pow2_top(f: &mut Function) {
    f.instruction(&I::I64Const(1023))
        .instruction(&I::I64Add)
        .instruction(&I::I64Const(52))
        .instruction(&I::I64Shl)
        .instruction(&I::F64ReinterpretI64);
}
