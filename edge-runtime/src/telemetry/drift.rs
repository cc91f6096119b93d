//! Drift statistics over the profile's 12 bins, and DDM over a stream of labeled predictions.
//!
//! Defaults follow `PRODUCT.md`: PSI with empty bins smoothed to 1e-4 (0.1 warn, 0.25 alert),
//! Jensen-Shannon distance (warn at 0.1), DDM with a 30-sample warm-up (2 sigma warning,
//! 3 sigma drift).

use wasmops_shared::wire::DriftLevel;

/// Proportion every empty bin is raised to before PSI takes logarithms.
pub const PSI_SMOOTHING: f64 = 1e-4;
pub const PSI_WARN: f64 = 0.1;
pub const PSI_ALERT: f64 = 0.25;
pub const JS_WARN: f64 = 0.1;
pub const DDM_WARM_UP: u64 = 30;

/// Population stability index of `actual` against `expected` (both raw counts, same bins).
/// `None` when either side is empty.
pub fn psi(expected: &[u64], actual: &[u64]) -> Option<f64> {
    let (e, a) = (proportions(expected)?, proportions(actual)?);
    Some(
        e.iter()
            .zip(&a)
            .map(|(e, a)| {
                let (e, a) = (e.max(PSI_SMOOTHING), a.max(PSI_SMOOTHING));
                (a - e) * (a / e).ln()
            })
            .sum(),
    )
}

/// Jensen-Shannon distance (square root of the divergence, base 2): 0 for equal
/// distributions, 1 for disjoint ones. `None` when either side is empty.
pub fn js_distance(expected: &[u64], actual: &[u64]) -> Option<f64> {
    let (p, q) = (proportions(expected)?, proportions(actual)?);
    let kl = |x: f64, m: f64| if x > 0.0 { x * (x / m).log2() } else { 0.0 };
    let jsd: f64 = p
        .iter()
        .zip(&q)
        .map(|(p, q)| {
            let m = (p + q) / 2.0;
            (kl(*p, m) + kl(*q, m)) / 2.0
        })
        .sum();
    Some(jsd.clamp(0.0, 1.0).sqrt())
}

/// `ok`, `warn` or `alert` for one feature in one window.
pub fn level(psi: f64, js: f64) -> DriftLevel {
    if psi >= PSI_ALERT {
        DriftLevel::Alert
    } else if psi >= PSI_WARN || js >= JS_WARN {
        DriftLevel::Warn
    } else {
        DriftLevel::Ok
    }
}

fn proportions(counts: &[u64]) -> Option<Vec<f64>> {
    let n: u64 = counts.iter().sum();
    (n > 0).then(|| counts.iter().map(|c| *c as f64 / n as f64).collect())
}

/// Drift Detection Method (Gama et al. 2004) over a sequence of prediction errors.
#[derive(Debug, Clone, Default)]
pub struct Ddm {
    n: u64,
    errors: u64,
    min_p_plus_s: f64,
    min_p: f64,
    min_s: f64,
    state: DdmState,
}

/// DDM's state: the wire's words (`warming_up`, `stable`, `warning`, `drift`).
pub use wasmops_shared::wire::ConceptState as DdmState;

impl Ddm {
    pub fn push(&mut self, error: bool) -> DdmState {
        self.n += 1;
        self.errors += u64::from(error);
        // The error rate is estimated with one pseudo-error and one pseudo-success (Laplace):
        // with the plain rate, a model that made no error in its first samples has s_min = 0,
        // and its first error afterwards would read as drift however rare errors stay.
        let n = self.n as f64;
        let p = (self.errors as f64 + 1.0) / (n + 2.0);
        let s = (p * (1.0 - p) / n).sqrt();
        if self.n < DDM_WARM_UP {
            self.state = DdmState::WarmingUp;
            return self.state;
        }
        if self.n == DDM_WARM_UP || p + s < self.min_p_plus_s {
            self.min_p_plus_s = p + s;
            self.min_p = p;
            self.min_s = s;
        }
        self.state = if p + s > self.min_p + 3.0 * self.min_s {
            DdmState::Drift
        } else if p + s > self.min_p + 2.0 * self.min_s {
            DdmState::Warning
        } else {
            DdmState::Stable
        };
        self.state
    }

    pub fn samples(&self) -> u64 {
        self.n
    }

    pub fn error_rate(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            self.errors as f64 / self.n as f64
        }
    }

    pub fn state(&self) -> DdmState {
        self.state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_distributions_do_not_drift() {
        let c = [0, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 0];
        assert!(psi(&c, &c).unwrap().abs() < 1e-12);
        assert!(js_distance(&c, &c).unwrap().abs() < 1e-6);
        assert_eq!(level(0.0, 0.0), DriftLevel::Ok);
        assert_eq!(psi(&c, &[0; 12]), None);
    }

    #[test]
    fn shifted_distribution_alerts() {
        let expected = [0, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 0];
        let actual = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 50, 50];
        let p = psi(&expected, &actual).unwrap();
        assert!(p > PSI_ALERT, "{p}");
        let js = js_distance(&expected, &actual).unwrap();
        assert!(js > 0.5 && js <= 1.0, "{js}");
        assert_eq!(level(p, js), DriftLevel::Alert);
        // Disjoint supports are as far apart as JS distance goes.
        let d = js_distance(&[1, 0], &[0, 1]).unwrap();
        assert!((d - 1.0).abs() < 1e-12, "{d}");
    }

    #[test]
    fn ddm_without_errors_is_stable() {
        let mut ddm = Ddm::default();
        for _ in 0..40 {
            ddm.push(false);
        }
        assert_eq!(ddm.state(), DdmState::Stable);
    }

    #[test]
    fn ddm_keeps_a_rare_steady_error_rate_stable_after_an_error_free_start() {
        // 40 correct, then about 1.3% errors (the pattern of a good classifier on iris).
        let mut ddm = Ddm::default();
        for _ in 0..40 {
            ddm.push(false);
        }
        for i in 0..750 {
            ddm.push(i % 75 == 0);
        }
        assert_eq!(ddm.state(), DdmState::Stable);
        // A jump to 30% errors is still found.
        for i in 0..300 {
            ddm.push(i % 10 < 3);
        }
        assert_eq!(ddm.state(), DdmState::Drift);
    }

    #[test]
    fn ddm_warms_up_then_detects_a_jump_in_errors() {
        let mut ddm = Ddm::default();
        for i in 0..29 {
            assert_eq!(ddm.push(i % 10 == 0), DdmState::WarmingUp);
        }
        for i in 0..300 {
            ddm.push(i % 10 == 0);
        }
        assert_eq!(ddm.state(), DdmState::Stable);
        let mut seen_warning = false;
        for _ in 0..200 {
            if ddm.push(true) == DdmState::Warning {
                seen_warning = true;
            }
        }
        assert!(seen_warning);
        assert_eq!(ddm.state(), DdmState::Drift);
        assert_eq!(ddm.samples(), 529);
    }
}
