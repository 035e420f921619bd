//! From a configuration to everything the loop needs ([`Context`]): the
//! data loaded, checked and split; the tokenizer trained, loaded or read
//! back from the run folder; the model architecture; example weights and
//! fairness columns; the schedule; the devices; the run's provenance.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use valor_bert::BertConfig;
use valor_data::{Dataset, Encoded, TextTokenizer};

use super::GIT_COMMIT;
use super::constrained::Setup;
use super::devices::resolve_devices;
use super::run_dir::RunDir;
use crate::checkpoint::write_atomic;
use crate::config::{ModelSource, TrainConfig, Weighting};
use crate::error::{Error, Result};
use crate::report::{Provenance, SplitFilesProvenance, SplitIds, SplitRows};
use crate::schedule::LrSchedule;
use crate::splits::{RunData, load_run_data};
use crate::weights::{example_weights, joint_groups};

/// One split: its rows, encodings and group ids.
pub(super) struct SplitData {
    pub(super) data: Dataset,
    pub(super) enc: Vec<Encoded>,
    pub(super) twins: Option<Vec<Encoded>>,
    /// `groups[i]`: row `i`'s group id in every group column.
    pub(super) groups: Vec<Vec<u32>>,
}

impl SplitData {
    fn new(data: Dataset, tokenizer: &TextTokenizer, with_twins: bool) -> Result<Self> {
        let enc = tokenizer.encode_batch(&data.texts.as_strs())?;
        let twins = match (&data.twins, with_twins) {
            (Some(t), true) => Some(tokenizer.encode_batch(&t.as_strs())?),
            _ => None,
        };
        let groups = (0..data.len())
            .map(|i| data.groups.iter().map(|g| g.ids[i].0).collect())
            .collect();
        Ok(Self {
            data,
            enc,
            twins,
            groups,
        })
    }
    pub(super) fn len(&self) -> usize {
        self.data.len()
    }
}

/// Everything the loop needs besides model and optimizer.
pub(super) struct Context {
    pub(super) config: TrainConfig,
    pub(super) run: RunDir,
    pub(super) labels: Vec<String>,
    pub(super) group_columns: Vec<(String, Vec<String>)>,
    pub(super) train: SplitData,
    pub(super) valid: SplitData,
    pub(super) test: SplitData,
    /// Per training row: example weight, and group id in each fairness column.
    pub(super) weights: Vec<f64>,
    pub(super) fair_columns: Vec<Vec<u32>>,
    /// The fairness group columns' names, and each one's index among
    /// `group_columns` (and so in `SplitData::groups`).
    pub(super) fair_names: Vec<String>,
    pub(super) fair_index: Vec<usize>,
    /// The positive label of a binary task (the second), `None` otherwise.
    pub(super) positive: Option<u32>,
    /// Constrained training's multiplier slots, group shares and held-out
    /// constraint rows (empty without constraints).
    pub(super) constraints: Setup,
    /// The training rows of the gradient batches (sorted): all but the
    /// constraint holdout.
    pub(super) gradient_rows: Vec<usize>,
    pub(super) pad_id: u32,
    pub(super) bert_config: BertConfig,
    pub(super) tokenizer_src: PathBuf,
    pub(super) schedule: LrSchedule,
    /// The main device (evaluation, the optimizer, the model between
    /// steps), without and with autodiff.
    pub(super) plain: Device,
    pub(super) ad: Device,
    /// One autodiff device per shard of a micro-batch; the first is `ad`.
    /// A single entry means no data parallelism (no fork, no transfer).
    pub(super) shard_devices: Vec<Device>,
    pub(super) provenance: Provenance,
    /// Data warnings (small groups, unused labels), told at the start.
    pub(super) warnings: Vec<String>,
}

impl Context {
    /// Whether the run trains under constraints.
    pub(super) fn constrained(&self) -> bool {
        !self.config.fairness.constraints.is_empty()
    }
}

/// Loads data, splits it, readies the tokenizer and the model config.
/// `resumed` carries the provenance of the run being resumed: the data
/// must not have changed, and the tokenizer and model config are read
/// from the run folder.
pub(super) fn prepare(
    config: TrainConfig,
    run: RunDir,
    resumed: Option<&Provenance>,
) -> Result<Context> {
    let (plain, shard_devices) = resolve_devices(&config)?;
    let ad = shard_devices[0].clone();
    let RunData {
        data,
        splits,
        warnings,
        files,
    } = load_checked(&config, resumed)?;
    let warnings = warnings.iter().map(ToString::to_string).collect();
    if splits.train.is_empty() {
        return Err(Error::Data {
            path: data.source.clone(),
            message: "the training split is empty".into(),
        });
    }
    let fairness_groups = fairness_groups(&config, &data)?;
    let train_data = data.subset(&splits.train);
    let tokenizer = ready_tokenizer(&config, &run, resumed, &train_data)?;
    let tokenizer_src = tokenizer_source(&config, &run);
    let bert_config = ready_model_config(&config, &run, resumed, &data, &tokenizer)?;

    let with_twins = data.twins.is_some();
    let train = SplitData::new(train_data, &tokenizer, false)?;
    let valid = SplitData::new(data.subset(&splits.valid), &tokenizer, false)?;
    let test = SplitData::new(data.subset(&splits.test), &tokenizer, with_twins)?;
    let (weights, fair_columns) = training_weights(&config, &train.data, &fairness_groups)?;
    let fair_index: Vec<usize> = fairness_groups
        .iter()
        .map(|name| {
            data.groups
                .iter()
                .position(|g| &g.name == name)
                .expect("checked by joint_groups")
        })
        .collect();
    let positive = (data.num_labels() == 2).then_some(1);
    let train_labels: Vec<u32> = train.data.labels.iter().map(|l| l.0).collect();
    let constraints = Setup::new(
        &config,
        &fair_columns,
        &fair_index
            .iter()
            .map(|&gi| data.groups[gi].values.len())
            .collect::<Vec<_>>(),
        &train_labels,
        data.num_labels(),
        positive,
    );
    let gradient_rows = constraints.gradient_rows(train.len());
    if gradient_rows.is_empty() {
        return Err(Error::Data {
            path: data.source.clone(),
            message: format!(
                "the constraint holdout ({}) leaves no training row for the gradient batches",
                config.fairness.constrained.constraint_holdout
            ),
        });
    }

    let batches_per_epoch = gradient_rows.len().div_ceil(config.batch_size);
    let steps_per_epoch = batches_per_epoch.div_ceil(config.grad_accum) as u64;
    let total_steps = steps_per_epoch * config.epochs as u64;
    let schedule = LrSchedule::new(config.lr, config.warmup_ratio, total_steps, config.decay);

    let provenance = Provenance {
        seed: config.seed,
        split_seed: config.split.seed,
        git_commit: GIT_COMMIT.to_string(),
        crate_version: env!("CARGO_PKG_VERSION").to_string(),
        backend: config.backend.name().to_string(),
        dtype: "f32".into(),
        dataset: data.source.display().to_string(),
        dataset_sha256: data.sha256.clone(),
        dataset_rows: data.len(),
        rows: SplitRows {
            train: train.len(),
            valid: valid.len(),
            test: test.len(),
        },
        labels: data.label_names.clone(),
        fairness_groups: fairness_groups.clone(),
        tokenizer_vocab_size: tokenizer.vocab_size(),
        model_parameters: parameter_count(&bert_config),
        fairness_lambda: config.fairness.lambda,
        total_steps,
        split_ids: (config.split_column.is_some() || files.is_some()).then(|| SplitIds {
            column: config.split_column.clone(),
            valid: splits
                .valid
                .iter()
                .map(|&i| data.ids[i].to_string())
                .collect(),
            test: splits
                .test
                .iter()
                .map(|&i| data.ids[i].to_string())
                .collect(),
        }),
        split_files: files.map(|[train, valid, test]| SplitFilesProvenance { train, valid, test }),
    };
    let mut ctx = Context {
        constraints,
        gradient_rows,
        fair_names: fairness_groups.clone(),
        fair_index,
        positive,
        labels: data.label_names.clone(),
        group_columns: data
            .groups
            .iter()
            .map(|g| (g.name.clone(), g.values.clone()))
            .collect(),
        train,
        valid,
        test,
        weights,
        fair_columns,
        pad_id: tokenizer.pad_id(),
        bert_config,
        tokenizer_src,
        schedule,
        plain,
        ad,
        shard_devices,
        provenance,
        warnings,
        config,
        run,
    };
    let unresolved = super::constrained::resolution_warnings(&ctx);
    ctx.warnings.extend(unresolved);
    Ok(ctx)
}

/// The data and its splits with the warnings as text, checked to hold two
/// or more labels and, on resume, to be the file (or split files) the run
/// started with.
fn load_checked(config: &TrainConfig, resumed: Option<&Provenance>) -> Result<RunData> {
    let loaded = load_run_data(config)?;
    let data = &loaded.data;
    if data.num_labels() < 2 {
        return Err(Error::Data {
            path: data.source.clone(),
            message: format!(
                "a classifier needs two or more labels; found {:?}",
                data.label_names
            ),
        });
    }
    if let Some(p) = resumed
        && p.dataset_sha256 != data.sha256
    {
        // With split files, name the file that changed.
        let changed = match (&p.split_files, &loaded.files) {
            (Some(then), Some(now)) => [&then.train, &then.valid, &then.test]
                .into_iter()
                .zip(now)
                .find(|(a, b)| a.sha256 != b.sha256)
                .map(|(a, b)| (b.path.clone(), a.sha256.clone(), b.sha256.clone())),
            _ => None,
        };
        let (path, then, now) = changed.unwrap_or((
            data.source.clone(),
            p.dataset_sha256.clone(),
            data.sha256.clone(),
        ));
        return Err(Error::Data {
            path,
            message: format!(
                "the file changed since the run started (SHA-256 {then} then, {now} now); resume needs the same data"
            ),
        });
    }
    Ok(loaded)
}

/// The group columns of the fairness objective: the configured ones, else
/// the dataset's first group column; an error when the objective needs
/// one and there is none.
fn fairness_groups(config: &TrainConfig, data: &Dataset) -> Result<Vec<String>> {
    let fairness_groups: Vec<String> = if config.fairness.groups.is_empty() {
        data.groups
            .first()
            .map(|g| vec![g.name.clone()])
            .unwrap_or_default()
    } else {
        config.fairness.groups.clone()
    };
    let needs_groups = config.fairness.lambda > 0.0
        || !config.fairness.constraints.is_empty()
        || config.weighting == Weighting::Reweighing;
    if needs_groups && fairness_groups.is_empty() {
        return Err(Error::Data {
            path: data.source.clone(),
            message: "the fairness objective (--fairness-lambda > 0, --constraint or --reweigh) needs a group column; pass --group".into(),
        });
    }
    Ok(fairness_groups)
}

/// The run's tokenizer: on resume the run folder's; otherwise the given
/// file, a WordPiece vocabulary trained on the training split's texts, or
/// the pretrained checkpoint's (each saved into the run folder).
fn ready_tokenizer(
    config: &TrainConfig,
    run: &RunDir,
    resumed: Option<&Provenance>,
    train_data: &Dataset,
) -> Result<TextTokenizer> {
    Ok(match (resumed, &config.model) {
        (Some(_), _) => TextTokenizer::from_file(&run.tokenizer(), config.max_len, true)?,
        (None, ModelSource::Scratch(m)) => match &m.tokenizer {
            Some(file) => {
                let t = TextTokenizer::from_file(file, config.max_len, true)?;
                t.save(&run.tokenizer())?;
                t
            }
            None => {
                let t = TextTokenizer::train_wordpiece(
                    &train_data.texts.as_strs(),
                    m.vocab_size,
                    config.max_len,
                )?;
                canonical_vocabulary(&t, &run.tokenizer(), config.max_len)?
            }
        },
        (None, ModelSource::Pretrained { dir }) => {
            let t = TextTokenizer::from_model_dir(dir, config.max_len)?;
            t.save(&run.tokenizer())?;
            t
        }
    })
}

/// Where the HF folder's tokenizer files come from: the checkpoint's own
/// (tokenizer_config.json, vocab.txt) when they are still there, else the
/// run's copy.
fn tokenizer_source(config: &TrainConfig, run: &RunDir) -> PathBuf {
    match &config.model {
        ModelSource::Pretrained { dir }
            if dir.join("tokenizer.json").is_file() || dir.join("vocab.txt").is_file() =>
        {
            dir.clone()
        }
        _ => run.tokenizer(),
    }
}

/// The model architecture: on resume the run folder's, otherwise made by
/// [`model_config`] and written to `checkpoints/model_config.json`;
/// checked against `max_len` and the tokenizer's vocabulary.
fn ready_model_config(
    config: &TrainConfig,
    run: &RunDir,
    resumed: Option<&Provenance>,
    data: &Dataset,
    tokenizer: &TextTokenizer,
) -> Result<BertConfig> {
    let bert_config = match resumed {
        Some(_) => BertConfig::from_file(&run.model_config())?,
        None => {
            let c = model_config(config, &data.label_names, tokenizer)?;
            std::fs::create_dir_all(run.checkpoints())
                .map_err(|e| Error::io(run.checkpoints(), e))?;
            write_atomic(
                &run.model_config(),
                format!("{}\n", c.to_json_string()).as_bytes(),
            )?;
            c
        }
    };
    if bert_config.max_position_embeddings < config.max_len {
        return Err(Error::config(
            "max_len",
            format!(
                "is {} but the model has only {} positions",
                config.max_len, bert_config.max_position_embeddings
            ),
        ));
    }
    if tokenizer.vocab_size() > bert_config.vocab_size {
        return Err(Error::config(
            "model",
            format!(
                "the tokenizer has {} tokens but the model's vocabulary only {}",
                tokenizer.vocab_size(),
                bert_config.vocab_size
            ),
        ));
    }
    Ok(bert_config)
}

/// Per training row: its example weight, and its group id in each
/// fairness column.
fn training_weights(
    config: &TrainConfig,
    train: &Dataset,
    fairness_groups: &[String],
) -> Result<(Vec<f64>, Vec<Vec<u32>>)> {
    let labels_u32: Vec<u32> = train.labels.iter().map(|l| l.0).collect();
    let (joint, _) = joint_groups(train, fairness_groups)?;
    let weights = example_weights(
        config.weighting,
        train.weights.as_deref(),
        &labels_u32,
        &joint,
    );
    let fair_columns = fairness_groups
        .iter()
        .map(|name| {
            let col = train.group(name).expect("checked by joint_groups");
            col.ids.iter().map(|g| g.0).collect()
        })
        .collect();
    Ok((weights, fair_columns))
}

/// Saves a freshly trained WordPiece tokenizer at `path` with its
/// vocabulary in a canonical order and loads it back. The `tokenizers`
/// trainer numbers pieces in hash-map order, which differs from process to
/// process; WordPiece matches pieces by their text, so renumbering changes
/// no tokenization: special tokens keep their ids (`[PAD]` 0 … `[MASK]` 4)
/// and every other piece is numbered in sorted order, so two runs that
/// learn the same pieces get the same ids (and so the same model). The
/// trainer also breaks ties between equally frequent merges in that hash
/// order, so the pieces themselves can differ slightly between processes:
/// the run folder keeps its tokenizer (a resume reads it back), and
/// `ScratchModel::tokenizer` pins one across runs.
fn canonical_vocabulary(t: &TextTokenizer, path: &Path, max_len: usize) -> Result<TextTokenizer> {
    t.save(path)?;
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let bad = |message: &str| Error::Data {
        path: path.to_path_buf(),
        message: message.to_string(),
    };
    let mut json: serde_json::Value =
        serde_json::from_str(&text).map_err(|source| Error::Json {
            path: path.to_path_buf(),
            source,
        })?;
    let vocab = json
        .pointer_mut("/model/vocab")
        .and_then(serde_json::Value::as_object_mut)
        .ok_or_else(|| bad("trained tokenizer has no model.vocab"))?;
    let specials: Vec<&str> = valor_data::tokenize::SPECIAL_TOKENS.to_vec();
    for (id, tok) in specials.iter().enumerate() {
        if vocab.get(*tok).and_then(serde_json::Value::as_u64) != Some(id as u64) {
            return Err(bad(&format!(
                "trained tokenizer does not have `{tok}` at id {id}"
            )));
        }
    }
    let mut rest: Vec<String> = vocab
        .keys()
        .filter(|k| !specials.contains(&k.as_str()))
        .cloned()
        .collect();
    rest.sort();
    let mut ordered = serde_json::Map::new();
    for (id, tok) in specials
        .iter()
        .map(|s| s.to_string())
        .chain(rest)
        .enumerate()
    {
        ordered.insert(tok, serde_json::Value::from(id as u64));
    }
    *vocab = ordered;
    let mut out = serde_json::to_string_pretty(&json).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })?;
    out.push('\n');
    write_atomic(path, out.as_bytes())?;
    Ok(TextTokenizer::from_file(path, max_len, true)?)
}

/// The architecture of a run's model: the preset (resized) with the
/// trained tokenizer's vocabulary, or the checkpoint's config; the
/// dataset's label names; the run's dropout.
fn model_config(
    config: &TrainConfig,
    labels: &[String],
    tokenizer: &TextTokenizer,
) -> Result<BertConfig> {
    let mut c = match &config.model {
        ModelSource::Scratch(m) => {
            let mut c = BertConfig::preset(&m.preset)?;
            if let Some(h) = m.hidden_size {
                c.hidden_size = h;
                c.num_attention_heads = (h / 64).max(1);
                c.intermediate_size = 4 * h;
            }
            if let Some(n) = m.num_layers {
                c.num_hidden_layers = n;
            }
            if let Some(n) = m.num_heads {
                c.num_attention_heads = n;
            }
            if let Some(n) = m.intermediate_size {
                c.intermediate_size = n;
            }
            c.vocab_size = tokenizer.vocab_size();
            c.pad_token_id = tokenizer.pad_id();
            c
        }
        ModelSource::Pretrained { dir } => BertConfig::from_file(&dir.join("config.json"))?,
    };
    c = c.with_labels(labels.to_vec());
    if let Some(p) = config.dropout {
        c = c.with_dropout(p);
    }
    c.validate()?;
    Ok(c)
}

/// Number of parameters of a BERT classifier with this configuration.
fn parameter_count(c: &BertConfig) -> usize {
    let (h, i, l) = (c.hidden_size, c.intermediate_size, c.num_hidden_layers);
    let embeddings = (c.vocab_size + c.max_position_embeddings + c.type_vocab_size) * h + 2 * h;
    let layer = 4 * (h * h + h) + 2 * h + (h * i + i) + (i * h + h) + 2 * h;
    embeddings + l * layer + (h * h + h) + (h * c.num_labels + c.num_labels)
}
