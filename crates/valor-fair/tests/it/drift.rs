//! Drift statistics against scipy 1.18.1 (and Evidently's rules restated
//! with numpy) on `tests/fixtures/drift/drift.json`, made by
//! `tests/fixtures/drift/make_fixture.py`; tolerance 1e-9 (the fixture's
//! `tolerance`). Large samples are rebuilt here by the script's exact
//! generator.

use serde_json::Value;
use valor_fair::drift::{
    DriftMethod, KsMethod, Sample, chi2_sf, chisquare, drift_test, gammainc, gammaincc,
    jensenshannon, ks_2samp, kstwo_sf, wasserstein_distance, wasserstein_normed,
};
use valor_testkit::{Tolerance, assert_close};

fn fixture() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/drift/drift.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn tol(f: &Value) -> Tolerance {
    Tolerance::abs(f["tolerance"].as_f64().unwrap())
}

fn num(v: &Value) -> f64 {
    match v {
        Value::String(s) if s == "inf" => f64::INFINITY,
        Value::String(s) if s == "-inf" => f64::NEG_INFINITY,
        v => v.as_f64().unwrap(),
    }
}

fn nums(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(num).collect()
}

/// The script's `u(i, s)`: exact in binary floating point.
fn u(n: usize, s: u64) -> Vec<f64> {
    (0..n as u64)
        .map(|i| {
            (i.wrapping_mul(2_654_435_761).wrapping_add(s * 40503) % (1u64 << 32)) as f64
                / 4_294_967_296.0
        })
        .collect()
}

/// The script's `tri(n, s, scale, shift[, rounded])`.
fn generate(spec: &Value) -> Vec<f64> {
    let n = spec["n"].as_u64().unwrap() as usize;
    let s = spec["seed"].as_u64().unwrap();
    let (scale, shift) = (num(&spec["scale"]), num(&spec["shift"]));
    let rounded = spec["rounded"].as_bool().unwrap_or(false);
    u(n, s)
        .iter()
        .zip(u(n, s + 7))
        .map(|(a, b)| {
            let x = (a + b) * scale + shift;
            if rounded { (x * 8.0).floor() / 8.0 } else { x }
        })
        .collect()
}

/// The script's `cats(n, seed, weights)`.
fn cats(spec: &Value) -> Vec<u32> {
    let n = spec["n"].as_u64().unwrap() as usize;
    let w = nums(&spec["weights"]);
    let total: f64 = w.iter().sum();
    let mut edges = Vec::new();
    let mut acc = 0.0;
    for x in &w {
        acc += x;
        edges.push(acc / total);
    }
    u(n, spec["seed"].as_u64().unwrap())
        .iter()
        .map(|x| edges.partition_point(|e| e <= x) as u32)
        .collect()
}

fn sample(case: &Value, key: &str) -> Vec<f64> {
    match case.get(key) {
        Some(v) => nums(v),
        None => generate(&case[format!("gen_{key}")]),
    }
}

#[test]
fn ks_2samp_matches_scipy_exact_and_asymptotic() {
    let f = fixture();
    let mut methods = Vec::new();
    for (i, case) in f["ks_2samp"].as_array().unwrap().iter().enumerate() {
        let (a, b) = (sample(case, "a"), sample(case, "b"));
        let r = ks_2samp(&a, &b).unwrap();
        assert_close(
            &format!("ks[{i}].statistic"),
            r.statistic,
            num(&case["statistic"]),
            tol(&f),
        );
        assert_close(
            &format!("ks[{i}].p_value"),
            r.p_value,
            num(&case["p_value"]),
            tol(&f),
        );
        methods.push(r.method);
    }
    assert!(methods.contains(&KsMethod::Exact) && methods.contains(&KsMethod::Asymptotic));
}

#[test]
fn kstwo_sf_matches_scipy_in_every_region() {
    let f = fixture();
    for case in f["kstwo_sf"].as_array().unwrap() {
        let (x, n) = (num(&case["x"]), num(&case["n"]));
        assert_close(
            &format!("kstwo.sf({x}, {n})"),
            kstwo_sf(x, n),
            num(&case["sf"]),
            tol(&f),
        );
    }
}

#[test]
fn chisquare_and_incomplete_gamma_match_scipy() {
    let f = fixture();
    for (i, case) in f["chisquare"].as_array().unwrap().iter().enumerate() {
        let r = chisquare(&nums(&case["f_obs"]), &nums(&case["f_exp"])).unwrap();
        assert_close(
            &format!("chisquare[{i}].statistic"),
            r.statistic,
            num(&case["statistic"]),
            tol(&f),
        );
        assert_close(
            &format!("chisquare[{i}].p_value"),
            r.p_value,
            num(&case["p_value"]),
            tol(&f),
        );
    }
    for case in f["chi2_sf"].as_array().unwrap() {
        let (x, df) = (num(&case["x"]), num(&case["df"]));
        assert_close(
            &format!("chi2.sf({x}, {df})"),
            chi2_sf(x, df),
            num(&case["sf"]),
            tol(&f),
        );
    }
    for case in f["gammaincc"].as_array().unwrap() {
        let (a, x) = (num(&case["a"]), num(&case["x"]));
        assert_close(
            &format!("gammaincc({a}, {x})"),
            gammaincc(a, x),
            num(&case["q"]),
            tol(&f),
        );
        assert_close(
            &format!("gammainc({a}, {x})"),
            gammainc(a, x),
            num(&case["p"]),
            tol(&f),
        );
    }
    // scipy refuses frequencies whose totals differ; so do we.
    assert!(chisquare(&[1.0, 2.0], &[1.0, 1.0]).is_err());
}

#[test]
fn jensenshannon_and_wasserstein_match_scipy() {
    let f = fixture();
    for (i, case) in f["jensenshannon"].as_array().unwrap().iter().enumerate() {
        let (p, q) = (nums(&case["p"]), nums(&case["q"]));
        assert_close(
            &format!("js[{i}]"),
            jensenshannon(&p, &q, None).unwrap(),
            num(&case["natural"]),
            tol(&f),
        );
        assert_close(
            &format!("js2[{i}]"),
            jensenshannon(&p, &q, Some(2.0)).unwrap(),
            num(&case["base2"]),
            tol(&f),
        );
    }
    for (i, case) in f["wasserstein"].as_array().unwrap().iter().enumerate() {
        let (a, b) = (sample(case, "a"), sample(case, "b"));
        assert_close(
            &format!("w[{i}]"),
            wasserstein_distance(&a, &b).unwrap(),
            num(&case["distance"]),
            tol(&f),
        );
        assert_close(
            &format!("wn[{i}]"),
            wasserstein_normed(&a, &b).unwrap(),
            num(&case["normed"]),
            tol(&f),
        );
    }
}

#[test]
fn evidently_default_rules_choose_and_score_as_evidently() {
    let f = fixture();
    let mut seen = Vec::new();
    for case in f["evidently"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let r = if case["kind"] == "numeric" {
            let (a, b) = (generate(&case["gen_a"]), generate(&case["gen_b"]));
            drift_test(name, Sample::Numeric(&a), Sample::Numeric(&b)).unwrap()
        } else {
            let (a, b) = (cats(&case["cat_a"]), cats(&case["cat_b"]));
            drift_test(name, Sample::Categorical(&a), Sample::Categorical(&b)).unwrap()
        };
        let method = serde_json::to_value(r.method).unwrap();
        assert_eq!(method, case["method"], "{name}: method");
        assert_close(
            &format!("{name}.score"),
            r.score,
            num(&case["score"]),
            tol(&f),
        );
        assert_close(&format!("{name}.psi"), r.psi, num(&case["psi"]), tol(&f));
        assert_eq!(
            r.drifted,
            case["drifted"].as_bool().unwrap(),
            "{name}: drifted"
        );
        seen.push(r.method);
    }
    for m in [
        DriftMethod::Ks,
        DriftMethod::ChiSquare,
        DriftMethod::ZTest,
        DriftMethod::Wasserstein,
        DriftMethod::JensenShannon,
    ] {
        assert!(seen.contains(&m), "the fixture exercises {m:?}");
    }
}
