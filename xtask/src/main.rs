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
  bench           criterion benches and probe throughput, printed as a table
  fuzz [SECONDS]  run every fuzz target for SECONDS each (default 30; needs nightly and cargo-fuzz)";

fn main() -> Result<()> {
    let args: Vec<String> = env::args().skip(1).collect();
    let root = root()?;
    env::set_current_dir(&root)?;
    match args.first().map(String::as_str) {
        Some("test") => test(),
        Some("bench") => bench(&root),
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

/// pymodbus, the independent Modbus implementation the interop tests run against.
const PYMODBUS: &str = "pymodbus==3.16.1";

/// Makes `target/pyvenv` with pymodbus, installing Debian's venv support if Python lacks it.
/// Returns the venv's python.
fn python_with_pymodbus(root: &Path) -> Result<PathBuf> {
    let venv = root.join("target/pyvenv");
    let python = venv.join("bin/python");
    let has = |py: &Path| {
        Command::new(py)
            .args(["-c", "import pymodbus"])
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
    run(
        &venv.join("bin/pip").to_string_lossy(),
        &["install", "-q", "--disable-pip-version-check", PYMODBUS],
    )?;
    if !has(&python) {
        bail!("{PYMODBUS} did not install into {venv_str}");
    }
    Ok(python)
}

fn test() -> Result<()> {
    let started = Instant::now();
    let root = env::current_dir()?;
    let python = python_with_pymodbus(&root)?;

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
    Ok(())
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
