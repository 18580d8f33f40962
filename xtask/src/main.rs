//! `cargo xtask test | bench | fuzz`: the project's one entry point for checks, measurements and
//! fuzzing. `test` is what CI runs (`.ci/run`) and what the README tells users to run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;
use std::{env, fs};

use anyhow::{Context, Result, bail};

const USAGE: &str = "usage: cargo xtask <command>

commands:
  test            install what the tests need, then fmt, clippy, every test (what CI runs)
  bench           codec benches, probe throughput and the daemon's figures (latency, poll
                  cycle, time-to-safe, memory and CPU of `run` with 12 packs), printed as tables
  footprint       memory and CPU of `run` with 12 simulated packs at steady state, bare and
                  with the web page, Prometheus and MQTT (part of bench)
  soak DAYS [N]   `pace2pylon simulate` for N seeds (default 4 per core) of DAYS plant days with
                  the default faults, 1 to 16 packs, on all cores; a table, and the replay
                  command of every seed that violated an invariant
  fuzz [SECONDS]  run every fuzz target for SECONDS each (default 30; needs nightly and cargo-fuzz)
  screenshots     run the browser test and keep its screenshots of the web UI in docs/screenshots/";

fn main() -> Result<()> {
    let args: Vec<String> = env::args().skip(1).collect();
    let root = root()?;
    env::set_current_dir(&root)?;
    match args.first().map(String::as_str) {
        Some("test") => test(),
        Some("bench") => bench(&root),
        Some("screenshots") => screenshots(&root),
        Some("footprint") => {
            let rows = [footprint(&root, false)?, footprint(&root, true)?];
            println!("\n| what | samples | result | target |\n|---|---:|---|---|\n{}", rows.join("\n"));
            Ok(())
        }
        Some("soak") => soak(
            &root,
            args.get(1)
                .context("soak DAYS [N]: how many plant days?")?
                .parse()
                .context("DAYS must be a number")?,
            args.get(2).map(|s| s.parse()).transpose().context("N must be a number")?,
        ),
        Some("fuzz") => fuzz(args.get(1).map(|s| s.parse()).transpose().context("SECONDS must be a number")?),
        _ => {
            eprintln!("{USAGE}");
            bail!("unknown or missing command")
        }
    }
}

fn root() -> Result<PathBuf> {
    let manifest = env::var("CARGO_MANIFEST_DIR").context("run through cargo: cargo xtask ...")?;
    Ok(Path::new(&manifest).parent().context("xtask lives in the workspace")?.to_path_buf())
}

/// Runs a command, echoing it, and fails if it fails.
fn run(program: &str, args: &[&str]) -> Result<()> {
    eprintln!("\n$ {program} {}", args.join(" "));
    let status =
        Command::new(program).args(args).status().with_context(|| format!("could not start {program}"))?;
    if !status.success() {
        bail!("`{program} {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

/// The independent implementations the interop tests run against, pinned: pymodbus (Modbus),
/// python-can and cantools (CAN over slcan, and the DBC file), python-pylontech (a Pylontech
/// RS485 master), jinja2 (Home Assistant's template engine, to render the MQTT discovery's value
/// templates as Home Assistant does).
const PYTHON_PEERS: [&str; 5] =
    ["pymodbus==3.16.1", "python-can==4.6.1", "cantools==45.1.0", "python-pylontech==0.3.3", "jinja2==3.1.6"];
/// What the venv must import for the peers to be there.
const PYTHON_IMPORTS: &str = "import pymodbus, can, cantools, pylontech.pylontech, jinja2";

/// Makes `target/pyvenv` with the Python peers, installing Debian's venv support if Python lacks
/// it. Returns the venv's python.
fn python_with_peers(root: &Path) -> Result<PathBuf> {
    let venv = root.join("target/pyvenv");
    let python = venv.join("bin/python");
    let has = |py: &Path| {
        Command::new(py)
            .args(["-c", PYTHON_IMPORTS])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if has(&python) {
        return Ok(python);
    }
    let venv_str = venv.to_string_lossy().into_owned();
    if run("python3", &["-m", "venv", &venv_str]).is_err() {
        eprintln!("python3 cannot make a venv; installing Debian's python3-venv");
        run("apt-get", &["update", "-q"])?;
        run("apt-get", &["install", "-y", "-q", "python3-venv", "python3-pip"])?;
        run("python3", &["-m", "venv", &venv_str])?;
    }
    let mut args = vec!["install", "-q", "--disable-pip-version-check"];
    args.extend(PYTHON_PEERS);
    run(&venv.join("bin/pip").to_string_lossy(), &args)?;
    if !has(&python) {
        bail!("{} did not install into {venv_str}", PYTHON_PEERS.join(" "));
    }
    Ok(python)
}

/// The programs the broker and browser tests drive, and the Debian packages that have them.
const SYSTEM_TOOLS: [(&str, &str); 5] = [
    ("chromium", "chromium"),
    ("mosquitto", "mosquitto"),
    ("mosquitto_sub", "mosquitto-clients"),
    ("mosquitto_pub", "mosquitto-clients"),
    ("socat", "socat"),
];

fn on_path(program: &str) -> bool {
    let path = env::var("PATH").unwrap_or_default();
    path.split(':').chain(["/usr/sbin", "/sbin"]).any(|dir| Path::new(dir).join(program).is_file())
}

/// Installs chromium, mosquitto and socat with apt when they are missing (as root; otherwise says what
/// to install).
fn system_tools() -> Result<()> {
    let mut missing: Vec<&str> =
        SYSTEM_TOOLS.iter().filter(|(program, _)| !on_path(program)).map(|(_, package)| *package).collect();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if !root {
        bail!(
            "the tests need {}: install them (apt-get install {}) or run as root",
            missing.join(", "),
            missing.join(" ")
        );
    }
    eprintln!("installing {} for the broker and browser tests", missing.join(", "));
    run("apt-get", &["update", "-q"])?;
    let mut args = vec!["install", "-y", "-q"];
    args.extend(&missing);
    let status = Command::new("apt-get").args(&args).env("DEBIAN_FRONTEND", "noninteractive").status()?;
    if !status.success() {
        bail!("apt-get {} failed ({status})", args.join(" "));
    }
    Ok(())
}

fn screenshots(root: &Path) -> Result<()> {
    system_tools()?;
    let dir = root.join("docs/screenshots");
    fs::create_dir_all(&dir)?;
    eprintln!("\n$ PACE2PYLON_SCREENSHOTS={} cargo test -p pace2pylon --test browser", dir.display());
    let status = Command::new("cargo")
        .args(["test", "-p", "pace2pylon", "--test", "browser"])
        .env("PACE2PYLON_SCREENSHOTS", &dir)
        .status()?;
    if !status.success() {
        bail!("the browser test failed ({status})");
    }
    eprintln!("screenshots in {}", dir.display());
    Ok(())
}

fn test() -> Result<()> {
    let started = Instant::now();
    let root = env::current_dir()?;
    system_tools()?;
    let python = python_with_peers(&root)?;

    run("cargo", &["fmt", "--all", "--", "--check"])?;
    run("cargo", &["clippy", "--workspace", "--all-targets", "--all-features", "--", "-D", "warnings"])?;
    // The protocol crates must also build without their optional serde feature.
    run("cargo", &["check", "-p", "units", "-p", "ascii-envelope", "-p", "pace-proto", "-p", "pylon-proto"])?;
    eprintln!(
        "\n$ PACE2PYLON_PYTHON={} cargo test --workspace --all-features --no-fail-fast",
        python.display()
    );
    let status = Command::new("cargo")
        .args(["test", "--workspace", "--all-features", "--no-fail-fast"])
        .env("PACE2PYLON_PYTHON", &python)
        .status()?;
    if !status.success() {
        bail!("tests failed ({status})");
    }
    run("cargo", &["test", "--workspace", "--all-features", "--doc"])?;
    eprintln!("\nall checks passed in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// One row of the benchmark table.
struct Row {
    name: String,
    ns_per_frame: f64,
}

fn bench(root: &Path) -> Result<()> {
    run("cargo", &["bench", "-p", "pace-proto", "-p", "pylon-proto", "--bench", "codec", "--", "--noplot"])?;
    let mut rows = Vec::new();
    for (group, name) in [
        ("pace", "decode_0x42_16_cells"),
        ("pace", "envelope_only_0x42_16_cells"),
        ("pace", "encode_0x42_16_cells"),
        ("pylon", "decode_0x42_4_modules"),
        ("pylon", "encode_0x61"),
    ] {
        let path = root.join("target/criterion").join(group).join(name).join("new/estimates.json");
        let text = fs::read_to_string(&path)
            .with_context(|| format!("no criterion result at {}", path.display()))?;
        let v: serde_json::Value = serde_json::from_str(&text)?;
        let ns = v["mean"]["point_estimate"].as_f64().context("estimates.json has no mean")?;
        rows.push(Row { name: format!("{group}/{name}"), ns_per_frame: ns });
    }
    rows.push(probe_throughput(root)?);
    println!("\n| benchmark | ns/frame | frames/s |\n|---|---:|---:|");
    for r in &rows {
        println!("| {} | {:.0} | {:.0} |", r.name, r.ns_per_frame, 1e9 / r.ns_per_frame);
    }
    daemon_table(root)
}

/// The daemon's figures: its own bench harness (one JSON object a line) and the footprint of a
/// real `pace2pylon run` process against `pace2pylon sim`.
fn daemon_table(root: &Path) -> Result<()> {
    eprintln!("\n$ cargo bench -p daemon --bench daemon");
    let out = Command::new("cargo")
        .args(["bench", "-p", "daemon", "--bench", "daemon"])
        .stderr(Stdio::inherit())
        .output()
        .context("could not start cargo")?;
    if !out.status.success() {
        bail!("the daemon bench failed ({})", out.status);
    }
    let mut lines = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.starts_with('{')) {
        let v: serde_json::Value = serde_json::from_str(line).context("the daemon bench printed bad JSON")?;
        let f = |k: &str| v[k].as_f64().map_or("–".to_string(), |x| format!("{x:.2}"));
        let measured = match v["wire_ms"].as_f64() {
            Some(wire) => format!(
                "p50 {} ms, max {} ms; wire {wire:.2} ms, ratio {}",
                f("p50_ms"),
                f("max_ms"),
                f("ratio")
            ),
            None if v["p99_ms"].is_number() => {
                format!("p50 {} ms, p99 {} ms, max {} ms", f("p50_ms"), f("p99_ms"), f("max_ms"))
            }
            None => format!("p50 {} ms, max {} ms", f("p50_ms"), f("max_ms")),
        };
        lines.push(format!(
            "| {} | {} | {measured} | {} |",
            v["bench"].as_str().unwrap_or("?"),
            v["samples"],
            v["goal"].as_str().unwrap_or("")
        ));
    }
    let footprint = format!("{}\n{}", footprint(root, false)?, footprint(root, true)?);
    let simulated = simulate_speed(root)?;
    println!("\n| daemon benchmark | samples | measured | goal |\n|---|---:|---|---|");
    for l in &lines {
        println!("{l}");
    }
    println!("{footprint}");
    println!("{simulated}");
    Ok(())
}

/// `pace2pylon simulate --days 30 --packs 12 --seed 7 --faults default` (release, one thread):
/// wall time and plant seconds per wall second; a table row.
fn simulate_speed(root: &Path) -> Result<String> {
    let exe = root.join("target/release/pace2pylon");
    let days = 30.0;
    let started = Instant::now();
    let out = Command::new(&exe)
        .args(["simulate", "--days", "30", "--packs", "12", "--seed", "7", "--faults", "default", "--json"])
        .output()
        .context("could not start pace2pylon simulate")?;
    let took = started.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!("simulate failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let card: serde_json::Value = serde_json::from_slice(&out.stdout).context("simulate printed bad JSON")?;
    Ok(format!(
        "| `simulate`: 30 plant days, 12 packs, default faults (release, one thread) | 1 | {took:.1} s, {:.0} plant s per wall s, {} violations | ≤ 130 s (≥ 20 000×) |",
        days * 86400.0 / took,
        card["safety_violations"]["total"]
    ))
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// One `GET` on its own connection; the body.
fn http_get(port: u16, path: &str) -> Result<Vec<u8>> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    if !out.starts_with(b"HTTP/1.1 200") {
        bail!("GET {path}: {}", String::from_utf8_lossy(&out[..out.len().min(80)]));
    }
    Ok(out)
}

/// Latency of `n` sequential GETs of `path`: a table row.
fn http_latency(port: u16, path: &str, n: usize) -> Result<String> {
    let mut ms = Vec::with_capacity(n);
    let mut bytes = 0;
    for _ in 0..n {
        let t = Instant::now();
        bytes = http_get(port, path)?.len();
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    Ok(format!(
        "| `GET {path}` over HTTP, 12 packs ({bytes} bytes) | {n} | p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms | — |",
        at(0.5),
        at(0.99),
        at(1.0)
    ))
}

/// Resident memory and CPU of `pace2pylon run` with 12 simulated packs at steady state, with the
/// web page open (status every 2 s), Prometheus scraping (every 15 s) and MQTT publishing to a
/// local mosquitto when there is one: 10 s to settle, then 30 s measured from /proc. Then the
/// latency of the status and metrics endpoints.
fn footprint(root: &Path, extras: bool) -> Result<String> {
    use std::io::{BufRead, BufReader};
    run("cargo", &["build", "--release", "-p", "pace2pylon"])?;
    let exe = root.join("target/release/pace2pylon");
    let mut sim = Command::new(&exe)
        .args(["sim", "--packs", "12", "--base-port", "0", "--print-config"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("could not start pace2pylon sim")?;
    let mut config = String::new();
    let mut reader = BufReader::new(sim.stdout.take().context("sim stdout")?);
    let mut in_inverter = false;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            bail!("pace2pylon sim ended before printing its configuration");
        }
        in_inverter |= line.starts_with("[inverter]");
        config += &line;
        if in_inverter && line.starts_with("slave") {
            break;
        }
    }
    let dir = root.join("target/bench-run");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;
    config += &format!(
        "\n[state]\nstate_file = \"{}\"\nevent_log = \"{}\"\n",
        dir.join("state.json").display(),
        dir.join("events.jsonl").display()
    );
    let http_port = free_port()?;
    config += &format!("\n[http]\nlisten = \"127.0.0.1:{http_port}\"\n");
    let broker = if !extras {
        None
    } else if on_path("mosquitto") {
        let port = free_port()?;
        let child = Command::new("mosquitto")
            .args(["-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("could not start mosquitto")?;
        config += &format!("\n[mqtt]\nurl = \"mqtt://127.0.0.1:{port}\"\n");
        Some(child)
    } else {
        eprintln!("no mosquitto: the footprint is measured without MQTT");
        None
    };
    let with_mqtt = broker.is_some();
    let path = dir.join("run.toml");
    fs::write(&path, config)?;
    let mut daemon = Command::new(&exe)
        .args(["run", "--config"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("could not start pace2pylon run")?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let viewer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut k = 0u64;
            while extras && !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = http_get(http_port, "/api/v1/status");
                if k % 15 == 0 {
                    let _ = http_get(http_port, "/metrics");
                }
                k += 2;
                std::thread::sleep(std::time::Duration::from_secs(2));
            }
        })
    };
    let measured = measure_process(daemon.id());
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = viewer.join();
    let latency = measured
        .as_ref()
        .ok()
        .map(|_| [http_latency(http_port, "/api/v1/status", 500), http_latency(http_port, "/metrics", 500)]);
    let _ = daemon.kill();
    let _ = daemon.wait();
    let _ = sim.kill();
    let _ = sim.wait();
    if let Some(mut b) = broker {
        let _ = b.kill();
        let _ = b.wait();
    }
    let (rss_kb, cpu) = measured?;
    if !extras {
        return Ok(format!(
            "| `pace2pylon run`, 12 packs, steady state, nobody looking | 30 s | max RSS {:.1} MB, CPU {:.2} % of one core | ≤ 0.3 % |",
            rss_kb as f64 / 1024.0,
            cpu * 100.0
        ));
    }
    let mut rows = vec![format!(
        "| `pace2pylon run`, 12 packs, steady state, web page open, Prometheus scraping{} | 30 s | max RSS {:.1} MB, CPU {:.2} % of one core | < 20 MB, < 2 % |",
        if with_mqtt { ", MQTT publishing" } else { "" },
        rss_kb as f64 / 1024.0,
        cpu * 100.0
    )];
    for row in latency.into_iter().flatten() {
        rows.push(row?);
    }
    Ok(rows.join("\n"))
}

/// Max VmRSS (kB) over 30 s and the CPU share (utime + stime) in that window.
fn measure_process(pid: u32) -> Result<(u64, f64)> {
    let ticks = |pid: u32| -> Result<u64> {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).context("the daemon exited")?;
        let after = stat.rsplit_once(')').context("odd /proc stat")?.1;
        let fields: Vec<&str> = after.split_whitespace().collect();
        // After the command name: state is field 3, utime 14 and stime 15 (1-based in proc(5)).
        Ok(fields[11].parse::<u64>()? + fields[12].parse::<u64>()?)
    };
    let rss = |pid: u32| -> Result<u64> {
        let status = fs::read_to_string(format!("/proc/{pid}/status")).context("the daemon exited")?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).context("no VmRSS")?;
        Ok(line.split_whitespace().nth(1).context("odd VmRSS")?.parse()?)
    };
    std::thread::sleep(std::time::Duration::from_secs(10));
    let (t0, c0) = (Instant::now(), ticks(pid)?);
    let mut max_rss = rss(pid)?;
    for _ in 0..30 {
        std::thread::sleep(std::time::Duration::from_secs(1));
        max_rss = max_rss.max(rss(pid)?);
    }
    let cpu_s = (ticks(pid)? - c0) as f64 / 100.0; // USER_HZ is 100 on Linux
    Ok((max_rss, cpu_s / t0.elapsed().as_secs_f64()))
}

/// `pylon-probe decode --json --cmd 42 -` over a million 3-module replies (capture Y05).
fn probe_throughput(root: &Path) -> Result<Row> {
    run("cargo", &["build", "--release", "-p", "pylon-probe"])?;
    let frame = fs::read(root.join("fixtures/pylon/python-pylontech/002-analog-reply-3-modules.txt"))?;
    let frame = frame.strip_suffix(b"\r").unwrap_or(&frame);
    const N: usize = 1_000_000;
    let mut input = Vec::with_capacity((frame.len() + 1) * N);
    for _ in 0..N {
        input.extend_from_slice(frame);
        input.push(b'\n');
    }
    let path = root.join("target/bench-y05-1m.txt");
    fs::write(&path, &input)?;
    let started = Instant::now();
    let status = Command::new(root.join("target/release/pylon-probe"))
        .args(["decode", "--json", "--cmd", "42", "-"])
        .stdin(fs::File::open(&path)?)
        .stdout(Stdio::null())
        .status()?;
    let elapsed = started.elapsed();
    if !status.success() {
        bail!("pylon-probe failed on the benchmark input ({status})");
    }
    Ok(Row {
        name: "pylon-probe decode --json - (3-module 0x42, 1M lines)".into(),
        ns_per_frame: elapsed.as_nanos() as f64 / N as f64,
    })
}

fn fuzz(seconds: Option<u64>) -> Result<()> {
    let seconds = seconds.unwrap_or(30).to_string();
    let targets = fs::read_dir("fuzz/fuzz_targets")
        .context("fuzz/fuzz_targets is missing")?
        .filter_map(|e| e.ok()?.path().file_stem()?.to_str().map(String::from))
        .collect::<Vec<_>>();
    for target in targets {
        let corpus = format!("fuzz/corpus/{target}");
        fs::create_dir_all(&corpus)?;
        seed_corpus(Path::new(&corpus))?;
        run(
            "cargo",
            &[
                "+nightly",
                "fuzz",
                "run",
                "--fuzz-dir",
                "fuzz",
                &target,
                &corpus,
                "--",
                &format!("-max_total_time={seconds}"),
            ],
        )?;
    }
    Ok(())
}

/// Copies every fixture into a corpus directory.
fn seed_corpus(corpus: &Path) -> Result<()> {
    let mut stack = vec![PathBuf::from("fixtures")];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "txt") {
                let name = path.to_string_lossy().replace('/', "_");
                fs::copy(&path, corpus.join(name))?;
            }
        }
    }
    Ok(())
}

/// `cargo xtask soak DAYS [N]`: N seeds of `pace2pylon simulate` (release) on all cores.
fn soak(root: &Path, days: f64, seeds: Option<u64>) -> Result<()> {
    run("cargo", &["build", "--release", "-p", "pace2pylon"])?;
    let exe = root.join("target/release/pace2pylon");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let seeds = seeds.unwrap_or(4 * cores as u64);
    let next = std::sync::atomic::AtomicU64::new(1);
    let rows = std::sync::Mutex::new(Vec::new());
    let started = Instant::now();
    eprintln!("soak: {seeds} seeds of {days} plant days with the default faults on {cores} cores");
    std::thread::scope(|scope| {
        for _ in 0..cores {
            scope.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if seed > seeds {
                        return;
                    }
                    // 16 seeds in a row take every pack count from 1 to 16 (7 and 16 are coprime).
                    let packs = 1 + (seed * 7) % 16;
                    let t = Instant::now();
                    let out = Command::new(&exe)
                        .args(["simulate", "--json", "--faults", "default"])
                        .args([
                            "--days",
                            &days.to_string(),
                            "--seed",
                            &seed.to_string(),
                            "--packs",
                            &packs.to_string(),
                        ])
                        .output();
                    let took = t.elapsed().as_secs_f64();
                    let row = out
                        .map_err(anyhow::Error::from)
                        .and_then(|o| Ok(serde_json::from_slice::<serde_json::Value>(&o.stdout)?))
                        .map(|card| (seed, packs, took, card));
                    if let Ok(mut rows) = rows.lock() {
                        rows.push(row);
                    }
                }
            });
        }
    });
    let mut rows: Vec<_> = rows.into_inner().map_err(|_| anyhow::anyhow!("a soak thread panicked"))?;
    rows.sort_by_key(|r| r.as_ref().map_or(0, |r| r.0));
    println!(
        "\n| seed | packs | violations | harm: OC trips / fuses / OV trips / excused | worst pack A | lock-out h | time-to-safe reported / silent s | rebalances | events | took s |\n|---:|---:|---:|---|---:|---:|---|---:|---:|---:|"
    );
    let mut failed = Vec::new();
    let mut plant_s = 0.0;
    for row in rows {
        let (seed, packs, took, card) = row?;
        let v = card["safety_violations"]["total"].as_u64().context("not a scorecard")?;
        let lockout = card["availability"]["lockout_hours"].as_f64().unwrap_or(0.0);
        let h = &card["harm"];
        let harmed = ["bms_over_current_trips", "fuses_blown", "bms_over_voltage_trips_outside_rebalance"]
            .iter()
            .map(|k| h[k].as_u64().unwrap_or(0))
            .sum::<u64>();
        plant_s += days * 86400.0;
        println!(
            "| {seed} | {packs} | {v} | {} / {} / {} / {} | {} | {lockout} | {} / {} | {} | {} | {took:.1} |",
            h["bms_over_current_trips"],
            h["fuses_blown"],
            h["bms_over_voltage_trips_outside_rebalance"],
            h["excused_step_trips"],
            h["worst_pack_current_a"],
            card["time_to_safe_s"]["reported_fault_max"],
            card["time_to_safe_s"]["silent_pack_max"],
            card["rebalances"]["started"],
            card["events"]
        );
        if v > 0 || harmed > 0 || lockout > 0.0 {
            failed.push(format!(
                "pace2pylon simulate --days {days} --seed {seed} --packs {packs} --faults default --trace"
            ));
        }
    }
    let wall = started.elapsed().as_secs_f64();
    println!(
        "\n{seeds} seeds, {:.0} plant days in {wall:.0} s ({:.0}× real time on {cores} cores)",
        plant_s / 86400.0,
        plant_s / wall
    );
    if !failed.is_empty() {
        bail!(
            "{} seeds violated an invariant, harmed the plant or locked out; replay each with:\n  {}",
            failed.len(),
            failed.join("\n  ")
        );
    }
    Ok(())
}
