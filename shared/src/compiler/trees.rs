//! Trees and forests walked [`ROWS`] rows at a time (SIMD modules; scalar modules walk one).
//!
//! A walk is a chain of dependent loads (node, then the row's feature, then the child), so one
//! row at a time leaves the CPU waiting on memory latency. Here each level advances [`ROWS`]
//! rows, whose chains are independent, and every tree runs a fixed number of levels (its
//! deepest leaf's): leaves point both children at themselves, so a row that reached its leaf
//! stays there and no branch depends on the data. Comparisons are the scalar ones
//! (`x[feature] < threshold` goes left, NaN right), votes are counted in tree order and the
//! outputs computed as `reference.rs` does, so outputs are the same bits.
//!
//! Boosted trees add their leaf values to per-row scores in tree order, then the outputs are
//! computed as in scalar modules.
//!
//! Rows left over after the last whole block (fewer than [`ROWS`]) run the same code one at a
//! time.

use wasm_encoder::{BlockType, Function, Instruction as I};

use super::{
    emit_argmax, emit_boost_outputs, f64c, mem, mem32, DataLayout, Locals, FEAT, INP, OUTP,
};
use crate::pipeline::{Model, Pipeline};

/// Rows walked side by side.
pub(super) const ROWS: u32 = 4;

pub(super) fn supports(model: &Model) -> bool {
    matches!(
        model,
        Model::DecisionTree { .. } | Model::RandomForest { .. } | Model::GradientBoosting { .. }
    )
}

/// The i32 locals of the walk, after the others: the node of each row, the rows' feature
/// base, the level counter.
pub(super) struct W {
    base: u32,
}

impl W {
    pub(super) fn new(first: u32) -> W {
        W { base: first }
    }
    fn node(&self, r: u32) -> u32 {
        self.base + r
    }
    fn xb(&self) -> u32 {
        self.base + ROWS
    }
    fn count(&self) -> u32 {
        self.base + ROWS + 1
    }
    pub(super) fn n_locals(&self) -> u32 {
        ROWS + 2
    }
}

/// Predicts `rows` consecutive rows at INP, writing their outputs at OUTP.
#[allow(clippy::too_many_arguments)]
pub(super) fn emit_block(
    f: &mut Function,
    p: &Pipeline,
    layout: &DataLayout,
    l: &Locals,
    w: &W,
    rows: u32,
    n_out: u64,
    f_exp: u32,
) {
    let d = p.n_features as u32;
    let row_bytes = u64::from(d) * 8;
    // Where row r's (scaled) features are: XB + r * d * 8.
    match &p.scaler {
        Some(sc) => {
            for r in 0..rows {
                for j in 0..d {
                    let at = u64::from(r) * row_bytes + u64::from(j) * 8;
                    f.instruction(&I::I32Const(0))
                        .instruction(&I::LocalGet(INP))
                        .instruction(&I::F64Load(mem(at)))
                        .instruction(&f64c(sc.mean[j as usize]))
                        .instruction(&I::F64Sub)
                        .instruction(&f64c(sc.scale[j as usize]))
                        .instruction(&I::F64Div)
                        .instruction(&I::F64Store(mem(u64::from(layout.x_addr) + at)));
                }
            }
            f.instruction(&I::I32Const(0))
                .instruction(&I::LocalSet(w.xb()));
            // XB is 0: the loads below address the scratch rows at x_addr by offset.
        }
        None => {
            f.instruction(&I::LocalGet(INP))
                .instruction(&I::LocalSet(w.xb()));
        }
    }
    let x_offset = |r: u32| -> u64 {
        let base = if p.scaler.is_some() {
            u64::from(layout.x_addr)
        } else {
            0
        };
        base + u64::from(r) * row_bytes
    };

    let k = l.k;
    let votes = |r: u32| u64::from(layout.votes_addr) + u64::from(r * k) * 8;
    if matches!(p.model, Model::RandomForest { .. }) {
        for r in 0..rows {
            for c in 0..k {
                f.instruction(&I::I32Const(0))
                    .instruction(&f64c(0.0))
                    .instruction(&I::F64Store(mem(votes(r) + u64::from(c) * 8)));
            }
        }
    }
    // Boosting: each row's scores start at the baseline (kept in memory beside the votes).
    let boost = match &p.model {
        Model::GradientBoosting {
            n_classes,
            baseline,
            ..
        } => {
            let first = u32::from(*n_classes == Some(2));
            let init = (first == 1)
                .then_some(0.0)
                .into_iter()
                .chain(baseline.iter().copied());
            for r in 0..rows {
                for (c, v) in init.clone().enumerate() {
                    f.instruction(&I::I32Const(0))
                        .instruction(&f64c(v))
                        .instruction(&I::F64Store(mem(votes(r) + c as u64 * 8)));
                }
            }
            Some((first, baseline.len()))
        }
        _ => None,
    };

    for (t, (root, depth)) in layout.roots.iter().zip(&layout.depths).enumerate() {
        for r in 0..rows {
            f.instruction(&I::I32Const(*root as i32))
                .instruction(&I::LocalSet(w.node(r)));
        }
        if *depth > 0 {
            f.instruction(&I::I32Const(*depth as i32))
                .instruction(&I::LocalSet(w.count()))
                .instruction(&I::Loop(BlockType::Empty));
            for r in 0..rows {
                // node = x[feature] < threshold ? left : right
                f.instruction(&I::LocalGet(w.node(r)))
                    .instruction(&I::I32Load(mem32(4)))
                    .instruction(&I::LocalGet(w.node(r)))
                    .instruction(&I::I32Load(mem32(8)))
                    .instruction(&I::LocalGet(w.xb()))
                    .instruction(&I::LocalGet(w.node(r)))
                    .instruction(&I::I32Load(mem32(0)))
                    .instruction(&I::I32Add)
                    .instruction(&I::F64Load(mem(x_offset(r))))
                    .instruction(&I::LocalGet(w.node(r)))
                    .instruction(&I::F64Load(mem(16)))
                    .instruction(&I::F64Lt)
                    .instruction(&I::Select)
                    .instruction(&I::LocalSet(w.node(r)));
            }
            f.instruction(&I::LocalGet(w.count()))
                .instruction(&I::I32Const(1))
                .instruction(&I::I32Sub)
                .instruction(&I::LocalTee(w.count()))
                .instruction(&I::BrIf(0))
                .instruction(&I::End);
        }
        if matches!(p.model, Model::RandomForest { .. }) {
            for r in 0..rows {
                // votes[r][class] += 1 (the leaf holds 8 * class)
                f.instruction(&I::LocalGet(w.node(r)))
                    .instruction(&I::I32Load(mem32(12)))
                    .instruction(&I::LocalTee(FEAT))
                    .instruction(&I::LocalGet(FEAT))
                    .instruction(&I::F64Load(mem(votes(r))))
                    .instruction(&f64c(1.0))
                    .instruction(&I::F64Add)
                    .instruction(&I::F64Store(mem(votes(r))));
            }
        }
        if let Some((first, scores)) = boost {
            // score[r][s] += the leaf's value (in its threshold)
            let at = u64::from(first + (t % scores) as u32) * 8;
            for r in 0..rows {
                f.instruction(&I::I32Const(0))
                    .instruction(&I::I32Const(0))
                    .instruction(&I::F64Load(mem(votes(r) + at)))
                    .instruction(&I::LocalGet(w.node(r)))
                    .instruction(&I::F64Load(mem(16)))
                    .instruction(&I::F64Add)
                    .instruction(&I::F64Store(mem(votes(r) + at)));
            }
        }
    }

    match &p.model {
        Model::DecisionTree { .. } => {
            // Copy each leaf's [class, probabilities...] to its output row.
            for r in 0..rows {
                f.instruction(&I::LocalGet(w.node(r)))
                    .instruction(&I::I32Load(mem32(12)))
                    .instruction(&I::LocalSet(FEAT));
                for i in 0..n_out {
                    f.instruction(&I::LocalGet(OUTP))
                        .instruction(&I::LocalGet(FEAT))
                        .instruction(&I::F64Load(mem(i * 8)))
                        .instruction(&I::F64Store(mem(u64::from(r) * n_out * 8 + i * 8)));
                }
            }
        }
        Model::RandomForest { trees, .. } => {
            let n = trees.len() as f64;
            for r in 0..rows {
                for c in 0..k {
                    f.instruction(&I::I32Const(0))
                        .instruction(&I::F64Load(mem(votes(r) + u64::from(c) * 8)))
                        .instruction(&I::LocalSet(l.z(c)));
                }
                emit_argmax(f, l);
                let out = u64::from(r) * n_out * 8;
                f.instruction(&I::LocalGet(OUTP))
                    .instruction(&I::LocalGet(super::BEST))
                    .instruction(&I::F64ConvertI32S)
                    .instruction(&I::F64Store(mem(out)));
                for c in 0..k {
                    f.instruction(&I::LocalGet(OUTP))
                        .instruction(&I::LocalGet(l.z(c)))
                        .instruction(&f64c(n))
                        .instruction(&I::F64Div)
                        .instruction(&I::F64Store(mem(out + 8 * (1 + u64::from(c)))));
                }
            }
        }
        Model::GradientBoosting { n_classes, .. } => {
            for r in 0..rows {
                for c in 0..k {
                    f.instruction(&I::I32Const(0))
                        .instruction(&I::F64Load(mem(votes(r) + u64::from(c) * 8)))
                        .instruction(&I::LocalSet(l.z(c)));
                }
                emit_boost_outputs(f, l, *n_classes, f_exp, u64::from(r) * n_out * 8);
            }
        }
        _ => unreachable!("supports() admits only the tree kinds"),
    }
}
