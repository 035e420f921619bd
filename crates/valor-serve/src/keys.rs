//! API keys: `valor_<id>_<secret>`, the id 16 hex digits (64 random bits,
//! not secret), the secret 64 hex digits (256 bits from the operating
//! system's generator, shown once). The keys file (TOML, written by
//! `valor keys`) stores per key only the id, the SHA-256 of the secret, its
//! scopes, and optionally an expiry, a rate limit, a name and the time it
//! was revoked:
//!
//! ```toml
//! [[key]]
//! id = "3f9a1c2b7d4e5f60"
//! sha256 = "9c1e…"            # of the secret's 64 hex digits
//! scopes = ["predict", "explain"]
//! created = "2026-12-05T10:00:00Z"
//! expires = "2027-01-01T00:00:00Z"
//! rate_limit_per_s = 20
//! ```
//!
//! [`KeyStore`] is the server's view of a keys file: it checks a presented
//! key in constant time ([`subtle`]) against the stored hash and answers
//! who the caller is, or why not (unknown, expired, revoked: all 401 over
//! HTTP). A secret is never stored, logged or put in an error: errors name
//! the key id at most.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::{Error, Result};

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Scope {
    /// `POST /predict`, `POST /decide` (`GET /info` takes any valid key).
    #[serde(rename = "predict")]
    Predict,
    /// `POST /decide` with `"explain": true`.
    #[serde(rename = "explain")]
    Explain,
    /// `POST /feedback`.
    #[serde(rename = "feedback")]
    Feedback,
    /// `GET /fairness`, `GET /metrics`.
    #[serde(rename = "audit:read")]
    AuditRead,
    /// Every scope.
    #[serde(rename = "admin")]
    Admin,
}

impl Scope {
    /// Every scope, in the order help texts list them.
    pub const ALL: [Scope; 5] = [
        Scope::Predict,
        Scope::Explain,
        Scope::Feedback,
        Scope::AuditRead,
        Scope::Admin,
    ];

    /// The name in keys files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Predict => "predict",
            Scope::Explain => "explain",
            Scope::Feedback => "feedback",
            Scope::AuditRead => "audit:read",
            Scope::Admin => "admin",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Scope::ALL
            .into_iter()
            .find(|x| x.name() == s.trim())
            .ok_or_else(|| {
                format!(
                    "unknown scope `{s}`; scopes are: {}",
                    Scope::ALL.map(Scope::name).join(", ")
                )
            })
    }
}

/// One key as the keys file stores it: no secret, its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRecord {
    /// 16 hex digits; the `<id>` of `valor_<id>_<secret>`.
    pub id: String,
    /// SHA-256 (lowercase hex) of the secret's 64 hex digits.
    pub sha256: String,
    /// What the key may do.
    pub scopes: BTreeSet<Scope>,
    /// A free-form name (who holds the key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// When it was made (RFC 3339, UTC).
    pub created: String,
    /// After this instant (RFC 3339) the key is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// Requests per second (also the burst); over it, 429.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_per_s: Option<u32>,
    /// When it was revoked (RFC 3339); a revoked key is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<String>,
}

impl KeyRecord {
    /// Whether the key grants `scope` (`admin` grants all).
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope) || self.scopes.contains(&Scope::Admin)
    }
}

/// A keys file: every key ever made, revoked ones included.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysFile {
    /// The keys, in the order they were made.
    #[serde(default, rename = "key")]
    pub keys: Vec<KeyRecord>,
}

/// A new key: its record (to store) and the key itself (to show once).
#[derive(Clone)]
pub struct NewKey {
    /// What the keys file stores.
    pub record: KeyRecord,
    /// `valor_<id>_<secret>`: shown to the user once, stored nowhere.
    pub key: String,
}

impl fmt::Debug for NewKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewKey")
            .field("record", &self.record)
            .field("key", &"<secret>")
            .finish()
    }
}

const HEADER: &str = "# valor serve keys: ids, SHA-256 of the secrets, scopes. Written by `valor keys`;\n\
# the secrets themselves are stored nowhere.\n\n";

impl KeysFile {
    /// Reads `path`; a file that does not exist is an error unless
    /// `missing_ok`, when it is an empty file.
    pub fn load(path: &Path, missing_ok: bool) -> Result<Self> {
        let err = |message: String| Error::Keys {
            path: path.to_path_buf(),
            message,
        };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && missing_ok => {
                return Ok(Self::default());
            }
            Err(e) => return Err(err(e.to_string())),
        };
        let file: Self = toml::from_str(&text).map_err(|e| err(format!("invalid TOML: {e}")))?;
        let mut seen = BTreeSet::new();
        for k in &file.keys {
            let at = |m: String| err(format!("key `{}`: {m}", k.id));
            if !is_hex(&k.id, ID_HEX) {
                return Err(at(format!("the id must be {ID_HEX} hex digits")));
            }
            if !seen.insert(k.id.as_str()) {
                return Err(at("the id appears twice".into()));
            }
            if !is_hex(&k.sha256, 64) {
                return Err(at("`sha256` must be 64 hex digits".into()));
            }
            if k.scopes.is_empty() {
                return Err(at("no scopes".into()));
            }
            for (field, value) in [
                ("created", Some(&k.created)),
                ("expires", k.expires.as_ref()),
                ("revoked", k.revoked.as_ref()),
            ] {
                if let Some(v) = value {
                    parse_time(v).map_err(|e| at(format!("`{field}`: {e}")))?;
                }
            }
            if k.rate_limit_per_s == Some(0) {
                return Err(at("`rate_limit_per_s` must be at least 1".into()));
            }
        }
        Ok(file)
    }

    /// Writes the file atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let body = toml::to_string_pretty(self).map_err(|e| Error::Keys {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        valor_fsio::write_atomic(path, |f| {
            use std::io::Write;
            f.write_all(HEADER.as_bytes())?;
            f.write_all(body.as_bytes())
        })?;
        Ok(())
    }

    /// Makes a key with a fresh id and secret from the OS generator and
    /// adds its record.
    pub fn create(
        &mut self,
        scopes: BTreeSet<Scope>,
        expires: Option<SystemTime>,
        rate_limit_per_s: Option<u32>,
        name: Option<String>,
    ) -> Result<NewKey> {
        if scopes.is_empty() {
            return Err(Error::Config {
                flag: "--scopes",
                message: "give at least one scope".into(),
            });
        }
        if rate_limit_per_s == Some(0) {
            return Err(Error::Config {
                flag: "--rate-limit",
                message: "must be at least 1 request per second".into(),
            });
        }
        let id = loop {
            let id = hex(&random_bytes::<8>()?);
            if !self.keys.iter().any(|k| k.id == id) {
                break id;
            }
        };
        let secret = hex(&random_bytes::<32>()?);
        let record = KeyRecord {
            sha256: secret_sha256(&secret),
            id: id.clone(),
            scopes,
            name,
            created: format_time(SystemTime::now()),
            expires: expires.map(format_time),
            rate_limit_per_s,
            revoked: None,
        };
        self.keys.push(record.clone());
        Ok(NewKey {
            record,
            key: format!("valor_{id}_{secret}"),
        })
    }

    /// Marks key `id` revoked now. Revoking a revoked key keeps its first
    /// revocation time.
    pub fn revoke(&mut self, id: &str, path: &Path) -> Result<&KeyRecord> {
        let known: Vec<String> = self.keys.iter().map(|k| k.id.clone()).collect();
        let key = self
            .keys
            .iter_mut()
            .find(|k| k.id == id)
            .ok_or_else(|| Error::Keys {
                path: path.to_path_buf(),
                message: format!(
                    "no key `{id}`; its keys are: {}",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            })?;
        if key.revoked.is_none() {
            key.revoked = Some(format_time(SystemTime::now()));
        }
        Ok(key)
    }
}

/// Hex digits in a key id.
const ID_HEX: usize = 16;

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| Error::Config {
        flag: "keys",
        message: format!("the operating system's random generator failed: {e}"),
    })?;
    Ok(buf)
}

/// SHA-256 (lowercase hex) of a key's secret part.
pub fn secret_sha256(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

/// An instant as RFC 3339 UTC, to the second.
pub fn format_time(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Parses an RFC 3339 instant (`2027-01-01T00:00:00Z`).
pub fn parse_time(s: &str) -> std::result::Result<SystemTime, String> {
    humantime::parse_rfc3339_weak(s)
        .map_err(|e| format!("`{s}` is not an RFC 3339 time (e.g. 2027-01-01T00:00:00Z): {e}"))
}

/// `--expires`: a time span from now (`30d`, `12h`) or an RFC 3339 instant.
pub fn parse_expiry(s: &str, now: SystemTime) -> std::result::Result<SystemTime, String> {
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(now + d);
    }
    parse_time(s).map_err(|_| {
        format!(
            "`{s}` is neither a time span (30d, 12h) nor an RFC 3339 time (2027-01-01T00:00:00Z)"
        )
    })
}

/// Why a request's key was refused (all 401 over HTTP). The messages
/// name the key id at most, never the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No `Authorization: Bearer …` header.
    Missing,
    /// Not of the form `valor_<id>_<secret>`.
    Malformed,
    /// No key with this id, or the secret does not match.
    Unknown,
    /// Past its expiry.
    Expired { id: String },
    /// Revoked.
    Revoked { id: String },
}

impl Refusal {
    /// A bounded label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Missing => "missing",
            Refusal::Malformed => "malformed",
            Refusal::Unknown => "unknown",
            Refusal::Expired { .. } => "expired",
            Refusal::Revoked { .. } => "revoked",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Missing => f.write_str(
                "missing API key: send `Authorization: Bearer valor_<id>_<secret>` (make one with `valor keys create`)",
            ),
            Refusal::Malformed => {
                f.write_str("malformed API key: expected `valor_<id>_<secret>` (16 and 64 hex digits)")
            }
            Refusal::Unknown => f.write_str("unknown API key"),
            Refusal::Expired { id } => write!(f, "API key `{id}` has expired"),
            Refusal::Revoked { id } => write!(f, "API key `{id}` was revoked"),
        }
    }
}

/// One usable key of a [`KeyStore`].
#[derive(Debug)]
pub struct StoredKey {
    /// The record from the keys file.
    pub record: KeyRecord,
    hash: [u8; 32],
    expires: Option<SystemTime>,
    revoked: bool,
    /// The per-key rate limiter, when the record sets one.
    pub limiter: Option<DefaultDirectRateLimiter>,
}

/// The server's keys, read from a keys file (re-read on SIGHUP).
#[derive(Debug, Default)]
pub struct KeyStore {
    path: Option<PathBuf>,
    keys: BTreeMap<String, StoredKey>,
}

impl KeyStore {
    /// Reads the keys file at `path` (which must exist).
    pub fn load(path: &Path) -> Result<Self> {
        let file = KeysFile::load(path, false)?;
        let mut keys = BTreeMap::new();
        for record in file.keys {
            let mut hash = [0u8; 32];
            for (i, b) in hash.iter_mut().enumerate() {
                *b = u8::from_str_radix(&record.sha256[2 * i..2 * i + 2], 16).unwrap_or(0);
            }
            let expires = record.expires.as_deref().map(parse_time).transpose();
            let expires = expires.map_err(|message| Error::Keys {
                path: path.to_path_buf(),
                message,
            })?;
            let limiter = record
                .rate_limit_per_s
                .and_then(NonZeroU32::new)
                .map(|n| RateLimiter::direct(Quota::per_second(n)));
            keys.insert(
                record.id.clone(),
                StoredKey {
                    hash,
                    expires,
                    revoked: record.revoked.is_some(),
                    limiter,
                    record,
                },
            );
        }
        Ok(Self {
            path: Some(path.to_path_buf()),
            keys,
        })
    }

    /// The file it was read from.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// How many keys are usable now (not revoked, not expired).
    pub fn active(&self, now: SystemTime) -> usize {
        self.keys
            .values()
            .filter(|k| !k.revoked && k.expires.is_none_or(|e| now < e))
            .count()
    }

    /// Checks an `Authorization` header value (`Bearer valor_<id>_<secret>`)
    /// at `now`. The secret's hash is compared in constant time.
    pub fn authenticate(
        &self,
        header: Option<&str>,
        now: SystemTime,
    ) -> std::result::Result<&StoredKey, Refusal> {
        let header = header.ok_or(Refusal::Missing)?.trim();
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or(Refusal::Malformed)?
            .trim();
        let (id, secret) = parse_key(token).ok_or(Refusal::Malformed)?;
        let key = self.keys.get(id).ok_or(Refusal::Unknown)?;
        let presented: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        if !bool::from(presented.ct_eq(&key.hash)) {
            return Err(Refusal::Unknown);
        }
        if key.revoked {
            return Err(Refusal::Revoked { id: id.to_string() });
        }
        if key.expires.is_some_and(|e| now >= e) {
            return Err(Refusal::Expired { id: id.to_string() });
        }
        Ok(key)
    }
}

/// Splits `valor_<id>_<secret>` into id and secret, checking their forms.
pub fn parse_key(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix("valor_")?;
    let (id, secret) = rest.split_once('_')?;
    (is_hex(id, ID_HEX) && is_hex(secret, 64)).then_some((id, secret))
}

/// Time left until a rate-limited key may send again, or `None` if it may
/// send now (the request is counted).
pub fn rate_limited(key: &StoredKey) -> Option<Duration> {
    let limiter = key.limiter.as_ref()?;
    match limiter.check() {
        Ok(()) => None,
        Err(not_until) => {
            use governor::clock::Clock;
            Some(not_until.wait_time_from(limiter.clock().now()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scopes(s: &[Scope]) -> BTreeSet<Scope> {
        s.iter().copied().collect()
    }

    #[test]
    fn created_keys_authenticate_and_the_file_holds_no_secret() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.toml");
        let mut file = KeysFile::default();
        let a = file
            .create(scopes(&[Scope::Predict]), None, None, Some("a".into()))
            .unwrap();
        let b = file
            .create(scopes(&[Scope::AuditRead]), None, Some(5), None)
            .unwrap();
        file.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        for k in [&a, &b] {
            let (_, secret) = parse_key(&k.key).unwrap();
            assert!(!text.contains(secret), "the secret is in the keys file");
            assert!(text.contains(&k.record.id));
        }
        let store = KeyStore::load(&path).unwrap();
        let now = SystemTime::now();
        let got = store
            .authenticate(Some(&format!("Bearer {}", a.key)), now)
            .unwrap();
        assert_eq!(got.record.id, a.record.id);
        assert!(got.record.allows(Scope::Predict) && !got.record.allows(Scope::Explain));
        // A wrong secret for a known id, a missing header, a malformed key.
        let (id, secret) = parse_key(&a.key).unwrap();
        let mut wrong = secret.to_string();
        wrong.replace_range(0..1, if secret.starts_with('0') { "1" } else { "0" });
        let forged = format!("Bearer valor_{id}_{wrong}");
        assert_eq!(
            store.authenticate(Some(&forged), now).unwrap_err(),
            Refusal::Unknown
        );
        assert_eq!(store.authenticate(None, now).unwrap_err(), Refusal::Missing);
        assert_eq!(
            store.authenticate(Some("Bearer abc"), now).unwrap_err(),
            Refusal::Malformed
        );
        // Refusal messages never carry the secret.
        for r in [
            Refusal::Unknown,
            Refusal::Malformed,
            Refusal::Revoked { id: id.into() },
        ] {
            assert!(!r.to_string().contains(secret));
        }
    }

    #[test]
    fn revoked_and_expired_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.toml");
        let mut file = KeysFile::default();
        let now = SystemTime::now();
        let a = file
            .create(scopes(&[Scope::Admin]), None, None, None)
            .unwrap();
        let b = file
            .create(
                scopes(&[Scope::Predict]),
                Some(now + Duration::from_secs(3600)),
                None,
                None,
            )
            .unwrap();
        file.revoke(&a.record.id, &path).unwrap();
        assert!(file.revoke("0000000000000000", &path).is_err());
        file.save(&path).unwrap();
        let store = KeyStore::load(&path).unwrap();
        let bearer = |k: &NewKey| format!("Bearer {}", k.key);
        assert!(matches!(
            store.authenticate(Some(&bearer(&a)), now),
            Err(Refusal::Revoked { .. })
        ));
        assert!(store.authenticate(Some(&bearer(&b)), now).is_ok());
        let later = now + Duration::from_secs(7200);
        assert!(matches!(
            store.authenticate(Some(&bearer(&b)), later),
            Err(Refusal::Expired { .. })
        ));
        assert_eq!(store.active(now), 1);
        assert_eq!(store.active(later), 0);
    }

    #[test]
    fn rate_limits_refuse_past_the_burst() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.toml");
        let mut file = KeysFile::default();
        let k = file
            .create(scopes(&[Scope::Predict]), None, Some(2), None)
            .unwrap();
        file.save(&path).unwrap();
        let store = KeyStore::load(&path).unwrap();
        let key = store
            .authenticate(Some(&format!("Bearer {}", k.key)), SystemTime::now())
            .unwrap();
        assert!(rate_limited(key).is_none());
        assert!(rate_limited(key).is_none());
        let wait = rate_limited(key).expect("the third request within a second is limited");
        assert!(wait <= Duration::from_secs(1));
    }

    #[test]
    fn bad_keys_files_name_the_key_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.toml");
        std::fs::write(
            &path,
            "[[key]]\nid = \"00000000000000aa\"\nsha256 = \"xyz\"\nscopes = [\"predict\"]\ncreated = \"2026-01-01T00:00:00Z\"\n",
        )
        .unwrap();
        let e = KeysFile::load(&path, false).unwrap_err().to_string();
        assert!(
            e.contains("00000000000000aa") && e.contains("sha256"),
            "{e}"
        );
        std::fs::write(
            &path,
            "[[key]]\nid = \"00000000000000aa\"\nscopes = [\"root\"]\n",
        )
        .unwrap();
        let e = KeysFile::load(&path, false).unwrap_err().to_string();
        assert!(e.contains("root"), "{e}");
        assert!(
            KeysFile::load(&dir.path().join("none.toml"), true)
                .unwrap()
                .keys
                .is_empty()
        );
        assert!(KeysFile::load(&dir.path().join("none.toml"), false).is_err());
    }

    #[test]
    fn expiry_parses_spans_and_instants() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(
            parse_expiry("1h", now).unwrap(),
            now + Duration::from_secs(3600)
        );
        let t = parse_expiry("2027-01-01T00:00:00Z", now).unwrap();
        assert_eq!(format_time(t), "2027-01-01T00:00:00Z");
        assert!(parse_expiry("soon", now).is_err());
    }
}
