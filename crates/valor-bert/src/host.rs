//! CPU fast paths for burn's `flex` device, where burn-flex 0.22 spends its
//! time in a scalar random generator or the system allocator.
//!
//! Profiled on MiniLM-L6 (2 cores, `perf record`): every dropout drew a
//! ChaCha number per element and multiplied twice (≈13% of a training
//! step), and ≈6% of a step went to page faults on fresh buffers. Here
//! dropout masks are counter-based ([`Mask`]), made on all threads, and
//! [`tune_host_allocator`] keeps freed buffers in the heap. (The exact GELU,
//! which burn-flex runs on one thread, moved to [`crate::fused`] with the
//! other fused kernels.) [`dropout`] falls back to burn's own op on every
//! other device, so model code calls it unconditionally. An upstream
//! counter-based Bernoulli sampler would make most of this module
//! unnecessary.

use burn::nn::Dropout;
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use rayon::prelude::*;
use valor_base::splitmix::splitmix64;
use valor_kernels::{MatRef, matmul_f32};

use crate::kernels::{self, CHUNK};

/// Whether `device` (with or without autodiff) is burn's flex CPU device.
pub(crate) fn is_flex(device: &Device) -> bool {
    #[cfg(feature = "flex")]
    {
        matches!(
            device.clone().without_autodiff().as_dispatch(),
            burn::backend::DispatchDevice::Flex(_)
        )
    }
    #[cfg(not(feature = "flex"))]
    {
        let _ = device;
        false
    }
}

/// Runs an inference pass `f` on a worker of rayon's global pool when `device`
/// is the flex device without autodiff and the caller is not a worker
/// already; otherwise calls `f` here.
///
/// A forward pass makes ≈ 70 parallel regions (every product, layer norm,
/// GELU, attention). Called from a thread outside the pool, each region is
/// a round trip: the job is injected, a sleeping worker woken, and the
/// caller parked on a latch until the last piece is done, then woken in its
/// turn. On a worker the regions are pushed on its own deque, where the
/// other workers steal them, and the pass itself never leaves the pool.
/// Measured on the 2-core AMD EPYC (MiniLM, one sentence, alternating in
/// one process): 7–13% less time at 64 and 128 tokens in fp32, 15–20% in
/// bf16 and int8; no change at 32 sentences, where the regions are long.
/// (A training step or integrated gradients, forward and backward, gained
/// nothing measurable that way, so autodiff stays on the caller's thread,
/// with the [`crate::lowp::autocast`] setting it reads.)
pub(crate) fn on_workers<T: Send>(device: &Device, f: impl FnOnce() -> T + Send) -> T {
    if device.is_autodiff() || !is_flex(device) || rayon::current_thread_index().is_some() {
        return f();
    }
    rayon::scope(|_| f())
}

/// Attention straight from the rows on the flex device without autodiff:
/// `q`, `k`, `v` are `[rows, hidden]`, `sequences` each sequence's
/// `(first row, length)` in row order, laid end to end (packed rows, or
/// the padded slots of a `[batch, seq_len]` batch, each sequence
/// `seq_len` rows). `bias`, for padded rows, is [`crate::attention::mask_bias`]'s
/// `[batch, 1, 1, seq_len]`, one row per sequence, added to every score of
/// the sequence's keys. With `first_only`, `q` holds one row per sequence,
/// the query of its first token (`[CLS]`), and the context comes back for
/// those rows only (`[sequences, hidden]`): what the pooler reads of a
/// classifier's last layer. Every head of every sequence runs on one thread,
/// all of them side by side: its scores `q·kᵀ` (a product reading the
/// head's columns in place) into a `len × len` scratch that stays in
/// cache, `softmax(scale · scores + bias)` ([`kernels::softmax_rows`]),
/// then the product with the head's values. So attention copies nothing
/// in, allocates no `[batch, heads, seq_len, seq_len]` tensor, and the
/// result is the `[rows, hidden]` context. On any other device, with
/// autodiff, or for a dtype other than f32 the rows come back (`Err`,
/// boxed: three tensors) and the caller runs burn's ops.
pub(crate) fn attention_rows(
    [q, k, v]: [Tensor<2>; 3],
    sequences: &[(usize, usize)],
    bias: Option<Tensor<4>>,
    heads: usize,
    first_only: bool,
) -> Result<Tensor<2>, Box<[Tensor<2>; 3]>> {
    let device = q.device();
    let [tokens, hidden] = k.dims();
    let queries = if first_only { sequences.len() } else { tokens };
    let longest = sequences.iter().map(|s| s.1).max().unwrap_or(0);
    let applies = is_flex(&device)
        && !device.is_autodiff()
        && [&q, &k, &v]
            .iter()
            .all(|t| t.dtype() == burn::tensor::DType::F32)
        && q.dims() == [queries, hidden]
        && v.dims() == [tokens, hidden]
        && heads > 0
        && hidden % heads == 0
        && sequences.iter().map(|s| s.1).sum::<usize>() == tokens
        && bias.as_ref().is_none_or(|b| {
            b.dtype() == burn::tensor::DType::F32
                && b.dims() == [sequences.len(), 1, 1, longest]
                && sequences.iter().all(|s| s.1 == longest)
        });
    if !applies {
        return Err(Box::new([q, k, v]));
    }
    let d = hidden / heads;
    let scale = (1.0 / (d as f64).sqrt()) as f32;
    // Linear outputs nothing else holds: taking their data copies nothing.
    let (qd, kd, vd) = (q.into_data(), k.into_data(), v.into_data());
    let bias = bias.map(|b| b.into_data().convert::<f32>());
    let (Ok(qs), Ok(ks), Ok(vs), Ok(bias)) = (
        qd.as_slice::<f32>(),
        kd.as_slice::<f32>(),
        vd.as_slice::<f32>(),
        bias.as_ref().map(|b| b.as_slice::<f32>()).transpose(),
    ) else {
        let back = |data: TensorData| Tensor::from_data(data, &device);
        return Err(Box::new([back(qd), back(kd), back(vd)]));
    };
    // Head-major `[heads, queries, d]`, so each (head, sequence) writes one
    // contiguous block; transposed to `[queries, hidden]` at the end.
    let mut by_head = vec![0f32; queries * hidden];
    let mut items = Vec::with_capacity(heads * sequences.len());
    for (h, block) in by_head.chunks_mut(queries * d).enumerate() {
        let mut rest = block;
        for (s, &(first, len)) in sequences.iter().enumerate() {
            // The sequence's query rows: all of them, or its first alone.
            let (q_first, q_len) = if first_only { (s, 1) } else { (first, len) };
            let (mine, tail) = rest.split_at_mut(q_len * d);
            items.push((h, s, first, len, q_first, q_len, mine));
            rest = tail;
        }
    }
    let zeros = vec![0f32; longest];
    items.into_par_iter().for_each_init(
        Vec::new,
        |scores, (h, s, first, len, q_first, q_len, out)| {
            scores.resize(q_len * len, 0.0);
            let rows = |data, rows| MatRef {
                data,
                rows,
                cols: d,
                row_stride: hidden,
                col_stride: 1,
            };
            let (q_at, at) = (q_first * hidden + h * d, first * hidden + h * d);
            let q_rows = rows(&qs[q_at..] as &[f32], q_len);
            matmul_f32(scores, len, q_rows, rows(&ks[at..], len).t())
                .expect("the head's rows lie in q and k");
            let bias = bias.map_or(&zeros[..len], |b| &b[s * len..(s + 1) * len]);
            kernels::softmax_rows(scores, bias, 0, q_len, len, scale);
            let probs = MatRef::row_major(scores, q_len, len);
            matmul_f32(out, d, probs, rows(&vs[at..], len)).expect("the head's rows lie in v");
        },
    );
    let mut context = vec![0f32; queries * hidden];
    context
        .par_chunks_mut(hidden)
        .enumerate()
        .for_each(|(t, row)| {
            for (h, part) in row.chunks_exact_mut(d).enumerate() {
                part.copy_from_slice(&by_head[(h * queries + t) * d..][..d]);
            }
        });
    Ok(Tensor::from_data(
        TensorData::new(context, [queries, hidden]),
        &device,
    ))
}

/// `layer.forward(x)` with a mask made in parallel on the flex device.
///
/// As burn's `Dropout`, it acts only in training mode on an autodiff device
/// with a non-zero probability, and scales the kept elements by
/// `1/(1 − p)`. The mask is a [`Mask`] drawn from the device's generator,
/// so a caller that seeds the device (the trainer does, every micro-step)
/// fixes every mask, and resumed runs replay them exactly.
pub(crate) fn dropout<const D: usize>(layer: &Dropout, x: Tensor<D>) -> Tensor<D> {
    let device = x.device();
    if !Mask::active(layer, &device) {
        return x;
    }
    if !is_flex(&device) {
        return layer.forward(x);
    }
    let mask = Mask::draw(layer, &device);
    let shape = x.shape();
    let mut values = vec![0f32; shape.num_elements()];
    values
        .par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(c, chunk)| kernels::mask_fill(chunk, mask, (c * CHUNK) as u64));
    // A constant of the graph: no gradient flows into it.
    x * Tensor::<D>::from_data(TensorData::new(values, shape), &device)
}

/// A dropout mask as a function of the element index: element `i` is kept
/// (and scaled by `1/keep`) when the top 24 bits of SplitMix64(seed, i)
/// fall below `keep · 2²⁴`, so the keep probability is `keep` rounded to
/// 2⁻²⁴, as a float draw would be. Counter-based, so any part of a mask can
/// be made on any thread, and a backward pass can remake the forward's
/// mask from the seed alone instead of keeping it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Mask {
    seed: u64,
    /// Keep when `hash >> 40 < threshold`; above 2²⁴ keeps everything.
    threshold: u64,
    scale: f32,
}

impl Mask {
    /// The mask that keeps every element unscaled (dropout off).
    pub(crate) const KEEP_ALL: Mask = Mask {
        seed: 0,
        threshold: u64::MAX,
        scale: 1.0,
    };

    /// Whether `layer` changes its input on `device`: burn's `Dropout`
    /// acts only in training mode, on an autodiff device, with `p > 0`.
    pub(crate) fn active(layer: &Dropout, device: &Device) -> bool {
        layer.training.is_enabled() && device.is_autodiff() && layer.prob > 0.0
    }

    /// The mask `layer` applies now: a fresh seed from the device's
    /// generator when the layer is active, [`Mask::KEEP_ALL`] otherwise.
    pub(crate) fn draw(layer: &Dropout, device: &Device) -> Mask {
        if !Self::active(layer, device) {
            return Self::KEEP_ALL;
        }
        let keep = 1.0 - layer.prob;
        Mask::new(keep, draw_seed(device))
    }

    pub(crate) fn new(keep: f64, seed: u64) -> Mask {
        Mask {
            seed,
            threshold: (keep * f64::from(1u32 << 24)).round() as u64,
            scale: (1.0 / keep) as f32,
        }
    }

    #[inline(always)]
    pub(crate) fn keeps_all(&self) -> bool {
        self.threshold > 1 << 24 && self.scale == 1.0
    }

    /// The mask's value at flat element index `i`: `1/keep` or 0.
    #[inline(always)]
    pub(crate) fn value(&self, i: u64) -> f32 {
        if (splitmix64(self.seed, i) >> 40) < self.threshold {
            self.scale
        } else {
            0.0
        }
    }
}

/// 64 bits from the device's generator (three uniform f32 draws, 24 bits each).
fn draw_seed(device: &Device) -> u64 {
    let plain = device.clone().without_autodiff();
    let draws = Tensor::<1>::random([3], Distribution::Default, &plain).into_data();
    let draws = draws
        .as_slice::<f32>()
        .map(<[f32]>::to_vec)
        .unwrap_or_else(|_| draws.iter::<f32>().collect());
    draws.iter().fold(0u64, |acc, &u| {
        // u ∈ [0, 1): its top 24 bits of mantissa as an integer.
        (acc << 24) ^ ((f64::from(u) * f64::from(1u32 << 24)) as u64)
    })
}

/// Keeps large tensor buffers in glibc's heap instead of fresh `mmap`
/// pages. By default glibc maps every allocation above its (adaptive)
/// threshold anew and unmaps it on free, and the kernel zeroes each page on
/// first touch: ≈6% of a MiniLM step went to page faults and `clear_page`.
/// Here large blocks come from the heap (`M_MMAP_THRESHOLD` at its maximum,
/// 32 MiB on 64-bit) and freed ones stay there for the next batch
/// (`M_TRIM_THRESHOLD` 512 MiB; setting either by hand turns off glibc's
/// adaptive pair, so both are set). Measured: −10% CPU time on MiniLM
/// inference, −6% on training steps; the process holds on to up to
/// 512 MiB of freed heap. Call once at the start of a program that runs
/// models on the CPU (the `valor` binary, the benchmarks); a no-op off
/// glibc.
pub fn tune_host_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // glibc's upper bound for M_MMAP_THRESHOLD on 64-bit targets.
        const MMAP_THRESHOLD: libc::c_int = 32 << 20;
        const TRIM_THRESHOLD: libc::c_int = 512 << 20;
        // SAFETY: mallopt only changes allocator tunables; it takes plain
        // integers, touches no memory of ours, and may be called at any
        // time (glibc serialises it with the allocator's own lock).
        #[allow(unsafe_code)]
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bernoulli_mask(n: usize, keep: f64, seed: u64) -> Vec<f32> {
        let mask = Mask::new(keep, seed);
        (0..n as u64).map(|i| mask.value(i)).collect()
    }

    /// An inference pass on the flex device runs on a pool worker, called
    /// from outside the pool or inside it; under autodiff it stays on the
    /// caller's thread.
    #[cfg(feature = "flex")]
    #[test]
    fn inference_passes_run_on_a_worker_and_autodiff_on_the_caller() {
        let plain = Device::flex();
        assert_eq!(rayon::current_thread_index(), None);
        assert!(on_workers(&plain, rayon::current_thread_index).is_some());
        let nested = rayon::scope(|_| {
            let outer = rayon::current_thread_index();
            (outer, on_workers(&plain, rayon::current_thread_index))
        });
        assert_eq!(nested.0, nested.1, "a worker runs the pass itself");
        let autodiff = plain.autodiff();
        assert_eq!(on_workers(&autodiff, rayon::current_thread_index), None);
    }

    #[test]
    fn mask_keeps_about_keep_and_scales() {
        let keep = 0.9;
        let mask = bernoulli_mask(200_000, keep, 7);
        let kept = mask.iter().filter(|&&m| m != 0.0).count() as f64 / mask.len() as f64;
        // Binomial sd ≈ 0.00067 at n = 200k: six of them.
        assert!((kept - keep).abs() < 0.004, "kept fraction {kept}");
        assert!(
            mask.iter()
                .all(|&m| m == 0.0 || (m - (1.0 / keep) as f32).abs() < 1e-7)
        );
    }

    #[test]
    fn mask_is_a_function_of_seed_only() {
        assert_eq!(
            bernoulli_mask(50_000, 0.5, 3),
            bernoulli_mask(50_000, 0.5, 3)
        );
        assert_ne!(
            bernoulli_mask(50_000, 0.5, 3),
            bernoulli_mask(50_000, 0.5, 4)
        );
    }

    #[cfg(feature = "flex")]
    /// `softmax(q_h·k_hᵀ/√d + bias) v_h` of every head of every sequence,
    /// in f64.
    fn attention_reference(
        [q, k, v]: [&[f32]; 3],
        hidden: usize,
        heads: usize,
        sequences: &[(usize, usize)],
        bias: Option<&[f32]>,
    ) -> Vec<f64> {
        let d = hidden / heads;
        let scale = 1.0 / (d as f64).sqrt();
        let mut out = vec![0f64; q.len()];
        for (s, &(first, len)) in sequences.iter().enumerate() {
            for h in 0..heads {
                for i in 0..len {
                    let at = |m: &[f32], row: usize, c: usize| {
                        f64::from(m[(first + row) * hidden + h * d + c])
                    };
                    let scores: Vec<f64> = (0..len)
                        .map(|j| {
                            (0..d).map(|c| at(q, i, c) * at(k, j, c)).sum::<f64>() * scale
                                + bias.map_or(0.0, |b| f64::from(b[s * len + j]))
                        })
                        .collect();
                    let m = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = scores.iter().map(|x| (x - m).exp()).collect();
                    let total: f64 = e.iter().sum();
                    for c in 0..d {
                        out[(first + i) * hidden + h * d + c] =
                            (0..len).map(|j| e[j] * at(v, j, c)).sum::<f64>() / total;
                    }
                }
            }
        }
        out
    }

    #[test]
    fn attention_rows_matches_an_f64_reference() {
        let device = Device::flex();
        let (hidden, heads) = (48, 3);
        let value =
            |i: usize, salt: usize| ((i * 7919 + salt * 104_729) % 1013) as f32 / 253.25 - 2.0;
        let tensor = |rows: usize, salt| {
            let data: Vec<f32> = (0..rows * hidden).map(|i| value(i, salt)).collect();
            (
                Tensor::<2>::from_data(TensorData::new(data.clone(), [rows, hidden]), &device),
                data,
            )
        };
        // Packed rows of ragged lengths (around the 16-lane width), then a
        // padded batch of two whose second sequence has two padding keys.
        let packed = vec![(0, 1), (1, 15), (16, 17), (33, 40)];
        let padded = vec![(0, 9), (9, 9)];
        let mut mask = vec![0f32; 18];
        mask[16..].fill(f32::MIN);
        for (sequences, bias) in [(packed, None), (padded, Some(mask))] {
            let rows = sequences.iter().map(|s| s.1).sum();
            let ((q, qd), (k, kd), (v, vd)) = (tensor(rows, 1), tensor(rows, 2), tensor(rows, 3));
            let bias_t = bias.as_ref().map(|b| {
                let len = sequences[0].1;
                Tensor::<4>::from_data(
                    TensorData::new(b.clone(), [sequences.len(), 1, 1, len]),
                    &device,
                )
            });
            // The first tokens' queries alone: those rows of the full context.
            let firsts: Vec<f32> = sequences
                .iter()
                .flat_map(|&(f, _)| qd[f * hidden..(f + 1) * hidden].to_vec())
                .collect();
            let q_first =
                Tensor::<2>::from_data(TensorData::new(firsts, [sequences.len(), hidden]), &device);
            let got_first = attention_rows(
                [q_first, k.clone(), v.clone()],
                &sequences,
                bias_t.clone(),
                heads,
                true,
            )
            .unwrap_or_else(|_| panic!("runs on the flex device"))
            .into_data();
            let got = attention_rows([q, k, v], &sequences, bias_t, heads, false)
                .unwrap_or_else(|_| panic!("runs on the flex device"))
                .into_data();
            let want =
                attention_reference([&qd, &kd, &vd], hidden, heads, &sequences, bias.as_deref());
            for (i, (&g, &w)) in got.as_slice::<f32>().unwrap().iter().zip(&want).enumerate() {
                assert!((f64::from(g) - w).abs() < 2e-5, "value {i}: {g} vs {w}");
            }
            let got_first = got_first.as_slice::<f32>().unwrap();
            assert_eq!(got_first.len(), sequences.len() * hidden);
            for (s, &(f, _)) in sequences.iter().enumerate() {
                let want = &want[f * hidden..(f + 1) * hidden];
                for (c, (&g, &w)) in got_first[s * hidden..].iter().zip(want).enumerate() {
                    assert!(
                        (f64::from(g) - w).abs() < 2e-5,
                        "sequence {s}, column {c}: {g} vs {w}"
                    );
                }
            }
        }
        // With autodiff the rows come back for burn's ops.
        let ad = Device::flex().autodiff();
        let t = Tensor::<2>::zeros([4, hidden], &ad);
        assert!(attention_rows([t.clone(), t.clone(), t], &[(0, 4)], None, heads, false).is_err());
    }

    #[test]
    fn dropout_masks_follow_the_device_seed_and_pass_gradients_through() {
        use burn::nn::DropoutConfig;
        let device = Device::flex().autodiff();
        let layer = DropoutConfig::new(0.25).init();
        let x = Tensor::<2>::ones([64, 100], &device).require_grad();
        // Under the generator lock: other tests draw from it concurrently.
        let run = |seed| {
            crate::with_device_rng(|| {
                device.seed(seed);
                dropout(&layer, x.clone())
            })
        };
        let a = run(9).into_data();
        assert_eq!(a, run(9).into_data());
        assert_ne!(a, run(10).into_data());
        // Kept elements are 1/(1 − p), the rest 0, about 75% kept.
        let values = a.as_slice::<f32>().unwrap();
        let kept = values.iter().filter(|&&v| v != 0.0).count() as f64 / values.len() as f64;
        assert!((kept - 0.75).abs() < 0.03, "kept {kept}");
        assert!(
            values
                .iter()
                .all(|&v| v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-6)
        );
        // d(sum(dropout(x)))/dx is the mask itself.
        let y = run(9);
        let grads = y.sum().backward();
        let g = x.grad(&grads).unwrap().into_data();
        assert_eq!(g, a);
    }

    #[test]
    fn neighbouring_elements_are_uncorrelated() {
        let mask = bernoulli_mask(100_000, 0.5, 5);
        let both = mask
            .windows(2)
            .filter(|w| w[0] != 0.0 && w[1] != 0.0)
            .count() as f64
            / (mask.len() - 1) as f64;
        assert!((both - 0.25).abs() < 0.01, "P(kept, kept) = {both}");
    }
}
