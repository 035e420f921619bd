//! Data in, clean batches out.
//!
//! `valor-data` owns everything between a file on disk and the padded token-id
//! arrays a model consumes: reading CSV, Parquet and JSON Lines with polars
//! ([`table`]), one file or a folder or glob of them ([`inputs`]);
//! describing a dataset by a spec of columns ([`spec`]);
//! validating it into a [`Dataset`] whose errors name file, row and column
//! ([`dataset`]), its texts and ids kept as [`Strs`] columns, rows in a few
//! large buffers ([`strs`]); readers for real public datasets ([`real`]); seeded,
//! stratified splits ([`split`]) or splits given as three files
//! ([`split_files`]); the built-in synthetic finance dataset
//! ([`synth`]); tokenization with Hugging Face `tokenizers` ([`tokenize`]);
//! length-bucketed, dynamically padded batches ([`batch`]); and the numbers
//! `valor data inspect` prints ([`inspect`]).
//!
//! Does not know about: tensors, models or any burn type (batches are plain
//! `Vec<u32>`), fairness metrics (valor-fair), value profiles (valor-values).
//! polars and tokenizers types never appear in its public API.
//!
//! Main types: [`Table`] (a file's columns, read as text), [`DatasetSpec`]
//! (which column is what), [`Dataset`] (validated texts, [`LabelId`]s and
//! [`GroupColumn`]s), [`Strs`], [`Splits`], [`TextTokenizer`] and [`Encoded`],
//! [`Batch`], [`SynthConfig`]/[`SynthData`], [`InspectReport`].

pub mod batch;
mod csv_dataset;
pub mod dataset;
pub mod error;
pub mod inputs;
pub mod inspect;
pub mod real;
pub mod spec;
pub mod split;
pub mod split_files;
pub mod strs;
pub mod synth;
pub mod table;
pub mod tokenize;

pub use batch::{Batch, BatchConfig, Bucketed, collate, plan_batches};
pub use dataset::{Dataset, GroupColumn, GroupId, LabelId, Warning, load_dataset};
pub use error::{Error, Result};
pub use inputs::expand_inputs;
pub use inspect::{InspectReport, inspect};
pub use spec::{DatasetSpec, Preset, SpecArgs, TextSource};
pub use split::{SplitConfig, Splits, split};
pub use split_files::{SplitFileRecord, SplitFiles, SplitFilesData, load_split_files};
pub use strs::Strs;
pub use synth::{SynthConfig, SynthData, builtin_spec, generate};
pub use table::{
    ColumnData, Format, Table, TextColumn, read_table, stream_table, write_atomic, write_table,
};
pub use tokenize::{Encoded, TextTokenizer};
