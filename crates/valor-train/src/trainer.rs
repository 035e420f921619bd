//! The training loop, written by hand rather than with burn-train's
//! `Learner`, for three reasons: the objective needs each batch's group
//! ids and example weights next to the logits (a fairness penalty is a
//! batch-level statistic, not a per-item loss that a `TrainStep` returns);
//! evaluation streams confusion counts per group into valor-fair instead of
//! collecting per-item outputs; and resume must be exact — model,
//! optimizer, schedule position, dropout stream and data position, written
//! atomically in one file — where burn-train's checkpointer saves the
//! model, optimizer and scheduler separately and restarts an epoch's data
//! from its beginning. What burn provides is used: modules and autodiff,
//! the AdamW of valor-bert (burn's `AdamW` with PyTorch's defaults and a
//! decay mask), gradient accumulation (`GradientsAccumulator`) and module
//! and optimizer records (burnpack) for checkpoints.
//!
//! One run: load and split the data; train a WordPiece tokenizer (from
//! scratch) or load the checkpoint's; build or load the model; then for
//! every epoch, micro-batches in the seeded, length-bucketed order of
//! `valor_data::plan_batches`, each optimizer step over `grad_accum`
//! micro-batches (each split into one shard per device when training
//! data-parallel, see [`crate::Devices`]) with the loss normalised by the
//! step's examples; clip the
//! global gradient norm; AdamW at the scheduled learning rate; checkpoint
//! every `checkpoint_every` steps and at each epoch's end after evaluating
//! the validation split; at the end, test the best epoch's model and write
//! `report.json`.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::store::ModuleRecord;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Bytes, Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use valor_bert::{
    AdamW, AdamWConfig, BertConfig, BertForSequenceClassification, BertInput, DecayMask,
    LoadOptions, with_device_rng,
};
use valor_data::{
    BatchConfig, Dataset, Encoded, TextTokenizer, collate, load_dataset, plan_batches, split,
};

use crate::checkpoint::{
    Best, EpochRecord, RngState, TrainState, checkpoint_name, clean_temp_files, latest_checkpoint,
    prune, read_checkpoint, write_atomic, write_checkpoint,
};
use crate::config::{ModelSource, TrainConfig};
use crate::error::{Error, Result};
use crate::metrics::{EvalCounts, EvalMetrics, RowOutcome};
use crate::observe::{Control, Event, Observer};
use crate::penalty::fairness_penalty;
use crate::report::{Provenance, REPORT_SCHEMA, SplitRows, Summary, TrainReport};
use crate::schedule::LrSchedule;
use crate::weights::{example_weights, joint_groups};

/// How a call to [`train`] or [`resume`] ended without an error.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Every epoch ran (or early stopping ended the run), the best model
    /// was tested and the report written.
    Finished(Box<TrainReport>),
    /// The observer stopped the run after this optimizer step; nothing
    /// after the last checkpoint was written.
    Stopped { step: u64 },
}

impl Outcome {
    /// The report of a finished run.
    pub fn report(&self) -> Option<&TrainReport> {
        match self {
            Outcome::Finished(r) => Some(r),
            Outcome::Stopped { .. } => None,
        }
    }
}

/// The files of a run folder.
#[derive(Debug, Clone)]
pub struct RunDir {
    pub root: PathBuf,
}

impl RunDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    /// The configuration used, with provenance.
    pub fn config(&self) -> PathBuf {
        self.root.join("config.json")
    }
    /// One JSON line per epoch, then one for the test set.
    pub fn metrics(&self) -> PathBuf {
        self.root.join("metrics.jsonl")
    }
    /// The tokenizer the run trained or loaded.
    pub fn tokenizer(&self) -> PathBuf {
        self.root.join("tokenizer.json")
    }
    pub fn checkpoints(&self) -> PathBuf {
        self.root.join("checkpoints")
    }
    /// The model architecture (HF config.json schema) the checkpoints hold.
    pub fn model_config(&self) -> PathBuf {
        self.checkpoints().join("model_config.json")
    }
    /// The best model, as an HF `BertForSequenceClassification` folder.
    pub fn model(&self) -> PathBuf {
        self.root.join("model")
    }
    pub fn report(&self) -> PathBuf {
        self.root.join("report.json")
    }
    /// Whether a run was started here.
    pub fn holds_run(&self) -> bool {
        self.config().exists() || self.checkpoints().exists()
    }
}

/// `config.json` of a run folder.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunConfigFile {
    pub config: TrainConfig,
    pub provenance: Provenance,
}

/// Reads the configuration a run folder was started with.
pub fn read_run_config(run_dir: &Path) -> Result<RunConfigFile> {
    let path = RunDir::new(run_dir).config();
    let text = std::fs::read_to_string(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::NothingToResume {
                dir: run_dir.to_path_buf(),
                message: "no config.json (was a run started here?)".into(),
            }
        } else {
            Error::io(&path, e)
        }
    })?;
    serde_json::from_str(&text).map_err(|source| Error::Json { path, source })
}

/// SplitMix64 finaliser: a well-mixed 64-bit seed from a seed and a counter.
fn mix(seed: u64, counter: u64) -> u64 {
    let mut z = seed ^ counter.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Git commit of the source tree this crate was built from.
pub const GIT_COMMIT: &str = env!("VALOR_GIT_COMMIT");

/// One split: its rows, encodings and group ids.
struct SplitData {
    data: Dataset,
    enc: Vec<Encoded>,
    twins: Option<Vec<Encoded>>,
    /// `groups[i]`: row `i`'s group id in every group column.
    groups: Vec<Vec<u32>>,
}

impl SplitData {
    fn new(data: Dataset, tokenizer: &TextTokenizer, with_twins: bool) -> Result<Self> {
        let enc = tokenizer.encode_batch(&data.texts)?;
        let twins = match (&data.twins, with_twins) {
            (Some(t), true) => Some(tokenizer.encode_batch(t)?),
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
    fn len(&self) -> usize {
        self.data.len()
    }
}

/// Everything the loop needs besides model and optimizer.
struct Context {
    config: TrainConfig,
    run: RunDir,
    labels: Vec<String>,
    group_columns: Vec<(String, Vec<String>)>,
    train: SplitData,
    valid: SplitData,
    test: SplitData,
    /// Per training row: example weight, and group id in each fairness column.
    weights: Vec<f64>,
    fair_columns: Vec<Vec<u32>>,
    pad_id: u32,
    bert_config: BertConfig,
    tokenizer_src: PathBuf,
    schedule: LrSchedule,
    /// The main device (evaluation, the optimizer, the model between
    /// steps), without and with autodiff.
    plain: Device,
    ad: Device,
    /// One autodiff device per shard of a micro-batch; the first is `ad`.
    /// A single entry means no data parallelism (no fork, no transfer).
    shard_devices: Vec<Device>,
    provenance: Provenance,
    /// Data warnings (small groups, unused labels), told at the start.
    warnings: Vec<String>,
}

/// Trains a fresh run into `out_dir`. An existing run there is an error
/// unless `overwrite` is set (then its files are replaced).
pub fn train(
    config: &TrainConfig,
    out_dir: &Path,
    overwrite: bool,
    observer: &mut dyn Observer,
) -> Result<Outcome> {
    config.validate()?;
    resolve_devices(config)?;
    let run = RunDir::new(out_dir);
    if run.holds_run() {
        if !overwrite {
            return Err(Error::RunExists {
                dir: out_dir.to_path_buf(),
            });
        }
        remove_run_files(&run)?;
    }
    std::fs::create_dir_all(&run.root).map_err(|e| Error::io(&run.root, e))?;
    let ctx = prepare(config.clone(), run, None)?;
    let model = match &config.model {
        ModelSource::Scratch(_) => {
            with_device_rng(|| ctx.bert_config.init_classifier_seeded(&ctx.ad, config.seed))
        }
        ModelSource::Pretrained { dir } => {
            let options = LoadOptions {
                num_labels: Some(ctx.labels.len()),
                head: None,
                dropout: config.dropout,
                init_seed: config.seed,
            };
            let (_, loaded, report) =
                with_device_rng(|| valor_bert::load_hf(dir, &ctx.ad, options))?;
            if !report.unused.is_empty() {
                let message = format!(
                    "{} checkpoint tensors were not used (another head?): {}",
                    report.unused.len(),
                    report.unused.join(", ")
                );
                observer.on_event(&Event::Warning { message: &message });
            }
            loaded
        }
    };
    write_json(
        &ctx.run.config(),
        &RunConfigFile {
            config: ctx.config.clone(),
            provenance: ctx.provenance.clone(),
        },
    )?;
    std::fs::File::create(ctx.run.metrics()).map_err(|e| Error::io(ctx.run.metrics(), e))?;
    let optim = new_optimizer(&ctx.config, &model);
    let state = TrainState {
        epoch: 0,
        batches_done: 0,
        step: 0,
        rng: RngState {
            dropout_seed: mix(config.seed, 1),
            batch_seed: config.seed,
            micro_step: 0,
        },
        epoch_objective_sum: 0.0,
        epoch_cross_entropy_sum: 0.0,
        epoch_penalty_sum: 0.0,
        epoch_penalty_rows: 0,
        epoch_examples: 0,
        epoch_seconds: 0.0,
        best: None,
        bad_epochs: 0,
        stopped_early: false,
        history: Vec::new(),
        metrics_len: 0,
        train_seconds: 0.0,
    };
    run_loop(&ctx, model, optim, state, None, observer)
}

/// Continues the run in `run_dir` from its newest valid checkpoint, with
/// the configuration it was started with.
pub fn resume(run_dir: &Path, observer: &mut dyn Observer) -> Result<Outcome> {
    let file = read_run_config(run_dir)?;
    let run = RunDir::new(run_dir);
    clean_temp_files(&run.checkpoints())?;
    clean_temp_files(&run.root)?;
    let (ckpt, skipped) = latest_checkpoint(&run.checkpoints())?;
    for why in &skipped {
        observer.on_event(&Event::Warning {
            message: &format!("skipped a checkpoint: {why}"),
        });
    }
    let ckpt = ckpt.ok_or_else(|| Error::NothingToResume {
        dir: run_dir.to_path_buf(),
        message: "no checkpoint was written yet; start the run again".into(),
    })?;
    let ctx = prepare(file.config.clone(), run, Some(&file.provenance))?;
    let model = with_device_rng(|| {
        ctx.bert_config
            .init_classifier_seeded(&ctx.ad, file.config.seed)
    });
    let model = load_model_bytes(model, &ckpt.model, &ckpt.path)?;
    let optim = new_optimizer(&ctx.config, &model);
    let inner = optim
        .inner()
        .clone()
        .from_bytes(Bytes::from_bytes_vec(ckpt.optimizer.clone()))
        .map_err(|e| Error::Checkpoint {
            path: ckpt.path.clone(),
            message: format!("optimizer state: {e}"),
        })?;
    let optim = optim.with_inner(inner);
    truncate_metrics(&ctx.run.metrics(), ckpt.state.metrics_len)?;
    run_loop(
        &ctx,
        model,
        optim,
        ckpt.state.clone(),
        Some(&ckpt.path),
        observer,
    )
}

fn remove_run_files(run: &RunDir) -> Result<()> {
    for f in [run.config(), run.metrics(), run.tokenizer(), run.report()] {
        if f.exists() {
            std::fs::remove_file(&f).map_err(|e| Error::io(&f, e))?;
        }
    }
    for d in [run.checkpoints(), run.model()] {
        if d.exists() {
            std::fs::remove_dir_all(&d).map_err(|e| Error::io(&d, e))?;
        }
    }
    Ok(())
}

fn new_optimizer(config: &TrainConfig, model: &BertForSequenceClassification) -> AdamW {
    AdamW::new(
        AdamWConfig {
            beta1: config.beta1,
            beta2: config.beta2,
            eps: config.adam_eps,
            weight_decay: config.weight_decay,
            decay_mask: DecayMask::ExceptBiasAndLayerNorm,
        },
        model,
    )
}

fn load_model_bytes(
    model: BertForSequenceClassification,
    bytes: &[u8],
    path: &Path,
) -> Result<BertForSequenceClassification> {
    let bad = |e: burn::store::RecordError| Error::Checkpoint {
        path: path.to_path_buf(),
        message: format!("model: {e}"),
    };
    let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes.to_vec())).map_err(bad)?;
    model.try_load_record(record).map_err(bad)
}

fn model_bytes(model: &BertForSequenceClassification) -> Result<Vec<u8>> {
    let bytes = model
        .clone()
        .into_record()
        .into_bytes()
        .map_err(|e| Error::Checkpoint {
            path: PathBuf::from("<model>"),
            message: e.to_string(),
        })?;
    Ok(bytes.to_vec())
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })?;
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

fn truncate_metrics(path: &Path, len: u64) -> Result<()> {
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    f.set_len(len).map_err(|e| Error::io(path, e))?;
    f.sync_all().map_err(|e| Error::io(path, e))
}

/// Appends one JSON line, synced; returns the file's new length.
fn append_line<T: Serialize>(path: &Path, value: &T) -> Result<u64> {
    let mut line = serde_json::to_string(value).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })?;
    line.push('\n');
    let mut f = OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    f.write_all(line.as_bytes())
        .map_err(|e| Error::io(path, e))?;
    f.sync_data().map_err(|e| Error::io(path, e))?;
    f.metadata()
        .map(|m| m.len())
        .map_err(|e| Error::io(path, e))
}

/// Loads data, splits it, readies the tokenizer and the model config.
/// `resumed` carries the provenance of the run being resumed: the data
/// must not have changed, and the tokenizer and model config are read
/// from the run folder.
fn prepare(config: TrainConfig, run: RunDir, resumed: Option<&Provenance>) -> Result<Context> {
    let (plain, shard_devices) = resolve_devices(&config)?;
    let ad = shard_devices[0].clone();
    let (data, data_warnings) = load_dataset(&config.data)?;
    let warnings = data_warnings.iter().map(ToString::to_string).collect();
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
        return Err(Error::Data {
            path: data.source.clone(),
            message: format!(
                "the file changed since the run started (SHA-256 {} then, {} now); resume needs the same data",
                p.dataset_sha256, data.sha256
            ),
        });
    }
    let splits = split(&data, &config.split)?;
    if splits.train.is_empty() {
        return Err(Error::Data {
            path: data.source.clone(),
            message: "the training split is empty".into(),
        });
    }
    let fairness_groups: Vec<String> = if config.fairness.groups.is_empty() {
        data.groups
            .first()
            .map(|g| vec![g.name.clone()])
            .unwrap_or_default()
    } else {
        config.fairness.groups.clone()
    };
    let needs_groups =
        config.fairness.lambda > 0.0 || config.weighting == crate::config::Weighting::Reweighing;
    if needs_groups && fairness_groups.is_empty() {
        return Err(Error::Data {
            path: data.source.clone(),
            message: "the fairness objective (--fairness-lambda > 0 or --reweigh) needs a group column; pass --group".into(),
        });
    }
    let train_data = data.subset(&splits.train);

    // Tokenizer.
    let tokenizer = match (resumed, &config.model) {
        (Some(_), _) => TextTokenizer::from_file(&run.tokenizer(), config.max_len, true)?,
        (None, ModelSource::Scratch(m)) => match &m.tokenizer {
            Some(file) => {
                let t = TextTokenizer::from_file(file, config.max_len, true)?;
                t.save(&run.tokenizer())?;
                t
            }
            None => {
                let t = TextTokenizer::train_wordpiece(
                    &train_data.texts,
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
    };
    // The HF folder gets the checkpoint's own tokenizer files when they are
    // still there (tokenizer_config.json, vocab.txt), else the run's copy.
    let tokenizer_src = match &config.model {
        ModelSource::Pretrained { dir }
            if dir.join("tokenizer.json").is_file() || dir.join("vocab.txt").is_file() =>
        {
            dir.clone()
        }
        _ => run.tokenizer(),
    };

    // Model configuration.
    let bert_config = match resumed {
        Some(_) => BertConfig::from_file(&run.model_config())?,
        None => {
            let c = model_config(&config, &data.label_names, &tokenizer)?;
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

    let with_twins = data.twins.is_some();
    let train = SplitData::new(train_data, &tokenizer, false)?;
    let valid = SplitData::new(data.subset(&splits.valid), &tokenizer, false)?;
    let test = SplitData::new(data.subset(&splits.test), &tokenizer, with_twins)?;

    let labels_u32: Vec<u32> = train.data.labels.iter().map(|l| l.0).collect();
    let (joint, _) = joint_groups(&train.data, &fairness_groups)?;
    let weights = example_weights(
        config.weighting,
        train.data.weights.as_deref(),
        &labels_u32,
        &joint,
    );
    let fair_columns = fairness_groups
        .iter()
        .map(|name| {
            let col = train.data.group(name).expect("checked by joint_groups");
            col.ids.iter().map(|g| g.0).collect()
        })
        .collect();

    let batches_per_epoch = train.len().div_ceil(config.batch_size);
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
    };
    Ok(Context {
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
    })
}

/// The main device and one autodiff device per shard (the first is the
/// main device with autodiff).
fn resolve_devices(config: &TrainConfig) -> Result<(Device, Vec<Device>)> {
    let indices = config.devices.indices();
    let shard_devices: Vec<Device> =
        valor_bert::devices(config.backend, &indices).map_err(|e| devices_error(config, e))?;
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

/// Splits a micro-batch into `n` contiguous shards whose sizes differ by at
/// most one (the first ones take the remainder); no shard is empty when
/// `rows.len() >= n`, and empty shards are dropped otherwise.
fn shards(rows: &[usize], n: usize) -> Vec<&[usize]> {
    let (base, extra) = (rows.len() / n, rows.len() % n);
    let mut out = Vec::with_capacity(n);
    let mut start = 0;
    for k in 0..n {
        let len = base + usize::from(k < extra);
        if len > 0 {
            out.push(&rows[start..start + len]);
        }
        start += len;
    }
    out
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

fn input_of(batch: &valor_data::Batch, device: &Device) -> Result<BertInput> {
    Ok(BertInput::from_flat(
        &batch.input_ids,
        &batch.attention_mask,
        &batch.token_type_ids,
        [batch.batch_size, batch.seq_len],
        device,
    )?)
}

fn scalar(t: Tensor<1>, name: &str) -> Result<f64> {
    t.try_into_vec_as::<f32>()
        .map(|v| f64::from(v[0]))
        .map_err(|e| Error::TensorRead {
            name: name.to_string(),
            message: e.to_string(),
        })
}

/// Values of one micro-batch.
struct MicroOutcome {
    grads: GradientsParams,
    objective: f64,
    cross_entropy_sum: f64,
    penalty: Option<f64>,
}

/// Forward and backward of one micro-batch; the loss is normalised by
/// `step_examples`, the examples of the whole optimizer step.
fn micro_batch(
    ctx: &Context,
    model: &BertForSequenceClassification,
    device: &Device,
    rows: &[usize],
    step_examples: usize,
    dropout_seed: u64,
) -> Result<MicroOutcome> {
    let encs: Vec<&Encoded> = rows.iter().map(|&i| &ctx.train.enc[i]).collect();
    let batch = collate(rows.to_vec(), &encs, ctx.pad_id);
    let input = input_of(&batch, device)?;
    let b = rows.len();
    let logits = with_device_rng(|| {
        device.seed(dropout_seed);
        model.forward(input)
    });
    let labels: Vec<u32> = rows.iter().map(|&i| ctx.train.data.labels[i].0).collect();
    let label_t = Tensor::<1, Int>::from_data(
        TensorData::new(
            labels.iter().map(|&l| i64::from(l)).collect::<Vec<_>>(),
            [b],
        ),
        device,
    );
    let weight_t = Tensor::<1>::from_data(
        TensorData::new(
            rows.iter()
                .map(|&i| ctx.weights[i] as f32)
                .collect::<Vec<_>>(),
            [b],
        ),
        device,
    );
    let log_probs = log_softmax(logits, 1);
    let ce = log_probs
        .clone()
        .gather(1, label_t.reshape([b, 1]))
        .reshape([b])
        .neg();
    let ce_sum = (ce * weight_t).sum();
    let mut loss = ce_sum.clone().div_scalar(step_examples as f64);

    let columns: Vec<Vec<u32>> = ctx
        .fair_columns
        .iter()
        .map(|col| rows.iter().map(|&i| col[i]).collect())
        .collect();
    let lambda = ctx.config.fairness.lambda;
    let probs = log_probs.exp();
    let penalty = if lambda > 0.0 {
        let p = fairness_penalty(ctx.config.fairness.penalty, &probs, &columns, &labels);
        let value = p
            .as_ref()
            .map(|p| scalar(p.clone(), "fairness penalty"))
            .transpose()?;
        if let Some(p) = p {
            loss = loss + p.mul_scalar(lambda * b as f64 / step_examples as f64);
        }
        value
    } else {
        fairness_penalty(
            ctx.config.fairness.penalty,
            &probs.detach(),
            &columns,
            &labels,
        )
        .map(|p| scalar(p, "fairness penalty"))
        .transpose()?
    };
    let objective = scalar(loss.clone(), "loss")?;
    let cross_entropy_sum = scalar(ce_sum, "cross-entropy")?;
    if !objective.is_finite() {
        return Ok(MicroOutcome {
            grads: GradientsParams::new(),
            objective,
            cross_entropy_sum,
            penalty,
        });
    }
    let grads = GradientsParams::from_grads(loss.backward(), model);
    Ok(MicroOutcome {
        grads,
        objective,
        cross_entropy_sum,
        penalty,
    })
}

/// Forward and backward of the shards of one micro-batch, shard `k` with
/// dropout seed `seeds[k]` on `ctx.shard_devices[k]`; the gradients come
/// back on the main device, in shard order.
///
/// With one device this is [`micro_batch`] on the model itself. With
/// several, as burn-train's multi-device strategy does, every shard gets
/// its own replica forked to its device (`Module::fork`: the same
/// parameter ids, a fresh autodiff graph, so concurrent backward passes
/// do not share nodes) and runs on its own thread; its gradients are moved
/// to the main device (`GradientsParams::to_device`). The replicas are
/// dropped after the step: the one model on the main device is updated
/// and forked again for the next micro-batch, so parameters never drift.
/// Forward passes take turns on the device generator lock (dropout must
/// draw from a seeded stream); backward passes overlap.
fn forward_backward(
    ctx: &Context,
    model: &BertForSequenceClassification,
    parts: &[&[usize]],
    step_examples: usize,
    seeds: &[u64],
) -> Result<Vec<MicroOutcome>> {
    if ctx.shard_devices.len() == 1 {
        let out = micro_batch(ctx, model, &ctx.ad, parts[0], step_examples, seeds[0])?;
        return Ok(vec![out]);
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = parts
            .iter()
            .zip(seeds)
            .zip(&ctx.shard_devices)
            .map(|((&rows, &seed), device)| {
                let replica = model.clone();
                scope.spawn(move || -> Result<MicroOutcome> {
                    let replica = replica.fork(device);
                    let mut out = micro_batch(ctx, &replica, device, rows, step_examples, seed)?;
                    out.grads = out.grads.to_device(&ctx.plain, &replica);
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

/// √(Σ‖g‖²) over every parameter's gradient (PyTorch `clip_grad_norm_`'s
/// total norm, p = 2).
fn global_grad_norm(model: &BertForSequenceClassification, grads: &GradientsParams) -> Result<f64> {
    struct Norm<'a> {
        grads: &'a GradientsParams,
        sum: Option<Tensor<1>>,
    }
    impl ModuleVisitor for Norm<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.get::<D>(param.id) {
                let s = g.square().sum();
                self.sum = Some(match self.sum.take() {
                    Some(acc) => acc + s,
                    None => s,
                });
            }
        }
    }
    let mut v = Norm { grads, sum: None };
    model.visit(&mut v);
    match v.sum {
        Some(s) => Ok(scalar(s, "gradient norm")?.sqrt()),
        None => Ok(0.0),
    }
}

fn scale_grads(model: &BertForSequenceClassification, grads: &mut GradientsParams, factor: f64) {
    struct Scale<'a> {
        grads: &'a mut GradientsParams,
        factor: f64,
    }
    impl ModuleVisitor for Scale<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.remove::<D>(param.id) {
                self.grads
                    .register::<D>(param.id, g.mul_scalar(self.factor));
            }
        }
    }
    model.visit(&mut Scale { grads, factor });
}

/// Streams one split through the model (no dropout, no gradients).
fn evaluate(
    ctx: &Context,
    model: &BertForSequenceClassification,
    split: &SplitData,
    twins: bool,
) -> Result<EvalCounts> {
    let with_reference = split.data.reference_labels.is_some();
    let with_twins = twins && split.twins.is_some();
    let mut counts = EvalCounts::new(&ctx.labels, &ctx.group_columns, with_reference, with_twins)?;
    let lengths: Vec<usize> = split.enc.iter().map(Encoded::len).collect();
    let plan = plan_batches(
        &lengths,
        &BatchConfig {
            batch_size: ctx.config.eval_batch_size,
            window_batches: ctx.config.length_window_batches,
            shuffle: false,
            seed: 0,
        },
        0,
    );
    let k = ctx.labels.len();
    let predict = |encs: Vec<&Encoded>, rows: &[usize]| -> Result<Vec<f32>> {
        let batch = collate(rows.to_vec(), &encs, ctx.pad_id);
        let logits = model.forward(input_of(&batch, &ctx.plain)?);
        log_softmax(logits, 1)
            .try_into_vec_as::<f32>()
            .map_err(|e| Error::TensorRead {
                name: "log-probabilities".into(),
                message: e.to_string(),
            })
    };
    let argmax = |row: &[f32]| -> u32 {
        let mut best = 0;
        for (c, v) in row.iter().enumerate() {
            if *v > row[best] {
                best = c;
            }
        }
        best as u32
    };
    for rows in plan {
        let log_probs = predict(rows.iter().map(|&i| &split.enc[i]).collect(), &rows)?;
        let twin_log_probs = match (&split.twins, with_twins) {
            (Some(t), true) => Some(predict(rows.iter().map(|&i| &t[i]).collect(), &rows)?),
            _ => None,
        };
        for (r, &i) in rows.iter().enumerate() {
            let lp = &log_probs[r * k..(r + 1) * k];
            let label = split.data.labels[i].0;
            counts.add(RowOutcome {
                label,
                predicted: argmax(lp),
                loss: -f64::from(lp[label as usize]),
                groups: &split.groups[i],
                reference: split.data.reference_labels.as_ref().map(|v| v[i].0),
                twin_predicted: twin_log_probs
                    .as_ref()
                    .map(|t| argmax(&t[r * k..(r + 1) * k])),
            })?;
        }
    }
    Ok(counts)
}

fn select_value(config: &TrainConfig, m: &EvalMetrics) -> f64 {
    use crate::config::SelectMetric::*;
    match config.select_metric {
        Loss => m.loss,
        Accuracy => m.accuracy,
        MacroF1 => m.macro_f1,
        BalancedAccuracy => m.balanced_accuracy,
    }
}

fn save_checkpoint(
    ctx: &Context,
    model: &BertForSequenceClassification,
    optim: &AdamW,
    state: &TrainState,
    observer: &mut dyn Observer,
) -> Result<PathBuf> {
    let optim_bytes = optim.inner().into_bytes().map_err(|e| Error::Checkpoint {
        path: ctx.run.checkpoints().join(checkpoint_name(state.step)),
        message: format!("optimizer state: {e}"),
    })?;
    let path = write_checkpoint(
        &ctx.run.checkpoints(),
        state,
        &model_bytes(model)?,
        &optim_bytes,
    )?;
    prune(
        &ctx.run.checkpoints(),
        ctx.config.keep_last,
        state.best.as_ref().map(|b| b.checkpoint.as_str()),
    )?;
    observer.on_event(&Event::Checkpoint { path: &path });
    Ok(path)
}

fn run_loop(
    ctx: &Context,
    mut model: BertForSequenceClassification,
    mut optim: AdamW,
    mut state: TrainState,
    resumed_from: Option<&Path>,
    observer: &mut dyn Observer,
) -> Result<Outcome> {
    let config = &ctx.config;
    observer.on_event(&Event::Started {
        config,
        run_dir: &ctx.run.root,
        train_rows: ctx.train.len(),
        valid_rows: ctx.valid.len(),
        test_rows: ctx.test.len(),
        total_steps: ctx.schedule.total_steps,
        resumed_from,
    });
    for message in &ctx.warnings {
        observer.on_event(&Event::Warning { message });
    }
    let mut last_checkpoint: Option<PathBuf> = resumed_from.map(Path::to_path_buf);
    let lengths: Vec<usize> = ctx.train.enc.iter().map(Encoded::len).collect();
    let batch_cfg = BatchConfig {
        batch_size: config.batch_size,
        window_batches: config.length_window_batches,
        shuffle: true,
        seed: state.rng.batch_seed,
    };
    while state.epoch < config.epochs && !state.stopped_early {
        let epoch = state.epoch;
        let plan = plan_batches(&lengths, &batch_cfg, epoch as u64);
        let batches = plan.len();
        observer.on_event(&Event::EpochStarted {
            epoch,
            epochs: config.epochs,
            batches,
            batches_done: state.batches_done,
        });
        let mut clock = Instant::now();
        let mut lr = ctx.schedule.lr(state.step);
        while state.batches_done < batches {
            let group_end = (state.batches_done + config.grad_accum).min(batches);
            let group = &plan[state.batches_done..group_end];
            let step_examples: usize = group.iter().map(Vec::len).sum();
            let mut accumulator = GradientsAccumulator::<BertForSequenceClassification>::new();
            let mut objective = 0.0;
            for rows in group {
                // One shard per device; with one device the micro-batch itself.
                let parts = shards(rows, ctx.shard_devices.len());
                let seeds: Vec<u64> = (0..parts.len() as u64)
                    .map(|k| mix(state.rng.dropout_seed, state.rng.micro_step + k))
                    .collect();
                let outs = forward_backward(ctx, &model, &parts, step_examples, &seeds)?;
                for (part, out) in parts.iter().zip(outs) {
                    if !out.objective.is_finite() {
                        return Err(Error::NonFinite {
                            what: "loss",
                            value: out.objective,
                            epoch: epoch + 1,
                            step: state.step + 1,
                            last_checkpoint,
                        });
                    }
                    objective += out.objective;
                    state.epoch_cross_entropy_sum += out.cross_entropy_sum;
                    if let Some(p) = out.penalty {
                        state.epoch_penalty_sum += p * part.len() as f64;
                        state.epoch_penalty_rows += part.len() as u64;
                    }
                    // Summed on the main device, in shard order: the same
                    // sums as accumulating the shards as micro-batches.
                    accumulator.accumulate(&model, out.grads);
                    state.rng.micro_step += 1;
                }
            }
            let mut grads = accumulator.grads();
            let norm = global_grad_norm(&model, &grads)?;
            if !norm.is_finite() {
                return Err(Error::NonFinite {
                    what: "gradient norm",
                    value: norm,
                    epoch: epoch + 1,
                    step: state.step + 1,
                    last_checkpoint,
                });
            }
            if let Some(max) = config.max_grad_norm {
                // PyTorch: clip_coef = max_norm / (total_norm + 1e-6), applied when < 1.
                let coef = max / (norm + 1e-6);
                if coef < 1.0 {
                    scale_grads(&model, &mut grads, coef);
                }
            }
            lr = ctx.schedule.lr(state.step);
            model = optim.step(model, grads, lr);
            state.step += 1;
            state.batches_done = group_end;
            state.epoch_objective_sum += objective * step_examples as f64;
            state.epoch_examples += step_examples as u64;
            let control = observer.on_event(&Event::Step {
                epoch,
                batch: state.batches_done,
                batches,
                step: state.step,
                loss: objective,
                lr,
            });
            if control == Control::Stop {
                return Ok(Outcome::Stopped { step: state.step });
            }
            let due = config
                .checkpoint_every
                .is_some_and(|n| state.step.is_multiple_of(n));
            if due && state.batches_done < batches {
                let now = Instant::now();
                state.epoch_seconds += (now - clock).as_secs_f64();
                state.train_seconds += (now - clock).as_secs_f64();
                clock = now;
                last_checkpoint = Some(save_checkpoint(ctx, &model, &optim, &state, observer)?);
            }
        }

        // End of epoch: evaluate, record, checkpoint.
        observer.on_event(&Event::Evaluating { epoch });
        let valid = if ctx.valid.len() > 0 {
            Some(evaluate(ctx, &model.valid(), &ctx.valid, false)?.metrics())
        } else {
            None
        };
        let now = Instant::now();
        state.epoch_seconds += (now - clock).as_secs_f64();
        state.train_seconds += (now - clock).as_secs_f64();
        let name = checkpoint_name(state.step);
        let improved = match (&valid, &state.best) {
            (None, _) | (Some(_), None) => true,
            (Some(m), Some(best)) => {
                let v = select_value(config, m);
                let delta = config.early_stopping_min_delta;
                if config.select_metric.higher_is_better() {
                    v > best.value + delta
                } else {
                    v < best.value - delta
                }
            }
        };
        if improved {
            let value = valid.as_ref().map_or(f64::NAN, |m| select_value(config, m));
            state.best = Some(Best {
                epoch,
                value,
                checkpoint: name.clone(),
            });
            state.bad_epochs = 0;
        } else {
            state.bad_epochs += 1;
        }
        let examples = state.epoch_examples.max(1) as f64;
        let record = EpochRecord {
            event: "epoch".into(),
            epoch: epoch + 1,
            step: state.step,
            lr,
            train_loss: state.epoch_objective_sum / examples,
            train_cross_entropy: state.epoch_cross_entropy_sum / examples,
            train_penalty: (state.epoch_penalty_rows > 0)
                .then(|| state.epoch_penalty_sum / state.epoch_penalty_rows as f64),
            valid,
            best: improved,
            epoch_seconds: state.epoch_seconds,
        };
        state.metrics_len = append_line(&ctx.run.metrics(), &record)?;
        observer.on_event(&Event::EpochEnded { record: &record });
        state.history.push(record);
        if config
            .early_stopping_patience
            .is_some_and(|p| state.bad_epochs >= p)
        {
            state.stopped_early = true;
        }
        state.epoch += 1;
        state.batches_done = 0;
        state.epoch_objective_sum = 0.0;
        state.epoch_cross_entropy_sum = 0.0;
        state.epoch_penalty_sum = 0.0;
        state.epoch_penalty_rows = 0;
        state.epoch_examples = 0;
        state.epoch_seconds = 0.0;
        last_checkpoint = Some(save_checkpoint(ctx, &model, &optim, &state, observer)?);
    }
    finish(ctx, model, &state, observer)
}

/// Tests the best epoch's model, exports it and writes the report.
fn finish(
    ctx: &Context,
    model: BertForSequenceClassification,
    state: &TrainState,
    observer: &mut dyn Observer,
) -> Result<Outcome> {
    let best_model = match &state.best {
        Some(best) if best.checkpoint != checkpoint_name(state.step) => {
            let ckpt = read_checkpoint(&ctx.run.checkpoints().join(&best.checkpoint))?;
            load_model_bytes(model, &ckpt.model, &ckpt.path)?
        }
        _ => model,
    };
    valor_bert::save_hf(
        &best_model,
        &ctx.bert_config,
        &ctx.run.model(),
        Some(&ctx.tokenizer_src),
    )?;
    observer.on_event(&Event::Testing);
    let counts = evaluate(ctx, &best_model.valid(), &ctx.test, true)?;
    let test = counts.metrics();
    let (fairness, fairness_reference) = if counts.rows() > 0 {
        counts.fairness_reports()
    } else {
        Default::default()
    };
    let report = TrainReport {
        schema: REPORT_SCHEMA.into(),
        summary: Summary::from_metrics(&test),
        test: test.clone(),
        fairness,
        fairness_reference,
        labels: ctx.labels.clone(),
        fairness_group: ctx.group_columns.first().map(|(n, _)| n.clone()),
        best_epoch: state.best.as_ref().map(|b| b.epoch + 1),
        epochs_run: state.history.len(),
        stopped_early: state.stopped_early,
        steps: state.step,
        rows: ctx.provenance.rows,
        train_seconds: state.train_seconds,
        provenance: ctx.provenance.clone(),
    };
    write_json(&ctx.run.report(), &report)?;
    let mut line = serde_json::to_value(&test).map_err(|source| Error::Json {
        path: ctx.run.metrics(),
        source,
    })?;
    if let Some(obj) = line.as_object_mut() {
        obj.insert("event".into(), "test".into());
        obj.insert("best_epoch".into(), serde_json::json!(report.best_epoch));
    }
    append_line(&ctx.run.metrics(), &line)?;
    observer.on_event(&Event::Finished { report: &report });
    Ok(Outcome::Finished(Box::new(report)))
}
