//! Progress bars (indicatif) for a run, drawn on stderr only when it is a
//! terminal: in a pipe or a log file they draw nothing, and machines read
//! `metrics.jsonl` instead.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::observe::{Control, Event, Observer};

/// An [`Observer`] that shows one bar per epoch (batches, loss, learning
/// rate) and a spinner while evaluating.
#[derive(Debug)]
pub struct ProgressBars {
    bar: ProgressBar,
}

impl Default for ProgressBars {
    fn default() -> Self {
        Self::new()
    }
}

impl ProgressBars {
    /// Bars on stderr (hidden when stderr is not a terminal).
    pub fn new() -> Self {
        Self::with_target(ProgressDrawTarget::stderr())
    }

    /// Bars that draw nothing.
    pub fn hidden() -> Self {
        Self::with_target(ProgressDrawTarget::hidden())
    }

    fn with_target(target: ProgressDrawTarget) -> Self {
        let bar = ProgressBar::with_draw_target(Some(0), target);
        Self { bar }
    }

    /// Whether bars are drawn (stderr is a terminal).
    pub fn is_visible(&self) -> bool {
        !self.bar.is_hidden()
    }

    /// Runs `f` (e.g. printing a line) with the bar cleared, then redraws it.
    pub fn suspend<T>(&self, f: impl FnOnce() -> T) -> T {
        self.bar.suspend(f)
    }
}

impl Observer for ProgressBars {
    fn on_event(&mut self, event: &Event<'_>) -> Control {
        match event {
            Event::EpochStarted {
                epoch,
                epochs,
                batches,
                batches_done,
            } => {
                self.bar.reset();
                self.bar.set_length(*batches as u64);
                self.bar.set_position(*batches_done as u64);
                self.bar.set_style(
                    ProgressStyle::with_template(
                        "{prefix} [{bar:30}] {pos}/{len} batches {elapsed_precise}<{eta_precise} {msg}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                self.bar
                    .set_prefix(format!("epoch {}/{}", epoch + 1, epochs));
                self.bar.set_message("");
            }
            Event::Step {
                batch, loss, lr, ..
            } => {
                self.bar.set_position(*batch as u64);
                self.bar.set_message(format!("loss {loss:.4} lr {lr:.2e}"));
            }
            Event::Evaluating { .. } => self.bar.set_message("evaluating…"),
            Event::EpochEnded { .. } | Event::Finished { .. } => self.bar.finish_and_clear(),
            Event::Testing => {
                self.bar.reset();
                self.bar.set_style(ProgressStyle::default_spinner());
                self.bar.set_message("testing the best model…");
                self.bar.tick();
            }
            _ => {}
        }
        Control::Continue
    }
}
