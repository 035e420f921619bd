//! What one prediction costs, counted rather than timed: the multiply-adds
//! of a forward pass from the configuration and the token count (as
//! Kaplan et al. 2020, §2.1, count a Transformer's forward FLOPs: two per
//! multiply-add of every weight matrix, plus attention's score and context
//! products), and the bytes of a model folder's weights as stored.

use std::path::Path;

use crate::config::BertConfig;

/// FLOPs of one forward pass over one example of `seq_len` tokens: per
/// layer the query, key, value and output projections (`8·L·H²`), the
/// feed-forward block (`4·L·H·I`) and the attention scores and weighted
/// values (`4·L²·H`); then the pooler (`2·H²`) and the head (`2·H·C`).
/// Embedding lookups, LayerNorms, softmax and activations are left out
/// (linear in `L·H`, a few percent at BERT's sizes). The same
/// configuration and length always give the same number.
pub fn forward_flops(config: &BertConfig, seq_len: f64) -> f64 {
    let h = config.hidden_size as f64;
    let i = config.intermediate_size as f64;
    let l = seq_len;
    let layer = 8.0 * l * h * h + 4.0 * l * h * i + 4.0 * l * l * h;
    config.num_hidden_layers as f64 * layer + 2.0 * h * h + 2.0 * h * config.num_labels as f64
}

/// Bytes of the weight files (`*.safetensors`) of a model folder as they
/// are on disk, so a quantised folder counts as smaller.
pub fn weight_bytes(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let is_weights = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.ends_with(".safetensors"));
        if is_weights && entry.file_type()?.is_file() {
            total += entry.metadata()?.len();
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minilm_at_128_tokens() {
        // all-MiniLM-L6-v2: 6 layers, H 384, I 1536, 3 labels.
        let mut c = BertConfig::preset("tiny").unwrap();
        c.hidden_size = 384;
        c.intermediate_size = 1536;
        c.num_hidden_layers = 6;
        c.num_labels = 3;
        let per_layer = 8.0 * 128.0 * 384f64.powi(2)
            + 4.0 * 128.0 * 384.0 * 1536.0
            + 4.0 * 128f64.powi(2) * 384.0;
        let want = 6.0 * per_layer + 2.0 * 384f64.powi(2) + 2.0 * 384.0 * 3.0;
        assert_eq!(forward_flops(&c, 128.0), want);
        // About 2.9 GFLOP: twice the 10.6 M weights of the encoder's
        // matrices per token, plus attention.
        assert!((forward_flops(&c, 128.0) / 1e9 - 2.9).abs() < 0.1);
    }
}
