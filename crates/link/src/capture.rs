//! Captures: every byte a link moves, with its time and direction, in a line-oriented text
//! format that a person can read with `grep` and `pace2pylon replay` can run again.
//!
//! ```text
//! # pace2pylon capture 1; t=0 is unix 1764662400.123456
//! # link pack1 tcp://192.168.1.20:4001
//! 0.000512 pack1 tx 7E323530303436343245303032464644303946450D
//! 0.041122 pack1 rx 7E32353030343630303130393630313130...0D
//! ```
//!
//! - `#` lines are comments: the format's version and the wall clock of `t = 0` head every file,
//!   and a `# link NAME URL` line names each link the first time it moves a byte in that file;
//! - a record is `T NAME DIR HEX`: seconds since the capture began (six decimals), the link's
//!   short name (`pack1`, `coil`, `inverter`, `pylon`, `can`: an slcan adapter's bytes, a
//!   SocketCAN interface's frames as slcan lines), `tx` (written by the side that captures)
//!   or `rx` (read by it), and the bytes in upper-case hex, as they went over the line (one read
//!   or one write; a frame may span records, and a record may hold garbage).
//!
//! A [`Recorder`] writes on a thread of its own through a bounded queue: a link's [`Tap`] never
//! waits for the disk, and when the queue is full a record is dropped and counted (the next file
//! header says how many). When writing fails (a full disk) and later resumes, a
//! `# gap FROM TO: N records lost (why)` line says which stretch of time the capture does not hold,
//! so a replay does not mistake the missing bytes for a divergence.
//!
//! A capture never writes over anything: it makes a folder of its own with a fresh name
//! (`capture-20261207T174500Z`, `…-2` if that exists) inside the directory it is given, and every
//! file in it is created new (`O_CREAT|O_EXCL`, links not followed). Files are
//! `capture-000001.log`, `capture-000002.log`, … (more digits past 999 999) of at most
//! `max_file_bytes` each; beyond `keep_files` the oldest this capture wrote is deleted, so a
//! capture never holds more than their product.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The format's version, in every file's first line.
pub const VERSION: u32 = 1;

/// Which way the bytes went, seen from the side that captures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// Written by it.
    Tx,
    /// Read by it.
    Rx,
}

impl Dir {
    /// `tx` or `rx`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Tx => "tx",
            Self::Rx => "rx",
        }
    }
}

/// One record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Since the capture began.
    pub t: Duration,
    /// The link's short name.
    pub link: String,
    /// Which way.
    pub dir: Dir,
    /// The bytes.
    pub bytes: Vec<u8>,
}

impl Record {
    /// The record's line, without the newline.
    pub fn line(&self) -> String {
        let mut s =
            format!("{}.{:06} {} {} ", self.t.as_secs(), self.t.subsec_micros(), self.link, self.dir.name());
        for b in &self.bytes {
            s.push_str(&format!("{b:02X}"));
        }
        s
    }

    /// Parses a record line (comments and blank lines are `Ok(None)`).
    ///
    /// # Errors
    /// What is wrong with the line, in words.
    pub fn parse(line: &str) -> Result<Option<Self>, String> {
        let line = line.trim_end_matches(['\r', '\n']);
        if line.trim().is_empty() || line.starts_with('#') {
            return Ok(None);
        }
        let mut fields = line.split(' ');
        let (Some(t), Some(link), Some(dir), Some(hex), None) =
            (fields.next(), fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err("a record is `T NAME tx|rx HEX`, four fields separated by single spaces".into());
        };
        let t = parse_seconds(t).ok_or_else(|| format!("time {t:?} is not seconds like 12.345678"))?;
        if link.is_empty() || !link.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(format!("link name {link:?} is not letters, digits, - or _"));
        }
        let dir = match dir {
            "tx" => Dir::Tx,
            "rx" => Dir::Rx,
            other => return Err(format!("direction {other:?} is neither tx nor rx")),
        };
        if hex.len() % 2 != 0 {
            return Err(format!("{} hex digits: not a whole number of bytes", hex.len()));
        }
        let bytes = (0..hex.len())
            .step_by(2)
            .map(|k| u8::from_str_radix(hex.get(k..k + 2).unwrap_or("zz"), 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|_| "the bytes are not hex digits".to_owned())?;
        Ok(Some(Self { t, link: link.to_owned(), dir, bytes }))
    }
}

fn parse_seconds(t: &str) -> Option<Duration> {
    let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
    if whole.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let secs: u64 = whole.parse().ok()?;
    let micros: u32 = format!("{frac:0<6}").get(..6)?.parse().ok()?;
    Some(Duration::from_secs(secs) + Duration::from_micros(u64::from(micros)))
}

/// The wall clock of `t = 0` from a file's first line (`# pace2pylon capture 1; t=0 is unix S`).
pub fn parse_header(line: &str) -> Option<(u32, f64)> {
    let rest = line.strip_prefix("# pace2pylon capture ")?;
    let (version, rest) = rest.split_once("; t=0 is unix ")?;
    Some((version.parse().ok()?, rest.trim().parse().ok()?))
}

/// What a link calls with the bytes it moves.
pub type Tap = Arc<dyn Fn(Dir, &[u8]) + Send + Sync>;

/// How big a capture may grow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// A file is closed and the next begun past this size.
    pub max_file_bytes: u64,
    /// Files kept; the oldest beyond are deleted.
    pub keep_files: usize,
}

impl Default for Limits {
    /// 16 MiB × 8: a day of a 16-pack stack at one poll a second.
    fn default() -> Self {
        Self { max_file_bytes: 16 << 20, keep_files: 8 }
    }
}

/// Records waiting for the disk at most; beyond, records are dropped and counted.
const QUEUE: usize = 8192;

/// The writer flushes after the queue has been quiet this long.
const FLUSH_AFTER: Duration = Duration::from_millis(100);

enum Job {
    Record(Record, Option<String>),
    /// Ends the thread after what is queued.
    Stop,
}

/// A capture being written into a directory.
pub struct Recorder {
    tx: SyncSender<Job>,
    start: Instant,
    dropped: Arc<AtomicU64>,
    dir: PathBuf,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").field("dropped", &self.dropped.load(Ordering::Relaxed)).finish()
    }
}

impl Recorder {
    /// Starts capturing into a new folder of its own inside `parent` (made if missing), named
    /// after the time (`capture-20261207T174500Z`, `-2`, `-3`, … if taken): nothing already in
    /// `parent` is touched.
    ///
    /// # Errors
    /// The folder cannot be made, or the thread cannot start.
    pub fn start(parent: &Path, limits: Limits) -> io::Result<Arc<Self>> {
        Self::start_at(parent, limits, SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default())
    }

    /// As [`Recorder::start`], with `t = 0` at the wall clock `wall` (since the Unix epoch): a
    /// simulation's capture is on its plant clock.
    ///
    /// # Errors
    /// As [`Recorder::start`].
    pub fn start_at(parent: &Path, limits: Limits, wall: Duration) -> io::Result<Arc<Self>> {
        fs::create_dir_all(parent)?;
        let dir = fresh_folder(parent, &folder_name(wall))?;
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let mut files = Files {
            dir: dir.clone(),
            limits,
            wall,
            number: 0,
            file: None,
            named: Vec::new(),
            written: std::collections::VecDeque::new(),
            records_in_file: 0,
        };
        let seen_dropped = dropped.clone();
        let thread = std::thread::Builder::new()
            .name("capture".into())
            .spawn(move || files.run(&rx, &seen_dropped))?;
        Ok(Arc::new(Self { tx, start: Instant::now(), dropped, dir, thread: Mutex::new(Some(thread)) }))
    }

    /// The instant of `t = 0`: a program that keeps its own clock from it (the daemon's
    /// monotonic clock does) is on the capture's time line exactly.
    pub fn epoch(&self) -> Instant {
        self.start
    }

    /// The capture's own folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes `contents` into a new file `name` of the capture's folder (created new, links not
    /// followed: an existing file or a planted link is an error, never written through).
    ///
    /// # Errors
    /// The file exists or cannot be written.
    pub fn write_file(&self, name: &str, contents: &[u8]) -> io::Result<()> {
        let mut file = create_new(&self.dir.join(name))?;
        file.write_all(contents)?;
        file.sync_all()
    }

    /// A tap for the link `name` (its URL `url` goes in the file's `# link` line).
    pub fn tap(self: &Arc<Self>, name: &str, url: &str) -> Tap {
        let recorder = self.clone();
        let (name, url) = (name.to_owned(), url.to_owned());
        Arc::new(move |dir, bytes| recorder.record(&name, &url, dir, bytes))
    }

    /// Records `bytes`; never waits.
    pub fn record(&self, link: &str, url: &str, dir: Dir, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let record = Record { t: self.start.elapsed(), link: link.to_owned(), dir, bytes: bytes.to_vec() };
        if let Err(TrySendError::Full(_)) = self.tx.try_send(Job::Record(record, Some(url.to_owned()))) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records a mark at `t` on the capture's time line (`bytes` may be empty): the daemon's
    /// station notes when it took the time and each reply, so a replay takes them at the same
    /// instants. Never waits.
    pub fn mark(&self, link: &str, t: Duration, bytes: &[u8]) {
        let record = Record { t, link: link.to_owned(), dir: Dir::Rx, bytes: bytes.to_vec() };
        if let Err(TrySendError::Full(_)) = self.tx.try_send(Job::Record(record, None)) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records `record` (its URL, the first time its link is seen, for the `# link` line),
    /// waiting for the disk when it is behind: a simulation, which runs faster than any disk,
    /// loses nothing.
    pub fn record_at(&self, record: Record, url: Option<&str>) {
        let _ = self.tx.send(Job::Record(record, url.map(str::to_owned)));
    }

    /// Records dropped because the disk was behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Writes what is queued and ends the thread.
    pub fn stop(&self) {
        let _ = self.tx.send(Job::Stop);
        let thread = self.thread.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

/// `capture-YYYYMMDDTHHMMSSZ` for the wall clock `wall` (since the Unix epoch, UTC).
fn folder_name(wall: Duration) -> String {
    let secs = wall.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Days to a civil date (Howard Hinnant's algorithm), in integers only.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("capture-{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z", rest / 3600, rest % 3600 / 60, rest % 60)
}

/// Makes the folder `parent/name`, or `name-2`, `name-3`, … when taken; never one that exists
/// (a planted link included: `mkdir` does not follow it).
fn fresh_folder(parent: &Path, name: &str) -> io::Result<PathBuf> {
    for k in 1..1000 {
        let path = if k == 1 { parent.join(name) } else { parent.join(format!("{name}-{k}")) };
        match fs::DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => return Ok(path),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{name}-2 … {name}-999 all exist")))
}

/// `O_NOFOLLOW` on Linux (`create_new` already refuses to open through a link; this says so to
/// the kernel as well).
const O_NOFOLLOW: i32 = 0o400_000;

/// Creates `path` new, mode 0600, never through a link.
fn create_new(path: &Path) -> io::Result<File> {
    OpenOptions::new().write(true).create_new(true).mode(0o600).custom_flags(O_NOFOLLOW).open(path)
}

/// The number of a capture file's name (`capture-000001.log` → 1), whatever its digits.
fn file_number(name: &str) -> Option<u64> {
    let k = name.strip_prefix("capture-")?.strip_suffix(".log")?;
    if k.len() >= 6 && k.bytes().all(|b| b.is_ascii_digit()) { k.parse().ok() } else { None }
}

/// The capture files of `dir`, oldest first (by number: `capture-1000000.log` follows
/// `capture-999999.log`).
///
/// # Errors
/// The directory cannot be read.
pub fn files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut found: Vec<(u64, PathBuf)> = fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter_map(|p| Some((file_number(p.file_name()?.to_str()?)?, p)))
        .collect();
    found.sort();
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

/// The capture to read from `dir`: `dir` itself when it holds capture files, else its newest
/// capture folder (`capture-…`) that does. `None`: neither.
///
/// # Errors
/// `dir` cannot be read.
pub fn find(dir: &Path) -> io::Result<Option<PathBuf>> {
    if !files(dir)?.is_empty() {
        return Ok(Some(dir.to_owned()));
    }
    let mut folders: Vec<PathBuf> = fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("capture-")))
        .collect();
    folders.sort();
    Ok(folders.into_iter().rev().find(|f| files(f).is_ok_and(|f| !f.is_empty())))
}

/// A `# gap FROM TO: …` line: the stretch of time a capture does not hold.
pub fn parse_gap(line: &str) -> Option<(Duration, Duration)> {
    let (range, _) = line.strip_prefix("# gap ")?.split_once(':')?;
    let (from, to) = range.split_once(' ')?;
    Some((parse_seconds(from)?, parse_seconds(to)?))
}

/// The writer thread's files.
struct Files {
    dir: PathBuf,
    limits: Limits,
    wall: Duration,
    number: u64,
    file: Option<(BufWriter<File>, u64)>,
    /// Links named in the current file.
    named: Vec<String>,
    /// The files this capture wrote, oldest first: the only ones rotation deletes.
    written: std::collections::VecDeque<PathBuf>,
    /// Records written into the current file.
    records_in_file: u64,
}

/// Records lost while writing failed: how many, from when to when.
#[derive(Clone, Copy, Debug)]
struct Lost {
    count: u64,
    from: Duration,
    to: Duration,
}

impl Lost {
    /// Both stretches as one.
    fn and(self, other: &Self) -> Self {
        Self { count: self.count + other.count, from: self.from.min(other.from), to: self.to.max(other.to) }
    }
}

impl Files {
    fn run(&mut self, rx: &Receiver<Job>, dropped: &AtomicU64) {
        let mut reported = 0;
        // Records that went into the writer since its last good flush, and what was lost while
        // writing failed: the first and last time, and how many.
        let mut unflushed: Option<Lost> = None;
        let mut lost: Option<Lost> = None;
        loop {
            // A quiet moment flushes: a record is on disk soon after it happened.
            let job = match rx.recv_timeout(FLUSH_AFTER) {
                Ok(job) => job,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Err(e) = self.flush() {
                        self.failed(&mut lost, unflushed.take(), &e);
                    }
                    unflushed = None;
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            let Job::Record(record, url) = job else { break };
            let now = dropped.load(Ordering::Relaxed);
            // Writing resumes with the gap's marker, before the record.
            let result = match &lost {
                Some(gap) => self.gap(gap).and_then(|()| self.write(&record, url.as_deref(), now - reported)),
                None => self.write(&record, url.as_deref(), now - reported),
            };
            reported = now;
            let this = Lost { count: 1, from: record.t, to: record.t };
            match result {
                Ok(()) => {
                    lost = None;
                    unflushed = Some(unflushed.map_or(this, |u| u.and(&this)));
                }
                Err(e) => {
                    let held = unflushed.take().map_or(this, |u| u.and(&this));
                    self.failed(&mut lost, Some(held), &e);
                }
            }
        }
        let _ = self.flush();
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.file {
            Some((w, _)) => w.flush(),
            None => Ok(()),
        }
    }

    /// Writing failed with `e`: the records `held` are lost (added to `lost`), and the file is
    /// dropped. Said once per run of failures: a full disk must not flood the log.
    fn failed(&mut self, lost: &mut Option<Lost>, held: Option<Lost>, e: &io::Error) {
        if lost.is_none() {
            eprintln!("capture: {}: {e}", self.dir.display());
        }
        if let Some(held) = held {
            *lost = Some(lost.take().map_or(held, |l| l.and(&held)));
        }
        self.abandon_file();
    }

    /// Drops the file whose write failed (what its writer held is lost with the record; the next
    /// file starts clean). One that holds no record yet is deleted and its number used again, so
    /// a disk that stays full does not rotate the capture's good files away.
    fn abandon_file(&mut self) {
        if self.file.take().is_some() && self.records_in_file == 0 {
            if let Some(path) = self.written.pop_back() {
                let _ = fs::remove_file(path);
                self.number -= 1;
            }
        }
    }

    /// The marker of the records lost while writing failed, at the head of a new file (the one
    /// that failed may end in a torn line), flushed before anything follows it.
    fn gap(&mut self, gap: &Lost) -> io::Result<()> {
        if self.file.is_none() {
            self.next_file(0)?;
        }
        let at = |t: Duration| format!("{}.{:06}", t.as_secs(), t.subsec_micros());
        self.put(&format!(
            "# gap {} {}: {} records lost (writing failed; the disk was full or gone)",
            at(gap.from),
            at(gap.to),
            gap.count
        ))?;
        self.flush()
    }

    fn write(&mut self, record: &Record, url: Option<&str>, dropped: u64) -> io::Result<()> {
        let line = record.line();
        let full = self
            .file
            .as_ref()
            .is_none_or(|(_, size)| *size + line.len() as u64 + 1 > self.limits.max_file_bytes);
        if full {
            self.next_file(dropped)?;
        } else if dropped > 0 {
            self.put(&format!("# {dropped} records dropped here: the disk was behind"))?;
        }
        if !self.named.contains(&record.link) {
            self.named.push(record.link.clone());
            self.put(&format!("# link {} {}", record.link, url.unwrap_or("")))?;
        }
        self.put(&line)?;
        self.records_in_file += 1;
        Ok(())
    }

    fn put(&mut self, line: &str) -> io::Result<()> {
        let Some((w, size)) = &mut self.file else { return Ok(()) };
        w.write_all(line.as_bytes())?;
        w.write_all(b"\n")?;
        *size += line.len() as u64 + 1;
        Ok(())
    }

    fn next_file(&mut self, dropped: u64) -> io::Result<()> {
        if let Some((mut w, _)) = self.file.take() {
            w.flush()?;
        }
        self.number += 1;
        let path = self.dir.join(format!("capture-{:06}.log", self.number));
        let file = create_new(&path)?;
        self.written.push_back(path);
        self.file = Some((BufWriter::new(file), 0));
        self.records_in_file = 0;
        self.named.clear();
        let header = format!(
            "# pace2pylon capture {VERSION}; t=0 is unix {}.{:06}",
            self.wall.as_secs(),
            self.wall.subsec_micros()
        );
        self.put(&header)?;
        if dropped > 0 {
            self.put(&format!("# {dropped} records dropped before this file: the disk was behind"))?;
        }
        while self.written.len() > self.limits.keep_files.max(1) {
            if let Some(old) = self.written.pop_front() {
                fs::remove_file(old)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_line_round_trips() {
        let r = Record {
            t: Duration::from_micros(12_345_678),
            link: "pack1".into(),
            dir: Dir::Rx,
            bytes: vec![0x7E, 0x32, 0x0D, 0x00, 0xFF],
        };
        assert_eq!(r.line(), "12.345678 pack1 rx 7E320D00FF");
        assert_eq!(Record::parse(&r.line()), Ok(Some(r)));
        assert_eq!(Record::parse("# a comment"), Ok(None));
        assert_eq!(Record::parse(""), Ok(None));
    }

    #[test]
    fn a_bad_record_is_refused_with_what_is_wrong() {
        for (line, says) in [
            ("1.0 pack1 tx", "four fields"),
            ("1.0 pack1 tx 7E 0D", "four fields"),
            ("x pack1 tx 7E", "time"),
            ("-1.0 pack1 tx 7E", "time"),
            ("1.0 pack/1 tx 7E", "link name"),
            ("1.0 pack1 up 7E", "direction"),
            ("1.0 pack1 tx 7E0", "whole number"),
            ("1.0 pack1 tx ZZ", "hex"),
            ("1.0 pack1 tx 7ÉA", "hex digits"),
        ] {
            let e = Record::parse(line).unwrap_err();
            assert!(e.contains(says), "{line}: {e}");
        }
    }

    #[test]
    fn the_header_gives_the_wall_clock_of_t0() {
        assert_eq!(
            parse_header("# pace2pylon capture 1; t=0 is unix 1764662400.123456"),
            Some((1, 1_764_662_400.123_456))
        );
        assert_eq!(parse_header("# something else"), None);
    }

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("p2p-capture-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// What a capture folder holds once the recorder stopped: (file name, text).
    fn contents(dir: &Path) -> Vec<(String, String)> {
        let mut all: Vec<(String, String)> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), fs::read_to_string(&p).unwrap()))
            .collect();
        all.sort();
        all
    }

    #[test]
    fn a_capture_never_overwrites_the_operators_files_nor_writes_through_a_link() {
        let parent = temp("own");
        // The operator's files, a file named as a capture's, and links planted where the
        // capture's folder will be named (this second and the next).
        fs::write(parent.join("config.toml"), "the operator's own\n").unwrap();
        fs::write(parent.join("capture-000001.log"), "an earlier capture\n").unwrap();
        let victim = parent.join("victim");
        fs::create_dir_all(&victim).unwrap();
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        for ahead in 0..3 {
            let name = folder_name(wall + Duration::from_secs(ahead));
            std::os::unix::fs::symlink(&victim, parent.join(name)).unwrap();
        }
        let r = Recorder::start(&parent, Limits::default()).unwrap();
        assert!(r.dir().starts_with(&parent) && r.dir() != parent);
        assert!(!fs::symlink_metadata(r.dir()).unwrap().file_type().is_symlink(), "{:?}", r.dir());
        r.write_file("config.toml", b"# the capture's copy\n").unwrap();
        assert!(r.write_file("config.toml", b"again").is_err(), "an existing file is never written over");
        std::os::unix::fs::symlink(parent.join("config.toml"), r.dir().join("planted.toml")).unwrap();
        assert!(r.write_file("planted.toml", b"through the link").is_err());
        r.record("pack1", "tcp://h:1", Dir::Tx, b"~25");
        r.stop();
        assert_eq!(fs::read_to_string(parent.join("config.toml")).unwrap(), "the operator's own\n");
        assert_eq!(fs::read_to_string(parent.join("capture-000001.log")).unwrap(), "an earlier capture\n");
        assert_eq!(fs::read_dir(&victim).unwrap().count(), 0, "nothing went through the planted links");
        let files: Vec<String> = contents(r.dir()).into_iter().map(|(n, _)| n).collect();
        assert_eq!(files, ["capture-000001.log", "config.toml", "planted.toml"]);
        // `find` picks the capture in the folder given, then the newest capture folder.
        assert_eq!(
            find(&parent).unwrap(),
            Some(parent.clone()),
            "the earlier capture lies in the folder itself"
        );
        fs::remove_file(parent.join("capture-000001.log")).unwrap();
        assert_eq!(find(&parent).unwrap().as_deref(), Some(r.dir()));
        fs::remove_dir_all(&parent).unwrap();
    }

    #[test]
    fn capture_file_numbers_past_999999_keep_their_order_and_rotation() {
        let dir = temp("numbers");
        for n in [999_998u64, 999_999, 1_000_000, 1_000_001] {
            fs::write(dir.join(format!("capture-{n:06}.log")), "").unwrap();
        }
        fs::write(dir.join("capture-12.log"), "").unwrap();
        let names: Vec<String> = files(&dir)
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["capture-999998.log", "capture-999999.log", "capture-1000000.log", "capture-1000001.log"]
        );
        // The writer names and rotates past the six digits.
        let mut f = Files {
            dir: dir.clone(),
            limits: Limits { max_file_bytes: 1, keep_files: 2 },
            wall: Duration::ZERO,
            number: 1_000_001,
            file: None,
            named: Vec::new(),
            written: std::collections::VecDeque::new(),
            records_in_file: 0,
        };
        for k in 0..4 {
            let r = Record { t: Duration::from_secs(k), link: "pack1".into(), dir: Dir::Rx, bytes: vec![1] };
            f.write(&r, None, 0).unwrap();
        }
        drop(f);
        assert!(dir.join("capture-1000005.log").exists() && dir.join("capture-1000004.log").exists());
        assert!(!dir.join("capture-1000002.log").exists(), "rotated away: it was this writer's");
        assert!(dir.join("capture-999998.log").exists(), "not this writer's: never deleted");
        assert_eq!(files(&dir).unwrap().len(), 6);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_full_disk_leaves_a_gap_marker_when_writing_resumes() {
        let dir = temp("gap");
        let mut f = Files {
            dir: dir.clone(),
            limits: Limits::default(),
            wall: Duration::ZERO,
            number: 0,
            file: None,
            named: Vec::new(),
            written: std::collections::VecDeque::new(),
            records_in_file: 0,
        };
        let record = |s: u64| Record {
            t: Duration::from_secs(s),
            link: "pack1".into(),
            dir: Dir::Rx,
            bytes: vec![s as u8],
        };
        let dropped = AtomicU64::new(0);
        let (tx, rx) = mpsc::sync_channel(16);
        tx.send(Job::Record(record(1), None)).unwrap();
        tx.send(Job::Stop).unwrap();
        f.run(&rx, &dropped);
        // The disk fills: the open file now fails as /dev/full does (ENOSPC), at the flush of
        // a quiet moment; record 2 is lost, and writing resumes with record 3.
        let full = OpenOptions::new().write(true).open("/dev/full").unwrap();
        f.file = Some((BufWriter::new(full), 0));
        let (tx, rx) = mpsc::sync_channel(16);
        let feeder = std::thread::spawn(move || {
            tx.send(Job::Record(record(2), None)).unwrap();
            std::thread::sleep(FLUSH_AFTER * 3);
            tx.send(Job::Record(record(3), None)).unwrap();
            tx.send(Job::Stop).unwrap();
        });
        f.run(&rx, &dropped);
        feeder.join().unwrap();
        let names: Vec<String> = contents(&dir).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["capture-000001.log", "capture-000002.log"]);
        let text = fs::read_to_string(dir.join("capture-000002.log")).unwrap();
        let line = text.lines().find(|l| l.starts_with("# gap")).unwrap_or_else(|| panic!("{text}"));
        assert_eq!(parse_gap(line), Some((Duration::from_secs(2), Duration::from_secs(2))), "{text}");
        assert!(line.contains("1 records lost"), "{line}");
        assert!(text.lines().last().unwrap().starts_with("3.000000 pack1 rx 03"), "{text}");
        fs::remove_dir_all(&dir).unwrap();
    }

    proptest::proptest! {
        #[test]
        fn any_record_round_trips(
            micros in 0u64..1_000_000_000_000,
            link in "[a-z][a-z0-9_-]{0,11}",
            tx in proptest::bool::ANY,
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 1..300),
        ) {
            let r = Record {
                t: Duration::from_micros(micros),
                link,
                dir: if tx { Dir::Tx } else { Dir::Rx },
                bytes,
            };
            proptest::prop_assert_eq!(Record::parse(&r.line()), Ok(Some(r)));
        }

        #[test]
        fn any_line_parses_or_is_refused(line in "\\PC{0,200}") {
            let _ = Record::parse(&line);
            let _ = parse_header(&line);
        }
    }
}
