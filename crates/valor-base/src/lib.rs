//! The small vocabulary every Valor crate shares, so each piece has one
//! home: label and group ids ([`LabelId`], [`GroupId`]), SplitMix64
//! streams ([`splitmix`]), HTML escaping for the self-contained reports
//! ([`html`]) and CSV records ([`csv`]).
//!
//! Does not know about: tensors, data frames, files, fairness metrics or
//! value profiles. It depends on no other Valor crate, and every library
//! may depend on it (with `valor-fsio`, one of the two shared leaves that
//! `cargo xtask` tidy tests allow).

pub mod csv;
pub mod html;
mod ids;
pub mod splitmix;

pub use ids::{GroupId, LabelId};
