//! CSV/TSV straight to a [`Dataset`]: the path [`crate::load_dataset`] takes
//! for a plain file, without building a polars table first.
//!
//! The polars path ([`crate::table`] then [`crate::dataset::dataset_from_table`])
//! copies every value twice (into Arrow buffers, then into the dataset's
//! `String`s) and allocates a `String` per label and group value. Here the
//! records are split into chunks that rayon parses in parallel, one pass
//! each: texts and ids are copied once into their `String`s, labels and
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

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use rayon::prelude::*;

use crate::dataset::{Dataset, GroupColumn, GroupId, LabelId, Warning, dataset_warnings};
use crate::spec::{DatasetSpec, TextSource};
use crate::table::Format;

/// Bytes of records per parallel chunk (at most 8 chunks per thread).
const CHUNK_BYTES: usize = 1 << 20;

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

fn read_chunked(
    spec: &DatasetSpec,
    format: Format,
    bytes: &[u8],
    chunk_bytes: usize,
) -> Option<(Dataset, Vec<Warning>)> {
    if !matches!(format, Format::Csv | Format::Tsv) || spec.preset.is_some() {
        return None;
    }
    // The polars path's checks of the first bytes (binary, other formats).
    if bytes.starts_with(b"PAR1")
        || bytes.starts_with(b"PK\x03\x04")
        || bytes.starts_with(&[0x1f, 0x8b])
        || bytes.starts_with(b"\xef\xbb\xbf")
        || bytes.iter().take(8192).any(|&b| b == 0)
    {
        return None;
    }
    let sep = if format == Format::Tsv { b'\t' } else { b',' };
    let header_end = bytes.iter().position(|&b| b == b'\n')? + 1;
    let header = std::str::from_utf8(&bytes[..header_end - 1]).ok()?;
    let plan = Plan::new(spec, &header_names(header, sep)?, sep)?;
    let body = &bytes[header_end..];

    let bounds = chunk_bounds(body, chunk_bytes);
    let parsed: Vec<Result<Part<'_>, Stop>> = bounds
        .par_windows(2)
        .map(|w| parse_chunk(&body[w[0]..w[1]], &plan))
        .collect();
    let last = parsed.len() - 1;
    let mut parts = Vec::with_capacity(parsed.len());
    for (i, p) in parsed.into_iter().enumerate() {
        match p {
            Ok(p) => parts.push(p),
            // A chunk that ends inside quotes: its end was guessed inside a
            // quoted field, not at a record's end. Read the records in one.
            Err(Stop::Unterminated) if i < last => {
                parts = vec![parse_chunk(body, &plan).ok()?];
                break;
            }
            Err(_) => return None,
        }
    }
    build(spec, &plan, parts)
}

/// The header's names; `None` unless they are non-empty and distinct.
fn header_names(header: &str, sep: u8) -> Option<Vec<&str>> {
    let mut names = Vec::new();
    let mut pos = 0;
    loop {
        let (name, after) = next_field(header, pos, sep).ok()?;
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
}

/// The columns a chunk of records holds, as read.
#[derive(Debug, Default)]
struct Part<'a> {
    rows: usize,
    texts: Vec<String>,
    ids: Vec<String>,
    twins: Vec<String>,
    weights: Vec<f64>,
    labels: Interner<'a>,
    reference: Interner<'a>,
    groups: Vec<Interner<'a>>,
}

/// A column's distinct values in order of first sight, and each row's
/// position among them.
#[derive(Debug, Default)]
struct Interner<'a> {
    values: Vec<Cow<'a, str>>,
    /// Filled once there are more than [`LINEAR`] values.
    index: HashMap<Cow<'a, str>, u32>,
    codes: Vec<u32>,
}

impl<'a> Interner<'a> {
    fn push(&mut self, v: Cow<'a, str>) {
        let found = if self.values.len() <= LINEAR {
            self.values.iter().position(|x| *x == v).map(|i| i as u32)
        } else {
            self.index.get(v.as_ref()).copied()
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
                    self.index.insert(v.clone(), c);
                }
                self.values.push(v);
                c
            }
        };
        self.codes.push(code);
    }
}

/// Reads the whole records of `bytes` (a chunk that starts at a record).
fn parse_chunk<'a>(bytes: &'a [u8], plan: &Plan) -> Result<Part<'a>, Stop> {
    let text = std::str::from_utf8(bytes).map_err(|_| Stop::Decline)?;
    let mut part = Part {
        groups: (0..plan.groups).map(|_| Interner::default()).collect(),
        ..Part::default()
    };
    let width = plan.roles.len();
    let mut pos = 0;
    while pos < bytes.len() {
        let mut field = 0;
        loop {
            let (value, after) = next_field(text, pos, plan.sep)?;
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
/// it: the end of `text`, a separator or `\n`.
fn next_field(text: &str, pos: usize, sep: u8) -> Result<(Cow<'_, str>, usize), Stop> {
    let b = text.as_bytes();
    if b.get(pos) == Some(&b'"') {
        let mut from = pos + 1;
        let mut escaped = false;
        loop {
            let q = find_any(b, from, [b'"']).ok_or(Stop::Unterminated)?;
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
    let end = find_any(b, pos, [sep, b'\n', b'"', b'\r']).unwrap_or(b.len());
    if matches!(b.get(end), Some(b'"' | b'\r')) {
        return Err(Stop::Decline);
    }
    Ok((Cow::Borrowed(&text[pos..end]), end))
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

/// Files one value under its column's role; a blank or invalid value
/// declines (the polars path names it).
fn take<'a>(role: Role, value: Cow<'a, str>, part: &mut Part<'a>) -> Result<(), Stop> {
    if role == Role::Skip {
        return Ok(());
    }
    if value.trim().is_empty() {
        return Err(Stop::Decline);
    }
    match role {
        Role::Skip => {}
        Role::Text => part.texts.push(value.into_owned()),
        Role::Id => part.ids.push(value.into_owned()),
        Role::Twin => part.twins.push(value.into_owned()),
        Role::Label => part.labels.push(trimmed(value)),
        Role::Reference => part.reference.push(trimmed(value)),
        Role::Group(g) => part.groups[g].push(value),
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

fn trimmed(value: Cow<'_, str>) -> Cow<'_, str> {
    match value {
        Cow::Borrowed(s) => Cow::Borrowed(s.trim()),
        Cow::Owned(s) => Cow::Owned(s.trim().to_string()),
    }
}

/// Joins the chunks into the dataset `dataset_from_table` would build.
fn build(spec: &DatasetSpec, plan: &Plan, parts: Vec<Part<'_>>) -> Option<(Dataset, Vec<Warning>)> {
    let n: usize = parts.iter().map(|p| p.rows).sum();
    if n == 0 {
        return None;
    }
    let label_names = match &spec.labels {
        Some(l) => l.clone(),
        None => crate::dataset::label_names_from(
            parts
                .iter()
                .flat_map(|p| p.labels.values.iter().map(|v| v.as_ref())),
        ),
    };
    let label_index: HashMap<&str, u32> = label_names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i as u32))
        .collect();
    let encode = |interners: Vec<&Interner<'_>>| -> Option<Vec<LabelId>> {
        let mut out = Vec::with_capacity(n);
        for it in interners {
            let ids: Vec<u32> = it
                .values
                .iter()
                .map(|v| label_index.get(v.as_ref()).copied())
                .collect::<Option<_>>()?;
            out.extend(it.codes.iter().map(|&c| LabelId(ids[c as usize])));
        }
        Some(out)
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
    let mut texts = Vec::with_capacity(n);
    let mut ids = Vec::with_capacity(if spec.id.is_some() { n } else { 0 });
    let mut twins = Vec::with_capacity(if spec.twin.is_some() { n } else { 0 });
    for p in parts {
        texts.extend(p.texts);
        ids.extend(p.ids);
        twins.extend(p.twins);
    }
    if spec.id.is_none() {
        ids = (1..=n).into_par_iter().map(|i| i.to_string()).collect();
    }
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

/// The group column [`GroupColumn::from_values`] builds: distinct values
/// sorted, ids by position.
fn group_column<'p, 'a: 'p>(
    name: &str,
    interners: impl Iterator<Item = &'p Interner<'a>> + Clone,
    n: usize,
) -> GroupColumn {
    let distinct: HashSet<&str> = interners
        .clone()
        .flat_map(|it| it.values.iter().map(|v| v.as_ref()))
        .collect();
    let mut values: Vec<String> = distinct.into_iter().map(str::to_string).collect();
    values.sort_unstable();
    let index: HashMap<&str, u32> = values
        .iter()
        .enumerate()
        .map(|(i, v)| (v.as_str(), i as u32))
        .collect();
    let mut ids = Vec::with_capacity(n);
    for it in interners {
        let global: Vec<u32> = it.values.iter().map(|v| index[v.as_ref()]).collect();
        ids.extend(it.codes.iter().map(|&c| GroupId(global[c as usize])));
    }
    GroupColumn {
        name: name.to_string(),
        values,
        ids,
    }
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
        assert_eq!(want.0.texts[0], "hello, \"world\"");
        for chunk in [1, 3, 10, 1 << 20] {
            let got = fast(&s, csv.as_bytes(), chunk).expect("plain file");
            assert_eq!(got, want, "chunk {chunk}");
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
        let taken = (0..1000)
            .filter(|_| {
                let (csv, s) = strategy.new_tree(&mut runner).unwrap().current();
                fast(&s, csv.as_bytes(), 8).is_some()
            })
            .count();
        assert!(
            taken > 50,
            "only {taken} of 1000 random files took the fast path"
        );
    }

    proptest! {
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
            if let Some(got) = fast(&s, csv.as_bytes(), chunk) {
                let want = slow(&s, csv.as_bytes());
                prop_assert!(want.is_ok(), "fast path accepted {csv:?}: {want:?}");
                prop_assert_eq!(got, want.unwrap());
            }
        }
    }
}
