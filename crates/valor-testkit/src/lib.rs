//! Test vocabulary shared by Valor's crates (a dev-dependency only, never a
//! runtime one).
//!
//! Owns: [`assert_close`] and [`assert_all_close`], the one way parity tests
//! compare numbers with the Python peers; [`shared_dir`], the read-only
//! shared folder (datasets, models, fixtures); [`timings`], the one timer of
//! the examples that profile kernels; and the attributes that stand in for
//! `#[test]` on tests that cannot always run:
//! - [`shared_test`]: the test reads [`shared_dir`]. The folder is
//!   `VALOR_SHARED_DIR` when set (relative: from the workspace root), else
//!   `../shared` beside the workspace root. When neither exists at build
//!   time the test is marked
//!   `#[ignore = "needs the shared folder …"]`, so `cargo test` counts it
//!   as ignored, not passed. With `CI` set (or `VALOR_SHARED_DIR` set
//!   explicitly) nothing is ignored: a missing folder fails the test.
//! - [`slow_test`] (and `#[shared_test(slow)]`): ignored unless
//!   `VALOR_SLOW_TESTS=1` was set at build time.
//! - [`not_wgpu_test`] (and `#[shared_test(not_wgpu)]`): ignored when the
//!   tests were built with `VALOR_TEST_BACKEND=wgpu` (model tests that take
//!   many minutes on a software Vulkan driver; they run on the CPU).
//! - [`spark_test`]: the test talks to the Spark Connect server that
//!   `VALOR_SPARK_REMOTE` names ([`spark_remote`]); ignored when it was
//!   unset at build time, failing under `CI`.
//!
//! The decision is made when the tests are built (valor-testkit-macros'
//! `build.rs`; cargo rebuilds the tests when those variables change), so it
//! shows in the test summary; `cargo test -- --ignored` runs the ignored ones
//! anyway, and [`shared_dir`] then says what is missing.
//!
//! Does not know about: any Valor crate, tensors, data frames.

use std::path::PathBuf;

pub use valor_testkit_macros::{not_wgpu_test, shared_test, slow_test, spark_test};

/// Environment variable that points at the read-only `shared/` folder
/// (datasets, models, fixtures); `../shared` beside the workspace when unset.
pub const SHARED_DIR_ENV: &str = "VALOR_SHARED_DIR";
/// Environment variable that turns on slow tests (set to `1`). `.ci/run` sets it.
pub const SLOW_TESTS_ENV: &str = "VALOR_SLOW_TESTS";

/// Environment variable read when the tests run: an absolute folder that
/// replaces the build-time one, for a prebuilt test binary run on another
/// machine (`cargo xtask gpu-check`). Whether a `#[shared_test]` is ignored
/// was still decided at build time.
pub const RUN_SHARED_DIR_ENV: &str = "VALOR_RUN_SHARED_DIR";

/// The shared folder as resolved when the tests were built.
const BUILD_TIME_SHARED_DIR: &str = valor_testkit_macros::build_time_shared_dir!();
/// Whether `CI` was set when the tests were built.
const BUILD_TIME_CI: bool = valor_testkit_macros::build_time_ci!();

/// The shared folder, for a test marked [`shared_test`]: `VALOR_SHARED_DIR`
/// (a relative path taken from the workspace root), else `../shared` beside
/// the workspace root, as resolved when the tests were built (cargo rebuilds
/// them when `VALOR_SHARED_DIR` changes), so it is the folder the
/// `#[shared_test]` decision looked at; `VALOR_RUN_SHARED_DIR` at run time
/// replaces it ([`RUN_SHARED_DIR_ENV`]).
///
/// Panics, naming the folder, when it does not exist: a test that reaches
/// this without the folder was asked to run (CI, `--ignored`, or an
/// explicit `VALOR_SHARED_DIR`), so the missing folder is its failure.
///
/// ```ignore
/// #[valor_testkit::shared_test]
/// fn adult_matches_fairlearn() {
///     let shared = valor_testkit::shared_dir();
/// }
/// ```
#[track_caller]
pub fn shared_dir() -> PathBuf {
    let dir = std::env::var_os(RUN_SHARED_DIR_ENV)
        .filter(|d| !d.is_empty())
        .map_or_else(|| PathBuf::from(BUILD_TIME_SHARED_DIR), PathBuf::from);
    assert!(
        dir.is_dir(),
        "the shared folder {} does not exist{}: put the shared datasets, models and fixtures \
         there or point {SHARED_DIR_ENV} at them",
        dir.display(),
        if BUILD_TIME_CI {
            " (CI is set, so tests that need it fail instead of being ignored)"
        } else {
            ""
        }
    );
    dir
}

/// Environment variable naming a running Spark Connect server
/// (`sc://HOST:PORT`) for [`spark_test`]s. `.ci/run` starts one and sets it.
pub const SPARK_REMOTE_ENV: &str = "VALOR_SPARK_REMOTE";

/// The Spark Connect server of a [`spark_test`]: `VALOR_SPARK_REMOTE`.
/// Panics when it is unset: a test that reaches this was asked to run (CI,
/// `--ignored`).
#[track_caller]
pub fn spark_remote() -> String {
    let remote = std::env::var(SPARK_REMOTE_ENV).unwrap_or_default();
    assert!(
        !remote.is_empty(),
        "{SPARK_REMOTE_ENV} is not set: start a Spark Connect server (Spark's \
         sbin/start-connect-server.sh; .ci/run does) and set it to its sc://HOST:PORT{}",
        if BUILD_TIME_CI {
            " (CI is set, so tests that need it fail instead of being ignored)"
        } else {
            ""
        }
    );
    remote
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

/// Seconds of `runs` calls of `f` after one warm-up call, fastest first:
/// `[0]` is the run nothing interrupted (on a shared machine, the one to
/// compare), `[runs / 2]` the median. For examples that profile kernels;
/// speed claims live in `cargo xtask bench`, never in tests.
pub fn timings(runs: usize, mut f: impl FnMut()) -> Vec<f64> {
    f();
    let mut t: Vec<f64> = (0..runs.max(1))
        .map(|_| {
            let start = std::time::Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t
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
