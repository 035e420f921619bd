//! Tokenization with Hugging Face's `tokenizers` crate.
//!
//! [`TextTokenizer`] loads a `tokenizer.json` (or a WordPiece `vocab.txt`),
//! replaces the file's own truncation and padding with ours (truncate to
//! `max_len` tokens including `[CLS]`/`[SEP]`; no padding: batches are padded
//! dynamically by [`crate::batch`]), and can train a BERT-style WordPiece
//! tokenizer from scratch on training texts.

use std::path::Path;

use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::TrainerWrapper;
use tokenizers::models::wordpiece::{WordPiece, WordPieceTrainer};
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{AddedToken, Tokenizer, TruncationParams};

use crate::error::{Error, Result};

/// The special tokens of a BERT vocabulary, in the order a trained vocabulary
/// gets them (so `[PAD]` is id 0, as in Google's BERT vocabularies).
pub const SPECIAL_TOKENS: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];

/// One encoded text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// Token ids, with `[CLS]` and `[SEP]`, truncated to `max_len`.
    pub ids: Vec<u32>,
    /// Token type (segment) ids; all 0 for a single sentence.
    pub type_ids: Vec<u32>,
    /// For each token, the index of the word it came from (`None` for special
    /// tokens), so attributions can be merged per word.
    pub word_ids: Vec<Option<u32>>,
}

impl Encoded {
    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.ids.len()
    }
    /// Whether there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// A tokenizer with Valor's truncation and padding policy.
#[derive(Debug, Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    max_len: usize,
    pad_id: u32,
    origin: String,
}

fn tok_err(origin: &str, e: impl std::fmt::Display) -> Error {
    Error::Tokenizer {
        origin: origin.to_string(),
        message: e.to_string(),
    }
}

impl TextTokenizer {
    /// Loads `tokenizer.json`, or a WordPiece `vocab.txt` (lower-cased when
    /// `lowercase_vocab` is true; it is ignored for `tokenizer.json`, which
    /// carries its own normaliser).
    pub fn from_file(path: &Path, max_len: usize, lowercase_vocab: bool) -> Result<Self> {
        let origin = path.display().to_string();
        if !path.is_file() {
            return Err(tok_err(&origin, "file not found"));
        }
        let inner = if path.extension().is_some_and(|e| e == "txt") {
            let wp = WordPiece::from_file(&origin)
                .unk_token("[UNK]".into())
                .build()
                .map_err(|e| tok_err(&origin, e))?;
            let mut t = Tokenizer::new(wp);
            t.with_normalizer(Some(BertNormalizer::new(true, true, None, lowercase_vocab)));
            t.with_pre_tokenizer(Some(BertPreTokenizer));
            t.with_decoder(Some(WordPieceDecoder::default()));
            let id = |tok: &str| {
                t.token_to_id(tok)
                    .ok_or_else(|| tok_err(&origin, format!("vocabulary has no `{tok}` token")))
            };
            let processing = BertProcessing::new(
                ("[SEP]".into(), id("[SEP]")?),
                ("[CLS]".into(), id("[CLS]")?),
            );
            t.with_post_processor(Some(processing));
            t
        } else {
            Tokenizer::from_file(path).map_err(|e| tok_err(&origin, e))?
        };
        Self::wrap(inner, max_len, origin)
    }

    /// Loads the tokenizer of a model folder: `tokenizer.json` if present,
    /// else `vocab.txt` (lower-cased).
    pub fn from_model_dir(dir: &Path, max_len: usize) -> Result<Self> {
        let json = dir.join("tokenizer.json");
        if json.is_file() {
            return Self::from_file(&json, max_len, true);
        }
        let vocab = dir.join("vocab.txt");
        if vocab.is_file() {
            return Self::from_file(&vocab, max_len, true);
        }
        Err(tok_err(
            &dir.display().to_string(),
            "the folder has neither tokenizer.json nor vocab.txt",
        ))
    }

    /// Trains a lower-cased BERT WordPiece tokenizer on `texts`.
    pub fn train_wordpiece<S: AsRef<str> + Sync>(
        texts: &[S],
        vocab_size: usize,
        max_len: usize,
    ) -> Result<Self> {
        let origin = "trained WordPiece".to_string();
        let wp = WordPiece::builder()
            .unk_token("[UNK]".into())
            .build()
            .map_err(|e| tok_err(&origin, e))?;
        let mut t = Tokenizer::new(wp);
        t.with_normalizer(Some(BertNormalizer::new(true, true, None, true)));
        t.with_pre_tokenizer(Some(BertPreTokenizer));
        t.with_decoder(Some(WordPieceDecoder::default()));
        let mut trainer: TrainerWrapper = WordPieceTrainer::builder()
            .vocab_size(vocab_size)
            .min_frequency(2)
            .show_progress(false)
            .special_tokens(
                SPECIAL_TOKENS
                    .iter()
                    .map(|s| AddedToken::from(*s, true))
                    .collect(),
            )
            .build()
            .into();
        t.train(&mut trainer, texts.iter().map(|s| s.as_ref()))
            .map_err(|e| tok_err(&origin, e))?;
        let id = |tok: &str| {
            t.token_to_id(tok)
                .ok_or_else(|| tok_err(&origin, format!("no `{tok}` after training")))
        };
        let processing = BertProcessing::new(
            ("[SEP]".into(), id("[SEP]")?),
            ("[CLS]".into(), id("[CLS]")?),
        );
        t.with_post_processor(Some(processing));
        Self::wrap(t, max_len, origin)
    }

    fn wrap(mut inner: Tokenizer, max_len: usize, origin: String) -> Result<Self> {
        if max_len < 2 {
            return Err(tok_err(
                &origin,
                format!("max length {max_len} leaves no room for [CLS] and [SEP]"),
            ));
        }
        inner
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                ..Default::default()
            }))
            .map_err(|e| tok_err(&origin, e))?;
        inner.with_padding(None);
        let pad_id = inner.token_to_id("[PAD]").unwrap_or(0);
        Ok(Self {
            inner,
            max_len,
            pad_id,
            origin,
        })
    }

    /// Saves as `tokenizer.json` (atomically). Our truncation setting is saved
    /// with it.
    pub fn save(&self, path: &Path) -> Result<()> {
        let json = self
            .inner
            .to_string(true)
            .map_err(|e| tok_err(&self.origin, e))?;
        crate::table::write_atomic(path, |f| std::io::Write::write_all(f, json.as_bytes()))
    }

    /// Maximum sequence length in tokens.
    pub fn max_len(&self) -> usize {
        self.max_len
    }
    /// Id of `[PAD]` (0 if the vocabulary has none).
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }
    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
    /// The token string of an id.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }
    /// The id of a token string.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Encodes one text.
    pub fn encode(&self, text: &str) -> Result<Encoded> {
        let e = self
            .inner
            .encode(text, true)
            .map_err(|e| tok_err(&self.origin, e))?;
        Ok(to_encoded(&e))
    }

    /// Encodes many texts on all cores.
    pub fn encode_batch<S: AsRef<str> + Sync>(&self, texts: &[S]) -> Result<Vec<Encoded>> {
        let inputs: Vec<&str> = texts.iter().map(|s| s.as_ref()).collect();
        let out = self
            .inner
            .encode_batch(inputs, true)
            .map_err(|e| tok_err(&self.origin, e))?;
        Ok(out.iter().map(to_encoded).collect())
    }
}

fn to_encoded(e: &tokenizers::Encoding) -> Encoded {
    Encoded {
        ids: e.get_ids().to_vec(),
        type_ids: e.get_type_ids().to_vec(),
        word_ids: e.get_word_ids().to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trained_wordpiece_roundtrips_and_truncates() {
        let texts: Vec<String> = (0..200)
            .map(|i| {
                format!("the customer number {i} wants a balanced fund for retirement savings")
            })
            .collect();
        let t = TextTokenizer::train_wordpiece(&texts, 200, 8).unwrap();
        assert_eq!(t.pad_id(), 0);
        let e = t.encode("The customer wants a growth fund").unwrap();
        assert_eq!(e.len(), 8);
        assert_eq!(e.ids[0], t.token_to_id("[CLS]").unwrap());
        assert_eq!(*e.ids.last().unwrap(), t.token_to_id("[SEP]").unwrap());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tokenizer.json");
        t.save(&p).unwrap();
        let back = TextTokenizer::from_file(&p, 8, true).unwrap();
        assert_eq!(back.encode("The customer wants a growth fund").unwrap(), e);
    }

    #[test]
    fn missing_file_is_a_clear_error() {
        let e = TextTokenizer::from_file(Path::new("/nope/tokenizer.json"), 16, true).unwrap_err();
        assert!(
            e.to_string()
                .contains("/nope/tokenizer.json: file not found"),
            "{e}"
        );
    }
}
