//! `pace2pylon run --capture DIR` and `pace2pylon replay DIR`: a capture of every byte of every
//! line (the format is `link::capture`'s), and that capture decoded and run again through the
//! daemon's pollers, translator and controller (`daemon::replay`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use daemon::replay::Seen;
use link::capture::{self, Record};

/// `pace2pylon replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The capture's directory (`run --capture DIR`, `pylon-probe sniff --capture DIR`).
    dir: PathBuf,
    /// The configuration to replay with (default: the `config.toml` the capture wrote beside its
    /// files; a sniffed capture has none).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// One JSON object per line instead of text.
    #[arg(long)]
    json: bool,
    /// Only the decisions and events, not every exchange.
    #[arg(long)]
    decisions: bool,
}

/// The capture directory's copy of the configuration.
pub const CONFIG: &str = "config.toml";

/// Writes `config` (secrets left out) into the capture's own folder as a new file, so `replay`
/// knows the packs, the thresholds and the addresses the capture was made with.
pub fn save_config(recorder: &link::capture::Recorder, config: &daemon::Config) -> anyhow::Result<()> {
    let text = format!("# the configuration of this capture (secrets left out)\n{}", config.to_toml());
    recorder
        .write_file(CONFIG, text.as_bytes())
        .with_context(|| format!("cannot write {}", recorder.dir().join(CONFIG).display()))
}

/// The most one capture file may hold (`run --capture-max-mib` writes at most 1 GiB files).
const FILE_MAX_BYTES: u64 = 1 << 30;

/// A capture as read: its records in order, the wall clock of its `t = 0`, the lines passed over,
/// and the stretches of time it does not hold (`# gap` lines: writing failed there).
struct Capture {
    dir: PathBuf,
    records: Vec<Record>,
    wall0: jiff::Timestamp,
    bad: usize,
    gaps: Vec<(Duration, Duration)>,
}

/// Every record of the capture in `dir` (the capture folder itself, or the folder `run
/// --capture` was given: its newest capture), in order. Lines that do not parse are passed over,
/// each named on standard error.
fn read(dir: &Path) -> anyhow::Result<Capture> {
    let found = capture::find(dir).with_context(|| format!("cannot read the capture {}", dir.display()))?;
    let Some(dir) = found else {
        bail!(
            "{}: no capture files (capture-000001.log, ...) in it or in a capture-… folder in it",
            dir.display()
        );
    };
    let files = capture::files(&dir).with_context(|| format!("cannot read the capture {}", dir.display()))?;
    let mut capture = Capture {
        dir: dir.clone(),
        records: Vec::new(),
        wall0: jiff::Timestamp::UNIX_EPOCH,
        bad: 0,
        gaps: Vec::new(),
    };
    let mut wall0 = None;
    for file in &files {
        let bytes = daemon::file::read_bounded(file, FILE_MAX_BYTES)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let text = String::from_utf8_lossy(&bytes);
        for (k, line) in text.lines().enumerate() {
            if k == 0 {
                match capture::parse_header(line) {
                    Some((capture::VERSION, unix)) => {
                        wall0 = wall0.or_else(|| jiff::Timestamp::from_microsecond((unix * 1e6) as i64).ok());
                        continue;
                    }
                    Some((v, _)) => bail!(
                        "{}: capture format {v}; this pace2pylon reads {}",
                        file.display(),
                        capture::VERSION
                    ),
                    None => eprintln!("{}:1: no capture header; reading on", file.display()),
                }
            }
            if let Some(gap) = capture::parse_gap(line) {
                eprintln!(
                    "{}:{}: the capture lost what happened from {:.3} s to {:.3} s (writing failed); \
                     nothing there is compared",
                    file.display(),
                    k + 1,
                    gap.0.as_secs_f64(),
                    gap.1.as_secs_f64()
                );
                capture.gaps.push(gap);
                continue;
            }
            match Record::parse(line) {
                Ok(Some(r)) => capture.records.push(r),
                Ok(None) => {}
                Err(e) => {
                    capture.bad += 1;
                    eprintln!("{}:{}: {e}; passed over", file.display(), k + 1);
                }
            }
        }
    }
    // Files follow each other, and their records stay in the order they were written: the
    // station's journal marks (stamped to the millisecond the station took) sit right after the
    // replies they hand over.
    capture.wall0 = wall0.unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    Ok(capture)
}

/// How long after a gap the replay's machines need to be back in step with the capture's (a
/// poll cycle, its reply timeout and the limit reads that a lost stretch may have held).
const AFTER_GAP: Duration = Duration::from_secs(15);

fn in_gap(gaps: &[(Duration, Duration)], t: Duration) -> bool {
    gaps.iter().any(|&(from, to)| t >= from && t <= to + AFTER_GAP)
}

fn seconds(t: std::time::Duration) -> String {
    format!("{:>10.3}", t.as_secs_f64())
}

/// `pace2pylon replay DIR`.
pub fn replay(args: &ReplayArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let Capture { dir, records, wall0, bad, gaps } = read(&args.dir)?;
    let config_path = args.config.clone().unwrap_or_else(|| dir.join(CONFIG));
    let config = crate::load(&config_path).with_context(|| {
        format!("the capture needs its configuration: {} (or give --config FILE)", config_path.display())
    })?;
    if dir != args.dir {
        eprintln!("replaying {}", dir.display());
    }
    let end = records.last().map_or(0.0, |r| r.t.as_secs_f64());
    let mut progress_at = Instant::now();
    // Differences inside the capture's gaps: writes, answers.
    let (mut writes_in_gaps, mut answers_in_gaps) = (0, 0);
    let mut failed: Option<std::io::Error> = None;
    let mut say = |line: String| {
        if failed.is_none() {
            if let Err(e) = writeln!(out, "{line}") {
                failed = Some(e);
            }
        }
    };
    let json = args.json;
    let summary = daemon::replay::run(&config, wall0, &records, |seen| {
        if progress_at.elapsed() >= Duration::from_secs(5) {
            progress_at = Instant::now();
            eprintln!("replay: {:.0} s of {end:.0} s of the capture", seen.t().as_secs_f64());
        }
        // Bytes the capture lost are not a divergence: counted apart, not shown as one.
        match seen {
            Seen::Diverged { t, .. } if in_gap(&gaps, t) => return writes_in_gaps += 1,
            Seen::AnswerDiffers { t, .. } if in_gap(&gaps, t) => return answers_in_gaps += 1,
            _ => {}
        }
        let text = match (&seen, json) {
            (Seen::Exchange { .. }, _) if args.decisions => return,
            (Seen::Exchange { t, link, asked, answer }, false) => {
                format!("{} {link:<8} {asked} → {answer}", seconds(*t))
            }
            (Seen::Event { t, text, reasons }, false) if reasons.is_empty() => {
                format!("{} EVENT    {text}", seconds(*t))
            }
            (Seen::Event { t, text, reasons }, false) => {
                format!("{} EVENT    {text}: {}", seconds(*t), reasons.join("; "))
            }
            (Seen::Diverged { t, link, captured, replayed }, false) => format!(
                "{} {link:<8} ! the capture wrote {captured}; the replay would have written {}",
                seconds(*t),
                if replayed.is_empty() { "nothing" } else { replayed }
            ),
            (Seen::AnswerDiffers { t, asked, captured, replayed }, false) => format!(
                "{} pylon    ! {asked}: answered {captured}; the replay would answer {}",
                seconds(*t),
                if replayed.is_empty() { "nothing" } else { replayed }
            ),
            (seen, true) => json_line(seen),
        };
        say(text);
    });
    if let Some(e) = failed {
        // A closed pipe (`| head`) ends the output, not the replay's honesty.
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(e.into());
        }
        return Ok(());
    }
    let line = if json {
        serde_json::json!({
            "summary": {
                "records": summary.records, "bad_lines": bad, "exchanges": summary.exchanges,
                "diverged": summary.diverged - writes_in_gaps,
                "answers": summary.answers - answers_in_gaps,
                "gaps": gaps.len(), "differences_in_gaps": writes_in_gaps + answers_in_gaps,
                "answers_same": summary.answers_same, "unknown_link_records": summary.unknown_link,
                "can_records": summary.can,
                "steps": summary.steps,
            }
        })
        .to_string()
    } else {
        format!(
            "# {} records ({} bad lines passed over), {} exchanges, {} writes the replay would not have made, {} of {} answers to the inverter the same as the replay's, {} records of lines the configuration does not name, {} CAN records (not replayed), {} gaps in the capture ({} differences there not compared)",
            summary.records,
            bad,
            summary.exchanges,
            summary.diverged - writes_in_gaps,
            summary.answers_same,
            summary.answers - answers_in_gaps,
            summary.unknown_link,
            summary.can,
            gaps.len(),
            writes_in_gaps + answers_in_gaps
        )
    };
    match writeln!(out, "{line}") {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

fn json_line(seen: &Seen) -> String {
    let s = |t: &std::time::Duration| t.as_secs_f64();
    match seen {
        Seen::Exchange { t, link, asked, answer } => {
            serde_json::json!({"t": s(t), "kind": "exchange", "link": link, "asked": asked, "answer": answer})
        }
        Seen::Event { t, text, reasons } => {
            serde_json::json!({"t": s(t), "kind": "event", "event": text, "reasons": reasons})
        }
        Seen::Diverged { t, link, captured, replayed } => serde_json::json!({
            "t": s(t), "kind": "diverged", "link": link, "captured": captured, "replayed": replayed
        }),
        Seen::AnswerDiffers { t, asked, captured, replayed } => serde_json::json!({
            "t": s(t), "kind": "answer_differs", "asked": asked, "captured": captured, "replayed": replayed
        }),
    }
    .to_string()
}
