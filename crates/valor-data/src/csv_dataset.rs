//! CSV/TSV straight to a [`Dataset`]: the path [`crate::load_dataset`] takes
//! for a plain file, without building a polars table first.
//!
//! The polars path ([`crate::table`] then [`crate::dataset::dataset_from_table`])
//! copies every value twice (into Arrow buffers, then into the dataset's
//! columns) and allocates a `String` per label and group value. Here the
//! records are split into chunks that rayon parses in parallel, one pass
//! each: texts and ids are copied once into their chunk's [`Strs`], labels and
//! groups are interned as they are read (borrowed from the file's bytes).
//!
//! It reads only the plain dialect that it reads exactly as polars does:
//! valid UTF-8 without a byte-order mark; every field either unquoted and
//! free of `"` and `\r`, or wholly quoted (`""` inside is one quote, newlines
//! allowed); records end in `\n`; no blank lines; every record as wide as the
//! header; header names non-empty and distinct; each spec column used once;
//! and every value the spec needs present and valid (non-blank, a known
//! label, a finite weight ≥ 0). For anything else, and for every error, it
//! returns `None` and the caller reads the file through polars, whose path
//! names the file, row and column of the first problem. So this path never
//! accepts a file the polars path rejects, and where both accept a file they
//! build the same dataset (a property test checks both over random files).
//!
//! A file is not read into memory whole first: [`read_file`] finds the
//! chunks' starts with small reads, and each rayon task reads its chunk
//! into a buffer it reuses and parses it there, so the bytes are copied
//! once, in parallel, into memory that stays in the cache (reading a
//! 126 MB file into one fresh buffer cost more than parsing it).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fs::File;

use rayon::prelude::*;

use crate::dataset::{Dataset, GroupColumn, GroupId, LabelId, Warning, dataset_warnings};
use crate::spec::{DatasetSpec, TextSource};
use crate::strs::Strs;
use crate::table::Format;

/// Bytes of records per parallel chunk (at most 8 chunks per thread).
const CHUNK_BYTES: usize = 1 << 20;

/// Bytes of records per chunk read from a file (no bound on their count:
/// small enough to stay in the cache between the read and the parse).
const FILE_CHUNK_BYTES: usize = 1 << 20;

/// The first bytes checked for the signs of a binary file.
const HEAD_BYTES: usize = 8192;

/// Distinct values an [`Interner`] compares one by one before it hashes.
const LINEAR: usize = 16;

/// The dataset that `spec` describes, read from the CSV/TSV `bytes` of its
/// file, or `None` where the polars path must read it (see the module
/// documentation). `sha256` is left empty.
pub(crate) fn read(
    spec: &DatasetSpec,
    format: Format,
    bytes: &[u8],
) -> Option<(Dataset, Vec<Warning>)> {
    read_chunked(spec, format, bytes, CHUNK_BYTES)
}

/// Why [`read_streamed`] gave up on reading chunk by chunk: the file must
/// be read whole and through [`read`] (an I/O error, a file that changed
/// while read, a chunk guessed to start inside quotes, an unusual header).
#[derive(Debug)]
struct ReadWhole;

/// [`read`] for the file at `spec.path`, which the caller has found to be
/// CSV/TSV: the same answer, and `Err` exactly where `std::fs::read` of the
/// file fails, but read chunk by chunk (see the module documentation).
pub(crate) fn read_file(
    spec: &DatasetSpec,
    format: Format,
) -> std::io::Result<Option<(Dataset, Vec<Warning>)>> {
    match read_streamed(spec, format, FILE_CHUNK_BYTES) {
        Ok(found) => Ok(found),
        Err(ReadWhole) => Ok(read(spec, format, &std::fs::read(&spec.path)?)),
    }
}

fn read_streamed(
    spec: &DatasetSpec,
    format: Format,
    chunk_bytes: usize,
) -> Result<Option<(Dataset, Vec<Warning>)>, ReadWhole> {
    if !matches!(format, Format::Csv | Format::Tsv) || spec.preset.is_some() {
        return Ok(None);
    }
    let Ok(file) = File::open(&spec.path) else {
        return Err(ReadWhole);
    };
    let len = match file.metadata() {
        Ok(m) if m.is_file() => m.len(),
        _ => return Err(ReadWhole),
    };
    let mut head = Vec::new();
    let head_len = len.min(HEAD_BYTES as u64);
    if read_at(&file, &mut head, 0, head_len).is_err() || head.len() as u64 != head_len {
        return Err(ReadWhole);
    }
    if looks_binary(&head) {
        return Ok(None);
    }
    // A header longer than the head, or none: the whole-file path decides.
    let Some(header_end) = head.iter().position(|&b| b == b'\n').map(|k| k + 1) else {
        return Err(ReadWhole);
    };
    let sep = separator(format);
    let Some(plan) = std::str::from_utf8(&head[..header_end - 1])
        .ok()
        .and_then(|h| Plan::new(spec, &header_names(h, sep)?, sep))
    else {
        return Ok(None);
    };
    let Ok(bounds) = file_chunk_bounds(&file, header_end as u64, len, chunk_bytes) else {
        return Err(ReadWhole);
    };
    let parsed: Vec<Result<Part, Stop>> = bounds
        .par_windows(2)
        .map_init(Vec::new, |buf, w| {
            match read_at(&file, buf, w[0], w[1] - w[0]) {
                // Shorter than found before: the file changed while read.
                Ok(()) if buf.len() as u64 == w[1] - w[0] => parse_chunk(buf, &plan),
                _ => Err(Stop::Io),
            }
        })
        .collect();
    // A file that grew while read: read it again, whole.
    if read_at(&file, &mut head, len, 1).map_or(true, |()| !head.is_empty()) {
        return Err(ReadWhole);
    }
    match join(parsed) {
        Ok(parts) => Ok(build(spec, &plan, parts)),
        Err(Stop::Decline) => Ok(None),
        Err(Stop::Unterminated | Stop::Io) => Err(ReadWhole),
    }
}

/// Fills `buf` with the `n` bytes of `file` at `offset`, or with fewer
/// where the file ends first (the caller checks `buf.len()`).
fn read_at(file: &File, buf: &mut Vec<u8>, offset: u64, n: u64) -> std::io::Result<()> {
    let n = usize::try_from(n).map_err(std::io::Error::other)?;
    if buf.capacity() < n {
        // Not `resize`: growing in place would copy the old bytes first.
        *buf = Vec::with_capacity(n + n / 8);
    }
    buf.resize(n, 0);
    let mut filled = 0;
    while filled < n {
        match read_some_at(file, &mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(k) => filled += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    Ok(())
}

#[cfg(unix)]
fn read_some_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(file, buf, offset)
}

#[cfg(windows)]
fn read_some_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    std::os::windows::fs::FileExt::seek_read(file, buf, offset)
}

/// Where the chunks of the body (`from..len` of `file`) start, plus `len`:
/// [`chunk_bounds`]' rule, each start found by reading from its guess.
fn file_chunk_bounds(
    file: &File,
    from: u64,
    len: u64,
    chunk_bytes: usize,
) -> std::io::Result<Vec<u64>> {
    let body = len - from;
    let chunks = (body / chunk_bytes.max(1) as u64).max(1);
    let mut bounds = Vec::with_capacity(usize::try_from(chunks).map_or(0, |c| c + 1));
    bounds.push(from);
    let mut window = Vec::new();
    for i in 1..chunks {
        let mut at = (from + body * i / chunks).max(*bounds.last().expect("non-empty"));
        let start = loop {
            read_at(file, &mut window, at, 512)?;
            if let Some(k) = window.iter().position(|&b| b == b'\n') {
                break at + k as u64 + 1;
            }
            if window.is_empty() {
                break len;
            }
            at += window.len() as u64;
        };
        bounds.push(start);
    }
    bounds.push(len);
    Ok(bounds)
}

/// The polars path's checks of the first bytes (binary, other formats).
fn looks_binary(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PAR1")
        || bytes.starts_with(b"PK\x03\x04")
        || bytes.starts_with(&[0x1f, 0x8b])
        || bytes.starts_with(b"\xef\xbb\xbf")
        || bytes.iter().take(HEAD_BYTES).any(|&b| b == 0)
}

fn separator(format: Format) -> u8 {
    if format == Format::Tsv { b'\t' } else { b',' }
}

/// The parsed chunks, in order, or why they cannot be used.
fn join(parsed: Vec<Result<Part, Stop>>) -> Result<Vec<Part>, Stop> {
    let last = parsed.len() - 1;
    let mut parts = Vec::with_capacity(parsed.len());
    for (i, p) in parsed.into_iter().enumerate() {
        match p {
            Ok(p) => parts.push(p),
            // The last chunk ends at the end of the file: an unterminated
            // quote there is the file's, not a guess's.
            Err(Stop::Unterminated) if i == last => return Err(Stop::Decline),
            Err(e) => return Err(e),
        }
    }
    Ok(parts)
}

fn read_chunked(
    spec: &DatasetSpec,
    format: Format,
    bytes: &[u8],
    chunk_bytes: usize,
) -> Option<(Dataset, Vec<Warning>)> {
    if !matches!(format, Format::Csv | Format::Tsv) || spec.preset.is_some() {
        return None;
    }
    if looks_binary(bytes) {
        return None;
    }
    let sep = separator(format);
    let header_end = bytes.iter().position(|&b| b == b'\n')? + 1;
    let header = std::str::from_utf8(&bytes[..header_end - 1]).ok()?;
    let plan = Plan::new(spec, &header_names(header, sep)?, sep)?;
    let body = &bytes[header_end..];

    let bounds = chunk_bounds(body, chunk_bytes);
    let parsed: Vec<Result<Part, Stop>> = bounds
        .par_windows(2)
        .map(|w| parse_chunk(&body[w[0]..w[1]], &plan))
        .collect();
    match join(parsed) {
        Ok(parts) => build(spec, &plan, parts),
        // A chunk that ends inside quotes: its end was guessed inside a
        // quoted field, not at a record's end. Read the records in one.
        Err(Stop::Unterminated) => build(spec, &plan, vec![parse_chunk(body, &plan).ok()?]),
        Err(_) => None,
    }
}

/// The header's names; `None` unless they are non-empty and distinct.
fn header_names(header: &str, sep: u8) -> Option<Vec<&str>> {
    let mut names = Vec::new();
    let mut pos = 0;
    loop {
        let (name, after) = next_field(header, pos, sep, header.contains('\r')).ok()?;
        match name {
            Cow::Borrowed(n) if !n.is_empty() => names.push(n),
            _ => return None,
        }
        if after == header.len() {
            break;
        }
        pos = after + 1; // a separator: next_field stops at nothing else here
    }
    let distinct: HashSet<&str> = names.iter().copied().collect();
    (distinct.len() == names.len()).then_some(names)
}

/// Where the chunks of `body` start, plus its length: each start but the
/// first follows the first `\n` at or after an even share of the bytes.
/// That `\n` may lie inside a quoted field; the chunk before it then ends
/// inside quotes, and [`read_chunked`] reads the records as one chunk.
fn chunk_bounds(body: &[u8], chunk_bytes: usize) -> Vec<usize> {
    let max_chunks = rayon::current_num_threads() * 8;
    let chunks = (body.len() / chunk_bytes.max(1)).clamp(1, max_chunks);
    let mut bounds = vec![0];
    for i in 1..chunks {
        let at = (body.len() * i / chunks).max(*bounds.last().expect("non-empty"));
        let start = body[at..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(body.len(), |k| at + k + 1);
        bounds.push(start);
    }
    bounds.push(body.len());
    bounds
}

/// What a column is read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Skip,
    Text,
    Id,
    Twin,
    Label,
    Reference,
    Group(usize),
    Weight,
}

/// Each column's role, by position in the header.
#[derive(Debug)]
struct Plan {
    roles: Vec<Role>,
    sep: u8,
    groups: usize,
}

impl Plan {
    /// `None` where a spec column is missing (the polars path names it),
    /// used twice, or the text is built from features.
    fn new(spec: &DatasetSpec, names: &[&str], sep: u8) -> Option<Self> {
        let TextSource::Column(text) = &spec.text else {
            return None;
        };
        let mut roles = vec![Role::Skip; names.len()];
        let mut wanted = vec![(text.as_str(), Role::Text), (&spec.label, Role::Label)];
        wanted.extend(
            spec.groups
                .iter()
                .enumerate()
                .map(|(i, g)| (g.as_str(), Role::Group(i))),
        );
        for (column, role) in [
            (&spec.id, Role::Id),
            (&spec.weight, Role::Weight),
            (&spec.twin, Role::Twin),
            (&spec.reference_label, Role::Reference),
        ] {
            if let Some(c) = column {
                wanted.push((c, role));
            }
        }
        for (column, role) in wanted {
            let i = names.iter().position(|n| *n == column)?;
            if roles[i] != Role::Skip {
                return None;
            }
            roles[i] = role;
        }
        Some(Self {
            roles,
            sep,
            groups: spec.groups.len(),
        })
    }
}

/// Why a chunk was not read.
#[derive(Debug, PartialEq, Eq)]
enum Stop {
    /// It ends inside a quoted field.
    Unterminated,
    /// Anything else outside the plain dialect, or an invalid value.
    Decline,
    /// The chunk could not be read from the file.
    Io,
}

/// The columns a chunk of records holds, as read.
#[derive(Debug, Default)]
struct Part {
    rows: usize,
    texts: Strs,
    ids: Strs,
    twins: Strs,
    weights: Vec<f64>,
    labels: Interner,
    reference: Interner,
    groups: Vec<Interner>,
}

/// A column's distinct values in order of first sight, and each row's
/// position among them.
#[derive(Debug, Default)]
struct Interner {
    values: Vec<String>,
    /// Each value's [`short_key`], beside it.
    keys: Vec<Option<u64>>,
    /// Filled once there are more than [`LINEAR`] values.
    index: HashMap<String, u32>,
    codes: Vec<u32>,
}

impl Interner {
    fn with_capacity(rows: usize) -> Self {
        Self {
            codes: Vec::with_capacity(rows),
            ..Self::default()
        }
    }

    fn push(&mut self, v: &str) {
        let key = short_key(v);
        let found = if self.values.len() <= LINEAR {
            match key {
                Some(_) => self.keys.iter().position(|&k| k == key),
                None => self.values.iter().position(|x| x == v),
            }
            .map(|i| i as u32)
        } else {
            self.index.get(v).copied()
        };
        let code = match found {
            Some(c) => c,
            None => {
                let c = self.values.len() as u32;
                if self.values.len() >= LINEAR {
                    if self.index.is_empty() {
                        for (i, x) in self.values.iter().enumerate() {
                            self.index.insert(x.clone(), i as u32);
                        }
                    }
                    self.index.insert(v.to_string(), c);
                }
                self.values.push(v.to_string());
                self.keys.push(key);
                c
            }
        };
        self.codes.push(code);
    }
}

/// A value of at most 7 bytes as one number (its bytes and its length), so
/// that the few distinct labels and groups are told apart by comparing
/// integers, not by calling `memcmp` once per row and value; `None` for a
/// longer value. Two short values have the same key exactly when they are
/// equal.
fn short_key(v: &str) -> Option<u64> {
    let b = v.as_bytes();
    // Shifted in register by register: bytes copied into an array and read
    // back as a word stalled the store buffer on every row.
    (b.len() <= 7).then(|| {
        b.iter()
            .enumerate()
            .fold((b.len() as u64) << 56, |k, (i, &c)| {
                k | u64::from(c) << (8 * i)
            })
    })
}

/// Reads the whole records of `bytes` (a chunk that starts at a record).
fn parse_chunk(bytes: &[u8], plan: &Plan) -> Result<Part, Stop> {
    let text = std::str::from_utf8(bytes).map_err(|_| Stop::Decline)?;
    let cr = memchr::memchr(b'\r', bytes).is_some();
    // At most one record per line: room for all, so that no column grows.
    let rows = memchr::memchr_iter(b'\n', bytes).count() + 1;
    let has = |role: Role| plan.roles.contains(&role);
    // A column's bytes are at most the chunk's: room for all, reserved but
    // not touched until written.
    let column = |role: Role| match has(role) {
        true => Strs::with_capacity(rows, bytes.len()),
        false => Strs::new(),
    };
    let interner = |role: Role| {
        if has(role) {
            Interner::with_capacity(rows)
        } else {
            Interner::default()
        }
    };
    let mut part = Part {
        rows: 0,
        texts: column(Role::Text),
        ids: column(Role::Id),
        twins: column(Role::Twin),
        weights: Vec::with_capacity(if has(Role::Weight) { rows } else { 0 }),
        labels: interner(Role::Label),
        reference: interner(Role::Reference),
        groups: (0..plan.groups).map(|g| interner(Role::Group(g))).collect(),
    };
    let width = plan.roles.len();
    let mut pos = 0;
    while pos < bytes.len() {
        let mut field = 0;
        loop {
            let (value, after) = next_field(text, pos, plan.sep, cr)?;
            take(
                *plan.roles.get(field).ok_or(Stop::Decline)?,
                value,
                &mut part,
            )?;
            field += 1;
            match bytes.get(after) {
                None => {
                    pos = after;
                    break;
                }
                Some(b'\n') => {
                    pos = after + 1;
                    break;
                }
                Some(_) => pos = after + 1, // the separator
            }
        }
        if field != width {
            return Err(Stop::Decline);
        }
        part.rows += 1;
    }
    Ok(part)
}

/// The field that starts at `pos`, unquoted, and the position just after
/// it: the end of `text`, a separator or `\n`. `cr`: whether `text` holds a
/// `\r` anywhere (without one, fields are found with `memchr3`, which looks
/// for three bytes at a time, not four).
fn next_field(text: &str, pos: usize, sep: u8, cr: bool) -> Result<(Cow<'_, str>, usize), Stop> {
    let b = text.as_bytes();
    if b.get(pos) == Some(&b'"') {
        let mut from = pos + 1;
        let mut escaped = false;
        loop {
            let q = memchr::memchr(b'"', &b[from..])
                .map(|k| from + k)
                .ok_or(Stop::Unterminated)?;
            if b.get(q + 1) == Some(&b'"') {
                escaped = true;
                from = q + 2;
                continue;
            }
            if !matches!(b.get(q + 1), None | Some(b'\n')) && b[q + 1] != sep {
                return Err(Stop::Decline);
            }
            let inner = &text[pos + 1..q];
            let value = if escaped {
                Cow::Owned(inner.replace("\"\"", "\""))
            } else {
                Cow::Borrowed(inner)
            };
            return Ok((value, q + 1));
        }
    }
    let end = unquoted_end(b, pos, sep, cr);
    if matches!(b.get(end), Some(b'"' | b'\r')) {
        return Err(Stop::Decline);
    }
    Ok((Cow::Borrowed(&text[pos..end]), end))
}

/// Where the unquoted field at `pos` ends: the first separator, `\n`, `"`
/// or `\r` at or after `pos`, or the end of `b`. Most fields are a few
/// bytes long, so their first bytes are looked at eight at a time in a
/// word before a vector search (a `memchr3` call per field cost more than
/// the bytes).
fn unquoted_end(b: &[u8], pos: usize, sep: u8, cr: bool) -> usize {
    const HEAD: usize = 16;
    let head_end = b.len().min(pos + HEAD);
    if let Some(end) = find_any(&b[..head_end], pos, [sep, b'\n', b'"', b'\r']) {
        return end;
    }
    let from = head_end;
    if cr {
        find_any(b, from, [sep, b'\n', b'"', b'\r'])
    } else {
        memchr::memchr3(sep, b'\n', b'"', &b[from..]).map(|k| from + k)
    }
    .unwrap_or(b.len())
}

/// The position of the first byte of `b[from..]` equal to one of `targets`,
/// eight bytes at a time (a zero byte of `word ^ target` marks a match).
fn find_any<const N: usize>(b: &[u8], from: usize, targets: [u8; N]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let mut i = from;
    while i + 8 <= b.len() {
        let word = u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        let mut hits = 0;
        for t in targets {
            let x = word ^ (LO * u64::from(t));
            hits |= x.wrapping_sub(LO) & !x & HI;
        }
        if hits != 0 {
            return Some(i + (hits.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    b[i..]
        .iter()
        .position(|c| targets.contains(c))
        .map(|k| i + k)
}

/// Whether `s` is empty or whitespace only (as `str::trim` sees it), told
/// at the first byte where that is printable ASCII (almost every value).
fn blank(s: &str) -> bool {
    match s.as_bytes().first() {
        Some(b'!'..=b'~') => false,
        _ => s.trim().is_empty(),
    }
}

/// Files one value under its column's role; a blank or invalid value
/// declines (the polars path names it).
fn take(role: Role, value: Cow<'_, str>, part: &mut Part) -> Result<(), Stop> {
    if role == Role::Skip {
        return Ok(());
    }
    if blank(&value) {
        return Err(Stop::Decline);
    }
    match role {
        Role::Skip => {}
        Role::Text => part.texts.push(&value),
        Role::Id => part.ids.push(&value),
        Role::Twin => part.twins.push(&value),
        Role::Label => part.labels.push(value.trim()),
        Role::Reference => part.reference.push(value.trim()),
        Role::Group(g) => part.groups[g].push(&value),
        Role::Weight => {
            let w: f64 = value.trim().parse().map_err(|_| Stop::Decline)?;
            if !(w.is_finite() && w >= 0.0) {
                return Err(Stop::Decline);
            }
            part.weights.push(w);
        }
    }
    Ok(())
}

/// Joins the chunks into the dataset `dataset_from_table` would build.
fn build(spec: &DatasetSpec, plan: &Plan, mut parts: Vec<Part>) -> Option<(Dataset, Vec<Warning>)> {
    let n: usize = parts.iter().map(|p| p.rows).sum();
    if n == 0 {
        return None;
    }
    let label_names = match &spec.labels {
        Some(l) => l.clone(),
        None => crate::dataset::label_names_from(
            parts
                .iter()
                .flat_map(|p| p.labels.values.iter().map(String::as_str)),
        ),
    };
    let label_index: HashMap<&str, u32> = label_names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i as u32))
        .collect();
    let encode = |interners: Vec<&Interner>| -> Option<Vec<LabelId>> {
        let mut jobs = Vec::with_capacity(interners.len());
        for it in interners {
            let ids: Vec<u32> = it
                .values
                .iter()
                .map(|v| label_index.get(v.as_str()).copied())
                .collect::<Option<_>>()?;
            jobs.push((it.codes.as_slice(), ids));
        }
        Some(remap(n, jobs).into_iter().map(LabelId).collect())
    };
    let labels = encode(parts.iter().map(|p| &p.labels).collect())?;
    let reference_labels = match spec.reference_label {
        Some(_) => Some(encode(parts.iter().map(|p| &p.reference).collect())?),
        None => None,
    };
    let groups = (0..plan.groups)
        .map(|g| group_column(&spec.groups[g], parts.iter().map(|p| &p.groups[g]), n))
        .collect::<Vec<_>>();
    let weights = spec.weight.as_ref().map(|_| {
        parts
            .iter()
            .flat_map(|p| p.weights.iter().copied())
            .collect()
    });
    let ids = match spec.id {
        Some(_) => concat_column(&mut parts, |p| &mut p.ids),
        None => {
            let firsts: Vec<usize> = parts
                .iter()
                .scan(1, |next, p| {
                    let first = *next;
                    *next += p.rows;
                    Some(first)
                })
                .collect();
            Strs::par_concat(
                parts
                    .par_iter()
                    .zip(firsts)
                    .map(|(p, first)| row_numbers(first, p.rows))
                    .collect(),
            )
        }
    };
    let texts = concat_column(&mut parts, |p| &mut p.texts);
    let twins = concat_column(&mut parts, |p| &mut p.twins);
    let warnings = dataset_warnings(spec, &groups, &labels, &label_names);
    Some((
        Dataset {
            source: spec.path.clone(),
            sha256: String::new(),
            texts,
            label_names,
            labels,
            groups,
            ids,
            weights,
            twins: spec.twin.as_ref().map(|_| twins),
            reference_labels,
        },
        warnings,
    ))
}

/// One string column of the whole file, taken out of the parts.
fn concat_column(parts: &mut [Part], column: fn(&mut Part) -> &mut Strs) -> Strs {
    Strs::par_concat(
        parts
            .iter_mut()
            .map(|p| std::mem::take(column(p)))
            .collect(),
    )
}

/// `first`, `first + 1`, … (`count` numbers): ids of a file without an id
/// column (counted up in decimal digits: formatting each number cost more
/// than the rest of the column).
fn row_numbers(first: usize, count: usize) -> Strs {
    let mut ids = Strs::with_capacity(count, count * 8);
    let mut digits = (first.max(1) - 1).to_string().into_bytes();
    for _ in 0..count {
        let mut k = digits.len();
        loop {
            if k == 0 {
                digits.insert(0, b'1');
                break;
            }
            k -= 1;
            if digits[k] == b'9' {
                digits[k] = b'0';
            } else {
                digits[k] += 1;
                break;
            }
        }
        ids.push(std::str::from_utf8(&digits).expect("ASCII digits"));
    }
    ids
}

/// The group column [`GroupColumn::from_values`] builds: distinct values
/// sorted, ids by position.
fn group_column<'p>(
    name: &str,
    interners: impl Iterator<Item = &'p Interner> + Clone,
    n: usize,
) -> GroupColumn {
    let distinct: HashSet<&str> = interners
        .clone()
        .flat_map(|it| it.values.iter().map(String::as_str))
        .collect();
    let mut values: Vec<String> = distinct.into_iter().map(str::to_string).collect();
    values.sort_unstable();
    let index: HashMap<&str, u32> = values
        .iter()
        .enumerate()
        .map(|(i, v)| (v.as_str(), i as u32))
        .collect();
    let jobs = interners
        .map(|it| {
            let global: Vec<u32> = it.values.iter().map(|v| index[v.as_str()]).collect();
            (it.codes.as_slice(), global)
        })
        .collect();
    GroupColumn {
        name: name.to_string(),
        values,
        ids: remap(n, jobs).into_iter().map(GroupId).collect(),
    }
}

/// One column of `n` ids from the parts' codes, each part's codes mapped
/// through its own table (`jobs`: codes and table, in row order), the parts
/// written in parallel into memory allocated zeroed (so that the pages are
/// first touched by the threads that fill them, not by one).
fn remap(n: usize, jobs: Vec<(&[u32], Vec<u32>)>) -> Vec<u32> {
    let mut out = vec![0u32; n];
    let mut rest = out.as_mut_slice();
    let mut tasks = Vec::with_capacity(jobs.len());
    for (codes, table) in jobs {
        let (here, after) = rest.split_at_mut(codes.len());
        tasks.push((here, codes, table));
        rest = after;
    }
    tasks.into_par_iter().for_each(|(out, codes, table)| {
        for (o, &c) in out.iter_mut().zip(codes) {
            *o = table[c as usize];
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::dataset_from_table;
    use crate::spec::SpecArgs;
    use crate::table::read_table;
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;
    use std::path::Path;

    #[test]
    fn row_numbers_count_in_decimal() {
        let want: Vec<String> = (1..=10_001).map(|i| i.to_string()).collect();
        assert_eq!(row_numbers(1, 10_001), want);
        assert_eq!(row_numbers(998, 5), ["998", "999", "1000", "1001", "1002"]);
        assert!(row_numbers(1, 0).is_empty());
    }

    fn spec(ext: &str, args: SpecArgs) -> DatasetSpec {
        DatasetSpec::from_args(
            SpecArgs {
                path: Some(Path::new("d").with_extension(ext)),
                ..args
            },
            "test",
        )
        .unwrap()
    }

    fn args(groups: &[&str]) -> SpecArgs {
        SpecArgs {
            text_col: Some("t".into()),
            label_col: Some("y".into()),
            groups: groups.iter().map(|s| s.to_string()).collect(),
            min_group_size: Some(2),
            ..Default::default()
        }
    }

    /// The polars path's answer for the same bytes.
    fn slow(spec: &DatasetSpec, bytes: &[u8]) -> crate::Result<(Dataset, Vec<Warning>)> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(&spec.path);
        std::fs::write(&path, bytes).unwrap();
        let table = read_table(&path)?;
        let mut found = dataset_from_table(spec, &table, String::new())?;
        found.0.source = spec.path.clone();
        Ok(found)
    }

    fn fast(spec: &DatasetSpec, bytes: &[u8], chunk: usize) -> Option<(Dataset, Vec<Warning>)> {
        read_chunked(spec, Format::from_path(&spec.path).unwrap(), bytes, chunk)
    }

    /// What [`read_streamed`] makes of `bytes` written to a file, and
    /// whether it had to read the file whole.
    fn streamed(
        spec: &DatasetSpec,
        bytes: &[u8],
        chunk: usize,
    ) -> (Option<(Dataset, Vec<Warning>)>, bool) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(&spec.path);
        std::fs::write(&path, bytes).unwrap();
        let at = DatasetSpec {
            path: path.clone(),
            ..spec.clone()
        };
        let format = Format::from_path(&path).unwrap();
        let (found, whole) = match read_streamed(&at, format, chunk) {
            Ok(found) => (found, false),
            Err(ReadWhole) => (read(&at, format, &std::fs::read(&path).unwrap()), true),
        };
        let found = found.map(|(mut d, w)| {
            d.source = spec.path.clone();
            (d, w)
        });
        (found, whole)
    }

    #[test]
    fn plain_files_take_the_fast_path_and_match_polars() {
        let csv = "id,t,y,g,w\n\
                   a1,\"hello, \"\"world\"\"\",b,m,1.5\n\
                   a2,plain text,a,f,0\n\
                   a3,\"two\nlines\",b,f, 2 \n\
                   a4,  spaced  , a ,x,3e0";
        let s = spec(
            "csv",
            SpecArgs {
                id_col: Some("id".into()),
                weight_col: Some("w".into()),
                ..args(&["g"])
            },
        );
        let want = slow(&s, csv.as_bytes()).unwrap();
        assert_eq!(&want.0.texts[0], "hello, \"world\"");
        for chunk in [1, 3, 10, 1 << 20] {
            let got = fast(&s, csv.as_bytes(), chunk).expect("plain file");
            assert_eq!(got, want, "chunk {chunk}");
            let (got, whole) = streamed(&s, csv.as_bytes(), chunk);
            // Small chunks may start inside the quoted line break.
            assert!(chunk < 1 << 20 || !whole);
            assert_eq!(got.expect("plain file"), want, "file, chunk {chunk}");
        }
        let tsv = "t\ty\tg\none\t1\tm\ntwo, or three\t10\tf\nfour\t2\tm\n";
        let s = spec("tsv", args(&["g"]));
        let got = fast(&s, tsv.as_bytes(), 4).expect("plain file");
        assert_eq!(got.0.label_names, vec!["1", "2", "10"]);
        assert_eq!(got, slow(&s, tsv.as_bytes()).unwrap());
    }

    #[test]
    fn a_guessed_chunk_start_inside_quotes_is_read_again_in_one() {
        // Every chunk boundary falls inside the long quoted field's lines.
        let mut csv = String::from("t,y\n\"");
        for i in 0..200 {
            csv.push_str(&format!("line {i}\n"));
        }
        csv.push_str("\",1\nafter,0\n");
        let s = spec("csv", args(&[]));
        let got = fast(&s, csv.as_bytes(), 16).expect("plain file");
        assert_eq!(got.0.len(), 2);
        assert_eq!(got, slow(&s, csv.as_bytes()).unwrap());
        // From a file: read again whole, then the same.
        let (found, whole) = streamed(&s, csv.as_bytes(), 16);
        assert!(whole);
        assert_eq!(found.expect("plain file"), got);
    }

    #[test]
    fn a_file_that_cannot_be_read_fails_as_std_fs_read_does() {
        let dir = tempfile::tempdir().unwrap();
        for path in [dir.path().join("missing.csv"), dir.path().to_path_buf()] {
            let s = DatasetSpec {
                path: path.clone(),
                ..spec("csv", args(&[]))
            };
            let got = read_file(&s, Format::Csv).expect_err("unreadable");
            let want = std::fs::read(&path).expect_err("unreadable");
            assert_eq!(got.kind(), want.kind(), "{path:?}");
        }
    }

    #[test]
    fn the_rest_is_left_to_the_polars_path() {
        let s = spec("csv", args(&["g"]));
        for bad in [
            "t,y,g\na,1,m\r\nb,0,f\r\n", // CRLF
            "t,y,g\na,1,m\n\nb,0,f\n",   // blank line
            "t,y,g\na,1,m\nb,0\n",       // ragged
            "t,y,g\na,1,m\n\"b,0,f\n",   // unterminated quote
            "t,y,g\na\"b,1,m\n",         // quote inside a field
            "t,y,g\n\"a\"b,1,m\n",       // text after a closing quote
            "t,y,g\na,1,m\n ,0,f\n",     // blank text
            "t,y,g,g\na,1,m,m\n",        // duplicate header
            "t,y\na,1\n",                // missing group column
            "t,y,g\n",                   // no rows
            "\u{feff}t,y,g\na,1,m\n",    // byte-order mark
        ] {
            assert!(fast(&s, bad.as_bytes(), 2).is_none(), "{bad:?}");
            assert!(streamed(&s, bad.as_bytes(), 2).0.is_none(), "{bad:?}");
        }
        let bytes = b"t,y,g\na,1,m\nb\xe9,0,f\n";
        assert!(fast(&s, bytes, 2).is_none());
        let known = spec(
            "csv",
            SpecArgs {
                labels: Some(vec!["0".into()]),
                ..args(&["g"])
            },
        );
        assert!(fast(&known, b"t,y,g\na,0,m\nb,1,f\n", 2).is_none());
    }

    /// A random CSV over an alphabet rich in the characters that matter
    /// (separators, quotes, newlines, `\r`, spaces, numbers for weights),
    /// mostly plain so that the fast path often reads it.
    fn random_csv() -> impl Strategy<Value = String> {
        let cell = prop_oneof![
            8 => "[ab1][ab1 ]{0,2}",
            2 => "[0-9]{1,2}(\\.5)?",
            1 => "[ab ]{0,2}",
            1 => "[\"a, \n\r1\u{e9}-]{0,4}",
            1 => "[a ,\n\"]{0,4}".prop_map(|s| format!("\"{}\"", s.replace('"', "\"\""))),
            2 => "[ab][a ,\n\"]{0,3}".prop_map(|s| format!("\"{}\"", s.replace('"', "\"\""))),
        ];
        let header = prop_oneof![
            8 => Just("t,y,g,x".to_string()),
            1 => Just("t,y,g".to_string()),
            1 => Just("x,t,y,g,x".to_string()),
        ];
        let rows = prop::collection::vec(prop::collection::vec(cell, 4..=4), 0..8);
        let ragged = prop::option::weighted(0.1, "[ab,]{0,3}");
        (header, rows, ragged, any::<bool>()).prop_map(|(header, rows, ragged, trailing)| {
            let mut out = header;
            for r in rows {
                out.push('\n');
                out.push_str(&r.join(","));
            }
            if let Some(r) = ragged {
                out.push('\n');
                out.push_str(&r);
            }
            if trailing {
                out.push('\n');
            }
            out
        })
    }

    /// The specs the property runs: text, label and group, with the fourth
    /// column as an id, a weight or a reference label, or unused.
    fn random_spec() -> impl Strategy<Value = DatasetSpec> {
        (0..4usize).prop_map(|k| {
            let x = Some("x".to_string());
            let a = match k {
                0 => args(&["g"]),
                1 => SpecArgs {
                    id_col: x,
                    ..args(&["g"])
                },
                2 => SpecArgs {
                    weight_col: x,
                    ..args(&["g"])
                },
                _ => SpecArgs {
                    reference_label_col: x,
                    ..args(&["g"])
                },
            };
            spec("csv", a)
        })
    }

    #[test]
    fn the_random_files_often_take_the_fast_path() {
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let strategy = (random_csv(), random_spec());
        let (mut taken, mut streamed_taken) = (0, 0);
        for _ in 0..1000 {
            let (csv, s) = strategy.new_tree(&mut runner).unwrap().current();
            taken += usize::from(fast(&s, csv.as_bytes(), 8).is_some());
            let (found, whole) = streamed(&s, csv.as_bytes(), 8);
            streamed_taken += usize::from(found.is_some() && !whole);
        }
        assert!(
            taken > 50,
            "only {taken} of 1000 random files took the fast path"
        );
        assert!(
            streamed_taken > 50,
            "only {streamed_taken} of 1000 random files were read chunk by chunk"
        );
    }

    proptest! {
        #[test]
        fn short_keys_are_equal_exactly_when_the_values_are(
            a in "[a\u{0}é]{0,8}",
            b in "[a\u{0}é]{0,8}",
        ) {
            let (ka, kb) = (short_key(&a), short_key(&b));
            prop_assert_eq!(ka.is_some(), a.len() <= 7);
            if ka.is_some() && kb.is_some() {
                prop_assert_eq!(ka == kb, a == b);
            }
        }

        #[test]
        fn blank_is_what_trim_calls_empty(s in "[ a!~\t\u{0B}\u{85}\u{3000}é]{0,4}") {
            prop_assert_eq!(blank(&s), s.trim().is_empty());
        }
    }

    proptest! {
        #[test]
        fn unquoted_ends_are_the_first_special_byte(
            plain in 0usize..48,
            tail in prop::collection::vec(
                prop::sample::select(vec![b'a', b',', b'"', b'\n', b'\r', 0, 0x80]),
                0..12,
            ),
            from in 0usize..60,
        ) {
            // Runs of plain bytes longer and shorter than the bytes looked
            // at one by one, then anything.
            let mut b = vec![b'a'; plain];
            b.extend(tail);
            let from = from.min(b.len());
            let targets = [b',', b'\n', b'"', b'\r'];
            let want = b[from..]
                .iter()
                .position(|c| targets.contains(c))
                .map_or(b.len(), |k| from + k);
            prop_assert_eq!(unquoted_end(&b, from, b',', true), want);
            if !b.contains(&b'\r') {
                prop_assert_eq!(unquoted_end(&b, from, b',', false), want);
            }
        }

        #[test]
        fn find_any_finds_the_first_match(
            b in prop::collection::vec(
                prop::sample::select(vec![b'a', b',', b'"', b'\n', b'\r', 0, 0x80, 0xff]),
                0..40,
            ),
            from in 0usize..40,
        ) {
            let from = from.min(b.len());
            let targets = [b',', b'\n', b'"', b'\r'];
            let want = b[from..].iter().position(|c| targets.contains(c)).map(|k| from + k);
            prop_assert_eq!(find_any(&b, from, targets), want);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5000))]
        #[test]
        fn the_fast_path_reads_what_polars_reads(
            csv in random_csv(),
            s in random_spec(),
            chunk in 1usize..40,
        ) {
            let got = fast(&s, csv.as_bytes(), chunk);
            prop_assert_eq!(&streamed(&s, csv.as_bytes(), chunk).0, &got, "from a file");
            if let Some(got) = got {
                let want = slow(&s, csv.as_bytes());
                prop_assert!(want.is_ok(), "fast path accepted {csv:?}: {want:?}");
                prop_assert_eq!(got, want.unwrap());
            }
        }
    }
}
