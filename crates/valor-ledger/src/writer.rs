//! The writer: entries handed over a bounded queue to one thread that
//! writes them in group commits (one `write` and one `fdatasync` per batch)
//! and rotates files by size.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::{JoinHandle, Thread};
use std::time::Duration;

use crate::chain::{file_name, list_files};
use crate::error::{Error, Result, io};
use crate::record::{
    Entry, GENESIS, Open, Recovered, Segment, body, entry_tail, line, parse_line, sha256_hex,
};
use crate::time::Timestamp;
use crate::verify::ChainHead;
use crate::{Failure, FailureKind};

/// Name of the lock file that keeps a second writer out of a log folder.
pub const LOCK_FILE: &str = "ledger.lock";

/// How the writer batches, syncs and rotates.
#[derive(Clone, Debug)]
pub struct LedgerConfig {
    /// A file is closed and the next begun once it would grow past this
    /// many bytes (a single record larger than this still gets a file).
    pub max_file_bytes: u64,
    /// Most records written by one commit.
    pub max_batch: usize,
    /// Entries that may wait in the queue; [`Ledger::append`] blocks and
    /// [`Ledger::try_append`] fails while it is full.
    pub queue_capacity: usize,
    /// `fdatasync` after every batch (off only for tests and benchmarks
    /// that measure everything but the disk).
    pub fsync: bool,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        Self {
            max_file_bytes: 64 << 20,
            max_batch: 1024,
            queue_capacity: 65_536,
            fsync: true,
        }
    }
}

/// How long the writer sleeps when its queue is empty before it looks
/// again: [`COMMIT_INTERVAL`] after a commit, doubling while the queue stays
/// empty up to [`IDLE_INTERVAL`] (an idle server wakes 50 times a second,
/// not 500). Appends do not wake it: waking a sleeping thread cost the
/// appending request about 20 µs on this project's virtual machines (a
/// futex wake, often an inter-processor interrupt), where pushing onto the
/// queue costs well under one. So a record waits at most [`IDLE_INTERVAL`]
/// for its group commit; [`Ledger::flush`] and [`Ledger::close`] wake the
/// writer at once.
const COMMIT_INTERVAL: Duration = Duration::from_millis(2);
const IDLE_INTERVAL: Duration = Duration::from_millis(20);

enum Msg {
    Entry(String),
    Flush(mpsc::Sender<Result<ChainHead, String>>),
    Close(mpsc::Sender<Result<ChainHead, String>>),
}

struct Shared {
    /// Set when the writer thread stopped on an I/O error.
    failed: Mutex<Option<String>>,
}

/// The writing end of a decision log folder. Cheap to share (`Arc`); every
/// method takes `&self`. Entries are serialised on the caller's thread and
/// hashed, chained and written on the writer's; [`Ledger::append`]
/// returns once the entry is queued, [`Ledger::flush`] once everything
/// queued before it is on disk (written and fsync'd).
pub struct Ledger {
    tx: SyncSender<Msg>,
    /// `true` once closed; appends hold the read lock while they queue,
    /// so nothing is queued behind the close.
    closed: RwLock<bool>,
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// The writer thread, to wake for a flush or close.
    writer: Thread,
    dir: PathBuf,
    capacity: usize,
    recovered: Option<Recovered>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("dir", &self.dir)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl Ledger {
    /// Opens (or creates) the log in `dir` and starts the writer thread.
    ///
    /// An existing log continues its chain. If the last file ends inside a
    /// record (a crash during a write), those bytes are cut off first, and
    /// the `open` record that every start writes says so
    /// ([`Ledger::recovered`]). The last complete record must verify
    /// against its own hash, else this fails naming it (run
    /// [`crate::verify`]). A second writer on the same folder is refused
    /// (an OS lock on `ledger.lock`).
    pub fn open(dir: &Path, config: LedgerConfig) -> Result<Self> {
        if config.max_batch == 0 || config.queue_capacity == 0 {
            return Err(Error::InvalidEntry {
                why: "max_batch and queue_capacity must be at least 1".into(),
            });
        }
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        if let Err(e) = lock.try_lock() {
            return Err(Error::Io {
                path: lock_path,
                source: std::io::Error::other(format!(
                    "another writer holds this decision log ({e})"
                )),
            });
        }
        let (mut w, recovered) = Writer::resume(dir, config.clone(), lock)?;
        let open = Entry::Open(Open {
            time: Timestamp::now(),
            writer: format!("valor-ledger {}", env!("CARGO_PKG_VERSION")),
            recovered: recovered.clone(),
        });
        w.push(&entry_tail(&open)?)?;
        w.commit()?;
        let (tx, rx) = mpsc::sync_channel(config.queue_capacity);
        let shared = Arc::new(Shared {
            failed: Mutex::new(None),
        });
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("valor-ledger".into())
            .spawn(move || w.run(rx, &sh))
            .map_err(io(dir))?;
        Ok(Self {
            tx,
            closed: RwLock::new(false),
            shared,
            writer: thread.thread().clone(),
            thread: Mutex::new(Some(thread)),
            dir: dir.to_owned(),
            capacity: config.queue_capacity,
            recovered,
        })
    }

    /// The log folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What [`Ledger::open`] cut off the end of the log, if anything.
    pub fn recovered(&self) -> Option<&Recovered> {
        self.recovered.as_ref()
    }

    fn check(&self) -> Result<()> {
        if let Some(why) = self
            .shared
            .failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        {
            return Err(Error::WriterFailed { why });
        }
        Ok(())
    }

    /// Queues an entry; blocks while the queue is full. Errors when the
    /// entry cannot be serialised (a non-finite number), or the writer has
    /// stopped or been closed.
    pub fn append(&self, entry: impl Into<Entry>) -> Result<()> {
        let tail = entry_tail(&entry.into())?;
        self.check()?;
        let closed = self.closed.read().unwrap_or_else(PoisonError::into_inner);
        if *closed {
            return Err(Error::Closed);
        }
        self.tx.send(Msg::Entry(tail)).map_err(|_| self.gone())
    }

    /// [`Ledger::append`] that fails with [`Error::QueueFull`] instead of
    /// waiting.
    pub fn try_append(&self, entry: impl Into<Entry>) -> Result<()> {
        let tail = entry_tail(&entry.into())?;
        self.check()?;
        let closed = self.closed.read().unwrap_or_else(PoisonError::into_inner);
        if *closed {
            return Err(Error::Closed);
        }
        match self.tx.try_send(Msg::Entry(tail)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(Error::QueueFull {
                capacity: self.capacity,
            }),
            Err(TrySendError::Disconnected(_)) => Err(self.gone()),
        }
    }

    fn gone(&self) -> Error {
        match self.check() {
            Err(e) => e,
            Ok(()) => Error::Closed,
        }
    }

    /// Waits until every entry queued before this call is written and
    /// synced; returns the chain's head (the last record's index and hash).
    pub fn flush(&self) -> Result<ChainHead> {
        let (s, r) = mpsc::channel();
        {
            let closed = self.closed.read().unwrap_or_else(PoisonError::into_inner);
            if *closed {
                return Err(Error::Closed);
            }
            self.tx.send(Msg::Flush(s)).map_err(|_| self.gone())?;
        }
        self.writer.unpark();
        match r.recv() {
            Ok(Ok(head)) => Ok(head),
            Ok(Err(why)) => Err(Error::WriterFailed { why }),
            Err(_) => Err(self.gone()),
        }
    }

    /// Writes and syncs everything queued, stops the writer thread and
    /// releases the folder. Later appends fail with [`Error::Closed`].
    /// Closing twice is an error.
    pub fn close(&self) -> Result<ChainHead> {
        let (s, r) = mpsc::channel();
        {
            let mut closed = self.closed.write().unwrap_or_else(PoisonError::into_inner);
            if *closed {
                return Err(Error::Closed);
            }
            *closed = true;
            self.tx.send(Msg::Close(s)).map_err(|_| self.gone())?;
        }
        self.writer.unpark();
        let out = match r.recv() {
            Ok(Ok(head)) => Ok(head),
            Ok(Err(why)) => Err(Error::WriterFailed { why }),
            Err(_) => Err(self.gone()),
        };
        if let Some(t) = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            let _ = t.join();
        }
        out
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        let already = *self.closed.read().unwrap_or_else(PoisonError::into_inner);
        if !already {
            let _ = self.close();
        }
    }
}

struct Writer {
    dir: PathBuf,
    config: LedgerConfig,
    file: File,
    path: PathBuf,
    index: u32,
    file_bytes: u64,
    records_in_file: u64,
    seq: u64,
    prev: String,
    buf: Vec<u8>,
    _lock: File,
}

fn name_of(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The last complete record of `bytes` (a file's content up to its last
/// newline): its index and hash, and its 1-based line.
fn last_record(path: &Path, bytes: &[u8]) -> Result<Option<(u64, String)>> {
    let lines = bytes.iter().filter(|b| **b == b'\n').count() as u64;
    let Some(body) = bytes.strip_suffix(b"\n") else {
        return Ok(None);
    };
    let start = body.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    match parse_line(&body[start..]) {
        Ok((head, hash, _)) => Ok(Some((head.seq, hash))),
        Err(why) => Err(Error::Broken(Failure {
            kind: FailureKind::Changed,
            file: path.to_owned(),
            line: lines,
            record: 0,
            why: format!("the log's last record does not verify ({why}); run `valor log verify`"),
        })),
    }
}

impl Writer {
    fn resume(dir: &Path, config: LedgerConfig, lock: File) -> Result<(Self, Option<Recovered>)> {
        let files = list_files(dir)?;
        let mut recovered = None;
        let Some((index, path)) = files.last().cloned() else {
            let mut w = Self::create(dir, config, lock, 1, 0, GENESIS.to_owned())?;
            w.push_segment(None)?;
            return Ok((w, None));
        };
        let mut content = Vec::new();
        File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut content))
            .map_err(io(&path))?;
        let valid = content
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        if valid < content.len() {
            let torn = &content[valid..];
            recovered = Some(Recovered {
                file: name_of(&path),
                offset: valid as u64,
                bytes: torn.len() as u64,
                sha256: sha256_hex(torn),
            });
            let f = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(io(&path))?;
            f.set_len(valid as u64).map_err(io(&path))?;
            f.sync_all().map_err(io(&path))?;
            content.truncate(valid);
        }
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        if let Some((seq, hash)) = last_record(&path, &content)? {
            let records = content.iter().filter(|b| **b == b'\n').count() as u64;
            let mut w = Self::at(dir, config, lock, (path, file), index, (seq + 1, hash));
            w.file_bytes = valid as u64;
            w.records_in_file = records;
            return Ok((w, recovered));
        }
        // The last file holds no complete record: continue from the file
        // before it (or from the start) and write this file's segment.
        let previous = files.len().checked_sub(2).map(|i| files[i].1.clone());
        let (seq, prev) = match &previous {
            Some(p) => {
                let mut c = Vec::new();
                File::open(p)
                    .and_then(|mut f| f.read_to_end(&mut c))
                    .map_err(io(p))?;
                let valid = c.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
                c.truncate(valid);
                match last_record(p, &c)? {
                    Some((s, h)) => (s + 1, h),
                    None => {
                        return Err(Error::Broken(Failure {
                            kind: FailureKind::FileMissing,
                            file: p.clone(),
                            line: 1,
                            record: 0,
                            why:
                                "a log file before the last holds no record; run `valor log verify`"
                                    .into(),
                        }));
                    }
                }
            }
            None => (0, GENESIS.to_owned()),
        };
        let mut w = Self::at(dir, config, lock, (path, file), index, (seq, prev));
        w.push_segment(previous.as_deref().map(name_of))?;
        Ok((w, recovered))
    }

    fn create(
        dir: &Path,
        config: LedgerConfig,
        lock: File,
        index: u32,
        seq: u64,
        prev: String,
    ) -> Result<Self> {
        let path = dir.join(file_name(index));
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(&path)
            .map_err(io(&path))?;
        valor_fsio::sync_dir(dir).map_err(io(dir))?;
        Ok(Self::at(
            dir,
            config,
            lock,
            (path, file),
            index,
            (seq, prev),
        ))
    }

    /// A writer appending to log file number `index` (at `path`, open as
    /// `file`, empty so far), whose next record is `seq` and links to the
    /// hash `prev`.
    fn at(
        dir: &Path,
        config: LedgerConfig,
        lock: File,
        (path, file): (PathBuf, File),
        index: u32,
        (seq, prev): (u64, String),
    ) -> Self {
        Self {
            dir: dir.to_owned(),
            config,
            file,
            path,
            index,
            file_bytes: 0,
            records_in_file: 0,
            seq,
            prev,
            buf: Vec::new(),
            _lock: lock,
        }
    }

    fn push_segment(&mut self, previous_file: Option<String>) -> Result<()> {
        let seg = Entry::Segment(Segment {
            time: Timestamp::now(),
            file: name_of(&self.path),
            previous_file,
        });
        self.push(&entry_tail(&seg)?)
    }

    /// Chains one entry and adds its line to the batch.
    fn push(&mut self, tail: &str) -> Result<()> {
        let body = body(self.seq, &self.prev, tail);
        let hash = sha256_hex(body.as_bytes());
        let line = line(&body, &hash);
        self.buf.extend_from_slice(line.as_bytes());
        self.file_bytes += line.len() as u64;
        self.records_in_file += 1;
        self.seq += 1;
        self.prev = hash;
        Ok(())
    }

    /// Adds a caller's entry, rotating first if it would overflow the file.
    fn add(&mut self, tail: &str) -> Result<()> {
        let estimate = tail.len() as u64 + 200;
        if self.records_in_file > 1 && self.file_bytes + estimate > self.config.max_file_bytes {
            self.rotate()?;
        }
        self.push(tail)
    }

    fn rotate(&mut self) -> Result<()> {
        self.commit()?;
        let previous = name_of(&self.path);
        let index = self.index + 1;
        let path = self.dir.join(file_name(index));
        self.file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(&path)
            .map_err(io(&path))?;
        valor_fsio::sync_dir(&self.dir).map_err(io(&self.dir))?;
        self.path = path;
        self.index = index;
        self.file_bytes = 0;
        self.records_in_file = 0;
        self.push_segment(Some(previous))
    }

    /// Writes the batch with one `write` and syncs it.
    fn commit(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.file.write_all(&self.buf).map_err(io(&self.path))?;
        if self.config.fsync {
            self.file.sync_data().map_err(io(&self.path))?;
        }
        self.buf.clear();
        Ok(())
    }

    fn head(&self) -> ChainHead {
        ChainHead {
            seq: self.seq - 1,
            hash: self.prev.clone(),
        }
    }

    fn run(mut self, rx: Receiver<Msg>, shared: &Shared) {
        let mut failed: Option<String> = None;
        let mut interval = COMMIT_INTERVAL;
        loop {
            let first = match rx.try_recv() {
                Ok(m) => m,
                Err(TryRecvError::Empty) => {
                    std::thread::park_timeout(interval);
                    interval = (interval * 2).min(IDLE_INTERVAL);
                    continue;
                }
                Err(TryRecvError::Disconnected) => break,
            };
            interval = COMMIT_INTERVAL;
            let mut batch = vec![first];
            while batch.len() < self.config.max_batch {
                match rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            let mut replies = Vec::new();
            let mut closing = false;
            for m in batch {
                match m {
                    Msg::Entry(tail) => {
                        if failed.is_none()
                            && let Err(e) = self.add(&tail)
                        {
                            failed = Some(e.to_string());
                        }
                    }
                    Msg::Flush(s) => replies.push(s),
                    Msg::Close(s) => {
                        replies.push(s);
                        closing = true;
                    }
                }
            }
            if closing {
                // Appends raced with the close hold the read lock the close
                // waited for, so whatever is queued now is all there is.
                while let Ok(m) = rx.try_recv() {
                    match m {
                        Msg::Entry(tail) => {
                            if failed.is_none()
                                && let Err(e) = self.add(&tail)
                            {
                                failed = Some(e.to_string());
                            }
                        }
                        Msg::Flush(s) | Msg::Close(s) => replies.push(s),
                    }
                }
            }
            if failed.is_none()
                && let Err(e) = self.commit()
            {
                failed = Some(e.to_string());
            }
            if let Some(why) = &failed {
                *shared.failed.lock().unwrap_or_else(PoisonError::into_inner) = Some(why.clone());
            }
            let answer = match &failed {
                None => Ok(self.head()),
                Some(why) => Err(why.clone()),
            };
            for r in replies {
                let _ = r.send(answer.clone());
            }
            if closing {
                break;
            }
        }
    }
}
