//! Decides, when the tests are built, which of them can run here.
//!
//! The shared folder is `VALOR_SHARED_DIR` when set (a relative path is taken
//! from the workspace root), else `../shared` beside the workspace root. When it is missing (and `VALOR_SHARED_DIR` is unset
//! and `CI` is not set), the crate is built with `cfg(valor_no_shared)`, and
//! `#[shared_test]` marks its tests ignored; under `CI` a missing folder
//! is not a reason to ignore anything, so those tests run and fail.
//! `VALOR_SLOW_TESTS=1` gives `cfg(valor_slow_tests)`, and
//! `VALOR_TEST_BACKEND=wgpu` `cfg(valor_test_backend_wgpu)`. Cargo reruns this
//! script when any of those variables changes; a `../shared` that appears
//! after a build is seen once one of them changes or this crate is rebuilt.

use std::path::{Path, PathBuf};

fn env(name: &str) -> Option<String> {
    println!("cargo::rerun-if-env-changed={name}");
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rustc-check-cfg=cfg(valor_no_shared)");
    println!("cargo::rustc-check-cfg=cfg(valor_slow_tests)");
    println!("cargo::rustc-check-cfg=cfg(valor_test_backend_wgpu)");
    println!("cargo::rustc-check-cfg=cfg(valor_no_spark)");

    let explicit = env("VALOR_SHARED_DIR").map(PathBuf::from);
    let ci = env("CI").is_some_and(|v| v != "0" && !v.eq_ignore_ascii_case("false"));
    let slow = env("VALOR_SLOW_TESTS").is_some_and(|v| v == "1");
    // The model tests' backend (valor-bert's `Backend::from_env`: `wgpu` or
    // its alias `gpu`, any case).
    // A Spark Connect server for `#[spark_test]` (`.ci/run` starts one).
    let spark = env("VALOR_SPARK_REMOTE");
    let wgpu = env("VALOR_TEST_BACKEND")
        .is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "wgpu" | "gpu"));

    // crates/valor-testkit-macros → the workspace root → its sibling `shared`.
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest
        .parent()
        .and_then(Path::parent)
        .expect("the crate sits in <root>/crates/");
    let default = root.parent().unwrap_or(root).join("shared");
    // A relative VALOR_SHARED_DIR (the README's `../shared`) is taken from the
    // workspace root, where cargo is run, not from this crate's folder.
    let dir = explicit.as_ref().map_or(default, |d| root.join(d));
    let dir = dir.canonicalize().unwrap_or(dir);

    // An explicit folder or CI never ignores: a missing folder fails there.
    if explicit.is_none() && !ci && !dir.is_dir() {
        println!("cargo::rustc-cfg=valor_no_shared");
    }
    // Under CI a missing server is not a reason to ignore: the tests fail.
    if spark.is_none() && !ci {
        println!("cargo::rustc-cfg=valor_no_spark");
    }
    if slow {
        println!("cargo::rustc-cfg=valor_slow_tests");
    }
    if wgpu {
        println!("cargo::rustc-cfg=valor_test_backend_wgpu");
    }
    let dir = dir.to_str().expect("the shared folder's path is UTF-8");
    println!("cargo::rustc-env=VALOR_TESTKIT_SHARED_DIR={dir}");
    println!("cargo::rustc-env=VALOR_TESTKIT_CI={}", u8::from(ci));
}
