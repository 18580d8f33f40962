//! Test peers for the probe tests: a device served on a TCP port or on a pty, and the pymodbus
//! interop peer. Included by path from the probes' integration tests.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use link::Deframer;

/// Serves `answer` (request frame -> reply bytes, or nothing) to every connection on a fresh
/// 127.0.0.1 port, reading requests with the deframer `make` builds. Returns the link URL.
pub fn serve_tcp<D, F>(make: fn() -> D, answer: F) -> String
where
    D: Deframer + 'static,
    F: Fn(&[u8]) -> Option<Vec<u8>> + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("tcp://{}", listener.local_addr().unwrap());
    let answer = std::sync::Arc::new(answer);
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            let answer = answer.clone();
            thread::spawn(move || {
                let mut d = make();
                let mut buf = [0u8; 512];
                loop {
                    let n = match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    let mut rest = &buf[..n];
                    while !rest.is_empty() {
                        let k = d.push(rest);
                        rest = &rest[k..];
                        while let Some(frame) = d.next_frame() {
                            if let Some(reply) = answer(&frame) {
                                if s.write_all(&reply).is_err() {
                                    return;
                                }
                            }
                        }
                    }
                }
            });
        }
    });
    url
}

/// Serves `answer` on the master side of a pty pair; returns the slave's path for the probe.
pub fn serve_pty<D, F>(make: fn() -> D, answer: F) -> String
where
    D: Deframer + 'static,
    F: Fn(&[u8]) -> Option<Vec<u8>> + Send + 'static,
{
    use serialport::{SerialPort, TTYPort};
    let (mut master, slave) = TTYPort::pair().expect("pty pair");
    let path = slave.name().expect("pty name");
    drop(slave);
    thread::spawn(move || {
        let _ = master.set_timeout(Duration::from_millis(100));
        let mut d = make();
        let mut buf = [0u8; 512];
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(60) {
            let n = match master.read(&mut buf) {
                Ok(n) => n,
                Err(_) => continue,
            };
            let mut rest = &buf[..n];
            while !rest.is_empty() {
                let k = d.push(rest);
                rest = &rest[k..];
                while let Some(frame) = d.next_frame() {
                    if let Some(reply) = answer(&frame) {
                        let _ = master.write_all(&reply);
                    }
                }
            }
        }
    });
    path
}

/// The Python with pymodbus that `cargo xtask test` installs (or `PACE2PYLON_PYTHON`).
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("PACE2PYLON_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/pyvenv/bin/python");
    assert!(
        venv.exists(),
        "the interop tests need pymodbus: run `cargo xtask test`, which installs it in target/pyvenv \
         (or set PACE2PYLON_PYTHON to a python that has pymodbus)"
    );
    venv
}

/// The pymodbus peer: a coulomb counter and an inverter, RTU framing over TCP.
pub struct PymodbusPeer {
    child: Child,
    /// Link URL of the counter.
    pub coil: String,
    /// Link URL of the inverter.
    pub vevor: String,
    /// The JSON-lines log of the 0x6F requests the peer saw.
    pub log: PathBuf,
}

impl PymodbusPeer {
    /// Starts the peer and waits until both ports accept connections.
    pub fn start() -> Self {
        let free = || TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let (cp, vp) = (free(), free());
        let log = std::env::temp_dir().join(format!("pace2pylon-peer-{}-{cp}.jsonl", std::process::id()));
        let _ = std::fs::remove_file(&log);
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop/pymodbus_peer.py");
        let child = Command::new(python())
            .arg(script)
            .args([cp.to_string(), vp.to_string()])
            .arg(&log)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the pymodbus peer");
        let started = Instant::now();
        for port in [cp, vp] {
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(started.elapsed() < Duration::from_secs(20), "the pymodbus peer did not start");
                thread::sleep(Duration::from_millis(50));
            }
        }
        Self { child, coil: format!("tcp://127.0.0.1:{cp}"), vevor: format!("tcp://127.0.0.1:{vp}"), log }
    }

    /// The log lines so far.
    pub fn logged(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for PymodbusPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl PymodbusPeer {
    /// Reads holding registers with pymodbus's own client: an independent view of what was written.
    pub fn read_holding(&self, url: &str, address: u16, count: u16) -> Vec<u16> {
        let port = url.rsplit(':').next().unwrap();
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop/pymodbus_peer.py");
        let out = Command::new(python())
            .arg(script)
            .args(["read-holding", port, &address.to_string(), &count.to_string()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

/// Runs a probe binary with arguments; returns (exit code, stdout, stderr).
pub fn probe(bin: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Keeps `f` quiet about unused imports in files that use only part of this module.
pub fn flush(w: &mut impl Write) {
    let _ = w.flush();
}
