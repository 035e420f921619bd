//! What the bench harness reads from the operating system (Linux `/proc`):
//! peak resident memory of the processes it starts, how much CPU *other*
//! processes used while a workload ran, waiting for a quiet machine, and the
//! machine's description.
//!
//! The conventions are those of `../shared/bench/anchor_common.py`, so both
//! sides of a comparison are judged alike: "foreign cores" = (CPU-seconds the
//! whole system was busy − CPU-seconds of this process and its children) /
//! wall seconds; above 0.15 (`ANCHOR_CONTAM`) a run is *contaminated*. On
//! systems without `/proc` every figure is `None` and nothing waits.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Clock ticks per second of `/proc/stat` and `/proc/<pid>/stat` (USER_HZ,
/// 100 on every Linux configuration in practice).
const HZ: f64 = 100.0;

/// Foreign cores above which a run counts as contaminated.
pub fn contamination_threshold() -> f64 {
    std::env::var("ANCHOR_CONTAM")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.15)
}

/// Busy CPU-seconds of the whole machine since boot (all fields of the `cpu`
/// line but idle and iowait).
fn system_busy_s() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 8 {
        return None;
    }
    let total: u64 = v.iter().sum();
    Some((total - v[3] - v[4]) as f64 / HZ)
}

/// CPU-seconds of this process plus its waited-for children.
fn own_and_children_s() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14..17 of stat(5): utime, stime, cutime, cstime (0-based 11..14 after the comm).
    let sum: f64 = (11..15)
        .map(|i| f.get(i).and_then(|x| x.parse::<f64>().ok()))
        .sum::<Option<f64>>()?;
    Some(sum / HZ)
}

/// `(pid, ppid)` of every process.
fn processes() -> Vec<(u32, u32)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let ppid = stat
            .rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        Some((pid, ppid))
    })
    .collect()
}

/// `VmHWM` (peak resident set) of a process, in MiB.
fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Peak RSS of every live descendant of this process, by pid.
fn descendants_peak(me: u32, peaks: &mut BTreeMap<u32, f64>) {
    let procs = processes();
    let mut family: BTreeSet<u32> = BTreeSet::from([me]);
    // Parents usually have smaller pids, but not always: iterate to a fixed point.
    loop {
        let before = family.len();
        for &(pid, ppid) in &procs {
            if family.contains(&ppid) {
                family.insert(pid);
            }
        }
        if family.len() == before {
            break;
        }
    }
    family.remove(&me);
    for pid in family {
        if let Some(rss) = peak_rss_mib(pid) {
            let e = peaks.entry(pid).or_insert(0.0);
            *e = e.max(rss);
        }
    }
}

/// Watches the processes this one starts while a workload runs: the largest
/// peak RSS among them (sampled every 25 ms; `VmHWM` only grows, so only a
/// peak reached in a process's last 25 ms can be missed) and the CPU other
/// processes used meanwhile.
pub struct Watch {
    stop: Arc<AtomicBool>,
    sampler: Option<JoinHandle<BTreeMap<u32, f64>>>,
    started: Instant,
    busy0: Option<f64>,
    own0: Option<f64>,
}

/// What a [`Watch`] saw.
#[derive(Debug, Clone, Copy)]
pub struct Observed {
    pub wall_s: f64,
    /// Largest peak RSS of one child process, MiB.
    pub peak_rss_mib: Option<f64>,
    /// Mean number of cores other processes kept busy.
    pub foreign_cores: Option<f64>,
}

impl Observed {
    pub fn contaminated(&self) -> bool {
        self.foreign_cores
            .is_some_and(|f| f > contamination_threshold())
    }

    pub fn to_json(self) -> Value {
        json!({
            "wall_s": round(self.wall_s, 3),
            "peak_rss_mib": self.peak_rss_mib.map(|x| round(x, 1)),
            "foreign_cores": self.foreign_cores.map(|x| round(x, 3)),
            "contaminated": self.contaminated(),
        })
    }
}

impl Watch {
    pub fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let me = std::process::id();
        let sampler = std::thread::spawn(move || {
            let mut peaks = BTreeMap::new();
            while !flag.load(Ordering::Relaxed) {
                descendants_peak(me, &mut peaks);
                std::thread::sleep(Duration::from_millis(25));
            }
            peaks
        });
        Self {
            stop,
            sampler: Some(sampler),
            started: Instant::now(),
            busy0: system_busy_s(),
            own0: own_and_children_s(),
        }
    }

    /// Call after the watched children have been waited for.
    pub fn stop(mut self) -> Observed {
        let wall_s = self.started.elapsed().as_secs_f64();
        let foreign = match (self.busy0, self.own0, system_busy_s(), own_and_children_s()) {
            (Some(b0), Some(o0), Some(b1), Some(o1)) if wall_s > 0.0 => {
                Some((((b1 - b0) - (o1 - o0)) / wall_s).max(0.0))
            }
            _ => None,
        };
        self.stop.store(true, Ordering::Relaxed);
        let peaks = self
            .sampler
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        Observed {
            wall_s,
            peak_rss_mib: peaks.values().copied().reduce(f64::max),
            foreign_cores: foreign,
        }
    }
}

/// Cores other processes keep busy, measured over `interval`.
pub fn busy_cores(interval: Duration) -> Option<f64> {
    let (b0, o0, t0) = (system_busy_s()?, own_and_children_s()?, Instant::now());
    std::thread::sleep(interval);
    let (b1, o1) = (system_busy_s()?, own_and_children_s()?);
    Some((((b1 - b0) - (o1 - o0)) / t0.elapsed().as_secs_f64()).max(0.0))
}

/// Waits (up to `ANCHOR_MAX_WAIT` seconds, default `default_max_s`) until other
/// processes use fewer than 0.15 cores (`ANCHOR_QUIET_BUSY`), like the peers'
/// `wait_quiet`; `ANCHOR_NO_WAIT=1` skips the wait. Returns what it saw.
pub fn wait_quiet(default_max_s: f64) -> Value {
    let env_f = |k: &str, d: f64| {
        std::env::var(k)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(d)
    };
    let quiet = env_f("ANCHOR_QUIET_BUSY", 0.15);
    let max_s = env_f("ANCHOR_MAX_WAIT", default_max_s);
    if std::env::var("ANCHOR_NO_WAIT").as_deref() == Ok("1") {
        return json!({"busy_cores_before": busy_cores(Duration::from_millis(500)).map(|b| round(b, 3)), "waited_s": 0.0, "NO_WAIT": true});
    }
    let t0 = Instant::now();
    loop {
        let Some(b) = busy_cores(Duration::from_secs(2)) else {
            return json!({"busy_cores_before": null, "waited_s": 0.0});
        };
        let waited = round(t0.elapsed().as_secs_f64(), 1);
        if b < quiet {
            return json!({"busy_cores_before": round(b, 3), "waited_s": waited});
        }
        if t0.elapsed().as_secs_f64() > max_s {
            eprintln!("[bench] gave up waiting for a quiet machine ({b:.2} foreign cores)");
            return json!({"busy_cores_before": round(b, 3), "waited_s": waited, "NOT_QUIET": true});
        }
        eprintln!("[bench] machine busy ({b:.2} foreign cores), waiting");
        std::thread::sleep(Duration::from_secs(10));
    }
}

pub fn round(x: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (x * p).round() / p
}

/// CPU model, core count, OS, load, Rust toolchain.
pub fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let flags = cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .unwrap_or("");
    let simd: Vec<&str> = [
        "avx2",
        "fma",
        "avx512f",
        "avx512bw",
        "avx512_vnni",
        "avx512_bf16",
        "avx_vnni",
        "amx_tile",
        "amx_bf16",
        "amx_int8",
    ]
    .into_iter()
    .filter(|f| flags.split_whitespace().any(|x| x == *f))
    .collect();
    let rustc = std::process::Command::new("rustc")
        .arg("-V")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    json!({
        "cpu": model,
        "cpu_features": simd,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
        "loadavg_at_start": std::fs::read_to_string("/proc/loadavg").ok().map(|s| s.trim().to_string()),
        "rustc": rustc,
    })
}
