//! valor-data integration tests: one binary, modules by area.

mod builtin;
mod real;
mod tokenizer_determinism;
mod tokenizer_parity;
