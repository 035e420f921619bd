//! Length-bucketed, dynamically padded batches.
//!
//! Padding wastes compute in proportion to the spread of lengths in a batch.
//! [`plan_batches`] shuffles the rows (seeded by `seed` and `epoch`), cuts the
//! shuffled order into windows of `window_batches × batch_size` rows, sorts each
//! window by length, cuts it into batches, and shuffles the order of batches
//! within the window: batches hold similar lengths while the epoch stays
//! random. The same seed and epoch give the same plan, so a resumed run can skip
//! to batch `k` by index. [`Bucketed`] does the same over a stream (no global
//! shuffle), so a file larger than memory can be batched.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::tokenize::Encoded;

/// How rows are grouped into batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchConfig {
    pub batch_size: usize,
    /// Rows are sorted by length within windows of this many batches
    /// (1 = no bucketing).
    pub window_batches: usize,
    /// Shuffle rows and batch order (training); `false` keeps file order
    /// within the length sort (evaluation).
    pub shuffle: bool,
    pub seed: u64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            batch_size: 16,
            window_batches: 50,
            shuffle: true,
            seed: 42,
        }
    }
}

/// The row indices of each batch of one epoch.
pub fn plan_batches(lengths: &[usize], cfg: &BatchConfig, epoch: u64) -> Vec<Vec<usize>> {
    let bs = cfg.batch_size.max(1);
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    // One stream per epoch, derived from the seed without overlap.
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    rng.set_stream(epoch);
    if cfg.shuffle {
        order.shuffle(&mut rng);
    }
    let window = bs * cfg.window_batches.max(1);
    let mut out = Vec::with_capacity(lengths.len().div_ceil(bs));
    for chunk in order.chunks(window) {
        let mut w = chunk.to_vec();
        // Stable sort keeps the shuffled (or file) order among equal lengths.
        w.sort_by_key(|&i| lengths[i]);
        let mut batches: Vec<Vec<usize>> = w.chunks(bs).map(<[usize]>::to_vec).collect();
        if cfg.shuffle {
            batches.shuffle(&mut rng);
        }
        out.extend(batches);
    }
    out
}

/// A padded batch, ready to become tensors. Arrays are row-major
/// `[batch_size, seq_len]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Which rows (dataset or stream positions) the batch holds, in order.
    pub indices: Vec<usize>,
    pub batch_size: usize,
    pub seq_len: usize,
    pub input_ids: Vec<u32>,
    pub attention_mask: Vec<u32>,
    pub token_type_ids: Vec<u32>,
}

impl Batch {
    /// Number of real (non-padding) tokens.
    pub fn real_tokens(&self) -> usize {
        self.attention_mask.iter().filter(|&&m| m == 1).count()
    }
}

/// Pads the encodings to the longest one (`pad_id`, mask 0, type 0).
pub fn collate(indices: Vec<usize>, encodings: &[&Encoded], pad_id: u32) -> Batch {
    let seq_len = encodings.iter().map(|e| e.len()).max().unwrap_or(0);
    let b = encodings.len();
    let mut input_ids = Vec::with_capacity(b * seq_len);
    let mut attention_mask = Vec::with_capacity(b * seq_len);
    let mut token_type_ids = Vec::with_capacity(b * seq_len);
    for e in encodings {
        let pad = seq_len - e.len();
        input_ids.extend_from_slice(&e.ids);
        input_ids.extend(std::iter::repeat_n(pad_id, pad));
        attention_mask.extend(std::iter::repeat_n(1, e.len()));
        attention_mask.extend(std::iter::repeat_n(0, pad));
        token_type_ids.extend_from_slice(&e.type_ids);
        token_type_ids.extend(std::iter::repeat_n(0, pad));
    }
    Batch {
        indices,
        batch_size: b,
        seq_len,
        input_ids,
        attention_mask,
        token_type_ids,
    }
}

/// Streaming bucketing: buffers a window of `(position, encoding)` pairs,
/// sorts it by length, and yields padded batches. Memory stays bounded by the
/// window whatever the stream's length.
#[derive(Debug)]
pub struct Bucketed<I> {
    inner: I,
    batch_size: usize,
    window: usize,
    pad_id: u32,
    ready: std::collections::VecDeque<Batch>,
}

impl<I: Iterator<Item = (usize, Encoded)>> Bucketed<I> {
    pub fn new(inner: I, batch_size: usize, window_batches: usize, pad_id: u32) -> Self {
        let batch_size = batch_size.max(1);
        Self {
            inner,
            batch_size,
            window: batch_size * window_batches.max(1),
            pad_id,
            ready: Default::default(),
        }
    }
}

impl<I: Iterator<Item = (usize, Encoded)>> Iterator for Bucketed<I> {
    type Item = Batch;
    fn next(&mut self) -> Option<Batch> {
        if self.ready.is_empty() {
            let mut buf: Vec<(usize, Encoded)> = self.inner.by_ref().take(self.window).collect();
            if buf.is_empty() {
                return None;
            }
            buf.sort_by_key(|(_, e)| e.len());
            for chunk in buf.chunks(self.batch_size) {
                let idx = chunk.iter().map(|(i, _)| *i).collect();
                let encs: Vec<&Encoded> = chunk.iter().map(|(_, e)| e).collect();
                self.ready.push_back(collate(idx, &encs, self.pad_id));
            }
        }
        self.ready.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(n: usize) -> Encoded {
        Encoded {
            ids: (1..=n as u32).collect(),
            type_ids: vec![0; n],
            word_ids: vec![None; n],
        }
    }

    #[test]
    fn plan_covers_every_row_once_and_is_deterministic() {
        let lengths: Vec<usize> = (0..1003).map(|i| (i * 37) % 120 + 3).collect();
        let cfg = BatchConfig {
            batch_size: 16,
            window_batches: 8,
            shuffle: true,
            seed: 9,
        };
        let p = plan_batches(&lengths, &cfg, 0);
        let mut all: Vec<usize> = p.iter().flatten().copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..1003).collect::<Vec<_>>());
        assert_eq!(p, plan_batches(&lengths, &cfg, 0));
        assert_ne!(p, plan_batches(&lengths, &cfg, 1));
    }

    #[test]
    fn bucketing_cuts_padding() {
        let lengths: Vec<usize> = (0..2000).map(|i| (i * 7919) % 128 + 2).collect();
        let padded = |p: &Vec<Vec<usize>>| -> usize {
            p.iter()
                .map(|b| b.iter().map(|&i| lengths[i]).max().unwrap() * b.len())
                .sum()
        };
        let flat = plan_batches(
            &lengths,
            &BatchConfig {
                window_batches: 1,
                ..Default::default()
            },
            0,
        );
        let bucketed = plan_batches(&lengths, &BatchConfig::default(), 0);
        // The least possible is no padding at all: the sum of the lengths.
        let least: usize = lengths.iter().sum();
        assert!(
            padded(&flat) as f64 > 1.5 * least as f64,
            "{} vs {least}",
            padded(&flat)
        );
        assert!(
            (padded(&bucketed) as f64) < 1.05 * least as f64,
            "{} vs {least}",
            padded(&bucketed)
        );
    }

    #[test]
    fn collate_pads_and_masks() {
        let (a, b) = (enc(3), enc(1));
        let batch = collate(vec![4, 7], &[&a, &b], 0);
        assert_eq!(batch.seq_len, 3);
        assert_eq!(batch.input_ids, vec![1, 2, 3, 1, 0, 0]);
        assert_eq!(batch.attention_mask, vec![1, 1, 1, 1, 0, 0]);
        assert_eq!(batch.real_tokens(), 4);
    }

    #[test]
    fn streaming_buckets_everything() {
        let items = (0..45).map(|i| (i, enc(i % 9 + 1)));
        let batches: Vec<Batch> = Bucketed::new(items, 4, 3, 0).collect();
        let mut seen: Vec<usize> = batches.iter().flat_map(|b| b.indices.clone()).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..45).collect::<Vec<_>>());
        assert!(batches.iter().all(|b| b.batch_size <= 4));
    }
}
