//! `pace2pylon scan`: what answers on each line, so a first configuration needs no guessing.
//!
//! Every probe is a read: Pace v25 0x42 (then C2 for the serial), Pylontech 0x4F and 0x42, the
//! counter's input registers and the Vevor's battery-voltage register. A line where an inverter
//! already polls as a Pylontech master is its BMS port: it is only listened to, never spoken on.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use link::{AsciiDeframer, Endpoint, Link, RtuDeframer};
use modbus_rtu::Side;
use serde::Serialize;

/// What `scan` is asked.
#[derive(Debug, clap::Args)]
pub struct ScanArgs {
    /// Lines to scan: /dev/ttyUSB0, serial:///dev/ttyUSB0?baud=19200 (only that rate), tcp://host:port.
    links: Vec<String>,
    /// A range of lines: /dev/ttyUSB0-15 or tcp://192.168.1.20:4001-4012 (the last number varies).
    #[arg(long, value_name = "FROM-TO")]
    range: Vec<String>,
    /// Seconds to wait for each reply.
    #[arg(long, default_value_t = 0.3, value_name = "SECONDS")]
    timeout: f64,
    /// Seconds to listen first for an inverter polling the line.
    #[arg(long, default_value_t = 1.5, value_name = "SECONDS")]
    listen: f64,
    /// Print a ready `pace2pylon run` configuration of what was found.
    #[arg(long)]
    print_config: bool,
    /// Print one JSON object per line scanned (on standard error with --print-config).
    #[arg(long)]
    json: bool,
}

/// One device that answered.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Found {
    /// An inverter polls here as a Pylontech master: its BMS port.
    InverterBmsPort {
        /// What it polled, e.g. `0x63 at ADR 02` (the first [`POLLS_SHOWN`] kinds).
        polls: Vec<String>,
        /// Kinds of polls heard beyond those.
        #[serde(skip_serializing_if = "is_zero")]
        other_polls: usize,
    },
    /// A Pace pack (0x42 answered with VER 25).
    PacePack {
        /// Its address.
        adr: u8,
        /// Cells.
        cells: usize,
        /// Its voltage, mV.
        voltage_mv: u16,
        /// Its SOC, %.
        soc_pct: Option<u8>,
        /// Its serial (C2).
        serial: Option<String>,
    },
    /// A Pylontech battery (0x4F answered, then 0x42).
    PylontechBattery {
        /// Its address.
        adr: u8,
        /// The protocol version it gave (0x4F's VER).
        version: u8,
        /// Modules its 0x42 FF reply held, if it answered one.
        modules: Option<usize>,
    },
    /// The coulomb counter (Modbus slave 1, its input registers).
    Coil {
        /// Its SOC, %.
        soc_pct: u16,
        /// Its voltage, 10 mV.
        voltage_cv: u16,
    },
    /// A Vevor / EG4 inverter's Modbus port (slave 1, register 215).
    Vevor {
        /// Its battery voltage, 0.1 V.
        battery_voltage_dv: u16,
    },
}

/// One line's result.
#[derive(Clone, Debug, Serialize)]
pub struct LineReport {
    /// The line as given.
    pub line: String,
    /// The link URL that answered (with the baud rate that worked), if any.
    pub link: Option<String>,
    /// What answered.
    pub found: Vec<Found>,
    /// Why nothing could be asked (the port cannot be opened, …).
    pub error: Option<String>,
}

/// `/dev/ttyUSB0-15` → `/dev/ttyUSB0` … `/dev/ttyUSB15`; `tcp://h:4001-4003` → three ports.
pub fn expand_range(range: &str) -> anyhow::Result<Vec<String>> {
    let bad = || {
        format!(
            "--range {range}: give FROM-TO with a number at the end, e.g. /dev/ttyUSB0-15 or tcp://host:4001-4012"
        )
    };
    let (left, to) = range.rsplit_once('-').with_context(bad)?;
    let digits = left.chars().rev().take_while(char::is_ascii_digit).count();
    if digits == 0 {
        bail!(bad());
    }
    let (prefix, from) = left.split_at(left.len() - digits);
    let (from, to): (u32, u32) = (from.parse().with_context(bad)?, to.parse().with_context(bad)?);
    if to < from || to - from > 255 {
        bail!("--range {range}: TO must be at least FROM and at most 255 more");
    }
    Ok((from..=to).map(|n| format!("{prefix}{n}")).collect())
}

/// The links to try for one line: a serial port without a rate at 9600 and 19200 baud.
fn attempts(line: &str) -> anyhow::Result<Vec<Endpoint>> {
    let endpoint = Endpoint::parse(line)?;
    Ok(match &endpoint {
        Endpoint::Serial { path, .. } if !line.contains("baud=") => {
            [9600, 19200].into_iter().map(|baud| Endpoint::Serial { path: path.clone(), baud }).collect()
        }
        Endpoint::TcpListen { .. } => {
            bail!("{line}: scan connects to lines; a tcp-listen:// line waits for a peer instead")
        }
        _ => vec![endpoint],
    })
}

/// Whether a link error means the line cannot be used at all (no point asking more).
fn fatal(e: &link::Error) -> bool {
    matches!(e, link::Error::Open { .. } | link::Error::Backoff { .. } | link::Error::Url { .. })
}

/// Kinds of polls named per line; a peer that polls every command gets a count beyond these.
const POLLS_SHOWN: usize = 16;

/// The most characters of a serial shown or written.
const SERIAL_MAX: usize = 32;

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// A device's text made safe for a terminal and a TOML comment: printable ASCII only (every
/// other byte, a newline included, becomes `?`), at most [`SERIAL_MAX`] characters.
fn printable(text: &str) -> String {
    text.chars().take(SERIAL_MAX).map(|c| if c == ' ' || c.is_ascii_graphic() { c } else { '?' }).collect()
}

/// `text` as a TOML basic string, quoted, with `"`, `\` and every control character escaped.
fn toml_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Listens without writing: the Pylontech requests an inverter sends on its BMS port: the
/// first [`POLLS_SHOWN`] kinds, and how many other kinds were heard.
fn inverter_polls(link: &mut Link, listen: Duration) -> Result<(Vec<String>, usize), link::Error> {
    let mut framer = ascii_envelope::Framer::new();
    let mut polls = Vec::new();
    let mut others = std::collections::HashSet::new();
    let until = Instant::now() + listen;
    let mut buf = [0u8; 512];
    while Instant::now() < until {
        let n = link.read_raw(
            &mut buf,
            until.saturating_duration_since(Instant::now()).max(Duration::from_millis(1)),
        )?;
        framer.feed(&buf[..n], |f| {
            // Pylontech's CID1, and not a Pace master's VER 25 (software polling packs).
            let header = ascii_envelope::Frame::parse(f).ok().map(|f| f.header());
            if header.is_none_or(|h| h.cid1 != 0x46 || h.ver == 0x25) {
                return;
            }
            if let Ok(r) = pylon_proto::Request::parse(f) {
                let poll = format!("0x{:02X} at ADR {:02X}", r.command.cid2(), r.adr);
                if polls.contains(&poll) {
                } else if polls.len() < POLLS_SHOWN {
                    polls.push(poll);
                } else {
                    others.insert((r.command.cid2(), r.adr));
                }
            }
        });
    }
    Ok((polls, others.len()))
}

fn ask(link: &mut Link, frame: &[u8], rtu: bool, timeout: Duration) -> Result<Option<Vec<u8>>, link::Error> {
    let result = if rtu {
        link.request(frame, &mut RtuDeframer::new(Side::Response), timeout)
    } else {
        link.request(frame, &mut AsciiDeframer::new(), timeout)
    };
    match result {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if fatal(&e) => Err(e),
        Err(_) => Ok(None),
    }
}

fn pace_packs(link: &mut Link, timeout: Duration) -> Result<Vec<Found>, link::Error> {
    use pace_proto::{Command, Reply, Request, Response};
    let mut found = Vec::new();
    for adr in 0..=15u8 {
        let mut frame = Vec::new();
        if (Request { adr, command: Command::Analog { pack: 0xFF } }).emit(&mut frame).is_err() {
            continue;
        }
        let Some(bytes) = ask(link, &frame, false, timeout)? else { continue };
        // A Pace BMS answers with VER 25; a Pylontech unit would answer VER 20.
        if ascii_envelope::Frame::parse(&bytes).ok().map(|f| f.header().ver) != Some(0x25) {
            continue;
        }
        let Ok(Ok(Response::Analog(a))) = Reply::parse(0x42, &bytes).map(|r| r.outcome) else { continue };
        let Some(p) = a.packs.first() else { continue };
        let mut serial_frame = Vec::new();
        let serial = if (Request { adr, command: Command::Serial }).emit(&mut serial_frame).is_ok() {
            ask(link, &serial_frame, false, timeout)?.and_then(|b| Reply::parse(0xC2, &b).ok()).and_then(
                |r| match r.outcome {
                    Ok(Response::Serial { serial }) => Some(printable(serial.trimmed().trim())),
                    _ => None,
                },
            )
        } else {
            None
        };
        found.push(Found::PacePack {
            adr,
            cells: p.cells.len(),
            voltage_mv: p.voltage.raw(),
            soc_pct: p.soc().map(|s| s.raw()),
            serial,
        });
    }
    Ok(found)
}

fn pylontech_batteries(link: &mut Link, timeout: Duration) -> Result<Vec<Found>, link::Error> {
    use pylon_proto::{Command, Dialect, Reply, Request, Response};
    let mut found = Vec::new();
    for adr in 2..=9u8 {
        let mut frame = Vec::new();
        if (Request { adr, command: Command::ProtocolVersion }).emit(&mut frame).is_err() {
            continue;
        }
        let Some(bytes) = ask(link, &frame, false, timeout)? else { continue };
        let Ok(reply) = Reply::parse(0x4F, &bytes, Dialect::default()) else { continue };
        if reply.outcome.is_err() || reply.ver == 0x25 {
            continue;
        }
        let mut analog = Vec::new();
        let modules =
            if (Request { adr, command: Command::Analog { command: 0xFF } }).emit(&mut analog).is_ok() {
                ask(link, &analog, false, timeout)?.and_then(|b| {
                    match Reply::parse(0x42, &b, Dialect::default()) {
                        Ok(Reply { outcome: Ok(Response::Analog(a)), .. }) => Some(a.modules.len()),
                        _ => None,
                    }
                })
            } else {
                None
            };
        found.push(Found::PylontechBattery { adr, version: reply.ver, modules });
    }
    Ok(found)
}

fn modbus_devices(link: &mut Link, timeout: Duration) -> Result<Vec<Found>, link::Error> {
    let mut found = Vec::new();
    let mut frame = Vec::new();
    if coil_modbus::request::read_inputs().encode(1, &mut frame).is_ok() {
        if let Some(bytes) = ask(link, &frame, true, timeout)? {
            if let Some(Ok(Ok(r))) = bytes.get(1..).map(coil_modbus::parse_inputs) {
                found.push(Found::Coil { soc_pct: r.soc_pct, voltage_cv: r.voltage_cv });
            }
        }
    }
    frame.clear();
    if vevor_modbus::read_request(215, 1).encode(1, &mut frame).is_ok() {
        if let Some(bytes) = ask(link, &frame, true, timeout)? {
            if let Some(Ok(Ok(regs))) = bytes.get(1..).map(|pdu| vevor_modbus::parse_read(pdu, 1)) {
                found.push(Found::Vevor { battery_voltage_dv: regs.first().copied().unwrap_or(0) });
            }
        }
    }
    Ok(found)
}

/// Scans one line: listens, then asks each protocol at each rate until something answers.
pub fn scan_line(line: &str, timeout: Duration, listen: Duration) -> LineReport {
    let mut report = LineReport { line: line.to_owned(), link: None, found: Vec::new(), error: None };
    let attempts = match attempts(line) {
        Ok(a) => a,
        Err(e) => {
            report.error = Some(e.to_string());
            return report;
        }
    };
    for endpoint in attempts {
        let url = endpoint.to_string();
        let mut link = Link::new(endpoint);
        let result = (|| -> Result<Vec<Found>, link::Error> {
            // At every rate: an inverter heard at 19200 only is never spoken to either.
            let (polls, other_polls) = inverter_polls(&mut link, listen)?;
            if !polls.is_empty() {
                return Ok(vec![Found::InverterBmsPort { polls, other_polls }]);
            }
            let mut found = pace_packs(&mut link, timeout)?;
            if found.is_empty() {
                found.extend(pylontech_batteries(&mut link, timeout)?);
            }
            found.extend(modbus_devices(&mut link, timeout)?);
            Ok(found)
        })();
        match result {
            Ok(found) if !found.is_empty() => {
                report.link = Some(url);
                report.found = found;
                return report;
            }
            Ok(_) => {}
            Err(e) => {
                report.error = Some(e.to_string());
                return report;
            }
        }
    }
    report
}

fn text(report: &LineReport) -> String {
    let mut s = format!("{}:", report.line);
    if let Some(e) = &report.error {
        let _ = write!(s, " cannot scan ({e})");
        return s;
    }
    if report.found.is_empty() {
        s.push_str(" nothing answered");
        return s;
    }
    let link = report.link.as_deref().unwrap_or(&report.line);
    for f in &report.found {
        let _ = match f {
            Found::InverterBmsPort { polls, other_polls } => {
                let more =
                    if *other_polls > 0 { format!(" and {other_polls} other kinds") } else { String::new() };
                write!(
                    s,
                    "\n  inverter BMS port on {link}: it polls {}{more} (listened only)",
                    polls.join(", ")
                )
            }
            Found::PacePack { adr, cells, voltage_mv, soc_pct, serial } => write!(
                s,
                "\n  Pace pack at ADR {adr} on {link}: {cells} cells, {:.2} V, SOC {}, serial {}",
                f64::from(*voltage_mv) / 1000.0,
                soc_pct.map_or("-".into(), |v| format!("{v} %")),
                serial.as_deref().unwrap_or("-")
            ),
            Found::PylontechBattery { adr, version, modules } => write!(
                s,
                "\n  Pylontech battery at ADR {adr} on {link}: protocol VER {version:02X}, {} modules",
                modules.map_or("?".into(), |m| m.to_string())
            ),
            Found::Coil { soc_pct, voltage_cv } => write!(
                s,
                "\n  coulomb counter (Modbus slave 1) on {link}: SOC {soc_pct} %, {:.2} V",
                f64::from(*voltage_cv) / 100.0
            ),
            Found::Vevor { battery_voltage_dv } => write!(
                s,
                "\n  Vevor/EG4 inverter (Modbus slave 1) on {link}: battery {:.1} V",
                f64::from(*battery_voltage_dv) / 10.0
            ),
        };
    }
    s
}

/// A `pace2pylon run` configuration of what was found.
pub fn config(reports: &[LineReport]) -> String {
    let mut s = String::from("# pace2pylon run configuration written by `pace2pylon scan`\n\n");
    let link = |r: &LineReport| r.link.clone().unwrap_or_else(|| r.line.clone());
    match reports.iter().find(|r| r.found.iter().any(|f| matches!(f, Found::InverterBmsPort { .. }))) {
        Some(r) => {
            let _ = writeln!(s, "[pylon]\n# The inverter polls here.\nlink = {}\naddress = 2\n", toml_string(&link(r)));
        }
        None => s.push_str(
            "# No inverter was heard polling a line: give its BMS port here ([pylon], RS485) or a\n# [can] bus (see README, Inverters).\n# [pylon]\n# link = \"/dev/ttyUSB9\"\n\n",
        ),
    }
    for r in reports {
        let packs: Vec<(u8, Option<&str>)> = r
            .found
            .iter()
            .filter_map(|f| match f {
                Found::PacePack { adr, serial, .. } => Some((*adr, serial.as_deref())),
                _ => None,
            })
            .collect();
        // pace2pylon polls one pack per line (RS232): a bus with more is named, not configured.
        if let Some((adr, serial)) = packs.first() {
            let note = serial.map_or(String::new(), |s| format!("# serial {}\n", printable(s)));
            let _ = writeln!(s, "[[pack]]\n{note}link = {}\nadr = {adr}\n", toml_string(&link(r)));
        }
        if packs.len() > 1 {
            let others: Vec<String> = packs[1..].iter().map(|(adr, _)| adr.to_string()).collect();
            let _ = writeln!(
                s,
                "# {} also answers at ADR {}: pace2pylon needs each pack on a line of its own.\n",
                printable(&link(r)),
                others.join(", ")
            );
        }
    }
    if let Some(r) = reports.iter().find(|r| r.found.iter().any(|f| matches!(f, Found::Coil { .. }))) {
        let _ = writeln!(s, "[coil]\nlink = {}\nslave = 1\n", toml_string(&link(r)));
    }
    if let Some(r) = reports.iter().find(|r| r.found.iter().any(|f| matches!(f, Found::Vevor { .. }))) {
        let _ = writeln!(s, "[inverter]\nlink = {}\nslave = 1\n", toml_string(&link(r)));
    }
    s
}

/// Runs `scan`.
pub fn run(args: &ScanArgs, mut say: impl FnMut(&str)) -> anyhow::Result<bool> {
    if !(args.timeout > 0.0 && args.timeout <= 10.0) {
        bail!("--timeout must be above 0 and at most 10 seconds");
    }
    if !(0.0..=60.0).contains(&args.listen) {
        bail!("--listen must be 0 to 60 seconds");
    }
    let mut lines = args.links.clone();
    for r in &args.range {
        lines.extend(expand_range(r)?);
    }
    if lines.is_empty() {
        bail!(
            "give the lines to scan: pace2pylon scan /dev/ttyUSB0 tcp://host:4001 … or --range /dev/ttyUSB0-15"
        );
    }
    let (timeout, listen) = (Duration::from_secs_f64(args.timeout), Duration::from_secs_f64(args.listen));
    let mut reports = Vec::new();
    for line in &lines {
        let report = scan_line(line, timeout, listen);
        let shown = if args.json { serde_json::to_string(&report)? } else { text(&report) };
        // With --print-config the configuration alone goes to standard output.
        if args.print_config {
            eprintln!("{shown}");
        } else {
            say(&shown);
        }
        reports.push(report);
    }
    if args.print_config {
        say(config(&reports).trim_end());
    }
    Ok(reports.iter().any(|r| !r.found.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(link: &str, found: Vec<Found>) -> LineReport {
        LineReport { line: link.into(), link: Some(link.into()), found, error: None }
    }

    /// A pack's C2 serial holding newlines, and a line name with a quote, are written so that the
    /// configuration holds exactly what was found: no phantom `[[pack]]` or `[http]` table.
    #[test]
    fn scan_print_config_escapes_every_byte_from_a_device() {
        let serial = "SN1\n[[pack]]\nlink = \"tcp://evil:1\"\n[http]\nlisten = \"0.0.0.0:80\"\u{7}\u{1b}[2J";
        let pack = Found::PacePack {
            adr: 0,
            cells: 8,
            voltage_mv: 26_500,
            soc_pct: Some(50),
            serial: Some(printable(serial)),
        };
        let inverter = Found::InverterBmsPort { polls: vec!["0x63 at ADR 02".into()], other_polls: 0 };
        let reports = [report("tcp://h:1", vec![inverter]), report("tcp://h:2\"\n[http]", vec![pack])];
        let text = config(&reports);
        // The serial's own "[[pack]]" stays inside its comment line.
        assert_eq!(text.lines().filter(|l| l.trim_start().starts_with("[[pack]]")).count(), 1, "{text}");
        assert!(!text.lines().any(|l| l.trim_start().starts_with("[http]")), "{text}");
        assert!(!text.bytes().any(|b| b == 0x07 || b == 0x1b), "no control bytes: {text}");
        let parsed = daemon::Config::parse(&text, "scan").map_err(|e| e.to_string());
        // The quoted line name is kept whole as the pack's link (not a valid URL: refused as such).
        let e = parsed.unwrap_err();
        assert!(e.contains("pack[1].link"), "{e}");
        // With a plain line name the same pack makes a valid configuration of one pack.
        let reports = [
            reports[0].clone(),
            LineReport { line: "tcp://h:2".into(), link: Some("tcp://h:2".into()), ..reports[1].clone() },
        ];
        let parsed = daemon::Config::parse(&config(&reports), "scan").unwrap();
        assert_eq!(parsed.packs.len(), 1);
        assert!(parsed.http.enabled && parsed.http.listen == "127.0.0.1:8080", "no [http] came in");
    }

    /// A fake inverter polling every command: 16 kinds are named, the rest counted.
    #[test]
    fn a_peer_polling_every_command_gives_a_bounded_line() {
        let polls: Vec<String> = (0..16).map(|k| format!("0x{k:02X} at ADR 02")).collect();
        let r = report("tcp://h:1", vec![Found::InverterBmsPort { polls, other_polls: 65_000 }]);
        let line = text(&r);
        assert!(line.len() < 600 && line.contains("and 65000 other kinds"), "{line}");
    }
}
