//! The one error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong while configuring, loading, running or saving
/// a BERT model. Variants carry the file and tensor they concern.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A JSON file (config.json) is not valid JSON or does not fit the schema.
    #[error("{}: invalid JSON: {source}", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A configuration value is invalid (e.g. hidden size not divisible by heads).
    #[error("invalid BERT configuration{}: {message}", path.as_ref().map(|p| format!(" in {}", p.display())).unwrap_or_default())]
    Config {
        path: Option<PathBuf>,
        message: String,
    },
    /// An unknown preset name was asked for.
    #[error("unknown BERT preset `{name}`; presets are: {known}")]
    UnknownPreset { name: String, known: String },
    /// A required file is missing from a model folder.
    #[error("{}: missing {what}", dir.display())]
    MissingFile { dir: PathBuf, what: String },
    /// A checkpoint format that this crate cannot read.
    #[error("{}: {message}", path.display())]
    UnsupportedFormat { path: PathBuf, message: String },
    /// A safetensors file is corrupt or truncated.
    #[error("{}: not a readable safetensors file (corrupt or truncated?): {message}", path.display())]
    Safetensors { path: PathBuf, message: String },
    /// A tensor the model needs is not in the checkpoint.
    #[error("{}: tensor `{name}` (expected shape {expected:?}) is missing from the checkpoint", path.display())]
    MissingTensor {
        path: PathBuf,
        name: String,
        expected: Vec<usize>,
    },
    /// A checkpoint tensor has the wrong shape for the configuration.
    #[error("{}: tensor `{name}` has shape {found:?} but the configuration expects {expected:?}{hint}", path.display())]
    ShapeMismatch {
        path: PathBuf,
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
        hint: String,
    },
    /// A checkpoint tensor has a dtype we cannot convert to f32.
    #[error("{}: tensor `{name}` has dtype {dtype}, expected a float type (F32, F16, BF16, F64)", path.display())]
    DType {
        path: PathBuf,
        name: String,
        dtype: String,
    },
    /// A model parameter has no entry in the HF name table (a bug in this crate).
    #[error("model parameter `{path}` has no entry in the HF name table")]
    Unmapped { path: String },
    /// Reading a tensor back from the device failed.
    #[error("reading tensor `{name}` from the device failed: {message}")]
    TensorRead { name: String, message: String },
    /// A Linear weight could not be packed for low-precision inference.
    #[error("packing `{name}` for {precision} inference failed: {message}")]
    Pack {
        name: String,
        precision: &'static str,
        message: String,
    },
    /// The model input is inconsistent (lengths, ids out of range, ...).
    #[error("invalid model input: {message}")]
    Input { message: String },
    /// An unknown backend name.
    #[error("unknown backend `{given}`; choose one of: cpu, wgpu, cuda")]
    UnknownBackend { given: String },
    /// A backend that this build was compiled without.
    #[error("backend `{backend}` is not compiled in; rebuild with `--features {feature}`")]
    BackendNotCompiled {
        backend: &'static str,
        feature: &'static str,
    },
    /// An unknown `--precision` name for a GPU device.
    #[error("unknown GPU precision `{given}`; choose one of: fp32, f16, bf16")]
    UnknownPrecision { given: String },
    /// A GPU precision asked of the CPU backend.
    #[error(
        "--precision {precision} as the device's float dtype runs on GPU backends (wgpu, cuda); \
         on the CPU, --precision bf16|int8 picks the encoder's Linear kernels instead"
    )]
    PrecisionBackend { precision: &'static str },
    /// A precision that autocast (training, explanations) cannot run.
    #[error(
        "--precision {precision} is not a precision for training or explanations on the CPU: \
         choose fp32 or bf16 (the Linear layers' products in bf16, as torch.autocast)"
    )]
    PrecisionNotDifferentiable { precision: &'static str },
    /// A CPU kernel precision (int8) asked of a GPU backend.
    #[error(
        "--precision {precision} runs on the CPU backend's kernels, not on {backend}; \
         on a GPU backend choose fp32, bf16 or f16 (the device's float dtype)"
    )]
    PrecisionCpuOnly {
        precision: &'static str,
        backend: &'static str,
    },
    /// The device cannot compute in the dtype asked for.
    #[error(
        "the device `{device}` does not support {precision} ({dtype}) arithmetic \
         (burn's supports_dtype); use --precision fp32"
    )]
    PrecisionUnsupported {
        device: String,
        precision: &'static str,
        dtype: String,
    },
    /// The device already computes in another float dtype.
    #[error(
        "the device `{device}` already computes in {current}, so it cannot switch to \
         {precision}: a device's float dtype is set once per process, before its first tensor ({message})"
    )]
    PrecisionLocked {
        device: String,
        precision: &'static str,
        current: String,
        message: String,
    },
    /// More devices, or a device index, than the backend has.
    #[error("the {backend} backend has {available}; {asked}{hint}")]
    DeviceUnavailable {
        backend: &'static str,
        /// What was asked for, e.g. "2 devices were asked for".
        asked: String,
        /// What there is, e.g. "1 device (index 0)".
        available: String,
        /// How to fix it, when there is a known way (starts with "; ").
        hint: String,
    },
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
