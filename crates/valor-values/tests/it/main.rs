//! Integration tests for valor-values: one binary, one module per area.

mod measure;
mod props;
mod remodel;
mod spec;
