//! Which devices a run trains on: the main device and one autodiff device
//! per data-parallel shard, and what to say when the backend lacks them.

use burn::tensor::Device;

use crate::config::TrainConfig;
use crate::error::{Error, Result};

/// The main device and one autodiff device per shard (the first is the
/// main device with autodiff).
pub(super) fn resolve_devices(config: &TrainConfig) -> Result<(Device, Vec<Device>)> {
    let indices = config.devices.indices();
    let shard_devices: Vec<Device> =
        valor_bert::devices(config.backend, &indices).map_err(|e| devices_error(config, e))?;
    // On a GPU backend the precision is each device's float dtype, set
    // before the first tensor lands on it (fp32 there checks it is unset).
    valor_bert::prepare_precision(config.backend, &shard_devices, config.precision)?;
    let plain = shard_devices[0].clone();
    Ok((
        plain,
        shard_devices.into_iter().map(Device::autodiff).collect(),
    ))
}

/// A device request the backend cannot meet: say what there is, and for a
/// count beyond the devices there are, how to ask for what exists.
fn devices_error(config: &TrainConfig, e: valor_bert::Error) -> Error {
    let valor_bert::Error::DeviceUnavailable {
        available, asked, ..
    } = &e
    else {
        return e.into();
    };
    let backend = config.backend.name();
    let hint = if config.backend == valor_bert::Backend::Cpu {
        concat!(
            "; burn's CPU backend (flex) is one device that already uses every core, ",
            "so one device is the fast choice (--grad-accum gives larger optimizer steps); ",
            "to run the data-parallel path on it anyway, list it once per shard, e.g. --devices 0,0"
        )
        .to_string()
    } else {
        String::new()
    };
    match &config.devices {
        crate::config::Devices::Count(n) => Error::Config {
            field: "devices".into(),
            message: format!(
                "asks for {n} devices but the {backend} backend has {available}{hint}"
            ),
        },
        crate::config::Devices::List(_) => Error::Config {
            field: "devices".into(),
            message: format!(
                "lists a device the {backend} backend lacks ({asked}); it has {available}{hint}"
            ),
        },
    }
}
