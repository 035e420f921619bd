//! A column as dictionary codes, for loops over many rows (a streamed
//! audit): one code per row into the column's distinct values as text, so
//! a caller looks each distinct value up once per chunk instead of once per
//! row, and no string is made per row.
//!
//! The text of each value is what [`Table::strings`] gives for it (numbers
//! formatted as polars casts them), which a test checks per type. Integer
//! columns are coded by value (a direct table over a narrow range), strings
//! by their Arrow view (12 bytes or fewer are the view itself, longer ones
//! are hashed by content).

use polars::prelude::*;

use super::Table;
use crate::error::{Error, Result};

/// A column as codes: row `i` holds `values[codes[i]]` (`None`: null), the
/// text of [`Table::strings`]. Values are distinct except that a value may
/// stand under more than one code when the column's storage repeats it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CodedText {
    pub codes: Vec<u32>,
    pub values: Vec<Option<String>>,
}

/// Widest integer range coded through a direct table (a 256 KiB table).
const DIRECT_RANGE: i64 = 1 << 16;

impl Table {
    /// A column as codes into its distinct values as text; see
    /// [`CodedText`].
    pub fn coded(&self, name: &str) -> Result<CodedText> {
        let col = self.column(name)?;
        let err = |e: PolarsError| Error::parse(&self.path, format!("column `{name}`: {e}"));
        match col.dtype() {
            DataType::Int64 => Ok(code_ints(col.i64().map_err(err)?)),
            DataType::Int32 | DataType::UInt32 => {
                let cast = col.cast(&DataType::Int64).map_err(err)?;
                Ok(code_ints(cast.i64().map_err(err)?))
            }
            DataType::String => Ok(code_strings(col.str().map_err(err)?)),
            // Other types (booleans, floats, dates, narrow or unsigned
            // 64-bit integers) are coded by the text polars casts them to.
            _ => {
                let cast = col.cast(&DataType::String).map_err(err)?;
                Ok(code_strings(cast.str().map_err(err)?))
            }
        }
    }
}

/// Codes in order of first appearance, and the code of null.
#[derive(Default)]
struct Codes {
    out: CodedText,
    null: Option<u32>,
}

impl Codes {
    fn with_capacity(n: usize) -> Self {
        Self {
            out: CodedText {
                codes: Vec::with_capacity(n),
                values: Vec::new(),
            },
            null: None,
        }
    }
    /// A new code for `value`.
    fn add(&mut self, value: Option<String>) -> u32 {
        let c = self.out.values.len() as u32;
        self.out.values.push(value);
        c
    }
    fn null(&mut self) -> u32 {
        match self.null {
            Some(c) => c,
            None => {
                let c = self.add(None);
                self.null = Some(c);
                c
            }
        }
    }
}

fn code_ints(ca: &Int64Chunked) -> CodedText {
    let mut codes = Codes::with_capacity(ca.len());
    let (Some(lo), Some(hi)) = (ca.min(), ca.max()) else {
        // Every value is null.
        for _ in 0..ca.len() {
            let c = codes.null();
            codes.out.codes.push(c);
        }
        return codes.out;
    };
    // Without nulls, a narrow range is coded through a direct table.
    if ca.null_count() == 0 && i128::from(hi) - i128::from(lo) < i128::from(DIRECT_RANGE) {
        let mut table = vec![u32::MAX; (hi - lo + 1) as usize];
        for arr in ca.downcast_iter() {
            for &v in arr.values().iter() {
                let slot = (v - lo) as usize;
                if table[slot] == u32::MAX {
                    table[slot] = codes.add(Some(v.to_string()));
                }
                codes.out.codes.push(table[slot]);
            }
        }
    } else {
        let mut seen: PlHashMap<i64, u32> = PlHashMap::default();
        for v in ca.iter() {
            let c = match v {
                None => codes.null(),
                Some(v) => match seen.get(&v) {
                    Some(&c) => c,
                    None => {
                        let c = codes.add(Some(v.to_string()));
                        seen.insert(v, c);
                        c
                    }
                },
            };
            codes.out.codes.push(c);
        }
    }
    codes.out
}

fn code_strings(ca: &StringChunked) -> CodedText {
    let mut codes = Codes::with_capacity(ca.len());
    if ca.null_count() > 0 {
        // Nulls (an error for the audit anyway): value by value.
        let mut seen: PlHashMap<&str, u32> = PlHashMap::default();
        for v in ca.iter() {
            let c = match v {
                None => codes.null(),
                Some(s) => match seen.get(s) {
                    Some(&c) => c,
                    None => {
                        let c = codes.add(Some(s.to_owned()));
                        seen.insert(s, c);
                        c
                    }
                },
            };
            codes.out.codes.push(c);
        }
        return codes.out;
    }
    // Strings of 12 bytes or fewer live in their view (length, then the
    // bytes, zero-padded: masked here all the same), so the view is the
    // key; longer ones are keyed by their bytes.
    let mut short: PlHashMap<u128, u32> = PlHashMap::default();
    let mut long: PlHashMap<&str, u32> = PlHashMap::default();
    for arr in ca.downcast_iter() {
        // Equal views are equal strings: a run of one value costs one
        // comparison per row.
        let mut last: Option<(u128, u32)> = None;
        for (i, view) in arr.views().iter().enumerate() {
            let raw = view.as_u128();
            if let Some((v, c)) = last
                && v == raw
            {
                codes.out.codes.push(c);
                continue;
            }
            let len = view.length;
            let c = if len <= 12 {
                let key = if len == 12 {
                    raw
                } else {
                    raw & ((1u128 << (32 + 8 * len)) - 1)
                };
                match short.get(&key) {
                    Some(&c) => c,
                    None => {
                        let c = codes.add(Some(arr.value(i).to_owned()));
                        short.insert(key, c);
                        c
                    }
                }
            } else {
                let s = arr.value(i);
                match long.get(s) {
                    Some(&c) => c,
                    None => {
                        let c = codes.add(Some(s.to_owned()));
                        long.insert(s, c);
                        c
                    }
                }
            };
            last = Some((raw, c));
            codes.out.codes.push(c);
        }
    }
    codes.out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// Each row's coded text is its text from `strings`.
    fn check(df: DataFrame) {
        let table = Table::new(Path::new("t.parquet"), df, 0).unwrap();
        for name in table.column_names() {
            let coded = table.coded(&name).unwrap();
            let text = table.strings(&name).unwrap();
            assert_eq!(coded.codes.len(), text.len(), "{name}");
            for (i, (c, t)) in coded.codes.iter().zip(&text).enumerate() {
                assert_eq!(&coded.values[*c as usize], t, "{name} row {i}");
            }
        }
    }

    #[test]
    fn codes_give_the_text_of_every_type() {
        let long = "a value longer than twelve bytes";
        let df = DataFrame::new_infer_height(vec![
            Column::new(
                "i64".into(),
                [Some(1i64), None, Some(-7), Some(1), Some(i64::MAX)],
            ),
            Column::new(
                "narrow".into(),
                [Some(3i64), Some(0), None, Some(3), Some(65_000)],
            ),
            Column::new("i32".into(), [Some(1i32), Some(2), Some(2), None, Some(-1)]),
            Column::new("u32".into(), [Some(1u32), Some(2), Some(2), None, Some(9)]),
            Column::new(
                "u64".into(),
                [Some(u64::MAX), Some(2), Some(2), None, Some(0)],
            ),
            Column::new(
                "f64".into(),
                [Some(0.5f64), Some(1.0), None, Some(1e-9), Some(0.5)],
            ),
            Column::new(
                "bool".into(),
                [Some(true), Some(false), None, Some(true), Some(true)],
            ),
            Column::new(
                "text".into(),
                [
                    Some("A"),
                    Some(long),
                    None,
                    Some("twelve bytes"),
                    Some(long),
                ],
            ),
            Column::new("nulls".into(), [None::<i64>, None, None, None, None]),
        ])
        .unwrap();
        check(df.clone());
        // Several chunks, as a file read in pieces gives them.
        let mut two = df.slice(0, 2);
        two.vstack_mut(&df.slice(2, 3)).unwrap();
        check(two);
    }

    #[test]
    fn equal_strings_share_a_code() {
        let df = DataFrame::new_infer_height(vec![Column::new(
            "g".into(),
            ["B", "A", "B", "", "A", "C"],
        )])
        .unwrap();
        let table = Table::new(Path::new("t.csv"), df, 0).unwrap();
        let coded = table.coded("g").unwrap();
        assert_eq!(coded.codes, [0, 1, 0, 2, 1, 3]);
        assert_eq!(
            coded.values,
            ["B", "A", "", "C"].map(|s| Some(s.to_string()))
        );
    }
}
