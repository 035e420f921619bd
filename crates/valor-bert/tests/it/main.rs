//! Integration tests of valor-bert, written once for every backend: the
//! device comes from `VALOR_TEST_BACKEND` (`cpu` by default; `wgpu`, `cuda`
//! when the crate is built with that feature). Tests that need
//! `../shared` (the MiniLM checkpoint and the HF parity fixture) are
//! `#[valor_testkit::shared_test]`s: ignored, with the reason, where the
//! folder is missing.

mod common;
mod explain;
mod files;
mod half;
mod lora;
mod lowp;
mod model;
mod parity;
mod train;
