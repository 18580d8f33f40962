//! `pace-probe`: talk to one Pace BMS (protocol v25), or decode its frames offline.

use std::io::{self, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pace_proto::{Error, Reply, Request};

#[derive(Debug, Parser)]
#[command(name = "pace-probe", version, about = "Talk to one Pace BMS (protocol v25), or decode its frames")]
struct Cli {
    /// Print JSON (field names carry their unit: cells_mv, temps_dc, current_ma, ...).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
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
        Err(e) => {
            eprintln!("pace-probe: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Cmd::Decode { cmd, frame } => decode(*cmd, frame, cli.json),
    }
}

/// Decodes `frame` and writes it as one JSON line or a table.
fn decode_one(cmd: Option<u8>, frame: &[u8], json: bool, out: &mut impl Write) -> Result<(), String> {
    let result = match cmd {
        Some(cid2) => Reply::parse(cid2, frame).map(|r| write_value(&r, json, out)),
        None => Request::parse(frame).map(|r| write_value(&r, json, out)),
    };
    match result {
        Ok(written) => written.map_err(|e| format!("writing the result: {e}")),
        Err(Error::UnknownCid2(c)) if cmd.is_none() => Err(format!(
            "unknown CID2 {c:02X}: not a Pace request; to decode a reply, give its request's CID2 with --cmd (e.g. --cmd 42)"
        )),
        Err(e) => Err(e.to_string()),
    }
}

fn write_value<T: serde::Serialize>(value: &T, json: bool, out: &mut impl Write) -> io::Result<()> {
    if json {
        // serde_json makes many tiny writes: gather them in a reused buffer, write once per frame.
        thread_local!(static LINE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) });
        LINE.with_borrow_mut(|line| {
            line.clear();
            serde_json::to_writer(&mut *line, value)?;
            line.push(b'\n');
            out.write_all(line)
        })
    } else {
        let v = serde_json::to_value(value)?;
        probe_kit::render(&v, out)?;
        out.write_all(b"\n")
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
