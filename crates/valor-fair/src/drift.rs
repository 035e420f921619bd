//! Drift statistics on plain slices, computing what scipy computes, and
//! Evidently's default choice of test per feature.
//!
//! - [`ks_2samp`] computes `scipy.stats.ks_2samp` (two-sided,
//!   `method='auto'`: exact when both samples have at most 10,000 values,
//!   else the asymptotic distribution of the one-sample statistic,
//!   `kstwo`, whose survival function is [`kstwo_sf`]).
//! - [`chisquare`] computes `scipy.stats.chisquare` (p-value from the
//!   chi-square survival function [`chi2_sf`], through the regularised
//!   upper incomplete gamma function [`gammaincc`]).
//! - [`jensenshannon`] computes `scipy.spatial.distance.jensenshannon`.
//! - [`wasserstein_distance`] computes `scipy.stats.wasserstein_distance`
//!   (1-D).
//! - [`psi`], [`binned_percents`], [`z_test_proportions`] and
//!   [`drift_test`] follow Evidently's `psi`, `get_binned_data`,
//!   `z_stat_test` and `_get_default_stattest` (reference of at most 1,000
//!   rows: KS for numeric, chi-square for categorical (Z-test with two
//!   values), p-values below 0.05 (KS: at most) are drift; more rows:
//!   Wasserstein distance normed by the reference's standard deviation for
//!   numeric and Jensen–Shannon distance (base 2, as Evidently calls scipy)
//!   for categorical, at least 0.1 is drift; numeric features with at most
//!   five distinct values are treated as categorical).
//!
//! Tested against scipy on `tests/fixtures/drift/` (its producing script is
//! beside it) to 1e-9.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
pub use crate::kstwo::kstwo_sf;

fn finite_sorted(what: &str, x: &[f64]) -> Result<Vec<f64>> {
    if x.is_empty() {
        return Err(Error::Empty {
            what: format!("{what} (a drift statistic needs at least one value)"),
        });
    }
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        return Err(Error::Mismatch {
            what: format!("{what}[{i}]"),
            why: format!("{} is not a finite number", x[i]),
        });
    }
    let mut s = x.to_vec();
    s.sort_by(f64::total_cmp);
    Ok(s)
}

/// How [`ks_2samp`] computed its p-value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KsMethod {
    /// Exact distribution of the two-sample statistic.
    Exact,
    /// Asymptotic (`kstwo.sf(d, round(n·m/(n+m)))`).
    Asymptotic,
}

/// The two-sample Kolmogorov–Smirnov test.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct KsTest {
    /// sup |F₁ − F₂| of the two empirical CDFs.
    pub statistic: f64,
    pub p_value: f64,
    pub method: KsMethod,
}

/// `numpy.linspace(0, 1, n + 1)[k]`: the values an ECDF of `n` points takes.
fn ecdf_value(k: usize, n: usize) -> f64 {
    if k == n {
        1.0
    } else {
        k as f64 * (1.0 / n as f64)
    }
}

/// `scipy.stats.ks_2samp(a, b)` (two-sided, `method='auto'`).
pub fn ks_2samp(a: &[f64], b: &[f64]) -> Result<KsTest> {
    let a = finite_sorted("ks_2samp sample 1", a)?;
    let b = finite_sorted("ks_2samp sample 2", b)?;
    let (n1, n2) = (a.len(), b.len());
    let (mut i, mut j) = (0, 0);
    let (mut max_d, mut min_d) = (f64::NEG_INFINITY, f64::INFINITY);
    while i < n1 || j < n2 {
        let x = match (a.get(i), b.get(j)) {
            (Some(&x), Some(&y)) => x.min(y),
            (Some(&x), None) => x,
            (None, Some(&y)) => y,
            (None, None) => break,
        };
        while i < n1 && a[i] <= x {
            i += 1;
        }
        while j < n2 && b[j] <= x {
            j += 1;
        }
        let d = ecdf_value(i, n1) - ecdf_value(j, n2);
        max_d = max_d.max(d);
        min_d = min_d.min(d);
    }
    let min_s = (-min_d).clamp(0.0, 1.0);
    let d = if min_s > max_d { min_s } else { max_d };
    let mut method = if n1.max(n2) <= 10_000 {
        KsMethod::Exact
    } else {
        KsMethod::Asymptotic
    };
    let mut p = f64::NAN;
    if method == KsMethod::Exact {
        match ks_exact_p(n1 as i64, n2 as i64, d) {
            Some(q) => p = q,
            None => method = KsMethod::Asymptotic,
        }
    }
    if method == KsMethod::Asymptotic {
        let (m, n) = (n1.max(n2) as f64, n1.min(n2) as f64);
        let en = m * n / (m + n);
        p = crate::kstwo::kstwo_sf(d, en.round_ties_even());
    }
    Ok(KsTest {
        statistic: d,
        p_value: p.clamp(0.0, 1.0),
        method,
    })
}

fn gcd(mut a: i64, mut b: i64) -> i64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// scipy's `_attempt_exact_2kssamp` (two-sided): `None` where it falls
/// back to the asymptotic distribution.
fn ks_exact_p(n1: i64, n2: i64, d: f64) -> Option<f64> {
    let g = gcd(n1, n2);
    let lcm = (n1 / g) * n2;
    let h = (d * lcm as f64).round_ties_even() as i64;
    if h == 0 {
        return Some(1.0);
    }
    let p = if n1 == n2 {
        prob_outside_square(n1, h)
    } else {
        outer_prob_inside(n1, n2, g, h)
    };
    (p.is_finite() && (0.0..=1.0).contains(&p)).then_some(p)
}

/// scipy's `_compute_prob_outside_square`: P(D_{n,n} ≥ h/n).
fn prob_outside_square(n: i64, h: i64) -> f64 {
    let mut p = 0.0;
    let mut k = n / h;
    while k >= 0 {
        let mut p1 = 1.0;
        for j in 0..h {
            p1 = (n - k * h - j) as f64 * p1 / (n + k * h + j + 1) as f64;
        }
        p = p1 * (1.0 - p);
        k -= 1;
    }
    2.0 * p
}

/// scipy's `_compute_outer_prob_inside_method` (Hodges' inside method with
/// Viehmann's recursion for 1 − p).
fn outer_prob_inside(m: i64, n: i64, g: i64, h: i64) -> f64 {
    let (m, n) = if m < n { (n, m) } else { (m, n) };
    let (mg, ng) = ((m / g) as f64, (n / g) as f64);
    let hf = h as f64;
    let mut minj: i64 = 0;
    let mut maxj: i64 = ((hf / mg).ceil() as i64).min(n + 1);
    let mut curlen = maxj - minj;
    let len_a = (2 * maxj + 2).min(n + 1) as usize;
    let mut a = vec![1.0f64; len_a];
    for v in a.iter_mut().take(maxj as usize).skip(minj as usize) {
        *v = 0.0;
    }
    for i in 1..=m {
        let (lastminj, lastlen) = (minj, curlen);
        let fi = i as f64;
        minj = (((ng * fi - hf) / mg).floor() as i64 + 1).max(0).min(n);
        maxj = (((ng * fi + hf) / mg).ceil() as i64).min(n + 1);
        if maxj <= minj {
            return 1.0;
        }
        let mut val = if minj == 0 { 0.0 } else { 1.0 };
        for jj in 0..(maxj - minj) {
            let j = (jj + minj) as f64;
            val = (a[(jj + minj - lastminj) as usize] * fi + val * j) / (fi + j);
            a[jj as usize] = val;
        }
        curlen = maxj - minj;
        if lastlen > curlen {
            let from = (maxj - minj) as usize;
            let to = from + (lastlen - curlen) as usize;
            for v in &mut a[from..to.min(len_a)] {
                *v = 1.0;
            }
        }
    }
    a[(maxj - minj - 1) as usize]
}

/// Pearson's chi-square goodness-of-fit test.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChiSquareTest {
    pub statistic: f64,
    pub p_value: f64,
    /// Degrees of freedom (categories − 1).
    pub df: f64,
}

/// `scipy.stats.chisquare(f_obs, f_exp)`: Σ (o − e)² / e and its p-value
/// from the chi-square distribution with k − 1 degrees of freedom. scipy
/// refuses frequencies whose sums differ by more than 1e-8 (relative); so
/// does this. A category expected 0 times but observed is an infinite
/// statistic, p-value 0.
pub fn chisquare(f_obs: &[f64], f_exp: &[f64]) -> Result<ChiSquareTest> {
    if f_obs.len() != f_exp.len() {
        return Err(Error::LengthMismatch {
            column: "f_exp".into(),
            expected: f_obs.len(),
            actual: f_exp.len(),
        });
    }
    if f_obs.is_empty() {
        return Err(Error::Empty {
            what: "chisquare (no categories)".into(),
        });
    }
    let (so, se): (f64, f64) = (f_obs.iter().sum(), f_exp.iter().sum());
    if (so - se).abs() / so.abs().min(se.abs()) > 1e-8 {
        return Err(Error::Mismatch {
            what: "chisquare".into(),
            why: format!(
                "observed frequencies sum to {so} but expected ones to {se}; they must agree"
            ),
        });
    }
    let stat: f64 = f_obs
        .iter()
        .zip(f_exp)
        .map(|(o, e)| (o - e) * (o - e) / e)
        .sum();
    let df = (f_obs.len() - 1) as f64;
    Ok(ChiSquareTest {
        statistic: stat,
        p_value: chi2_sf(stat, df),
        df,
    })
}

/// Survival function of the chi-square distribution (`scipy.stats.chi2.sf`,
/// `scipy.special.chdtrc`): Q(df/2, x/2).
pub fn chi2_sf(x: f64, df: f64) -> f64 {
    if x.is_nan() || df.is_nan() {
        return f64::NAN;
    }
    if x == f64::INFINITY {
        return 0.0;
    }
    if x <= 0.0 {
        return 1.0;
    }
    if df == 0.0 {
        return 0.0;
    }
    gammaincc(df / 2.0, x / 2.0)
}

/// The regularised upper incomplete gamma function Q(a, x) =
/// Γ(a, x) / Γ(a) (`scipy.special.gammaincc`): a series for x < a + 1, a
/// continued fraction (modified Lentz) otherwise; relative accuracy about
/// 1e-14.
pub fn gammaincc(a: f64, x: f64) -> f64 {
    if a.is_nan() || x.is_nan() || a <= 0.0 || x < 0.0 {
        return f64::NAN;
    }
    if x == 0.0 {
        return 1.0;
    }
    if x.is_infinite() {
        return 0.0;
    }
    if x < a + 1.0 {
        1.0 - gammainc_series(a, x)
    } else {
        gammaincc_fraction(a, x)
    }
}

/// The regularised lower incomplete gamma function P(a, x).
pub fn gammainc(a: f64, x: f64) -> f64 {
    if a.is_nan() || x.is_nan() || a <= 0.0 || x < 0.0 {
        return f64::NAN;
    }
    if x == 0.0 {
        return 0.0;
    }
    if x.is_infinite() {
        return 1.0;
    }
    if x < a + 1.0 {
        gammainc_series(a, x)
    } else {
        1.0 - gammaincc_fraction(a, x)
    }
}

fn log_prefactor(a: f64, x: f64) -> f64 {
    a * x.ln() - x - libm::lgamma(a)
}

fn gammainc_series(a: f64, x: f64) -> f64 {
    let mut ap = a;
    let mut term = 1.0 / a;
    let mut sum = term;
    for _ in 0..10_000 {
        ap += 1.0;
        term *= x / ap;
        sum += term;
        if term.abs() < sum.abs() * 1e-17 {
            break;
        }
    }
    sum * log_prefactor(a, x).exp()
}

fn gammaincc_fraction(a: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let mut b = x + 1.0 - a;
    let mut c = 1.0 / TINY;
    let mut d = 1.0 / b;
    let mut h = d;
    for i in 1..10_000 {
        let an = -(i as f64) * (i as f64 - a);
        b += 2.0;
        d = an * d + b;
        if d.abs() < TINY {
            d = TINY;
        }
        c = b + an / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        let del = d * c;
        h *= del;
        if (del - 1.0).abs() < 1e-16 {
            break;
        }
    }
    log_prefactor(a, x).exp() * h
}

/// `scipy.special.rel_entr(x, y)`.
fn rel_entr(x: f64, y: f64) -> f64 {
    if x > 0.0 && y > 0.0 {
        x * (x / y).ln()
    } else if x == 0.0 && y >= 0.0 {
        0.0
    } else {
        f64::INFINITY
    }
}

/// `scipy.spatial.distance.jensenshannon(p, q, base)`: p and q are
/// normalised to sum to 1; `None` is the natural logarithm.
pub fn jensenshannon(p: &[f64], q: &[f64], base: Option<f64>) -> Result<f64> {
    if p.len() != q.len() {
        return Err(Error::LengthMismatch {
            column: "q".into(),
            expected: p.len(),
            actual: q.len(),
        });
    }
    let (sp, sq): (f64, f64) = (p.iter().sum(), q.iter().sum());
    let mut left = 0.0;
    let mut right = 0.0;
    for (&a, &b) in p.iter().zip(q) {
        let (a, b) = (a / sp, b / sq);
        let m = (a + b) / 2.0;
        left += rel_entr(a, m);
        right += rel_entr(b, m);
    }
    let mut js = left + right;
    if let Some(base) = base {
        js /= base.ln();
    }
    Ok((js / 2.0).sqrt())
}

/// `scipy.stats.wasserstein_distance(u, v)`: the area between the two
/// empirical CDFs.
pub fn wasserstein_distance(u: &[f64], v: &[f64]) -> Result<f64> {
    let u = finite_sorted("wasserstein_distance u", u)?;
    let v = finite_sorted("wasserstein_distance v", v)?;
    let mut all: Vec<f64> = u.iter().chain(&v).copied().collect();
    all.sort_by(f64::total_cmp);
    let (mut i, mut j) = (0usize, 0usize);
    let mut total = 0.0;
    for w in all.windows(2) {
        let x = w[0];
        while i < u.len() && u[i] <= x {
            i += 1;
        }
        while j < v.len() && v[j] <= x {
            j += 1;
        }
        let fu = i as f64 / u.len() as f64;
        let fv = j as f64 / v.len() as f64;
        total += (fu - fv).abs() * (w[1] - w[0]);
    }
    Ok(total)
}

/// `numpy.std` (population, ddof = 0).
pub fn population_std(x: &[f64]) -> f64 {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    (x.iter().map(|v| (v - mean).abs().powi(2)).sum::<f64>() / n).sqrt()
}

/// Evidently's normed Wasserstein distance: [`wasserstein_distance`] over
/// max(std(reference), 0.001).
pub fn wasserstein_normed(reference: &[f64], current: &[f64]) -> Result<f64> {
    let w = wasserstein_distance(reference, current)?;
    Ok(w / population_std(reference).max(0.001))
}

/// A sample of one feature: numbers, or category codes.
#[derive(Clone, Copy, Debug)]
pub enum Sample<'a> {
    Numeric(&'a [f64]),
    Categorical(&'a [u32]),
}

impl Sample<'_> {
    fn len(&self) -> usize {
        match self {
            Sample::Numeric(x) => x.len(),
            Sample::Categorical(x) => x.len(),
        }
    }
}

/// Category keys of both samples (the union, in first-seen order: the
/// order changes sums only in the last bits) and each sample's counts.
fn category_counts(reference: Sample<'_>, current: Sample<'_>) -> (Vec<f64>, Vec<f64>) {
    let mut index: HashMap<u64, usize> = HashMap::new();
    let mut counts: Vec<[f64; 2]> = Vec::new();
    let mut add = |key: u64, side: usize| {
        let next = counts.len();
        let k = *index.entry(key).or_insert(next);
        if k == next {
            counts.push([0.0, 0.0]);
        }
        counts[k][side] += 1.0;
    };
    for (side, s) in [reference, current].into_iter().enumerate() {
        match s {
            Sample::Numeric(x) => {
                for v in x {
                    // -0.0 and 0.0 are one value, as in pandas
                    add((v + 0.0).to_bits(), side);
                }
            }
            Sample::Categorical(x) => {
                for v in x {
                    add(u64::from(*v), side);
                }
            }
        }
    }
    (
        counts.iter().map(|c| c[0]).collect(),
        counts.iter().map(|c| c[1]).collect(),
    )
}

fn n_unique(s: Sample<'_>) -> usize {
    match s {
        Sample::Numeric(x) => {
            let mut v: Vec<u64> = x.iter().map(|v| (v + 0.0).to_bits()).collect();
            v.sort_unstable();
            v.dedup();
            v.len()
        }
        Sample::Categorical(x) => {
            let mut v = x.to_vec();
            v.sort_unstable();
            v.dedup();
            v.len()
        }
    }
}

/// `numpy.histogram_bin_edges(x, bins="sturges")`.
pub fn sturges_edges(x: &[f64]) -> Vec<f64> {
    let (mut lo, mut hi) = x
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
            (l.min(*v), h.max(*v))
        });
    let ptp = hi - lo;
    if lo == hi {
        lo -= 0.5;
        hi += 0.5;
    }
    let width = ptp / ((x.len() as f64).log2() + 1.0);
    let bins = if width > 0.0 {
        ((hi - lo) / width).ceil() as usize
    } else {
        1
    };
    let step = (hi - lo) / bins as f64;
    let mut edges: Vec<f64> = (0..=bins).map(|i| i as f64 * step + lo).collect();
    edges[bins] = hi;
    edges
}

/// `numpy.histogram(x, edges)[0]`: bins are [e_i, e_{i+1}), the last one
/// closed.
fn histogram(x: &[f64], edges: &[f64]) -> Vec<f64> {
    let mut counts = vec![0.0; edges.len() - 1];
    let last = edges.len() - 1;
    for &v in x {
        if v < edges[0] || v > edges[last] {
            continue;
        }
        // the last edge e_k with e_k <= v
        let k = edges.partition_point(|e| *e <= v);
        let bin = (k - 1).min(last - 1);
        counts[bin] += 1.0;
    }
    counts
}

/// Evidently's `get_binned_data`: the share of each sample per bin (a
/// Sturges histogram of both samples together, for numeric features
/// whose reference has more than 20 distinct values) or per category.
/// `fill_zeroes` replaces empty bins by a small share (Evidently's
/// `feel_zeroes`: min share / 10⁶ when that is at most 0.0001, else
/// 0.0001), as PSI needs.
pub fn binned_percents(
    reference: Sample<'_>,
    current: Sample<'_>,
    fill_zeroes: bool,
) -> (Vec<f64>, Vec<f64>) {
    let (mut r, mut c) = match (reference, current) {
        (Sample::Numeric(a), Sample::Numeric(b)) if n_unique(reference) > 20 => {
            let all: Vec<f64> = a.iter().chain(b).copied().collect();
            let edges = sturges_edges(&all);
            (histogram(a, &edges), histogram(b, &edges))
        }
        _ => category_counts(reference, current),
    };
    let (nr, nc) = (reference.len() as f64, current.len() as f64);
    r.iter_mut().for_each(|v| *v /= nr);
    c.iter_mut().for_each(|v| *v /= nc);
    if fill_zeroes {
        for p in [&mut r, &mut c] {
            let min = p
                .iter()
                .copied()
                .filter(|v| *v != 0.0)
                .fold(f64::INFINITY, f64::min);
            let fill = if min <= 0.0001 { min / 1e6 } else { 0.0001 };
            p.iter_mut().filter(|v| **v == 0.0).for_each(|v| *v = fill);
        }
    }
    (r, c)
}

/// Evidently's population stability index: Σ (r − c) ln(r / c) over
/// [`binned_percents`] with empty bins filled.
pub fn psi(reference: Sample<'_>, current: Sample<'_>) -> f64 {
    let (r, c) = binned_percents(reference, current, true);
    r.iter().zip(&c).map(|(r, c)| (r - c) * (r / c).ln()).sum()
}

/// Evidently's Z-test for two proportions (two-sided p-value), the share
/// of values other than the smallest category.
pub fn z_test_proportions(reference: &[u32], current: &[u32]) -> f64 {
    let mut keys: Vec<u32> = reference.iter().chain(current).copied().collect();
    keys.sort_unstable();
    keys.dedup();
    let same_single = keys.len() == 1;
    if same_single {
        return 1.0;
    }
    let first = keys[0];
    let (n1, n2) = (reference.len() as f64, current.len() as f64);
    let p1 = reference.iter().filter(|v| **v != first).count() as f64 / n1;
    let p2 = current.iter().filter(|v| **v != first).count() as f64 / n2;
    let p = (p1 * n1 + p2 * n2) / (n1 + n2);
    let z = (p1 - p2) / (p * (1.0 - p) * (1.0 / n1 + 1.0 / n2)).sqrt();
    2.0 * (1.0 - normal_cdf(z.abs()))
}

/// `scipy.special.ndtr`.
pub fn normal_cdf(x: f64) -> f64 {
    0.5 * libm::erfc(-x / std::f64::consts::SQRT_2)
}

/// Which statistic decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftMethod {
    /// Two-sample KS p-value (drift when ≤ threshold).
    Ks,
    /// Chi-square p-value (drift when < threshold).
    ChiSquare,
    /// Z-test p-value for two categories (drift when < threshold).
    ZTest,
    /// Wasserstein distance normed by the reference std (drift when ≥).
    Wasserstein,
    /// Jensen–Shannon distance, base 2 (drift when ≥).
    JensenShannon,
}

/// Whether a feature is a number or a category.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureKind {
    Numeric,
    Categorical,
}

/// One feature's drift, as Evidently's default rule decides it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DriftTest {
    pub feature: String,
    pub kind: FeatureKind,
    pub method: DriftMethod,
    /// The p-value (tests) or the distance.
    pub score: f64,
    /// The test statistic, for the tests (KS D, chi-square, z is not kept).
    pub statistic: Option<f64>,
    pub threshold: f64,
    pub drifted: bool,
    /// Population stability index (reported, not used to decide).
    pub psi: f64,
    pub reference_rows: usize,
    pub current_rows: usize,
}

/// Evidently's default drift test for one feature (see the module doc).
/// `reference` and `current` must be of the same kind and non-empty.
pub fn drift_test(feature: &str, reference: Sample<'_>, current: Sample<'_>) -> Result<DriftTest> {
    if reference.len() == 0 || current.len() == 0 {
        return Err(Error::Empty {
            what: format!("drift of `{feature}` (a sample is empty)"),
        });
    }
    let kind = match (reference, current) {
        (Sample::Numeric(_), Sample::Numeric(_)) => FeatureKind::Numeric,
        (Sample::Categorical(_), Sample::Categorical(_)) => FeatureKind::Categorical,
        _ => {
            return Err(Error::Mismatch {
                what: format!("drift of `{feature}`"),
                why: "reference and current samples are of different kinds".into(),
            });
        }
    };
    let n_values = {
        let (r, _) = category_counts(reference, current);
        r.len()
    };
    let small = reference.len() <= 1000;
    let as_category = kind == FeatureKind::Categorical || n_values <= 5;
    let (method, threshold) = match (small, as_category) {
        (true, false) => (DriftMethod::Ks, 0.05),
        (true, true) if n_values > 2 => (DriftMethod::ChiSquare, 0.05),
        (true, true) => (DriftMethod::ZTest, 0.05),
        (false, false) => (DriftMethod::Wasserstein, 0.1),
        (false, true) => (DriftMethod::JensenShannon, 0.1),
    };
    let (score, statistic) = match method {
        DriftMethod::Ks => {
            let (Sample::Numeric(a), Sample::Numeric(b)) = (reference, current) else {
                unreachable!("KS is chosen for numeric samples only")
            };
            let t = ks_2samp(a, b)?;
            (t.p_value, Some(t.statistic))
        }
        DriftMethod::ChiSquare => {
            let (r, c) = category_counts(reference, current);
            let k = current.len() as f64 / reference.len() as f64;
            let exp: Vec<f64> = r.iter().map(|v| v * k).collect();
            match chisquare(&c, &exp) {
                Ok(t) => (t.p_value, Some(t.statistic)),
                // a category the reference never saw
                Err(_) => (0.0, Some(f64::INFINITY)),
            }
        }
        DriftMethod::ZTest => {
            let codes = |s: Sample<'_>| -> Vec<u32> {
                match s {
                    Sample::Categorical(x) => x.to_vec(),
                    Sample::Numeric(x) => {
                        let mut distinct: Vec<f64> = x.to_vec();
                        distinct.sort_by(f64::total_cmp);
                        distinct.dedup();
                        x.iter()
                            .map(|v| distinct.partition_point(|d| d < v) as u32)
                            .collect()
                    }
                }
            };
            let (r, c) = match (reference, current) {
                (Sample::Numeric(a), Sample::Numeric(b)) => {
                    let all: Vec<f64> = a.iter().chain(b).copied().collect();
                    let codes_all = codes(Sample::Numeric(&all));
                    (codes_all[..a.len()].to_vec(), codes_all[a.len()..].to_vec())
                }
                _ => (codes(reference), codes(current)),
            };
            (z_test_proportions(&r, &c), None)
        }
        DriftMethod::Wasserstein => {
            let (Sample::Numeric(a), Sample::Numeric(b)) = (reference, current) else {
                unreachable!("Wasserstein is chosen for numeric samples only")
            };
            (wasserstein_normed(a, b)?, None)
        }
        DriftMethod::JensenShannon => {
            let (r, c) = binned_percents(reference, current, false);
            (jensenshannon(&r, &c, Some(2.0))?, None)
        }
    };
    let drifted = match method {
        DriftMethod::Ks => score <= threshold,
        DriftMethod::ChiSquare | DriftMethod::ZTest => score < threshold,
        DriftMethod::Wasserstein | DriftMethod::JensenShannon => score >= threshold,
    };
    Ok(DriftTest {
        feature: feature.to_owned(),
        kind,
        method,
        score,
        statistic,
        threshold,
        drifted,
        psi: psi(reference, current),
        reference_rows: reference.len(),
        current_rows: current.len(),
    })
}
