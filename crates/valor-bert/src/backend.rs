//! Backend selection: the one place that knows which burn backends were
//! compiled in.
//!
//! In burn 0.22 a [`Device`] is a runtime value; the cargo features of this
//! crate decide which constructors exist (`flex` → `Device::flex()`, `wgpu` →
//! `Device::wgpu(..)`, `cuda` → `Device::cuda(i)`). [`device`] is the only
//! code in Valor with `#[cfg(feature = ...)]` for backends; asking for a
//! backend that was not compiled in is an [`Error::BackendNotCompiled`] that
//! names the feature to enable.
//!
//! Data-parallel training asks for several devices: [`device_count`] says
//! how many the backend has (the CPU backend is one device: burn's `flex`
//! device is a unit value whose kernels already use every core) and
//! [`devices`] returns the ones picked by index.
//!
//! Training needs gradients: [`autodiff_device`] wraps the device with
//! `Device::autodiff()`, burn 0.22's replacement for the old `Autodiff<B>`
//! backend decorator. Tensors and modules created on (or moved to) it record
//! a graph; `loss.backward()` returns the gradients.

use std::fmt;
use std::str::FromStr;

use burn::tensor::Device;

use crate::error::{Error, Result};

/// Environment variable the test suite reads to pick its backend
/// (`cpu`, `wgpu`, `cuda`; default `cpu`).
pub const TEST_BACKEND_ENV: &str = "VALOR_TEST_BACKEND";

/// A compute backend the user can choose (`--backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Backend {
    /// burn's pure-Rust `flex` CPU backend (cargo feature `flex`, default).
    #[default]
    Cpu,
    /// GPU through wgpu: Vulkan, Metal or DX12 (cargo feature `wgpu`).
    Wgpu,
    /// NVIDIA GPU through CUDA (cargo feature `cuda`).
    Cuda,
}

impl Backend {
    /// Every backend, compiled in or not.
    pub const ALL: [Backend; 3] = [Backend::Cpu, Backend::Wgpu, Backend::Cuda];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Cpu => "cpu",
            Backend::Wgpu => "wgpu",
            Backend::Cuda => "cuda",
        }
    }

    /// The cargo feature of `valor-bert` that compiles this backend in.
    pub fn feature(self) -> &'static str {
        match self {
            Backend::Cpu => "flex",
            Backend::Wgpu => "wgpu",
            Backend::Cuda => "cuda",
        }
    }

    /// Whether this build has the backend.
    pub fn is_compiled(self) -> bool {
        device(self).is_ok()
    }

    /// The backend named by [`TEST_BACKEND_ENV`], `cpu` when unset.
    pub fn from_env() -> Result<Self> {
        match std::env::var(TEST_BACKEND_ENV) {
            Ok(v) if !v.trim().is_empty() => v.parse(),
            _ => Ok(Backend::Cpu),
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Backend {
    type Err = Error;

    /// Parses `cpu` (alias `flex`), `wgpu` (alias `gpu`) or `cuda`, in any case.
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" | "flex" => Ok(Backend::Cpu),
            "wgpu" | "gpu" => Ok(Backend::Wgpu),
            "cuda" => Ok(Backend::Cuda),
            _ => Err(Error::UnknownBackend {
                given: s.to_string(),
            }),
        }
    }
}

/// burn's flex backend keeps one process-wide random generator, which
/// model initialisation and every dropout draw of a training forward pass
/// use. Code that seeds it and then draws (the trainer: seed, then a
/// forward pass; a test: seed, then init) holds this lock from the seeding
/// to the last draw, so that threads of one process (tests running side by
/// side, data-parallel shards) never interleave their draws: an
/// interleaved draw would silently change another run's dropout masks.
static DEVICE_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `f` holding the process-wide lock on the device generator (see
/// [`DEVICE_RNG`]); not reentrant.
pub fn with_device_rng<T>(f: impl FnOnce() -> T) -> T {
    let _guard = DEVICE_RNG.lock().unwrap_or_else(|e| e.into_inner());
    f()
}

/// The inference device for `backend`, or an error naming the cargo feature
/// to enable when this build lacks it.
pub fn device(backend: Backend) -> Result<Device> {
    let missing = Error::BackendNotCompiled {
        backend: backend.name(),
        feature: backend.feature(),
    };
    match backend {
        Backend::Cpu => {
            #[cfg(feature = "flex")]
            return Ok(Device::flex());
        }
        Backend::Wgpu => {
            #[cfg(feature = "wgpu")]
            return Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice));
        }
        Backend::Cuda => {
            #[cfg(feature = "cuda")]
            return Ok(Device::cuda(0));
        }
    }
    #[allow(unreachable_code)]
    Err(missing)
}

/// How many devices `backend` has on this machine: 1 for the CPU, the
/// GPUs burn enumerates for wgpu and CUDA (0 when there is none).
pub fn device_count(backend: Backend) -> Result<usize> {
    device(backend)?;
    match backend {
        Backend::Cpu => Ok(1),
        Backend::Wgpu => {
            #[cfg(feature = "wgpu")]
            return Ok(Device::enumerate(burn::tensor::DeviceType::Wgpu).len());
            #[allow(unreachable_code)]
            Ok(0)
        }
        Backend::Cuda => {
            #[cfg(feature = "cuda")]
            return Ok(Device::enumerate(burn::tensor::DeviceType::Cuda).len());
            #[allow(unreachable_code)]
            Ok(0)
        }
    }
}

/// The inference devices of `backend` at `indices`, in that order (the
/// first is the main device). Index 0 alone is [`device`]'s choice. An
/// index may repeat: the same device then holds several replicas, which
/// run one after another (data parallelism on one device; the CPU's only
/// way to use the data-parallel path). An index the backend lacks is an
/// [`Error::DeviceUnavailable`] that says how many devices there are.
pub fn devices(backend: Backend, indices: &[usize]) -> Result<Vec<Device>> {
    let first = device(backend)?;
    if indices.iter().all(|&i| i == 0) {
        return Ok(vec![first; indices.len()]);
    }
    let count = device_count(backend)?;
    if let Some(&bad) = indices.iter().find(|&&i| i >= count) {
        return Err(Error::DeviceUnavailable {
            backend: backend.name(),
            asked: format!("device index {bad} was asked for"),
            available: available(count),
            hint: match backend {
                Backend::Cpu => {
                    "; index 0 may be listed more than once (e.g. 0,0) to put several replicas on it"
                        .into()
                }
                _ => String::new(),
            },
        });
    }
    #[allow(unused_mut)]
    let mut all: Vec<Device> = Vec::new();
    #[cfg(feature = "wgpu")]
    if backend == Backend::Wgpu {
        all = Device::enumerate(burn::tensor::DeviceType::Wgpu).to_vec();
    }
    #[cfg(feature = "cuda")]
    if backend == Backend::Cuda {
        all = (0..count).map(Device::cuda).collect();
    }
    Ok(indices
        .iter()
        .map(|&i| all.get(i).cloned().unwrap_or_else(|| first.clone()))
        .collect())
}

/// "1 device (index 0)", "2 devices (indices 0-1)", "no device".
pub(crate) fn available(count: usize) -> String {
    match count {
        0 => "no device".into(),
        1 => "1 device (index 0)".into(),
        n => format!("{n} devices (indices 0-{})", n - 1),
    }
}

/// The float dtype a GPU device computes in: `--precision` on `wgpu` and
/// `cuda` ([`configure_precision`]). Whole-model: parameters, activations,
/// gradients and optimizer state all take the device's float dtype (burn 0.22
/// has no automatic mixed precision, so there are no f32 master weights);
/// model files are still read and written as f32. The CPU's low-precision
/// path is [`crate::Precision`] (packed bf16/int8 Linear kernels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum GpuPrecision {
    /// f32 everywhere (the device's default).
    #[default]
    Fp32,
    /// IEEE half precision (5-bit exponent: overflows above 65,504).
    F16,
    /// bfloat16 (f32's exponent, 8-bit significand).
    Bf16,
}

impl GpuPrecision {
    /// Every GPU precision.
    pub const ALL: [GpuPrecision; 3] = [GpuPrecision::Fp32, GpuPrecision::F16, GpuPrecision::Bf16];

    /// The name `--precision` takes.
    pub fn name(self) -> &'static str {
        match self {
            GpuPrecision::Fp32 => "fp32",
            GpuPrecision::F16 => "f16",
            GpuPrecision::Bf16 => "bf16",
        }
    }

    /// burn's float dtype for it.
    pub fn dtype(self) -> burn::tensor::FloatDType {
        use burn::tensor::FloatDType;
        match self {
            GpuPrecision::Fp32 => FloatDType::F32,
            GpuPrecision::F16 => FloatDType::F16,
            GpuPrecision::Bf16 => FloatDType::BF16,
        }
    }
}

impl fmt::Display for GpuPrecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for GpuPrecision {
    type Err = Error;

    /// Parses `fp32` (alias `f32`), `f16` (alias `fp16`) or `bf16`, in any case.
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "fp32" | "f32" => Ok(GpuPrecision::Fp32),
            "f16" | "fp16" => Ok(GpuPrecision::F16),
            "bf16" => Ok(GpuPrecision::Bf16),
            _ => Err(Error::UnknownPrecision {
                given: s.to_string(),
            }),
        }
    }
}

/// How the device names itself (`NVIDIA H100 PCIe`, `llvmpipe (LLVM 19.1.7,
/// 256 bits)`), else burn's description of it.
pub fn device_name(device: &Device) -> String {
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    if !is_cpu(device)
        && let Some(identity) = device.clone().without_autodiff().identity()
    {
        return identity.name;
    }
    format!("{device:?}")
}

/// Makes `precision` the float dtype of `device` for the rest of the
/// process: tensors created on it afterwards (model parameters loaded or
/// initialised, activations, optimizer state) are in that dtype. burn keeps
/// one setting per device and locks it at the device's first tensor, so
/// call this before anything is created on the device; every handle to the
/// same device (`device(backend)` again, its autodiff form) then sees it.
///
/// Errors, each naming the device and the dtype: a CPU device
/// ([`Error::PrecisionBackend`]: the CPU's low precision is the packed
/// Linear kernels, [`crate::Precision`]); a device that cannot compute in the
/// dtype ([`Error::PrecisionUnsupported`], from burn's `supports_dtype`, e.g.
/// bf16 on a Vulkan driver without bf16 arithmetic); a device already in use
/// with another dtype ([`Error::PrecisionLocked`]). [`GpuPrecision::Fp32`]
/// on a device already in f32 is a no-op.
pub fn configure_precision(device: &Device, precision: GpuPrecision) -> Result<()> {
    let dtype = precision.dtype();
    // The setting is the device's (by id), whichever handle configures it.
    let mut device = device.clone().without_autodiff();
    if is_cpu(&device) {
        return match precision {
            GpuPrecision::Fp32 => Ok(()),
            _ => Err(Error::PrecisionBackend {
                precision: precision.name(),
            }),
        };
    }
    if !device.supports_dtype(dtype) {
        return Err(Error::PrecisionUnsupported {
            device: device_name(&device),
            precision: precision.name(),
            dtype: format!("{dtype:?}"),
        });
    }
    let locked = |device: &Device, message: String| Error::PrecisionLocked {
        device: device_name(device),
        precision: precision.name(),
        current: format!("{:?}", device.settings().float_dtype),
        message,
    };
    // fp32 is the default: nothing to set (and nothing locked), as long as
    // nobody set another dtype before.
    if precision == GpuPrecision::Fp32 {
        return if device.settings().float_dtype == dtype {
            Ok(())
        } else {
            Err(locked(&device, "set earlier in this process".into()))
        };
    }
    match device.configure(dtype) {
        Ok(()) => Ok(()),
        // Already locked: fine when it is locked to the dtype asked for.
        Err(_) if device.settings().float_dtype == dtype => Ok(()),
        Err(e) => Err(locked(&device, e.to_string())),
    }
}

/// Readies the devices of `backend` for a model run at `precision`, before
/// anything is loaded or created on them: on `wgpu` and `cuda`, each device's
/// float dtype ([`Precision::gpu`](crate::Precision::gpu) through
/// [`configure_precision`]; int8 is refused, its kernels are the CPU's); on
/// the CPU nothing but a check (f16 is refused; bf16 and int8 pack the
/// encoder's Linear weights after loading, [`crate::lowp::apply`]).
pub fn prepare_precision(
    backend: Backend,
    devices: &[Device],
    precision: crate::Precision,
) -> Result<()> {
    if backend == Backend::Cpu {
        return match precision {
            crate::Precision::F16 => Err(Error::PrecisionBackend {
                precision: precision.name(),
            }),
            _ => Ok(()),
        };
    }
    let gpu = precision.gpu().ok_or(Error::PrecisionCpuOnly {
        precision: precision.name(),
        backend: backend.name(),
    })?;
    devices
        .iter()
        .try_for_each(|device| configure_precision(device, gpu))
}

/// Whether `device` is the CPU (flex) device, with or without autodiff.
fn is_cpu(device: &Device) -> bool {
    crate::host::is_flex(device)
}

/// The training device for `backend`: [`device`] with autodiff enabled.
pub fn autodiff_device(backend: Backend) -> Result<Device> {
    Ok(device(backend)?.autodiff())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_aliases() {
        assert_eq!("cpu".parse::<Backend>().unwrap(), Backend::Cpu);
        assert_eq!("FLEX".parse::<Backend>().unwrap(), Backend::Cpu);
        assert_eq!(" wgpu ".parse::<Backend>().unwrap(), Backend::Wgpu);
        assert_eq!("cuda".parse::<Backend>().unwrap(), Backend::Cuda);
        let err = "tpu".parse::<Backend>().unwrap_err().to_string();
        assert!(
            err.contains("tpu") && err.contains("cpu, wgpu, cuda"),
            "{err}"
        );
        for b in Backend::ALL {
            assert_eq!(b.name().parse::<Backend>().unwrap(), b);
        }
    }

    #[test]
    fn missing_backend_names_its_feature() {
        for b in Backend::ALL {
            match device(b) {
                Ok(d) => assert!(!d.is_autodiff()),
                Err(e) => {
                    let msg = e.to_string();
                    assert!(
                        msg.contains(&format!("--features {}", b.feature())),
                        "{msg}"
                    );
                }
            }
        }
    }

    #[test]
    fn gpu_precisions_parse_and_name_their_dtype() {
        use burn::tensor::FloatDType;
        assert_eq!("F16".parse::<GpuPrecision>().unwrap(), GpuPrecision::F16);
        assert_eq!("fp16".parse::<GpuPrecision>().unwrap(), GpuPrecision::F16);
        assert_eq!(" bf16".parse::<GpuPrecision>().unwrap(), GpuPrecision::Bf16);
        assert_eq!("f32".parse::<GpuPrecision>().unwrap(), GpuPrecision::Fp32);
        for p in GpuPrecision::ALL {
            assert_eq!(p.name().parse::<GpuPrecision>().unwrap(), p);
        }
        assert_eq!(GpuPrecision::Bf16.dtype(), FloatDType::BF16);
        let e = "int8".parse::<GpuPrecision>().unwrap_err().to_string();
        assert!(e.contains("int8") && e.contains("fp32, f16, bf16"), "{e}");
    }

    #[cfg(feature = "flex")]
    #[test]
    fn gpu_precision_on_the_cpu_points_to_the_cpu_kernels() {
        let d = device(Backend::Cpu).unwrap();
        configure_precision(&d, GpuPrecision::Fp32).unwrap();
        let e = configure_precision(&d.autodiff(), GpuPrecision::F16)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--precision f16") && e.contains("GPU backends") && e.contains("bf16|int8"),
            "{e}"
        );
    }

    #[cfg(feature = "flex")]
    #[test]
    fn cpu_is_one_device_that_may_be_listed_twice() {
        assert_eq!(device_count(Backend::Cpu).unwrap(), 1);
        let two = devices(Backend::Cpu, &[0, 0]).unwrap();
        assert_eq!(two.len(), 2);
        assert_eq!(two[0], two[1]);
        let e = devices(Backend::Cpu, &[0, 1]).unwrap_err().to_string();
        assert!(
            e.contains("1 device (index 0)") && e.contains("index 1"),
            "{e}"
        );
    }

    #[cfg(feature = "flex")]
    #[test]
    fn cpu_autodiff_device_records_gradients() {
        let d = autodiff_device(Backend::Cpu).unwrap();
        assert!(d.is_autodiff());
    }
}
