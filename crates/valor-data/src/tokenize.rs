//! Tokenization with Hugging Face's `tokenizers` crate.
//!
//! [`TextTokenizer`] loads a `tokenizer.json` (or a WordPiece `vocab.txt`),
//! replaces the file's own truncation and padding with ours (truncate to
//! `max_len` tokens including `[CLS]`/`[SEP]`; no padding: batches are padded
//! dynamically by [`crate::batch`]), and can train a BERT-style WordPiece
//! tokenizer from scratch on training texts.
//!
//! **Training is deterministic**: the same texts give the same
//! `tokenizer.json`, byte for byte, in any process. `tokenizers`' own
//! `WordPieceTrainer` (0.22) does not promise that: it runs BPE merges over
//! word counts kept in an `AHashMap` whose hash seed is random per process
//! and per map, and (1) gives the `##c` continuing-subword characters their
//! ids in that map's iteration order, (2) breaks ties between equally
//! frequent pairs by those ids, so a tie at the vocabulary cut keeps a
//! different token, and (3) keeps several queue entries for one pair whose
//! pop order among equals follows hash-map drain order. None of it is
//! reachable through its API, so [`TextTokenizer::train_wordpiece`] counts
//! words and runs the same merge algorithm here, with every order fixed:
//! words in byte order, ties broken by the lower pair of ids, one merge of a
//! pair over every word that holds it. Normalisation, pre-tokenization, the
//! `WordPiece` model and the saved format are still `tokenizers`'.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::path::Path;

use rayon::prelude::*;
use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{
    AddedToken, NormalizedString, Normalizer, OffsetReferential, OffsetType, PreTokenizedString,
    PreTokenizer, Tokenizer, TruncationParams,
};

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

    /// Trains a lower-cased BERT WordPiece tokenizer on `texts`, with at most
    /// `vocab_size` tokens (special tokens included) and merges of pairs seen
    /// at least twice. Deterministic: see the module documentation.
    pub fn train_wordpiece<S: AsRef<str> + Sync>(
        texts: &[S],
        vocab_size: usize,
        max_len: usize,
    ) -> Result<Self> {
        let origin = "trained WordPiece".to_string();
        let words = count_words(texts).map_err(|e| tok_err(&origin, e))?;
        let vocab = wordpiece_vocab(&words, vocab_size, 2, &SPECIAL_TOKENS, PREFIX);
        let model = serde_json::json!({
            "unk_token": "[UNK]",
            "continuing_subword_prefix": PREFIX,
            "max_input_chars_per_word": 100,
            "vocab": vocab
                .iter()
                .enumerate()
                .map(|(id, t)| (t.clone(), serde_json::Value::from(id)))
                .collect::<serde_json::Map<_, _>>(),
        });
        let wp: WordPiece = serde_json::from_value(model).map_err(|e| tok_err(&origin, e))?;
        let mut t = Tokenizer::new(wp);
        t.with_normalizer(Some(bert_normalizer()));
        t.with_pre_tokenizer(Some(BertPreTokenizer));
        t.with_decoder(Some(WordPieceDecoder::default()));
        let specials: Vec<AddedToken> = SPECIAL_TOKENS
            .iter()
            .map(|s| AddedToken::from(*s, true))
            .collect();
        t.add_special_tokens(&specials);
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

/// The prefix of a continuing subword (`##ing`).
const PREFIX: &str = "##";

/// The normaliser of a trained tokenizer: BERT's, lower-casing.
fn bert_normalizer() -> BertNormalizer {
    BertNormalizer::new(true, true, None, true)
}

/// Words (normalised, pre-tokenized as the trained tokenizer will) and how
/// often each occurs, in byte order. The texts are split over all cores;
/// the sums do not depend on how.
fn count_words<S: AsRef<str> + Sync>(texts: &[S]) -> tokenizers::Result<BTreeMap<String, u64>> {
    let normalizer = bert_normalizer();
    let counts = texts
        .par_iter()
        .try_fold(HashMap::new, |mut acc: HashMap<String, u64>, text| {
            let mut normalized = NormalizedString::from(text.as_ref());
            normalizer.normalize(&mut normalized)?;
            let mut pre = PreTokenizedString::from(normalized);
            BertPreTokenizer.pre_tokenize(&mut pre)?;
            for (word, _, _) in pre.get_splits(OffsetReferential::Original, OffsetType::Byte) {
                *acc.entry(word.to_owned()).or_default() += 1;
            }
            tokenizers::Result::Ok(acc)
        })
        .try_reduce(HashMap::new, |mut a, b| {
            for (word, n) in b {
                *a.entry(word).or_default() += n;
            }
            Ok(a)
        })?;
    Ok(counts.into_iter().collect())
}

type Pair = (u32, u32);

/// The pairs of adjacent symbols of a word, with their multiplicity.
fn pairs_of(word: &[u32]) -> impl Iterator<Item = Pair> + '_ {
    word.windows(2).map(|w| (w[0], w[1]))
}

/// Replaces every non-overlapping `pair` of `word`, left to right, by `new`.
fn merge_word(word: &mut Vec<u32>, pair: Pair, new: u32) {
    let mut out = Vec::with_capacity(word.len());
    let mut i = 0;
    while i < word.len() {
        if i + 1 < word.len() && (word[i], word[i + 1]) == pair {
            out.push(new);
            i += 2;
        } else {
            out.push(word[i]);
            i += 1;
        }
    }
    *word = out;
}

/// The WordPiece vocabulary (tokens in id order) that `tokenizers`'
/// `WordPieceTrainer` learns, with every order fixed:
///
/// 1. the special tokens, in the given order;
/// 2. the alphabet: every character of every word, by code point;
/// 3. every continuing-subword character (`##c`), in order of first use when
///    the words are read in byte order;
/// 4. BPE merges: the most frequent adjacent pair (counted over word
///    frequencies) becomes a token (`a` + `##b` → `ab`, `##a` + `##b` →
///    `##ab`), ties going to the lower pair of ids, until the vocabulary has
///    `vocab_size` tokens or the best pair occurs fewer than `min_frequency`
///    times.
fn wordpiece_vocab(
    words: &BTreeMap<String, u64>,
    vocab_size: usize,
    min_frequency: u64,
    specials: &[&str],
    prefix: &str,
) -> Vec<String> {
    let mut tokens: Vec<String> = Vec::new();
    let mut ids: HashMap<String, u32> = HashMap::new();
    let mut intern = |t: String, tokens: &mut Vec<String>| -> u32 {
        *ids.entry(t).or_insert_with_key(|t| {
            tokens.push(t.clone());
            (tokens.len() - 1) as u32
        })
    };
    for s in specials {
        intern((*s).to_owned(), &mut tokens);
    }
    let alphabet: BTreeSet<char> = words.keys().flat_map(|w| w.chars()).collect();
    for c in alphabet {
        intern(c.to_string(), &mut tokens);
    }
    let counts: Vec<u64> = words.values().copied().collect();
    let mut symbols: Vec<Vec<u32>> = words
        .keys()
        .map(|w| {
            w.chars()
                .enumerate()
                .map(|(i, c)| {
                    let t = if i == 0 {
                        c.to_string()
                    } else {
                        format!("{prefix}{c}")
                    };
                    intern(t, &mut tokens)
                })
                .collect()
        })
        .collect();

    // Pair frequencies, the words that may hold each pair, and a max-queue
    // of (frequency, lower pair first) with stale entries skipped on pop.
    let mut freq: HashMap<Pair, u64> = HashMap::new();
    let mut holders: HashMap<Pair, BTreeSet<usize>> = HashMap::new();
    for (w, word) in symbols.iter().enumerate() {
        for p in pairs_of(word) {
            *freq.entry(p).or_default() += counts[w];
            holders.entry(p).or_default().insert(w);
        }
    }
    let mut queue: BinaryHeap<(u64, Reverse<Pair>)> =
        freq.iter().map(|(p, n)| (*n, Reverse(*p))).collect();
    while tokens.len() < vocab_size {
        let Some((n, Reverse(pair))) = queue.pop() else {
            break;
        };
        let current = freq.get(&pair).copied().unwrap_or(0);
        if n != current {
            // Stale; the pair's current frequency is queued already when it
            // grew, or is pushed here when it shrank.
            if current > 0 && current < n {
                queue.push((current, Reverse(pair)));
            }
            continue;
        }
        if n == 0 || n < min_frequency {
            break;
        }
        let left = &tokens[pair.0 as usize];
        let right = &tokens[pair.1 as usize];
        let merged = format!("{left}{}", right.strip_prefix(prefix).unwrap_or(right));
        let new = intern(merged, &mut tokens);
        let mut delta: BTreeMap<Pair, i64> = BTreeMap::new();
        for w in holders.remove(&pair).unwrap_or_default() {
            let word = &mut symbols[w];
            if !pairs_of(word).any(|p| p == pair) {
                continue;
            }
            let c = counts[w] as i64;
            for p in pairs_of(word) {
                *delta.entry(p).or_default() -= c;
            }
            merge_word(word, pair, new);
            for p in pairs_of(word) {
                *delta.entry(p).or_default() += c;
                holders.entry(p).or_default().insert(w);
            }
        }
        for (p, d) in delta {
            if d == 0 {
                continue;
            }
            let f = freq.entry(p).or_default();
            *f = (*f as i64 + d) as u64;
            if d > 0 {
                queue.push((*f, Reverse(p)));
            }
        }
    }
    tokens
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

    /// The merges of a corpus small enough to count by hand, including a tie
    /// (`p`+`##ug` and `hug`+`##s`, 5 each) that goes to the lower pair of ids.
    #[test]
    fn wordpiece_vocab_merges_most_frequent_pairs_lowest_ids_first() {
        let words: BTreeMap<String, u64> = [("hug", 10), ("pug", 5), ("pun", 12), ("bun", 4)]
            .into_iter()
            .chain([("hugs", 5)])
            .map(|(w, n)| (w.to_owned(), n))
            .collect();
        let vocab = |size, min| wordpiece_vocab(&words, size, min, &SPECIAL_TOKENS, PREFIX);
        let mut expected: Vec<&str> = SPECIAL_TOKENS.to_vec();
        expected.extend(["b", "g", "h", "n", "p", "s", "u"]);
        // First use, words in byte order: bun, hug, hugs, pug, pun.
        expected.extend(["##u", "##n", "##g", "##s"]);
        // ##u ##g: 20, ##u ##n: 16, h ##ug: 15, p ##un: 12, then the tie at 5:
        // (p, ##ug) = (9, 16) before (hug, ##s) = (18, 15); b ##un: 4.
        expected.extend(["##ug", "##un", "hug", "pun", "pug", "hugs", "bun"]);
        assert_eq!(vocab(100, 2), expected);
        assert_eq!(vocab(21, 2), expected[..21]);
        assert_eq!(vocab(100, 5), expected[..expected.len() - 1]);
    }

    /// A corpus on which no two pairs are equally frequent at the top of any
    /// of the first 134 merge steps: 300 pseudo-words over 14 letters, each
    /// repeated 1 to 2,000 times, drawn by a fixed LCG. Random corpora tie
    /// within 60 to 130 merges (a word whose pairs no other word holds ties
    /// them all); seed 371 was the best of the first 400, and the test
    /// checks the property rather than trusting it.
    fn tie_free_corpus() -> Vec<String> {
        let mut state: u64 = 371;
        let mut next = |n: u64| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) % n
        };
        let letters: Vec<char> = "abdeiklmnorstu".chars().collect();
        (0..300)
            .map(|_| {
                let len = 3 + next(6) as usize;
                let word: String = (0..len)
                    .map(|_| letters[next(letters.len() as u64) as usize])
                    .collect();
                let count = 1 + next(2_000) as usize;
                vec![word; count].join(" ")
            })
            .collect()
    }

    /// Replays the merges of `vocab` (after the specials, the alphabet and
    /// the `##c` tokens) on `words` by recounting every pair at every step,
    /// and asserts that each merge was the one most frequent pair, alone.
    fn assert_merges_had_no_ties(
        words: &BTreeMap<String, u64>,
        vocab: &[String],
        first_merge: usize,
    ) {
        let mut split: Vec<(Vec<String>, u64)> = words
            .iter()
            .map(|(w, &n)| {
                let symbols = w
                    .chars()
                    .enumerate()
                    .map(|(i, c)| {
                        if i == 0 {
                            c.to_string()
                        } else {
                            format!("{PREFIX}{c}")
                        }
                    })
                    .collect();
                (symbols, n)
            })
            .collect();
        for merged in &vocab[first_merge..] {
            let mut freq: HashMap<(String, String), u64> = HashMap::new();
            for (symbols, n) in &split {
                for w in symbols.windows(2) {
                    *freq.entry((w[0].clone(), w[1].clone())).or_default() += n;
                }
            }
            let best = freq.values().copied().max().unwrap();
            let top: Vec<_> = freq.iter().filter(|(_, n)| **n == best).collect();
            assert_eq!(
                top.len(),
                1,
                "a tie at the merge that made `{merged}`: {top:?}"
            );
            let (left, right) = top[0].0.clone();
            let joined = format!("{left}{}", right.strip_prefix(PREFIX).unwrap_or(&right));
            assert_eq!(&joined, merged, "merge order");
            for (symbols, _) in &mut split {
                let mut out = Vec::with_capacity(symbols.len());
                let mut i = 0;
                while i < symbols.len() {
                    if i + 1 < symbols.len() && symbols[i] == left && symbols[i + 1] == right {
                        out.push(joined.clone());
                        i += 2;
                    } else {
                        out.push(symbols[i].clone());
                        i += 1;
                    }
                }
                *symbols = out;
            }
        }
    }

    /// Without ties our trainer learns `tokenizers`' `WordPieceTrainer`
    /// vocabulary exactly: the same tokens, the specials, alphabet and
    /// merged tokens at the same ids. Only the `##c` block's inner order
    /// differs (theirs follows a randomly seeded hash map), so it is
    /// compared as a set.
    #[test]
    fn without_ties_the_vocabulary_is_tokenizers_wordpiece_trainers() {
        use tokenizers::models::TrainerWrapper;
        use tokenizers::models::wordpiece::WordPieceTrainer;

        let texts = tie_free_corpus();
        let words = count_words(&texts).unwrap();
        let vocab_size = 160;
        let ours = TextTokenizer::train_wordpiece(&texts, vocab_size, 64).unwrap();
        let ours: Vec<String> = (0..ours.vocab_size() as u32)
            .map(|id| ours.id_to_token(id).unwrap())
            .collect();

        let trainer = WordPieceTrainer::builder()
            .vocab_size(vocab_size)
            .min_frequency(2)
            .show_progress(false)
            .special_tokens(
                SPECIAL_TOKENS
                    .iter()
                    .map(|s| AddedToken::from(*s, true))
                    .collect(),
            )
            .build();
        let mut theirs = Tokenizer::new(WordPiece::default());
        theirs.with_normalizer(Some(bert_normalizer()));
        theirs.with_pre_tokenizer(Some(BertPreTokenizer));
        theirs
            .train(&mut TrainerWrapper::from(trainer), texts.iter())
            .unwrap();
        let mut theirs: Vec<(u32, String)> = theirs
            .get_vocab(false)
            .into_iter()
            .map(|(t, id)| (id, t))
            .collect();
        theirs.sort();
        assert!(
            theirs
                .iter()
                .enumerate()
                .all(|(i, (id, _))| *id as usize == i),
            "their ids are 0..n"
        );
        let theirs: Vec<String> = theirs.into_iter().map(|(_, t)| t).collect();

        assert_eq!(ours.len(), vocab_size, "the corpus fills the vocabulary");
        assert_eq!(theirs.len(), ours.len());
        let continuing = |v: &[String]| {
            let start = v.iter().position(|t| t.starts_with(PREFIX)).unwrap();
            let len = v[start..]
                .iter()
                .take_while(|t| t.chars().count() == 3)
                .count();
            start..start + len
        };
        let (c, theirs_c) = (continuing(&ours), continuing(&theirs));
        assert_eq!(c, theirs_c, "the ##c block");
        assert!(c.len() > 5 && ours.len() - c.end > 50, "{c:?}: many merges");
        assert_eq!(ours[..c.start], theirs[..c.start], "specials and alphabet");
        let set = |v: &[String]| v.iter().cloned().collect::<BTreeSet<_>>();
        assert_eq!(set(&ours[c.clone()]), set(&theirs[c.clone()]), "##c tokens");
        assert_eq!(
            ours[c.end..],
            theirs[c.end..],
            "merged tokens, in merge order"
        );
        assert_merges_had_no_ties(&words, &ours, c.end);
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
