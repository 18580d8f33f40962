use std::fmt;
use std::str::FromStr;

use crate::Error;

/// Where a link goes, parsed from its URL.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// A local serial port, 8N1.
    Serial {
        /// Device path.
        path: String,
        /// Baud rate.
        baud: u32,
    },
    /// A TCP client connection (console server port).
    Tcp {
        /// `host:port`.
        addr: String,
    },
    /// A TCP listener that accepts one peer at a time.
    TcpListen {
        /// `host:port` to bind.
        addr: String,
    },
}

/// Baud rate when a serial URL does not give one (Pace PDF §1.1, Vevor, the counter).
pub const DEFAULT_BAUD: u32 = 9600;

impl Endpoint {
    /// Parses a link URL.
    ///
    /// # Errors
    /// [`Error::Url`] naming the problem: unknown scheme, missing port, bad baud rate, unknown option.
    pub fn parse(url: &str) -> Result<Self, Error> {
        let bad = |reason: &str| Error::Url { url: url.to_owned(), reason: reason.to_owned() };
        let url_trimmed = url.trim();
        if url_trimmed.is_empty() {
            return Err(bad(
                "empty link; use /dev/ttyUSB0, serial:///dev/ttyUSB0?baud=9600, tcp://host:port or tcp-listen://addr:port",
            ));
        }
        if let Some(rest) = url_trimmed.strip_prefix("tcp://") {
            return Ok(Self::Tcp { addr: host_port(rest).map_err(|r| bad(&r))? });
        }
        if let Some(rest) = url_trimmed.strip_prefix("tcp-listen://") {
            return Ok(Self::TcpListen { addr: host_port(rest).map_err(|r| bad(&r))? });
        }
        let (path, query) = if let Some(rest) = url_trimmed.strip_prefix("serial://") {
            match rest.split_once('?') {
                Some((p, q)) => (p, Some(q)),
                None => (rest, None),
            }
        } else if url_trimmed.starts_with('/') {
            (url_trimmed, None)
        } else if let Some((scheme, _)) = url_trimmed.split_once("://") {
            return Err(bad(&format!("unknown scheme '{scheme}'; use serial://, tcp:// or tcp-listen://")));
        } else {
            return Err(bad(
                "not a link; use /dev/ttyUSB0, serial:///dev/ttyUSB0?baud=9600, tcp://host:port or tcp-listen://addr:port",
            ));
        };
        if path.is_empty() || !path.starts_with('/') {
            return Err(bad("a serial link needs an absolute device path, e.g. serial:///dev/ttyUSB0"));
        }
        let mut baud = DEFAULT_BAUD;
        for pair in query.into_iter().flat_map(|q| q.split('&')).filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("baud", v)) => {
                    baud = v
                        .parse()
                        .ok()
                        .filter(|b| *b > 0)
                        .ok_or_else(|| bad(&format!("baud '{v}' is not a positive number")))?;
                }
                _ => return Err(bad(&format!("unknown option '{pair}'; the only option is baud=N"))),
            }
        }
        Ok(Self::Serial { path: path.to_owned(), baud })
    }
}

fn host_port(s: &str) -> Result<String, String> {
    let s = s.trim_end_matches('/');
    let (host, port) = s.rsplit_once(':').ok_or_else(|| "missing ':port'".to_owned())?;
    if host.is_empty() {
        return Err("missing host".into());
    }
    port.parse::<u16>().map_err(|_| format!("port '{port}' is not a number from 0 to 65535"))?;
    Ok(s.to_owned())
}

impl FromStr for Endpoint {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Serial { path, baud } if *baud == DEFAULT_BAUD => write!(f, "serial://{path}"),
            Self::Serial { path, baud } => write!(f, "serial://{path}?baud={baud}"),
            Self::Tcp { addr } => write!(f, "tcp://{addr}"),
            Self::TcpListen { addr } => write!(f, "tcp-listen://{addr}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_parses() {
        assert_eq!(
            Endpoint::parse("/dev/ttyUSB0").unwrap(),
            Endpoint::Serial { path: "/dev/ttyUSB0".into(), baud: 9600 }
        );
        assert_eq!(
            Endpoint::parse("serial:///dev/ttyS1?baud=19200").unwrap(),
            Endpoint::Serial { path: "/dev/ttyS1".into(), baud: 19200 }
        );
        assert_eq!(
            Endpoint::parse("tcp://10.0.0.5:4002").unwrap(),
            Endpoint::Tcp { addr: "10.0.0.5:4002".into() }
        );
        assert_eq!(
            Endpoint::parse("tcp-listen://0.0.0.0:4023").unwrap().to_string(),
            "tcp-listen://0.0.0.0:4023"
        );
    }

    #[test]
    fn errors_say_what_to_write() {
        let e = |u: &str| Endpoint::parse(u).unwrap_err().to_string();
        assert_eq!(e("tcp://host"), "tcp://host: missing ':port'");
        assert_eq!(e("tcp://host:99999"), "tcp://host:99999: port '99999' is not a number from 0 to 65535");
        assert_eq!(
            e("serial:///dev/ttyS0?baud=fast"),
            "serial:///dev/ttyS0?baud=fast: baud 'fast' is not a positive number"
        );
        assert_eq!(
            e("serial:///dev/ttyS0?parity=even"),
            "serial:///dev/ttyS0?parity=even: unknown option 'parity=even'; the only option is baud=N"
        );
        assert!(e("udp://x:1").contains("unknown scheme 'udp'"));
        assert!(e("ttyUSB0").contains("not a link"));
    }
}
