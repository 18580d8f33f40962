//! Hostile clients against `pace2pylon run` as installed: the daemon polls `pace2pylon sim`, a
//! master polls its Pylontech port (`tcp-listen`) every 250 ms, and raw sockets on loopback do
//! what an attacker on the LAN would. After each attack the process is alive, `/healthz` answers
//! within 2 s, the master was answered 0x63 throughout, and the resident memory read from /proc
//! stays under 64 MB. Each test is named after the defect it would have caught.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use test_support::process::{Guard, free_port, sim_printing_config};

const BIN: &str = env!("CARGO_BIN_EXE_pace2pylon");
/// `GET 0x63` at ADR 2, as a Vevor sends it.
const POLL_63: &[u8] = b"~200246630000FDA9\r";
const RSS_LIMIT_KB: u64 = 64 * 1024;

/// The daemon under attack, its plant, and a master polling it.
struct Target {
    run: Guard,
    dir: std::path::PathBuf,
    _sim: (Guard, BufReader<std::process::ChildStdout>),
    http: u16,
    master_port: u16,
    master: Master,
}

/// Polls 0x63 every 250 ms on one connection and notes when each good reply came.
struct Master {
    replies: Arc<Mutex<Vec<Instant>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Master {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Master {
    fn start(port: u16) -> Self {
        let replies = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s) = (replies.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut conn: Option<TcpStream> = None;
            while !s.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(250));
                let c = match conn.as_mut() {
                    Some(c) => c,
                    None => match TcpStream::connect(("127.0.0.1", port)) {
                        Ok(c) => {
                            c.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
                            conn.insert(c)
                        }
                        Err(_) => continue,
                    },
                };
                if c.write_all(POLL_63).is_err() {
                    conn = None;
                    continue;
                }
                let mut reply = Vec::new();
                let mut byte = [0u8; 1];
                let good = loop {
                    match c.read(&mut byte) {
                        Ok(1) if byte[0] == b'\r' => break reply.starts_with(b"~"),
                        Ok(1) => reply.push(byte[0]),
                        _ => break false,
                    }
                };
                // RTN 00 from ADR 02: "~20 02 46 00 ..." (VER, ADR, CID1, RTN).
                if good && reply.get(3..9) == Some(b"024600".as_slice()) {
                    r.lock().unwrap().push(Instant::now());
                }
            }
        });
        Self { replies, stop, thread: Some(thread) }
    }

    /// The longest time without a reply since `from` (up to now).
    fn longest_silence_since(&self, from: Instant) -> Duration {
        let replies = self.replies.lock().unwrap().clone();
        let mut last = from;
        let mut longest = Duration::ZERO;
        for t in replies.into_iter().filter(|t| *t >= from).chain([Instant::now()]) {
            longest = longest.max(t - last);
            last = t;
        }
        longest
    }

    fn answered(&self) -> usize {
        self.replies.lock().unwrap().len()
    }
}

fn start(nofile: Option<u32>) -> Target {
    start_with(nofile, None)
}

/// [`start`] with `history` written as the history file first.
fn start_with(nofile: Option<u32>, history: Option<&str>) -> Target {
    let (sim, printed, sim_out) = sim_printing_config(env!("CARGO_BIN_EXE_pace2pylon"), 2);
    let (http, pylon) = (free_port(), free_port());
    let dir = std::env::temp_dir().join(format!("p2p-hardening-{}-{http}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut config: String = printed
        .lines()
        .map(|l| {
            if l.starts_with("link = \"tcp://") && printed.find(l) < printed.find("[[pack]]") {
                format!("link = \"tcp-listen://127.0.0.1:{pylon}\"\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    config += &format!(
        "\n[state]\nstate_file = \"{0}/state.json\"\nevent_log = \"{0}/events.jsonl\"\n\n\
         [http]\nlisten = \"127.0.0.1:{http}\"\ntoken = \"hardening-token-1234\"\n",
        dir.display()
    );
    let path = dir.join("run.toml");
    std::fs::write(&path, &config).unwrap();
    if let Some(history) = history {
        std::fs::write(dir.join("history.jsonl"), history).unwrap();
    }
    let mut command = match nofile {
        Some(n) => {
            let mut c = Command::new("prlimit");
            c.arg(format!("--nofile={n}")).arg(BIN);
            c
        }
        None => Command::new(BIN),
    };
    let run = Guard(
        command
            .arg("run")
            .arg("--config")
            .arg(&path)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let master = Master::start(pylon);
    let target = Target { run, dir, _sim: (sim, sim_out), http, master_port: pylon, master };
    let started = Instant::now();
    while target.master.answered() == 0 || healthz(http, Duration::from_secs(2)).is_none_or(|s| s != 200) {
        assert!(started.elapsed() < Duration::from_secs(30), "the daemon did not start answering");
        std::thread::sleep(Duration::from_millis(200));
    }
    target
}

/// The status code of `GET /healthz`, if it came within `limit`.
fn healthz(port: u16, limit: Duration) -> Option<u16> {
    let answer = exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", limit)?;
    answer.split(' ').nth(1)?.parse().ok()
}

/// Sends `request` on a new connection; the whole answer, if it came within `limit`.
fn exchange(port: u16, request: &[u8], limit: Duration) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(limit)).ok()?;
    s.write_all(request).ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// The status line's code and the JSON body of an answer.
fn parse(answer: &str) -> (u16, serde_json::Value) {
    let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(serde_json::Value::Null))
}

impl Target {
    fn rss_kb(&self) -> u64 {
        rss_kb_of(self.run.0.id())
    }

    /// Everything a user relies on still holds, since `from`.
    fn assert_unharmed(&mut self, from: Instant, what: &str) {
        assert!(self.run.0.try_wait().unwrap().is_none(), "{what}: the daemon died");
        let took = Instant::now();
        assert_eq!(healthz(self.http, Duration::from_secs(2)), Some(200), "{what}: /healthz");
        eprintln!("{what}: /healthz answered in {:?}", took.elapsed());
        let silence = self.master.longest_silence_since(from);
        assert!(silence < Duration::from_secs(2), "{what}: the master went {silence:?} without a 0x63 reply");
        let rss = self.rss_kb();
        assert!(rss > 0 && rss < RSS_LIMIT_KB, "{what}: resident memory {rss} kB");
        eprintln!("{what}: longest 0x63 silence {silence:?}, RSS {rss} kB");
    }
}

#[test]
fn a_huge_content_length_on_healthz_does_not_abort_the_process() {
    let mut t = start(None);
    let from = Instant::now();
    let answer = exchange(
        t.http,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000\r\n\r\n",
        Duration::from_secs(5),
    )
    .unwrap();
    let (status, body) = parse(&answer);
    assert_eq!(status, 413, "{answer}");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("65536")), "{answer}");
    t.assert_unharmed(from, "Content-Length 10^12");
}

#[test]
fn content_length_u64_max_does_not_panic_the_workers() {
    let mut t = start(None);
    let from = Instant::now();
    for _ in 0..8 {
        let answer = exchange(
            t.http,
            b"POST /api/v1/control HTTP/1.1\r\nContent-Length: 18446744073709551615\r\n\r\n{}",
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(parse(&answer).0, 413, "{answer}");
    }
    t.assert_unharmed(from, "Content-Length u64::MAX x8");
}

#[test]
fn clients_that_announce_a_body_and_never_send_it_do_not_hold_the_server() {
    let mut t = start(None);
    let from = Instant::now();
    let slow: Vec<TcpStream> = (0..16)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", t.http)).unwrap();
            s.write_all(b"POST /api/v1/control HTTP/1.1\r\nContent-Length: 100\r\n\r\n{").unwrap();
            s
        })
        .collect();
    // While all 16 wait, the page and the inverter are still served.
    let mut worst = Duration::ZERO;
    for _ in 0..10 {
        let took = Instant::now();
        assert_eq!(healthz(t.http, Duration::from_secs(2)), Some(200));
        worst = worst.max(took.elapsed());
        std::thread::sleep(Duration::from_millis(300));
    }
    eprintln!("healthz under 16 slow clients: worst {worst:?}");
    // Each slow one is answered 408 once its body is late.
    for mut s in slow {
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        assert_eq!(parse(&out).0, 408, "{out}");
    }
    t.assert_unharmed(from, "16 slow bodies");
}

#[test]
fn a_200_mib_header_line_is_refused_and_memory_stays_flat() {
    let mut t = start(None);
    let from = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", t.http)).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nX-Long: ").unwrap();
    let chunk = vec![b'a'; 1 << 20];
    let mut sent = 0usize;
    for _ in 0..200 {
        if s.write_all(&chunk).is_err() {
            break; // the server stopped reading: what it should do
        }
        sent += chunk.len();
    }
    eprintln!("sent {} MiB of one header line before the server closed", sent >> 20);
    assert!(sent < 200 << 20, "the server read a 200 MiB header line to its end");
    t.assert_unharmed(from, "a 200 MiB header line");
    let mut s = TcpStream::connect(("127.0.0.1", t.http)).unwrap();
    let mut request = b"GET /healthz HTTP/1.1\r\nX-Long: ".to_vec();
    request.resize(20_000, b'a');
    let _ = s.write_all(&request);
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let (status, body) = parse(&out);
    assert_eq!(status, 431, "{out}");
    assert!(body["error"].is_string(), "{out}");
}

#[test]
fn running_out_of_descriptors_does_not_stop_the_accept_loop() {
    let mut t = start(Some(256));
    let from = Instant::now();
    // Far more idle connections than the process has descriptors.
    let idle: Vec<TcpStream> =
        (0..400).filter_map(|_| TcpStream::connect(("127.0.0.1", t.http)).ok()).collect();
    eprintln!("{} idle connections open", idle.len());
    let took = Instant::now();
    assert_eq!(healthz(t.http, Duration::from_secs(2)), Some(200), "while 400 idle connections are open");
    eprintln!("healthz with 400 idle connections: {:?}", took.elapsed());
    drop(idle);
    t.assert_unharmed(from, "400 idle connections under a 256-descriptor limit");
}

#[test]
fn odd_request_lines_get_json_errors() {
    let mut t = start(None);
    let from = Instant::now();
    for (request, status) in [
        (b"GET /\r\n\r\n".as_slice(), 400),
        (b"GET /\xc3\xa9t\xc3\xa9 HTTP/1.1\r\n\r\n", 400),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),
        (b"GET /no-such-page-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\n\r\n", 404),
        (b"GET /api/v1/status HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
    ] {
        let answer = exchange(t.http, request, Duration::from_secs(5)).unwrap();
        let (got, body) = parse(&answer);
        assert_eq!(got, status, "{}: {answer}", String::from_utf8_lossy(request));
        let error = body["error"].as_str().unwrap_or_else(|| panic!("not a JSON error: {answer}"));
        assert!(error.len() < 200, "{error}");
    }
    t.assert_unharmed(from, "odd request lines");
}

#[test]
fn sighup_does_not_kill_the_daemon() {
    let mut t = start(None);
    let from = Instant::now();
    for _ in 0..3 {
        let sent = Command::new("kill").args(["-HUP", &t.run.0.id().to_string()]).status().unwrap();
        assert!(sent.success());
        std::thread::sleep(Duration::from_millis(300));
    }
    t.assert_unharmed(from, "three SIGHUPs");
}

/// Every signal whose default would end the process: the ones that mean nothing to it are
/// ignored (the daemon goes on, unharmed); the resource limits' stop it cleanly, with its stop
/// event written, as SIGTERM does.
#[test]
fn signals_either_stop_cleanly_or_are_ignored() {
    let mut t = start(None);
    let from = Instant::now();
    for signal in ["USR1", "USR2", "ALRM", "VTALRM", "PROF", "IO", "PWR"] {
        let sent =
            Command::new("kill").args([&format!("-{signal}"), &t.run.0.id().to_string()]).status().unwrap();
        assert!(sent.success());
        std::thread::sleep(Duration::from_millis(200));
        assert!(t.run.0.try_wait().unwrap().is_none(), "SIG{signal} ended the daemon");
    }
    t.assert_unharmed(from, "seven signals that mean nothing to the daemon");
    let sent = Command::new("kill").args(["-XFSZ", &t.run.0.id().to_string()]).status().unwrap();
    assert!(sent.success());
    let stopped = Instant::now();
    while t.run.0.try_wait().unwrap().is_none() {
        assert!(stopped.elapsed() < Duration::from_secs(10), "SIGXFSZ did not stop the daemon");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(t.run.0.wait().unwrap().success(), "a clean stop");
    eprintln!("SIGXFSZ: stopped cleanly in {:?}", stopped.elapsed());
    let events = std::fs::read_to_string(t.dir.join("events.jsonl")).unwrap();
    assert!(events.lines().last().unwrap().contains("pace2pylon stopped"), "{events}");
}

#[test]
fn a_connect_churn_on_the_pylontech_port_does_not_starve_the_master() {
    let mut t = start(None);
    let pylon = t.master_port;
    let from = Instant::now();
    let mut connects = 0;
    while from.elapsed() < Duration::from_secs(10) {
        if let Ok(s) = TcpStream::connect(("127.0.0.1", pylon)) {
            connects += 1;
            drop(s);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let churn_ended = Instant::now();
    let before = t.master.answered();
    while t.master.answered() == before {
        assert!(
            churn_ended.elapsed() < Duration::from_secs(1),
            "the master was not answered within 1 s after the churn"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!(
        "{connects} connects in 10 s; the master was answered {:?} after the churn",
        churn_ended.elapsed()
    );
    t.assert_unharmed(from, "connect churn on the Pylontech port");
}

/// `pace2pylon ARGS` with its standard error discarded, killed when the test ends.
fn pace2pylon(args: &[&str], stdin: Stdio, stdout: Stdio) -> Guard {
    Guard(Command::new(BIN).args(args).stdin(stdin).stdout(stdout).stderr(Stdio::null()).spawn().unwrap())
}

/// CPU time (user + system) of a process so far, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn rss_kb_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn demo_at_end_of_input_stays_idle() {
    let demo = pace2pylon(&["demo", "--packs", "1", "--http", "127.0.0.1:0"], Stdio::null(), Stdio::null());
    std::thread::sleep(Duration::from_secs(2));
    let pid = demo.0.id();
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(3));
    let used = cpu_ticks(pid) - before;
    // 100 ticks a second: a spinning reader would use about 300 in 3 s.
    eprintln!("demo < /dev/null used {used} ticks in 3 s");
    assert!(used < 100, "demo < /dev/null used {used} clock ticks in 3 s");
}

#[test]
fn demo_piped_into_head_exits_quietly() {
    let err = std::env::temp_dir().join(format!("p2p-demo-head-{}.err", std::process::id()));
    let mut sh = Guard(
        Command::new("sh")
            .arg("-c")
            .arg(format!("'{BIN}' demo --packs 1 --http 127.0.0.1:0 2>'{}' | head -1", err.display()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let started = Instant::now();
    let status = loop {
        if let Some(status) = sh.0.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "demo | head -1 did not end");
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut first = String::new();
    sh.0.stdout.take().unwrap().read_to_string(&mut first).unwrap();
    assert!(status.success());
    assert!(first.starts_with("pace2pylon demo"), "{first}");
    let stderr = std::fs::read_to_string(&err).unwrap_or_default();
    assert!(!stderr.contains("panicked") && !stderr.contains("Broken pipe"), "{stderr}");
}

#[test]
fn sim_skips_a_line_too_long_and_memory_stays_flat() {
    let mut sim = pace2pylon(&["sim", "--packs", "1", "--base-port", "0"], Stdio::piped(), Stdio::piped());
    let mut stdin = sim.0.stdin.take().unwrap();
    let chunk = vec![b'a'; 1 << 20];
    for _ in 0..100 {
        stdin.write_all(&chunk).unwrap();
    }
    let rss = rss_kb_of(sim.0.id());
    stdin.write_all(b"\nsilence pack 1\n").unwrap();
    drop(stdin);
    let mut out = BufReader::new(sim.0.stdout.take().unwrap());
    let mut lines = Vec::new();
    for _ in 0..2 {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut out, &mut line).unwrap();
        lines.push(line.trim().to_owned());
    }
    assert!(lines[0].starts_with("error: line too long"), "{lines:?}");
    assert_eq!(lines[1], "ok", "{lines:?}");
    eprintln!("sim RSS after a 100 MiB line: {rss} kB");
    assert!(rss > 0 && rss < RSS_LIMIT_KB, "sim RSS {rss} kB after a 100 MiB line");
}

#[test]
fn demo_probes_do_not_take_the_daemons_lines() {
    let mut demo =
        pace2pylon(&["demo", "--packs", "1", "--http", "127.0.0.1:0"], Stdio::piped(), Stdio::piped());
    let mut out = BufReader::new(demo.0.stdout.take().unwrap());
    let (mut probe, mut web) = (None, None);
    while probe.is_none() || web.is_none() {
        let mut line = String::new();
        assert!(std::io::BufRead::read_line(&mut out, &mut line).unwrap() > 0, "the demo ended");
        if let Some(rest) = line.split("pace-probe --link tcp://").nth(1) {
            probe = rest.split_whitespace().next().map(str::to_owned);
        }
        if let Some(rest) = line.trim().strip_prefix("web UI: http://") {
            web = rest.split('/').next().map(str::to_owned);
        }
    }
    let web_port: u16 = web.unwrap().rsplit(':').next().unwrap().parse().unwrap();
    let mut p = TcpStream::connect(probe.unwrap()).unwrap();
    p.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(8) {
        p.write_all(b"~25004642E002FFFD06\r").unwrap(); // 0x42 at ADR 0
        let mut reply = [0u8; 64];
        assert!(p.read(&mut reply).unwrap() > 0, "the probe's line did not answer");
        std::thread::sleep(Duration::from_millis(200));
    }
    let health = exchange(web_port, b"GET /healthz HTTP/1.1\r\n\r\n", Duration::from_secs(2)).unwrap();
    let (status, body) = parse(&health);
    assert_eq!(status, 200, "{health}");
    assert_eq!(body["data_stale"], false, "the daemon lost its pack line to the probe: {health}");
}

#[test]
fn a_toml_error_on_a_secret_line_never_prints_the_value() {
    let dir = std::env::temp_dir().join(format!("p2p-secret-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text, secret) in [
        ("unterminated.toml", "[http]\ntoken = \"hunter2-hunter2\n", "hunter2"),
        ("wrong-type.toml", "[http]\ntoken = 98765432\n", "98765432"),
        ("trailing.toml", "[mqtt]\npassword = \"pa55word\" x\n", "pa55word"),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        for args in
            [vec!["check-config", path.to_str().unwrap()], vec!["run", "--config", path.to_str().unwrap()]]
        {
            let out = Command::new(BIN).args(&args).output().unwrap();
            let all =
                format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            assert!(!out.status.success(), "{args:?}: {all}");
            assert!(!all.contains(secret), "{args:?} printed the secret: {all}");
            assert!(all.contains("line 2"), "{args:?}: {all}");
        }
    }
}

#[test]
fn an_invalid_utf8_state_file_names_reset_state_once() {
    let dir = std::env::temp_dir().join(format!("p2p-utf8-state-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("state.json"), b"\xff\xfe{}").unwrap();
    let config = dir.join("run.toml");
    std::fs::write(
        &config,
        format!(
            "[pylon]\nlink = \"tcp://127.0.0.1:1\"\n\n[[pack]]\nlink = \"tcp://127.0.0.1:2\"\n\n[state]\nstate_file = \"{0}/state.json\"\nevent_log = \"{0}/events.jsonl\"\n",
            dir.display()
        ),
    )
    .unwrap();
    let out = Command::new(BIN).args(["run", "--config", config.to_str().unwrap()]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert_eq!(err.matches("--reset-state").count(), 1, "{err}");
    assert!(err.contains("not UTF-8"), "{err}");
}

#[test]
fn a_broker_that_never_sends_connack_is_logged_as_such_within_10_s() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let _held = std::thread::spawn(move || {
        let held: Vec<TcpStream> = silent.incoming().take(4).filter_map(Result::ok).collect();
        std::thread::sleep(Duration::from_secs(30));
        drop(held);
    });
    let dir = std::env::temp_dir().join(format!("p2p-connack-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("run.toml");
    std::fs::write(
        &config,
        format!(
            "[pylon]\nlink = \"tcp://127.0.0.1:1\"\n\n[[pack]]\nlink = \"tcp://127.0.0.1:2\"\n\n[state]\nstate_file = \"{0}/state.json\"\nevent_log = \"{0}/events.jsonl\"\n\n[mqtt]\nurl = \"mqtt://127.0.0.1:{port}\"\n",
            dir.display()
        ),
    )
    .unwrap();
    let mut run = Guard(
        Command::new(BIN)
            .args(["run", "--config", config.to_str().unwrap()])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = run.0.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(BufReader::new(stderr)).map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let started = Instant::now();
    loop {
        let left = Duration::from_secs(10).saturating_sub(started.elapsed());
        let line = rx.recv_timeout(left).unwrap_or_else(|_| panic!("no CONNACK message within 10 s"));
        if line.contains("CONNACK") {
            eprintln!("after {:?}: {line}", started.elapsed());
            assert!(line.contains(&format!("127.0.0.1:{port}")), "{line}");
            break;
        }
    }
}

#[test]
fn the_status_stream_sends_the_status_as_server_sent_events() {
    let t = start(None);
    let mut s = TcpStream::connect(("127.0.0.1", t.http)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /api/v1/stream HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n").unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    let started = Instant::now();
    // Two status events: the first at once, the next within a second (the ages change).
    while String::from_utf8_lossy(&got).matches("event: status\n").count() < 2 {
        assert!(started.elapsed() < Duration::from_secs(5), "{}", String::from_utf8_lossy(&got));
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "the stream ended");
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.to_ascii_lowercase().contains("content-type: text/event-stream"), "{text}");
    let data = text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
    let status: serde_json::Value = serde_json::from_str(data).unwrap();
    assert!(status["charge_enabled"].is_boolean(), "{status}");
    assert!(started.elapsed() >= Duration::from_millis(400), "two events within {:?}", started.elapsed());
}

#[test]
fn run_tells_systemd_it_is_ready_and_feeds_the_watchdog() {
    use std::os::unix::net::UnixDatagram;
    let dir = std::env::temp_dir().join(format!("p2p-notify-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("notify.sock");
    let manager = UnixDatagram::bind(&socket).unwrap();
    manager.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let config = dir.join("run.toml");
    std::fs::write(
        &config,
        format!(
            "[pylon]\nlink = \"tcp://127.0.0.1:1\"\n\n[[pack]]\nlink = \"tcp://127.0.0.1:2\"\n\n[state]\nstate_file = \"{0}/state.json\"\nevent_log = \"{0}/events.jsonl\"\n",
            dir.display()
        ),
    )
    .unwrap();
    // systemd gives the watchdog to the main process by pid: the shell's, which exec keeps.
    let _run = Guard(
        Command::new("sh")
            .arg("-c")
            .arg(format!("WATCHDOG_PID=$$ exec '{BIN}' run --config '{}'", config.display()))
            .env("NOTIFY_SOCKET", &socket)
            .env("WATCHDOG_USEC", "1000000")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut seen = Vec::new();
    let mut buf = [0u8; 512];
    let started = Instant::now();
    while seen.iter().filter(|m: &&String| m.contains("WATCHDOG=1")).count() < 3 {
        let n = manager.recv(&mut buf).unwrap_or_else(|e| panic!("{e}; got {seen:?}"));
        seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        assert!(started.elapsed() < Duration::from_secs(10), "{seen:?}");
    }
    assert!(seen.iter().any(|m| m.contains("READY=1")), "{seen:?}");
    // Fed at half of WatchdogSec: three pings take about a second, not a burst.
    assert!(started.elapsed() >= Duration::from_millis(800), "{seen:?} in {:?}", started.elapsed());
}

/// The unit in dist/ passes `systemd-analyze verify` (with its binary path pointed at this build),
/// where that command exists.
#[test]
fn the_systemd_unit_verifies() {
    let Some(analyze) = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
    else {
        eprintln!("systemd-analyze is not installed: nothing to verify the unit with");
        return;
    };
    let unit = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../dist/pace2pylon.service"))
        .unwrap();
    for key in ["Type=notify", "WatchdogSec=", "LimitNOFILE=", "MemoryMax="] {
        assert!(unit.contains(key), "the unit lacks {key}");
    }
    let dir = std::env::temp_dir().join(format!("p2p-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("pace2pylon.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/pace2pylon", BIN)).unwrap();
    let out = Command::new(analyze).arg("verify").arg(&path).output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "systemd-analyze verify: {said}");
}

/// 48 h of one-minute samples of a 64-pack stack ending now, each with 16 reasons, and one
/// crafted line carrying 5 MB of reasons.
fn big_history() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let start = now / 60 * 60 - 2880 * 60;
    let packs: Vec<serde_json::Value> =
        (0..64).map(|k| serde_json::json!({"current_ma": -1234 - k, "soc_pct": 57})).collect();
    let reasons: Vec<String> = (1..=16).map(|k| format!("pack {k} has not answered recently")).collect();
    let mut text = String::new();
    for m in 0..2880 {
        let time = jiff::Timestamp::from_second(start + m * 60).unwrap().to_string();
        let sample = serde_json::json!({
            "time": time, "soc_pct": 57, "voltage_mv": 53_100, "current_ma": -80_000, "power_w": -4248,
            "cell_min_mv": 3301, "cell_max_mv": 3342, "charge_enabled": true, "discharge_enabled": true,
            "charge_limit_ma": 100_000, "discharge_limit_ma": 100_000, "reasons": reasons, "packs": packs,
        });
        text += &sample.to_string();
        text.push('\n');
        if m == 1000 {
            let mut crafted = sample.clone();
            crafted["reasons"] = serde_json::json!(["r".repeat(5 << 20)]);
            text += &crafted.to_string();
            text.push('\n');
        }
    }
    text
}

/// 60 clients ask for 48 h of a 64-pack history and never read: the bodies are one shared
/// encoding sent a frame at a time, at most four at once (the others are told 503), so memory
/// stays under the bound; a client that reads gets every sample, and the 5 MB line is not one.
#[test]
fn history_clients_that_do_not_read_keep_memory_bounded() {
    let mut t = start_with(None, Some(&big_history()));
    let from = Instant::now();
    let before = t.rss_kb();
    let request = b"GET /api/v1/history?hours=48 HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut idle = Vec::new();
    for _ in 0..60 {
        let mut s = TcpStream::connect(("127.0.0.1", t.http)).unwrap();
        s.write_all(request).unwrap();
        idle.push(s);
    }
    std::thread::sleep(Duration::from_secs(3));
    let during = t.rss_kb();
    eprintln!("history attack: RSS {before} kB before, {during} kB with 60 clients not reading");
    t.assert_unharmed(from, "60 history clients that do not read");
    // The ones past the fourth were told busy at once.
    let mut busy = 0;
    for s in &mut idle[4..] {
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut head = [0u8; 12];
        if s.read_exact(&mut head).is_ok() && &head[9..12] == b"503" {
            busy += 1;
        }
    }
    assert!(busy >= 50, "{busy} of 56 were told 503");
    drop(idle);
    std::thread::sleep(Duration::from_millis(500));
    let answer = exchange(t.http, request, Duration::from_secs(10)).unwrap();
    let (status, body) = parse(&answer);
    assert_eq!(status, 200, "{}", &answer[..answer.len().min(300)]);
    let samples = body["samples"].as_array().unwrap();
    assert!(samples.len() >= 2870, "{}", samples.len());
    assert!(
        samples.iter().all(|s| s["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r.as_str().unwrap().len() < 300))
    );
    assert_eq!(samples[0]["packs"].as_array().unwrap().len(), 64);
}

/// A TCP peer that floods its line: `scan` ends in bounded time instead of reading forever, and
/// the daemon polling it stops within a second of SIGTERM.
#[test]
fn a_flooding_peer_neither_holds_scan_nor_the_daemons_stop() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let flooder = std::thread::spawn(move || {
        listener.set_nonblocking(true).unwrap();
        let mut peers: Vec<TcpStream> = Vec::new();
        let junk = [0x55u8; 8192];
        while !s.load(Ordering::Relaxed) {
            if let Ok((p, _)) = listener.accept() {
                p.set_nonblocking(true).unwrap();
                peers.push(p);
            }
            peers.retain_mut(
                |p| !matches!(p.write(&junk), Err(e) if e.kind() != std::io::ErrorKind::WouldBlock),
            );
            std::thread::sleep(Duration::from_micros(200));
        }
    });
    let started = Instant::now();
    let out = Command::new(BIN)
        .args(["scan", &format!("tcp://127.0.0.1:{port}"), "--timeout", "0.3", "--listen", "1"])
        .output()
        .unwrap();
    let scan = started.elapsed();
    eprintln!("scan against a flooding peer: {scan:?}");
    assert!(scan < Duration::from_secs(30), "scan took {scan:?}");
    assert!(!String::from_utf8_lossy(&out.stdout).is_empty() || !out.stderr.is_empty());

    let dir = std::env::temp_dir().join(format!("p2p-flood-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = format!(
        "[pylon]\nlink = \"tcp-listen://127.0.0.1:{}\"\n\n[[pack]]\nlink = \"tcp://127.0.0.1:{port}\"\n\n\
         [state]\nstate_file = \"{1}/state.json\"\nevent_log = \"{1}/events.jsonl\"\n\n[http]\nenabled = false\n",
        free_port(),
        dir.display()
    );
    std::fs::write(dir.join("run.toml"), config).unwrap();
    let mut run = pace2pylon(
        &["run", "--config", dir.join("run.toml").to_str().unwrap()],
        Stdio::null(),
        Stdio::null(),
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(run.0.try_wait().unwrap().is_none(), "the daemon runs against the flood");
    let ticks = cpu_ticks(run.0.id());
    std::thread::sleep(Duration::from_secs(2));
    let busy = cpu_ticks(run.0.id()) - ticks;
    eprintln!("daemon polling a flooding peer: {busy} CPU ticks in 2 s");
    let sent = Instant::now();
    let _ = Command::new("kill").args(["-TERM", &run.0.id().to_string()]).status();
    while run.0.try_wait().unwrap().is_none() {
        assert!(sent.elapsed() < Duration::from_secs(5), "SIGTERM under a flood took over 5 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    let stopped = sent.elapsed();
    eprintln!("stopped {stopped:?} after SIGTERM under a flood");
    assert!(stopped < Duration::from_millis(1500), "{stopped:?}");
    stop.store(true, Ordering::Relaxed);
    flooder.join().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
