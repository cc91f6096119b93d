//! The dense model kinds in WebAssembly SIMD (`simd128`, `f64x2`), two rows at a time.
//!
//! Lanes are rows: lane 0 holds row `i`, lane 1 row `i + 1`, so every lane performs exactly the
//! scalar sequence of IEEE operations of `reference.rs` (same operations, same order; sums over
//! features stay left to right). Only lane-wise `f64x2` add, sub, mul, div, comparisons,
//! `nearest` and `trunc` are used, plus bit selects: no relaxed SIMD, no fused multiply-add.
//! What SIMD changes is only how many rows one instruction serves, and that the classes of a
//! row are accumulated side by side (feature `j` updates every class before feature `j + 1`),
//! which keeps several independent chains in flight without reordering any one of them.
//!
//! An odd last row runs through the scalar body in `compiler.rs`.

use wasm_encoder::{Function, Instruction as I, MemArg, MemArgTarget, ValType};

use super::{Locals, INP, OUTP};
use crate::abi::CANONICAL_NAN_BITS;
use crate::math;
use crate::pipeline::{Model, Pipeline};

/// Classes accumulated side by side at most: beyond this many, the row's scaled features are
/// kept in locals and the classes run in groups of equal size (x86-64 has 16 vector registers:
/// the sums, a feature, a weight and a product fit).
const GROUP: usize = 12;

/// Features between the stores that keep the classes' sums side by side (see [`emit_pair`]).
const STEP: u32 = 8;

/// Whether the model kind has a two-row SIMD body (the trees are walked one row at a time).
pub(super) fn supports(model: &Model) -> bool {
    matches!(
        model,
        Model::Linear { .. }
            | Model::LogisticRegression { .. }
            | Model::GaussianNb { .. }
            | Model::KMeans { .. }
    )
}

/// The v128 locals of the pair body, after the scalar ones: `x_0..x_{d-1}` (the pair's scaled
/// features), `z_0..z_{k-1}`, then `m`, `s`, `t`, `best`, `mask`.
pub(super) struct V {
    base: u32,
    d: u32,
    k: u32,
}

impl V {
    pub(super) fn new(l: &Locals, first: u32) -> V {
        V {
            base: first,
            d: l.d,
            k: l.k,
        }
    }
    fn x(&self, j: u32) -> u32 {
        self.base + j
    }
    fn z(&self, c: u32) -> u32 {
        self.base + self.d + c
    }
    fn m(&self) -> u32 {
        self.base + self.d + self.k
    }
    fn s(&self) -> u32 {
        self.m() + 1
    }
    fn t(&self) -> u32 {
        self.m() + 2
    }
    fn best(&self) -> u32 {
        self.m() + 3
    }
    fn mask(&self) -> u32 {
        self.m() + 4
    }
    pub(super) fn count(&self) -> u32 {
        self.d + self.k + 5
    }
}

/// `v128.const` with `v` in both lanes.
fn splat(v: f64) -> I<'static> {
    splat_bits(v.to_bits())
}

fn splat_bits(bits: u64) -> I<'static> {
    let b = u128::from(bits);
    I::V128Const(((b << 64) | b) as i128)
}

fn mem64(offset: u64) -> MemArg {
    MemArg {
        offset,
        align: 3,
        target: MemArgTarget::Memory(0),
        ordering: None,
    }
}

/// Pushes `[row_i[j], row_{i+1}[j]]` (INP points at row `i`; rows are `d` f64 apart).
fn load_pair(f: &mut Function, d: u32, j: u32) {
    let at = u64::from(j) * 8;
    f.instruction(&I::LocalGet(INP))
        .instruction(&I::LocalGet(INP))
        .instruction(&I::V128Load64Zero(mem64(at)))
        .instruction(&I::V128Load64Lane {
            memarg: mem64(at + u64::from(d) * 8),
            lane: 1,
        });
}

/// `i8x16.shuffle` picking the low f64 of each operand, and the high one.
const LOW_LANES: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23];
const HIGH_LANES: [u8; 16] = [8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31];

/// Keeps features `j, j + 1` of row `i` in `t` and of row `i + 1` in `mask`, and pushes
/// `[row_i[j], row_{i+1}[j]]` (`[row_i[j+1], row_{i+1}[j+1]]` is the shuffle by `HIGH_LANES`).
fn load_two(f: &mut Function, d: u32, j: u32, v: &V) {
    let at = u64::from(j) * 8;
    f.instruction(&I::LocalGet(INP))
        .instruction(&I::V128Load(mem64(at)))
        .instruction(&I::LocalSet(v.t()))
        .instruction(&I::LocalGet(INP))
        .instruction(&I::V128Load(mem64(at + u64::from(d) * 8)))
        .instruction(&I::LocalSet(v.mask()))
        .instruction(&I::LocalGet(v.t()))
        .instruction(&I::LocalGet(v.mask()))
        .instruction(&I::I8x16Shuffle(LOW_LANES));
}

/// Writes v128 local `v` as output `i` of both rows (OUTP points at row `i`'s outputs).
fn store_pair(f: &mut Function, n_out: u64, i: u64, v: u32) {
    for lane in 0..2u8 {
        f.instruction(&I::LocalGet(OUTP))
            .instruction(&I::LocalGet(v))
            .instruction(&I::V128Store64Lane {
                memarg: mem64(8 * i + u64::from(lane) * n_out * 8),
                lane,
            });
    }
}

/// Replaces the f64x2 on top of the stack by the canonical NaN in every NaN lane.
fn canonicalize_top(f: &mut Function, t: u32) {
    f.instruction(&I::LocalSet(t))
        .instruction(&I::LocalGet(t))
        .instruction(&splat_bits(CANONICAL_NAN_BITS))
        .instruction(&I::LocalGet(t))
        .instruction(&I::LocalGet(t))
        .instruction(&I::F64x2Eq)
        .instruction(&I::V128Bitselect);
}

/// The body of the pair loop: reads rows `i` and `i + 1` at INP, writes their outputs at OUTP.
///
/// `sink`: 8 bytes of scratch memory. Every [`STEP`] features each class's running sum is
/// stored there (and never read): a store stays where it is in the code, so the sums are
/// computed in that order, class after class in steps of a few features. Without it cranelift
/// computes each class's whole sum before the next one (it places arithmetic where a result
/// is first needed, here the arg-max at the end), one long chain of dependent additions at a
/// time instead of several side by side.
pub(super) fn emit_pair(f: &mut Function, p: &Pipeline, v: &V, n_out: u64, f_exp2: u32, sink: u32) {
    let d = v.d;
    let k = v.k as usize;
    // Per class: its starting value and how feature j updates it.
    let init: Vec<f64> = match &p.model {
        Model::Linear { intercept, .. } => vec![*intercept],
        Model::LogisticRegression { intercepts, .. } => intercepts.clone(),
        Model::GaussianNb { log_prior_norm, .. } => log_prior_norm.clone(),
        Model::KMeans { centroids } => vec![0.0; centroids.len()],
        Model::DecisionTree { .. }
        | Model::RandomForest { .. }
        | Model::GradientBoosting { .. } => {
            unreachable!("supports() admits only the dense kinds")
        }
    };
    debug_assert_eq!(init.len(), k);
    let group_len = k.div_ceil(k.div_ceil(GROUP));
    let mut start = 0;
    while start < k {
        let group = start..(start + group_len).min(k);
        for c in group.clone() {
            f.instruction(&splat(init[c]))
                .instruction(&I::LocalSet(v.z(c as u32)));
        }
        for j in 0..d {
            let ju = j as usize;
            if start == 0 && j % 2 == 0 {
                // Features j and j + 1 of both rows: two 16-byte loads, two shuffles.
                let pair = j + 1 < d;
                if pair {
                    load_two(f, d, j, v);
                } else {
                    load_pair(f, d, j);
                }
                for i in if pair { j..j + 2 } else { j..j + 1 } {
                    if i > j {
                        f.instruction(&I::LocalGet(v.t()))
                            .instruction(&I::LocalGet(v.mask()))
                            .instruction(&I::I8x16Shuffle(HIGH_LANES));
                    }
                    if let Some(sc) = &p.scaler {
                        f.instruction(&splat(sc.mean[i as usize]))
                            .instruction(&I::F64x2Sub)
                            .instruction(&splat(sc.scale[i as usize]))
                            .instruction(&I::F64x2Div);
                    }
                    f.instruction(&I::LocalSet(v.x(i)));
                }
            }
            for c in group.clone() {
                let z = v.z(c as u32);
                f.instruction(&I::LocalGet(z));
                match &p.model {
                    // z + w * x (linear: one class)
                    Model::Linear { weights, .. } => {
                        f.instruction(&splat(weights[ju]))
                            .instruction(&I::LocalGet(v.x(j)))
                            .instruction(&I::F64x2Mul);
                    }
                    Model::LogisticRegression { weights, .. } => {
                        f.instruction(&splat(weights[c][ju]))
                            .instruction(&I::LocalGet(v.x(j)))
                            .instruction(&I::F64x2Mul);
                    }
                    // z + t * t * nhiv, t = x - mean
                    Model::GaussianNb {
                        means,
                        neg_half_inv_var,
                        ..
                    } => {
                        f.instruction(&I::LocalGet(v.x(j)))
                            .instruction(&splat(means[c][ju]))
                            .instruction(&I::F64x2Sub)
                            .instruction(&I::LocalTee(v.t()))
                            .instruction(&I::LocalGet(v.t()))
                            .instruction(&I::F64x2Mul)
                            .instruction(&splat(neg_half_inv_var[c][ju]))
                            .instruction(&I::F64x2Mul);
                    }
                    // z + t * t, t = x - centroid
                    Model::KMeans { centroids } => {
                        f.instruction(&I::LocalGet(v.x(j)))
                            .instruction(&splat(centroids[c][ju]))
                            .instruction(&I::F64x2Sub)
                            .instruction(&I::LocalTee(v.t()))
                            .instruction(&I::LocalGet(v.t()))
                            .instruction(&I::F64x2Mul);
                    }
                    Model::DecisionTree { .. }
                    | Model::RandomForest { .. }
                    | Model::GradientBoosting { .. } => unreachable!(),
                }
                f.instruction(&I::F64x2Add).instruction(&I::LocalSet(z));
            }
            if (j + 1) % STEP == 0 && j + 1 < d && group.len() > 1 {
                for c in group.clone() {
                    f.instruction(&I::I32Const(0))
                        .instruction(&I::LocalGet(v.z(c as u32)))
                        .instruction(&I::V128Store64Lane {
                            memarg: mem64(u64::from(sink)),
                            lane: 0,
                        });
                }
            }
        }
        start = group.end;
    }

    match &p.model {
        Model::Linear { .. } => {
            f.instruction(&I::LocalGet(v.z(0)));
            canonicalize_top(f, v.t());
            f.instruction(&I::LocalSet(v.t()));
            store_pair(f, n_out, 0, v.t());
        }
        Model::LogisticRegression { .. } | Model::GaussianNb { .. } => {
            emit_softmax_outputs(f, v, n_out, f_exp2);
        }
        Model::KMeans { .. } => {
            // First class with the smallest distance: `c == 0 || dist < min`.
            emit_arg_best(f, v, I::F64x2Lt);
            store_pair(f, n_out, 0, v.best());
        }
        Model::DecisionTree { .. }
        | Model::RandomForest { .. }
        | Model::GradientBoosting { .. } => unreachable!(),
    }
}

/// `best, m` = the first class whose z beats every earlier one by `cmp` (strict `>` for
/// arg-max, strict `<` for arg-min; NaN never wins), lane by lane. `best` holds class indices
/// as f64, as the output row does.
fn emit_arg_best(f: &mut Function, v: &V, cmp: I<'static>) {
    f.instruction(&I::LocalGet(v.z(0)))
        .instruction(&I::LocalSet(v.m()))
        .instruction(&splat(0.0))
        .instruction(&I::LocalSet(v.best()));
    for c in 1..v.k {
        f.instruction(&I::LocalGet(v.z(c)))
            .instruction(&I::LocalGet(v.m()))
            .instruction(&cmp)
            .instruction(&I::LocalSet(v.mask()));
        f.instruction(&I::LocalGet(v.z(c)))
            .instruction(&I::LocalGet(v.m()))
            .instruction(&I::LocalGet(v.mask()))
            .instruction(&I::V128Bitselect)
            .instruction(&I::LocalSet(v.m()));
        f.instruction(&splat(f64::from(c)))
            .instruction(&I::LocalGet(v.best()))
            .instruction(&I::LocalGet(v.mask()))
            .instruction(&I::V128Bitselect)
            .instruction(&I::LocalSet(v.best()));
    }
}

/// Writes `[argmax z, softmax(z)...]` (canonical NaN) for both rows.
fn emit_softmax_outputs(f: &mut Function, v: &V, n_out: u64, f_exp2: u32) {
    emit_arg_best(f, v, I::F64x2Gt);
    for c in 0..v.k {
        f.instruction(&I::LocalGet(v.z(c)))
            .instruction(&I::LocalGet(v.m()))
            .instruction(&I::F64x2Sub)
            .instruction(&I::Call(f_exp2))
            .instruction(&I::LocalSet(v.z(c)));
    }
    f.instruction(&splat(0.0)).instruction(&I::LocalSet(v.s()));
    for c in 0..v.k {
        f.instruction(&I::LocalGet(v.s()))
            .instruction(&I::LocalGet(v.z(c)))
            .instruction(&I::F64x2Add)
            .instruction(&I::LocalSet(v.s()));
    }
    store_pair(f, n_out, 0, v.best());
    for c in 0..v.k {
        f.instruction(&I::LocalGet(v.z(c)))
            .instruction(&I::LocalGet(v.s()))
            .instruction(&I::F64x2Div);
        canonicalize_top(f, v.t());
        f.instruction(&I::LocalSet(v.t()));
        store_pair(f, n_out, 1 + u64::from(c), v.t());
    }
}

/// `math::exp` on both lanes: `(v128) -> v128`. In-range lanes take the scalar sequence of
/// operations; NaN, overflow and underflow lanes are then selected as `math::exp` returns them.
/// `ki / 2` (i64, truncating) is `trunc(k * 0.5)` here (exact for the integer-valued `k`), and
/// `2^n` is built from `n + 1023` placed in the exponent field through `2^52`.
pub(super) fn exp2_fn() -> Function {
    const X: u32 = 0;
    const K: u32 = 1;
    const R: u32 = 2;
    const P: u32 = 3;
    const HALF: u32 = 4;
    let mut f = Function::new([(4, ValType::V128)]);
    f.instruction(&I::LocalGet(X))
        .instruction(&splat(math::LOG2_E))
        .instruction(&I::F64x2Mul)
        .instruction(&I::F64x2Nearest)
        .instruction(&I::LocalSet(K));
    f.instruction(&I::LocalGet(X))
        .instruction(&I::LocalGet(K))
        .instruction(&splat(math::LN2_HI))
        .instruction(&I::F64x2Mul)
        .instruction(&I::F64x2Sub)
        .instruction(&I::LocalGet(K))
        .instruction(&splat(math::LN2_LO))
        .instruction(&I::F64x2Mul)
        .instruction(&I::F64x2Sub)
        .instruction(&I::LocalSet(R));
    f.instruction(&splat(math::EXP_POLY[0]));
    for c in &math::EXP_POLY[1..] {
        f.instruction(&I::LocalGet(R))
            .instruction(&I::F64x2Mul)
            .instruction(&splat(*c))
            .instruction(&I::F64x2Add);
    }
    f.instruction(&I::LocalSet(P));
    f.instruction(&I::LocalGet(K))
        .instruction(&splat(0.5))
        .instruction(&I::F64x2Mul)
        .instruction(&I::F64x2Trunc)
        .instruction(&I::LocalSet(HALF));
    f.instruction(&I::LocalGet(P))
        .instruction(&I::LocalGet(HALF));
    pow2_top(&mut f);
    f.instruction(&I::F64x2Mul)
        .instruction(&I::LocalGet(K))
        .instruction(&I::LocalGet(HALF))
        .instruction(&I::F64x2Sub);
    pow2_top(&mut f);
    f.instruction(&I::F64x2Mul);
    // The early returns of `math::exp`, as selects (the conditions exclude each other).
    f.instruction(&I::LocalSet(P))
        .instruction(&splat(0.0))
        .instruction(&I::LocalGet(P))
        .instruction(&I::LocalGet(X))
        .instruction(&splat(math::EXP_UNDERFLOW))
        .instruction(&I::F64x2Lt)
        .instruction(&I::V128Bitselect);
    f.instruction(&I::LocalSet(P))
        .instruction(&splat(f64::INFINITY))
        .instruction(&I::LocalGet(P))
        .instruction(&I::LocalGet(X))
        .instruction(&splat(math::EXP_OVERFLOW))
        .instruction(&I::F64x2Gt)
        .instruction(&I::V128Bitselect);
    f.instruction(&I::LocalSet(P))
        .instruction(&I::LocalGet(P))
        .instruction(&splat_bits(CANONICAL_NAN_BITS))
        .instruction(&I::LocalGet(X))
        .instruction(&I::LocalGet(X))
        .instruction(&I::F64x2Eq)
        .instruction(&I::V128Bitselect)
        .instruction(&I::End);
    f
}

/// Turns the integer-valued f64x2 `n` (-1022 <= n <= 1023 in the lanes that matter) on top of
/// the stack into `2^n`: `n + 1023 + 2^52` holds `n + 1023` in its low mantissa bits (every
/// step exact), which a shift by 52 moves into the exponent field (the rest shifts out).
fn pow2_top(f: &mut Function) {
    f.instruction(&splat(1023.0))
        .instruction(&I::F64x2Add)
        .instruction(&splat(4_503_599_627_370_496.0)) // 2^52
        .instruction(&I::F64x2Add)
        .instruction(&I::I32Const(52))
        .instruction(&I::I64x2Shl);
}
