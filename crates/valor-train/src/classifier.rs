//! A model folder loaded for inference: model, configuration, tokenizer and
//! label names, checked against each other once on load. `valor predict`,
//! `valor explain` and `valor serve` all load folders through [`Classifier`],
//! so they accept the same folders and refuse the same broken ones.
//!
//! A folder is any HF `BertForSequenceClassification` folder (config.json
//! with `id2label`, model.safetensors, tokenizer.json or vocab.txt), e.g. one
//! written by `valor train`. On load the tokenizer must fit the model: its
//! vocabulary (added tokens included) may not be larger than the model's
//! `vocab_size`, and its special tokens must have ids the embedding table
//! holds; otherwise an id would index past the embeddings at the first
//! forward pass. A folder's `thresholds.json` is not read here:
//! [`ThresholdsFile`](crate::ThresholdsFile) is the decision rule on top of
//! the probabilities.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::Device;
use burn::tensor::activation::softmax;
use valor_bert::explain::{IgConfig, IgExplanation, Rule, TokenSequence, pad_baseline, top_k};
use valor_bert::explain::{WordAttribution, merge_words};
use valor_bert::{Backend, BertConfig, BertForSequenceClassification, LoadOptions, PackedInput};
use valor_data::tokenize::SPECIAL_TOKENS;
use valor_data::{Bucketed, Encoded, TextTokenizer};

use crate::error::{Error, Result};

/// The class scores of one input.
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    /// The classifier's logits, in `id2label` order.
    pub logits: Vec<f64>,
    /// Softmax probabilities, in `id2label` order (computed on the device as
    /// `valor_bert::explain::predict_proba` does).
    pub probabilities: Vec<f64>,
}

/// One word and its integrated-gradients attribution to a class.
#[derive(Debug, Clone, PartialEq)]
pub struct WordScore {
    /// The word as the tokenizer split it (its pieces joined, `##` stripped).
    pub word: String,
    /// Sum of its tokens' attributions.
    pub attribution: f64,
}

/// An explanation of one input by integrated gradients, per word.
#[derive(Debug, Clone, PartialEq)]
pub struct WordExplanation {
    /// The class explained.
    pub target: usize,
    /// Every word of the input, in order.
    pub words: Vec<WordScore>,
    /// Captum's convergence delta of the token attributions.
    pub delta: f64,
}

impl WordExplanation {
    /// The `k` words with the largest attribution (ties: the earlier word).
    pub fn top_words(&self, k: usize) -> Vec<String> {
        let scores: Vec<f64> = self.words.iter().map(|w| w.attribution).collect();
        top_k(&scores, k)
            .into_iter()
            .map(|i| self.words[i].word.clone())
            .collect()
    }
}

/// A loaded classifier: model, configuration, tokenizer, label names.
#[derive(Debug)]
pub struct Classifier {
    /// The model's configuration (`config.json`).
    pub config: BertConfig,
    /// The model, on [`device`](Self::device).
    pub model: BertForSequenceClassification,
    /// The folder's tokenizer, truncating at the maximum length asked for.
    pub tokenizer: TextTokenizer,
    /// The device the model sits on.
    pub device: Device,
    dir: PathBuf,
    /// The precision integrated gradients run in on the CPU
    /// (`valor_bert::lowp::autocast`; bf16 or fp32).
    autocast: valor_bert::Precision,
}

impl Classifier {
    /// Loads `dir` for inference; with `autodiff` the model sits on an
    /// autodiff device, frozen, so it can also be differentiated
    /// (integrated gradients). Texts are truncated to `max_len` tokens (at
    /// most the model's `max_position_embeddings`).
    pub fn load(dir: &Path, backend: Backend, max_len: usize, autodiff: bool) -> Result<Self> {
        Self::load_with_adapter(dir, None, backend, max_len, autodiff)
    }

    /// [`load`](Self::load) with a PEFT LoRA adapter folder on top of the
    /// model folder `dir` (the base): the adapters stay unmerged, as PEFT
    /// computes them, and the adapter's saved head replaces the base's. The
    /// tokenizer is the base folder's.
    pub fn load_with_adapter(
        dir: &Path,
        adapter: Option<&Path>,
        backend: Backend,
        max_len: usize,
        autodiff: bool,
    ) -> Result<Self> {
        let device = if autodiff {
            valor_bert::autodiff_device(backend)?
        } else {
            valor_bert::device(backend)?
        };
        let (config, model, report) = match adapter {
            None => valor_bert::load_hf(dir, &device, LoadOptions::default())?,
            Some(adapter) => {
                let (config, model, report, _) = valor_bert::lora::load_hf_with_adapter(
                    dir,
                    adapter,
                    &device,
                    LoadOptions::default(),
                )?;
                (config, model, report)
            }
        };
        if !report.initialized.is_empty() {
            return Err(Error::Invalid {
                path: dir.to_path_buf(),
                message: format!(
                    "the checkpoint has no classifier head ({} missing); pass a fine-tuned model folder",
                    report.initialized.join(", ")
                ),
            });
        }
        let model = if autodiff { model.freeze() } else { model };
        let max_len = max_len.min(config.max_position_embeddings);
        let tokenizer = TextTokenizer::from_model_dir(dir, max_len)?;
        check_tokenizer(dir, &tokenizer, &config)?;
        Ok(Self {
            config,
            model,
            tokenizer,
            device,
            dir: dir.to_path_buf(),
            autocast: valor_bert::Precision::Fp32,
        })
    }

    /// [`load_with_adapter`](Self::load_with_adapter) at `precision`: on a
    /// GPU backend the device computes in its float dtype (fp32, bf16 or
    /// f16, set before the model is loaded: `valor_bert::prepare_precision`);
    /// on the CPU, the encoder's Linear weights are packed for inference
    /// ([`with_precision`](Self::with_precision)).
    pub fn load_at(
        dir: &Path,
        adapter: Option<&Path>,
        backend: Backend,
        max_len: usize,
        autodiff: bool,
        precision: valor_bert::Precision,
    ) -> Result<Self> {
        valor_bert::prepare_precision(backend, &[valor_bert::device(backend)?], precision)?;
        Self::load_with_adapter(dir, adapter, backend, max_len, autodiff)?.with_precision(precision)
    }

    /// Runs the model in `precision`. On the CPU: the encoder's Linear
    /// layers at inference (`valor_bert::lowp`: int8, bf16 or, on CPUs
    /// with AVX-512, f32 kernels, weights packed once here); on an autodiff
    /// device (explanations) bf16 is autocast around integrated gradients
    /// (`valor_bert::lowp::autocast`: the Linear products forward and
    /// backward in bf16), fp32 packs the weights for the frozen layers'
    /// products, and int8 is refused (no gradients), as is f16 (a GPU
    /// precision). On
    /// a GPU backend the precision is the device's float dtype, which must
    /// have been set before loading ([`load_at`](Self::load_at)): this checks
    /// that it was.
    pub fn with_precision(mut self, precision: valor_bert::Precision) -> Result<Self> {
        let cpu = valor_bert::lowp::runs_on(&self.device.clone().without_autodiff());
        if !cpu {
            let gpu = precision
                .gpu()
                .ok_or_else(|| valor_bert::Error::PrecisionCpuOnly {
                    precision: precision.name(),
                    backend: "a GPU backend",
                })?;
            valor_bert::configure_precision(&self.device, gpu)?;
            return Ok(self);
        }
        if precision == valor_bert::Precision::Bf16 && self.device.is_autodiff() {
            self.autocast = precision;
            return Ok(self);
        }
        // fp32 packs below with or without autodiff: the frozen layers of
        // integrated gradients take the f32 weights packed once too.
        if !matches!(
            precision,
            valor_bert::Precision::F16 | valor_bert::Precision::Fp32
        ) && self.device.is_autodiff()
        {
            return Err(Error::Invalid {
                path: self.dir.clone(),
                message: format!(
                    "--precision {precision} runs on the CPU backend for predictions only \
                     (not with explanations, which run in fp32 or bf16); use --precision fp32 \
                     or bf16"
                ),
            });
        }
        self.model = valor_bert::lowp::apply(self.model, precision)?;
        Ok(self)
    }

    /// The precision of integrated gradients on the CPU: bf16 after
    /// [`with_precision`](Self::with_precision)`(Bf16)` on an autodiff
    /// device (run them inside `valor_bert::lowp::autocast` with it, as
    /// [`integrated_gradients`](Self::integrated_gradients) does), else
    /// fp32.
    pub fn autocast(&self) -> valor_bert::Precision {
        self.autocast
    }

    /// The folder it was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The label names, in `id2label` order.
    pub fn labels(&self) -> &[String] {
        &self.config.id2label
    }

    /// Probabilities for each encoding, in input order; batches of at most
    /// `batch_size` are bucketed by length.
    pub fn predict(&self, encodings: Vec<Encoded>, batch_size: usize) -> Result<Vec<Vec<f64>>> {
        Ok(self
            .scores(encodings, batch_size)?
            .into_iter()
            .map(|s| s.probabilities)
            .collect())
    }

    /// Logits and probabilities for each encoding, in input order; batches
    /// of at most `batch_size` are bucketed by length.
    pub fn scores(&self, encodings: Vec<Encoded>, batch_size: usize) -> Result<Vec<Scores>> {
        let n = encodings.len();
        let mut out: Vec<Option<Scores>> = vec![None; n];
        let batches = Bucketed::new(
            encodings.into_iter().enumerate(),
            batch_size,
            16,
            self.tokenizer.pad_id(),
        );
        for b in batches {
            self.check_ids(&b.input_ids)?;
            // Unpadded: each row's real tokens only (the mask's 1s lead).
            let rows: Vec<(&[u32], Option<&[u32]>)> = (0..b.batch_size)
                .map(|r| {
                    let span = r * b.seq_len..(r + 1) * b.seq_len;
                    let len = b.attention_mask[span.clone()]
                        .iter()
                        .filter(|&&m| m == 1)
                        .count();
                    let real = span.start..span.start + len;
                    (&b.input_ids[real.clone()], Some(&b.token_type_ids[real]))
                })
                .collect();
            let input = PackedInput::new(&rows, &self.config, &self.device)?;
            let logits = self.model.forward_packed(&input);
            let [_, c] = logits.dims();
            let probs = read(softmax(logits.clone(), 1), "probabilities")?;
            let logits = read(logits, "logits")?;
            for ((i, l), p) in b
                .indices
                .into_iter()
                .zip(logits.chunks_exact(c))
                .zip(probs.chunks_exact(c))
            {
                out[i] = Some(Scores {
                    logits: l.to_vec(),
                    probabilities: p.to_vec(),
                });
            }
        }
        Ok(out.into_iter().flatten().collect())
    }

    /// Refuses token ids the embedding table does not hold (a tokenizer
    /// whose vocabulary has gaps past `vocab_size`), instead of indexing
    /// past it.
    fn check_ids(&self, ids: &[u32]) -> Result<()> {
        match ids.iter().copied().max() {
            Some(max) if max as usize >= self.config.vocab_size => Err(Error::Invalid {
                path: self.dir.clone(),
                message: format!(
                    "the tokenizer produced token id {max}, but the model's vocab_size is {} \
                     (config.json); the tokenizer does not belong to this model",
                    self.config.vocab_size
                ),
            }),
            _ => Ok(()),
        }
    }

    /// The ids of `[CLS]` and `[SEP]` (kept in the baseline).
    pub fn special_ids(&self) -> Vec<u32> {
        ["[CLS]", "[SEP]"]
            .iter()
            .filter_map(|t| self.tokenizer.token_to_id(t))
            .collect()
    }

    /// The text of each word of `enc`: its tokens joined, `##` stripped.
    pub fn word_text(&self, enc: &Encoded, tokens: &[usize]) -> String {
        tokens
            .iter()
            .map(|&p| {
                let t = self.tokenizer.id_to_token(enc.ids[p]).unwrap_or_default();
                t.strip_prefix("##").map(str::to_string).unwrap_or(t)
            })
            .collect()
    }

    /// Integrated gradients of `target` for `enc` (Gauss-Legendre rule,
    /// `steps` points, the `[PAD]` baseline keeping `[CLS]`/`[SEP]`), as
    /// `valor explain --method ig` computes them. Needs a model loaded with
    /// `autodiff`.
    pub fn integrated_gradients(
        &self,
        enc: &Encoded,
        target: usize,
        steps: usize,
    ) -> Result<(IgExplanation, Vec<WordAttribution>)> {
        self.check_ids(&enc.ids)?;
        let seq = TokenSequence::new(enc.ids.clone(), Some(enc.type_ids.clone()));
        let baseline = pad_baseline(&seq, &self.special_ids(), self.tokenizer.pad_id());
        let config = IgConfig {
            n_steps: steps,
            rule: Rule::GaussLegendre,
            internal_batch_size: 25,
        };
        let ig = valor_bert::lowp::autocast(self.autocast, || {
            valor_bert::integrated_gradients(&self.model, &seq, &baseline, Some(target), &config)
        })??;
        let words = merge_words(&ig.token_attributions, &enc.word_ids);
        Ok((ig, words))
    }

    /// Every word of `enc` with its integrated-gradients attribution to
    /// `target` (see [`integrated_gradients`](Self::integrated_gradients)).
    pub fn explain_words(
        &self,
        enc: &Encoded,
        target: usize,
        steps: usize,
    ) -> Result<WordExplanation> {
        let (ig, words) = self.integrated_gradients(enc, target, steps)?;
        Ok(WordExplanation {
            target,
            words: words
                .iter()
                .map(|w| WordScore {
                    word: self.word_text(enc, &w.tokens),
                    attribution: w.attribution,
                })
                .collect(),
            delta: ig.delta,
        })
    }

    /// The `k` words with the largest integrated-gradients attribution to
    /// `target`.
    pub fn top_words(
        &self,
        enc: &Encoded,
        target: usize,
        steps: usize,
        k: usize,
    ) -> Result<Vec<String>> {
        Ok(self.explain_words(enc, target, steps)?.top_words(k))
    }
}

/// The tokenizer of `dir` must fit the model: no id past `vocab_size`.
fn check_tokenizer(dir: &Path, tokenizer: &TextTokenizer, config: &BertConfig) -> Result<()> {
    let invalid = |message: String| Error::Invalid {
        path: dir.to_path_buf(),
        message,
    };
    let tokens = tokenizer.vocab_size();
    if tokens > config.vocab_size {
        return Err(invalid(format!(
            "the tokenizer has {tokens} tokens but the model's vocab_size is {} (config.json): \
             the tokenizer does not belong to this model; put the tokenizer.json the model was \
             trained with beside it",
            config.vocab_size
        )));
    }
    for token in SPECIAL_TOKENS {
        if let Some(id) = tokenizer.token_to_id(token)
            && id as usize >= config.vocab_size
        {
            return Err(invalid(format!(
                "the tokenizer's {token} has id {id}, but the model's vocab_size is {} \
                 (config.json): the tokenizer does not belong to this model",
                config.vocab_size
            )));
        }
    }
    Ok(())
}

fn read(t: burn::tensor::Tensor<2>, name: &str) -> Result<Vec<f64>> {
    let v = t
        .detach()
        .try_into_vec_as::<f32>()
        .map_err(|e| Error::TensorRead {
            name: name.to_string(),
            message: format!("{e:?}"),
        })?;
    Ok(v.into_iter().map(f64::from).collect())
}
