//! LoRA adapters on BERT's linear layers (Hu et al. 2021, "LoRA: Low-Rank
//! Adaptation of Large Language Models"), in HF PEFT's format.
//!
//! A target linear layer `y = x W + b` becomes
//! `y = x W + b + (alpha / r) · (dropout(x) A) B` with `A` `[d_in, r]` and
//! `B` `[r, d_out]` trainable and `W`, `b` frozen, which is what PEFT's
//! `lora.Linear.forward` computes (`lora_B(lora_A(dropout(x))) * scaling`
//! added to the base layer's output; PEFT stores `lora_A.weight` `[r, d_in]`
//! and `lora_B.weight` `[d_out, r]`, the transposes of ours). The adapter is
//! a burn [`Reparameterization`] of the base weight, so burn's module
//! traversal sees `A` and `B` as parameters (optimizer, records, autodiff,
//! devices), [`Param::val`] is the merged weight `W + (alpha/r) A B`, and
//! [`merge`] folds the adapters into plain weights (PEFT's
//! `merge_and_unload`). Burn's own `Lora` reparameterizer composes the
//! merged weight on every forward pass and has no input dropout; ours keeps
//! PEFT's unmerged arithmetic in [`linear`] and takes its dropout.
//!
//! Target modules are named as PEFT names them (`query`, `key`, `value`,
//! `attention.output.dense`, `intermediate.dense`, `output.dense`, `dense`,
//! …) and matched with PEFT's rule for a list of names: a module is a target
//! when its full name equals a name or ends with `.` + name (so `dense`
//! also takes the pooler's, and `output.dense` both output projections). The
//! classification head is not a target: PEFT's `SEQ_CLS` task saves it whole
//! as a module to save, and so does Valor.
//!
//! Adapter folders are PEFT's: `adapter_config.json` and
//! `adapter_model.safetensors` with PEFT's tensor names
//! (`base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight`,
//! `base_model.model.classifier.weight`); [`read_peft`] reads one and
//! refuses what Valor does not compute (DoRA, regex targets, per-layer rank
//! patterns, LoRA biases), [`save_peft`] writes one that PEFT's
//! `PeftModel.from_pretrained` loads.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleVisitor, Param, Reparameterization, Reparameterizer};
use burn::nn::{DropoutConfig, Linear};
use burn::tensor::{Tensor, TensorData};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::classifier::BertForSequenceClassification;
use crate::config::BertConfig;
use crate::error::{Error, Result};
use crate::host;
use crate::loader::{LoadOptions, LoadReport, load_hf, transpose};

/// PEFT's adapter configuration file.
pub const ADAPTER_CONFIG: &str = "adapter_config.json";
/// PEFT's adapter weights file.
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";
/// The label names Valor writes beside an adapter (PEFT's files have none).
pub const ADAPTER_LABELS: &str = "labels.json";
/// The prefix PEFT puts before a module name in its tensor names.
const PEFT_PREFIX: &str = "base_model.model.";

/// The largest rank accepted (the adapters of a rank above the hidden size
/// are no longer low-rank).
pub const MAX_RANK: usize = 4096;

/// A LoRA configuration: rank, scaling numerator, dropout and the PEFT
/// names of the target modules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    /// Rank `r` of `A` and `B`.
    pub r: usize,
    /// `lora_alpha`: the update is scaled by `alpha / r`.
    pub alpha: f64,
    /// Dropout on the adapter's input during training (PEFT's `lora_dropout`).
    #[serde(default)]
    pub dropout: f64,
    /// Target module names, PEFT's (`query`, `value`, …).
    pub targets: Vec<String>,
    /// rsLoRA scaling `alpha / √r` (PEFT's `use_rslora`) instead of `alpha / r`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rslora: bool,
}

impl LoraConfig {
    /// PEFT's defaults for BERT with `alpha` 16: r 8, targets query and value, no dropout.
    pub fn new(r: usize, alpha: f64, targets: Vec<String>) -> Self {
        Self {
            r,
            alpha,
            dropout: 0.0,
            targets,
            rslora: false,
        }
    }

    /// Parses `r=8,alpha=16,targets=query,value[,dropout=0.1]`: `key=value`
    /// pairs separated by commas; a bare word continues the `targets` list.
    /// `r` is required; `alpha` defaults to `r` (PEFT's default is 8), `targets`
    /// to `query,value`, `dropout` to 0.
    pub fn parse(spec: &str) -> Result<Self> {
        let bad = |message: String| Error::Config {
            path: None,
            message: format!("--lora `{spec}`: {message}"),
        };
        let (mut r, mut alpha, mut dropout) = (None, None, 0.0);
        let mut targets: Vec<String> = Vec::new();
        let mut in_targets = false;
        for part in spec.split(',').map(str::trim) {
            if part.is_empty() {
                return Err(bad("empty item (two commas in a row?)".into()));
            }
            let Some((key, value)) = part.split_once('=') else {
                if in_targets {
                    targets.push(part.to_string());
                    continue;
                }
                return Err(bad(format!(
                    "`{part}` is not key=value; keys are r, alpha, dropout, targets"
                )));
            };
            in_targets = false;
            let number = |what: &str| {
                value
                    .trim()
                    .parse::<f64>()
                    .map_err(|_| bad(format!("{what} `{value}` is not a number")))
            };
            match key.trim() {
                "r" | "rank" => {
                    r = Some(
                        value
                            .trim()
                            .parse::<usize>()
                            .map_err(|_| bad(format!("r `{value}` is not a whole number")))?,
                    )
                }
                "alpha" | "lora_alpha" => alpha = Some(number("alpha")?),
                "dropout" | "lora_dropout" => dropout = number("dropout")?,
                "targets" | "target_modules" => {
                    in_targets = true;
                    targets.push(value.trim().to_string());
                }
                other => {
                    return Err(bad(format!(
                        "unknown key `{other}`; keys are r, alpha, dropout, targets"
                    )));
                }
            }
        }
        let r = r.ok_or_else(|| bad("r is missing (e.g. r=8)".into()))?;
        if targets.is_empty() {
            targets = vec!["query".into(), "value".into()];
        }
        let config = Self {
            r,
            alpha: alpha.unwrap_or(r as f64),
            dropout,
            targets,
            rslora: false,
        };
        config.validate().map_err(|e| match e {
            Error::Config { message, .. } => bad(message),
            other => other,
        })?;
        Ok(config)
    }

    /// Checks the numbers (the targets are checked against a model by
    /// [`targets`]).
    pub fn validate(&self) -> Result<()> {
        let bad = |message: String| {
            Err(Error::Config {
                path: None,
                message,
            })
        };
        if self.r == 0 || self.r > MAX_RANK {
            return bad(format!(
                "LoRA rank r must be 1..={MAX_RANK}, got {}",
                self.r
            ));
        }
        if !self.alpha.is_finite() || self.alpha <= 0.0 {
            return bad(format!(
                "LoRA alpha must be a positive number, got {}",
                self.alpha
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!(
                "LoRA dropout must be in [0, 1), got {}",
                self.dropout
            ));
        }
        if self.targets.is_empty() {
            return bad("LoRA needs at least one target module".into());
        }
        Ok(())
    }

    /// The factor on `A B`: `alpha / r` (`alpha / √r` with rsLoRA).
    pub fn scale(&self) -> f64 {
        if self.rslora {
            self.alpha / (self.r as f64).sqrt()
        } else {
            self.alpha / self.r as f64
        }
    }
}

/// One adaptable linear layer: its PEFT module name and its burn path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoraModule {
    /// PEFT's (HF's) module name, e.g. `bert.encoder.layer.0.attention.self.query`.
    pub peft: String,
    /// The burn path of the `Linear`, e.g. `bert.encoder.layers.0.attention.query`.
    pub burn: String,
}

/// Every linear layer LoRA can adapt, in model order (the head excluded).
pub fn adaptable_modules(num_layers: usize) -> Vec<LoraModule> {
    const LAYER: &[(&str, &str)] = &[
        ("attention.self.query", "attention.query"),
        ("attention.self.key", "attention.key"),
        ("attention.self.value", "attention.value"),
        ("attention.output.dense", "attention.output"),
        ("intermediate.dense", "intermediate"),
        ("output.dense", "output"),
    ];
    let mut out = Vec::with_capacity(num_layers * LAYER.len() + 1);
    for i in 0..num_layers {
        for (peft, burn) in LAYER {
            out.push(LoraModule {
                peft: format!("bert.encoder.layer.{i}.{peft}"),
                burn: format!("bert.encoder.layers.{i}.{burn}"),
            });
        }
    }
    out.push(LoraModule {
        peft: "bert.pooler.dense".into(),
        burn: "bert.pooler.dense".into(),
    });
    out
}

/// The modules `config`'s targets select, by PEFT's rule for a list of
/// names (equal, or ending with `.` + name). A target that selects nothing
/// is an error naming the names there are.
pub fn targets(config: &LoraConfig, num_layers: usize) -> Result<Vec<LoraModule>> {
    let all = adaptable_modules(num_layers);
    let matches = |m: &LoraModule, t: &str| m.peft == t || m.peft.ends_with(&format!(".{t}"));
    for t in &config.targets {
        if !all.iter().any(|m| matches(m, t)) {
            let head = if t == "classifier" {
                " (the classification head is trained and saved whole, as PEFT's SEQ_CLS does)"
            } else {
                ""
            };
            return Err(Error::Config {
                path: None,
                message: format!(
                    "LoRA target `{t}` matches no linear layer of BERT{head}; targets are PEFT's \
                     module names: query, key, value, attention.output.dense, intermediate.dense, \
                     output.dense, dense, pooler.dense (or a longer suffix such as \
                     layer.0.attention.self.query)"
                ),
            });
        }
    }
    Ok(all
        .into_iter()
        .filter(|m| config.targets.iter().any(|t| matches(m, t)))
        .collect())
}

/// The adapter of one linear layer: `A` `[d_in, r]`, `B` `[r, d_out]`, the
/// scale and the input dropout.
#[derive(Module, Debug)]
pub struct LoraAdapter {
    /// Down-projection `[d_in, r]` (PEFT's `lora_A.weight`, transposed).
    pub a: Param<Tensor<2>>,
    /// Up-projection `[r, d_out]` (PEFT's `lora_B.weight`, transposed).
    pub b: Param<Tensor<2>>,
    /// `alpha / r`.
    pub scale: f64,
    /// Dropout probability on the adapter's input (training only).
    pub dropout: f64,
}

impl Reparameterization for LoraAdapter {
    const NAME: &'static str = "lora";

    /// The merged weight `W + scale · A B` (what [`Param::val`] returns and
    /// [`merge`] keeps).
    fn apply<const D: usize>(&self, base: Tensor<D>) -> Tensor<D> {
        let delta = self
            .a
            .val()
            .matmul(self.b.val())
            .mul_scalar(self.scale)
            .reshape(base.shape());
        base + delta
    }
}

/// `linear`'s output for `x` `[rows, d_in]`: PEFT's unmerged LoRA
/// arithmetic `x W + b + scale · (dropout(x) A) B` when the layer carries
/// an adapter, the plain layer otherwise.
pub fn linear(layer: &Linear, x: Tensor<2>) -> Tensor<2> {
    let Some(adapter) = layer.weight.reparameterization::<LoraAdapter>() else {
        return crate::lowp::linear(layer, x);
    };
    let base = burn::tensor::module::linear(
        x.clone(),
        layer.weight.base(),
        layer.bias.as_ref().map(|b| b.val()),
    );
    let x = if adapter.dropout > 0.0 {
        host::dropout(&DropoutConfig::new(adapter.dropout).init(), x)
    } else {
        x
    };
    base + x
        .matmul(adapter.a.val())
        .matmul(adapter.b.val())
        .mul_scalar(adapter.scale)
}

/// Where the factors of a new adapter come from.
enum Factors {
    /// PEFT's default init: `A` Kaiming-uniform (bound `1/√d_in`, as
    /// `kaiming_uniform_(a=√5)` gives), `B` zero, so the model starts as the
    /// base; drawn from SplitMix64 streams of the seed (the same on every
    /// backend).
    Fresh { seed: u64 },
    /// Values given by burn path of the weight: `A` `[d_in, r]`, `B` `[r, d_out]`.
    Given(HashMap<String, (Vec<f32>, Vec<f32>)>),
}

/// Attaches adapters to the weights of `modules` and freezes every other
/// parameter except the head's (`classifier.*`), which stays trainable.
struct Attach<'a> {
    weights: HashMap<String, usize>,
    config: &'a LoraConfig,
    factors: Factors,
}

impl Reparameterizer for Attach<'_> {
    type Reparam = LoraAdapter;

    fn reparameterize<const D: usize>(
        &mut self,
        path: &str,
        param: Param<Tensor<D>>,
    ) -> (Param<Tensor<D>>, Option<LoraAdapter>) {
        if path.starts_with("classifier.") {
            return (param, None);
        }
        let index = match self.weights.get(path) {
            Some(&i) if D == 2 => i,
            _ => return (param.set_require_grad(false), None),
        };
        let dims = param.lazy_shape().dims::<D>();
        let (d_in, d_out, r) = (dims[0], dims[1], self.config.r);
        let device = param.lazy_device();
        let (a, b) = match &mut self.factors {
            Factors::Fresh { seed } => {
                let bound = 1.0 / (d_in as f64).sqrt();
                let stream = valor_base::splitmix::splitmix64_xor(*seed, index as u64);
                let mut rng = valor_base::splitmix::SplitMix64::new(stream);
                let a: Vec<f32> = (0..d_in * r)
                    .map(|_| {
                        ((valor_base::splitmix::unit_f64(rng.next()) * 2.0 - 1.0) * bound) as f32
                    })
                    .collect();
                (a, vec![0f32; r * d_out])
            }
            Factors::Given(map) => map.remove(path).unwrap_or_default(),
        };
        let a = Tensor::<2>::from_data(TensorData::new(a, [d_in, r]), &device);
        let b = Tensor::<2>::from_data(TensorData::new(b, [r, d_out]), &device);
        let adapter = LoraAdapter {
            a: Param::from_tensor(a),
            b: Param::from_tensor(b),
            scale: self.config.scale(),
            dropout: self.config.dropout,
        };
        (param.set_require_grad(false), Some(adapter))
    }
}

fn weight_paths(modules: &[LoraModule]) -> HashMap<String, usize> {
    modules
        .iter()
        .enumerate()
        .map(|(i, m)| (format!("{}.weight", m.burn), i))
        .collect()
}

/// `model` with fresh adapters (PEFT's init: the model still computes the
/// base's logits) on `config`'s targets, every base parameter frozen and the
/// head trainable. `seed` fixes `A`.
pub fn attach(
    model: BertForSequenceClassification,
    config: &LoraConfig,
    seed: u64,
) -> Result<BertForSequenceClassification> {
    config.validate()?;
    let modules = targets(config, model.bert.encoder.layers.len())?;
    // A quantised base's stored integers would keep the adapters off.
    let (model, _) = crate::quant::take_stored(model);
    Ok(model.apply_reparameterization(Attach {
        weights: weight_paths(&modules),
        config,
        factors: Factors::Fresh { seed },
    }))
}

/// Folds every adapter into its weight (`W + scale · A B`), giving a plain
/// model (PEFT's `merge_and_unload`).
pub fn merge(model: BertForSequenceClassification) -> BertForSequenceClassification {
    model.materialize()
}

/// Whether any layer of `model` carries an adapter.
pub fn has_adapters(model: &BertForSequenceClassification) -> bool {
    adapter_count(model) > 0
}

fn adapter_count(model: &BertForSequenceClassification) -> usize {
    struct Count(usize);
    impl ModuleVisitor for Count {
        fn enter_module(&mut self, name: &str, container_type: &str) {
            if name == LoraAdapter::NAME && container_type == "Reparameterization" {
                self.0 += 1;
            }
        }
    }
    let mut c = Count(0);
    model.visit(&mut c);
    c.0
}

/// Parameters an optimizer updates: those that require gradients (the
/// adapters' `A` and `B` and the head after [`attach`]).
pub fn trainable_parameters(model: &BertForSequenceClassification) -> usize {
    struct Count(usize);
    impl ModuleVisitor for Count {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if param.val().is_require_grad() {
                self.0 += param.lazy_shape().num_elements();
            }
        }
    }
    let mut c = Count(0);
    model.visit(&mut c);
    c.0
}

/// The adapter weights alone (`A` and `B` of every adapter).
pub fn adapter_parameters(model: &BertForSequenceClassification) -> usize {
    struct Count {
        path: Vec<String>,
        n: usize,
    }
    impl ModuleVisitor for Count {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if self.path.iter().any(|p| p == LoraAdapter::NAME) {
                self.n += param.lazy_shape().num_elements();
            }
        }
    }
    let mut c = Count {
        path: Vec::new(),
        n: 0,
    };
    model.visit(&mut c);
    c.n
}

/// A PEFT LoRA adapter read from a folder.
#[derive(Debug, Clone)]
pub struct PeftAdapter {
    /// The folder.
    pub dir: PathBuf,
    /// Rank, alpha, dropout, targets.
    pub config: LoraConfig,
    /// `base_model_name_or_path` of `adapter_config.json`, when set.
    pub base_model: Option<String>,
    /// PEFT module name → (`lora_A.weight` `[r, d_in]`, `lora_B.weight`
    /// `[d_out, r]`), each as (shape, values).
    factors: BTreeMap<String, (Tensor2, Tensor2)>,
    /// The head saved as a module to save: HF name (`classifier.weight`,
    /// `classifier.bias`) → (shape, values).
    head: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    /// Label names written beside the adapter (Valor's `labels.json`), if any.
    pub labels: Option<Vec<String>>,
}

type Tensor2 = (Vec<usize>, Vec<f32>);

/// One tensor of `adapter_model.safetensors`: PEFT name, shape, values.
pub type PeftTensor = (String, Vec<usize>, Vec<f32>);

impl PeftAdapter {
    /// Rows of the saved head (its number of labels), if it has one.
    pub fn head_labels(&self) -> Option<usize> {
        self.head
            .get("classifier.weight")
            .map(|(shape, _)| shape[0])
    }
}

/// Reads a PEFT LoRA adapter folder (`adapter_config.json`,
/// `adapter_model.safetensors`, optional `labels.json`).
pub fn read_peft(dir: &Path) -> Result<PeftAdapter> {
    let config_path = dir.join(ADAPTER_CONFIG);
    let weights_path = dir.join(ADAPTER_WEIGHTS);
    for (p, what) in [
        (&config_path, ADAPTER_CONFIG),
        (&weights_path, ADAPTER_WEIGHTS),
    ] {
        if !p.is_file() {
            return Err(Error::MissingFile {
                dir: dir.to_path_buf(),
                what: format!(
                    "{what} (a PEFT adapter folder holds {ADAPTER_CONFIG} and {ADAPTER_WEIGHTS})"
                ),
            });
        }
    }
    let text = valor_fsio::read_to_string_capped(&config_path, 1 << 20)
        .map_err(|e| Error::io(&config_path, e))?;
    let value: Value = serde_json::from_str(&text).map_err(|source| Error::Json {
        path: config_path.clone(),
        source,
    })?;
    let (config, base_model) = parse_adapter_config(&value, &config_path)?;

    let bytes = std::fs::read(&weights_path).map_err(|e| Error::io(&weights_path, e))?;
    let tensors = SafeTensors::deserialize(&bytes).map_err(|e| Error::Safetensors {
        path: weights_path.clone(),
        message: e.to_string(),
    })?;
    let mut factors: BTreeMap<String, (Option<Tensor2>, Option<Tensor2>)> = BTreeMap::new();
    let mut head = BTreeMap::new();
    let mut unused = Vec::new();
    let mut names: Vec<String> = tensors.names().into_iter().map(str::to_string).collect();
    names.sort();
    for name in names {
        let view = tensors.tensor(&name).map_err(|e| Error::Safetensors {
            path: weights_path.clone(),
            message: format!("tensor `{name}`: {e}"),
        })?;
        let Some(rest) = name.strip_prefix(PEFT_PREFIX) else {
            unused.push(name);
            continue;
        };
        // Older PEFT versions keep the adapter name ("default") in saved names.
        let rest = rest
            .replace(".modules_to_save.default.", ".")
            .replace(".modules_to_save.", ".")
            .replace(".default.weight", ".weight");
        let lora = [(".lora_A.weight", true), (".lora_B.weight", false)]
            .into_iter()
            .find_map(|(suffix, is_a)| rest.strip_suffix(suffix).map(|m| (m.to_string(), is_a)));
        if let Some((module, is_a)) = lora {
            let t = read_f32(&view, &name, &weights_path)?;
            if t.0.len() != 2 {
                return Err(Error::ShapeMismatch {
                    path: weights_path.clone(),
                    name,
                    expected: vec![config.r, 0],
                    found: t.0,
                    hint: "; a LoRA factor is a matrix".into(),
                });
            }
            let slot = factors.entry(module).or_default();
            if is_a {
                slot.0 = Some(t);
            } else {
                slot.1 = Some(t);
            }
        } else if rest == "classifier.weight" || rest == "classifier.bias" {
            head.insert(rest, read_f32(&view, &name, &weights_path)?);
        } else {
            unused.push(name);
        }
    }
    if !unused.is_empty() {
        return Err(Error::UnsupportedFormat {
            path: weights_path,
            message: format!(
                "tensors Valor does not know in a LoRA adapter (only `{PEFT_PREFIX}<module>.lora_A.weight`/`lora_B.weight` \
                 and the head `{PEFT_PREFIX}classifier.weight`/`bias`): {}",
                unused.join(", ")
            ),
        });
    }
    let mut complete = BTreeMap::new();
    for (module, (a, b)) in factors {
        match (a, b) {
            (Some(a), Some(b)) => {
                complete.insert(module, (a, b));
            }
            (a, _) => {
                let which = if a.is_none() { "lora_A" } else { "lora_B" };
                return Err(Error::MissingTensor {
                    path: weights_path,
                    name: format!("{PEFT_PREFIX}{module}.{which}.weight"),
                    expected: Vec::new(),
                });
            }
        }
    }
    let labels_path = dir.join(ADAPTER_LABELS);
    let labels = if labels_path.is_file() {
        Some(read_labels(&labels_path)?)
    } else {
        None
    };
    Ok(PeftAdapter {
        dir: dir.to_path_buf(),
        config,
        base_model,
        factors: complete,
        head,
        labels,
    })
}

fn read_labels(path: &Path) -> Result<Vec<String>> {
    let text = valor_fsio::read_to_string_capped(path, 1 << 20).map_err(|e| Error::io(path, e))?;
    let value: Value = serde_json::from_str(&text).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })?;
    let bad = || Error::UnsupportedFormat {
        path: path.to_path_buf(),
        message: "expected {\"labels\": [\"name\", …]}".into(),
    };
    value
        .get("labels")
        .and_then(Value::as_array)
        .ok_or_else(bad)?
        .iter()
        .map(|v| v.as_str().map(str::to_string).ok_or_else(bad))
        .collect()
}

fn read_f32(view: &TensorView<'_>, name: &str, path: &Path) -> Result<Tensor2> {
    let shape = view.shape().to_vec();
    let dtype = match view.dtype() {
        Dtype::F32 => burn::tensor::DType::F32,
        Dtype::F16 => burn::tensor::DType::F16,
        Dtype::BF16 => burn::tensor::DType::BF16,
        Dtype::F64 => burn::tensor::DType::F64,
        other => {
            return Err(Error::DType {
                path: path.to_path_buf(),
                name: name.to_string(),
                dtype: format!("{other:?}"),
            });
        }
    };
    let values = TensorData::from_bytes_vec(view.data().to_vec(), shape.clone(), dtype)
        .try_into_vec_as::<f32>()
        .map_err(|e| Error::Safetensors {
            path: path.to_path_buf(),
            message: format!("tensor `{name}`: {e}"),
        })?;
    Ok((shape, values))
}

/// `adapter_config.json` → our configuration; what Valor does not compute
/// is refused by name.
fn parse_adapter_config(v: &Value, path: &Path) -> Result<(LoraConfig, Option<String>)> {
    let bad = |message: String| Error::UnsupportedFormat {
        path: path.to_path_buf(),
        message,
    };
    let peft_type = v.get("peft_type").and_then(Value::as_str).unwrap_or("");
    if peft_type != "LORA" {
        return Err(bad(format!(
            "peft_type `{peft_type}`: only LoRA adapters (`LORA`) are read"
        )));
    }
    let r = v
        .get("r")
        .and_then(Value::as_u64)
        .ok_or_else(|| bad("`r` is missing or not a whole number".into()))? as usize;
    let alpha = match v.get("lora_alpha") {
        None | Some(Value::Null) => 8.0,
        Some(a) => a
            .as_f64()
            .ok_or_else(|| bad("`lora_alpha` is not a number".into()))?,
    };
    let dropout = v.get("lora_dropout").and_then(Value::as_f64).unwrap_or(0.0);
    let targets = match v.get("target_modules") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|t| {
                t.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| bad("`target_modules` holds a non-string".into()))
            })
            .collect::<Result<Vec<_>>>()?,
        Some(Value::String(s)) => {
            return Err(bad(format!(
                "`target_modules` is the regular expression `{s}`; Valor reads a list of module names"
            )));
        }
        _ => return Err(bad("`target_modules` is missing".into())),
    };
    let flag = |k: &str| v.get(k).and_then(Value::as_bool).unwrap_or(false);
    for (key, what) in [
        ("use_dora", "DoRA"),
        ("fan_in_fan_out", "fan_in_fan_out (Conv1D layers)"),
        ("lora_bias", "LoRA biases"),
        ("use_qalora", "QALoRA"),
    ] {
        if flag(key) {
            return Err(bad(format!("`{key}` is true: {what} is not supported")));
        }
    }
    if let Some(b) = v.get("bias").and_then(Value::as_str)
        && b != "none"
    {
        return Err(bad(format!(
            "`bias` is `{b}`: only `none` is supported (biases stay frozen)"
        )));
    }
    for key in ["rank_pattern", "alpha_pattern"] {
        if v.get(key)
            .and_then(Value::as_object)
            .is_some_and(|o| !o.is_empty())
        {
            return Err(bad(format!(
                "`{key}` is set: per-module ranks and alphas are not supported"
            )));
        }
    }
    for key in [
        "layers_to_transform",
        "layer_replication",
        "target_parameters",
    ] {
        if v.get(key).is_some_and(|x| !x.is_null()) {
            return Err(bad(format!("`{key}` is set: not supported")));
        }
    }
    let config = LoraConfig {
        r,
        alpha,
        dropout,
        targets,
        rslora: flag("use_rslora"),
    };
    config.validate().map_err(|e| match e {
        Error::Config { message, .. } => bad(message),
        other => other,
    })?;
    let base = v
        .get("base_model_name_or_path")
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok((config, base))
}

/// `model` (the base, with the adapter's head size) with `adapter`'s
/// factors attached and its head loaded. Every targeted module must have
/// factors in the file and every factor must belong to a targeted module,
/// with the shapes the model and `r` give.
pub fn apply_peft(
    model: BertForSequenceClassification,
    adapter: &PeftAdapter,
) -> Result<BertForSequenceClassification> {
    let weights_path = adapter.dir.join(ADAPTER_WEIGHTS);
    let config_path = adapter.dir.join(ADAPTER_CONFIG);
    let modules =
        targets(&adapter.config, model.bert.encoder.layers.len()).map_err(|e| match e {
            Error::Config { message, .. } => Error::Config {
                path: Some(config_path.clone()),
                message,
            },
            other => other,
        })?;
    let shapes = linear_shapes(&model);
    let r = adapter.config.r;
    let mut given = HashMap::new();
    for m in &modules {
        let Some((a, b)) = adapter.factors.get(&m.peft) else {
            return Err(Error::MissingTensor {
                path: weights_path,
                name: format!("{PEFT_PREFIX}{}.lora_A.weight", m.peft),
                expected: Vec::new(),
            });
        };
        let weight = format!("{}.weight", m.burn);
        let [d_in, d_out] = shapes
            .get(&weight)
            .copied()
            .ok_or_else(|| Error::Unmapped {
                path: weight.clone(),
            })?;
        for (name, t, expected) in [("lora_A", a, vec![r, d_in]), ("lora_B", b, vec![d_out, r])] {
            if t.0 != expected {
                return Err(Error::ShapeMismatch {
                    path: weights_path,
                    name: format!("{PEFT_PREFIX}{}.{name}.weight", m.peft),
                    expected,
                    found: t.0.clone(),
                    hint: format!(
                        "; r is {r} in {ADAPTER_CONFIG}: is this the adapter of this base model?"
                    ),
                });
            }
        }
        given.insert(
            weight,
            (transpose(&a.1, r, d_in), transpose(&b.1, d_out, r)),
        );
    }
    if let Some(extra) = adapter
        .factors
        .keys()
        .find(|k| !modules.iter().any(|m| &&m.peft == k))
    {
        return Err(Error::UnsupportedFormat {
            path: weights_path,
            message: format!(
                "tensors of module `{extra}`, which target_modules {:?} does not select (or BERT does not have)",
                adapter.config.targets
            ),
        });
    }
    // A quantised base's stored integers would keep the adapters off.
    let (model, _) = crate::quant::take_stored(model);
    let model = model.apply_reparameterization(Attach {
        weights: weight_paths(&modules),
        config: &adapter.config,
        factors: Factors::Given(given),
    });
    if adapter.head.is_empty() {
        return Ok(model);
    }
    let mut head_tensors = Vec::new();
    for name in ["classifier.weight", "classifier.bias"] {
        let (shape, values) = adapter.head.get(name).ok_or_else(|| Error::MissingTensor {
            path: weights_path.clone(),
            name: format!("{PEFT_PREFIX}{name}"),
            expected: Vec::new(),
        })?;
        head_tensors.push((name, shape.clone(), values.clone()));
    }
    let [hidden, labels] = model.classifier.weight.lazy_shape().dims::<2>();
    let (_, wshape, w) = &head_tensors[0];
    let (_, bshape, b) = &head_tensors[1];
    if wshape != &vec![labels, hidden] || bshape != &vec![labels] {
        return Err(Error::ShapeMismatch {
            path: weights_path,
            name: format!("{PEFT_PREFIX}classifier.weight"),
            expected: vec![labels, hidden],
            found: wshape.clone(),
            hint: "; the head has a different number of labels".into(),
        });
    }
    let device = model.classifier.weight.lazy_device();
    let mut model = model;
    let wt = Tensor::<2>::from_data(
        TensorData::new(transpose(w, labels, hidden), [hidden, labels]),
        &device,
    );
    let bt = Tensor::<1>::from_data(TensorData::new(b.clone(), [labels]), &device);
    let id = model.classifier.weight.id;
    model.classifier.weight = model.classifier.weight.transform_for_load(wt, id);
    if let Some(bias) = model.classifier.bias.take() {
        let id = bias.id;
        model.classifier.bias = Some(bias.transform_for_load(bt, id));
    }
    Ok(model)
}

/// Loads the HF folder `base` with the PEFT adapter in `adapter` on
/// `device`: the base's weights, the adapter's factors (kept unmerged, as
/// PEFT's model computes them) and the adapter's head when it saved one
/// (`SEQ_CLS`'s module to save). The labels are the adapter's `labels.json`
/// when it has one, else the base's `id2label` when its size fits the head,
/// else `LABEL_i`. The returned configuration is the model's (a
/// [`merge`]d model saves with it).
pub fn load_hf_with_adapter(
    base: &Path,
    adapter: &Path,
    device: &burn::tensor::Device,
    options: LoadOptions,
) -> Result<(
    BertConfig,
    BertForSequenceClassification,
    LoadReport,
    PeftAdapter,
)> {
    let peft = read_peft(adapter)?;
    let mut options = options;
    if let Some(n) = peft.head_labels() {
        options.num_labels = Some(n);
    }
    let base_labels = BertConfig::from_file(&base.join("config.json"))
        .ok()
        .map(|c| c.id2label);
    let (config, model, mut report) = load_hf(base, device, options)?;
    let model = apply_peft(model, &peft)?;
    let mut config = config;
    if peft.head_labels().is_some() {
        report.initialized.clear();
        for name in ["classifier.weight", "classifier.bias"] {
            report
                .loaded
                .insert(name.to_string(), format!("{PEFT_PREFIX}{name}"));
        }
        report.files.push(adapter.join(ADAPTER_WEIGHTS));
    }
    let labels = match (&peft.labels, base_labels) {
        (Some(l), _) if l.len() == config.num_labels => Some(l.clone()),
        (Some(l), _) => {
            return Err(Error::Config {
                path: Some(adapter.join(ADAPTER_LABELS)),
                message: format!(
                    "{} label names for a head of {} labels",
                    l.len(),
                    config.num_labels
                ),
            });
        }
        (None, Some(b)) if b.len() == config.num_labels => Some(b),
        _ => None,
    };
    if let Some(labels) = labels {
        config = config.with_labels(labels);
    }
    Ok((config, model, report, peft))
}

/// `[d_in, d_out]` of every 2-D parameter by burn path.
fn linear_shapes(model: &BertForSequenceClassification) -> HashMap<String, [usize; 2]> {
    struct Shapes {
        path: Vec<String>,
        out: HashMap<String, [usize; 2]>,
    }
    impl ModuleVisitor for Shapes {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if D == 2 {
                let d = param.lazy_shape().dims::<D>();
                self.out.insert(self.path.join("."), [d[0], d[1]]);
            }
        }
    }
    let mut s = Shapes {
        path: Vec::new(),
        out: HashMap::new(),
    };
    model.visit(&mut s);
    s.out
}

/// The adapter tensors of `model` under PEFT's names, in PEFT's layout,
/// plus the head: what `adapter_model.safetensors` holds.
pub fn peft_tensors(
    model: &BertForSequenceClassification,
    config: &LoraConfig,
) -> Result<Vec<PeftTensor>> {
    struct Collect {
        path: Vec<String>,
        values: HashMap<String, (Vec<usize>, Vec<f32>)>,
        error: Option<Error>,
    }
    impl ModuleVisitor for Collect {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let name = self.path.join(".");
            let t = param.val();
            let shape = t.dims().to_vec();
            match t.try_into_vec_as::<f32>() {
                Ok(v) => {
                    self.values.insert(name, (shape, v));
                }
                Err(e) => {
                    self.error.get_or_insert(Error::TensorRead {
                        name,
                        message: e.to_string(),
                    });
                }
            }
        }
    }
    let mut c = Collect {
        path: Vec::new(),
        values: HashMap::new(),
        error: None,
    };
    model.visit(&mut c);
    if let Some(e) = c.error {
        return Err(e);
    }
    let modules = targets(config, model.bert.encoder.layers.len())?;
    let mut out = Vec::new();
    let mut take = |burn: String| c.values.remove(&burn).ok_or(Error::Unmapped { path: burn });
    for m in &modules {
        let (ashape, a) = take(format!("{}.weight.lora.a", m.burn))?;
        let (bshape, b) = take(format!("{}.weight.lora.b", m.burn))?;
        let (d_in, r, d_out) = (ashape[0], ashape[1], bshape[1]);
        out.push((
            format!("{PEFT_PREFIX}{}.lora_A.weight", m.peft),
            vec![r, d_in],
            transpose(&a, d_in, r),
        ));
        out.push((
            format!("{PEFT_PREFIX}{}.lora_B.weight", m.peft),
            vec![d_out, r],
            transpose(&b, r, d_out),
        ));
    }
    let (wshape, w) = take("classifier.weight".into())?;
    let (hidden, labels) = (wshape[0], wshape[1]);
    out.push((
        format!("{PEFT_PREFIX}classifier.weight"),
        vec![labels, hidden],
        transpose(&w, hidden, labels),
    ));
    let (bshape, b) = take("classifier.bias".into())?;
    out.push((format!("{PEFT_PREFIX}classifier.bias"), bshape, b));
    Ok(out)
}

/// Writes `model`'s adapters as a PEFT adapter folder at `dir` (created if
/// missing; each file written atomically): `adapter_config.json` (task
/// `SEQ_CLS`, the head as a module to save), `adapter_model.safetensors`
/// (PEFT's names) and `labels.json` (the label names, which PEFT's files
/// do not hold). `base_model` goes into `base_model_name_or_path`.
pub fn save_peft(
    model: &BertForSequenceClassification,
    config: &LoraConfig,
    dir: &Path,
    base_model: &str,
    labels: &[String],
) -> Result<()> {
    let tensors = peft_tensors(model, config)?;
    let weights_path = dir.join(ADAPTER_WEIGHTS);
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let mut views = Vec::with_capacity(tensors.len());
    for ((name, shape, _), data) in tensors.iter().zip(&bytes) {
        let view =
            TensorView::new(Dtype::F32, shape.clone(), data).map_err(|e| Error::Safetensors {
                path: weights_path.clone(),
                message: format!("tensor `{name}`: {e}"),
            })?;
        views.push((name.clone(), view));
    }
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    let weights =
        safetensors::serialize(views, Some(metadata)).map_err(|e| Error::Safetensors {
            path: weights_path.clone(),
            message: e.to_string(),
        })?;
    let adapter_config = json!({
        "peft_type": "LORA",
        "task_type": "SEQ_CLS",
        "base_model_name_or_path": base_model,
        "r": config.r,
        "lora_alpha": config.alpha,
        "lora_dropout": config.dropout,
        "target_modules": config.targets,
        "modules_to_save": ["classifier", "score"],
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "use_rslora": config.rslora,
        "use_dora": false,
        "layers_to_transform": null,
        "layers_pattern": null,
        "rank_pattern": {},
        "alpha_pattern": {},
        "revision": null,
    });
    let config_text =
        serde_json::to_string_pretty(&adapter_config).map_err(|source| Error::Json {
            path: dir.join(ADAPTER_CONFIG),
            source,
        })?;
    let labels_text =
        serde_json::to_string_pretty(&json!({ "labels": labels })).map_err(|source| {
            Error::Json {
                path: dir.join(ADAPTER_LABELS),
                source,
            }
        })?;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    for (name, bytes) in [
        (ADAPTER_WEIGHTS, weights),
        (ADAPTER_CONFIG, format!("{config_text}\n").into_bytes()),
        (ADAPTER_LABELS, format!("{labels_text}\n").into_bytes()),
    ] {
        let path = dir.join(name);
        valor_fsio::write_atomic(&path, |f| std::io::Write::write_all(f, &bytes))
            .map_err(|e| Error::io(&path, e.source))?;
    }
    Ok(())
}

/// Whether `name` is a file of an adapter folder Valor writes.
pub fn is_adapter_file(name: &str) -> bool {
    matches!(name, ADAPTER_CONFIG | ADAPTER_WEIGHTS | ADAPTER_LABELS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_reads_the_flag() {
        let c = LoraConfig::parse("r=8,alpha=16,targets=query,value,dropout=0.1").unwrap();
        assert_eq!(c.r, 8);
        assert_eq!(c.alpha, 16.0);
        assert_eq!(c.dropout, 0.1);
        assert_eq!(c.targets, vec!["query", "value"]);
        assert_eq!(c.scale(), 2.0);
        let d = LoraConfig::parse("r=4").unwrap();
        assert_eq!((d.alpha, d.dropout), (4.0, 0.0));
        assert_eq!(d.targets, vec!["query", "value"]);
        for bad in [
            "alpha=16",
            "r=0",
            "r=8,alpha=-1",
            "r=8,dropout=1",
            "r=8,,alpha=2",
            "r=8,foo=1",
            "r=x",
        ] {
            assert!(LoraConfig::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn targets_follow_peft_suffix_rule() {
        let sel = |t: &[&str]| {
            let c = LoraConfig::new(8, 16.0, t.iter().map(|s| s.to_string()).collect());
            targets(&c, 2).map(|m| m.into_iter().map(|m| m.peft).collect::<Vec<_>>())
        };
        assert_eq!(sel(&["query", "value"]).unwrap().len(), 4);
        assert_eq!(
            sel(&["output.dense"]).unwrap(),
            vec![
                "bert.encoder.layer.0.attention.output.dense",
                "bert.encoder.layer.0.output.dense",
                "bert.encoder.layer.1.attention.output.dense",
                "bert.encoder.layer.1.output.dense",
            ]
        );
        // `dense` takes every dense layer, the pooler's too, as in PEFT.
        assert_eq!(sel(&["dense"]).unwrap().len(), 2 * 3 + 1);
        assert_eq!(sel(&["layer.1.attention.self.key"]).unwrap().len(), 1);
        assert!(sel(&["classifier"]).is_err());
        assert!(sel(&["qeury"]).is_err());
    }
}
