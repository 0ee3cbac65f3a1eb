//! A file system in memory that loses what was not synced: the power-loss layer the
//! durability tests put beneath the store (the idea of SQLite's crash-test VFS).
//!
//! At a chosen operation (or when [`LossyFs::crash`] is called) the power goes: every
//! file keeps what was synced plus a random prefix of what was written after, in the order
//! it was written (a torn tail; bytes not reached keep their synced value, the zeros of a
//! preallocated log among them), and every later operation fails until
//! [`LossyFs::restart`]. A capacity makes writes that grow a file fail with `StorageFull`
//! (after writing what fits), as a full disk does. Renames and truncations are taken as
//! durable at once.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::fs::{FileSystem, LogFile};

#[derive(Debug, Default)]
struct SimFile {
    /// Its bytes now, synced or not.
    data: Vec<u8>,
    /// Its bytes as of the last sync.
    durable: Vec<u8>,
    /// Writes since the last sync, in order: a power loss keeps a prefix of them.
    unsynced: Vec<(usize, Vec<u8>)>,
}

/// Writes `bytes` at `at` in `buf`, growing it with zeros as needed.
fn put(buf: &mut Vec<u8>, at: usize, bytes: &[u8]) {
    if buf.len() < at + bytes.len() {
        buf.resize(at + bytes.len(), 0);
    }
    buf[at..at + bytes.len()].copy_from_slice(bytes);
}

#[derive(Debug, Default)]
struct Inner {
    files: BTreeMap<PathBuf, SimFile>,
    ops: u64,
    crash_at: Option<u64>,
    crashed: bool,
    capacity: Option<usize>,
    rng: u64,
    syncs: u64,
}

impl Inner {
    fn random(&mut self) -> u64 {
        // xorshift64*: deterministic per seed.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn power_off(&mut self) {
        let totals: Vec<usize> = self
            .files
            .values()
            .map(|f| f.unsynced.iter().map(|(_, b)| b.len()).sum())
            .collect();
        let keep: Vec<usize> = totals
            .into_iter()
            .map(|total| (self.random() as usize) % (total + 1))
            .collect();
        for (f, mut keep) in self.files.values_mut().zip(keep) {
            let mut data = std::mem::take(&mut f.durable);
            for (at, bytes) in f.unsynced.drain(..) {
                let n = keep.min(bytes.len());
                put(&mut data, at, &bytes[..n]);
                keep -= n;
            }
            f.durable = data.clone();
            f.data = data;
        }
        self.crashed = true;
    }

    /// Counts an operation; an error if the power is (or now goes) off.
    fn op(&mut self) -> io::Result<()> {
        if !self.crashed {
            self.ops += 1;
            if self.crash_at == Some(self.ops) {
                self.power_off();
            }
        }
        if self.crashed {
            return Err(io::Error::other("power lost"));
        }
        Ok(())
    }

    fn used(&self) -> usize {
        self.files.values().map(|f| f.data.len()).sum()
    }
}

/// The power-loss file system. Cheap to clone: clones share the files.
#[derive(Debug, Clone, Default)]
pub struct LossyFs {
    inner: Arc<Mutex<Inner>>,
}

impl LossyFs {
    /// An empty file system whose torn tails are drawn from `seed`.
    pub fn new(seed: u64) -> LossyFs {
        let fs = LossyFs::default();
        fs.lock().rng = seed | 1;
        fs
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The power goes at the `n`th operation from now (1: the next one).
    pub fn crash_after(&self, n: u64) {
        let mut i = self.lock();
        i.crash_at = Some(i.ops + n.max(1));
    }

    /// The power goes now.
    pub fn crash(&self) {
        let mut i = self.lock();
        if !i.crashed {
            i.power_off();
        }
    }

    /// True once the power has gone.
    pub fn crashed(&self) -> bool {
        self.lock().crashed
    }

    /// The power is back: operations work again on what survived.
    pub fn restart(&self) {
        let mut i = self.lock();
        i.crashed = false;
        i.crash_at = None;
    }

    /// Appends fail beyond `bytes` in all (None: no limit).
    pub fn set_capacity(&self, bytes: Option<usize>) {
        self.lock().capacity = bytes;
    }

    /// Syncs done so far.
    pub fn syncs(&self) -> u64 {
        self.lock().syncs
    }

    /// The bytes of `path` (all of them, synced or not).
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        self.lock().files.get(path).map(|f| f.data.clone())
    }

    /// Replaces the bytes of `path` (synced), to corrupt a file in a test.
    pub fn set_contents(&self, path: &Path, data: Vec<u8>) {
        let durable = data.clone();
        let f = SimFile {
            data,
            durable,
            unsynced: Vec::new(),
        };
        self.lock().files.insert(path.to_owned(), f);
    }
}

struct SimLog {
    fs: LossyFs,
    path: PathBuf,
}

impl LogFile for SimLog {
    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        let mut i = self.fs.lock();
        i.op()?;
        let room = i
            .capacity
            .map_or(usize::MAX, |c| c.saturating_sub(i.used()));
        let f = i.files.entry(self.path.clone()).or_default();
        let at = offset as usize;
        let growth = (at + bytes.len()).saturating_sub(f.data.len().max(at));
        let (bytes, full) = if growth > room {
            (&bytes[..bytes.len() - (growth - room)], true)
        } else {
            (bytes, false)
        };
        put(&mut f.data, at, bytes);
        f.unsynced.push((at, bytes.to_vec()));
        if full {
            return Err(io::Error::new(io::ErrorKind::StorageFull, "no space left"));
        }
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        let mut i = self.fs.lock();
        i.op()?;
        i.syncs += 1;
        let f = i.files.entry(self.path.clone()).or_default();
        for (at, bytes) in f.unsynced.drain(..) {
            put(&mut f.durable, at, &bytes);
        }
        Ok(())
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        let mut i = self.fs.lock();
        i.op()?;
        let f = i.files.entry(self.path.clone()).or_default();
        let len = len as usize;
        f.data.truncate(len);
        f.durable.truncate(len);
        f.unsynced.retain_mut(|(at, b)| {
            b.truncate(len.saturating_sub(*at));
            !b.is_empty()
        });
        Ok(())
    }
}

impl FileSystem for LossyFs {
    fn create_dir_all(&self, _: &Path) -> io::Result<()> {
        self.lock().op()
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let mut i = self.lock();
        i.op()?;
        match i.files.get(path) {
            Some(f) => Ok(f.data.clone()),
            None => Err(io::ErrorKind::NotFound.into()),
        }
    }

    fn open_write(&self, path: &Path) -> io::Result<Box<dyn LogFile>> {
        let mut i = self.lock();
        i.op()?;
        i.files.entry(path.to_owned()).or_default();
        Ok(Box::new(SimLog {
            fs: self.clone(),
            path: path.to_owned(),
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut i = self.lock();
        i.op()?;
        let f = i.files.remove(from).ok_or(io::ErrorKind::NotFound)?;
        i.files.insert(to.to_owned(), f);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut i = self.lock();
        i.op()?;
        i.files.remove(path);
        Ok(())
    }

    fn sync_dir(&self, _: &Path) -> io::Result<()> {
        self.lock().op()
    }
}
