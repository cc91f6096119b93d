//! Math that modules carry inside themselves, in its reference (Rust) form.
//!
//! The compiler emits exactly these operations, in exactly this order, as wasm instructions;
//! IEEE-754 add/mul/sub/div and `nearest` are deterministic, so the module and this code agree
//! to the bit in every runtime. Do not "simplify" an expression here without changing the
//! emitter in `compiler.rs` the same way (the property tests will catch a mismatch).

// `acc = acc + x` spells out the operation order the emitter mirrors; keep it explicit.
#![allow(clippy::assign_op_pattern)]

use crate::abi::CANONICAL_NAN_BITS;

pub const LOG2_E: f64 = std::f64::consts::LOG2_E;
/// ln 2 split into a high part with trailing zero bits and the remainder (Cody-Waite).
pub const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
pub const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
/// Above this `exp` overflows to +inf; below `EXP_UNDERFLOW` it is 0.
pub const EXP_OVERFLOW: f64 = 709.782_712_893_384;
pub const EXP_UNDERFLOW: f64 = -745.133_219_101_941_1;

/// Taylor coefficients 1/k! for k = 13 down to 0, in Horner order. On |r| <= ln2/2 the
/// truncation error is below 2^-60 relative.
pub const EXP_POLY: [f64; 14] = [
    1.0 / 6_227_020_800.0,
    1.0 / 479_001_600.0,
    1.0 / 39_916_800.0,
    1.0 / 3_628_800.0,
    1.0 / 362_880.0,
    1.0 / 40_320.0,
    1.0 / 5_040.0,
    1.0 / 720.0,
    1.0 / 120.0,
    1.0 / 24.0,
    1.0 / 6.0,
    0.5,
    1.0,
    1.0,
];

pub fn canonical_nan() -> f64 {
    f64::from_bits(CANONICAL_NAN_BITS)
}

/// NaN of any sign or payload becomes the canonical NaN; everything else passes through.
#[inline]
pub fn canonicalize(v: f64) -> f64 {
    if v.is_nan() {
        canonical_nan()
    } else {
        v
    }
}

/// `e^x`, computed the way modules compute it.
#[inline]
pub fn exp(x: f64) -> f64 {
    if x.is_nan() {
        return canonical_nan();
    }
    if x > EXP_OVERFLOW {
        return f64::INFINITY;
    }
    if x < EXP_UNDERFLOW {
        return 0.0;
    }
    let k = (x * LOG2_E).round_ties_even();
    let r = (x - k * LN2_HI) - k * LN2_LO;
    let mut p = EXP_POLY[0];
    for c in &EXP_POLY[1..] {
        p = p * r + c;
    }
    // 2^k as two normal factors, so results near the subnormal and overflow edges are right.
    let ki = k as i64;
    let half = ki / 2;
    p * pow2(half) * pow2(ki - half)
}

/// `2^k` for -1022 <= k <= 1023, built from its bit pattern.
#[inline]
pub fn pow2(k: i64) -> f64 {
    f64::from_bits(((k + 1023) as u64) << 52)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_accurate_across_the_range() {
        let mut x = -745.0;
        while x < 709.0 {
            let got = exp(x);
            let want = x.exp();
            let rel = ((got - want) / want).abs();
            assert!(
                rel < 4e-16 || (want < 1e-300 && (got - want).abs() < 1e-320),
                "exp({x}) = {got}, libm {want}"
            );
            x += 0.37;
        }
    }

    #[test]
    fn exp_edges() {
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(800.0), f64::INFINITY);
        assert_eq!(exp(f64::INFINITY), f64::INFINITY);
        assert_eq!(exp(f64::NEG_INFINITY), 0.0);
        assert_eq!(exp(-800.0), 0.0);
        assert_eq!(exp(f64::NAN).to_bits(), CANONICAL_NAN_BITS);
        assert_eq!(exp(-f64::NAN).to_bits(), CANONICAL_NAN_BITS);
        assert!(exp(-740.0) > 0.0, "subnormal results survive");
    }
}
