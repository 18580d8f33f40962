//! What survives a restart (SAFETY.md §5): the rebalance state and the operator's overrides, in a
//! JSON file written atomically (temp file, fsync, rename) with mode 0600; and the event log, an
//! append-only JSON-lines file rotated by size.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use maestro_core::RebalanceState;
use serde::{Deserialize, Serialize};

/// The operator's standing orders.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Overrides {
    /// Charging and discharging forced off.
    pub forced_disable: bool,
    /// Charge voltage limit override, mV.
    pub charge_voltage_mv: Option<u16>,
}

/// The state file's content.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Persisted {
    /// Format version.
    pub version: u32,
    /// The rebalance procedure.
    pub rebalance: RebalanceState,
    /// The operator's orders.
    pub overrides: Overrides,
    /// The energy counters (they only grow; see [`crate::energy`]).
    pub energy: crate::energy::Energy,
}

/// A problem with the state file or the event log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The state file exists but cannot be understood: start-up stops; it is never replaced silently.
    #[error(
        "state file {path} cannot be read: {why}; fix it, or start with --reset-state to set it aside and begin afresh"
    )]
    Corrupt {
        /// The file.
        path: String,
        /// Why.
        why: String,
    },
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.display().to_string(), source }
}

/// Loads the state file; a missing file is a fresh start.
///
/// # Errors
/// [`Error::Corrupt`] for a file that does not parse, [`Error::Io`] when it cannot be read.
pub fn load(path: &Path) -> Result<Persisted, Error> {
    let corrupt = |why: String| Error::Corrupt { path: path.display().to_string(), why };
    if path.is_dir() {
        return Err(corrupt("it is a folder, not a file".into()));
    }
    let bytes = match crate::file::read_bounded(path, crate::file::STATE_MAX_BYTES) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Persisted::default()),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => return Err(corrupt(e.to_string())),
        Err(e) => return Err(io_err(path)(e)),
    };
    let text = String::from_utf8(bytes)
        .map_err(|e| corrupt(format!("it is not UTF-8 text (byte {})", e.utf8_error().valid_up_to())))?;
    let persisted: Persisted = serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
    if persisted.version > VERSION {
        return Err(corrupt(format!(
            "its format is version {}, newer than this pace2pylon reads ({VERSION})",
            persisted.version
        )));
    }
    persisted.energy.check().map_err(corrupt)?;
    Ok(persisted)
}

/// The state file's format version, written in every save.
pub const VERSION: u32 = 1;

/// Moves a state file aside (`<file>.corrupt-<unix seconds>`) for `--reset-state`; returns where.
///
/// # Errors
/// [`Error::Io`] when it cannot be renamed.
pub fn set_aside(path: &Path, now_s: u64) -> Result<Option<PathBuf>, Error> {
    if !path.exists() {
        return Ok(None);
    }
    let aside = PathBuf::from(format!("{}.corrupt-{now_s}", path.display()));
    fs::rename(path, &aside).map_err(io_err(path))?;
    Ok(Some(aside))
}

/// Writes the state file atomically: a temp file beside it (mode 0600), fsync, rename, fsync the
/// directory.
///
/// # Errors
/// [`Error::Io`].
pub fn save(path: &Path, state: &Persisted) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(state).map_err(|e| io_err(path)(io::Error::other(e)))?;
    let tmp = PathBuf::from(format!("{}.tmp", path.display()));
    {
        let mut f = crate::file::create_fresh(&tmp).map_err(io_err(&tmp))?;
        f.write_all(text.as_bytes()).map_err(io_err(&tmp))?;
        f.write_all(b"\n").map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(io_err(path))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Removes a `<state file>.tmp` left by a write that was cut short (a crash between writing the
/// temp file and renaming it); the state file itself is the last complete write.
pub fn remove_leftover_temp(path: &Path) {
    let tmp = PathBuf::from(format!("{}.tmp", path.display()));
    if fs::remove_file(&tmp).is_ok() {
        log::warn!("removed {}, left by a state file write that did not finish", tmp.display());
    }
}

/// The append-only event log, rotated when it passes `max_bytes` (`.1` … `.keep`).
#[derive(Debug)]
pub struct EventLog {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
}

/// One event line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventLine {
    /// Wall clock, RFC 3339 (UTC).
    pub time: String,
    /// What happened.
    pub event: String,
    /// Why, in words.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
}

impl EventLog {
    /// A log at `path`.
    pub fn new(path: PathBuf, max_bytes: u64, keep: u32) -> Self {
        Self { path, max_bytes, keep: keep.max(1) }
    }

    /// Ends a torn last line (no final newline: a full disk, a crash mid-write) with a newline, so
    /// the next line appended starts a line of its own and the log stays JSON lines.
    ///
    /// # Errors
    /// [`Error::Io`] when the log exists but cannot be read or appended to.
    pub fn repair_torn_line(&self) -> Result<(), Error> {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = match OpenOptions::new().read(true).append(true).open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(&self.path)(e)),
        };
        let len = f.metadata().map_err(io_err(&self.path))?.len();
        if len == 0 {
            return Ok(());
        }
        let mut last = [0u8; 1];
        f.seek(SeekFrom::Start(len - 1)).and_then(|_| f.read_exact(&mut last)).map_err(io_err(&self.path))?;
        if last[0] != b'\n' {
            f.write_all(b"\n").map_err(io_err(&self.path))?;
            log::warn!("{}: its last line was torn (no final newline); ended it", self.path.display());
        }
        Ok(())
    }

    /// Appends one line (file mode 0600), rotating first when the file is too big.
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn append(&self, line: &EventLine) -> Result<(), Error> {
        if fs::metadata(&self.path).is_ok_and(|m| m.len() >= self.max_bytes) {
            for k in (1..self.keep).rev() {
                let from = format!("{}.{k}", self.path.display());
                let _ = fs::rename(&from, format!("{}.{}", self.path.display(), k + 1));
            }
            fs::rename(&self.path, format!("{}.1", self.path.display())).map_err(io_err(&self.path))?;
        }
        let mut f = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(crate::file::O_NOFOLLOW)
            .open(&self.path)
            .map_err(io_err(&self.path))?;
        let mut text = serde_json::to_string(line).map_err(|e| io_err(&self.path)(io::Error::other(e)))?;
        text.push('\n');
        f.write_all(text.as_bytes()).map_err(io_err(&self.path))
    }
}
