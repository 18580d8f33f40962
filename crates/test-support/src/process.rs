//! What the tests that drive external programs share: finding them, free ports, processes killed
//! when a test ends, and a mosquitto broker of the test's own.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The path of `name` on PATH (or in the sbin directories); fails the test, saying what to
/// install, when it is missing.
pub fn tool(name: &str) -> String {
    for dir in std::env::var("PATH").unwrap_or_default().split(':').chain(["/usr/sbin", "/sbin"]) {
        let path = std::path::Path::new(dir).join(name);
        if path.is_file() {
            return path.display().to_string();
        }
    }
    panic!(
        "{name} is not installed; `cargo xtask test` installs mosquitto, mosquitto-clients, socat and chromium"
    );
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A process killed when the test ends, however it ends.
#[derive(Debug)]
pub struct Guard(pub Child);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until something accepts connections on 127.0.0.1:`port`.
pub fn wait_for_port(port: u16, what: &str) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(20), "{what} did not open port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A mosquitto broker on `port` (not waited for).
pub fn mosquitto_on(port: u16) -> Guard {
    Guard(
        Command::new(tool("mosquitto"))
            .args(["-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// A mosquitto broker on a free port, up and accepting connections.
pub fn broker() -> (Guard, u16) {
    let port = free_port();
    let guard = mosquitto_on(port);
    wait_for_port(port, "mosquitto");
    (guard, port)
}

/// The configuration `pace2pylon sim --print-config` prints first, read up to its last line.
pub fn printed_config(out: &mut impl std::io::BufRead) -> String {
    let mut config = String::new();
    loop {
        let mut line = String::new();
        assert!(out.read_line(&mut line).unwrap() > 0, "the configuration ended early: {config}");
        config.push_str(&line);
        if line.starts_with("slave = 1") && config.contains("[inverter]") {
            return config;
        }
    }
}

/// `EXE sim --packs N --base-port 0 --print-config` (`exe`: the `pace2pylon` binary under test,
/// `env!("CARGO_BIN_EXE_pace2pylon")`): the running simulator, the `run` configuration it
/// printed, and its standard output, kept open (the simulator ends when its output's reader goes
/// away).
pub fn sim_printing_config(
    exe: &str,
    packs: u8,
) -> (Guard, String, std::io::BufReader<std::process::ChildStdout>) {
    let mut sim = Command::new(exe)
        .args(["sim", "--packs", &packs.to_string(), "--base-port", "0", "--print-config"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(sim.stdout.take().unwrap());
    let sim = Guard(sim);
    let config = printed_config(&mut out);
    (sim, config, out)
}

/// The Python with pymodbus, python-can and cantools that `cargo xtask test` installs in
/// `target/pyvenv` (or `PACE2PYLON_PYTHON`).
pub fn python() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("PACE2PYLON_PYTHON") {
        return p.into();
    }
    let venv = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/pyvenv/bin/python");
    assert!(
        venv.exists(),
        "the interop tests need Python peers: run `cargo xtask test`, which installs them in target/pyvenv \
         (or set PACE2PYLON_PYTHON to a python that has pymodbus, python-can and cantools)"
    );
    venv
}

/// Two linked pseudo-terminals made by socat, at `a` and `b` (symlinks), as a USB serial adapter
/// and the device behind it would be: whatever one side writes the other reads. Waits until both
/// exist.
pub fn pty_pair(a: &std::path::Path, b: &std::path::Path) -> Guard {
    let side = |p: &std::path::Path| format!("pty,raw,echo=0,link={}", p.display());
    let guard = Guard(
        Command::new(tool("socat"))
            .args([side(a), side(b)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let start = Instant::now();
    while !(a.exists() && b.exists()) {
        assert!(start.elapsed() < Duration::from_secs(10), "socat made no pty pair at {a:?} and {b:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    guard
}
