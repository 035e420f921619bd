//! Integration tests of valor-train (one binary; see the modules).

// Tests print the numbers they measured (shown with --nocapture or on failure).
#![allow(clippy::print_stderr)]

mod checkpoints;
mod common;
mod nan;
mod parallel;
mod penalty;
mod quality;
mod remodel;
mod resume;
mod weights;
