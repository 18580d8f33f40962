//! What the probe CLIs share.
//!
//! * [`decode_stream`]: one frame per input line, one result per output line, errors counted, never
//!   stopping at the first bad line (a capture log is decoded at once).
//! * [`read_line_bounded`]: one line of at most so many bytes, whatever the input (a line
//!   without end costs CPU, not memory).
//! * [`render`]: a readable table of a decoded frame, driven by the JSON field-name convention:
//!   `_mv` values are shown in V, `_ma` in A, `_dc` in °C, `_mah` in Ah, `_pct` in %, `*_flags` as
//!   names, state bytes in hex. The JSON is the contract; the table is a view of it.
//!
//! ```
//! let v = serde_json::json!({"adr": 1, "rtn": 0, "voltage_mv": 52429, "current_ma": -2250});
//! let mut out = Vec::new();
//! probe_kit::render(&v, &mut out).unwrap();
//! let text = String::from_utf8(out).unwrap();
//! assert!(text.contains("voltage") && text.contains("52.429 V"));
//! assert!(text.contains("-2.250 A"));
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::io::{self, BufRead, Write};

use serde_json::Value;

/// The frame in a line of a capture log: from the first `~` to the end, without surrounding
/// whitespace (so timestamps or labels before the frame are skipped). `None` for a blank line.
pub fn frame_in_line(line: &[u8]) -> Option<&[u8]> {
    let line = line.trim_ascii();
    if line.is_empty() {
        return None;
    }
    let start = line.iter().position(|&b| b == b'~').unwrap_or(0);
    Some(&line[start..])
}

/// Whether `e` is a closed standard output (`probe | head`): the probe then ends quietly.
pub fn is_broken_pipe(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            if io.kind() == io::ErrorKind::BrokenPipe {
                return true;
            }
        }
        source = err.source();
    }
    false
}

/// Parses a CID2 given on the command line: `42`, `0x42` or `42h`, hex.
///
/// # Errors
/// A message naming the value when it is not one hex byte.
pub fn parse_hex_byte(s: &str) -> Result<u8, String> {
    let t = s.trim();
    let t = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")).unwrap_or(t);
    let t = t.strip_suffix(['h', 'H']).unwrap_or(t);
    u8::from_str_radix(t, 16).map_err(|_| format!("'{s}' is not a hex byte (e.g. 42)"))
}

/// What [`read_line_bounded`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Line {
    /// A line is in the buffer (without its `\n`; a last line without one counts too).
    Line,
    /// A line longer than the bound was read to its end and thrown away; the buffer is empty.
    TooLong,
    /// End of input.
    End,
}

/// Reads one line into `line` (cleared first), keeping at most `max` bytes of it: a longer line
/// is read to its end but not kept, so memory stays flat on input without newlines.
///
/// # Errors
/// I/O errors of `input`.
pub fn read_line_bounded<R: BufRead + ?Sized>(
    input: &mut R,
    line: &mut Vec<u8>,
    max: usize,
) -> io::Result<Line> {
    line.clear();
    let mut too_long = false;
    let mut any = false;
    loop {
        let buf = match input.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok(match (too_long, any) {
                (true, _) => Line::TooLong,
                (false, true) => Line::Line,
                (false, false) => Line::End,
            });
        }
        any = true;
        let (used, ends) = match buf.iter().position(|&b| b == b'\n') {
            Some(k) => (k + 1, true),
            None => (buf.len(), false),
        };
        let content = &buf[..used - usize::from(ends)];
        if !too_long {
            if line.len() + content.len() > max {
                too_long = true;
                line.clear();
            } else {
                line.extend_from_slice(content);
            }
        }
        input.consume(used);
        if ends {
            return Ok(if too_long { Line::TooLong } else { Line::Line });
        }
    }
}

/// The longest input line [`decode_stream`] decodes; longer ones are reported and skipped.
pub const MAX_DECODE_LINE: usize = 64 * 1024;

/// Decodes every line of `input` with `decode`, which writes one result for a good frame; a bad
/// frame gets a JSON `{"line":N,"error":"..."}` (with `json`) or nothing on `out`, and
/// `line N: <error>` on `err`. Blank lines are skipped; a line above [`MAX_DECODE_LINE`] bytes is
/// `line N: too long` and skipped. Returns the number of bad lines.
///
/// # Errors
/// I/O errors of the input or the outputs.
pub fn decode_stream<R: BufRead, W: Write, E: Write>(
    input: R,
    out: &mut W,
    err: &mut E,
    json: bool,
    mut decode: impl FnMut(&[u8], &mut W) -> Result<(), String>,
) -> io::Result<usize> {
    decode_lines(input, out, err, json, |line, out| match frame_in_line(line) {
        Some(frame) => decode(frame, out),
        None => Ok(()),
    })
}

/// As [`decode_stream`], handing `decode` each whole line (without its newline; any bytes, UTF-8
/// or not): it says what the line holds, or what is wrong with it.
///
/// # Errors
/// I/O errors of the input or the outputs.
pub fn decode_lines<R: BufRead, W: Write, E: Write>(
    mut input: R,
    out: &mut W,
    err: &mut E,
    json: bool,
    mut decode: impl FnMut(&[u8], &mut W) -> Result<(), String>,
) -> io::Result<usize> {
    let mut line = Vec::with_capacity(512);
    let mut n = 0usize;
    let mut bad = 0usize;
    loop {
        let result = match read_line_bounded(&mut input, &mut line, MAX_DECODE_LINE)? {
            Line::End => break,
            Line::TooLong => Err(format!("too long (more than {MAX_DECODE_LINE} bytes); skipped")),
            Line::Line => decode(&line, out),
        };
        n += 1;
        if let Err(e) = result {
            bad += 1;
            writeln!(err, "line {n}: {e}")?;
            if json {
                serde_json::to_writer(&mut *out, &serde_json::json!({ "line": n, "error": e }))?;
                out.write_all(b"\n")?;
            }
        }
    }
    out.flush()?;
    Ok(bad)
}

/// Keys whose integer values are state bytes or codes, shown in hex.
const HEX_KEYS: &[&str] = &[
    "protect1",
    "protect2",
    "system",
    "control",
    "fault",
    "balance1",
    "balance2",
    "warn1",
    "warn2",
    "flags",
    "info_flag",
    "alarm1",
    "alarm2",
    "status",
    "lead",
    "command",
    "rtn",
    "adr",
    "cid2",
    "switch",
    "can",
    "rs485",
    "mode",
    "value",
    "ver",
];

/// Writes `value` (a decoded frame's JSON) as an indented table with units.
///
/// # Errors
/// I/O errors of `out`.
pub fn render<W: Write>(value: &Value, out: &mut W) -> io::Result<()> {
    render_object(value, 0, out)
}

fn render_object<W: Write>(value: &Value, depth: usize, out: &mut W) -> io::Result<()> {
    let Value::Object(map) = value else {
        return writeln!(out, "{:indent$}{}", "", plain(value), indent = depth * 2);
    };
    for (key, v) in map {
        let indent = depth * 2;
        match v {
            Value::Object(_) => {
                writeln!(out, "{:indent$}{}", "", key.replace('_', " "))?;
                render_object(v, depth + 1, out)?;
            }
            Value::Array(items) if items.iter().any(Value::is_object) => {
                let singular = key.strip_suffix('s').unwrap_or(key);
                for (i, item) in items.iter().enumerate() {
                    writeln!(out, "{:indent$}{} {}", "", singular, i + 1)?;
                    render_object(item, depth + 1, out)?;
                }
            }
            _ => {
                let (label, shown) = show(key, v);
                writeln!(out, "{:indent$}{:<24}{}", "", label, shown, indent = indent)?;
            }
        }
    }
    Ok(())
}

fn plain(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A unit suffix: its label-free key, the divisor, decimals and the unit shown.
fn unit_of(key: &str) -> Option<(&str, i64, usize, &'static str)> {
    const UNITS: &[(&str, i64, usize, &str)] = &[
        ("_mv", 1000, 3, " V"),
        ("_ma", 1000, 3, " A"),
        ("_mah", 1000, 3, " Ah"),
        ("_mwh", 1000, 3, " Wh"),
        ("_mw", 1000, 3, " W"),
        ("_mhz", 1000, 3, " Hz"),
        ("_c", 1, 0, " °C"),
        ("_dc", 10, 1, " °C"),
        ("_pct", 1, 0, " %"),
        ("_ms", 1, 0, " ms"),
        ("_us", 1, 0, " µs"),
        ("_min", 1, 0, " min"),
        ("_a", 1, 0, " A"),
    ];
    UNITS.iter().find_map(|&(suffix, div, dec, unit)| key.strip_suffix(suffix).map(|k| (k, div, dec, unit)))
}

fn scaled(n: i64, div: i64, dec: usize) -> String {
    if div == 1 {
        return n.to_string();
    }
    let sign = if n < 0 { "-" } else { "" };
    let a = n.unsigned_abs();
    let d = div.unsigned_abs();
    format!("{sign}{}.{:0dec$}", a / d, a % d)
}

fn show(key: &str, v: &Value) -> (String, String) {
    let label = |k: &str| k.replace('_', " ");
    if let Some((k, div, dec, unit)) = unit_of(key) {
        let shown = match v {
            Value::Number(n) => n.as_i64().map_or_else(|| n.to_string(), |n| scaled(n, div, dec) + unit),
            Value::Array(items) => {
                let parts: Vec<String> = items
                    .iter()
                    .map(|i| i.as_i64().map_or_else(|| plain(i), |n| scaled(n, div, dec)))
                    .collect();
                format!("{}{unit}", parts.join(" "))
            }
            other => plain(other),
        };
        return (label(k), shown);
    }
    if key.ends_with("_flags") || key == "flag_names" {
        let names: Vec<String> = v.as_array().map(|a| a.iter().map(plain).collect()).unwrap_or_default();
        return (label(key), if names.is_empty() { "-".into() } else { names.join(", ") });
    }
    let hex = HEX_KEYS.contains(&key);
    let shown = match v {
        Value::Number(n) if hex => n.as_u64().map_or_else(|| n.to_string(), |n| format!("{n:02X}")),
        Value::Array(items) if hex || key.ends_with("warns") || key == "extra" || key == "info" => {
            let parts: Vec<String> =
                items.iter().map(|i| i.as_u64().map_or_else(|| plain(i), |n| format!("{n:02X}"))).collect();
            if parts.is_empty() { "-".into() } else { parts.join(" ") }
        }
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(plain).collect();
            if parts.is_empty() { "-".into() } else { parts.join(" ") }
        }
        other => plain(other),
    };
    (label(key), shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_sections() {
        let v = serde_json::json!({
            "adr": 1, "packs": [{"cells_mv": [3271, 3269], "temps_dc": [241, -5], "protect1": 14,
            "protect1_flags": ["high_cell_voltage"], "soc_pct": null}]
        });
        let mut out = Vec::new();
        render(&v, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("pack 1"), "{text}");
        assert!(text.contains("3.271 3.269 V"), "{text}");
        assert!(text.contains("24.1 -0.5 °C"), "{text}");
        assert!(text.contains("0E"), "{text}");
        assert!(text.contains("high_cell_voltage"), "{text}");
    }

    #[test]
    fn stream_reports_bad_lines_and_goes_on() {
        let input = b"~ok\n\nbad\n12:00 ~ok\n".as_slice();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let bad = decode_stream(input, &mut out, &mut err, true, |f, o| {
            if f == b"~ok" { o.write_all(b"{}\n").map_err(|e| e.to_string()) } else { Err("nope".into()) }
        })
        .unwrap();
        assert_eq!(bad, 1);
        assert_eq!(String::from_utf8(out).unwrap(), "{}\n{\"line\":3,\"error\":\"nope\"}\n{}\n");
        assert_eq!(String::from_utf8(err).unwrap(), "line 3: nope\n");
    }

    #[test]
    fn cid2_arguments() {
        assert_eq!(parse_hex_byte("42"), Ok(0x42));
        assert_eq!(parse_hex_byte("0x9b"), Ok(0x9B));
        assert!(parse_hex_byte("4242").unwrap_err().contains("4242"));
    }
}

/// The options every live probe command takes, before or after the subcommand.
#[derive(Clone, Debug, clap::Args)]
pub struct LinkArgs {
    /// The line: /dev/ttyUSB0, serial:///dev/ttyUSB0?baud=9600, tcp://host:port or tcp-listen://addr:port.
    #[arg(long, global = true, value_name = "URL")]
    pub link: Option<String>,
    /// Seconds to wait for a reply.
    #[arg(long, global = true, default_value_t = 1.0, value_name = "SECONDS", value_parser = parse_seconds)]
    pub timeout: f64,
    /// Print JSON (field names carry their unit: cells_mv, temps_dc, current_ma, ...).
    #[arg(long, global = true)]
    pub json: bool,
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 3600.0 => Ok(v),
        _ => Err(format!("'{s}' is not a number of seconds between 0 and 3600")),
    }
}

impl LinkArgs {
    /// Opens the link named by `--link`.
    ///
    /// # Errors
    /// When `--link` is missing or not a link URL.
    pub fn open(&self) -> Result<link::Link, String> {
        let url = self.link.as_deref().ok_or_else(|| {
            "this command talks to a device: give --link (e.g. --link /dev/ttyUSB0 or --link tcp://host:port)".to_owned()
        })?;
        link::Link::open(url).map_err(|e| e.to_string())
    }

    /// The reply timeout.
    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.timeout)
    }
}

/// Writes `value` as one JSON line or as a table.
///
/// # Errors
/// I/O errors of `out`.
pub fn print_value<T: serde::Serialize, W: Write>(value: &T, json: bool, out: &mut W) -> io::Result<()> {
    if json {
        // serde_json makes many tiny writes: gather them in a reused buffer, write once per value.
        thread_local!(static LINE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) });
        LINE.with_borrow_mut(|line| {
            line.clear();
            serde_json::to_writer(&mut *line, value)?;
            line.push(b'\n');
            out.write_all(line)
        })
    } else {
        render(&serde_json::to_value(value)?, out)
    }
}

/// [`print_value`] for one of many values in a stream: tables get a blank line after them so
/// that consecutive frames stand apart; JSON lines need nothing.
///
/// # Errors
/// I/O errors of `out`.
pub fn print_in_stream<T: serde::Serialize, W: Write>(value: &T, json: bool, out: &mut W) -> io::Result<()> {
    print_value(value, json, out)?;
    if !json {
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// The local time as `HH:MM:SS.mmm`, for sniffed frames.
pub fn timestamp() -> String {
    jiff::Zoned::now().strftime("%H:%M:%S%.3f").to_string()
}

/// A writer that indents every line by two spaces (a decoded frame under its raw line).
#[derive(Debug)]
pub struct Indent<W> {
    inner: W,
    at_line_start: bool,
}

impl<W: Write> Indent<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        Self { inner, at_line_start: true }
    }
}

impl<W: Write> Write for Indent<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        for line in buf.split_inclusive(|&b| b == b'\n') {
            if self.at_line_start {
                self.inner.write_all(b"  ")?;
            }
            self.inner.write_all(line)?;
            self.at_line_start = line.ends_with(b"\n");
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Sends a Modbus request to `slave` and returns the PDU of its reply: the first frame from that
/// slave whose function is the request's (or its exception). Frames from other slaves or for
/// other functions are skipped. `Ok(None)` when nothing matching came before the deadline.
///
/// # Errors
/// Link failures other than a timeout, and a request too long to encode.
pub fn modbus_call(
    link: &mut link::Link,
    slave: u8,
    request: &modbus_rtu::Request,
    timeout: std::time::Duration,
) -> Result<Option<Vec<u8>>, String> {
    let mut frame = Vec::new();
    request.encode(slave, &mut frame).map_err(|e| e.to_string())?;
    let deadline = std::time::Instant::now() + timeout;
    let mut deframer = link::RtuDeframer::new(modbus_rtu::Side::Response);
    let function = request.function();
    let mut next = match link.request(&frame, &mut deframer, timeout) {
        Ok(f) => Some(f),
        Err(link::Error::Timeout { .. }) => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    loop {
        match next {
            Some(f) if f.len() >= 2 && f[0] == slave && (f[1] & 0x7F) == function => {
                return Ok(Some(f[1..].to_vec()));
            }
            Some(_) => {}
            None => return Ok(None),
        }
        next = link.receive(&mut deframer, deadline).map_err(|e| e.to_string())?;
    }
}

/// An error and its causes on one line, `outer: cause: …`, each cause said once: one whose text
/// the line already holds (an error that prints its source itself) is not said again.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut line = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = c.source();
    }
    line
}

#[cfg(test)]
mod chain_tests {
    use super::error_chain;

    #[derive(Debug)]
    struct Outer(std::io::Error);
    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "tcp-listen://0.0.0.0:502: cannot open: {}", self.0)
        }
    }
    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn errors_print_their_cause_once() {
        let e = Outer(std::io::Error::from(std::io::ErrorKind::AddrInUse));
        let text = error_chain(&e);
        assert_eq!(text.matches("address in use").count(), 1, "{text}");
    }
}
