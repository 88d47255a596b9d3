//! Checkpoints: the engine's whole state and the source positions it
//! reflects, written together in one file, atomically.
//!
//! A checkpoint is written to a temporary file and flushed to disk; the
//! current one becomes the previous (`checkpoint.prev.bin`) and the new
//! one is renamed in, so a `kill -9` at any moment leaves a whole
//! checkpoint, never a torn one. The file carries a format version and a
//! checksum; a file that fails either is refused rather than
//! half-trusted, and the previous one is restored instead (the server's
//! `persist::restore_from_dir`).
//!
//! A release reads its own format and the one before it
//! ([`READABLE_FORMATS`]), so an upgrade mid-sale continues from the
//! predecessor's checkpoint; the fixtures in `tests/fixtures/` prove it.
//!
//! Layout: magic `LMCK`, u32 format version, u64 payload length, payload,
//! u64 xxh3 of the payload. The payload is written by `Engine::export`
//! with the little codec below.

use std::fs::{self, File};
use std::io::Write;
use std::path::PathBuf;

use xxhash_rust::xxh3::xxh3_64;

const MAGIC: &[u8; 4] = b"LMCK";
/// The format this release writes. 6: the first-sales filter; 5:
/// partition watermarks and the truncation count (see
/// `Engine::restore_format` for 4 and 5).
pub const FORMAT_VERSION: u32 = 6;
/// The formats this release reads: its own and its predecessors'.
pub const READABLE_FORMATS: [u32; 3] = [4, 5, 6];
const FILE_NAME: &str = "checkpoint.bin";
const PREVIOUS_FILE_NAME: &str = "checkpoint.prev.bin";

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint I/O in {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("checkpoint {0} is not a livemap checkpoint")]
    NotACheckpoint(PathBuf),
    #[error("checkpoint {path} has format {found}, this build reads {READABLE_FORMATS:?}")]
    Format { path: PathBuf, found: u32 },
    #[error("checkpoint {0} is corrupt (checksum or length mismatch)")]
    Corrupt(PathBuf),
    #[error("checkpoint payload is malformed: {0}")]
    Payload(&'static str),
    #[error("no checkpoint in {dir} can be restored ({reasons}): not starting, since starting empty would show totals from zero. Restore a good checkpoint.bin there, or start with --discard-unreadable-checkpoint to count from zero")]
    Unusable { dir: PathBuf, reasons: String },
}

/// Where checkpoints live.
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    pub fn new(dir: impl Into<PathBuf>) -> Result<StateDir, CheckpointError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|source| CheckpointError::Io {
            path: dir.clone(),
            source,
        })?;
        Ok(StateDir { dir })
    }

    /// The newest checkpoint.
    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    /// The directory the checkpoints are in.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// The checkpoint before the newest, kept to fall back on.
    pub fn previous_path(&self) -> PathBuf {
        self.dir.join(PREVIOUS_FILE_NAME)
    }

    /// Reads one checkpoint file, or `None` if it does not exist.
    pub fn read(path: &std::path::Path) -> Result<Option<Saved>, CheckpointError> {
        let path = path.to_path_buf();
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(CheckpointError::Io { path, source }),
        };
        if bytes.len() < 24 || &bytes[..4] != MAGIC {
            return Err(CheckpointError::NotACheckpoint(path));
        }
        let mut r = Reader::new(&bytes[4..]);
        let found = r
            .u32()
            .map_err(|_| CheckpointError::Corrupt(path.clone()))?;
        if !READABLE_FORMATS.contains(&found) {
            return Err(CheckpointError::Format { path, found });
        }
        let len = r
            .u64()
            .map_err(|_| CheckpointError::Corrupt(path.clone()))? as usize;
        let payload = r
            .bytes(len)
            .map_err(|_| CheckpointError::Corrupt(path.clone()))?;
        let sum = r
            .u64()
            .map_err(|_| CheckpointError::Corrupt(path.clone()))?;
        if sum != xxh3_64(payload) || !r.is_empty() {
            return Err(CheckpointError::Corrupt(path));
        }
        Ok(Some(Saved {
            path,
            format: found,
            payload: payload.to_vec(),
        }))
    }

    /// Replaces the checkpoint with `payload`, atomically and durably.
    pub fn store(&self, payload: &[u8]) -> Result<(), CheckpointError> {
        let path = self.path();
        let tmp = self.dir.join(format!("{FILE_NAME}.tmp"));
        let io = |source| CheckpointError::Io {
            path: tmp.clone(),
            source,
        };
        let mut f = File::create(&tmp).map_err(io)?;
        let mut header = Vec::with_capacity(16);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        header.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        f.write_all(&header).map_err(io)?;
        f.write_all(payload).map_err(io)?;
        f.write_all(&xxh3_64(payload).to_le_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
        drop(f);
        // The newest becomes the previous, then the new one the newest:
        // between the two renames only the previous exists, and a start
        // restores that.
        let previous = self.previous_path();
        match fs::rename(&path, &previous) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(CheckpointError::Io {
                    path: previous,
                    source,
                })
            }
        }
        fs::rename(&tmp, &path).map_err(|source| CheckpointError::Io {
            path: path.clone(),
            source,
        })?;
        // The rename itself must reach the disk before the offsets it
        // stands for are committed to Kafka.
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|source| CheckpointError::Io {
                path: self.dir.clone(),
                source,
            })
    }
}

/// A checkpoint as read from its file.
#[derive(Debug, Clone)]
pub struct Saved {
    pub path: PathBuf,
    /// The format it was written in (one of [`READABLE_FORMATS`]).
    pub format: u32,
    pub payload: Vec<u8>,
}

/// Appends little-endian fields to a buffer.
#[derive(Debug, Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn i32(&mut self, v: i32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn bytes(&mut self, v: &[u8]) {
        self.u64(v.len() as u64);
        self.buf.extend_from_slice(v);
    }
    pub fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }
}

/// Reads what [`Writer`] wrote; every read is bounds-checked.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

type ReadResult<T> = Result<T, CheckpointError>;

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    fn take(&mut self, n: usize) -> ReadResult<&'a [u8]> {
        if self.buf.len() < n {
            return Err(CheckpointError::Payload("truncated"));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> ReadResult<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    pub fn u8(&mut self) -> ReadResult<u8> {
        Ok(self.take(1)?[0])
    }
    pub fn u32(&mut self) -> ReadResult<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub fn u64(&mut self) -> ReadResult<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    pub fn i64(&mut self) -> ReadResult<i64> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    pub fn i32(&mut self) -> ReadResult<i32> {
        Ok(i32::from_le_bytes(self.array()?))
    }
    pub fn bytes(&mut self, len: usize) -> ReadResult<&'a [u8]> {
        self.take(len)
    }
    pub fn len_prefixed(&mut self) -> ReadResult<&'a [u8]> {
        let len = self.u64()?;
        let len = usize::try_from(len).map_err(|_| CheckpointError::Payload("length"))?;
        self.take(len)
    }
    pub fn string(&mut self) -> ReadResult<String> {
        let b = self.len_prefixed()?;
        String::from_utf8(b.to_vec()).map_err(|_| CheckpointError::Payload("utf-8"))
    }
    /// A count of items that each take at least `min_item` bytes: refuses
    /// counts the remaining bytes cannot hold, so a corrupt count cannot
    /// make the reader allocate without bound.
    pub fn count(&mut self, min_item: usize) -> ReadResult<usize> {
        let n = usize::try_from(self.u64()?).map_err(|_| CheckpointError::Payload("count"))?;
        if n.saturating_mul(min_item.max(1)) > self.buf.len() {
            return Err(CheckpointError::Payload("count exceeds data"));
        }
        Ok(n)
    }
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("livemap-ck-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn load(dir: &StateDir) -> Result<Option<Vec<u8>>, CheckpointError> {
        Ok(StateDir::read(&dir.path())?.map(|s| s.payload))
    }

    #[test]
    fn store_then_load_round_trips() {
        let dir = StateDir::new(temp_dir("rt")).expect("dir");
        assert!(load(&dir).expect("no error").is_none());
        dir.store(b"hello").expect("store");
        dir.store(b"hello again").expect("store over");
        assert_eq!(
            load(&dir).expect("load").as_deref(),
            Some(&b"hello again"[..])
        );
        let previous = StateDir::read(&dir.previous_path())
            .expect("readable")
            .expect("kept");
        assert_eq!(previous.payload, b"hello");
        assert_eq!(previous.format, FORMAT_VERSION);
    }

    #[test]
    fn corrupt_files_are_refused() {
        let dir = StateDir::new(temp_dir("corrupt")).expect("dir");
        dir.store(b"precious state").expect("store");
        let mut bytes = fs::read(dir.path()).expect("read");
        let n = bytes.len();
        bytes[n - 10] ^= 0x40;
        fs::write(dir.path(), &bytes).expect("write");
        assert!(matches!(load(&dir), Err(CheckpointError::Corrupt(_))));
        fs::write(dir.path(), b"LMCK\x09\0\0\0garbage-garbage-garbage").expect("write");
        assert!(matches!(
            load(&dir),
            Err(CheckpointError::Format { found: 9, .. })
        ));
        fs::write(dir.path(), b"nope").expect("write");
        assert!(matches!(
            load(&dir),
            Err(CheckpointError::NotACheckpoint(_))
        ));
    }

    #[test]
    fn reader_refuses_impossible_counts() {
        let mut w = Writer::default();
        w.u64(u64::MAX);
        assert!(Reader::new(&w.buf).count(8).is_err());
        assert!(Reader::new(&[1, 2]).u64().is_err());
    }
}
