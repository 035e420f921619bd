//! [`Strs`]: a column of strings kept in a few large buffers.
//!
//! A dataset's texts, row ids and counterfactual twins are written once and
//! then only read. One `String` per row costs an allocation to build and a
//! free to drop each: two million of each for a million-row file with an id
//! column, which was most of the time it took to read one. Here the bytes of
//! consecutive rows sit together in one buffer (a *chunk*), and each row is
//! a range of them. A column read in parallel keeps each reader's chunk as it
//! was written instead of copying them all into one (copying 100 MB into
//! fresh memory costs as much as parsing it).

use std::fmt;
use std::ops::Index;

use rayon::prelude::*;
use serde::{Serialize, Serializer};

/// A column of strings: row `i` is `&strs[i]`.
#[derive(Clone, Default)]
pub struct Strs {
    /// The rows' bytes, in row order; a row never spans two chunks.
    chunks: Vec<String>,
    /// Where each chunk starts in the concatenation of all chunks.
    chunk_starts: Vec<usize>,
    /// Where each row ends in the concatenation of all chunks; a row
    /// starts where the one before it ends (the first at 0).
    ends: Vec<usize>,
}

impl Strs {
    /// An empty column.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty column with room for `rows` rows of `bytes` bytes in all.
    pub fn with_capacity(rows: usize, bytes: usize) -> Self {
        Self {
            chunks: vec![String::with_capacity(bytes)],
            chunk_starts: vec![0],
            ends: Vec::with_capacity(rows),
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Bytes of all rows together.
    fn total_bytes(&self) -> usize {
        self.ends.last().copied().unwrap_or(0)
    }

    /// Appends a row.
    pub fn push(&mut self, s: &str) {
        if self.chunks.is_empty() {
            self.chunks.push(String::new());
            self.chunk_starts.push(0);
        }
        let last = self.chunks.last_mut().expect("a chunk was just ensured");
        last.push_str(s);
        self.ends.push(self.total_bytes() + s.len());
    }

    /// Row `i`, or `None` past the end.
    pub fn get(&self, i: usize) -> Option<&str> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        if start == end {
            return Some("");
        }
        // The last chunk that starts at or before the row (chunks are never
        // empty where a row is not).
        let c = self.chunk_starts.partition_point(|&s| s <= start) - 1;
        let base = self.chunk_starts[c];
        Some(&self.chunks[c][start - base..end - base])
    }

    /// The rows in order.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            strs: self,
            front: 0,
            back: self.len(),
            chunk: 0,
        }
    }

    /// The rows as borrowed slices (for APIs that take `&[S]`).
    pub fn as_strs(&self) -> Vec<&str> {
        self.iter().collect()
    }

    /// The rows as owned strings.
    pub fn to_vec(&self) -> Vec<String> {
        self.iter().map(str::to_owned).collect()
    }

    /// The rows at `indices`, in that order.
    pub fn pick(&self, indices: &[usize]) -> Strs {
        let bytes = indices.iter().map(|&i| self[i].len()).sum();
        let mut out = Strs::with_capacity(indices.len(), bytes);
        for &i in indices {
            out.push(&self[i]);
        }
        out
    }

    /// The rows of `parts` one after another, each part's chunks kept as
    /// they are (nothing is copied but the row ends), as [`Strs::append`]
    /// of each would give; the row ends are written in parallel into memory
    /// allocated zeroed (so that its pages are first touched by the threads
    /// that fill them).
    pub fn par_concat(parts: Vec<Strs>) -> Strs {
        let n = parts.iter().map(Strs::len).sum();
        let mut ends = vec![0usize; n];
        let mut rest = ends.as_mut_slice();
        let mut out = Strs::new();
        let mut tasks = Vec::with_capacity(parts.len());
        let mut base = 0;
        for p in parts {
            let (here, after) = rest.split_at_mut(p.len());
            rest = after;
            let bytes = p.total_bytes();
            out.take_chunks(p.chunks, p.chunk_starts, base);
            tasks.push((here, p.ends, base));
            base += bytes;
        }
        tasks.into_par_iter().for_each(|(here, ends, base)| {
            for (e, &x) in here.iter_mut().zip(&ends) {
                *e = base + x;
            }
        });
        out.ends = ends;
        out
    }

    /// Appends the rows of `other`, keeping its chunks.
    pub fn append(&mut self, other: Strs) {
        let base = self.total_bytes();
        self.take_chunks(other.chunks, other.chunk_starts, base);
        self.ends.extend(other.ends.into_iter().map(|e| base + e));
    }

    /// Moves another column's non-empty chunks to the end of this one's,
    /// their starts shifted by `base` (the bytes before them). Chunks hold
    /// rows only (no bytes are ever written past a row), so nothing after
    /// them shifts.
    fn take_chunks(&mut self, chunks: Vec<String>, starts: Vec<usize>, base: usize) {
        for (chunk, start) in chunks.into_iter().zip(starts) {
            if !chunk.is_empty() {
                self.chunks.push(chunk);
                self.chunk_starts.push(base + start);
            }
        }
    }
}

impl Index<usize> for Strs {
    type Output = str;

    fn index(&self, i: usize) -> &str {
        match self.get(i) {
            Some(s) => s,
            None => panic!("row {i} of a column of {} rows", self.len()),
        }
    }
}

/// The rows of a [`Strs`] in order.
#[derive(Debug, Clone)]
pub struct Iter<'a> {
    strs: &'a Strs,
    front: usize,
    back: usize,
    /// The chunk that holds row `front` or one after it (rows are visited in
    /// order, so the search for each row's chunk starts here).
    chunk: usize,
}

impl<'a> Iterator for Iter<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.front >= self.back {
            return None;
        }
        let s = self.strs;
        let i = self.front;
        self.front += 1;
        let start = if i == 0 { 0 } else { s.ends[i - 1] };
        let end = s.ends[i];
        if start == end {
            return Some("");
        }
        while self.chunk + 1 < s.chunks.len() && s.chunk_starts[self.chunk + 1] <= start {
            self.chunk += 1;
        }
        let base = s.chunk_starts[self.chunk];
        Some(&s.chunks[self.chunk][start - base..end - base])
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.back - self.front;
        (n, Some(n))
    }
}

impl DoubleEndedIterator for Iter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        if self.front >= self.back {
            return None;
        }
        self.back -= 1;
        self.strs.get(self.back)
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl<'a> IntoIterator for &'a Strs {
    type Item = &'a str;
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl<S: AsRef<str>> FromIterator<S> for Strs {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        let mut out = Strs::new();
        for s in iter {
            out.push(s.as_ref());
        }
        out
    }
}

impl From<Vec<String>> for Strs {
    fn from(v: Vec<String>) -> Self {
        let bytes = v.iter().map(String::len).sum();
        let mut out = Strs::with_capacity(v.len(), bytes);
        for s in &v {
            out.push(s);
        }
        out
    }
}

impl From<&[&str]> for Strs {
    fn from(v: &[&str]) -> Self {
        v.iter().collect()
    }
}

/// Rows equal one by one, however they are chunked.
impl PartialEq for Strs {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Strs {}

impl<S: AsRef<str>> PartialEq<[S]> for Strs {
    fn eq(&self, other: &[S]) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter().map(AsRef::as_ref))
    }
}

impl<S: AsRef<str>, const N: usize> PartialEq<[S; N]> for Strs {
    fn eq(&self, other: &[S; N]) -> bool {
        *self == other[..]
    }
}

impl<S: AsRef<str>> PartialEq<Vec<S>> for Strs {
    fn eq(&self, other: &Vec<S>) -> bool {
        *self == other[..]
    }
}

impl fmt::Debug for Strs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Serialize for Strs {
    fn serialize<Ser: Serializer>(&self, serializer: Ser) -> Result<Ser::Ok, Ser::Error> {
        serializer.collect_seq(self.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunked(rows: &[&[&str]]) -> Strs {
        let parts = || rows.iter().map(|r| Strs::from(*r));
        let mut s = Strs::new();
        for p in parts() {
            s.append(p);
        }
        let p = Strs::par_concat(parts().collect());
        assert_eq!(
            (&s.chunks, &s.chunk_starts, &s.ends),
            (&p.chunks, &p.chunk_starts, &p.ends)
        );
        s
    }

    #[test]
    fn rows_read_back_across_chunks_with_empty_rows_at_their_edges() {
        let want = ["", "a", "", "bc", "", "", "def", ""];
        for s in [
            Strs::from(&want[..]),
            chunked(&[&want[..2], &want[2..5], &[], &want[5..]]),
            chunked(&[&[""], &["a"], &["", "bc", ""], &["", "def", ""]]),
        ] {
            assert_eq!(s.len(), 8);
            for (i, w) in want.iter().enumerate() {
                assert_eq!(&s[i], *w, "row {i}");
                assert_eq!(s.get(i), Some(*w));
            }
            assert_eq!(s.get(8), None);
            assert_eq!(s.iter().collect::<Vec<_>>(), want);
            assert_eq!(s.iter().rev().collect::<Vec<_>>(), {
                let mut r = want.to_vec();
                r.reverse();
                r
            });
            assert_eq!(s, want);
            assert_eq!(s.to_vec(), want);
            assert_eq!(s.pick(&[6, 3, 0]), ["def", "bc", ""]);
        }
    }

    #[test]
    fn a_column_of_empty_rows_has_no_bytes_to_hold() {
        let s = chunked(&[&["", ""], &[""]]);
        assert_eq!(s, ["", "", ""]);
        assert_eq!(s.iter().rev().collect::<Vec<_>>(), ["", "", ""]);
    }

    #[test]
    fn push_after_concat_extends_the_last_chunk() {
        let mut s = chunked(&[&["x"], &["yz"]]);
        s.push("w");
        s.push("");
        assert_eq!(s, ["x", "yz", "w", ""]);
        let mut e = Strs::new();
        assert!(e.is_empty());
        e.append(Strs::new());
        e.push("q");
        assert_eq!(e, ["q"]);
    }

    #[test]
    fn equality_ignores_chunking_and_serializes_as_a_list() {
        let a = chunked(&[&["a", "b"], &["c"]]);
        let b = Strs::from(vec!["a".to_string(), "b".into(), "c".into()]);
        assert_eq!(a, b);
        assert_ne!(a, chunked(&[&["a", "b"]]));
        assert_eq!(format!("{a:?}"), r#"["a", "b", "c"]"#);
        assert_eq!(serde_json::to_string(&a).unwrap(), r#"["a","b","c"]"#);
    }

    #[test]
    #[should_panic(expected = "row 2 of a column of 2 rows")]
    fn indexing_past_the_end_names_the_row() {
        let _ = &Strs::from(&["a", "b"][..])[2];
    }
}
