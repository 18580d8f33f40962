//! The request head, checked before hyper sees a byte of it.
//!
//! hyper answers a head it cannot parse with an empty 400 or 431 and gives the program no say;
//! here every refusal is a JSON body like every other error, and the limits hold whatever the
//! client sends: a head is at most [`HEAD_MAX`] bytes, the path is printable ASCII, and a body
//! announced above the cap is refused from its `Content-Length` before any of it is read.

use crate::Reply;

/// Request line and headers together are at most this long (431 beyond).
pub const HEAD_MAX: usize = 16 * 1024;
/// More headers than this is refused (431).
const MAX_HEADERS: usize = 64;
/// Longest path an error message repeats; the rest is cut (never echo what a client can grow).
const ECHO_MAX: usize = 64;

/// What the bytes read so far amount to.
#[derive(Debug, PartialEq, Eq)]
pub enum Head {
    /// Not a complete head yet, and nothing wrong so far.
    Partial,
    /// A complete head that hyper may take.
    Complete {
        /// Whether it asks for the event stream (a connection that lives long).
        stream: bool,
    },
    /// Refused with this answer.
    Refused(Reply),
}

/// Checks the first bytes of a connection: `buf` holds everything read so far.
pub fn check(buf: &[u8], body_max: usize) -> Head {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let len = match request.parse(buf) {
        Ok(httparse::Status::Partial) if buf.len() >= HEAD_MAX => return too_large(),
        Ok(httparse::Status::Partial) => return Head::Partial,
        Ok(httparse::Status::Complete(len)) => len,
        Err(httparse::Error::TooManyHeaders) => {
            return refuse(431, format!("more than {MAX_HEADERS} headers"));
        }
        Err(httparse::Error::Version) => return refuse(400, NEEDS_VERSION),
        // An HTTP/0.9 request line: a method and a path, no version.
        Err(_) if request_line_words(buf) == 2 => return refuse(400, NEEDS_VERSION),
        Err(e) => return refuse(400, format!("malformed request head: {e}")),
    };
    if len > HEAD_MAX {
        return too_large();
    }
    let path = request.path.unwrap_or("/");
    if !path.bytes().all(|b| b.is_ascii_graphic()) {
        return refuse(400, "the path must be printable ASCII (percent-encode anything else)");
    }
    let mut length: Option<u64> = None;
    let mut chunked = false;
    for h in request.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let value = std::str::from_utf8(h.value).ok().map(str::trim);
            let Some(n) = value.and_then(|v| v.parse::<u64>().ok()) else {
                return refuse(400, "Content-Length is not a number");
            };
            if length.is_some_and(|m| m != n) {
                return refuse(400, "two different Content-Length headers");
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = true;
        }
    }
    if chunked && length.is_some() {
        return refuse(400, "Content-Length and Transfer-Encoding together are refused");
    }
    if length.is_some_and(|n| n > body_max as u64) {
        return refuse(413, format!("the body is above {body_max} bytes"));
    }
    let route = path.split_once('?').map_or(path, |(p, _)| p);
    Head::Complete { stream: route == "/api/v1/stream" }
}

const NEEDS_VERSION: &str = "the request line needs HTTP/1.0 or HTTP/1.1 (HTTP/0.9 and 2 are not served)";

fn request_line_words(buf: &[u8]) -> usize {
    let line = buf.split(|&b| b == b'\n').next().unwrap_or_default();
    line.split(|b| b.is_ascii_whitespace()).filter(|w| !w.is_empty()).count()
}

fn too_large() -> Head {
    refuse(431, format!("the request line and headers are above {HEAD_MAX} bytes"))
}

fn refuse(status: u16, message: impl Into<String>) -> Head {
    Head::Refused(Reply::error(status, message))
}

/// `path` as an error message may repeat it: at most [`ECHO_MAX`] characters, then `...`.
pub fn echo(path: &str) -> String {
    match path.char_indices().nth(ECHO_MAX) {
        Some((cut, _)) => format!("{}...", &path[..cut]),
        None => path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::{HEAD_MAX, Head, check, echo};

    fn status(buf: &[u8]) -> Option<u16> {
        match check(buf, 64 * 1024) {
            Head::Refused(r) => Some(r.status),
            _ => None,
        }
    }

    #[test]
    fn a_plain_request_passes_and_the_stream_is_recognised() {
        assert_eq!(
            check(b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\n\r\n", 10),
            Head::Complete { stream: false }
        );
        assert_eq!(check(b"GET /api/v1/stream?x=1 HTTP/1.1\r\n\r\n", 10), Head::Complete { stream: true });
        assert_eq!(check(b"GET /api/v1/sta", 10), Head::Partial);
    }

    #[test]
    fn limits_are_refused_with_their_status() {
        assert_eq!(status(b"GET / HTTP/1.1\r\nContent-Length: 1000000000000\r\n\r\n"), Some(413));
        assert_eq!(status(b"GET / HTTP/1.1\r\nContent-Length: 18446744073709551615\r\n\r\n"), Some(413));
        assert_eq!(status(b"GET / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n"), Some(400));
        assert_eq!(status(b"GET / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n"), Some(400));
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Some(400)
        );
        let mut long = b"GET / HTTP/1.1\r\nX: ".to_vec();
        long.resize(HEAD_MAX, b'a');
        assert_eq!(status(&long), Some(431));
        let many: String = (0..65).map(|k| format!("X{k}: y\r\n")).collect();
        assert_eq!(status(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes()), Some(431));
    }

    #[test]
    fn odd_request_lines_are_json_errors() {
        assert_eq!(status(b"GET /\r\n\r\n"), Some(400));
        assert_eq!(status(b"GET /\xc3\xa9t\xc3\xa9 HTTP/1.1\r\n\r\n"), Some(400));
        assert_eq!(status(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"), Some(400));
        let Head::Refused(r) = check(b"GET /\r\n\r\n", 1) else { panic!("accepted HTTP/0.9") };
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
        assert!(body["error"].as_str().is_some_and(|e| e.contains("HTTP/1.1")), "{body}");
    }

    #[test]
    fn echoed_paths_are_cut() {
        assert_eq!(echo("/short"), "/short");
        let long = "/".repeat(10_000);
        assert_eq!(echo(&long).len(), 64 + 3);
        assert_eq!(echo(&"é".repeat(100)).chars().count(), 64 + 3);
    }
}
