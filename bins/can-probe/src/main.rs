//! `can-probe`: watch a Pylontech-style CAN bus, decode frames offline, or send frames.

use std::io::{self, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use pylon_can::{CanFrame, Message, Profile};

#[derive(Debug, Parser)]
#[command(
    name = "can-probe",
    version,
    about = "Watch a Pylontech-style CAN bus, decode frames offline, or send frames"
)]
struct Cli {
    /// The bus: slcan:///dev/ttyACM0, slcan+tcp://host:port, slcan+tcp-listen://addr:port or
    /// socketcan://can0 (with the socketcan feature).
    #[arg(long, global = true, value_name = "URL")]
    link: Option<String>,
    /// How to read the battery's frames: pylon, lux, sma, solark or victron.
    #[arg(long, global = true, default_value = "pylon", value_parser = parse_profile)]
    profile: Profile,
    /// Print JSON lines.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Cmd,
}

fn parse_profile(s: &str) -> Result<Profile, String> {
    s.parse()
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Print every frame on the bus, decoded.
    Sniff {
        /// Stop after this many frames.
        #[arg(long)]
        count: Option<u64>,
        /// Stop after this many seconds.
        #[arg(long)]
        seconds: Option<f64>,
    },
    /// Decode frames given in candump's notation (`351#2C01F401F401E001`), or one per line on
    /// standard input with `-`.
    Decode {
        /// The frames.
        #[arg(required = true)]
        frames: Vec<String>,
    },
    /// Send frames in candump's notation (`305#0000000000000000`, the inverter's heartbeat).
    Send {
        /// The frames, sent in order.
        #[arg(required = true)]
        frames: Vec<String>,
        /// Send the frames again every this many seconds.
        #[arg(long)]
        every: Option<f64>,
        /// How many times to send them (with --every; default: until stopped).
        #[arg(long)]
        count: Option<u64>,
    },
}

/// One frame as printed.
#[derive(Debug, serde::Serialize)]
struct Decoded<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    time: Option<String>,
    frame: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a Message>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

fn print(
    frame: &CanFrame,
    profile: Profile,
    time: Option<String>,
    json: bool,
    out: &mut impl Write,
) -> io::Result<()> {
    let decoded = Message::decode(profile, frame);
    let (message, error) = match &decoded {
        Ok(Some(m)) => (Some(m), None),
        Ok(None) => (None, Some("not a frame this profile knows".to_owned())),
        Err(e) => (None, Some(e.to_string())),
    };
    let line = Decoded { time, frame: frame.to_string(), message, error };
    if json {
        serde_json::to_writer(&mut *out, &line)?;
        writeln!(out)?;
    } else {
        match &line.time {
            Some(t) => writeln!(out, "{t}  {}", line.frame)?,
            None => writeln!(out, "{}", line.frame)?,
        }
        if let Some(m) = line.message {
            probe_kit::render(&serde_json::to_value(m)?, &mut probe_kit::Indent::new(&mut *out))?;
        } else if let Some(e) = &line.error {
            writeln!(out, "  ! {e}")?;
        }
    }
    out.flush()
}

/// At most 48 characters of what the input held, for an error message.
fn shown(text: &str) -> String {
    let cut: String = text.chars().take(48).collect();
    if cut.len() < text.len() { format!("{cut}…") } else { cut }
}

fn parse_frames(texts: &[String]) -> anyhow::Result<Vec<CanFrame>> {
    texts.iter().map(|t| t.parse::<CanFrame>().with_context(|| format!("'{t}'"))).collect()
}

fn bus(cli: &Cli) -> anyhow::Result<link::CanBus> {
    let url = cli.link.as_deref().context(
        "this command talks to a bus: give --link (e.g. --link slcan:///dev/ttyACM0 or --link slcan+tcp://host:port)",
    )?;
    Ok(link::CanBus::open(url)?)
}

fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    let stdout = io::stdout();
    match &cli.command {
        Cmd::Decode { frames } => {
            let mut out = stdout.lock();
            let mut bad = false;
            let mut one = |text: &str, out: &mut io::StdoutLock<'_>| -> anyhow::Result<()> {
                let text = text.split('#').take(2).collect::<Vec<_>>().join("#");
                match text.trim().parse::<CanFrame>() {
                    Ok(f) => {
                        bad |= Message::decode(cli.profile, &f).is_err();
                        print(&f, cli.profile, None, cli.json, out)?;
                    }
                    Err(e) => {
                        bad = true;
                        eprintln!("can-probe: {e}");
                    }
                }
                Ok(())
            };
            if frames.len() == 1 && frames[0] == "-" {
                // As pylon-probe decode -: bounded lines, any bytes, `line N: …` on standard
                // error and, with --json, `{"line":N,"error":…}` among the results.
                let input = io::BufReader::with_capacity(1 << 16, io::stdin().lock());
                let (profile, json) = (cli.profile, cli.json);
                let bad =
                    probe_kit::decode_lines(input, &mut out, &mut io::stderr().lock(), json, |line, out| {
                        let text = String::from_utf8_lossy(line);
                        // Blank lines and comment lines are passed over.
                        if text.trim().is_empty() || text.trim_start().starts_with('#') {
                            return Ok(());
                        }
                        // candump's log format ("(time) can0 351#..."): the word with the '#'.
                        let Some(word) = text.split_whitespace().find(|w| w.contains('#')) else {
                            return Err(format!("no frame (ID#DATA) in \"{}\"", shown(&text)));
                        };
                        let frame = word.split('#').take(2).collect::<Vec<_>>().join("#");
                        let f = frame
                            .trim()
                            .parse::<CanFrame>()
                            .map_err(|e| format!("\"{}\": {e}", shown(word)))?;
                        match Message::decode(profile, &f) {
                            Err(e) => Err(format!("{}: {e}", shown(word))),
                            Ok(_) => print(&f, profile, None, json, out).map_err(|e| e.to_string()),
                        }
                    })?;
                return Ok(if bad > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS });
            } else {
                for f in frames {
                    one(f, &mut out)?;
                }
            }
            Ok(if bad { ExitCode::FAILURE } else { ExitCode::SUCCESS })
        }
        Cmd::Send { frames, every, count } => {
            let frames = parse_frames(frames)?;
            if every.is_some_and(|e| !(e > 0.0 && e <= 3600.0)) {
                bail!("--every must be above 0 and at most 3600 seconds");
            }
            let mut bus = bus(cli)?;
            let rounds = if every.is_some() { *count } else { Some(1) };
            let mut sent = 0u64;
            while rounds.is_none_or(|r| sent < r) {
                let started = Instant::now();
                for f in &frames {
                    // A listening bus waits for its peer; a serial one opens at once.
                    let deadline = Instant::now() + Duration::from_secs(10);
                    loop {
                        match bus.send(f) {
                            Ok(()) => break,
                            Err(e) if Instant::now() >= deadline => bail!("{e}"),
                            Err(_) => std::thread::sleep(Duration::from_millis(50)),
                        }
                    }
                }
                sent += 1;
                if let Some(e) = every {
                    let rest = Duration::from_secs_f64(*e).saturating_sub(started.elapsed());
                    // Read (and drop) what comes meanwhile, so an adapter's buffer never fills.
                    let _ = bus.receive(Instant::now() + rest);
                }
            }
            eprintln!("can-probe: sent {} frame(s) {sent} time(s) on {}", frames.len(), bus.name());
            bus.close();
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Sniff { count, seconds } => {
            if seconds.is_some_and(|s| !(s > 0.0 && s <= 86_400.0 * 365.0)) {
                bail!("--seconds must be above 0 and at most a year");
            }
            let mut bus = bus(cli)?;
            let stop_at = seconds.map(|s| Instant::now() + Duration::from_secs_f64(s.max(0.0)));
            let mut seen = 0u64;
            loop {
                if stop_at.is_some_and(|t| Instant::now() >= t) || count.is_some_and(|c| seen >= c) {
                    return Ok(ExitCode::SUCCESS);
                }
                let soon = Instant::now() + Duration::from_millis(200);
                let until = stop_at.map_or(soon, |t| t.min(soon));
                match bus.receive(until) {
                    Ok(Some(f)) => {
                        seen += 1;
                        print(&f, cli.profile, Some(probe_kit::timestamp()), cli.json, &mut stdout.lock())?;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        eprintln!("can-probe: {e}");
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
            }
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(code) => code,
        Err(e) if e.chain().any(probe_kit::is_broken_pipe) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("can-probe: {}", probe_kit::error_chain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}
