//! The built-in synthetic dataset: financial product recommendations.
//!
//! Each row is an adviser's note about a customer, written in natural English
//! from a latent profile (age, income, savings, debts, horizon, goal, stated
//! risk attitude, occupation; the customer's name and pronouns follow their
//! gender). Two labels among `conservative < balanced < growth`:
//!
//! * the **fair label**, a documented rule on the financial facts alone
//!   ([`fair_label`]); gender and age never enter it;
//! * the **historical label**: the fair label after a biased history. With
//!   probability `bias`, a woman whose fair label is `growth` was given
//!   `balanced`, and with probability `bias / 3` a woman's `balanced` became
//!   `conservative`; with probability `age_bias`, a customer aged 55+ lost
//!   `growth` for `balanced`; then with probability `noise` the label was
//!   replaced by a uniformly random one.
//!
//! Because names and pronouns reveal gender, a model trained on the historical
//! labels can learn the bias through them (a proxy leak). Each row carries a
//! counterfactual twin: the same profile and wording with the gender swapped
//! (name and pronouns), for counterfactual flip-rate tests.
//!
//! Everything is drawn from one ChaCha8 stream seeded by `seed`: the same seed
//! and sizes give the same file on every machine.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::spec::{DEFAULT_MIN_GROUP_SIZE, DatasetSpec, TextSource};
use crate::table::{ColumnData, write_table};

/// Product labels in order of risk; ids are positions.
pub const LABELS: [&str; 3] = ["conservative", "balanced", "growth"];

/// Generator parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SynthConfig {
    pub rows: usize,
    pub seed: u64,
    /// Probability that a woman's `growth` was withheld (became `balanced`).
    pub bias: f64,
    /// Probability that a 55+ customer's `growth` became `balanced`.
    pub age_bias: f64,
    /// Probability that a historical label was replaced by a random one.
    pub noise: f64,
}

impl Default for SynthConfig {
    fn default() -> Self {
        Self {
            rows: 6000,
            seed: 20261129,
            bias: 0.6,
            age_bias: 0.2,
            noise: 0.03,
        }
    }
}

/// The latent facts of one customer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Profile {
    pub female: bool,
    pub name_index: usize,
    pub age: u32,
    pub occupation: &'static str,
    pub income: u32,
    pub savings: u32,
    pub monthly_debt: u32,
    pub horizon_years: u32,
    pub goal: Goal,
    pub risk: Risk,
}

/// What the customer saves for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Goal {
    Retirement,
    House,
    Education,
    EmergencyFund,
    Wealth,
    Income,
}

/// Stated attitude to risk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Risk {
    Low,
    Moderate,
    High,
}

impl Profile {
    /// Savings in months of income.
    pub fn buffer_months(&self) -> f64 {
        self.savings as f64 / (self.income as f64 / 12.0)
    }
    /// Monthly debt payments as a share of monthly income.
    pub fn debt_ratio(&self) -> f64 {
        self.monthly_debt as f64 / (self.income as f64 / 12.0)
    }
    /// `18-34`, `35-54` or `55+`.
    pub fn age_band(&self) -> &'static str {
        match self.age {
            0..=34 => "18-34",
            35..=54 => "35-54",
            _ => "55+",
        }
    }
}

/// The fair rule, on financial facts only. Points: horizon < 3 years 0,
/// 3–7 years 1, 8+ years 2; risk low 0, moderate 1, high 2; debt payments of
/// 35% of income or more −1; savings under 3 months of income −1. An
/// emergency-fund goal is always `conservative`. Then ≤ 1 point
/// `conservative`, 2 `balanced`, ≥ 3 `growth`. Returns the label id.
pub fn fair_label(p: &Profile) -> usize {
    if p.goal == Goal::EmergencyFund {
        return 0;
    }
    let mut points: i32 = match p.horizon_years {
        0..=2 => 0,
        3..=7 => 1,
        _ => 2,
    };
    points += match p.risk {
        Risk::Low => 0,
        Risk::Moderate => 1,
        Risk::High => 2,
    };
    if p.debt_ratio() >= 0.35 {
        points -= 1;
    }
    if p.buffer_months() < 3.0 {
        points -= 1;
    }
    match points {
        i32::MIN..=1 => 0,
        2 => 1,
        _ => 2,
    }
}

const FEMALE_NAMES: [&str; 24] = [
    "Maria", "Emma", "Olivia", "Sophie", "Aisha", "Mei", "Laura", "Fatima", "Grace", "Hannah",
    "Priya", "Chloe", "Elena", "Sarah", "Amara", "Julia", "Nadia", "Rosa", "Ingrid", "Yuki",
    "Claire", "Lucy", "Zoe", "Anna",
];
const MALE_NAMES: [&str; 24] = [
    "James", "Liam", "Noah", "Oliver", "Omar", "Wei", "Lucas", "Ahmed", "Daniel", "Henry", "Raj",
    "Ethan", "Marco", "David", "Kwame", "Julian", "Karim", "Diego", "Lars", "Kenji", "Paul",
    "Thomas", "Adam", "Peter",
];

/// (occupation, income low, income high) in dollars a year.
const OCCUPATIONS: [(&str, u32, u32); 16] = [
    ("nurse", 45_000, 80_000),
    ("teacher", 40_000, 70_000),
    ("software engineer", 80_000, 170_000),
    ("electrician", 45_000, 85_000),
    ("accountant", 55_000, 110_000),
    ("shop assistant", 22_000, 35_000),
    ("doctor", 120_000, 250_000),
    ("lawyer", 90_000, 220_000),
    ("chef", 30_000, 60_000),
    ("civil servant", 40_000, 75_000),
    ("pharmacist", 80_000, 130_000),
    ("bus driver", 32_000, 52_000),
    ("architect", 60_000, 120_000),
    ("marketing manager", 60_000, 130_000),
    ("farmer", 30_000, 90_000),
    ("small business owner", 35_000, 150_000),
];

fn pick<'a, T>(rng: &mut ChaCha8Rng, xs: &'a [T]) -> &'a T {
    &xs[rng.random_range(0..xs.len())]
}

/// Draws one profile.
pub fn draw_profile(rng: &mut ChaCha8Rng) -> Profile {
    let female = rng.random_bool(0.5);
    let name_index = rng.random_range(0..FEMALE_NAMES.len());
    let age = rng.random_range(22..=75u32);
    let &(occupation, lo, hi) = pick(rng, &OCCUPATIONS);
    let income = round_to(rng.random_range(lo..=hi), 1000);
    let monthly = income as f64 / 12.0;
    let buffer = if rng.random_bool(0.3) {
        rng.random_range(0.0..3.0)
    } else {
        rng.random_range(3.0..24.0)
    };
    let savings = round_to((monthly * buffer) as u32, 100);
    let monthly_debt = if rng.random_bool(0.35) {
        0
    } else {
        round_to((monthly * rng.random_range(0.02..0.55)) as u32, 50)
    };
    let goal = if age >= 62 {
        *pick(
            rng,
            &[
                Goal::Income,
                Goal::Income,
                Goal::Wealth,
                Goal::EmergencyFund,
            ],
        )
    } else {
        *pick(
            rng,
            &[
                Goal::Retirement,
                Goal::Retirement,
                Goal::House,
                Goal::Education,
                Goal::EmergencyFund,
                Goal::Wealth,
                Goal::Wealth,
            ],
        )
    };
    let horizon_years = match goal {
        Goal::Retirement => (67u32.saturating_sub(age)).max(3),
        Goal::House => rng.random_range(1..=7),
        Goal::Education => rng.random_range(3..=18),
        Goal::EmergencyFund => rng.random_range(1..=2),
        Goal::Wealth => rng.random_range(2..=30),
        Goal::Income => rng.random_range(1..=12),
    };
    let risk = *pick(
        rng,
        &[
            Risk::Low,
            Risk::Moderate,
            Risk::Moderate,
            Risk::High,
            Risk::High,
        ],
    );
    Profile {
        female,
        name_index,
        age,
        occupation,
        income,
        savings,
        monthly_debt,
        horizon_years,
        goal,
        risk,
    }
}

fn round_to(x: u32, step: u32) -> u32 {
    ((x + step / 2) / step * step).max(step)
}

fn money(x: u32) -> String {
    let s = x.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    format!("${out}")
}

/// The wording choices of one note, drawn once and reused for the twin so the
/// two texts differ only in name and pronouns.
#[derive(Debug, Clone, Copy)]
struct Wording {
    intro: usize,
    risk: usize,
    horizon: usize,
    debt: usize,
    savings: usize,
    goal: usize,
    order: usize,
}

fn draw_wording(rng: &mut ChaCha8Rng) -> Wording {
    Wording {
        intro: rng.random_range(0..3),
        risk: rng.random_range(0..3),
        horizon: rng.random_range(0..3),
        debt: rng.random_range(0..2),
        savings: rng.random_range(0..2),
        goal: rng.random_range(0..2),
        order: rng.random_range(0..3),
    }
}

/// Writes the adviser's note for a profile; `female` chooses the name list and
/// pronouns (the twin passes the opposite).
fn render(p: &Profile, female: bool, w: Wording) -> String {
    let name = if female {
        FEMALE_NAMES[p.name_index]
    } else {
        MALE_NAMES[p.name_index]
    };
    let (he, his, him) = if female {
        ("she", "her", "her")
    } else {
        ("he", "his", "him")
    };
    let cap = |s: &str| {
        let mut c = s.chars();
        c.next()
            .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
            .unwrap_or_default()
    };
    let article = if p.occupation.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    let intro = match w.intro {
        0 => format!(
            "{name} is a {}-year-old {} earning about {} a year.",
            p.age,
            p.occupation,
            money(p.income)
        ),
        1 => format!(
            "{name}, {article} {} aged {}, has an income of {} a year.",
            p.occupation,
            p.age,
            money(p.income)
        ),
        _ => format!(
            "Our client {name} is {} years old, works as {article} {} and makes {} a year.",
            p.age,
            p.occupation,
            money(p.income)
        ),
    };
    let risk = match (p.risk, w.risk) {
        (Risk::Low, 0) => format!("{} says {he} cannot afford to lose any money.", cap(he)),
        (Risk::Low, 1) => format!("{} describes {his} attitude to risk as cautious.", cap(he)),
        (Risk::Low, _) => format!("Any loss would worry {him} a lot, so {he} wants safety first."),
        (Risk::Moderate, 0) => format!("{} is comfortable with some ups and downs.", cap(he)),
        (Risk::Moderate, 1) => format!("{} describes {his} risk tolerance as moderate.", cap(he)),
        (Risk::Moderate, _) => format!(
            "{} accepts a little volatility for better returns.",
            cap(he)
        ),
        (Risk::High, 0) => format!(
            "{} is happy to accept large swings for higher returns.",
            cap(he)
        ),
        (Risk::High, 1) => format!(
            "{} calls {him}self an adventurous investor with a high tolerance for risk.",
            cap(he)
        ),
        (Risk::High, _) => {
            format!("Short-term losses do not bother {him}; {he} wants maximum growth.")
        }
    };
    let years = if p.horizon_years == 1 {
        "one year".to_string()
    } else {
        format!("{} years", p.horizon_years)
    };
    let horizon = match w.horizon {
        0 => format!("{} plans to invest for about {years}.", cap(he)),
        1 => format!("{} will need the money in {years}.", cap(he)),
        _ => format!("The investment horizon is {years}."),
    };
    let debt = if p.monthly_debt == 0 {
        if w.debt == 0 {
            format!("{} has no debts.", cap(he))
        } else {
            format!("{} owes nothing on loans or cards.", cap(he))
        }
    } else {
        let heavy = p.debt_ratio() >= 0.35;
        let share = if heavy {
            "a heavy burden"
        } else {
            "a manageable amount"
        };
        if w.debt == 0 {
            format!(
                "{} pays {} a month towards loans, {share}.",
                cap(he),
                money(p.monthly_debt)
            )
        } else {
            format!(
                "Debt repayments take {} of {his} income each month, {share}.",
                money(p.monthly_debt)
            )
        }
    };
    let months = p.buffer_months();
    let cushion = if months < 3.0 {
        "a thin cushion"
    } else {
        "a comfortable cushion"
    };
    let savings = if w.savings == 0 {
        format!(
            "{} has {} in savings, {cushion}.",
            cap(he),
            money(p.savings)
        )
    } else {
        format!("Savings of {} give {him} {cushion}.", money(p.savings))
    };
    let goal = match (p.goal, w.goal) {
        (Goal::Retirement, 0) => format!("{} is saving for retirement.", cap(he)),
        (Goal::Retirement, _) => format!("The goal is a bigger pension for {his} retirement."),
        (Goal::House, 0) => format!("{} wants a deposit for a house.", cap(he)),
        (Goal::House, _) => format!("The money is for {his} first home."),
        (Goal::Education, 0) => format!("{} is saving for {his} children's education.", cap(he)),
        (Goal::Education, _) => "The aim is to pay for university fees.".to_string(),
        (Goal::EmergencyFund, 0) => format!("{} wants to build an emergency fund.", cap(he)),
        (Goal::EmergencyFund, _) => {
            format!("The money must stay available for emergencies, {he} says.")
        }
        (Goal::Wealth, 0) => format!("{} wants to grow {his} wealth.", cap(he)),
        (Goal::Wealth, _) => format!("{} hopes to build long-term wealth.", cap(he)),
        (Goal::Income, 0) => format!("{} wants a steady income from {his} savings.", cap(he)),
        (Goal::Income, _) => format!("{} needs regular payouts to cover living costs.", cap(he)),
    };
    let parts: [&str; 5] = match w.order {
        0 => [&goal, &horizon, &risk, &savings, &debt],
        1 => [&risk, &goal, &horizon, &debt, &savings],
        _ => [&horizon, &goal, &savings, &debt, &risk],
    };
    let mut out = intro;
    for p in parts {
        out.push(' ');
        out.push_str(p);
    }
    out
}

/// The generated rows, column by column.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SynthData {
    pub config: SynthConfig,
    pub profiles: Vec<Profile>,
    pub texts: Vec<String>,
    pub twins: Vec<String>,
    pub historical: Vec<usize>,
    pub fair: Vec<usize>,
}

/// Generates the dataset.
pub fn generate(cfg: &SynthConfig) -> SynthData {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut out = SynthData {
        config: *cfg,
        profiles: Vec::with_capacity(cfg.rows),
        texts: Vec::with_capacity(cfg.rows),
        twins: Vec::with_capacity(cfg.rows),
        historical: Vec::with_capacity(cfg.rows),
        fair: Vec::with_capacity(cfg.rows),
    };
    for _ in 0..cfg.rows {
        let p = draw_profile(&mut rng);
        let w = draw_wording(&mut rng);
        let fair = fair_label(&p);
        let mut hist = fair;
        // Draw every coin every row, so the stream does not depend on labels.
        let (u_gender, u_age, u_noise) = (
            rng.random::<f64>(),
            rng.random::<f64>(),
            rng.random::<f64>(),
        );
        let random_label = rng.random_range(0..LABELS.len());
        if p.female {
            if hist == 2 && u_gender < cfg.bias {
                hist = 1;
            } else if hist == 1 && u_gender < cfg.bias / 3.0 {
                hist = 0;
            }
        }
        if p.age >= 55 && hist == 2 && u_age < cfg.age_bias {
            hist = 1;
        }
        if u_noise < cfg.noise {
            hist = random_label;
        }
        out.texts.push(render(&p, p.female, w));
        out.twins.push(render(&p, !p.female, w));
        out.historical.push(hist);
        out.fair.push(fair);
        out.profiles.push(p);
    }
    out
}

impl SynthData {
    /// Writes the rows (format from the extension), with the latent facts as
    /// extra columns for auditing.
    pub fn write(&self, path: &std::path::Path) -> Result<()> {
        let n = self.texts.len();
        let ps = &self.profiles;
        let text = |f: &dyn Fn(&Profile) -> String| ColumnData::Text(ps.iter().map(f).collect());
        let int = |f: &dyn Fn(&Profile) -> i64| ColumnData::Int(ps.iter().map(f).collect());
        let label =
            |v: &Vec<usize>| ColumnData::Text(v.iter().map(|&l| LABELS[l].to_string()).collect());
        write_table(
            path,
            vec![
                (
                    "id".into(),
                    ColumnData::Text((1..=n).map(|i| format!("c{i:05}")).collect()),
                ),
                ("text".into(), ColumnData::Text(self.texts.clone())),
                ("twin_text".into(), ColumnData::Text(self.twins.clone())),
                (
                    "gender".into(),
                    text(&|p| if p.female { "female" } else { "male" }.into()),
                ),
                ("age_band".into(), text(&|p| p.age_band().into())),
                ("label".into(), label(&self.historical)),
                ("fair_label".into(), label(&self.fair)),
                ("age".into(), int(&|p| p.age.into())),
                ("occupation".into(), text(&|p| p.occupation.into())),
                ("income".into(), int(&|p| p.income.into())),
                ("savings".into(), int(&|p| p.savings.into())),
                ("monthly_debt".into(), int(&|p| p.monthly_debt.into())),
                ("horizon_years".into(), int(&|p| p.horizon_years.into())),
                (
                    "goal".into(),
                    text(&|p| {
                        serde_json::to_value(p.goal)
                            .expect("enum")
                            .as_str()
                            .expect("str")
                            .into()
                    }),
                ),
                (
                    "risk_attitude".into(),
                    text(&|p| {
                        serde_json::to_value(p.risk)
                            .expect("enum")
                            .as_str()
                            .expect("str")
                            .into()
                    }),
                ),
            ],
        )
    }
}

/// The spec that reads a file written by [`SynthData::write`]: text, the
/// historical label (ordered conservative < balanced < growth), groups
/// `gender` and `age_band`, twins, and the fair label as reference.
pub fn builtin_spec(path: &std::path::Path) -> DatasetSpec {
    DatasetSpec {
        path: path.to_path_buf(),
        preset: None,
        text: TextSource::Column("text".into()),
        label: "label".into(),
        labels: Some(LABELS.iter().map(|s| s.to_string()).collect()),
        groups: vec!["gender".into(), "age_band".into()],
        id: Some("id".into()),
        weight: None,
        twin: Some("twin_text".into()),
        reference_label: Some("fair_label".into()),
        min_group_size: DEFAULT_MIN_GROUP_SIZE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_data() {
        let cfg = SynthConfig {
            rows: 300,
            ..Default::default()
        };
        assert_eq!(generate(&cfg), generate(&cfg));
        assert_ne!(
            generate(&cfg).texts,
            generate(&SynthConfig { seed: 1, ..cfg }).texts
        );
    }

    #[test]
    fn twins_differ_only_in_gendered_words() {
        let d = generate(&SynthConfig {
            rows: 200,
            ..Default::default()
        });
        for (t, w) in d.texts.iter().zip(&d.twins) {
            assert_ne!(t, w);
            assert_eq!(
                t.split_whitespace().count(),
                w.split_whitespace().count(),
                "{t} | {w}"
            );
        }
    }

    #[test]
    fn historical_labels_carry_the_bias_and_fair_labels_do_not() {
        let d = generate(&SynthConfig {
            rows: 6000,
            ..Default::default()
        });
        let rate = |labels: &[usize], female: bool| {
            let rows: Vec<usize> = (0..labels.len())
                .filter(|&i| d.profiles[i].female == female)
                .collect();
            rows.iter().filter(|&&i| labels[i] == 2).count() as f64 / rows.len() as f64
        };
        let hist_gap = rate(&d.historical, false) - rate(&d.historical, true);
        let fair_gap = (rate(&d.fair, false) - rate(&d.fair, true)).abs();
        assert!(hist_gap > 0.08, "historical growth gap {hist_gap}");
        assert!(fair_gap < 0.03, "fair growth gap {fair_gap}");
        // Every class is well represented under the fair rule.
        for c in 0..3 {
            let share = d.fair.iter().filter(|&&l| l == c).count() as f64 / 6000.0;
            assert!(share > 0.15, "class {c} share {share}");
        }
    }

    #[test]
    fn fair_rule_examples() {
        let base = Profile {
            female: true,
            name_index: 0,
            age: 30,
            occupation: "nurse",
            income: 60_000,
            savings: 30_000,
            monthly_debt: 0,
            horizon_years: 20,
            goal: Goal::Retirement,
            risk: Risk::High,
        };
        assert_eq!(fair_label(&base), 2);
        assert_eq!(
            fair_label(&Profile {
                risk: Risk::Low,
                ..base.clone()
            }),
            1
        );
        assert_eq!(
            fair_label(&Profile {
                savings: 5_000,
                ..base.clone()
            }),
            2
        );
        assert_eq!(
            fair_label(&Profile {
                savings: 5_000,
                monthly_debt: 2_000,
                ..base.clone()
            }),
            1
        );
        assert_eq!(
            fair_label(&Profile {
                goal: Goal::EmergencyFund,
                ..base.clone()
            }),
            0
        );
        assert_eq!(
            fair_label(&Profile {
                horizon_years: 2,
                risk: Risk::Moderate,
                ..base.clone()
            }),
            0
        );
        assert_eq!(
            fair_label(&Profile {
                female: false,
                ..base
            }),
            2
        );
    }
}
