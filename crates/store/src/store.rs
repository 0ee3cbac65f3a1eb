//! The store's thread: group commit, the modes, failures and compaction.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tinsel_core::{Histogram, Record, Restored, Ticket};
use tracing::{error, info, warn};

use crate::entry::{Entry, Kept, encode_entry, encode_record};
use crate::error::Error;
use crate::fold::State;
use crate::fs::{FileSystem, LogFile};
use crate::log::{finish_frame, scan, start_frame};

/// When acknowledgements may leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Only once what they acknowledge is synced (the default).
    Sync,
    /// At once; the log is synced every interval: a power loss loses at most that long.
    Periodic(Duration),
    /// At once; the log is written at once and synced when the OS decides (and on stop).
    None,
}

/// Where and how the store keeps its log.
#[derive(Debug, Clone)]
pub struct Options {
    /// The directory (created if missing).
    pub dir: PathBuf,
    /// The log's file name in it.
    pub file: String,
    /// When acknowledgements may leave.
    pub mode: Mode,
    /// Log size from which compaction is considered (it runs once the log is also twice
    /// its last compacted size).
    pub compact_at: u64,
    /// Batches queued for the thread at most; a submitter waits beyond.
    pub queue: usize,
    /// Bytes of zeros written ahead of the log's end whenever it reaches the end of those
    /// written before (0: none). A sync of frames written over them then changes no file
    /// size: `fdatasync` writes the data alone, without a journal commit for the file's
    /// metadata. Recovery takes a zero frame header as the end of the log.
    pub preallocate: u64,
}

impl Options {
    /// Defaults for a log in `dir`: `tinsel.log`, sync mode, compaction from 64 MiB, 1 MiB
    /// written ahead.
    pub fn new(dir: impl Into<PathBuf>) -> Options {
        Options {
            dir: dir.into(),
            file: "tinsel.log".to_owned(),
            mode: Mode::Sync,
            compact_at: 64 << 20,
            queue: 4096,
            preallocate: 1 << 20,
        }
    }
}

/// How long a failed write waits before it is tried again.
const RETRY: Duration = Duration::from_secs(1);

/// A frame's body is cut at about this size (a snapshot is written as several frames).
const FRAME: usize = 1 << 20;

/// An opened store, not yet running: its log read back.
pub struct Store {
    fs: Arc<dyn FileSystem>,
    options: Options,
    path: PathBuf,
    file: Box<dyn LogFile>,
    state: State,
    covered: u64,
    /// Where the next frame goes.
    len: u64,
    /// The file's size: zeros from `len` to here.
    allocated: u64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("covered", &self.covered)
            .finish_non_exhaustive()
    }
}

fn io(file: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        file: file.to_owned(),
        source,
    }
}

impl Store {
    /// Opens (or creates) the log in `options.dir` and folds it: what the core restores.
    pub fn open(fs: Arc<dyn FileSystem>, options: Options) -> Result<(Store, Restored), Error> {
        fs.create_dir_all(&options.dir).map_err(io(&options.dir))?;
        let path = options.dir.join(&options.file);
        // A compaction that did not finish: the old log is whole.
        let tmp = path.with_extension("compacting");
        fs.remove(&tmp).map_err(io(&tmp))?;
        let data = match fs.read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io(&path)(e)),
        };
        let size = data.len() as u64;
        let mut state = State::default();
        let scanned = scan(&path, data, |e| state.apply(e))?;
        let mut file = fs.open_write(&path).map_err(io(&path))?;
        if size == 0 {
            // A new file: its directory entry must be durable before anything in it is.
            fs.sync_dir(&options.dir).map_err(io(&options.dir))?;
        }
        // Zeros ahead and a torn tail alike: written ahead again by the next commit.
        if scanned.valid < size {
            file.truncate(scanned.valid).map_err(io(&path))?;
            file.sync().map_err(io(&path))?;
        }
        state.settle();
        let restored = state.restored();
        info!(
            file = %path.display(),
            bytes = scanned.valid,
            sessions = restored.sessions.len(),
            messages = state.messages(),
            retained = restored.retained.len(),
            "store opened"
        );
        let store = Store {
            fs,
            options,
            path,
            file,
            state,
            covered: scanned.covered,
            len: scanned.valid,
            allocated: scanned.valid,
        };
        Ok((store, restored))
    }

    /// Makes room for `n` more bytes at the end of the log: when they pass the zeros written
    /// ahead, writes `preallocate` more beyond them (synced with the frame that follows).
    /// Best effort: when the zeros cannot be written (a full disk) the file is cut back
    /// and the frame grows it as without preallocation.
    fn write_ahead(&mut self, n: u64) {
        let chunk = self.options.preallocate;
        let end = self.len + n;
        if chunk == 0 || end <= self.allocated {
            return;
        }
        let to = end.div_ceil(chunk) * chunk + chunk;
        // Frames appended while zeros could not be written lie beyond `allocated`.
        let mut at = self.allocated.max(self.len);
        let zeros = vec![0; (to - at).min(1 << 20) as usize];
        while at < to {
            let n = (to - at).min(zeros.len() as u64);
            if self.file.write_at(at, &zeros[..n as usize]).is_err() {
                let _ = self.file.truncate(self.len);
                self.allocated = self.len;
                return;
            }
            at += n;
        }
        self.allocated = to;
    }

    /// Records this log holds (every record ever written to it, counted across restarts).
    pub fn covered(&self) -> u64 {
        self.covered
    }

    /// Starts the thread. In `Sync` mode it calls `synced` with the ticket of the last
    /// batch each time a write is synced (from its own thread).
    pub fn start(self, synced: impl FnMut(Ticket) + Send + 'static) -> Result<Running, Error> {
        let (tx, rx) = std::sync::mpsc::sync_channel(self.options.queue.max(1));
        let failing = Arc::new(AtomicBool::new(false));
        let syncs = Arc::new(AtomicU64::new(0));
        let sync_times = Arc::new(Mutex::new(Histogram::default()));
        let mut worker = Worker {
            sync_times: sync_times.clone(),
            compacted: self.len,
            store: self,
            rx,
            synced: Box::new(synced),
            failing: failing.clone(),
            syncs: syncs.clone(),
            unsynced: Vec::new(),
            synced_len: 0,
            written_ticket: None,
            last_sync: Instant::now(),
        };
        worker.synced_len = worker.store.len;
        let thread = std::thread::Builder::new()
            .name("tinsel-store".into())
            .spawn(move || worker.run())
            .map_err(|e| Error::Io {
                file: PathBuf::from("(store thread)"),
                source: e,
            })?;
        Ok(Running {
            tx,
            thread: Mutex::new(Some(thread)),
            failing,
            syncs,
            sync_times,
        })
    }
}

enum Msg {
    Records(Vec<Record>, Ticket),
    Stop,
}

/// The running store: submit records to it.
#[derive(Debug)]
pub struct Running {
    tx: SyncSender<Msg>,
    thread: Mutex<Option<JoinHandle<()>>>,
    failing: Arc<AtomicBool>,
    syncs: Arc<AtomicU64>,
    sync_times: Arc<Mutex<Histogram>>,
}

impl Running {
    /// Queues `records` (the last one's ticket is `ticket`) for the next group commit.
    /// Waits while the queue is full.
    pub fn submit(&self, records: Vec<Record>, ticket: Ticket) {
        match self.tx.try_send(Msg::Records(records, ticket)) {
            Ok(()) => {}
            Err(TrySendError::Full(m)) => {
                let _ = self.tx.send(m);
            }
            Err(TrySendError::Disconnected(_)) => {
                error!("the store's thread is gone: records not kept");
            }
        }
    }

    /// True while writes fail (disk full, I/O errors): what is submitted waits in memory.
    pub fn failing(&self) -> bool {
        self.failing.load(Ordering::Acquire)
    }

    /// Syncs done so far.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    /// How long each sync (`fdatasync` of the log) took so far.
    pub fn sync_times(&self) -> Histogram {
        *self.sync_times.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes and syncs what is queued, then stops the thread (records submitted later are
    /// not kept).
    pub fn stop(&self) {
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = thread {
            let _ = self.tx.send(Msg::Stop);
            let _ = t.join();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Worker {
    store: Store,
    rx: Receiver<Msg>,
    synced: Box<dyn FnMut(Ticket) + Send>,
    failing: Arc<AtomicBool>,
    syncs: Arc<AtomicU64>,
    /// Time of each sync; locked once per sync, by the metrics page now and then.
    sync_times: Arc<Mutex<Histogram>>,
    /// Frames not yet synced (written or not): written again after a failure.
    unsynced: Vec<u8>,
    /// Log length that is synced.
    synced_len: u64,
    /// Ticket of the last batch in `unsynced`.
    written_ticket: Option<Ticket>,
    last_sync: Instant,
    /// Log length after the last compaction (or at open).
    compacted: u64,
}

impl Worker {
    fn run(mut self) {
        let mut stop = false;
        while !stop {
            let wait = self.wait();
            let first = match wait {
                Some(d) => match self.rx.recv_timeout(d) {
                    Ok(m) => Some(m),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => Some(Msg::Stop),
                },
                None => Some(self.rx.recv().unwrap_or(Msg::Stop)),
            };
            let mut batch = Vec::new();
            let mut take = |m: Msg, stop: &mut bool| match m {
                Msg::Records(r, t) => batch.push((r, t)),
                Msg::Stop => *stop = true,
            };
            if let Some(m) = first {
                take(m, &mut stop);
            }
            while let Ok(m) = self.rx.try_recv() {
                take(m, &mut stop);
            }
            self.encode(batch);
            self.commit(stop);
        }
    }

    /// How long to wait for records (None: until some come).
    fn wait(&self) -> Option<Duration> {
        if self.unsynced.is_empty() {
            return None;
        }
        if self.failing.load(Ordering::Relaxed) {
            return Some(RETRY);
        }
        match self.store.options.mode {
            Mode::Periodic(every) => Some(every.saturating_sub(self.last_sync.elapsed())),
            Mode::Sync => Some(Duration::ZERO),
            Mode::None => None,
        }
    }

    /// Appends the batches as one frame to `unsynced` and to the state.
    fn encode(&mut self, batch: Vec<(Vec<Record>, Ticket)>) {
        if batch.is_empty() {
            return;
        }
        let at = start_frame(&mut self.unsynced, self.store.covered);
        for (records, ticket) in batch {
            for r in records {
                let start = self.unsynced.len();
                if encode_record(&r, &mut self.unsynced) {
                    self.store.covered += 1;
                    self.store.state.apply(match r {
                        Record::Retained {
                            message: Some(_), ..
                        } => Entry::Retained(Kept::new(&self.unsynced[start..])),
                        Record::Sent {
                            client,
                            packet_id,
                            topic,
                            payload,
                            qos,
                        } => Entry::Sent {
                            client,
                            packet_id,
                            key: crate::entry::key(&topic, &payload),
                            qos,
                        },
                        other => Entry::Core(other),
                    });
                }
            }
            self.written_ticket = Some(ticket);
        }
        finish_frame(&mut self.unsynced, at, self.store.covered);
    }

    /// Writes and (as the mode says) syncs what is unsynced.
    fn commit(&mut self, stopping: bool) {
        if self.unsynced.is_empty() {
            return;
        }
        let due = match self.store.options.mode {
            Mode::Sync => true,
            Mode::Periodic(every) => self.last_sync.elapsed() >= every,
            Mode::None => false,
        } || stopping
            || self.failing.load(Ordering::Relaxed);
        let written = self.store.len - self.synced_len;
        let fresh = &self.unsynced[written as usize..];
        let result = (|| {
            if !fresh.is_empty() {
                self.store.write_ahead(fresh.len() as u64);
                self.store.file.write_at(self.store.len, fresh)?;
            }
            self.store.len = self.synced_len + self.unsynced.len() as u64;
            if due {
                let started = Instant::now();
                self.store.file.sync()?;
                let took = started.elapsed();
                self.sync_times
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .record(took);
            }
            Ok::<_, std::io::Error>(())
        })();
        match result {
            Ok(()) if due => {
                self.synced_len = self.store.len;
                self.unsynced.clear();
                self.last_sync = Instant::now();
                self.syncs.fetch_add(1, Ordering::Relaxed);
                if self.failing.swap(false, Ordering::AcqRel) {
                    info!(file = %self.store.path.display(), "the store writes again");
                }
                if let Some(t) = self.written_ticket.take() {
                    (self.synced)(t);
                }
                self.compact();
            }
            Ok(()) if self.store.options.mode == Mode::None => {
                // Written: the OS syncs it when it decides; nothing to write again.
                self.synced_len = self.store.len;
                self.unsynced.clear();
                self.written_ticket = None;
                if self.failing.swap(false, Ordering::AcqRel) {
                    info!(file = %self.store.path.display(), "the store writes again");
                }
                self.compact();
            }
            Ok(()) => {}
            Err(e) => {
                if !self.failing.swap(true, Ordering::AcqRel) {
                    error!(
                        file = %self.store.path.display(),
                        "the store cannot write ({e}): acknowledgements wait, retrying every \
                         second; free space or fix the disk"
                    );
                }
                // Back to what is synced; the same frames are written again next time.
                let _ = self.store.file.truncate(self.synced_len);
                self.store.len = self.synced_len;
                self.store.allocated = self.synced_len;
            }
        }
    }

    /// Rewrites the log as the state's snapshot when it has grown enough.
    fn compact(&mut self) {
        let len = self.store.len;
        if len
            < self
                .store
                .options
                .compact_at
                .max(self.compacted.saturating_mul(2))
        {
            return;
        }
        let started = Instant::now();
        match self.rewrite() {
            Ok(new_len) => {
                info!(
                    before = len,
                    after = new_len,
                    ms = started.elapsed().as_millis() as u64,
                    "store compacted"
                );
                self.store.len = new_len;
                self.store.allocated = new_len;
                self.synced_len = new_len;
                self.compacted = new_len;
            }
            Err(e) => {
                warn!(file = %self.store.path.display(), "store compaction failed ({e}); the log goes on");
                // Not again before the log has grown as much once more.
                self.compacted = len;
            }
        }
    }

    fn rewrite(&mut self) -> std::io::Result<u64> {
        let fs = self.store.fs.clone();
        let path = self.store.path.clone();
        let tmp = path.with_extension("compacting");
        fs.remove(&tmp)?;
        let mut out = fs.open_write(&tmp)?;
        let covered = self.store.covered;
        let mut frames = Frames {
            out: &mut *out,
            buf: Vec::new(),
            at: 0,
            covered,
            total: 0,
        };
        frames.at = start_frame(&mut frames.buf, covered);
        // Retained messages as they were written; the rest encoded afresh.
        for k in self.store.state.retained() {
            frames.buf.extend_from_slice(k.bytes());
            frames.cut()?;
        }
        for e in self.store.state.snapshot() {
            encode_entry(&e, &mut frames.buf);
            frames.cut()?;
        }
        finish_frame(&mut frames.buf, frames.at, covered);
        frames.out.write_at(frames.total, &frames.buf)?;
        let total = frames.total + frames.buf.len() as u64;
        out.sync()?;
        drop(out);
        fs.rename(&tmp, &path)?;
        fs.sync_dir(&self.store.options.dir)?;
        self.store.file = fs.open_write(&path)?;
        Ok(total)
    }
}

/// A compacted log being written, a frame at a time.
struct Frames<'a> {
    out: &'a mut dyn LogFile,
    buf: Vec<u8>,
    /// Where the frame being filled starts in `buf`.
    at: usize,
    covered: u64,
    /// Bytes written so far.
    total: u64,
}

impl Frames<'_> {
    /// Writes the frame being filled once it has reached [`FRAME`] bytes.
    fn cut(&mut self) -> std::io::Result<()> {
        if self.buf.len() - self.at > FRAME {
            finish_frame(&mut self.buf, self.at, self.covered);
            self.out.write_at(self.total, &self.buf)?;
            self.total += self.buf.len() as u64;
            self.buf.clear();
            self.at = start_frame(&mut self.buf, self.covered);
        }
        Ok(())
    }
}
