//! `pace-probe`: talk to one Pace BMS (protocol v25), or decode its frames offline.

use std::io::{self, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use link::{AsciiDeframer, Link};
use pace_proto::{Command, Config, ConfigKind, Error, MosfetSwitch, Reply, Request, Response};
use probe_kit::LinkArgs;

#[derive(Debug, Parser)]
#[command(name = "pace-probe", version, about = "Talk to one Pace BMS (protocol v25), or decode its frames")]
struct Cli {
    #[command(flatten)]
    link: LinkArgs,
    /// The pack's address (ADR, its DIP switches, 0-15).
    #[arg(long, global = true, default_value = "0", value_parser = parse_byte)]
    adr: u8,
    /// The command byte of 0x42/0x44: a pack number, or FF for all.
    #[arg(long, global = true, default_value = "FF", value_parser = probe_kit::parse_hex_byte)]
    pack: u8,
    #[command(subcommand)]
    command: Cmd,
}

fn parse_byte(s: &str) -> Result<u8, String> {
    let t = s.trim();
    let v = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u8::from_str_radix(hex, 16),
        None => t.parse(),
    };
    v.map_err(|_| format!("'{s}' is not a number from 0 to 255"))
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Analog values (0x42): cells, temperatures, current, voltage, capacities.
    Analog,
    /// Warnings, protections and states (0x44).
    Status,
    /// The version string (C1).
    Version,
    /// The serial number (C2).
    Serial,
    /// Read a configuration block.
    Read {
        /// cell-ov, cell-uv, pack-ov, pack-uv, charge-oc, discharge-oc1, discharge-oc2, short-circuit,
        /// balancing, sleep, full-charge, over-temp, under-temp, mosfet-temp, environment-temp,
        /// charge-limiter, capacity, protocols, time.
        config: String,
    },
    /// Change fields of a configuration block: reads it, sets the fields, writes it back. Needs --yes.
    Write {
        /// The block, as for `read`.
        config: String,
        /// Fields to set, by their JSON names in their units: alarm_mv=3650 delay_ms=1000 ...
        #[arg(required = true)]
        fields: Vec<String>,
        /// Really write to the BMS.
        #[arg(long)]
        yes: bool,
    },
    /// Switch the charge or discharge MOSFET (the BMS refuses to turn both off).
    Mosfet {
        /// charge or discharge.
        #[arg(value_parser = ["charge", "discharge"])]
        which: String,
        /// on or off.
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
    /// Shut the BMS down (0x9C; it reboots while current flows). Needs --yes.
    Shutdown {
        /// Really send it.
        #[arg(long)]
        yes: bool,
    },
    /// Poll 0x42 and 0x44 and redraw once a second until interrupted.
    Watch {
        /// Stop after this many redraws (default: run until interrupted).
        #[arg(long)]
        count: Option<u64>,
    },
    /// Decode a frame given on the command line, or one frame per line of standard input (`-`).
    ///
    /// A request decodes as it is; a reply needs the CID2 of its request (`--cmd 42`).
    Decode {
        /// CID2 of the request this reply answers, in hex (42, 44, C1, D1, ...).
        #[arg(long, value_parser = probe_kit::parse_hex_byte)]
        cmd: Option<u8>,
        /// The frame (`~25014642E00201FD30`), or `-` to read one frame per line from standard input.
        frame: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(code) => code,
        Err(e) if probe_kit::is_broken_pipe(e.as_ref()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pace-probe: {}", probe_kit::error_chain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    let json = cli.link.json;
    let command = match &cli.command {
        Cmd::Decode { cmd, frame } => return decode(*cmd, frame, json),
        Cmd::Analog => Command::Analog { pack: cli.pack },
        Cmd::Status => Command::Status { pack: cli.pack },
        Cmd::Version => Command::Version,
        Cmd::Serial => Command::Serial,
        Cmd::Read { config } => Command::ReadConfig(config_kind(config)?),
        Cmd::Write { config, fields, yes } => return write(cli, config_kind(config)?, fields, *yes),
        Cmd::Mosfet { which, state } => {
            let switch = if state == "on" { MosfetSwitch::On } else { MosfetSwitch::Off };
            if which == "charge" { Command::ChargeMosfet(switch) } else { Command::DischargeMosfet(switch) }
        }
        Cmd::Shutdown { yes } => {
            if !yes {
                bail!("shutdown turns the BMS off (or reboots it while current flows); add --yes to send it");
            }
            Command::Shutdown
        }
        Cmd::Watch { count } => return watch(cli, *count),
    };
    let mut link = cli.link.open().map_err(anyhow::Error::msg)?;
    let reply = transact(&mut link, cli, command)?;
    let mut out = io::stdout().lock();
    probe_kit::print_value(&reply, json, &mut out)?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn config_kind(name: &str) -> anyhow::Result<ConfigKind> {
    ConfigKind::from_name(name).with_context(|| {
        let names: Vec<_> = ConfigKind::ALL.iter().map(|k| k.name()).collect();
        format!("unknown configuration '{name}'; known: {}", names.join(", "))
    })
}

/// Sends one request and returns the reply; a refusal (RTN other than 00) is an error.
fn transact(link: &mut Link, cli: &Cli, command: Command) -> anyhow::Result<Reply> {
    let cid2 = command.cid2();
    let mut frame = Vec::new();
    Request { adr: cli.adr, command }.emit(&mut frame)?;
    let bytes = link.request(&frame, &mut AsciiDeframer::new(), cli.link.timeout())?;
    let reply = Reply::parse(cid2, &bytes).with_context(|| format!("{}: bad reply", link.name()))?;
    if let Err(refusal) = &reply.outcome {
        bail!("{}: the BMS refused: {}", link.name(), refusal.rtn);
    }
    Ok(reply)
}

fn write(cli: &Cli, kind: ConfigKind, fields: &[String], yes: bool) -> anyhow::Result<ExitCode> {
    if kind.write_cid2().is_none() {
        bail!("{} is read only", kind.name());
    }
    let mut edits = Vec::new();
    for f in fields {
        let (k, v) =
            f.split_once('=').with_context(|| format!("'{f}' is not key=value (e.g. alarm_mv=3650)"))?;
        let v: i64 = v.trim().parse().with_context(|| format!("{k}: '{v}' is not a whole number"))?;
        edits.push((k.trim().to_owned(), v));
    }
    let mut link = cli.link.open().map_err(anyhow::Error::msg)?;
    let current = match transact(&mut link, cli, Command::ReadConfig(kind))?.outcome {
        Ok(Response::Config(c)) => c,
        other => bail!("{}: unexpected reply to the read: {other:?}", link.name()),
    };
    let mut new: Config = current.clone().into_write();
    for (k, v) in &edits {
        new.set(k, *v).map_err(anyhow::Error::msg)?;
    }
    let mut out = io::stdout().lock();
    if !yes {
        writeln!(out, "would write {} (add --yes to write it):", kind.name())?;
        probe_kit::print_value(&new, cli.link.json, &mut out)?;
        bail!("not written: add --yes");
    }
    transact(&mut link, cli, Command::WriteConfig(new.clone()))?;
    // Read back to confirm.
    let back = match transact(&mut link, cli, Command::ReadConfig(kind))?.outcome {
        Ok(Response::Config(c)) => c.into_write(),
        other => bail!("{}: unexpected reply to the read-back: {other:?}", link.name()),
    };
    if back != new {
        bail!("{}: wrote {} but it reads back different: {back:?}", link.name(), kind.name());
    }
    probe_kit::print_value(&back, cli.link.json, &mut out)?;
    Ok(ExitCode::SUCCESS)
}

fn watch(cli: &Cli, count: Option<u64>) -> anyhow::Result<ExitCode> {
    let mut link = cli.link.open().map_err(anyhow::Error::msg)?;
    let mut n = 0u64;
    loop {
        let started = Instant::now();
        let analog = transact(&mut link, cli, Command::Analog { pack: cli.pack });
        let status = transact(&mut link, cli, Command::Status { pack: cli.pack });
        let mut out = io::stdout().lock();
        if !cli.link.json {
            // Clear the screen and go home, so the table redraws in place.
            write!(out, "\x1b[2J\x1b[H{}  {}  (Ctrl-C to stop)\n\n", link.name(), probe_kit::timestamp())?;
        }
        for result in [analog, status] {
            match result {
                Ok(reply) => probe_kit::print_value(&reply, cli.link.json, &mut out)?,
                Err(e) => writeln!(out, "{e:#}")?,
            }
        }
        out.flush()?;
        n += 1;
        if count.is_some_and(|c| n >= c) {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_secs(1).saturating_sub(started.elapsed()));
    }
}

/// Decodes `frame` and writes it as one JSON line or a table.
fn decode_one(cmd: Option<u8>, frame: &[u8], json: bool, out: &mut impl Write) -> Result<(), String> {
    let result = match cmd {
        Some(cid2) => Reply::parse(cid2, frame).map(|r| probe_kit::print_in_stream(&r, json, out)),
        None => Request::parse(frame).map(|r| probe_kit::print_in_stream(&r, json, out)),
    };
    match result {
        Ok(written) => written.map_err(|e| format!("writing the result: {e}")),
        Err(Error::UnknownCid2(c)) if cmd.is_none() => Err(format!(
            "unknown CID2 {c:02X}: not a Pace request; to decode a reply, give its request's CID2 with --cmd (e.g. --cmd 42)"
        )),
        Err(e) => Err(e.to_string()),
    }
}

fn decode(cmd: Option<u8>, frame: &str, json: bool) -> anyhow::Result<ExitCode> {
    let stdout = io::stdout();
    let mut out = io::BufWriter::with_capacity(1 << 16, stdout.lock());
    if frame == "-" {
        let stdin = io::stdin();
        let input = io::BufReader::with_capacity(1 << 16, stdin.lock());
        let bad = probe_kit::decode_stream(input, &mut out, &mut io::stderr().lock(), json, |f, o| {
            decode_one(cmd, f, json, o)
        })?;
        return Ok(if bad == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE });
    }
    let bytes = probe_kit::frame_in_line(frame.as_bytes()).unwrap_or_default();
    match decode_one(cmd, bytes, json, &mut out) {
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
