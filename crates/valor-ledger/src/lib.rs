//! The decision log of a served model: one JSON Lines record per request
//! (refusals included) and per feedback outcome, hash-chained so that a
//! changed, removed or reordered record is found, written in group
//! commits with fsync, rotated by size, and readable after a crash.
//!
//! Does not know about: HTTP, models, tensors, burn, polars, tokio,
//! fairness. The server hands it plain [`Entry`] values; `valor log verify`
//! and `valor monitor` read them back.
//!
//! # Format
//!
//! A log is a folder of files `ledger-000001.jsonl`, `ledger-000002.jsonl`,
//! … holding one chain. Each line is one record, a JSON object whose first
//! two fields are `seq` (0, 1, 2, … across all files) and `prev` (the hash
//! of record `seq − 1`; for record 0, [`GENESIS`], 64 zeros), then `kind`
//! and the entry's fields ([`Decision`], [`Feedback`], [`Open`],
//! [`Segment`]), and last `hash`:
//!
//! ```text
//! {"seq":7,"prev":"9f2c…","kind":"decision","time":"2026-12-05T10:20:00.123456Z",…,"hash":"41d0…"}
//! ```
//!
//! **What the hash covers.** `hash` is the SHA-256 (lowercase hex) of the
//! line's exact bytes with the `,"hash":"…"` member removed, that is, of the
//! UTF-8 text from the opening `{` up to the last value, followed by `}`.
//! The bytes are the canonical serialisation: the verifier hashes the
//! bytes on disk and never re-serialises, so number formatting or key
//! order cannot make a true record fail or a changed one pass. Since `prev`
//! is inside the hashed bytes, each record's hash commits to the whole
//! chain before it.
//!
//! **Files.** The first record of every file is a `segment` record naming
//! the file and the file before it, chained like every other record, so a
//! removed or renamed file breaks the chain. Every start of the writer
//! logs an `open` record; if a crash had left a torn final record, the
//! writer cuts those bytes off first and the `open` record says where and
//! how many ([`Recovered`]).
//!
//! **What it proves.** [`verify`] recomputes every hash and link and
//! names the first record that was changed, removed or reordered (file,
//! line, index). A rewrite of the log from some record on, with every hash
//! recomputed, or records cut from the end, can only be detected against a
//! copy of the head hash kept elsewhere: [`verify`] reports the head
//! ([`ChainHead`]) so that it can be published and compared.
//!
//! # Writing
//!
//! [`Ledger::open`] starts one writer thread per folder (an OS lock keeps
//! a second writer out). [`Ledger::append`] serialises the entry on the
//! caller's thread and queues it (a bounded queue; [`Ledger::try_append`]
//! fails instead of waiting). The writer, which appends never wake (it
//! polls every 2 ms after a commit, backing off to 20 ms while idle;
//! flushes and closes wake it), takes whatever is queued, up to
//! [`LedgerConfig::max_batch`] records, chains and hashes them, writes
//! them with one `write` and one `fdatasync` (a group commit) and answers
//! waiting [`Ledger::flush`]es. A file that would grow past
//! [`LedgerConfig::max_file_bytes`] is closed and the next one begun.
//! Records are whole lines written by `write` on an append-only file, so
//! after a SIGKILL the file ends at a complete record; only a power loss
//! or a full disk in the middle of a write can leave a torn final line,
//! which [`verify`] reports as a [`TornTail`] (not a break) and the next
//! [`Ledger::open`] removes.
//!
//! # Reading
//!
//! [`LedgerReader`] streams [`StoredRecord`]s back in chain order and
//! checks the chain as it goes; [`verify`] walks it all and returns a
//! [`VerifyReport`].

mod chain;
mod error;
mod record;
mod time;
mod verify;
mod writer;

pub use chain::{Failure, FailureKind, TornTail};
pub use error::{Error, Result};
pub use record::{
    Decision, Entry, Feedback, GENESIS, InputStats, Open, Probabilities, Recovered, Segment,
    StoredRecord, text_sha256,
};
pub use time::Timestamp;
pub use verify::{ChainHead, LedgerReader, VerifyReport, verify};
pub use writer::{LOCK_FILE, Ledger, LedgerConfig};
