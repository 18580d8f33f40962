//! `pace2pylon run --capture DIR` and `pace2pylon replay DIR`: a capture of every byte of every
//! line (the format is `link::capture`'s), and that capture decoded and run again through the
//! daemon's pollers, translator and controller (`daemon::replay`).

use std::io::Write;
use std::path::{Path, PathBuf};

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

/// Writes `config` (secrets hidden) into the capture directory, so `replay` knows the packs, the
/// thresholds and the addresses the capture was made with.
pub fn save_config(dir: &Path, config: &daemon::Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let text = format!("# the configuration of this capture (secrets hidden)\n{}", config.to_toml());
    std::fs::write(dir.join(CONFIG), text)
        .with_context(|| format!("cannot write {}", dir.join(CONFIG).display()))
}

/// Every record of the capture in `dir`, in order, and the wall clock of its `t = 0`. Lines that
/// do not parse are passed over, each named on standard error.
fn read(dir: &Path) -> anyhow::Result<(Vec<Record>, jiff::Timestamp, usize)> {
    let files = capture::files(dir).with_context(|| format!("cannot read the capture {}", dir.display()))?;
    if files.is_empty() {
        bail!("{}: no capture files (capture-000001.log, ...) in it", dir.display());
    }
    let mut records = Vec::new();
    let mut wall0 = None;
    let mut bad = 0;
    for file in &files {
        let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
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
            match Record::parse(line) {
                Ok(Some(r)) => records.push(r),
                Ok(None) => {}
                Err(e) => {
                    bad += 1;
                    eprintln!("{}:{}: {e}; passed over", file.display(), k + 1);
                }
            }
        }
    }
    // Files follow each other; within a file the records are in time order already.
    records.sort_by_key(|r| r.t);
    Ok((records, wall0.unwrap_or(jiff::Timestamp::UNIX_EPOCH), bad))
}

fn seconds(t: std::time::Duration) -> String {
    format!("{:>10.3}", t.as_secs_f64())
}

/// `pace2pylon replay DIR`.
pub fn replay(args: &ReplayArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let config_path = args.config.clone().unwrap_or_else(|| args.dir.join(CONFIG));
    let config = crate::load(&config_path).with_context(|| {
        format!("the capture needs its configuration: {} (or give --config FILE)", config_path.display())
    })?;
    let (records, wall0, bad) = read(&args.dir)?;
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
                "diverged": summary.diverged, "answers": summary.answers,
                "answers_same": summary.answers_same, "unknown_link_records": summary.unknown_link,
                "can_records": summary.can,
                "steps": summary.steps,
            }
        })
        .to_string()
    } else {
        format!(
            "# {} records ({} bad lines passed over), {} exchanges, {} writes the replay would not have made, {} of {} answers to the inverter the same as the replay's, {} records of lines the configuration does not name, {} CAN records (not replayed)",
            summary.records,
            bad,
            summary.exchanges,
            summary.diverged,
            summary.answers_same,
            summary.answers,
            summary.unknown_link,
            summary.can
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
