//! Test vocabulary shared by Valor's crates (a dev-dependency only, never a
//! runtime one).
//!
//! Owns: [`assert_close`] and [`assert_all_close`], the one way parity tests
//! compare numbers with the Python peers; [`shared_dir`], which finds
//! `../shared` through the `VALOR_SHARED_DIR` environment variable and says
//! clearly when a test is skipped; [`slow_tests_enabled`] for tests behind
//! `VALOR_SLOW_TESTS=1`.
//!
//! Does not know about: any Valor crate, tensors, data frames.
#![allow(clippy::print_stderr)]

use std::path::PathBuf;

/// Environment variable that points at the read-only `shared/` folder
/// (datasets, models, fixtures). `.ci/run` always sets it.
pub const SHARED_DIR_ENV: &str = "VALOR_SHARED_DIR";
/// Environment variable that turns on slow tests (set to `1`). `.ci/run` sets it.
pub const SLOW_TESTS_ENV: &str = "VALOR_SLOW_TESTS";

/// The shared folder, or `None` after printing why the calling test is skipped.
///
/// ```ignore
/// let Some(shared) = valor_testkit::shared_dir("adult_parity") else { return };
/// ```
pub fn shared_dir(test: &str) -> Option<PathBuf> {
    match std::env::var_os(SHARED_DIR_ENV) {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_dir() {
                Some(dir)
            } else {
                panic!(
                    "{SHARED_DIR_ENV}={} is set but is not a directory (test `{test}`)",
                    dir.display()
                );
            }
        }
        _ => {
            eprintln!("SKIPPED {test}: set {SHARED_DIR_ENV} to the shared/ folder to run it");
            None
        }
    }
}

/// Whether slow tests run; prints a skip message for `test` when they do not.
pub fn slow_tests_enabled(test: &str) -> bool {
    let on = std::env::var(SLOW_TESTS_ENV).is_ok_and(|v| v == "1");
    if !on {
        eprintln!("SKIPPED {test}: slow test; set {SLOW_TESTS_ENV}=1 to run it");
    }
    on
}

/// Tolerance for [`assert_close`]: a value passes when it is within `abs`
/// absolute **or** within `rel` relative of the expected value.
#[derive(Debug, Clone, Copy)]
pub struct Tolerance {
    pub abs: f64,
    pub rel: f64,
}

impl Tolerance {
    /// Absolute tolerance only.
    pub const fn abs(abs: f64) -> Self {
        Self { abs, rel: 0.0 }
    }
    /// Relative tolerance only.
    pub const fn rel(rel: f64) -> Self {
        Self { abs: 0.0, rel }
    }
    fn accepts(&self, actual: f64, expected: f64) -> bool {
        if actual.is_nan() || expected.is_nan() {
            return actual.is_nan() && expected.is_nan();
        }
        if actual == expected {
            return true;
        }
        let diff = (actual - expected).abs();
        diff <= self.abs || diff <= self.rel * expected.abs()
    }
}

/// Asserts that `actual` is within `tol` of `expected`; `what` names the
/// number in the failure message (e.g. `"sex/Female/tpr"`).
#[track_caller]
pub fn assert_close(what: &str, actual: f64, expected: f64, tol: Tolerance) {
    assert!(
        tol.accepts(actual, expected),
        "{what}: actual {actual:e} vs expected {expected:e} (diff {:e}, tolerance {tol:?})",
        (actual - expected).abs()
    );
}

/// Element-wise [`assert_close`] over two slices of equal length; reports the
/// worst element and how many failed.
#[track_caller]
pub fn assert_all_close(what: &str, actual: &[f64], expected: &[f64], tol: Tolerance) {
    assert_eq!(
        actual.len(),
        expected.len(),
        "{what}: length {} vs expected {}",
        actual.len(),
        expected.len()
    );
    let mut failed = 0usize;
    let mut worst: Option<(usize, f64)> = None;
    for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        if !tol.accepts(a, e) {
            failed += 1;
            let d = (a - e).abs();
            if worst.is_none_or(|(_, w)| d > w || d.is_nan()) {
                worst = Some((i, d));
            }
        }
    }
    if let Some((i, d)) = worst {
        panic!(
            "{what}: {failed} of {} elements out of tolerance {tol:?}; worst at index {i}: actual {:e} vs expected {:e} (diff {d:e})",
            actual.len(),
            actual[i],
            expected[i]
        );
    }
}

/// Maximum absolute difference between two slices (NaN if any side is NaN).
pub fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, |m, d| if d.is_nan() || d > m { d } else { m })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerance_accepts_within_abs_or_rel() {
        assert!(Tolerance::abs(1e-3).accepts(1.0005, 1.0));
        assert!(!Tolerance::abs(1e-4).accepts(1.0005, 1.0));
        assert!(Tolerance::rel(1e-3).accepts(100.05, 100.0));
        assert!(Tolerance::abs(0.0).accepts(f64::NAN, f64::NAN));
        assert!(!Tolerance::abs(1.0).accepts(f64::NAN, 0.0));
    }

    #[test]
    #[should_panic(expected = "worst at index 1")]
    fn all_close_reports_worst() {
        assert_all_close(
            "v",
            &[1.0, 2.5, 3.1],
            &[1.0, 2.0, 3.0],
            Tolerance::abs(0.01),
        );
    }
}
