//! What a training run tells its caller while it runs, and how the caller
//! can stop it.
//!
//! The loop calls [`Observer::on_event`] at each stage; the CLI draws
//! progress bars from these events ([`crate::progress`]), tests use
//! [`Control::Stop`] to end a run after a given step exactly as a crash
//! would (nothing more is written), and [`StopAfter`] packages that.

use std::path::Path;

use crate::checkpoint::EpochRecord;
use crate::config::TrainConfig;
use crate::report::TrainReport;

/// Whether the run should go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Continue,
    /// Stop now, as if the process had died: no checkpoint, metrics or
    /// report is written for the work after the last checkpoint.
    Stop,
}

/// A stage of a run.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// Data, tokenizer and model are ready.
    Started {
        config: &'a TrainConfig,
        run_dir: &'a Path,
        train_rows: usize,
        /// Of the training rows, those held out of the gradient batches
        /// for constrained training's constraint batches.
        constraint_rows: usize,
        valid_rows: usize,
        test_rows: usize,
        total_steps: u64,
        /// The checkpoint a resumed run continues from.
        resumed_from: Option<&'a Path>,
    },
    /// An epoch begins (or resumes at batch `batches_done`).
    EpochStarted {
        epoch: usize,
        epochs: usize,
        batches: usize,
        batches_done: usize,
    },
    /// An optimizer step is done.
    Step {
        epoch: usize,
        batch: usize,
        batches: usize,
        step: u64,
        loss: f64,
        lr: f64,
    },
    /// Validation is running (at the epoch's end or within it).
    Evaluating { epoch: usize },
    /// An epoch ended (and was evaluated).
    EpochEnded { record: &'a EpochRecord },
    /// An evaluation within an epoch (`eval_every`) is done.
    Evaluated { record: &'a EpochRecord },
    /// A checkpoint was written.
    Checkpoint { path: &'a Path },
    /// The test split is being evaluated with the best model.
    Testing,
    /// The run is complete; `report.json` is written.
    Finished { report: &'a TrainReport },
    /// Something worth telling that does not stop the run.
    Warning { message: &'a str },
}

/// Receives a run's events.
pub trait Observer {
    /// Called at each stage; return [`Control::Stop`] after an
    /// [`Event::Step`] to end the run (it is ignored elsewhere).
    fn on_event(&mut self, event: &Event<'_>) -> Control;
}

/// Ignores every event.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Observer for Silent {
    fn on_event(&mut self, _event: &Event<'_>) -> Control {
        Control::Continue
    }
}

/// Stops the run right after optimizer step `step` (a simulated crash, for
/// resume tests).
#[derive(Debug, Clone, Copy)]
pub struct StopAfter {
    pub step: u64,
}

impl Observer for StopAfter {
    fn on_event(&mut self, event: &Event<'_>) -> Control {
        match event {
            Event::Step { step, .. } if *step >= self.step => Control::Stop,
            _ => Control::Continue,
        }
    }
}
