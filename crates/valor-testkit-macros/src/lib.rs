//! The test attributes of `valor-testkit` (re-exported there; use them as
//! `#[valor_testkit::shared_test]`, `#[valor_testkit::slow_test]`,
//! `#[valor_testkit::not_wgpu_test]`).
//!
//! Owns: the decision, made when the tests are built (see `build.rs`),
//! whether a test that needs the shared folder, is slow, or is too slow for
//! wgpu on a software Vulkan driver can run here. Each attribute stands in
//! for `#[test]` and adds `#[ignore = "why"]` when the test cannot run, so
//! `cargo test`'s summary counts it as ignored, never as passed;
//! `cargo test -- --ignored` still runs it.
//!
//! Does not know about: any Valor crate (only the names and values of the
//! test environment variables), what the tests check.

use proc_macro::{TokenStream, TokenTree};

/// Why a `#[shared_test]` is ignored when the folder is missing.
const NO_SHARED: &str = concat!(
    "needs the shared folder (../shared beside the workspace, or VALOR_SHARED_DIR); not found at ",
    env!("VALOR_TESTKIT_SHARED_DIR")
);
/// Why a slow test is ignored.
const NOT_SLOW: &str = "slow: runs with VALOR_SLOW_TESTS=1";
/// Why a `#[spark_test]` is ignored without a server.
const NO_SPARK: &str =
    "needs a Spark Connect server: set VALOR_SPARK_REMOTE=sc://HOST:PORT (.ci/run starts one)";
/// Why a CPU-only test is ignored on wgpu.
const ON_WGPU: &str = "too slow on wgpu over lavapipe (VALOR_TEST_BACKEND=wgpu): runs on the CPU";

/// What a test needs besides its code.
#[derive(Default)]
struct Needs {
    shared: bool,
    slow: bool,
    not_wgpu: bool,
    spark: bool,
}

impl Needs {
    /// Reads the attribute's arguments: a comma-separated subset of `allowed`.
    fn parse(
        mut self,
        attr: &TokenStream,
        name: &str,
        allowed: &[&str],
    ) -> Result<Self, TokenStream> {
        let text = attr.to_string();
        for arg in text.split(',').map(str::trim).filter(|a| !a.is_empty()) {
            match arg {
                "slow" if allowed.contains(&arg) => self.slow = true,
                "not_wgpu" if allowed.contains(&arg) => self.not_wgpu = true,
                _ => {
                    return Err(compile_error(&format!(
                        "#[{name}] takes a list of {allowed:?}, not `{arg}`"
                    )));
                }
            }
        }
        Ok(self)
    }

    /// The attribute `#[name(attr)]` on `item`: its arguments read, then
    /// [`Needs::test`], or a compile error naming what it accepts.
    fn expand(
        self,
        attr: &TokenStream,
        name: &str,
        allowed: &[&str],
        item: TokenStream,
    ) -> TokenStream {
        match self.parse(attr, name, allowed) {
            Ok(needs) => needs.test(item),
            Err(e) => e,
        }
    }

    /// `#[test]`, and `#[ignore = "why"]` when one of the needs is not met.
    fn test(&self, item: TokenStream) -> TokenStream {
        let mut why = Vec::new();
        if self.shared && cfg!(valor_no_shared) {
            why.push(NO_SHARED);
        }
        if self.slow && !cfg!(valor_slow_tests) {
            why.push(NOT_SLOW);
        }
        if self.not_wgpu && cfg!(valor_test_backend_wgpu) {
            why.push(ON_WGPU);
        }
        if self.spark && cfg!(valor_no_spark) {
            why.push(NO_SPARK);
        }
        test(&why, item)
    }
}

/// `#[test]` for a test that reads the shared folder
/// (`valor_testkit::shared_dir()`): ignored when the folder was missing
/// at build time (outside CI). Arguments: `slow` (also a slow test),
/// `not_wgpu` (also ignored when `VALOR_TEST_BACKEND=wgpu`).
#[proc_macro_attribute]
pub fn shared_test(attr: TokenStream, item: TokenStream) -> TokenStream {
    let needs = Needs {
        shared: true,
        ..Needs::default()
    };
    needs.expand(&attr, "shared_test", &["slow", "not_wgpu"], item)
}

/// `#[test]` for a slow test: ignored unless `VALOR_SLOW_TESTS=1` was set
/// when the tests were built.
#[proc_macro_attribute]
pub fn slow_test(attr: TokenStream, item: TokenStream) -> TokenStream {
    let needs = Needs {
        slow: true,
        ..Needs::default()
    };
    needs.expand(&attr, "slow_test", &[], item)
}

/// `#[test]` for a test too slow for wgpu on a software Vulkan driver:
/// ignored when the tests were built with `VALOR_TEST_BACKEND=wgpu` (or
/// `gpu`), the backend the model tests then run on.
#[proc_macro_attribute]
pub fn not_wgpu_test(attr: TokenStream, item: TokenStream) -> TokenStream {
    let needs = Needs {
        not_wgpu: true,
        ..Needs::default()
    };
    needs.expand(&attr, "not_wgpu_test", &[], item)
}

/// `#[test]` for a test that talks to a Spark Connect server
/// (`valor_testkit::spark_remote()`): ignored when `VALOR_SPARK_REMOTE` was
/// unset at build time (outside CI).
#[proc_macro_attribute]
pub fn spark_test(attr: TokenStream, item: TokenStream) -> TokenStream {
    let needs = Needs {
        spark: true,
        ..Needs::default()
    };
    needs.expand(&attr, "spark_test", &[], item)
}

/// The shared folder as resolved at build time, a string literal.
#[proc_macro]
pub fn build_time_shared_dir(_: TokenStream) -> TokenStream {
    literal(env!("VALOR_TESTKIT_SHARED_DIR"))
}

/// Whether `CI` was set at build time, a bool literal.
#[proc_macro]
pub fn build_time_ci(_: TokenStream) -> TokenStream {
    let ci = env!("VALOR_TESTKIT_CI") == "1";
    ci.to_string().parse().expect("a bool literal")
}

fn test(why: &[&str], item: TokenStream) -> TokenStream {
    let mut out: TokenStream = "#[test]".parse().expect("an attribute");
    if !why.is_empty() {
        let ignore = format!("#[ignore = {}]", literal(&why.join("; ")));
        out.extend(ignore.parse::<TokenStream>().expect("an attribute"));
    }
    out.extend(item);
    out
}

fn literal(s: &str) -> TokenStream {
    TokenTree::from(proc_macro::Literal::string(s)).into()
}

fn compile_error(msg: &str) -> TokenStream {
    format!("compile_error!({});", proc_macro::Literal::string(msg))
        .parse()
        .expect("a macro call")
}
