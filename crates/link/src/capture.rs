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
//! header says how many). Files are `capture-000001.log`, `capture-000002.log`, … of at most
//! `max_file_bytes` each; beyond `keep_files` the oldest is deleted, so a capture never holds
//! more than their product.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
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
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").field("dropped", &self.dropped.load(Ordering::Relaxed)).finish()
    }
}

impl Recorder {
    /// Starts capturing into `dir` (made if missing; files of an earlier capture there are
    /// deleted first, so a capture is one run).
    ///
    /// # Errors
    /// The directory cannot be made or cleared, or the thread cannot start.
    pub fn start(dir: &Path, limits: Limits) -> io::Result<Arc<Self>> {
        fs::create_dir_all(dir)?;
        for old in files(dir)? {
            fs::remove_file(old)?;
        }
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let mut files = Files { dir: dir.to_owned(), limits, wall, number: 0, file: None, named: Vec::new() };
        let seen_dropped = dropped.clone();
        let thread = std::thread::Builder::new()
            .name("capture".into())
            .spawn(move || files.run(&rx, &seen_dropped))?;
        Ok(Arc::new(Self { tx, start: Instant::now(), dropped, thread: Mutex::new(Some(thread)) }))
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

/// The capture files of `dir`, oldest first.
///
/// # Errors
/// The directory cannot be read.
pub fn files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.strip_prefix("capture-")
                    .and_then(|n| n.strip_suffix(".log"))
                    .is_some_and(|k| k.len() == 6 && k.bytes().all(|b| b.is_ascii_digit()))
            })
        })
        .collect();
    found.sort();
    Ok(found)
}

/// The writer thread's files.
struct Files {
    dir: PathBuf,
    limits: Limits,
    wall: Duration,
    number: u32,
    file: Option<(BufWriter<File>, u64)>,
    /// Links named in the current file.
    named: Vec<String>,
}

impl Files {
    fn run(&mut self, rx: &Receiver<Job>, dropped: &AtomicU64) {
        let mut reported = 0;
        let mut failed = false;
        loop {
            // A quiet moment flushes: a record is on disk soon after it happened.
            let job = match rx.recv_timeout(FLUSH_AFTER) {
                Ok(job) => job,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Some((w, _)) = &mut self.file {
                        let _ = w.flush();
                    }
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            let Job::Record(record, url) = job else { break };
            let now = dropped.load(Ordering::Relaxed);
            let result = self.write(&record, url.as_deref(), now - reported);
            reported = now;
            match result {
                Ok(()) => failed = false,
                Err(e) if !failed => {
                    // Said once per run of failures: a full disk must not flood the log.
                    eprintln!("capture: {}: {e}", self.dir.display());
                    failed = true;
                }
                Err(_) => {}
            }
        }
        if let Some((w, _)) = &mut self.file {
            let _ = w.flush();
        }
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
        self.put(&line)
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
        let file = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&path)?;
        self.file = Some((BufWriter::new(file), 0));
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
        let all = files(&self.dir)?;
        for old in all.iter().take(all.len().saturating_sub(self.limits.keep_files.max(1))) {
            fs::remove_file(old)?;
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
