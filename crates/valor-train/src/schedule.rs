//! Learning-rate schedules: linear warmup, then linear, cosine or constant
//! decay, with the step arithmetic of HF `transformers`'
//! `get_{linear,cosine,constant}_schedule_with_warmup`.
//!
//! The schedule is a pure function of the optimizer step, so its whole
//! state in a checkpoint is the step count. As in HF (where
//! `scheduler.step()` follows `optimizer.step()`), optimizer step `t`
//! (0-based) uses the factor at `t`: the first step of a warmup has
//! learning rate 0.

use serde::{Deserialize, Serialize};

use crate::config::Decay;

/// A learning-rate schedule over a known number of optimizer steps.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LrSchedule {
    pub peak_lr: f64,
    pub warmup_steps: u64,
    pub total_steps: u64,
    pub decay: Decay,
}

impl LrSchedule {
    /// `warmup_ratio` of `total_steps` (rounded up, as HF's
    /// `get_warmup_steps`) warm up linearly to `peak_lr`.
    pub fn new(peak_lr: f64, warmup_ratio: f64, total_steps: u64, decay: Decay) -> Self {
        Self {
            peak_lr,
            warmup_steps: (warmup_ratio * total_steps as f64).ceil() as u64,
            total_steps,
            decay,
        }
    }

    /// The learning rate of optimizer step `step` (0-based).
    pub fn lr(&self, step: u64) -> f64 {
        self.peak_lr * self.factor(step)
    }

    fn factor(&self, step: u64) -> f64 {
        let (s, w, n) = (
            step as f64,
            self.warmup_steps as f64,
            self.total_steps as f64,
        );
        if step < self.warmup_steps {
            return s / w.max(1.0);
        }
        match self.decay {
            Decay::Constant => 1.0,
            Decay::Linear => ((n - s) / (n - w).max(1.0)).max(0.0),
            Decay::Cosine => {
                let progress = (s - w) / (n - w).max(1.0);
                (0.5 * (1.0 + (std::f64::consts::PI * progress).cos())).max(0.0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values of `transformers.get_linear_schedule_with_warmup(opt, 3, 10)`
    /// and `get_cosine_schedule_with_warmup(opt, 3, 10)` with base lr 1,
    /// read after each `scheduler.step()` (the lr of the next step).
    #[test]
    fn matches_hf_schedules() {
        let lin = LrSchedule {
            peak_lr: 1.0,
            warmup_steps: 3,
            total_steps: 10,
            decay: Decay::Linear,
        };
        let want = [
            0.0,
            1.0 / 3.0,
            2.0 / 3.0,
            1.0,
            6.0 / 7.0,
            5.0 / 7.0,
            4.0 / 7.0,
            3.0 / 7.0,
            2.0 / 7.0,
            1.0 / 7.0,
            0.0,
        ];
        for (t, w) in want.iter().enumerate() {
            assert!(
                (lin.lr(t as u64) - w).abs() < 1e-12,
                "linear step {t}: {} vs {w}",
                lin.lr(t as u64)
            );
        }
        let cos = LrSchedule {
            decay: Decay::Cosine,
            ..lin
        };
        for t in 3..=10u64 {
            let p = (t as f64 - 3.0) / 7.0;
            let w = 0.5 * (1.0 + (std::f64::consts::PI * p).cos());
            assert!((cos.lr(t) - w).abs() < 1e-12);
        }
        assert!(cos.lr(10).abs() < 1e-12);
        let constant = LrSchedule {
            decay: Decay::Constant,
            ..lin
        };
        assert_eq!(constant.lr(1), 1.0 / 3.0);
        assert_eq!(constant.lr(9), 1.0);
    }

    #[test]
    fn warmup_steps_round_up() {
        assert_eq!(
            LrSchedule::new(1.0, 0.1, 95, Decay::Linear).warmup_steps,
            10
        );
        assert_eq!(LrSchedule::new(1.0, 0.0, 95, Decay::Linear).warmup_steps, 0);
        assert_eq!(LrSchedule::new(2.0, 0.0, 10, Decay::Linear).lr(0), 2.0);
    }
}
