//! The data directory: its lock, its file names, and the writes that must survive a crash
//! (a snapshot replaced atomically, a new segment made durable before it is used).
//!
//! Layout: `LOCK` (held with `flock` while a server runs), `snapshot-<seq>.snap` (the state
//! after record `seq`), `journal-<seq>.log` (records from `seq` on); sequence numbers are
//! zero-padded to 20 digits so that names sort in order. The directory is made `0700` and
//! every file `0600`: snapshots and records hold credentials.

use super::error::JournalError;
use super::format::{header, HEADER_BYTES, SEGMENT_MAGIC, SNAPSHOT_MAGIC};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The lock file's name.
const LOCK_FILE: &str = "LOCK";
const SNAPSHOT_PREFIX: &str = "snapshot-";
const SNAPSHOT_SUFFIX: &str = ".snap";
const SEGMENT_PREFIX: &str = "journal-";
const SEGMENT_SUFFIX: &str = ".log";
const TEMP_SUFFIX: &str = ".tmp";

type Result<T> = std::result::Result<T, JournalError>;

/// The data directory, locked for this server while the value lives.
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    /// Held open: closing it (or the process dying) releases the lock.
    _lock: File,
}

/// The journal files found in the data directory, each list sorted by sequence number.
#[derive(Debug, Default)]
pub struct Listing {
    /// `(seq, path)` of each snapshot.
    pub snapshots: Vec<(u64, PathBuf)>,
    /// `(first seq, path)` of each journal segment.
    pub segments: Vec<(u64, PathBuf)>,
    /// Leftovers of a snapshot write that did not finish.
    pub temps: Vec<PathBuf>,
}

impl DataDir {
    /// Creates the directory if needed (`0700`), and takes its lock.
    pub fn open(path: &Path) -> Result<DataDir> {
        create_private_dir(path)?;
        let lock_path = path.join(LOCK_FILE);
        let lock = private_file()
            .write(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(JournalError::io("open", &lock_path))?;
        lock_exclusive(&lock).map_err(|e| {
            if e.kind() == std::io::ErrorKind::WouldBlock {
                JournalError::Locked {
                    dir: path.to_owned(),
                    lock: lock_path.clone(),
                }
            } else {
                JournalError::io("lock", &lock_path)(e)
            }
        })?;
        Ok(DataDir {
            path: path.to_owned(),
            _lock: lock,
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The snapshots, segments and leftovers in the directory; other files are ignored.
    pub fn list(&self) -> Result<Listing> {
        let mut listing = Listing::default();
        let entries = fs::read_dir(&self.path).map_err(JournalError::io("list", &self.path))?;
        for entry in entries {
            let entry = entry.map_err(JournalError::io("list", &self.path))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let path = entry.path();
            if name.ends_with(TEMP_SUFFIX) && name.starts_with(SNAPSHOT_PREFIX) {
                listing.temps.push(path);
            } else if let Some(seq) = seq_in(name, SNAPSHOT_PREFIX, SNAPSHOT_SUFFIX) {
                listing.snapshots.push((seq, path));
            } else if let Some(seq) = seq_in(name, SEGMENT_PREFIX, SEGMENT_SUFFIX) {
                listing.segments.push((seq, path));
            }
        }
        listing.snapshots.sort_unstable();
        listing.segments.sort_unstable();
        Ok(listing)
    }

    /// Where the snapshot after record `seq` lives.
    pub fn snapshot_path(&self, seq: u64) -> PathBuf {
        self.path.join(snapshot_name(seq))
    }

    /// Where the segment whose first record is `first` lives.
    pub fn segment_path(&self, first: u64) -> PathBuf {
        self.path
            .join(format!("{SEGMENT_PREFIX}{first:020}{SEGMENT_SUFFIX}"))
    }

    /// Writes the snapshot after record `seq` (the whole file, header included, is
    /// `contents`) so that a crash leaves either the old file or the whole new one: a
    /// temporary file, synced, then renamed.
    pub fn write_snapshot(&self, seq: u64, contents: &[u8]) -> Result<PathBuf> {
        let path = self.snapshot_path(seq);
        let temp = self
            .path
            .join(format!("{}{TEMP_SUFFIX}", snapshot_name(seq)));
        let mut file = private_file()
            .write(true)
            .truncate(true)
            .open(&temp)
            .map_err(JournalError::io("create", &temp))?;
        file.write_all(contents)
            .map_err(JournalError::io("write", &temp))?;
        file.sync_all().map_err(JournalError::io("sync", &temp))?;
        drop(file);
        fs::rename(&temp, &path).map_err(JournalError::io("rename", &temp))?;
        self.sync()?;
        Ok(path)
    }

    /// Creates an empty segment starting at record `first`, durably, open for appending.
    pub fn create_segment(&self, first: u64) -> Result<File> {
        let path = self.segment_path(first);
        let mut file = private_file()
            .write(true)
            .truncate(true)
            .open(&path)
            .map_err(JournalError::io("create", &path))?;
        file.write_all(&header(SEGMENT_MAGIC, first))
            .map_err(JournalError::io("write", &path))?;
        file.sync_all().map_err(JournalError::io("sync", &path))?;
        self.sync()?;
        Ok(file)
    }

    /// Deletes the snapshots before `snapshot_seq`, the segments before `first`, and
    /// leftover temporary files: the snapshot after `snapshot_seq` and the segment from
    /// `first` on hold everything. Returns how many files went.
    pub fn remove_before(&self, snapshot_seq: u64, first: u64) -> Result<usize> {
        let listing = self.list()?;
        let old_snapshots = listing
            .snapshots
            .into_iter()
            .filter(|&(seq, _)| seq < snapshot_seq);
        let old_segments = listing.segments.into_iter().filter(|&(f, _)| f < first);
        let mut removed = 0;
        for path in old_snapshots
            .chain(old_segments)
            .map(|(_, path)| path)
            .chain(listing.temps)
        {
            fs::remove_file(&path).map_err(JournalError::io("remove", &path))?;
            removed += 1;
        }
        if removed > 0 {
            self.sync()?;
        }
        Ok(removed)
    }

    /// Makes the directory's entries (new, renamed and removed files) durable.
    pub fn sync(&self) -> Result<()> {
        File::open(&self.path)
            .and_then(|dir| dir.sync_all())
            .map_err(JournalError::io("sync", &self.path))
    }
}

/// The file name of the snapshot after record `seq`.
pub fn snapshot_name(seq: u64) -> String {
    format!("{SNAPSHOT_PREFIX}{seq:020}{SNAPSHOT_SUFFIX}")
}

/// The bytes of a snapshot file: the header naming record `seq`, then `framed` (the
/// snapshot's one frame).
pub fn snapshot_contents(seq: u64, framed: &[u8]) -> Vec<u8> {
    let mut contents = Vec::with_capacity(HEADER_BYTES + framed.len());
    contents.extend_from_slice(&header(SNAPSHOT_MAGIC, seq));
    contents.extend_from_slice(framed);
    contents
}

/// The sequence number in `name` when it is `prefix`, 20 digits, `suffix`.
fn seq_in(name: &str, prefix: &str, suffix: &str) -> Option<u64> {
    let digits = name.strip_prefix(prefix)?.strip_suffix(suffix)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Options that create a file only the server's user may read (`0600` on unix).
fn private_file() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

/// Creates `path` (and missing parents) and makes it `0700`, whoever created it.
fn create_private_dir(path: &Path) -> Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        builder.mode(0o700);
        builder
            .create(path)
            .map_err(JournalError::io("create", path))?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o700))
            .map_err(JournalError::io("set permissions of", path))
    }
    #[cfg(not(unix))]
    builder
        .create(path)
        .map_err(JournalError::io("create", path))
}

/// Takes an exclusive `flock` on `file` without waiting.
#[cfg(unix)]
fn lock_exclusive(file: &File) -> std::io::Result<()> {
    use rustix::fs::{flock, FlockOperation};
    flock(file, FlockOperation::NonBlockingLockExclusive).map_err(std::io::Error::from)
}

/// Without `flock`, the lock file only marks the directory.
#[cfg(not(unix))]
fn lock_exclusive(_file: &File) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_by_sequence_and_strangers_are_ignored() {
        assert_eq!(
            seq_in("journal-00000000000000000042.log", "journal-", ".log"),
            Some(42)
        );
        assert_eq!(seq_in("journal-42.log", "journal-", ".log"), None);
        assert_eq!(
            seq_in("journal-0000000000000000004x.log", "journal-", ".log"),
            None
        );
    }

    #[test]
    fn a_second_server_cannot_take_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        let first = DataDir::open(&path).unwrap();
        assert!(matches!(
            DataDir::open(&path),
            Err(JournalError::Locked { .. })
        ));
        drop(first);
        DataDir::open(&path).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn the_directory_and_its_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        fs::create_dir(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        let data = DataDir::open(&path).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o700);
        let snapshot = data.write_snapshot(7, b"x").unwrap();
        drop(data.create_segment(8).unwrap());
        assert_eq!(mode(&snapshot), 0o600);
        assert_eq!(mode(&path.join("journal-00000000000000000008.log")), 0o600);
        assert_eq!(mode(&path.join(LOCK_FILE)), 0o600);
        let listing = data.list().unwrap();
        assert_eq!(listing.snapshots, vec![(7, snapshot)]);
        assert_eq!(listing.segments.len(), 1);
        assert_eq!(data.remove_before(8, 9).unwrap(), 2);
    }
}
