//! Shared helpers: the test device, fixture readers, small models.

use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};
use serde_json::Value;
use valor_bert::burn::tensor::Device;
use valor_bert::{
    Backend, BertConfig, BertForSequenceClassification, BertInput, LoadOptions, LoadReport,
};

/// The device of the backend under test (`VALOR_TEST_BACKEND`).
pub fn device() -> Device {
    let backend = Backend::from_env().expect("VALOR_TEST_BACKEND must name a backend");
    valor_bert::device(backend).unwrap_or_else(|e| panic!("test backend unavailable: {e}"))
}

/// `shared/models/all-MiniLM-L6-v2`.
pub fn minilm(shared: &Path) -> PathBuf {
    shared.join("models/all-MiniLM-L6-v2")
}

/// `shared/fixtures/hf-parity` (made by its `make_fixture.py`).
pub fn fixture(shared: &Path) -> PathBuf {
    shared.join("fixtures/hf-parity")
}

pub fn meta(shared: &Path) -> Value {
    let path = fixture(shared).join("meta.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// A tensor of a safetensors file as f64 values, with its shape.
pub fn read_tensor(path: &Path, name: &str) -> (Vec<usize>, Vec<f64>) {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let view = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    let data = view.data();
    let values = match view.dtype() {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|c| f64::from(f32::from_le_bytes(c.try_into().unwrap())))
            .collect(),
        Dtype::I64 => data
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64)
            .collect(),
        other => panic!("{name}: unexpected dtype {other:?}"),
    };
    (view.shape().to_vec(), values)
}

/// The encoded batch stored in the fixture (HF tokenizer output).
pub fn reference_input(shared: &Path, device: &Device) -> (BertInput, [usize; 2], Vec<u32>) {
    let reference = fixture(shared).join("reference.safetensors");
    let to_u32 = |v: Vec<f64>| v.into_iter().map(|x| x as u32).collect::<Vec<_>>();
    let (shape, ids) = read_tensor(&reference, "input_ids");
    let (_, mask) = read_tensor(&reference, "attention_mask");
    let (_, types) = read_tensor(&reference, "token_type_ids");
    let dims = [shape[0], shape[1]];
    let mask = to_u32(mask);
    let input = BertInput::from_flat(&to_u32(ids), &mask, &to_u32(types), dims, device).unwrap();
    (input, dims, mask)
}

/// A small configuration for tests that need no checkpoint.
pub fn small_config() -> BertConfig {
    let mut c = BertConfig::new(97, 32, 2, 4, 64);
    c.max_position_embeddings = 40;
    c.type_vocab_size = 2;
    c.with_num_labels(3)
}

/// `valor_bert::load_hf` holding the device generator's lock: loading
/// initialises a model (drawing from the generator) before it reads the
/// weights, and a draw inside another test's seeded stretch would change
/// that test's numbers.
pub fn load_hf(
    dir: &Path,
    device: &Device,
    options: LoadOptions,
) -> valor_bert::Result<(BertConfig, BertForSequenceClassification, LoadReport)> {
    valor_bert::with_device_rng(|| valor_bert::load_hf(dir, device, options))
}

/// A small model initialised from `seed`, holding the process-wide lock on
/// the device generator (`valor_bert::with_device_rng`, the lock the
/// library and the trainer take) so that tests running side by side never
/// interleave their draws.
pub fn small_model(
    config: &BertConfig,
    device: &Device,
    seed: u64,
) -> BertForSequenceClassification {
    valor_bert::with_device_rng(|| config.init_classifier_seeded(device, seed))
}

/// A deterministic padded batch for `small_config`: rows of different
/// lengths, [CLS]=1 ... [SEP]=2, pad 0.
pub fn small_batch(device: &Device) -> (BertInput, Vec<Vec<u32>>, Vec<Vec<u32>>) {
    let lens = [9usize, 5, 12, 3];
    let seq = 12;
    let mut ids = Vec::new();
    let mut mask = Vec::new();
    for (r, &len) in lens.iter().enumerate() {
        let mut row = vec![0u32; seq];
        let mut m = vec![0u32; seq];
        for (i, slot) in row.iter_mut().enumerate().take(len) {
            *slot = if i == 0 {
                1
            } else if i == len - 1 {
                2
            } else {
                3 + ((r * 31 + i * 7) % 90) as u32
            };
            m[i] = 1;
        }
        ids.push(row);
        mask.push(m);
    }
    let input = BertInput::from_rows(&ids, &mask, None, device).unwrap();
    (input, ids, mask)
}

pub fn to_f64(t: valor_bert::burn::Tensor<2>) -> Vec<f64> {
    t.try_into_vec_as::<f32>()
        .unwrap()
        .into_iter()
        .map(f64::from)
        .collect()
}
