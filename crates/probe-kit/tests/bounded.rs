//! Issue 10 item 2: a line without end costs CPU, not memory.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use std::io::{BufReader, Read};

use probe_kit::{Line, MAX_DECODE_LINE, decode_stream, read_line_bounded};

/// `n` zero bytes (as `< /dev/zero` gives), then `tail`.
struct Zeros {
    left: usize,
    tail: &'static [u8],
}

impl Read for Zeros {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left > 0 {
            let n = buf.len().min(self.left);
            buf[..n].fill(0);
            self.left -= n;
            return Ok(n);
        }
        let n = buf.len().min(self.tail.len());
        buf[..n].copy_from_slice(&self.tail[..n]);
        self.tail = &self.tail[n..];
        Ok(n)
    }
}

#[test]
fn a_line_without_end_is_skipped_and_memory_stays_flat() {
    let mut input = BufReader::new(Zeros { left: 50 << 20, tail: b"\nstatus\nlast" });
    let mut line = Vec::new();
    assert_eq!(read_line_bounded(&mut input, &mut line, 4096).unwrap(), Line::TooLong);
    assert!(line.capacity() <= 4096 + 8192, "kept {} bytes of a 50 MiB line", line.capacity());
    assert_eq!(read_line_bounded(&mut input, &mut line, 4096).unwrap(), Line::Line);
    assert_eq!(line, b"status");
    assert_eq!(read_line_bounded(&mut input, &mut line, 4096).unwrap(), Line::Line);
    assert_eq!(line, b"last");
    assert_eq!(read_line_bounded(&mut input, &mut line, 4096).unwrap(), Line::End);
}

#[test]
fn exactly_the_bound_is_kept_and_one_more_byte_is_too_long() {
    let text = format!("{}\n{}\n", "a".repeat(10), "b".repeat(11));
    let mut input = text.as_bytes();
    let mut line = Vec::new();
    assert_eq!(read_line_bounded(&mut input, &mut line, 10).unwrap(), Line::Line);
    assert_eq!(line.len(), 10);
    assert_eq!(read_line_bounded(&mut input, &mut line, 10).unwrap(), Line::TooLong);
    assert_eq!(read_line_bounded(&mut input, &mut line, 10).unwrap(), Line::End);
}

#[test]
fn decode_reports_a_long_line_by_its_number_and_goes_on() {
    let input = BufReader::new(Zeros { left: MAX_DECODE_LINE + 1, tail: b"\n~good\n" });
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let bad = decode_stream(input, &mut out, &mut err, false, |frame, out: &mut Vec<u8>| {
        out.extend_from_slice(frame);
        Ok(())
    })
    .unwrap();
    assert_eq!(bad, 1);
    let err = String::from_utf8(err).unwrap();
    assert!(err.starts_with("line 1: too long"), "{err}");
    assert_eq!(out, b"~good");
}
