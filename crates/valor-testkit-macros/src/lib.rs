//! The test attributes of `valor-testkit` (re-exported there; use them as
//! `#[valor_testkit::shared_test]`, `#[valor_testkit::slow_test]`).
//!
//! Owns: the decision, made when the tests are built (see `build.rs`),
//! whether a test that needs the shared folder or is slow can run here.
//! Each attribute stands in for `#[test]` and adds `#[ignore = "why"]`
//! when the test cannot run, so `cargo test`'s summary counts it as
//! ignored, never as passed; `cargo test -- --ignored` still runs it.
//!
//! Does not know about: any Valor crate, what the tests check.

use proc_macro::{TokenStream, TokenTree};

/// Why a `#[shared_test]` is ignored when the folder is missing.
const NO_SHARED: &str = concat!(
    "needs the shared folder (../shared beside the workspace, or VALOR_SHARED_DIR); not found at ",
    env!("VALOR_TESTKIT_SHARED_DIR")
);
/// Why a slow test is ignored.
const NOT_SLOW: &str = "slow: runs with VALOR_SLOW_TESTS=1";

/// `#[test]` for a test that reads the shared folder
/// (`valor_testkit::shared_dir()`): ignored when the folder was missing
/// at build time (outside CI). `#[shared_test(slow)]` is also a slow test.
#[proc_macro_attribute]
pub fn shared_test(attr: TokenStream, item: TokenStream) -> TokenStream {
    let slow = match attr.to_string().trim() {
        "" => false,
        "slow" => true,
        other => {
            return compile_error(&format!(
                "#[shared_test] takes `slow` or nothing, not `{other}`"
            ));
        }
    };
    let mut why = Vec::new();
    if cfg!(valor_no_shared) {
        why.push(NO_SHARED);
    }
    if slow && !cfg!(valor_slow_tests) {
        why.push(NOT_SLOW);
    }
    test(&why, item)
}

/// `#[test]` for a slow test: ignored unless `VALOR_SLOW_TESTS=1` was set
/// when the tests were built.
#[proc_macro_attribute]
pub fn slow_test(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        return compile_error("#[slow_test] takes no arguments");
    }
    let why = if cfg!(valor_slow_tests) {
        vec![]
    } else {
        vec![NOT_SLOW]
    };
    test(&why, item)
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
