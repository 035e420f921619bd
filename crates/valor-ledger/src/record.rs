//! What one line of the log says: the entry kinds and the chain fields
//! around them.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::time::Timestamp;

/// One logged entry. The writer adds `seq`, `prev` and `hash` around it;
/// `kind` is the tag on disk (`"decision"`, `"feedback"`, `"open"`,
/// `"segment"`).
// A `Decision` is most entries; boxing it would cost every append an
// allocation to shrink the rare `open` and `segment` entries.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Entry {
    /// A request to a model route: a decision, or a refusal.
    Decision(Decision),
    /// The true outcome of an earlier decision (`POST /feedback`).
    Feedback(Feedback),
    /// Written by the writer each time it opens the log.
    Open(Open),
    /// Written by the writer as the first record of every file.
    Segment(Segment),
}

impl From<Decision> for Entry {
    fn from(d: Decision) -> Self {
        Entry::Decision(d)
    }
}

impl From<Feedback> for Entry {
    fn from(f: Feedback) -> Self {
        Entry::Feedback(f)
    }
}

/// One request to a model route (`/predict`, `/decide`), or one input of
/// it: a request with several inputs logs one `Decision` per input, all
/// with its `request_id`. A refused request (4xx/5xx) logs one, with
/// `status`, `error` and no decision fields.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// When the request arrived.
    pub time: Timestamp,
    pub request_id: String,
    /// Set when a decision was made (what `/feedback` refers to).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_id: Option<String>,
    /// The API key's id (never the key or its secret); `None` without auth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    pub route: String,
    /// HTTP status of the response.
    pub status: u16,
    /// SHA-256 (hex) of the model's weights file.
    pub model_sha256: String,
    /// SHA-256 (hex) of the input text's UTF-8 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_sha256: Option<String>,
    /// The raw input text (only when the server runs with `--log-inputs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Simple statistics of the input (for drift monitoring).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<InputStats>,
    /// Group attributes sent with the request (`{"gender": "female"}`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub groups: BTreeMap<String, String>,
    /// Class probabilities in the model's label order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probabilities: Option<Probabilities>,
    /// The decided label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The rule that decided: `thresholds`, `class_offsets` or `argmax`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Time from arrival to response, milliseconds.
    pub latency_ms: f64,
    /// Why the request was refused (the error body's message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Text length and tokenizer coverage of one input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputStats {
    /// Characters (Unicode scalar values) of the text.
    pub chars: u64,
    /// Tokens after truncation, `[CLS]` and `[SEP]` included.
    pub tokens: u64,
    /// Of those, `[UNK]` tokens.
    pub unknown_tokens: u64,
}

impl InputStats {
    /// `unknown_tokens / tokens` (0 for no tokens).
    pub fn unknown_rate(&self) -> f64 {
        if self.tokens == 0 {
            0.0
        } else {
            self.unknown_tokens as f64 / self.tokens as f64
        }
    }
}

/// Class probabilities as an ordered `{label: probability}` object (the
/// model's label order, kept on disk and when read back).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Probabilities(pub Vec<(String, f64)>);

impl Probabilities {
    /// Label names and probabilities, zipped.
    pub fn new(labels: &[String], probs: &[f64]) -> Self {
        Self(labels.iter().cloned().zip(probs.iter().copied()).collect())
    }
    /// The labels, in order.
    pub fn labels(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(l, _)| l.as_str())
    }
    /// The probabilities, in order.
    pub fn values(&self) -> Vec<f64> {
        self.0.iter().map(|(_, p)| *p).collect()
    }
}

impl Serialize for Probabilities {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for Probabilities {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Probabilities;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of label: probability")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, f64>()? {
                    out.push((k, v));
                }
                Ok(Probabilities(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// The true outcome of an earlier decision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Feedback {
    pub time: Timestamp,
    pub request_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// HTTP status of the `/feedback` response.
    pub status: u16,
    /// The decision it is about.
    pub decision_id: String,
    /// The true label.
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The writer opened the log (a server start). `recovered` says what a
/// crash had left: the bytes of a torn final record it cut off.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Open {
    pub time: Timestamp,
    /// `valor-ledger <version>`.
    pub writer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered: Option<Recovered>,
}

/// A torn tail the writer removed when it opened the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recovered {
    /// File name (in the log folder).
    pub file: String,
    /// Byte offset where the torn record began (the new end of the file).
    pub offset: u64,
    /// How many bytes were cut.
    pub bytes: u64,
    /// SHA-256 of the bytes that were cut.
    pub sha256: String,
}

/// First record of every file: links the file to the one before it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    pub time: Timestamp,
    /// This file's name.
    pub file: String,
    /// The previous file's name (`None` for the first file).
    pub previous_file: Option<String>,
}

/// A record as read back: its place in the chain and in the files, and the
/// entry.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredRecord {
    /// 0-based index in the chain.
    pub seq: u64,
    /// Hash of the previous record (hex; 64 zeros for the first).
    pub prev: String,
    /// This record's hash (hex).
    pub hash: String,
    /// The file it is in.
    pub file: PathBuf,
    /// 1-based line in that file.
    pub line: u64,
    pub entry: Entry,
}

/// The `prev` of the first record of a chain: 64 zeros.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// `,"hash":"` + 64 hex digits + `"}`.
pub(crate) const HASH_SUFFIX_LEN: usize = 9 + 64 + 2;

/// Serialises `entry` as the tail of a record (`"kind":…}`), checking
/// that every number is finite (JSON has no NaN).
pub(crate) fn entry_tail(entry: &Entry) -> Result<String> {
    check_finite(entry)?;
    let s = serde_json::to_string(entry).map_err(|e| Error::InvalidEntry { why: e.to_string() })?;
    debug_assert!(s.starts_with('{'));
    Ok(s[1..].to_owned())
}

fn check_finite(entry: &Entry) -> Result<()> {
    let bad = |what: &str, v: f64| {
        if v.is_finite() {
            Ok(())
        } else {
            Err(Error::InvalidEntry {
                why: format!("{what} is {v} (JSON holds finite numbers only)"),
            })
        }
    };
    if let Entry::Decision(d) = entry {
        bad("latency_ms", d.latency_ms)?;
        if let Some(p) = &d.probabilities {
            for (l, v) in &p.0 {
                bad(&format!("probability of `{l}`"), *v)?;
            }
        }
    }
    Ok(())
}

/// The canonical body of record `seq`: `{"seq":N,"prev":"…",` followed by
/// the entry's tail. Its SHA-256 is the record's hash.
pub(crate) fn body(seq: u64, prev: &str, tail: &str) -> String {
    format!("{{\"seq\":{seq},\"prev\":\"{prev}\",{tail}")
}

/// The line on disk: the body with `,"hash":"…"` inserted before its final
/// `}`, then a newline.
pub(crate) fn line(body: &str, hash: &str) -> String {
    let mut s = String::with_capacity(body.len() + HASH_SUFFIX_LEN + 1);
    s.push_str(&body[..body.len() - 1]);
    s.push_str(",\"hash\":\"");
    s.push_str(hash);
    s.push_str("\"}\n");
    s
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(bytes);
    let mut s = String::with_capacity(64);
    for b in d {
        s.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
        s.push(char::from_digit(u32::from(b & 15), 16).unwrap_or('0'));
    }
    s
}

/// SHA-256 (lowercase hex) of `text`'s UTF-8 bytes: what [`Decision`]'s
/// `input_sha256` holds.
pub fn text_sha256(text: &str) -> String {
    sha256_hex(text.as_bytes())
}

#[derive(Deserialize)]
pub(crate) struct Head {
    pub seq: u64,
    pub prev: String,
}

/// A line (without its newline) split into its body, stated hash and
/// parsed parts; `Err` says why it is not a well-formed record.
pub(crate) fn parse_line(line: &[u8]) -> std::result::Result<(Head, String, Entry), String> {
    let text = std::str::from_utf8(line).map_err(|_| "not UTF-8".to_owned())?;
    if text.len() < HASH_SUFFIX_LEN + 2 {
        return Err("too short to be a record".into());
    }
    let cut = text.len() - HASH_SUFFIX_LEN;
    let (rest, suffix) = (&text[..cut], &text[cut..]);
    let stated = suffix
        .strip_prefix(",\"hash\":\"")
        .and_then(|s| s.strip_suffix("\"}"))
        .filter(|h| h.len() == 64 && h.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')))
        .ok_or_else(|| "does not end with its `\"hash\"`".to_owned())?;
    let mut body = String::with_capacity(cut + 1);
    body.push_str(rest);
    body.push('}');
    let actual = sha256_hex(body.as_bytes());
    if actual != stated {
        return Err(format!(
            "its content does not match its hash (stated {}…, content hashes to {}…)",
            &stated[..12],
            &actual[..12]
        ));
    }
    let head: Head = serde_json::from_str(&body).map_err(|e| format!("bad chain fields: {e}"))?;
    if !body.starts_with(&format!(
        "{{\"seq\":{},\"prev\":\"{}\",",
        head.seq, head.prev
    )) {
        return Err("`seq` and `prev` are not the first fields".into());
    }
    let entry: Entry = serde_json::from_str(&body).map_err(|e| format!("bad entry: {e}"))?;
    Ok((head, stated.to_owned(), entry))
}
