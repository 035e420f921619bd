//! `cargo xtask gpu-check`: the measured GPU run, prepared here and run on a
//! machine with a GPU and no network, where nothing is compiled.
//!
//! ```text
//! cargo xtask gpu-check prepare [--dir DIR] [--profile bench|test]
//! DIR/run.sh [--shared PATH] [--quick] [--test-filter NAME] [--precisions fp32,f16,bf16]
//!             [--python PY] [--budget-s S] [--out FILE]
//! ```
//!
//! `prepare` builds, for this machine's target (x86-64 Linux here), the
//! valor-bert integration-test binary (`tests/it`, with `--features wgpu`
//! and `VALOR_TEST_BACKEND=wgpu`, as CI builds it) and the `model` criterion
//! benchmark (`--features wgpu`, the bench profile unless `--profile test`),
//! strips and gzips them (the device tool carries 64 MiB; `run.sh` unpacks
//! them into `DIR/work`), and copies them with this xtask binary, the
//! PyTorch peer (`gpu_check/gpu_peer.py`) and `run.sh` into DIR (default
//! `gpu-check/` in the checkout, ignored by git), with a `manifest.json`
//! (commit, profile, sizes).
//!
//! `run` (what `run.sh` calls) runs, within `--budget-s` (default 450 s,
//! the check's 8 minutes less start-up): the valor-bert tests on wgpu
//! (the HF parity tests, the half-precision test), then each model row of
//! the bench (MiniLM-L6 and BERT-base inference and training at batch 32 ×
//! seq 128, and the GEMM peak) in fp32, f16 and bf16 (the device's float
//! dtype, `VALOR_BENCH_PRECISION`), then the PyTorch peer on CUDA for the
//! same rows where `--python` has torch with a GPU. `--quick` is the dry
//! run for a software Vulkan driver: seq 32 × batch 4, a 512 GEMM, fp32 and
//! f16. Results: `DIR/results.md` and `DIR/results.json` (or `--out`),
//! written after every step so a run cut short keeps what it measured.
//!
//! Data-parallel `--devices N` is not part of it (the bench has no
//! data-parallel row; `valor train --devices N` needs the CLI built with
//! wgpu); the results say so.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::bench::workloads::{BASE, Geometry, MINILM, bert_flops};
use crate::{cargo, root, take_flag_value};

/// The PyTorch peer, copied into the prepared folder.
const PEER: &str = include_str!("gpu_check/gpu_peer.py");
/// Most the device tool carries besides the working tree.
const CARRY_LIMIT_BYTES: u64 = 64 << 20;

pub fn run(args: &[String]) -> Result<()> {
    let mut args = args.to_vec();
    if args.is_empty() {
        bail!(
            "usage: cargo xtask gpu-check prepare [--dir DIR] [--profile bench|test] | run [...]"
        );
    }
    match args.remove(0).as_str() {
        "prepare" => prepare(args),
        "run" => run_check(args),
        other => bail!("unknown gpu-check step `{other}`: expected prepare or run"),
    }
}

// --- prepare -------------------------------------------------------------------

fn prepare(mut args: Vec<String>) -> Result<()> {
    let dir = take_flag_value(&mut args, "--dir")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("gpu-check"));
    let profile = take_flag_value(&mut args, "--profile").unwrap_or_else(|| "bench".into());
    if !["bench", "test"].contains(&profile.as_str()) {
        bail!("--profile {profile}: expected bench (optimised, the default) or test");
    }
    if !args.is_empty() {
        bail!("unknown arguments: {}", args.join(" "));
    }
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).with_context(|| format!("creating {}", bin.display()))?;

    eprintln!("[gpu-check] building the valor-bert tests for wgpu (test profile)");
    let tests = build_exe(
        cargo()
            .args([
                "test",
                "-p",
                "valor-bert",
                "--features",
                "wgpu",
                "--test",
                "it",
            ])
            .args(["--no-run", "--message-format=json-render-diagnostics"])
            .env("VALOR_TEST_BACKEND", "wgpu"),
        "it",
        "test",
    )?;
    eprintln!("[gpu-check] building the valor-bert `model` bench for wgpu ({profile} profile)");
    let mut bench = cargo();
    if profile == "bench" {
        bench.args(["bench", "--no-run"]);
    } else {
        bench.args(["test", "--no-run"]);
    }
    bench.args([
        "-p",
        "valor-bert",
        "--features",
        "wgpu",
        "--bench",
        "model",
        "--message-format=json-render-diagnostics",
    ]);
    let model = build_exe(&mut bench, "model", "bench")?;

    // Stripped and gzipped: the test binary alone is ~75 MiB stripped, over
    // the device tool's 64 MiB carry; run.sh unpacks them.
    let mut sizes = serde_json::Map::new();
    for (from, name) in [(&tests, "valor-bert-it"), (&model, "valor-bert-model")] {
        let plain = dir.join(format!("{name}.stripped"));
        strip_into(from, &plain)?;
        let gz = bin.join(format!("{name}.gz"));
        let out = std::fs::File::create(&gz)?;
        let ok = Command::new("gzip")
            .args(["-6", "-c"])
            .arg(&plain)
            .stdout(out)
            .status()
            .context("running gzip")?
            .success();
        if !ok {
            bail!("gzip {} failed", plain.display());
        }
        sizes.insert(format!("{name} (stripped)"), json!(size(&plain)));
        sizes.insert(format!("bin/{name}.gz"), json!(size(&gz)));
        std::fs::remove_file(&plain)?;
    }
    let me = std::env::current_exe().context("locating the xtask binary")?;
    strip_into(&me, &bin.join("xtask"))?;
    sizes.insert("bin/xtask".into(), json!(size(&bin.join("xtask"))));
    std::fs::write(dir.join("gpu_peer.py"), PEER)?;
    let run_sh = dir.join("run.sh");
    std::fs::write(&run_sh, RUN_SH)?;
    set_executable(&run_sh)?;
    let total: u64 = sizes
        .iter()
        .filter(|(k, _)| k.starts_with("bin/"))
        .filter_map(|(_, v)| v.as_u64())
        .sum();
    let manifest = json!({
        "schema": "valor.gpu-check.manifest/1",
        "git_commit": crate::bench::report::git_commit(),
        "built_utc": crate::bench::report::date_utc(),
        "target": format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS),
        "bench_profile": profile,
        "tests_profile": "test",
        "bytes": sizes,
        "total_bytes": total,
    });
    std::fs::write(
        dir.join("manifest.json"),
        serde_json::to_string_pretty(&manifest)?,
    )?;
    eprintln!(
        "[gpu-check] prepared {} ({:.1} MiB of binaries{}); on the GPU machine: {}/run.sh --shared PATH",
        dir.display(),
        total as f64 / (1u64 << 20) as f64,
        if total > CARRY_LIMIT_BYTES {
            ": over the device tool's 64 MiB carry"
        } else {
            ""
        },
        dir.display()
    );
    Ok(())
}

/// Runs a `cargo … --message-format=json` build and returns the executable
/// of the target `name` whose kind is `kind`.
fn build_exe(cmd: &mut Command, name: &str, kind: &str) -> Result<PathBuf> {
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo")?;
    if !out.status.success() {
        bail!("building `{name}` failed");
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["reason"] == "compiler-artifact" && v["target"]["name"] == name)
        .filter(|v| {
            v["target"]["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|x| x == kind))
        })
        .find_map(|v| v["executable"].as_str().map(PathBuf::from))
        .with_context(|| format!("cargo named no executable for `{name}`"))
}

/// What `DIR/run.sh` does on the GPU machine: unpack the binaries into a
/// work folder (`DIR/work`, or `GPU_CHECK_WORK`; /tmp when DIR is
/// read-only), then run the check from there.
const RUN_SH: &str = r#"#!/usr/bin/env bash
# The prepared GPU check (cargo xtask gpu-check): unpacks the prebuilt binaries
# beside it and runs them. Arguments go to `xtask gpu-check run` (--shared PATH,
# --quick, --test-filter NAME, --precisions LIST, --python PY, --budget-s S, --out FILE).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="${GPU_CHECK_WORK:-$here/work}"
mkdir -p "$work/bin" 2>/dev/null && [ -w "$work/bin" ] || { work="${TMPDIR:-/tmp}/valor-gpu-check"; mkdir -p "$work/bin"; }
for f in "$here"/bin/*.gz; do
  out="$work/bin/$(basename "${f%.gz}")"
  if [ ! -x "$out" ] || [ "$f" -nt "$out" ]; then
    gzip -dc "$f" > "$out.tmp" && chmod +x "$out.tmp" && mv "$out.tmp" "$out"
  fi
done
exec "$here/bin/xtask" gpu-check run --dir "$here" --work "$work" "$@"
"#;

/// Copies `from` to `to` without debug info and symbols (`strip`; a plain
/// copy where it is missing).
fn strip_into(from: &Path, to: &Path) -> Result<()> {
    let _ = std::fs::remove_file(to);
    let stripped = Command::new("strip")
        .arg("-o")
        .arg(to)
        .arg(from)
        .status()
        .is_ok_and(|s| s.success());
    if !stripped {
        std::fs::copy(from, to)
            .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    }
    set_executable(to)
}

fn set_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut p = std::fs::metadata(path)?.permissions();
    p.set_mode(0o755);
    std::fs::set_permissions(path, p).with_context(|| format!("chmod {}", path.display()))
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

// --- run -----------------------------------------------------------------------

struct RunOptions {
    dir: PathBuf,
    /// Where the unpacked binaries are and the logs go.
    work: PathBuf,
    shared: Option<PathBuf>,
    quick: bool,
    /// Passed to the test binary as its name filter (all tests when unset).
    test_filter: Option<String>,
    /// `--precisions fp32,f16`: the precisions of the model rows (default:
    /// fp32, f16, bf16; with --quick fp32, f16).
    precisions: Option<Vec<String>>,
    python: String,
    budget: Duration,
    out: PathBuf,
}

/// The model rows: (bench group, geometry, peer model).
const MODELS: [(&str, Geometry, &str); 2] = [("minilm", MINILM, "minilm"), ("base", BASE, "base")];

fn run_check(mut args: Vec<String>) -> Result<()> {
    let dir = match take_flag_value(&mut args, "--dir") {
        Some(d) => PathBuf::from(d),
        None => std::env::current_exe()?
            .parent()
            .and_then(Path::parent)
            .context("the xtask binary sits in DIR/bin")?
            .to_path_buf(),
    };
    let dir = dir.canonicalize().unwrap_or(dir);
    let work = take_flag_value(&mut args, "--work")
        .map(PathBuf::from)
        .unwrap_or_else(|| dir.join("work"));
    let shared = take_flag_value(&mut args, "--shared")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("VALOR_SHARED_DIR").map(PathBuf::from))
        .or_else(|| {
            [dir.join("../shared"), dir.join("../../shared")]
                .into_iter()
                .find(|p| p.join("models").is_dir())
        })
        .map(|p| p.canonicalize().unwrap_or(p));
    let quick = {
        let before = args.len();
        args.retain(|a| a != "--quick");
        args.len() != before
    };
    let test_filter = take_flag_value(&mut args, "--test-filter");
    let precisions = match take_flag_value(&mut args, "--precisions") {
        None => None,
        Some(list) => {
            let list: Vec<String> = list.split(',').map(|p| p.trim().to_string()).collect();
            if let Some(bad) = list
                .iter()
                .find(|p| !["fp32", "f16", "bf16"].contains(&p.as_str()))
            {
                bail!("--precisions: `{bad}` is not fp32, f16 or bf16");
            }
            Some(list)
        }
    };
    let python = take_flag_value(&mut args, "--python").unwrap_or_else(|| "python3".into());
    let budget = take_flag_value(&mut args, "--budget-s")
        .map(|s| s.parse::<u64>().context("--budget-s: seconds"))
        .transpose()?
        .unwrap_or(450);
    let out = take_flag_value(&mut args, "--out")
        .map(PathBuf::from)
        .unwrap_or_else(|| work.join("results.md"));
    if !args.is_empty() {
        bail!("unknown arguments: {}", args.join(" "));
    }
    let opts = RunOptions {
        dir,
        work,
        shared,
        quick,
        test_filter,
        precisions,
        python,
        budget: Duration::from_secs(budget),
        out,
    };
    check(&opts)
}

fn check(o: &RunOptions) -> Result<()> {
    let start = Instant::now();
    let bin = o.work.join("bin");
    for exe in ["valor-bert-it", "valor-bert-model"] {
        if !bin.join(exe).is_file() {
            bail!(
                "{} is missing: run the check through run.sh (it unpacks {}/bin/*.gz), after `cargo xtask gpu-check prepare`",
                bin.join(exe).display(),
                o.dir.display()
            );
        }
    }
    let Some(shared) = &o.shared else {
        bail!(
            "the shared folder (models/all-MiniLM-L6-v2, fixtures/hf-parity) was not found: pass --shared PATH"
        );
    };
    let logs = o.work.join("logs");
    std::fs::create_dir_all(&logs)?;
    let criterion_home = o.work.join("criterion");
    let manifest: Value = std::fs::read_to_string(o.dir.join("manifest.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    let mut report = json!({
        "schema": "valor.gpu-check/1",
        "date_utc": crate::bench::report::date_utc(),
        "quick": o.quick,
        "budget_s": o.budget.as_secs(),
        "manifest": manifest,
        "machine": machine(),
        "not_measured": [
            "--devices N (data-parallel): the bench has no data-parallel row and the check carries no valor CLI built with wgpu",
        ],
    });
    let left = |start: &Instant| o.budget.saturating_sub(start.elapsed());

    // 1. The valor-bert tests on wgpu.
    let limit = left(&start).min(Duration::from_secs(if o.quick { 1800 } else { 180 }));
    eprintln!(
        "[gpu-check] valor-bert tests on wgpu (limit {}s)",
        limit.as_secs()
    );
    let mut tests = Command::new(bin.join("valor-bert-it"));
    // --nocapture: the half-precision test prints its measured error.
    tests.args(o.test_filter.as_slice()).arg("--nocapture");
    tests
        .env("VALOR_TEST_BACKEND", "wgpu")
        .env("VALOR_RUN_SHARED_DIR", shared)
        .current_dir(&o.work);
    let r = run_limited(&mut tests, limit, &logs.join("tests.log"))?;
    let text = std::fs::read_to_string(logs.join("tests.log")).unwrap_or_default();
    report["tests"] = json!({
        "ok": r.ok,
        "timed_out": r.timed_out,
        "wall_s": round(r.wall_s, 1),
        "summary": text.lines().filter(|l| l.starts_with("test result:")).collect::<Vec<_>>(),
        "half": text.lines().filter(|l| l.contains("[half]")).collect::<Vec<_>>(),
        "failures": text.lines().filter(|l| l.ends_with("FAILED")).collect::<Vec<_>>(),
        "filter": o.test_filter,
        "log": "logs/tests.log",
    });
    write_report(o, &report)?;

    // 2. Valor's model rows, per precision.
    let (seq, batch) = if o.quick { (32, 4) } else { (128, 32) };
    let n = if o.quick { 512 } else { 8192 };
    let precisions: Vec<&str> = match &o.precisions {
        Some(list) => list.iter().map(String::as_str).collect(),
        None if o.quick => vec!["fp32", "f16"],
        None => vec!["fp32", "f16", "bf16"],
    };
    let mut rows = Vec::new();
    for &p in &precisions {
        let dtype = if p == "fp32" { "f32" } else { p };
        let mut ids = vec![(
            format!("matmul/{dtype}_{n}"),
            2.0 * (n as f64).powi(3),
            None,
        )];
        for (name, geom, _) in MODELS {
            for train in [false, true] {
                let kind = if train { "train" } else { "infer" };
                let flops = bert_flops(geom, seq, batch) * if train { 3.0 } else { 1.0 };
                ids.push((
                    format!("{name}_{kind}/seq{seq}_b{batch}"),
                    flops,
                    Some((name, train)),
                ));
            }
        }
        let mut peak = None;
        for (id, flops, model) in ids {
            let mut row = json!({"precision": p, "id": id});
            let limit = left(&start);
            if limit < Duration::from_secs(20) {
                row["skipped"] = json!("the time budget ran out");
                rows.push(row);
                continue;
            }
            eprintln!("[gpu-check] valor {id} in {p}");
            let estimates = criterion_home.join(&id).join("new").join("estimates.json");
            let _ = std::fs::remove_file(&estimates);
            let mut cmd = Command::new(bin.join("valor-bert-model"));
            cmd.args(["--bench", "--exact", &id])
                .args(["--warm-up-time", "1", "--measurement-time", "3"])
                .env("CRITERION_HOME", &criterion_home)
                .env("VALOR_BENCH_BACKEND", "wgpu")
                .env("VALOR_BENCH_PRECISION", p)
                .env("VALOR_BENCH_GPU_SHAPE", format!("{seq},{batch}"))
                .env("VALOR_BENCH_MATMUL_N", n.to_string())
                .env("VALOR_SHARED_DIR", shared)
                .current_dir(&o.work);
            let log = logs.join(format!("{}-{p}.log", id.replace('/', "_")));
            let r = run_limited(&mut cmd, limit.min(Duration::from_secs(240)), &log)?;
            row["process_wall_s"] = json!(round(r.wall_s, 1));
            let median = std::fs::read_to_string(&estimates)
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .and_then(|v| v.pointer("/median/point_estimate").and_then(Value::as_f64))
                .map(|ns| ns / 1e9);
            match (r.ok, median) {
                (true, Some(s)) => {
                    let g = flops / s / 1e9;
                    row["valor_median_s"] = json!(s);
                    row["valor_gflop_per_s"] = json!(round(g, 1));
                    if model.is_none() {
                        peak = Some(g);
                    } else if let Some(pk) = peak {
                        row["valor_fraction_of_gemm"] = json!(round(g / pk, 3));
                    }
                    if model.is_some() {
                        row["valor_samples_per_s"] = json!(round(batch as f64 / s, 1));
                    }
                }
                _ => {
                    let tail = std::fs::read_to_string(&log).unwrap_or_default();
                    let tail: Vec<&str> = tail.lines().rev().take(5).collect();
                    row["error"] = json!(if r.timed_out {
                        "timed out".to_string()
                    } else {
                        format!(
                            "failed: {}",
                            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                        )
                    });
                }
            }
            row["flops"] = json!(flops);
            row["model"] = json!(model.map(|(m, t)| json!({"name": m, "train": t})));
            rows.push(row);
            report["rows"] = json!(rows);
            write_report(o, &report)?;
        }
    }

    // 3. The PyTorch peer on CUDA.
    let torch = Command::new(&o.python)
        .args([
            "-c",
            "import torch; print(torch.__version__, torch.cuda.is_available())",
        ])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string());
    let mut peers = Vec::new();
    match &torch {
        Some(v) if v.ends_with("True") => {
            for &p in &precisions {
                for (name, _, peer_model) in MODELS {
                    if left(&start) < Duration::from_secs(30) {
                        peers.push(json!({"precision": p, "model": name, "skipped": "the time budget ran out"}));
                        continue;
                    }
                    eprintln!("[gpu-check] PyTorch peer {name} in {p}");
                    let log = logs.join(format!("peer-{name}-{p}.log"));
                    let mut cmd = Command::new(&o.python);
                    cmd.arg(o.dir.join("gpu_peer.py"))
                        .args(["--model", peer_model, "--precision", p])
                        .args(["--seq", &seq.to_string(), "--batch", &batch.to_string()])
                        .arg("--minilm-dir")
                        .arg(shared.join("models/all-MiniLM-L6-v2"));
                    let r =
                        run_limited(&mut cmd, left(&start).min(Duration::from_secs(120)), &log)?;
                    let line = std::fs::read_to_string(&log)
                        .unwrap_or_default()
                        .lines()
                        .rev()
                        .find_map(|l| serde_json::from_str::<Value>(l).ok());
                    peers.push(match (r.ok, line) {
                        (true, Some(v)) => v,
                        _ => json!({"precision": p, "model": name, "error": format!("failed or timed out; see logs/peer-{name}-{p}.log")}),
                    });
                    report["peers"] = json!(peers);
                    write_report(o, &report)?;
                }
            }
        }
        other => {
            report["peers"] = json!({"not_run": match other {
                Some(v) => format!("{} has torch {v} (no CUDA device)", o.python),
                None => format!("{} has no torch", o.python),
            }});
        }
    }
    report["total_wall_s"] = json!(round(start.elapsed().as_secs_f64(), 1));
    write_report(o, &report)?;
    eprintln!("[gpu-check] wrote {}", o.out.display());
    Ok(())
}

struct Finished {
    ok: bool,
    timed_out: bool,
    wall_s: f64,
}

/// Runs `cmd` with stdout and stderr into `log`, killed after `limit`.
fn run_limited(cmd: &mut Command, limit: Duration, log: &Path) -> Result<Finished> {
    let file = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let t = Instant::now();
    let mut child = cmd
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .with_context(|| format!("starting {cmd:?}"))?;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Finished {
                ok: status.success(),
                timed_out: false,
                wall_s: t.elapsed().as_secs_f64(),
            });
        }
        if t.elapsed() >= limit {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(Finished {
                ok: false,
                timed_out: true,
                wall_s: t.elapsed().as_secs_f64(),
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The GPUs (nvidia-smi where it exists), the CPU and the OS.
fn machine() -> Value {
    let run = |prog: &str, args: &[&str]| {
        Command::new(prog)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|t| {
        t.lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map(|s| s.trim().to_string())
    });
    json!({
        "nvidia_smi": run("nvidia-smi", &["--query-gpu=name,memory.total,driver_version,clocks.max.sm", "--format=csv,noheader"]),
        "vulkan_devices": run("vulkaninfo", &["--summary"]).map(|t| {
            t.lines().filter(|l| l.contains("deviceName")).map(|l| l.trim().to_string()).collect::<Vec<_>>()
        }),
        "cpu": cpu,
        "cores": std::thread::available_parallelism().map(|n| n.get()).ok(),
        "kernel": run("uname", &["-sr"]),
    })
}

/// Dense peak TFLOP/s from NVIDIA's datasheets (fp32 on the CUDA cores,
/// f16/bf16 on the tensor cores, without sparsity), by the name
/// nvidia-smi reports; `None` for a GPU not listed.
fn datasheet_peak_tflops(gpu: &str, precision: &str) -> Option<f64> {
    let table: [(&str, f64, f64); 5] = [
        ("H200", 67.0, 989.0),
        ("H100 PCIe", 51.0, 756.0),
        ("H100", 67.0, 989.0),
        ("A100", 19.5, 312.0),
        ("L4", 30.3, 121.0),
    ];
    let (_, fp32, half) = table.iter().find(|(name, _, _)| gpu.contains(name))?;
    Some(if precision == "fp32" { *fp32 } else { *half })
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

fn write_report(o: &RunOptions, report: &Value) -> Result<()> {
    let json_path = o.out.with_extension("json");
    std::fs::write(&json_path, serde_json::to_string_pretty(report)?)
        .with_context(|| format!("writing {}", json_path.display()))?;
    std::fs::write(&o.out, markdown(report)).with_context(|| format!("writing {}", o.out.display()))
}

fn markdown(r: &Value) -> String {
    let s = |v: &Value| match v {
        Value::Null => "—".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let gpu = r["machine"]["nvidia_smi"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let mut md = String::new();
    md.push_str("# GPU check (`cargo xtask gpu-check`)\n\n");
    md.push_str(&format!(
        "- date {} · commit {} · bench profile {} · quick {}\n- GPU (nvidia-smi): {}\n- Vulkan devices: {}\n- CPU: {} ({} cores) · {}\n\n",
        s(&r["date_utc"]),
        s(&r["manifest"]["git_commit"]),
        s(&r["manifest"]["bench_profile"]),
        s(&r["quick"]),
        if gpu.is_empty() { "none".into() } else { gpu.clone() },
        s(&r["machine"]["vulkan_devices"]),
        s(&r["machine"]["cpu"]),
        s(&r["machine"]["cores"]),
        s(&r["machine"]["kernel"]),
    ));
    let t = &r["tests"];
    md.push_str(&format!(
        "## valor-bert tests on wgpu{}\n\nok {} · {} s{} · {}\n\n",
        t["filter"]
            .as_str()
            .map(|f| format!(" (only those matching `{f}`)"))
            .unwrap_or_default(),
        s(&t["ok"]),
        s(&t["wall_s"]),
        if t["timed_out"] == true {
            " (timed out)"
        } else {
            ""
        },
        t["summary"]
            .as_array()
            .map(|a| a.iter().map(s).collect::<Vec<_>>().join("; "))
            .unwrap_or_default()
    ));
    for line in t["half"].as_array().into_iter().flatten() {
        md.push_str(&format!("- {}\n", s(line)));
    }
    for line in t["failures"].as_array().into_iter().flatten() {
        md.push_str(&format!("- FAILED: {}\n", s(line)));
    }
    md.push_str("\n## Model rows (Valor on wgpu; PyTorch eager on CUDA)\n\n");
    md.push_str("| precision | row | Valor median s | Valor samples/s | Valor GFLOP/s | of Valor's GEMM | of datasheet peak | PyTorch median s | Valor ÷ PyTorch throughput | process wall s |\n|---|---|---|---|---|---|---|---|---|---|\n");
    let peers = r["peers"].as_array().cloned().unwrap_or_default();
    for row in r["rows"].as_array().into_iter().flatten() {
        let p = row["precision"].as_str().unwrap_or("");
        let peer_s = row["model"]["name"].as_str().and_then(|m| {
            let key = if row["model"]["train"] == true {
                "train"
            } else {
                "infer"
            };
            peers
                .iter()
                .find(|v| v["model"] == m && v["precision"] == p)
                .and_then(|v| v[key]["median_s"].as_f64())
        });
        let valor_s = row["valor_median_s"].as_f64();
        let datasheet = datasheet_peak_tflops(&gpu, p).and_then(|peak| {
            row["valor_gflop_per_s"]
                .as_f64()
                .map(|g| format!("{:.3}", g / (peak * 1e3)))
        });
        let status = row["error"].as_str().or(row["skipped"].as_str());
        md.push_str(&format!(
            "| {p} | `{}` | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            s(&row["id"]),
            status.map_or_else(
                || valor_s.map_or("—".into(), |v| format!("{v:.4}")),
                |e| e.to_string()
            ),
            s(&row["valor_samples_per_s"]),
            s(&row["valor_gflop_per_s"]),
            s(&row["valor_fraction_of_gemm"]),
            datasheet.unwrap_or_else(|| "—".into()),
            peer_s.map_or("—".into(), |v| format!("{v:.4}")),
            match (valor_s, peer_s) {
                (Some(v), Some(p)) => format!("{:.2}", p / v),
                _ => "—".into(),
            },
            s(&row["process_wall_s"]),
        ));
    }
    md.push_str(&format!(
        "\nPeers: {}\n\nEach Valor row is one process (model loading, shader compilation and first-use autotuning included in its wall time; the median is criterion's, after warm-up). Not measured: {}.\nTotal {} s.\n",
        match &r["peers"] {
            Value::Array(a) => format!("{} runs (gpu_peer.py: PyTorch eager, autocast for f16/bf16)", a.len()),
            other => s(&other["not_run"]),
        },
        r["not_measured"]
            .as_array()
            .map(|a| a.iter().map(s).collect::<Vec<_>>().join("; "))
            .unwrap_or_default(),
        s(&r["total_wall_s"]),
    ));
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datasheet_peaks_match_the_part_name() {
        assert_eq!(
            datasheet_peak_tflops("NVIDIA H100 PCIe, 81559 MiB", "fp32"),
            Some(51.0)
        );
        assert_eq!(
            datasheet_peak_tflops("NVIDIA H100 80GB HBM3", "bf16"),
            Some(989.0)
        );
        assert_eq!(datasheet_peak_tflops("NVIDIA H200", "f16"), Some(989.0));
        assert_eq!(datasheet_peak_tflops("llvmpipe", "fp32"), None);
    }

    /// A row is paired with the peer run of its model and precision, and
    /// the ratio is peer time over Valor time (throughput ratio).
    #[test]
    fn the_report_pairs_each_row_with_its_peer() {
        let report = json!({
            "machine": {"nvidia_smi": "NVIDIA H100 80GB HBM3, 81559 MiB"},
            "tests": {"ok": true, "wall_s": 12.0, "summary": ["test result: ok. 40 passed"], "half": [], "failures": []},
            "rows": [
                {"precision": "f16", "id": "matmul/f16_8192", "valor_median_s": 0.002, "valor_gflop_per_s": 500000.0},
                {"precision": "f16", "id": "base_train/seq128_b32", "valor_median_s": 0.2,
                 "valor_gflop_per_s": 100000.0, "model": {"name": "base", "train": true}},
                {"precision": "fp32", "id": "base_train/seq128_b32", "error": "timed out",
                 "model": {"name": "base", "train": true}},
            ],
            "peers": [
                {"model": "base", "precision": "f16", "infer": {"median_s": 0.05}, "train": {"median_s": 0.1}},
            ],
        });
        let md = markdown(&report);
        let row = md
            .lines()
            .find(|l| l.starts_with("| f16 | `base_train"))
            .unwrap();
        // 100 TFLOP/s of 989 dense; PyTorch 0.1 s / Valor 0.2 s = 0.50.
        assert!(
            row.contains("| 0.101 |") && row.contains("| 0.1000 | 0.50 |"),
            "{row}"
        );
        assert!(
            md.contains("| fp32 | `base_train/seq128_b32` | timed out |"),
            "{md}"
        );
        assert!(md.contains("test result: ok. 40 passed"));
    }
}
