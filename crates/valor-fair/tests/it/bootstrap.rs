//! Bootstrap intervals: coverage at about the nominal rate on simulated data,
//! agreement with an explicit row-resampling bootstrap, determinism.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use valor_fair::{AuditConfig, AuditInput, BootstrapConfig, LabelSet, audit};

/// Rows of two groups with selection rates `pa`, `pb` (labels random).
fn simulate(rng: &mut ChaCha8Rng, n_per_group: usize, pa: f64, pb: f64) -> AuditInput {
    let mut t = Vec::new();
    let mut p = Vec::new();
    let mut g = Vec::new();
    for (name, rate) in [("a", pa), ("b", pb)] {
        for _ in 0..n_per_group {
            t.push(if rng.random::<f64>() < 0.4 { "1" } else { "0" });
            p.push(if rng.random::<f64>() < rate { "1" } else { "0" });
            g.push(name);
        }
    }
    AuditInput::from_strings(&t, &p, LabelSet::new(&["0", "1"]).ok())
        .unwrap()
        .with_group("g", &g)
        .unwrap()
}

#[test]
fn interval_covers_the_true_disparity_at_about_the_nominal_rate() {
    let mut rng = ChaCha8Rng::seed_from_u64(20240501);
    let (pa, pb) = (0.5, 0.3);
    let simulations = 300;
    let mut covered_dp = 0;
    let mut covered_spd = 0;
    for s in 0..simulations {
        let input = simulate(&mut rng, 400, pa, pb);
        let mut config = AuditConfig::default().privilege("g", "a");
        config.bootstrap = Some(BootstrapConfig::new(400, s));
        let report = audit(&input, &config).unwrap();
        let spec = &report.specs[0];
        let dp = spec.fairlearn.as_ref().unwrap().intervals.as_ref().unwrap();
        if dp
            .get("demographic_parity_difference")
            .copied()
            .flatten()
            .unwrap()
            .contains(pa - pb)
        {
            covered_dp += 1;
        }
        let spd = spec.aif360.as_ref().unwrap().intervals.as_ref().unwrap();
        if spd
            .get("statistical_parity_difference")
            .copied()
            .flatten()
            .unwrap()
            .contains(pb - pa)
        {
            covered_spd += 1;
        }
    }
    let rate_dp = covered_dp as f64 / simulations as f64;
    let rate_spd = covered_spd as f64 / simulations as f64;
    // nominal 0.95; the coverage estimate has sd ≈ 0.013 over 300 simulations
    assert!((0.91..=0.985).contains(&rate_dp), "DP coverage {rate_dp}");
    assert!(
        (0.91..=0.985).contains(&rate_spd),
        "SPD coverage {rate_spd}"
    );
}

/// The count-level bootstrap is the row bootstrap: compare the spread of a
/// disparity with an explicit resampling of row indices.
#[test]
fn multinomial_resampling_matches_row_resampling() {
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    let n = 300;
    let mut rows: Vec<(bool, bool, usize)> = Vec::new();
    for i in 0..2 * n {
        let g = i / n;
        let y = rng.random::<f64>() < 0.5;
        let p = rng.random::<f64>() < if g == 0 { 0.6 } else { 0.35 };
        rows.push((y, p, g));
    }
    let dp = |rs: &[(bool, bool, usize)]| -> f64 {
        let mut sel = [0.0f64; 2];
        let mut cnt = [0.0f64; 2];
        for (_, p, g) in rs {
            cnt[*g] += 1.0;
            if *p {
                sel[*g] += 1.0;
            }
        }
        let (a, b) = (sel[0] / cnt[0], sel[1] / cnt[1]);
        (a - b).abs()
    };
    let reps = 2000;
    let mut row_boot = Vec::with_capacity(reps);
    for _ in 0..reps {
        let sample: Vec<_> = (0..rows.len())
            .map(|_| rows[rng.random_range(0..rows.len())])
            .collect();
        row_boot.push(dp(&sample));
    }
    let t: Vec<&str> = rows.iter().map(|r| if r.0 { "1" } else { "0" }).collect();
    let p: Vec<&str> = rows.iter().map(|r| if r.1 { "1" } else { "0" }).collect();
    let g: Vec<&str> = rows
        .iter()
        .map(|r| if r.2 == 0 { "a" } else { "b" })
        .collect();
    let input = AuditInput::from_strings(&t, &p, None)
        .unwrap()
        .with_group("g", &g)
        .unwrap();
    let mut config = AuditConfig::default();
    config.bootstrap = Some(BootstrapConfig {
        resamples: reps,
        seed: 1,
        level: 0.9,
    });
    let report = audit(&input, &config).unwrap();
    let ours = report.specs[0]
        .fairlearn
        .as_ref()
        .unwrap()
        .intervals
        .as_ref()
        .unwrap()
        .get("demographic_parity_difference")
        .copied()
        .flatten()
        .unwrap();
    row_boot.sort_by(f64::total_cmp);
    let q = |x: f64| row_boot[((reps - 1) as f64 * x).round() as usize];
    let (lo, hi) = (q(0.05), q(0.95));
    // the two 90% intervals agree to Monte Carlo error (width ≈ 0.13)
    assert!((ours.lower - lo).abs() < 0.012, "{} vs {lo}", ours.lower);
    assert!((ours.upper - hi).abs() < 0.012, "{} vs {hi}", ours.upper);
    assert_eq!(ours.resamples_used as usize, reps);
}

#[test]
fn same_seed_same_intervals_and_every_estimate_has_one() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let input = simulate(&mut rng, 150, 0.4, 0.45);
    let mut config = AuditConfig::default().privilege("g", "b");
    config.bootstrap = Some(BootstrapConfig::new(200, 42));
    let a = audit(&input, &config).unwrap();
    let b = audit(&input, &config).unwrap();
    assert_eq!(a, b);
    config.bootstrap = Some(BootstrapConfig::new(200, 43));
    let c = audit(&input, &config).unwrap();
    assert_ne!(a.specs[0].fairlearn, c.specs[0].fairlearn);
    let s = &a.specs[0];
    for (name, m) in s.metrics.iter() {
        let i = m.intervals.as_ref();
        if name == "count" {
            assert!(i.is_none());
            continue;
        }
        let i = i.unwrap_or_else(|| panic!("{name} has no intervals"));
        assert!(
            i.overall.is_some() && i.difference_between_groups.is_some(),
            "{name}"
        );
        assert!(i.by_group.values().all(Option::is_some), "{name}");
    }
    for iv in [
        s.fairlearn.as_ref().unwrap().intervals.as_ref().unwrap(),
        s.aif360.as_ref().unwrap().intervals.as_ref().unwrap(),
    ] {
        for (name, i) in iv.iter() {
            assert!(i.is_some(), "{name}");
        }
    }
    assert!(s.between_group_theil_index_interval.is_some());
    let d = a.dataset.intervals.as_ref().unwrap();
    assert!(d.get("theil_index").copied().flatten().is_some());
    let b_info = a.bootstrap.as_ref().unwrap();
    assert_eq!((b_info.resamples, b_info.seed), (200, 42));
}
