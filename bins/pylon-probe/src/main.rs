//! `pylon-probe`: act as an inverter toward a Pylontech BMS, sniff a line, or decode frames offline.

use std::io::{self, Write};
use std::process::ExitCode;

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ascii_envelope::{Frame, Framer};
use clap::{Parser, Subcommand, ValueEnum};
use link::AsciiDeframer;
use probe_kit::LinkArgs;
use pylon_proto::{Command, Dialect, Error, Reply, Request, SystemCurrentUnit, cid2};

#[derive(Debug, Parser)]
#[command(
    name = "pylon-probe",
    version,
    about = "Act as an inverter toward a Pylontech BMS, sniff a line, or decode frames"
)]
struct Cli {
    #[command(flatten)]
    link: LinkArgs,
    /// The master's address (system commands go there; pack N is at ADR + N - 1).
    #[arg(long, global = true, default_value_t = 2)]
    adr: u8,
    /// Unit of the 0x61 system current: centi-amp (10 mA, what the Vevor expects) or deci-amp (0.1 A).
    #[arg(long, global = true, value_enum, default_value_t = CurrentUnit::CentiAmp)]
    system_current_unit: CurrentUnit,
    /// Unit of the 0x63 current limits: deci-amp (0.1 A, V3.5 and most inverters) or centi-amp
    /// (10 mA, as the SRNE-tested emulator sends).
    #[arg(long, global = true, value_enum, default_value_t = CurrentUnit::DeciAmp)]
    management_current_unit: CurrentUnit,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum CurrentUnit {
    /// 10 mA per step.
    #[value(alias = "centi_amp")]
    CentiAmp,
    /// 100 mA per step.
    #[value(alias = "deci_amp")]
    DeciAmp,
}

impl CurrentUnit {
    fn unit(self) -> SystemCurrentUnit {
        match self {
            Self::CentiAmp => SystemCurrentUnit::CentiAmp,
            Self::DeciAmp => SystemCurrentUnit::DeciAmp,
        }
    }
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Send one command as the inverter would and print the reply: 4F 51 60 61 62 63 42 44 47 92 93 96.
    Query {
        /// The command's CID2 in hex (e.g. 63).
        #[arg(value_parser = probe_kit::parse_hex_byte)]
        cmd: u8,
        /// For 42 44 92 93 96: ask pack N (1-based) at its own address; without it 42/44 ask all (FF).
        #[arg(long)]
        pack: Option<u8>,
    },
    /// Print every frame seen on the line, decoded, with a timestamp, until interrupted.
    Sniff {
        /// Stop after this many frames.
        #[arg(long)]
        count: Option<u64>,
        /// Stop after this many seconds.
        #[arg(long)]
        seconds: Option<f64>,
        /// Also record every frame into DIR in `pace2pylon`'s capture format (the inverter's
        /// requests as `rx`, the battery's replies as `tx`, on the line `pylon`), for
        /// `pace2pylon replay DIR --config FILE`.
        #[arg(long, value_name = "DIR")]
        capture: Option<std::path::PathBuf>,
    },
    /// Decode a frame given on the command line, or one frame per line of standard input (`-`).
    ///
    /// A request decodes as it is; a reply needs the CID2 of its request (`--cmd 42`).
    Decode {
        /// CID2 of the request this reply answers, in hex (42, 44, 61, 63, 92, ...).
        #[arg(long, value_parser = probe_kit::parse_hex_byte)]
        cmd: Option<u8>,
        /// The frame (`~200246630000FDA9`), or `-` to read one frame per line from standard input.
        frame: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(code) => code,
        Err(e) if probe_kit::is_broken_pipe(e.as_ref()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pylon-probe: {}", probe_kit::error_chain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    let dialect = Dialect {
        system_current: cli.system_current_unit.unit(),
        management_current: cli.management_current_unit.unit(),
    };
    match &cli.command {
        Cmd::Decode { cmd, frame } => decode(*cmd, frame, cli.link.json, dialect),
        Cmd::Query { cmd, pack } => query(cli, *cmd, *pack, dialect),
        Cmd::Sniff { count, seconds, capture } => sniff(cli, *count, *seconds, capture.as_deref(), dialect),
    }
}

fn query(cli: &Cli, cmd: u8, pack: Option<u8>, dialect: Dialect) -> anyhow::Result<ExitCode> {
    let module_adr = |n: u8| -> anyhow::Result<u8> {
        if n == 0 {
            bail!("--pack counts from 1");
        }
        cli.adr.checked_add(n - 1).context("--pack too large for the address space")
    };
    let (adr, command) = match cmd {
        cid2::PROTOCOL_VERSION => {
            (pack.map(module_adr).transpose()?.unwrap_or(cli.adr), Command::ProtocolVersion)
        }
        cid2::MANUFACTURER_INFO => {
            (pack.map(module_adr).transpose()?.unwrap_or(cli.adr), Command::ManufacturerInfo)
        }
        cid2::SYSTEM_INFO => (cli.adr, Command::SystemInfo),
        cid2::SYSTEM_ANALOG => (cli.adr, Command::SystemAnalog),
        cid2::SYSTEM_ALARM => (cli.adr, Command::SystemAlarm),
        cid2::SYSTEM_MANAGEMENT => (cli.adr, Command::SystemManagement),
        cid2::SYSTEM_PARAMETERS => (cli.adr, Command::SystemParameters),
        cid2::ANALOG | cid2::ALARM | cid2::MANAGEMENT | cid2::SERIAL | cid2::FIRMWARE => {
            let (adr, value) = match pack {
                Some(n) => {
                    let a = module_adr(n)?;
                    (a, a)
                }
                None if matches!(cmd, cid2::ANALOG | cid2::ALARM) => (cli.adr, 0xFF),
                None => (cli.adr, cli.adr),
            };
            let command = match cmd {
                cid2::ANALOG => Command::Analog { command: value },
                cid2::ALARM => Command::Alarm { command: value },
                cid2::MANAGEMENT => Command::Management { command: value },
                cid2::SERIAL => Command::Serial { command: value },
                _ => Command::Firmware { command: value },
            };
            (adr, command)
        }
        other => {
            bail!("{other:02X} is not a command pylon-probe sends; use 4F 51 60 61 62 63 42 44 47 92 93 96")
        }
    };
    let mut link = cli.link.open().map_err(anyhow::Error::msg)?;
    let mut frame = Vec::new();
    Request { adr, command }.emit(&mut frame)?;
    let bytes = link.request(&frame, &mut AsciiDeframer::new(), cli.link.timeout())?;
    let reply = Reply::parse(cmd, &bytes, dialect).with_context(|| format!("{}: bad reply", link.name()))?;
    let mut out = io::stdout().lock();
    probe_kit::print_value(&reply, cli.link.json, &mut out)?;
    out.flush()?;
    if let Err(refusal) = &reply.outcome {
        bail!("{}: the BMS refused: {}", link.name(), refusal.rtn);
    }
    Ok(ExitCode::SUCCESS)
}

/// One line of `sniff --json`.
#[derive(serde::Serialize)]
struct Sniffed<'a> {
    time: String,
    frame: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    request: Option<&'a Request>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply: Option<&'a Reply>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

fn sniff(
    cli: &Cli,
    count: Option<u64>,
    seconds: Option<f64>,
    capture: Option<&std::path::Path>,
    dialect: Dialect,
) -> anyhow::Result<ExitCode> {
    let mut link = cli.link.open().map_err(anyhow::Error::msg)?;
    let recorder = match capture {
        Some(dir) => Some(
            link::capture::Recorder::start(dir, link::capture::Limits::default())
                .map_err(|e| anyhow::anyhow!("cannot capture into {}: {e}", dir.display()))?,
        ),
        None => None,
    };
    if let Some(r) = &recorder {
        eprintln!("capturing into {}", r.dir().display());
    }
    let url = link.name().to_owned();
    let result = sniff_on(&mut link, cli, count, seconds, recorder.as_deref(), &url, dialect);
    if let Some(r) = recorder {
        r.stop();
    }
    result
}

fn sniff_on(
    link: &mut link::Link,
    cli: &Cli,
    count: Option<u64>,
    seconds: Option<f64>,
    recorder: Option<&link::capture::Recorder>,
    url: &str,
    dialect: Dialect,
) -> anyhow::Result<ExitCode> {
    let stop_at = seconds.map(|s| Instant::now() + Duration::from_secs_f64(s.max(0.0)));
    let mut framer = Framer::new();
    let mut last_request: Option<u8> = None;
    let mut seen = 0u64;
    let mut buf = [0u8; 1024];
    let stdout = io::stdout();
    loop {
        if stop_at.is_some_and(|t| Instant::now() >= t) || count.is_some_and(|c| seen >= c) {
            return Ok(ExitCode::SUCCESS);
        }
        let n = match link.read_raw(&mut buf, Duration::from_millis(200)) {
            Ok(n) => n,
            Err(e) => {
                eprintln!("pylon-probe: {e}");
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
        };
        let mut frames = Vec::new();
        framer.feed(&buf[..n], |f| frames.push(f.to_vec()));
        let mut out = stdout.lock();
        for f in frames {
            seen += 1;
            let text = String::from_utf8_lossy(&f).trim_end().to_owned();
            if let Some(rec) = recorder {
                // Seen from the battery's side, as the daemon captures its port: the inverter's
                // requests come in, anything else (replies, garbage) goes out.
                let asks =
                    Frame::parse(&f).is_ok_and(|fr| fr.header().cid2 != 0) && Request::parse(&f).is_ok();
                let dir = if asks { link::capture::Dir::Rx } else { link::capture::Dir::Tx };
                rec.record("pylon", url, dir, &f);
            }
            // A request decodes as it is; a reply with the CID2 of the request seen before it.
            let (request, reply, error) = match Frame::parse(&f) {
                Err(e) => (None, None, Some(e.to_string())),
                Ok(frame) => match Request::parse(&f) {
                    Ok(r) if frame.header().cid2 != 0 => {
                        last_request = Some(frame.header().cid2);
                        (Some(r), None, None)
                    }
                    _ => match last_request {
                        Some(c) => match Reply::parse(c, &f, dialect) {
                            Ok(r) => (None, Some(r), None),
                            Err(e) => (None, None, Some(e.to_string())),
                        },
                        None => (None, None, Some("a reply, but no request was seen before it".to_owned())),
                    },
                },
            };
            let line = Sniffed {
                time: probe_kit::timestamp(),
                frame: &text,
                request: request.as_ref(),
                reply: reply.as_ref(),
                error,
            };
            if cli.link.json {
                serde_json::to_writer(&mut out, &line)?;
                writeln!(out)?;
            } else {
                writeln!(out, "{}  {}", line.time, text)?;
                if let Some(e) = &line.error {
                    writeln!(out, "  ! {e}")?;
                } else if let Some(r) = line.request {
                    probe_kit::render(&serde_json::to_value(r)?, &mut probe_kit::Indent::new(&mut out))?;
                } else if let Some(r) = line.reply {
                    probe_kit::render(&serde_json::to_value(r)?, &mut probe_kit::Indent::new(&mut out))?;
                }
            }
            out.flush()?;
            if count.is_some_and(|c| seen >= c) {
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
}

fn decode_one(
    cmd: Option<u8>,
    frame: &[u8],
    json: bool,
    dialect: Dialect,
    out: &mut impl Write,
) -> Result<(), String> {
    let result = match cmd {
        Some(cid2) => Reply::parse(cid2, frame, dialect).map(|r| probe_kit::print_in_stream(&r, json, out)),
        None => Request::parse(frame).map(|r| probe_kit::print_in_stream(&r, json, out)),
    };
    match result {
        Ok(written) => written.map_err(|e| format!("writing the result: {e}")),
        Err(Error::UnknownCid2(c)) if cmd.is_none() => Err(format!(
            "unknown CID2 {c:02X}: not a Pylontech request; to decode a reply, give its request's CID2 with --cmd (e.g. --cmd 42)"
        )),
        Err(e) => Err(e.to_string()),
    }
}

fn decode(cmd: Option<u8>, frame: &str, json: bool, dialect: Dialect) -> anyhow::Result<ExitCode> {
    let stdout = io::stdout();
    let mut out = io::BufWriter::with_capacity(1 << 16, stdout.lock());
    if frame == "-" {
        let stdin = io::stdin();
        let input = io::BufReader::with_capacity(1 << 16, stdin.lock());
        let bad = probe_kit::decode_stream(input, &mut out, &mut io::stderr().lock(), json, |f, o| {
            decode_one(cmd, f, json, dialect, o)
        })?;
        return Ok(if bad == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE });
    }
    let bytes = probe_kit::frame_in_line(frame.as_bytes()).unwrap_or_default();
    match decode_one(cmd, bytes, json, dialect, &mut out) {
        Ok(()) => {
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(ExitCode::FAILURE)
        }
    }
}
