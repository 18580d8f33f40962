//! The last 48 hours in one-minute samples, for the page's charts and `GET /api/v1/history`.
//!
//! The safety loop hands every decision in ([`History::observe`]); a minute's sample is made when
//! the wall clock passes into the next minute: currents, voltage and power are the minute's means,
//! the cells its extremes, the SOC and the limits its last values, and charging (discharging)
//! counts as enabled only if it was enabled the whole minute — so a short cut-off still shows —
//! with every reason seen in the minute. The ring is bounded ([`KEEP`] samples).
//!
//! Each sample is also appended to the history file (`state.history_file`, JSON lines), which is
//! read back at start, so the charts survive a restart; the file is cut back to the newest
//! [`KEEP`] lines whenever it holds twice that.

use std::collections::VecDeque;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The most of a history file read at start: its end (48 h of 64 packs is about 8 MiB), so a
/// file grown huge by a hand or a bug costs no more memory than this.
const READ_MAX: u64 = 32 << 20;

/// The last `max` bytes of `path`, from the first whole line in them.
fn read_tail(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = fs::File::open(path)?;
    let len = f.metadata()?.len();
    if len <= max {
        let mut all = Vec::new();
        f.read_to_end(&mut all)?;
        return Ok(all);
    }
    f.seek(SeekFrom::Start(len - max))?;
    let mut tail = Vec::new();
    f.take(max).read_to_end(&mut tail)?;
    let first = tail.iter().position(|&b| b == b'\n').map_or(tail.len(), |k| k + 1);
    Ok(tail.split_off(first))
}

/// The history file, appended to by the writer thread.
#[derive(Debug)]
pub struct HistoryFile {
    path: PathBuf,
    lines: usize,
}

impl HistoryFile {
    /// The file at `path`, holding `lines` samples now.
    pub fn new(path: PathBuf, lines: usize) -> Self {
        Self { path, lines }
    }

    /// Writes `history` as the whole file (temp file, rename), mode 0600.
    ///
    /// # Errors
    /// Writing or renaming failed.
    pub fn rewrite(&mut self, history: &History) -> io::Result<()> {
        let tmp = PathBuf::from(format!("{}.tmp", self.path.display()));
        let mut text = String::new();
        for (_, _, json) in &history.samples {
            text += json;
            text.push('\n');
        }
        {
            let mut f = crate::file::create_fresh(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
        }
        fs::rename(&tmp, &self.path)?;
        self.lines = history.samples.len();
        Ok(())
    }

    /// Appends one sample; cuts the file back to the newest [`KEEP`] once it holds twice that.
    ///
    /// # Errors
    /// Writing failed.
    pub fn append(&mut self, sample: &Sample) -> io::Result<()> {
        let mut line = serde_json::to_string(sample).map_err(io::Error::other)?;
        line.push('\n');
        let mut f = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(crate::file::O_NOFOLLOW)
            .open(&self.path)?;
        f.write_all(line.as_bytes())?;
        self.lines += 1;
        if self.lines >= 2 * KEEP {
            let now = sample.time.parse::<jiff::Timestamp>().map_or(0, |t| t.as_second()) + INTERVAL_S;
            let (kept, _) = History::load(&self.path, now)?;
            self.rewrite(&kept)?;
        }
        Ok(())
    }
}

/// What the safety loop's step `out` at `now` shows the history; a pack's reading older than
/// `stale_ms` counts as not read.
pub fn moment(
    now: &crate::core::Now,
    out: &crate::core::Output,
    packs: &[crate::shared::PackReadings],
    stale_ms: u64,
) -> Moment {
    let view = out.snapshot.view.as_ref();
    let d = &out.decision;
    Moment {
        unix_s: now.wall.as_second(),
        stack: view.map(|v| StackMoment {
            voltage_mv: v.voltage.raw(),
            current_ma: v.current_ma,
            soc_pct: v.soc.raw(),
            cell_min_mv: v.cell_min.0.raw(),
            cell_max_mv: v.cell_max.0.raw(),
        }),
        charge: d.charge,
        discharge: d.discharge,
        limits_ma: (
            view.and_then(|v| v.max_charge_ma),
            view.and_then(|v| v.max_discharge_ma).map(i32::saturating_abs),
        ),
        reasons: d.reasons.iter().map(maestro_core::Reason::describe).collect(),
        packs: packs
            .iter()
            .map(|r| match &r.analog {
                Some((a, at)) if now.mono.since(*at) <= stale_ms => {
                    (Some(i32::from(a.current.raw()) * 10), a.soc().map(|p| p.raw()))
                }
                _ => (None, None),
            })
            .collect(),
    }
}

/// One-minute samples kept: 48 hours.
pub const KEEP: usize = 48 * 60;

/// Seconds per sample.
pub const INTERVAL_S: i64 = 60;

/// Reasons kept per minute at most (64 silent packs are one line each).
const REASONS_MAX: usize = 16;

/// Packs a loaded sample keeps at most.
const PACKS_MAX: usize = 255;

/// Characters a loaded reason keeps at most (a reason's text is a sentence).
const REASON_CHARS_MAX: usize = 200;

/// A history line longer than this is not a sample (16 reasons and 255 packs fit in 32 KiB).
const LINE_MAX: usize = 64 << 10;

/// One pack's part of a sample.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PackSample {
    /// Mean current, mA, + charging; `null` when it was not read in the minute.
    pub current_ma: Option<i32>,
    /// Last SOC, %.
    pub soc_pct: Option<u8>,
}

/// One minute.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// The minute's start, RFC 3339 UTC.
    pub time: String,
    /// The stack's SOC at the minute's end, %.
    pub soc_pct: Option<u8>,
    /// Mean stack voltage, mV.
    pub voltage_mv: Option<u32>,
    /// Mean stack current, mA, + charging.
    pub current_ma: Option<i32>,
    /// Mean stack power, W, + charging.
    pub power_w: Option<i64>,
    /// Lowest cell seen, mV.
    pub cell_min_mv: Option<u16>,
    /// Highest cell seen, mV.
    pub cell_max_mv: Option<u16>,
    /// Charging was enabled the whole minute.
    pub charge_enabled: bool,
    /// Discharging was enabled the whole minute.
    pub discharge_enabled: bool,
    /// The charge current limit told at the minute's end, mA.
    pub charge_limit_ma: Option<i32>,
    /// The discharge current limit told at the minute's end, mA (positive).
    pub discharge_limit_ma: Option<i32>,
    /// Every safety reason seen in the minute, in words (at most 16).
    pub reasons: Vec<String>,
    /// Each pack, pack 1 first.
    pub packs: Vec<PackSample>,
}

/// What one decision of the safety loop shows the history.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Moment {
    /// Wall clock, Unix seconds.
    pub unix_s: i64,
    /// The stack: voltage mV, current mA, SOC %, lowest and highest cell mV; `None` before a
    /// pack reported.
    pub stack: Option<StackMoment>,
    /// Charging enabled.
    pub charge: bool,
    /// Discharging enabled.
    pub discharge: bool,
    /// The limits told: charge, discharge (positive), mA.
    pub limits_ma: (Option<i32>, Option<i32>),
    /// The active reasons in words.
    pub reasons: Vec<String>,
    /// Each pack's fresh current (mA) and SOC, `None` when stale.
    pub packs: Vec<(Option<i32>, Option<u8>)>,
}

/// The stack at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StackMoment {
    /// Voltage, mV.
    pub voltage_mv: u16,
    /// Current, mA, + charging.
    pub current_ma: i32,
    /// SOC, %.
    pub soc_pct: u8,
    /// Lowest cell, mV.
    pub cell_min_mv: u16,
    /// Highest cell, mV.
    pub cell_max_mv: u16,
}

/// Sums of one running mean.
#[derive(Clone, Copy, Debug, Default)]
struct Mean {
    sum: i64,
    n: i64,
}

impl Mean {
    fn add(&mut self, v: i64) {
        self.sum += v;
        self.n += 1;
    }

    fn get(self) -> Option<i64> {
        self.get_divided(1)
    }

    fn get_divided(self, by: i64) -> Option<i64> {
        (self.n > 0).then(|| (self.sum as f64 / self.n as f64 / by as f64).round() as i64)
    }
}

/// The minute being gathered.
#[derive(Clone, Debug)]
struct Minute {
    start_s: i64,
    voltage: Mean,
    current: Mean,
    power: Mean,
    soc: Option<u8>,
    cell_min: Option<u16>,
    cell_max: Option<u16>,
    charge: bool,
    discharge: bool,
    limits: (Option<i32>, Option<i32>),
    reasons: Vec<String>,
    packs: Vec<(Mean, Option<u8>)>,
}

impl Minute {
    fn new(start_s: i64, packs: usize) -> Self {
        Self {
            start_s,
            voltage: Mean::default(),
            current: Mean::default(),
            power: Mean::default(),
            soc: None,
            cell_min: None,
            cell_max: None,
            charge: true,
            discharge: true,
            limits: (None, None),
            reasons: Vec::new(),
            packs: vec![(Mean::default(), None); packs],
        }
    }

    fn add(&mut self, m: &Moment) {
        if let Some(s) = m.stack {
            self.voltage.add(i64::from(s.voltage_mv));
            self.current.add(i64::from(s.current_ma));
            // mV × mA, divided once when the minute ends: no whole-watt rounding per moment.
            self.power.add(i64::from(s.voltage_mv) * i64::from(s.current_ma));
            self.soc = Some(s.soc_pct);
            self.cell_min = Some(self.cell_min.map_or(s.cell_min_mv, |v| v.min(s.cell_min_mv)));
            self.cell_max = Some(self.cell_max.map_or(s.cell_max_mv, |v| v.max(s.cell_max_mv)));
        }
        self.charge &= m.charge;
        self.discharge &= m.discharge;
        self.limits = m.limits_ma;
        for r in &m.reasons {
            if self.reasons.len() < REASONS_MAX && !self.reasons.contains(r) {
                self.reasons.push(r.clone());
            }
        }
        if self.packs.len() < m.packs.len() {
            self.packs.resize(m.packs.len(), (Mean::default(), None));
        }
        for ((mean, soc), (current, now)) in self.packs.iter_mut().zip(&m.packs) {
            if let Some(c) = current {
                mean.add(i64::from(*c));
            }
            if now.is_some() {
                *soc = *now;
            }
        }
    }

    fn sample(self) -> Sample {
        let time = jiff::Timestamp::from_second(self.start_s).map(|t| t.to_string()).unwrap_or_default();
        let narrow = |v: Option<i64>| v.and_then(|v| i32::try_from(v).ok());
        Sample {
            time,
            soc_pct: self.soc,
            voltage_mv: self.voltage.get().and_then(|v| u32::try_from(v).ok()),
            current_ma: narrow(self.current.get()),
            power_w: self.power.get_divided(1_000_000),
            cell_min_mv: self.cell_min,
            cell_max_mv: self.cell_max,
            charge_enabled: self.charge,
            discharge_enabled: self.discharge,
            charge_limit_ma: self.limits.0,
            discharge_limit_ma: self.limits.1,
            reasons: self.reasons,
            packs: self
                .packs
                .into_iter()
                .map(|(mean, soc)| PackSample { current_ma: narrow(mean.get()), soc_pct: soc })
                .collect(),
        }
    }
}

/// The ring of samples and the minute being gathered. Each sample is kept with its JSON,
/// encoded once: every `GET /api/v1/history` shares those bytes instead of encoding its own copy.
#[derive(Clone, Debug, Default)]
pub struct History {
    samples: VecDeque<(i64, Sample, Arc<str>)>,
    minutes: Minutes,
}

/// The minute being gathered from the decisions: sans-IO, the station's part of the history.
#[derive(Clone, Debug, Default)]
pub struct Minutes {
    minute: Option<Minute>,
}

/// A closed minute: its start (Unix seconds) and its sample.
#[derive(Clone, Debug, PartialEq)]
pub struct Closed {
    /// The minute's start, Unix seconds.
    pub start_s: i64,
    /// Its sample.
    pub sample: Sample,
}

impl Minutes {
    /// Takes in one decision; closes the minute when `m` is in another one and returns it.
    pub fn observe(&mut self, m: &Moment) -> Option<Closed> {
        let start = m.unix_s.div_euclid(INTERVAL_S) * INTERVAL_S;
        let mut closed = None;
        if self.minute.as_ref().is_some_and(|minute| minute.start_s != start) {
            if let Some(done) = self.minute.take() {
                closed = Some(Closed { start_s: done.start_s, sample: done.sample() });
            }
        }
        self.minute.get_or_insert_with(|| Minute::new(start, m.packs.len())).add(m);
        closed
    }
}

/// What loading a history file found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Loaded {
    /// Lines read.
    pub lines: usize,
    /// Lines passed over: they do not parse, or are too long to be a sample.
    pub bad: usize,
    /// Lines dated before the line above them (put in their place, not dropped).
    pub out_of_order: usize,
    /// Lines older than 48 hours.
    pub old: usize,
}

impl Loaded {
    /// Whether the file holds what should not stay in it (lines that are not samples, or older
    /// than what is kept, or more than [`KEEP`]): only then is it rewritten.
    pub fn needs_rewrite(&self) -> bool {
        self.bad > 0 || self.old > 0 || self.lines > KEEP
    }
}

impl History {
    /// Takes in one decision; closes the minute when `m` is in another one and returns its
    /// sample. Samples never go out of order: after a clock set back, the samples from the new
    /// minute on are dropped.
    pub fn observe(&mut self, m: &Moment) -> Option<Sample> {
        let closed = self.minutes.observe(m)?;
        self.record(closed)
    }

    /// Keeps a closed minute's sample (as the station hands it over); returns it unless the
    /// clock went back past it.
    pub fn record(&mut self, closed: Closed) -> Option<Sample> {
        self.push(closed.start_s, closed.sample)
    }

    fn push(&mut self, start_s: i64, sample: Sample) -> Option<Sample> {
        if self.samples.back().is_some_and(|(s, _, _)| *s >= start_s) {
            // The clock went back (NTP corrected a clock that ran ahead): the samples from this
            // minute on were in a future that did not happen, and go.
            let kept = self.samples.iter().take_while(|(s, _, _)| *s < start_s).count();
            self.samples.truncate(kept);
        }
        if self.samples.len() == KEEP {
            self.samples.pop_front();
        }
        let json: Arc<str> = serde_json::to_string(&sample).unwrap_or_default().into();
        self.samples.push_back((start_s, sample.clone(), json));
        Some(sample)
    }

    /// The history in the file at `path` (a missing file is an empty history): the samples from
    /// 48 hours before `now_s` on (later ones too: a clock that starts behind after a power cut
    /// loses nothing), in time order — a line dated before the one above it (a wrong digit, a
    /// hand edit) is put in its place and counted, never a reason to drop others; of two lines of
    /// the same minute the later in the file counts. Lines that do not parse, or are longer than
    /// a sample can be, are passed over and counted (a torn last line after a crash); each
    /// sample keeps at most 16 reasons of at most 200 characters, and 255 packs.
    ///
    /// # Errors
    /// The file exists but cannot be read.
    pub fn load(path: &Path, now_s: i64) -> io::Result<(Self, Loaded)> {
        let text = match read_tail(path, READ_MAX) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Self::default(), Loaded::default())),
            Err(e) => return Err(e),
        };
        let mut loaded = Loaded::default();
        let since = now_s - (KEEP as i64) * INTERVAL_S;
        let mut found: Vec<(i64, Sample)> = Vec::new();
        let mut previous = i64::MIN;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            loaded.lines += 1;
            let parsed = (line.len() <= LINE_MAX)
                .then(|| serde_json::from_str::<Sample>(line).ok())
                .flatten()
                .and_then(|mut s| {
                    let t = s.time.parse::<jiff::Timestamp>().ok()?.as_second();
                    s.time = jiff::Timestamp::from_second(t).ok()?.to_string();
                    s.reasons.truncate(REASONS_MAX);
                    for r in &mut s.reasons {
                        if let Some((cut, _)) = r.char_indices().nth(REASON_CHARS_MAX) {
                            r.truncate(cut);
                        }
                    }
                    s.packs.truncate(PACKS_MAX);
                    (t % INTERVAL_S == 0).then_some((t, s))
                });
            let Some((t, s)) = parsed else {
                loaded.bad += 1;
                continue;
            };
            if t <= previous {
                loaded.out_of_order += 1;
            }
            previous = t;
            if t < since {
                loaded.old += 1;
            } else {
                found.push((t, s));
            }
        }
        // In time order; of one minute's samples the file's last.
        found.sort_by_key(|(t, _)| *t);
        let mut history = Self::default();
        for (k, (t, s)) in found.iter().enumerate() {
            if found.get(k + 1).is_none_or(|(next, _)| next != t) {
                history.push(*t, s.clone());
            }
        }
        Ok((history, loaded))
    }

    /// The samples of the last `hours` before `now_s`, oldest first.
    pub fn last(&self, hours: u32, now_s: i64) -> Vec<Sample> {
        let since = now_s - i64::from(hours) * 3600;
        self.samples.iter().filter(|(s, _, _)| *s >= since).map(|(_, sample, _)| sample.clone()).collect()
    }

    /// The JSON of each sample of the last `hours` before `now_s`, oldest first: shared, not
    /// copied.
    pub fn last_encoded(&self, hours: u32, now_s: i64) -> Vec<Arc<str>> {
        let since = now_s - i64::from(hours) * 3600;
        self.samples.iter().filter(|(s, _, _)| *s >= since).map(|(_, _, json)| json.clone()).collect()
    }

    /// Samples kept.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether none is kept yet.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A whole minute (2027-01-15T08:00:00Z).
    const T0: i64 = 1_800_000_000;

    fn moment(unix_s: i64, current_ma: i32, charge: bool, reason: Option<&str>) -> Moment {
        Moment {
            unix_s,
            stack: Some(StackMoment {
                voltage_mv: 52_000,
                current_ma,
                soc_pct: 50,
                cell_min_mv: 3300 - (unix_s % 7) as u16,
                cell_max_mv: 3320 + (unix_s % 5) as u16,
            }),
            charge,
            discharge: true,
            limits_ma: (Some(100_000), Some(90_000)),
            reasons: reason.into_iter().map(str::to_owned).collect(),
            packs: vec![(Some(current_ma / 2), Some(50)), (None, None)],
        }
    }

    #[test]
    fn a_minute_is_its_means_its_extremes_and_enabled_only_if_enabled_throughout() {
        let mut h = History::default();
        let t0 = T0;
        for k in 0..60 {
            let cut = (20..25).contains(&k);
            h.observe(&moment(
                t0 + k,
                if k < 30 { 10_000 } else { -10_000 },
                !cut,
                cut.then_some("cell hot"),
            ));
        }
        assert!(h.is_empty(), "the minute is not over");
        h.observe(&moment(t0 + 60, 0, true, None));
        let s = h.last(1, t0 + 61);
        assert_eq!(s.len(), 1);
        let s = &s[0];
        assert_eq!(s.time, jiff::Timestamp::from_second(t0).unwrap().to_string());
        assert_eq!((s.current_ma, s.power_w, s.voltage_mv), (Some(0), Some(0), Some(52_000)));
        assert_eq!((s.cell_min_mv, s.cell_max_mv), (Some(3294), Some(3324)));
        assert!(!s.charge_enabled && s.discharge_enabled, "five seconds off is shown");
        assert_eq!(s.reasons, ["cell hot"]);
        assert_eq!(s.packs, [PackSample { current_ma: Some(0), soc_pct: Some(50) }, PackSample::default()]);
        assert_eq!((s.charge_limit_ma, s.discharge_limit_ma), (Some(100_000), Some(90_000)));
    }

    #[test]
    fn the_ring_keeps_48_hours_and_hours_selects_the_newest() {
        let mut h = History::default();
        let t0 = T0;
        for minute in 0..(KEEP as i64 + 100) {
            h.observe(&moment(t0 + minute * 60, 1000, true, None));
        }
        assert_eq!(h.len(), KEEP);
        let now = t0 + (KEEP as i64 + 100) * 60;
        let hour = h.last(1, now);
        // The minute being gathered is not a sample yet, and the window ends now.
        assert_eq!(hour.len(), 59);
        assert_eq!(h.last(48, now).len(), KEEP - 1);
        assert_eq!(h.last(48, now - 60).len(), KEEP, "everything kept is within 48 h of its newest");
    }

    #[test]
    fn a_clock_set_back_drops_the_samples_of_the_future_it_left() {
        let mut h = History::default();
        let t0 = T0;
        for t in [t0, t0 + 60, t0 + 120, t0 - 3600, t0 - 3540, t0 + 180, t0 + 240] {
            h.observe(&moment(t, 1000, true, None));
        }
        let times: Vec<String> = h.last(48, t0 + 300).into_iter().map(|s| s.time).collect();
        let at = |t: i64| jiff::Timestamp::from_second(t).unwrap().to_string();
        // Set back an hour at t0 + 120 (that minute still closes, then goes with the others).
        assert_eq!(times, [at(t0 - 3600), at(t0 - 3540), at(t0 + 180)]);
    }

    #[test]
    fn reasons_are_bounded_per_minute() {
        let mut h = History::default();
        let t0 = T0;
        let mut m = moment(t0, 0, false, None);
        m.reasons = (1..=64).map(|k| format!("pack {k} has not answered recently")).collect();
        h.observe(&m);
        h.observe(&moment(t0 + 60, 0, true, None));
        assert_eq!(h.last(1, t0 + 60)[0].reasons.len(), REASONS_MAX);
    }

    #[test]
    fn the_file_is_cut_back_to_48_hours_when_it_holds_twice_that() {
        let dir = std::env::temp_dir().join(format!("p2p-history-file-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("history.jsonl");
        let mut file = HistoryFile::new(path.clone(), 0);
        let mut h = History::default();
        for minute in 0..=(2 * KEEP as i64) {
            if let Some(sample) = h.observe(&moment(T0 + minute * 60, 1000, true, None)) {
                file.append(&sample).unwrap();
            }
        }
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), KEEP, "cut back once it reached twice that");
        let (loaded, found) = History::load(&path, T0 + 2 * KEEP as i64 * 60).unwrap();
        assert_eq!((loaded.len(), found.bad, found.needs_rewrite()), (KEEP, 0, false));
        assert_eq!(loaded.last(48, T0 + 2 * KEEP as i64 * 60), h.last(48, T0 + 2 * KEEP as i64 * 60));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn only_the_end_of_a_huge_file_is_read() {
        let dir = std::env::temp_dir().join(format!("p2p-history-tail-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("history.jsonl");
        let mut text = "x".repeat(5000) + "\n";
        text += "first whole line\nsecond\n";
        fs::write(&path, &text).unwrap();
        // The last 30 bytes begin inside the long line: it is dropped whole.
        assert_eq!(read_tail(&path, 30).unwrap(), b"first whole line\nsecond\n");
        assert_eq!(read_tail(&path, 1 << 20).unwrap(), text.as_bytes());
        let _ = fs::remove_dir_all(&dir);
    }

    /// Lines of a history file for minutes `minutes` after T0 (in that order), `extra` appended.
    fn history_file(name: &str, minutes: &[i64], extra: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("p2p-history-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let mut h = History::default();
        let mut samples = std::collections::BTreeMap::new();
        for m in 0..=minutes.iter().copied().max().unwrap_or(0) + 1 {
            if let Some(s) = h.observe(&moment(T0 + m * 60, 1000 + m as i32, true, None)) {
                samples.insert(m - 1, serde_json::to_string(&s).unwrap());
            }
        }
        let mut text: String = minutes.iter().map(|m| samples[m].clone() + "\n").collect();
        text += extra;
        let path = dir.join("history.jsonl");
        fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn one_history_line_out_of_order_loses_nothing() {
        // Minute 3's line was written (or edited) before minute 2's: both stay, in their order,
        // and nothing before them is dropped.
        let path = history_file("order", &[0, 1, 3, 2, 4, 5], "");
        let now = T0 + 10 * 60;
        let (h, found) = History::load(&path, now).unwrap();
        let at = |m: i64| jiff::Timestamp::from_second(T0 + m * 60).unwrap().to_string();
        let times: Vec<String> = h.last(48, now).into_iter().map(|s| s.time).collect();
        assert_eq!(times, [at(0), at(1), at(2), at(3), at(4), at(5)]);
        assert_eq!((found.lines, found.out_of_order, found.bad), (6, 1, 0));
        assert!(!found.needs_rewrite(), "nothing in the file is bad: it is not rewritten");
        let _ = fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn history_fields_read_from_the_file_are_bounded() {
        // A crafted line with 5 MB of reasons is not a sample; one with long reasons keeps 200
        // characters of each; a line with 100 reasons keeps 16.
        let mut h = History::default();
        h.observe(&moment(T0 + 600, 0, true, None));
        let mut crafted = serde_json::to_value(h.observe(&moment(T0 + 660, 0, true, None)).unwrap()).unwrap();
        crafted["reasons"] = serde_json::json!(["x".repeat(5 << 20)]);
        let mut long = crafted.clone();
        long["time"] = serde_json::json!(jiff::Timestamp::from_second(T0 + 720).unwrap().to_string());
        long["reasons"] = serde_json::json!(["é".repeat(10_000), "b".repeat(300)]);
        let mut many = crafted.clone();
        many["time"] = serde_json::json!(jiff::Timestamp::from_second(T0 + 780).unwrap().to_string());
        many["reasons"] = serde_json::json!((0..100).map(|k| format!("reason {k}")).collect::<Vec<_>>());
        let extra = format!("{crafted}\n{long}\n{many}\n");
        let path = history_file("bounded", &[0, 1], &extra);
        let (h, found) = History::load(&path, T0 + 900).unwrap();
        assert_eq!((found.lines, found.bad), (5, 1), "the 5 MB line is passed over");
        assert!(found.needs_rewrite());
        let samples = h.last(48, T0 + 900);
        assert_eq!(samples.len(), 4);
        assert_eq!(samples[2].reasons.iter().map(|r| r.chars().count()).collect::<Vec<_>>(), [200, 200]);
        assert_eq!(samples[3].reasons.len(), REASONS_MAX);
        let encoded = h.last_encoded(48, T0 + 900);
        assert!(encoded.iter().all(|j| j.len() < LINE_MAX), "every shared encoding is a sample's size");
        let _ = fs::remove_dir_all(path.parent().unwrap());
    }
}
