//! `cargo xtask`: the project's automation. It depends on no Valor crate: it
//! shells out to cargo (through the `CARGO` variable cargo sets), so the heavy
//! crates are built once, with the features the user asked for.
//!
//! Tasks: `train` (the README's main job), `bench`, `gpu-check`, `ci`.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod bench;
mod gpu_check;
mod tidy;
mod train;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};

const TASKS: &str = "\
cargo xtask <task> [args]

tasks:
  train   generate the built-in dataset and train the `tiny` model on it twice,
          without and with the fairness objective; print both side by side.
          Flags after `--` (or unknown flags) go to `valor train`.
  bench   run the benchmarks and the side-by-side comparisons with the Python
          peers; writes bench/results.md and bench/results.json.
          --quick, --filter NAME, --backend cpu|wgpu|cuda, --no-peers
  gpu-check  prepare: build the GPU check's binaries here (wgpu) into gpu-check/;
          run (gpu-check/run.sh on the GPU machine): the valor-bert tests on
          wgpu, the MiniLM/BERT-base rows in fp32/f16/bf16 and the PyTorch peer
          on CUDA, into gpu-check/results.md (README, section The GPU check)
  ci      the core of .ci/run: cargo fmt --check, clippy -D warnings, the tests
          on the CPU (.ci/run also runs the wgpu tests and checks cuda).
";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let task = args.next();
    let rest: Vec<String> = args.collect();
    let result = match task.as_deref() {
        None | Some("help" | "-h" | "--help") => {
            print!("{TASKS}");
            Ok(())
        }
        Some("train") => train::run(&rest),
        Some("bench") => bench::run(&rest),
        Some("gpu-check") => gpu_check::run(&rest),
        Some("ci") => ci(&rest),
        Some(other) => Err(anyhow::anyhow!("unknown task `{other}`\n\n{TASKS}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// The workspace root, found once at run time by walking up from the current
/// folder to the `Cargo.toml` with a `[workspace]` table and an `xtask/`
/// member. Not `env!("CARGO_MANIFEST_DIR")`: that is baked in when xtask is
/// compiled, so a target folder shared by two checkouts would run every task
/// in whichever checkout built the binary last.
pub fn root() -> PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        find_root().unwrap_or_else(|e| {
            eprintln!("error: {e:#}");
            std::process::exit(2)
        })
    })
    .clone()
}

fn find_root() -> Result<PathBuf> {
    let cwd = std::env::current_dir().context("reading the current folder")?;
    match workspace_above(&cwd) {
        Some(root) => Ok(root),
        None => bail!(
            "no workspace (a Cargo.toml with [workspace] and an xtask/ member) in {} or above; run `cargo xtask` inside the checkout",
            cwd.display()
        ),
    }
}

/// The nearest folder at or above `start` whose `Cargo.toml` has a
/// `[workspace]` table and which holds `xtask/Cargo.toml`.
fn workspace_above(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .find(|dir| {
            std::fs::read_to_string(dir.join("Cargo.toml"))
                .is_ok_and(|m| m.lines().any(|l| l.trim() == "[workspace]"))
                && dir.join("xtask").join("Cargo.toml").is_file()
        })
        .map(Path::to_path_buf)
}

/// `cargo` as cargo itself was invoked (respects toolchain overrides).
pub fn cargo() -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(root());
    c
}

/// Runs a command, failing with its rendering when it exits non-zero.
pub fn run_cmd(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    eprintln!("$ {shown}");
    let status = cmd.status().with_context(|| format!("starting {shown}"))?;
    if !status.success() {
        bail!("{shown} failed with {status}");
    }
    Ok(())
}

/// Splits xtask's own `--features X` / `--release` flags from the rest.
pub fn take_flag_value(args: &mut Vec<String>, flag: &str) -> Option<String> {
    let pos = args.iter().position(|a| a == flag)?;
    if pos + 1 < args.len() {
        let v = args.remove(pos + 1);
        args.remove(pos);
        Some(v)
    } else {
        args.remove(pos);
        None
    }
}

fn ci(args: &[String]) -> Result<()> {
    if !args.is_empty() {
        bail!("`cargo xtask ci` takes no arguments");
    }
    run_cmd(cargo().args(["fmt", "--all", "--check"]))?;
    run_cmd(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    run_cmd(cargo().args(["test", "--workspace"]))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::workspace_above;

    /// Two checkouts: each finds its own root from inside it, whatever the
    /// binary was built from (the regression of a compile-time root).
    #[test]
    fn the_root_is_the_checkout_the_command_runs_in() {
        let base = std::env::temp_dir().join(format!("xtask-root-{}", std::process::id()));
        for checkout in ["a", "b"] {
            let root = base.join(checkout);
            std::fs::create_dir_all(root.join("xtask")).unwrap();
            std::fs::create_dir_all(root.join("crates/valor-data/src")).unwrap();
            std::fs::write(
                root.join("Cargo.toml"),
                "[workspace]\nmembers = [\"xtask\"]\n",
            )
            .unwrap();
            std::fs::write(
                root.join("xtask/Cargo.toml"),
                "[package]\nname = \"xtask\"\n",
            )
            .unwrap();
            std::fs::write(root.join("crates/valor-data/Cargo.toml"), "[package]\n").unwrap();
        }
        for checkout in ["a", "b"] {
            let root = base.join(checkout);
            for start in [
                root.clone(),
                root.join("xtask"),
                root.join("crates/valor-data/src"),
            ] {
                assert_eq!(workspace_above(&start).as_deref(), Some(root.as_path()));
            }
        }
        assert_eq!(workspace_above(&base), None);
        std::fs::remove_dir_all(&base).unwrap();
    }
}
