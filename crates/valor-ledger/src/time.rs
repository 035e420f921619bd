//! UTC timestamps as RFC 3339 strings with microseconds, without a date
//! library (the civil-from-days arithmetic of H. Hinnant's `chrono`-free
//! algorithms).

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A point in time, microseconds since the Unix epoch (UTC). Serialised as
/// `2026-12-05T10:20:00.123456Z`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    unix_micros: i64,
}

impl Timestamp {
    /// The system clock now.
    pub fn now() -> Self {
        let micros = match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_micros() as i64,
            Err(e) => -(e.duration().as_micros() as i64),
        };
        Self {
            unix_micros: micros,
        }
    }

    /// From microseconds since the Unix epoch.
    pub const fn from_unix_micros(unix_micros: i64) -> Self {
        Self { unix_micros }
    }

    /// Microseconds since the Unix epoch.
    pub const fn unix_micros(self) -> i64 {
        self.unix_micros
    }

    /// Seconds since the Unix epoch, as a float.
    pub fn unix_seconds(self) -> f64 {
        self.unix_micros as f64 / 1e6
    }

    /// Parses `YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z` (UTC only; digits past the
    /// microsecond are dropped).
    pub fn parse(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() < 20 || *b.last()? != b'Z' {
            return None;
        }
        let num = |r: std::ops::Range<usize>| -> Option<i64> {
            let t = s.get(r)?;
            if t.bytes().all(|c| c.is_ascii_digit()) {
                t.parse().ok()
            } else {
                None
            }
        };
        if b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
            return None;
        }
        let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
            return None;
        }
        let rest = &s[19..s.len() - 1];
        let micros = if rest.is_empty() {
            0
        } else {
            let frac = rest.strip_prefix('.')?;
            if frac.is_empty() || frac.len() > 9 || !frac.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let mut digits = frac.to_owned();
            digits.truncate(6);
            while digits.len() < 6 {
                digits.push('0');
            }
            digits.parse::<i64>().ok()?
        };
        let days = days_from_civil(y, mo, d);
        Some(Self {
            unix_micros: ((days * 24 + h) * 60 + mi) * 60_000_000 + se * 1_000_000 + micros,
        })
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month, day) of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.unix_micros.div_euclid(1_000_000);
        let micros = self.unix_micros.rem_euclid(1_000_000);
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
            sod / 3600,
            sod / 60 % 60,
            sod % 60
        )
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Timestamp::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "`{s}` is not a UTC time like 2026-12-05T10:20:00.123456Z"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_knows_the_calendar() {
        let t = Timestamp::parse("2024-02-29T23:59:59.999999Z").unwrap();
        assert_eq!(t.to_string(), "2024-02-29T23:59:59.999999Z");
        assert_eq!(
            Timestamp::from_unix_micros(0).to_string(),
            "1970-01-01T00:00:00.000000Z"
        );
        // 2000-03-01 is day 11017.
        assert_eq!(
            Timestamp::parse("2000-03-01T00:00:00Z")
                .unwrap()
                .unix_micros(),
            11_017 * 86_400 * 1_000_000
        );
        assert_eq!(
            Timestamp::from_unix_micros(-1).to_string(),
            "1969-12-31T23:59:59.999999Z"
        );
        for micros in [
            0i64,
            1,
            951_782_400_123_456,
            4_102_444_800_000_000,
            -86_400_000_001,
        ] {
            let t = Timestamp::from_unix_micros(micros);
            assert_eq!(Timestamp::parse(&t.to_string()), Some(t));
        }
        assert_eq!(Timestamp::parse("2024-13-01T00:00:00Z"), None);
        assert_eq!(Timestamp::parse("2024-01-01 00:00:00Z"), None);
        assert_eq!(Timestamp::parse("2024-01-01T00:00:00+01:00"), None);
    }
}
