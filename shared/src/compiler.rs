//! The model compiler: a validated [`Pipeline`] becomes one self-contained WebAssembly module.
//!
//! The module imports nothing, exports the ABI in `abi.rs`, computes exactly what
//! `reference.rs` computes (same operations, same order) and carries its card, profile and
//! conformance vectors as custom sections. Output is a pure function of the input: no
//! timestamps, no random ids, deterministic section order, so the same inputs give the same
//! bytes and the same hash.

use std::borrow::Cow;

use wasm_encoder::{
    BlockType, CodeSection, CustomSection, ExportKind, ExportSection, Function, FunctionSection,
    Ieee64, Instruction as I, MemArg, MemArgTarget, MemorySection, MemoryType, Module, TypeSection,
    ValType,
};

use crate::abi::{self, Status, ABI_VERSION, CANONICAL_NAN_BITS};
use crate::math;
use crate::module::{encode_section, Conformance, Hex64, ModelCard};
use crate::pipeline::{Model, Pipeline, PipelineError};
use crate::profile::Profile;
use crate::reference;

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

/// Compiles a pipeline into module bytes.
pub fn compile(input: &CompileInput<'_>) -> Result<Vec<u8>, CompileError> {
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
    if input.conformance_rows.len() % d != 0 {
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

    let mut module = Module::new();

    let mut types = TypeSection::new();
    types.ty().function([], [ValType::I32]); // 0: () -> i32
    types.ty().function([ValType::I32; 4], [ValType::I32]); // 1: predict
    types.ty().function([ValType::F64], [ValType::F64]); // 2: exp
    module.section(&types);

    const F_ABI: u32 = 0;
    const F_N_FEATURES: u32 = 1;
    const F_N_OUTPUTS: u32 = 2;
    const F_HEAP_BASE: u32 = 3;
    const F_PREDICT: u32 = 4;
    const F_EXP: u32 = 5;
    let mut funcs = FunctionSection::new();
    for ty in [0, 0, 0, 0, 1, 2] {
        funcs.function(ty);
    }
    module.section(&funcs);

    let mut memories = MemorySection::new();
    memories.memory(MemoryType {
        minimum: 1,
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
    code.function(&const_i32(0));
    code.function(&predict_fn(p, F_EXP));
    code.function(&exp_fn());
    module.section(&code);

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

fn predict_fn(p: &Pipeline, f_exp: u32) -> Function {
    let d = p.n_features as u32;
    let n_out = p.n_outputs() as u64;
    // Params: 0 in_ptr, 1 n_rows, 2 n_features, 3 out_ptr.
    const IN_PTR: u32 = 0;
    const N_ROWS: u32 = 1;
    const N_FEATURES: u32 = 2;
    const OUT_PTR: u32 = 3;
    // i32 locals.
    const INP: u32 = 4;
    const OUTP: u32 = 5;
    const ROW: u32 = 6;
    const BEST: u32 = 7;
    // f64 locals: x_0..x_{d-1}, then model-specific.
    let x = |j: u32| 8 + j;
    let Model::LogisticRegression {
        weights,
        intercepts,
    } = &p.model;
    let k = intercepts.len() as u32;
    let z = |c: u32| 8 + d + c;
    let m = 8 + d + k;
    let s = m + 1;
    let t = m + 2;
    let n_f64 = d + k + 3;

    let mut f = Function::new([(4, ValType::I32), (n_f64, ValType::F64)]);

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
    f.instruction(&I::LocalGet(N_ROWS))
        .instruction(&I::LocalSet(ROW));
    f.instruction(&I::Loop(BlockType::Empty));

    // Load (and scale) the row.
    for j in 0..d {
        f.instruction(&I::LocalGet(INP))
            .instruction(&I::F64Load(mem(u64::from(j) * 8)));
        if let Some(sc) = &p.scaler {
            f.instruction(&f64c(sc.mean[j as usize]))
                .instruction(&I::F64Sub)
                .instruction(&f64c(sc.scale[j as usize]))
                .instruction(&I::F64Div);
        }
        f.instruction(&I::LocalSet(x(j)));
    }

    // Logits: z_c = b_c; z_c = z_c + w_cj * x_j for j in order.
    for c in 0..k {
        f.instruction(&f64c(intercepts[c as usize]));
        for j in 0..d {
            f.instruction(&f64c(weights[c as usize][j as usize]))
                .instruction(&I::LocalGet(x(j)))
                .instruction(&I::F64Mul)
                .instruction(&I::F64Add);
        }
        f.instruction(&I::LocalSet(z(c)));
    }

    // Argmax by strict `>` from class 0.
    f.instruction(&I::I32Const(0))
        .instruction(&I::LocalSet(BEST));
    f.instruction(&I::LocalGet(z(0)))
        .instruction(&I::LocalSet(m));
    for c in 1..k {
        f.instruction(&I::LocalGet(z(c)))
            .instruction(&I::LocalGet(m))
            .instruction(&I::F64Gt)
            .instruction(&I::If(BlockType::Empty))
            .instruction(&I::LocalGet(z(c)))
            .instruction(&I::LocalSet(m))
            .instruction(&I::I32Const(c as i32))
            .instruction(&I::LocalSet(BEST))
            .instruction(&I::End);
    }

    // Softmax: e_c = exp(z_c - m) kept in z_c; s = sum in class order.
    for c in 0..k {
        f.instruction(&I::LocalGet(z(c)))
            .instruction(&I::LocalGet(m))
            .instruction(&I::F64Sub)
            .instruction(&I::Call(f_exp))
            .instruction(&I::LocalSet(z(c)));
    }
    f.instruction(&f64c(0.0)).instruction(&I::LocalSet(s));
    for c in 0..k {
        f.instruction(&I::LocalGet(s))
            .instruction(&I::LocalGet(z(c)))
            .instruction(&I::F64Add)
            .instruction(&I::LocalSet(s));
    }

    // Outputs: class index, then canonicalized probabilities.
    f.instruction(&I::LocalGet(OUTP))
        .instruction(&I::LocalGet(BEST))
        .instruction(&I::F64ConvertI32S)
        .instruction(&I::F64Store(mem(0)));
    for c in 0..k {
        f.instruction(&I::LocalGet(OUTP))
            .instruction(&I::LocalGet(z(c)))
            .instruction(&I::LocalGet(s))
            .instruction(&I::F64Div);
        canonicalize_top(&mut f, t);
        f.instruction(&I::F64Store(mem(8 * (1 + u64::from(c)))));
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
