//! `pace2pylon`: a stack of Pace-BMS packs posing as one Pylontech master BMS: `run`, `check-config`,
//! `demo` (the daemon against the simulated plant in one process) and `sim`.

use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

mod replay;
mod scan;

use anyhow::{Context, bail};
use probe_kit::Line;
use sd_notify::NotifyState;

use clap::{Parser, Subcommand};
use link::Link;
use sim::server::{BmsPort, Device, Lines, Options, Sim};
use sim::{Plant, PlantConfig};

/// Set once standard output's reader has gone (`pace2pylon demo | head -1`): the program then
/// ends quietly instead of panicking on a broken pipe.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// One line on standard output; never panics.
fn say_line(args: std::fmt::Arguments<'_>) {
    let mut out = io::stdout().lock();
    if writeln!(out, "{args}").and_then(|()| out.flush()).is_err() {
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
    }
}

/// `println!` that never panics (see [`STDOUT_CLOSED`]).
macro_rules! say {
    ($($arg:tt)*) => { say_line(format_args!($($arg)*)) };
}

fn stdout_closed() -> bool {
    STDOUT_CLOSED.load(Ordering::Relaxed)
}

#[derive(Debug, Parser)]
#[command(name = "pace2pylon", version, about = "Pace-BMS packs posing as one Pylontech master BMS")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the daemon.
    Run {
        /// The configuration file.
        #[arg(long, value_name = "FILE")]
        config: std::path::PathBuf,
        /// Set an unreadable state file aside (renamed `*.corrupt-<time>`) and start afresh.
        #[arg(long)]
        reset_state: bool,
        /// Record every byte of every line (packs, coil, inverter, the Pylontech RS485 port)
        /// with its time and direction into a new folder of its own inside DIR
        /// (`DIR/capture-<UTC time>/capture-000001.log`, ...; a copy of the configuration
        /// beside them, secrets left out), for `pace2pylon replay DIR`. Nothing already in DIR
        /// is touched.
        #[arg(long, value_name = "DIR")]
        capture: Option<std::path::PathBuf>,
        /// The most the capture keeps, MiB: eight files of an eighth each, the oldest deleted.
        #[arg(long, value_name = "MIB", default_value_t = 128, requires = "capture",
              value_parser = clap::value_parser!(u64).range(1..=8192))]
        capture_max_mib: u64,
    },
    /// Decode a capture (`run --capture DIR`) offline: every exchange, and the decisions of the
    /// daemon's pollers, translator and controller run again over it.
    Replay(replay::ReplayArgs),
    /// Check a configuration file and print the effective configuration.
    CheckConfig {
        /// The configuration file.
        file: std::path::PathBuf,
    },
    /// The daemon and a simulated plant in one process, wired through real protocol bytes on
    /// loopback TCP. Fault commands on standard input, as for `sim`.
    Demo(DemoArgs),
    /// Serve a simulated plant like a console server: pack N on TCP port P+N-1, the coulomb
    /// counter on P+100, the inverter's Modbus port on P+101 and its BMS port on P+102 (the
    /// simulated inverter polls whoever connects there). Fault commands are read from standard
    /// input, one per line.
    Sim(SimArgs),
    /// The daemon's controller and the simulated plant in one thread, in plant time: days of
    /// plant time in seconds, seeded and repeatable, with a fault schedule; prints a scorecard of
    /// the SAFETY.md §6 invariants judged on the plant's true state, availability and energy.
    Simulate(SimulateArgs),
    /// Find what answers on lines, reading only: Pace packs (0x42 at ADR 0-15, then C2),
    /// Pylontech batteries (0x4F, 0x42 at ADR 2-9), the coulomb counter and a Vevor inverter
    /// (Modbus slave 1), at 9600 and 19200 baud; a line where an inverter polls is listened to
    /// only. `--print-config` writes a ready configuration.
    Scan(scan::ScanArgs),
}

#[derive(Debug, clap::Args)]
struct SimulateArgs {
    /// Simulate this configuration (its thresholds, pack count, tariff windows) before deploying
    /// it; its links are not opened.
    #[arg(long, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    /// Number of packs (without --config).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=64))]
    packs: Option<u16>,
    /// Plant days to run.
    #[arg(long, default_value_t = 7.0)]
    days: f64,
    /// Seed of the plant and the fault schedule.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// `none`, `default` (every 6 plant hours ± 2 h one of: a pack or the counter silent, a
    /// pack's line noisy, a pack's BMS fault, the inverter not polling, a daemon restart; every
    /// 3 plant days a cell drifts 60 mV low), or a schedule file in the same format (README:
    /// "Fault schedules"; `pace2pylon simulate --print-faults` prints the default one).
    #[arg(long, default_value = "default")]
    faults: String,
    /// Print exactly one JSON object.
    #[arg(long)]
    json: bool,
    /// Print the default fault schedule (a starting point for a file of your own) and exit.
    #[arg(long)]
    print_faults: bool,
    /// Also print every event of the trace (the injected faults, the daemon's event log lines, the
    /// violations), one per line, after the scorecard.
    #[arg(long)]
    trace: bool,
    /// Capture the simulated lines' bytes and the station's journal into a new folder in DIR, in
    /// the format of `run --capture`: `pace2pylon replay` of it takes every decision, writes
    /// every byte and answers the inverter as the simulation did.
    #[arg(long, value_name = "DIR")]
    capture: Option<std::path::PathBuf>,
}

#[derive(Debug, clap::Args)]
struct SimArgs {
    /// Number of packs.
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u16).range(1..=64))]
    packs: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    listen: String,
    /// First port (P); 0 lets every line pick a free port (see --print-config).
    #[arg(long, default_value_t = 4000)]
    base_port: u16,
    /// Plant seconds per real second.
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Seed of the plant's small random spreads.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Starting state of charge, percent.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u8).range(0..=100))]
    soc: u8,
    /// Plant hour of day at start.
    #[arg(long, default_value_t = 10.0)]
    hour: f64,
    /// PV peak at noon, W.
    #[arg(long, default_value_t = 2500.0)]
    pv_peak: f64,
    /// Line speed the replies are paced to, baud.
    #[arg(long, default_value_t = 9600)]
    baud: u32,
    /// Serve on pseudo-terminals instead of TCP ports (their paths are printed).
    #[arg(long)]
    pty: bool,
    /// Print a ready `pace2pylon run` configuration for these ports, then serve.
    #[arg(long)]
    print_config: bool,
    /// How the simulated inverter talks to its BMS: `rs485` (it polls 0x61/0x63) or `can`
    /// (slcan lines: it reads the Pylontech CAN frames and sends its 0x305 heartbeat).
    #[arg(long, value_enum, default_value_t = InverterLink::Rs485)]
    inverter: InverterLink,
}

/// The simulated inverter's BMS port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum InverterLink {
    /// Pylontech RS485.
    Rs485,
    /// Pylontech CAN over slcan.
    Can,
}

#[derive(Debug, clap::Args)]
struct DemoArgs {
    /// Number of packs.
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u16).range(1..=64))]
    packs: u16,
    /// Plant seconds per real second.
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Seed of the plant's small random spreads.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// A scripted story: pack-silent, cell-ov, overtemp, coil-silent, garbage (a fault at 20 s,
    /// cleared at 60 s), cell-uv-rebalance (a whole rebalance cycle), cascade (3 packs, 80 A
    /// inverter, a drifted cell: the limits follow), uv-recovery (an empty stack recharged).
    #[arg(long)]
    scenario: Option<String>,
    /// Expose the Pylontech port on ADDR (host:port) for an external master instead of the
    /// simulated inverter.
    #[arg(long, value_name = "ADDR")]
    pylon_listen: Option<String>,
    /// Serve the web UI and API on ADDR (port 0 picks a free port, printed).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    http: String,
    /// The bearer token for the controls (default: a random one, printed).
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,
    /// Publish to this MQTT broker with Home Assistant discovery (mqtt://host:port).
    #[arg(long, value_name = "URL")]
    mqtt: Option<String>,
    /// How the simulated inverter talks to the daemon: `rs485` ([pylon]) or `can` ([can] over
    /// slcan on loopback).
    #[arg(long, value_enum, default_value_t = InverterLink::Rs485)]
    inverter: InverterLink,
    /// Keep the demo's state file, event log, energy meters and history in DIR, so the next demo
    /// with the same DIR goes on from them (default: a temporary directory of its own).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<std::path::PathBuf>,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Sim(args) => sim(&args),
        Cmd::Run { config, reset_state, capture, capture_max_mib } => {
            run(&config, reset_state, capture.as_deref(), capture_max_mib)
        }
        Cmd::Replay(args) => replay::replay(&args, &mut io::stdout().lock()),
        Cmd::CheckConfig { file } => check_config(&file),
        Cmd::Demo(args) => demo(&args),
        Cmd::Simulate(args) => simulate(&args),
        Cmd::Scan(args) => scan::run(&args, |line| say!("{line}"))
            .and_then(|found| if found { Ok(()) } else { bail!("nothing answered on any line") }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pace2pylon: {}", probe_kit::error_chain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

/// A listening link on `port`, bound now so a busy port is reported at once.
fn listen(host: &str, port: u32) -> anyhow::Result<(Link, String)> {
    let port = u16::try_from(port)
        .with_context(|| format!("port {port} is above 65535: choose a lower --base-port"))?;
    let mut link = Link::open(&format!("tcp-listen://{host}:{port}"))?;
    let port = link.local_addr()?.map_or(port, |a| a.port());
    Ok((link, format!("tcp://{host}:{port}")))
}

/// A pseudo-terminal: the simulator keeps the master side; the slave's path is for the client.
fn pty() -> anyhow::Result<(Link, String)> {
    use serialport::{SerialPort, TTYPort};
    let (master, slave) = TTYPort::pair().context("cannot make a pseudo-terminal pair")?;
    let path = slave.name().context("the pseudo-terminal has no name")?;
    drop(slave);
    let name = master.name().unwrap_or_else(|| "pty-master".into());
    Ok((Link::from_serial_port(master, &name, 9600), path))
}

fn sim(args: &SimArgs) -> anyhow::Result<()> {
    if !(args.speed > 0.0 && args.speed <= 100_000.0) {
        bail!("--speed must be above 0 and at most 100000");
    }
    let config = PlantConfig {
        packs: usize::from(args.packs),
        seed: args.seed,
        soc: f64::from(args.soc) / 100.0,
        start_of_day_s: args.hour.rem_euclid(24.0) * 3600.0,
        pv_peak_w: args.pv_peak.max(0.0),
        ..PlantConfig::default()
    };
    let p = u32::from(args.base_port);
    let port = |offset: u32| if p == 0 { 0 } else { p + offset };
    let open = |offset: u32| if args.pty { pty() } else { listen(&args.listen, port(offset)) };
    let mut packs = Vec::new();
    let mut pack_urls = Vec::new();
    for k in 0..u32::from(args.packs) {
        let (l, url) = open(k)?;
        packs.push(l);
        pack_urls.push(url);
    }
    let (coil, coil_url) = open(100)?;
    let (inverter, inverter_url) = open(101)?;
    let (bms_link, bms_url) = open(102)?;
    let (bms_port, bms_url) = match args.inverter {
        InverterLink::Rs485 => (BmsPort::Rs485(bms_link), bms_url),
        InverterLink::Can => {
            let url = bms_url.replacen("tcp://", "slcan+tcp://", 1);
            let url = if url.starts_with('/') { format!("slcan://{url}") } else { url };
            (BmsPort::Can(link::CanBus::slcan_over(bms_link, link::can::DEFAULT_SLCAN_BITRATE)), url)
        }
    };
    if args.print_config {
        say!("{}", run_config(&pack_urls, &coil_url, &inverter_url, &bms_url, args.inverter).trim_end());
    }
    eprintln!("pace2pylon sim: {} packs at {}x speed (seed {})", args.packs, args.speed, args.seed);
    for (k, url) in pack_urls.iter().enumerate() {
        eprintln!("  pack {:>2}         {url}  (Pace v25, ADR 0)", k + 1);
    }
    eprintln!("  coil            {coil_url}  (Modbus RTU, slave 1)");
    eprintln!("  inverter        {inverter_url}  (Modbus RTU, slave 1)");
    match args.inverter {
        InverterLink::Rs485 => {
            eprintln!("  inverter BMS    {bms_url}  (polls 0x61/0x63 at ADR 2 once a second)")
        }
        InverterLink::Can => {
            eprintln!(
                "  inverter BMS    {bms_url}  (CAN over slcan: reads 0x351/0x35C, sends 0x305 each second)"
            )
        }
    }
    eprintln!(
        "  commands on standard input: silence|restore|garbage|clear pack N, fault pack N KIND, drift pack N MV, replace-fuse pack N, soc pack N|all PERCENT, inverter set REG VALUE, silence|restore coil"
    );
    let options = Options { speed: args.speed, baud: args.baud, ..Options::default() };
    let sim = Sim::start(Plant::new(config), Lines { packs, coil, inverter, bms_port }, options);

    let stop = stop_flag()?;
    // End of input does not stop the simulator; a signal does.
    let mut commands = Commands::from_stdin();
    while !stop.load(Ordering::Relaxed) && !stdout_closed() {
        commands.next(Duration::from_millis(100), |line| sim.command(line));
    }
    eprintln!("pace2pylon sim: stopping");
    sim.stop();
    Ok(())
}

/// Each line of `config` by its capture name, with its URL (for the capture's `# link` lines).
fn capture_urls(config: &daemon::Config) -> std::collections::BTreeMap<String, String> {
    let mut urls: std::collections::BTreeMap<String, String> =
        config.packs.iter().enumerate().map(|(k, p)| (format!("pack{}", k + 1), p.link.clone())).collect();
    urls.extend(config.coil.iter().map(|c| ("coil".to_owned(), c.link.clone())));
    urls.extend(config.inverter.iter().map(|i| ("inverter".to_owned(), i.link.clone())));
    urls.extend(config.pylon.iter().map(|p| ("pylon".to_owned(), p.link.clone())));
    urls
}

fn simulate(args: &SimulateArgs) -> anyhow::Result<()> {
    use sim_world::Schedule;
    if args.print_faults {
        say!("{}", sim_world::DEFAULT_SCHEDULE.trim_end());
        return Ok(());
    }
    if !(args.days > 0.0 && args.days <= 3650.0) {
        bail!("--days must be above 0 and at most 3650");
    }
    let config = match (&args.config, args.packs) {
        (Some(path), packs) => {
            let config = load(path)?;
            if packs.is_some_and(|n| usize::from(n) != config.packs.len()) {
                bail!(
                    "--packs {} disagrees with the {} [[pack]] of {}",
                    packs.unwrap_or(0),
                    config.packs.len(),
                    path.display()
                );
            }
            config
        }
        (None, packs) => sim_world::default_config(usize::from(packs.unwrap_or(12)))?,
    };
    let faults = match args.faults.as_str() {
        "none" => Schedule::none(),
        "default" => Schedule::default_schedule(),
        path => {
            let text = daemon::file::read_text_bounded(path.as_ref(), daemon::file::CONFIG_MAX_BYTES)
                .with_context(|| format!("--faults {path}: cannot read the fault schedule"))?;
            Schedule::parse(&text, path)?
        }
    };
    sim_world::check(&faults, &config)?;
    let started = std::time::Instant::now();
    let mut recorder_error = None;
    let mut recorder = None;
    let run = sim_world::simulate_into(&config, args.days, args.seed, &faults, |epoch| {
        let dir = args.capture.as_ref()?;
        // Nothing is rotated away: a replay needs the whole capture from its start.
        let limits = link::capture::Limits { max_file_bytes: 64 << 20, keep_files: usize::MAX };
        let wall = std::time::Duration::from_micros(epoch.as_microsecond().max(0) as u64);
        let started = link::capture::Recorder::start_at(dir, limits, wall)
            .map_err(|e| anyhow::anyhow!("--capture {}: {e}", dir.display()))
            .and_then(|r| replay::save_config(&r, &config).map(|()| r));
        match started {
            Ok(r) => {
                recorder = Some(r.clone());
                let urls: std::collections::BTreeMap<String, String> = capture_urls(&config);
                Some(Box::new(move |record: &link::capture::Record| {
                    r.record_at(record.clone(), urls.get(&record.link).map(String::as_str));
                }))
            }
            Err(e) => {
                recorder_error = Some(e);
                None
            }
        }
    });
    if let Some(e) = recorder_error {
        return Err(e);
    }
    if let Some(r) = recorder {
        r.stop();
        eprintln!("captured into {}", r.dir().display());
    }
    let took = started.elapsed().as_secs_f64();
    let card = &run.scorecard;
    if args.json {
        say!("{}", serde_json::to_string(card)?);
        return Ok(());
    }
    let v = &card.safety_violations;
    let a = &card.availability;
    say!(
        "pace2pylon simulate: {} packs, {} plant days, seed {}, faults {} ({:.1} s, {:.0}× real time)",
        card.packs,
        card.plant_days,
        card.seed,
        args.faults,
        took,
        card.plant_days * 86400.0 / took.max(1e-9)
    );
    say!(
        "  safety violations: {} (pack over its alarm too long {}, cell over its protect outside a rebalance {}, enabled while a rule holds {}, charge blocked too long {}, both off at a completion {})",
        v.total,
        v.pack_over_alarm_too_long,
        v.cell_over_protect_outside_rebalance,
        v.enabled_while_rule_holds,
        v.charge_blocked_too_long,
        v.both_off_at_completion
    );
    say!(
        "  blocked: both (outside faults) {:.2} h, charge {:.2} h, discharge {:.2} h",
        a.lockout_hours,
        a.charge_blocked_hours,
        a.discharge_blocked_hours
    );
    say!(
        "  energy: battery to load {:.2} kWh, grid to load {:.2} kWh, PV unused {:.2} kWh",
        a.battery_to_load_kwh,
        a.grid_to_load_kwh,
        a.pv_unused_kwh
    );
    let h = &card.harm;
    say!(
        "  harm: BMS over-current trips {}, fuses blown {}, BMS over-voltage trips outside a rebalance {}, excused step trips {}, worst pack current {:.1} A",
        h.bms_over_current_trips,
        h.fuses_blown,
        h.bms_over_voltage_trips_outside_rebalance,
        h.excused_step_trips,
        h.worst_pack_current_a
    );
    let r = &card.rebalances;
    say!("  rebalances: {} started, {} completed, {} cancelled", r.started, r.completed, r.cancelled);
    let secs = |s: Option<f64>| s.map_or("-".to_owned(), |s| format!("{s:.2} s"));
    say!(
        "  time to safe: reported fault {}, silent pack {}",
        secs(card.time_to_safe_s.reported_fault_max),
        secs(card.time_to_safe_s.silent_pack_max)
    );
    let violations: Vec<&String> =
        run.events.iter().filter(|e| e.contains(" violation: ") || e.contains(" harm: ")).collect();
    if !violations.is_empty() {
        say!("  the violations and harm (the first 20), with what led to each:");
        for line in violations.iter().take(20) {
            // The events of the 5 plant minutes before it, at most 8.
            let k = run.events.iter().position(|e| std::ptr::eq(e, *line)).unwrap_or(0);
            let t = |e: &str| e.split_whitespace().next().and_then(|t| t.parse::<u64>().ok()).unwrap_or(0);
            let before = run.events[..k].iter().rev().take_while(|e| t(e) + 300 >= t(line)).take(8);
            for e in before.collect::<Vec<_>>().into_iter().rev() {
                say!("    {e}");
            }
            say!("  {line}");
        }
    }
    if args.trace {
        say!("  {} events, trace digest {}:", card.events, card.trace_digest);
        for line in &run.events {
            say!("  {line}");
        }
    } else {
        say!(
            "  {} events, trace digest {}; the last ones (all with --trace):",
            card.events,
            card.trace_digest
        );
        for line in run.events.iter().rev().take(12).rev() {
            say!("  {line}");
        }
    }
    let harmed = h.harmed();
    if v.total > 0 || harmed > 0 {
        bail!("{} safety violations, {harmed} harm to the plant; replay with --seed {}", v.total, card.seed);
    }
    Ok(())
}

fn load(path: &std::path::Path) -> anyhow::Result<daemon::Config> {
    let name = path.display().to_string();
    let text = daemon::file::read_text_bounded(path, daemon::file::CONFIG_MAX_BYTES)
        .with_context(|| format!("cannot read the configuration {name}"))?;
    Ok(daemon::Config::parse(&text, &name)?)
}

fn check_config(path: &std::path::Path) -> anyhow::Result<()> {
    let config = load(path)?;
    say!("# {}: valid.", path.display());
    let mv = u32::from(config.safety.charge_voltage_mv);
    let cells: Vec<String> =
        daemon::config::bounds::cell_counts(mv, daemon::config::bounds::CHARGE_PER_CELL_MV)
            .map(|n| format!("{n} cells ({:.3} V a cell)", f64::from(mv) / f64::from(n) / 1000.0))
            .collect();
    say!(
        "# safety.charge_voltage_mv = {mv} fits a stack of {}; packs with another count get no charge \
         (config_out_of_range).",
        cells.join(" or ")
    );
    say!("# Effective configuration, defaults filled in:\n");
    say!("{}", config.to_toml().trim_end());
    Ok(())
}

/// `x` rounded to tenths, a negative zero made positive: a current of -0.04 A shows as +0.0 A.
fn tenths(x: f64) -> f64 {
    let r = (x * 10.0).round() / 10.0;
    if r == 0.0 { 0.0 } else { r }
}

/// The longest command line taken from standard input; longer ones are skipped.
const MAX_COMMAND_LINE: usize = 4096;

/// Fault commands from standard input, read on a thread of their own (through a bounded channel)
/// so the caller can wait with a timeout. At end of input it stops reading and stays idle.
struct Commands {
    rx: Option<mpsc::Receiver<Option<String>>>,
}

impl Commands {
    fn from_stdin() -> Self {
        let (tx, rx) = mpsc::sync_channel::<Option<String>>(16);
        let reader = std::thread::Builder::new().name("stdin".into()).spawn(move || {
            let mut input = io::BufReader::new(io::stdin());
            let mut line = Vec::new();
            loop {
                let got = match probe_kit::read_line_bounded(&mut input, &mut line, MAX_COMMAND_LINE) {
                    Ok(Line::End) | Err(_) => return,
                    Ok(Line::TooLong) => None,
                    Ok(Line::Line) => Some(String::from_utf8_lossy(&line).into_owned()),
                };
                if tx.send(got).is_err() {
                    return;
                }
            }
        });
        // Without a reader there is no input: the same as an empty one.
        Self { rx: reader.is_ok().then_some(rx) }
    }

    /// Waits up to `wait` for a line and runs it with `run`, saying `ok` or `error: ...`.
    fn next(&mut self, wait: Duration, run: impl FnOnce(&str) -> Result<String, String>) {
        let Some(rx) = &self.rx else {
            std::thread::sleep(wait);
            return;
        };
        match rx.recv_timeout(wait) {
            Ok(Some(line)) if line.trim().is_empty() => {}
            Ok(Some(line)) => match run(&line) {
                Ok(_) => say!("ok"),
                Err(e) => say!("error: {e}"),
            },
            Ok(None) => say!("error: line too long (more than {MAX_COMMAND_LINE} bytes); skipped"),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => self.rx = None,
        }
    }
}

/// Signals that stop the process cleanly, as SIGTERM does (the stop event and the final save):
/// the operator's, and the kernel's resource limits (CPU time, file size) and a refused system
/// call (a seccomp filter), which would otherwise kill it without either.
const STOPPING: [(i32, &str); 5] = [
    (signal_hook::consts::SIGTERM, "SIGTERM"),
    (signal_hook::consts::SIGINT, "SIGINT"),
    (signal_hook::consts::SIGXCPU, "SIGXCPU"),
    (signal_hook::consts::SIGXFSZ, "SIGXFSZ"),
    (signal_hook::consts::SIGSYS, "SIGSYS"),
];

/// Signals whose default is to end a process but that mean nothing to this one: each is noted
/// in the log and otherwise ignored.
const IGNORED: [(i32, &str); 7] = [
    (signal_hook::consts::SIGUSR1, "SIGUSR1"),
    (signal_hook::consts::SIGUSR2, "SIGUSR2"),
    (signal_hook::consts::SIGALRM, "SIGALRM"),
    (signal_hook::consts::SIGVTALRM, "SIGVTALRM"),
    (signal_hook::consts::SIGPROF, "SIGPROF"),
    (signal_hook::consts::SIGIO, "SIGIO"),
    (SIGPWR, "SIGPWR"),
];

/// SIGPWR on Linux (x86, ARM, RISC-V); `signal_hook` does not name it.
const SIGPWR: i32 = 30;

/// The flag [`STOPPING`] signals set; [`IGNORED`] ones are caught so they do not end the
/// process (see [`ignored_signal`]).
fn stop_flag() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for (signal, name) in STOPPING {
        signal_hook::flag::register(signal, stop.clone())
            .with_context(|| format!("cannot install the {name} handler"))?;
    }
    for (signal, name) in IGNORED {
        signal_hook::flag::register_usize(signal, IGNORED_SEEN.clone(), signal as usize)
            .with_context(|| format!("cannot install the {name} handler"))?;
    }
    Ok(stop)
}

static IGNORED_SEEN: std::sync::LazyLock<Arc<std::sync::atomic::AtomicUsize>> =
    std::sync::LazyLock::new(|| Arc::new(std::sync::atomic::AtomicUsize::new(0)));

/// The name of an [`IGNORED`] signal received since the last call, if any.
fn ignored_signal() -> Option<&'static str> {
    let signal = IGNORED_SEEN.swap(0, Ordering::Relaxed);
    IGNORED.iter().find(|(s, _)| *s as usize == signal && signal != 0).map(|(_, name)| *name)
}

/// SIGHUP, the logrotate convention, never ends the daemon: the flag it sets is taken by the
/// main loop, which says so in the log (the event log is opened anew for every line, so a rotated
/// file is left alone from the next line on).
fn hangup_flag() -> anyhow::Result<Arc<AtomicBool>> {
    let hup = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())
        .context("cannot install the SIGHUP handler")?;
    Ok(hup)
}

fn run(
    path: &std::path::Path,
    reset_state: bool,
    capture: Option<&std::path::Path>,
    capture_max_mib: u64,
) -> anyhow::Result<()> {
    let config = load(path)?;
    if reset_state {
        let file = std::path::Path::new(&config.state.state_file);
        if daemon::state::load(file).is_err() {
            let now =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            if let Some(aside) = daemon::state::set_aside(file, now)? {
                log::warn!("state file set aside as {}; starting afresh", aside.display());
            }
        }
    }
    let stop = stop_flag()?;
    let hup = hangup_flag()?;
    let outputs: Vec<String> = config
        .pylon
        .iter()
        .map(|p| format!("Pylontech RS485 on {}", p.link))
        .chain(config.can.iter().map(|c| format!("Pylontech CAN on {}", c.link)))
        .collect();
    log::info!(
        "pace2pylon {}: {} packs, {}",
        env!("CARGO_PKG_VERSION"),
        config.packs.len(),
        outputs.join(", ")
    );
    let (http, mqtt) = (config.http.clone(), config.mqtt.clone());
    let mut hooks = systemd_watchdog();
    if let Some(dir) = capture {
        let limits = link::capture::Limits { max_file_bytes: (capture_max_mib << 20) / 8, keep_files: 8 };
        let recorder = link::capture::Recorder::start(dir, limits)
            .with_context(|| format!("cannot capture into {}", dir.display()))?;
        replay::save_config(&recorder, &config)?;
        log::info!("capturing every line into {} (at most {capture_max_mib} MiB)", recorder.dir().display());
        hooks.capture = Some(recorder);
    }
    let recorder = hooks.capture.clone();
    let daemon = daemon::runtime::Daemon::start_with(config, hooks)?;
    let web = match start_web(&daemon, &http) {
        Ok(web) => web,
        Err(e) => {
            daemon.stop();
            return Err(e);
        }
    };
    let publisher = match start_mqtt(&daemon, &mqtt) {
        Ok(p) => p,
        Err(e) => {
            daemon.stop();
            return Err(e);
        }
    };
    // Type=notify: up once every thread runs (no-op without NOTIFY_SOCKET).
    let _ = sd_notify::notify(false, &[NotifyState::Ready, NotifyState::Status("running")]);
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        if hup.swap(false, Ordering::Relaxed) {
            log::info!("SIGHUP: the event log is reopened at its next line; the daemon goes on");
        }
        if let Some(name) = ignored_signal() {
            log::info!("{name}: ignored; the daemon goes on (SIGTERM stops it)");
        }
    }
    log::info!("stopping");
    let _ = sd_notify::notify(false, &[NotifyState::Stopping]);
    if let Some(p) = publisher {
        p.stop();
    }
    if let Some(web) = web {
        web.stop();
    }
    daemon.stop();
    if let Some(r) = recorder {
        r.stop();
        if r.dropped() > 0 {
            log::warn!("capture: {} records were dropped because the disk was behind", r.dropped());
        }
    }
    Ok(())
}

/// systemd's watchdog (`WatchdogSec=` in the unit), fed by the safety loop only and at half its
/// period: a loop that stops deciding gets the service restarted. Nothing without it.
fn systemd_watchdog() -> daemon::runtime::Hooks {
    let mut usec = 0;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return daemon::runtime::Hooks::default();
    }
    let every = Duration::from_micros(usec / 2);
    log::info!("systemd watchdog: fed by the safety loop every {} ms", every.as_millis());
    let last = std::sync::Mutex::new(None::<std::time::Instant>);
    let feed = move || {
        let mut last = last.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.is_none_or(|t| t.elapsed() >= every) {
            *last = Some(std::time::Instant::now());
            drop(last);
            if let Err(e) = sd_notify::notify(false, &[NotifyState::Watchdog]) {
                log::warn!("systemd watchdog: {e}");
            }
        }
    };
    daemon::runtime::Hooks { decided: Some(Box::new(feed)), capture: None }
}

/// The MQTT publisher as `[mqtt]` says (`None` without a broker URL).
fn start_mqtt(
    daemon: &daemon::runtime::Daemon,
    mqtt: &daemon::config::Mqtt,
) -> anyhow::Result<Option<ha_mqtt::Publisher>> {
    let Some(url) = &mqtt.url else { return Ok(None) };
    let (host, port) = daemon::config::parse_mqtt_url(url).map_err(|e| anyhow::anyhow!("mqtt.url: {e}"))?;
    let password = daemon::config::secret(
        mqtt.password.as_deref(),
        mqtt.password_file.as_deref(),
        "PACE2PYLON_MQTT_PASSWORD",
    )
    .map_err(|e| anyhow::anyhow!("mqtt.password_file: {e}"))?;
    let credentials = match (&mqtt.username, password) {
        (Some(user), Some(password)) => Some((user.clone(), password)),
        (Some(user), None) => Some((user.clone(), String::new())),
        (None, Some(_)) => bail!("mqtt: a password is set but no username"),
        (None, None) => None,
    };
    log::info!(
        "mqtt: publishing to {host}:{port} (Home Assistant discovery under {}/)",
        mqtt.discovery_prefix
    );
    Ok(Some(ha_mqtt::Publisher::start(
        daemon.handle(),
        ha_mqtt::Options {
            host,
            port,
            credentials,
            client_id: mqtt.client_id.clone(),
            discovery_prefix: mqtt.discovery_prefix.clone(),
            topic_prefix: mqtt.topic_prefix.clone(),
            allow_control: mqtt.allow_control,
            state_every: Duration::from_secs_f64(mqtt.state_every_s),
        },
    )))
}

/// The web UI and API as `[http]` says (`None` when disabled).
fn start_web(
    daemon: &daemon::runtime::Daemon,
    http: &daemon::config::Http,
) -> anyhow::Result<Option<web::Web>> {
    if !http.enabled {
        return Ok(None);
    }
    let token =
        daemon::config::secret(http.token.as_deref(), http.token_file.as_deref(), "PACE2PYLON_HTTP_TOKEN")
            .map_err(|e| anyhow::anyhow!("http.token_file: {e}"))?;
    if token.is_none() {
        log::warn!("no [http] token: the web UI shows everything but refuses control");
    }
    let web = web::Web::start(daemon.handle(), web::Options { listen: http.listen.clone(), token })?;
    Ok(Some(web))
}

/// 16 random bytes from the kernel, as hex: the demo's control token when none is given.
fn random_token() -> anyhow::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("cannot read /dev/urandom for a token; pass --token")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// One step of a scripted story.
#[derive(Clone, Copy, Debug)]
enum Beat {
    /// A fault command for the simulator.
    Command(&'static str),
    /// A new plant speed (plant seconds per real second).
    Speed(f64),
}

/// A scripted story of `demo --scenario`.
struct Scenario {
    /// The pack count it needs (it overrides `--packs`).
    packs: Option<u16>,
    /// The plant's time of day at start, hours, and its packs' state of charge (0..=1).
    start: Option<(f64, f64)>,
    /// What to do, in real seconds after start.
    beats: Vec<(u64, Beat)>,
}

/// The scripted stories of `demo --scenario`.
fn scenario(name: &str) -> anyhow::Result<Scenario> {
    use Beat::{Command, Speed};
    let beats = |beats| Scenario { packs: None, start: None, beats };
    Ok(match name {
        // SAFETY.md §2a: three packs behind an 80 A inverter charging from the grid and the sun;
        // cell 1 of pack 1 drifts low, so pack 1 draws more than its share. v1 told the inverter
        // 0.8 × 90 A whatever the packs carried, and pack 1 tripped, then the other two, then a
        // fuse blew; now the per-pack guard cuts the limit until pack 1 is back at 0.9 × 30 A.
        "cascade" => Scenario {
            packs: Some(3),
            start: None,
            beats: vec![
                (0, Command("inverter set 332 800")),
                (0, Command("inverter set 333 800")),
                (0, Command("inverter set 331 2")),
                // A drift takes weeks on a real stack; here 100 mV every 5 s, so the safety loop
                // sees each step (a BMS trips 1 s after its 35 A protect level).
                (20, Command("drift pack 1 -100")),
                (25, Command("drift pack 1 -100")),
                (30, Command("drift pack 1 -100")),
                (35, Command("drift pack 1 -100")),
                (40, Command("drift pack 1 -100")),
            ],
        },
        // Rule 15: an empty stack at 07:00, its cells in BMS under-voltage protection. Discharge
        // stays off (the grid takes the load); charging stays allowed at the recovery current
        // (2 A per pack), and the morning sun charges it at that current until the protection
        // releases. The trigger starts a rebalance (rule 15 counts as rule 14's), which charges on.
        "uv-recovery" => Scenario { packs: Some(3), start: Some((7.0, 0.0)), beats: vec![(10, Speed(30.0))] },
        "pack-silent" => beats(vec![(20, Command("silence pack 2")), (60, Command("restore pack 2"))]),
        "cell-ov" => beats(vec![(20, Command("fault pack 1 cell-ov")), (60, Command("clear pack 1"))]),
        "overtemp" => beats(vec![(20, Command("fault pack 1 overtemp")), (60, Command("clear pack 1"))]),
        "coil-silent" => beats(vec![(20, Command("silence coil")), (60, Command("restore coil"))]),
        "garbage" => beats(vec![(20, Command("garbage pack 1")), (60, Command("restore pack 1"))]),
        // Cell 1 of pack 1 drifts low while the plant runs slowly, so the safety loop sees it before
        // the charging current lifts it; rule 14 starts a rebalance; then the plant runs 300 times
        // faster through the charge, the balancing, the calibration and the night's settling
        // (about five minutes with 12 packs).
        "cell-uv-rebalance" => {
            beats(vec![(10, Speed(5.0)), (15, Command("drift pack 1 -580")), (25, Speed(300.0))])
        }
        other => bail!(
            "unknown scenario '{other}'; scenarios: pack-silent, cell-ov, overtemp, coil-silent, garbage, cell-uv-rebalance, cascade, uv-recovery"
        ),
    })
}

fn demo(args: &DemoArgs) -> anyhow::Result<()> {
    if !(args.speed > 0.0 && args.speed <= 100_000.0) {
        bail!("--speed must be above 0 and at most 100000");
    }
    let story = args.scenario.as_deref().map(scenario).transpose()?;
    let packs = story.as_ref().and_then(|s| s.packs).unwrap_or(args.packs);
    let start = story.as_ref().and_then(|s| s.start);
    if packs != args.packs {
        say!("scenario {}: {packs} packs", args.scenario.as_deref().unwrap_or_default());
    }
    let script = story.map(|s| s.beats).unwrap_or_default();
    let ephemeral = || {
        listen("127.0.0.1", 0).and_then(|(mut l, _)| {
            let addr = l.local_addr()?.context("no local address")?;
            Ok((l, format!("tcp://{addr}")))
        })
    };
    let (mut pack_links, mut pack_urls) = (Vec::new(), Vec::new());
    for _ in 0..packs {
        let (l, u) = ephemeral()?;
        pack_links.push(l);
        pack_urls.push(u);
    }
    let (coil, coil_url) = ephemeral()?;
    let (inverter, inverter_url) = ephemeral()?;
    let (bms_link, bms_url) = ephemeral()?;
    let pylon_link = match &args.pylon_listen {
        Some(addr) => format!("tcp-listen://{addr}"),
        None => bms_url.clone(),
    };
    let (bms_port, bms_url, output) = match args.inverter {
        InverterLink::Rs485 => {
            (BmsPort::Rs485(bms_link), bms_url, format!("[pylon]\nlink = \"{pylon_link}\"\n\n"))
        }
        InverterLink::Can => {
            let url = bms_url.replacen("tcp://", "slcan+tcp://", 1);
            let can_link = match &args.pylon_listen {
                Some(addr) => format!("slcan+tcp-listen://{addr}"),
                None => url.clone(),
            };
            let bus = link::CanBus::slcan_over(bms_link, link::can::DEFAULT_SLCAN_BITRATE);
            (BmsPort::Can(bus), url, format!("[can]\nlink = \"{can_link}\"\nprofile = \"pylon\"\n\n"))
        }
    };
    let mut toml =
        format!("{output}[coil]\nlink = \"{coil_url}\"\n\n[inverter]\nlink = \"{inverter_url}\"\n\n");
    for u in &pack_urls {
        toml += &format!("[[pack]]\nlink = \"{u}\"\nadr = 0\n\n");
    }
    // The demo keeps its state and event log in a temporary directory of its own, unless told.
    let dir = match &args.state_dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("pace2pylon-demo-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // A JSON string is a TOML basic string: a path with quotes or backslashes stays one.
    let quoted = |p: std::path::PathBuf| serde_json::to_string(&p.display().to_string()).unwrap_or_default();
    toml += &format!(
        "[state]\nstate_file = {}\nevent_log = {}\n",
        quoted(dir.join("state.json")),
        quoted(dir.join("events.jsonl"))
    );
    let mut config = daemon::Config::parse(&toml, "demo")?;
    let token = match &args.token {
        Some(t) if t.len() < 8 => bail!("--token must be at least 8 characters"),
        Some(t) => t.clone(),
        None => random_token()?,
    };
    config.http.listen.clone_from(&args.http);
    config.http.token = Some(token.clone());
    if let Some(url) = &args.mqtt {
        daemon::config::parse_mqtt_url(url).map_err(|e| anyhow::anyhow!("--mqtt: {e}"))?;
        config.mqtt.url = Some(url.clone());
        config.mqtt.client_id = format!("pace2pylon-demo-{}", std::process::id());
    }
    let (http, mqtt) = (config.http.clone(), config.mqtt.clone());
    let mut plant = PlantConfig { packs: usize::from(packs), seed: args.seed, ..PlantConfig::default() };
    if let Some((hour, soc)) = start {
        plant.start_of_day_s = hour * 3600.0;
        plant.soc = soc;
    }
    let options = Options { speed: args.speed, ..Options::default() };
    let mut sim =
        Sim::start(Plant::new(plant), Lines { packs: pack_links, coil, inverter, bms_port }, options);
    // The probes get lines of their own: the daemon's lines keep one peer each.
    let mut probe = |device: Device| -> anyhow::Result<String> {
        let (link, url) = ephemeral()?;
        sim.serve_probe(device, link);
        Ok(url)
    };
    let probe_pack = probe(Device::Pack(0))?;
    let probe_coil = probe(Device::Coil)?;
    let probe_inverter = probe(Device::Inverter)?;
    let stop = stop_flag()?;
    let daemon = daemon::runtime::Daemon::start(config)?;
    let web = match start_web(&daemon, &http) {
        Ok(web) => web,
        Err(e) => {
            daemon.stop();
            sim.stop();
            return Err(
                e.context(format!("--http {}: choose another address, or port 0 for a free one", args.http))
            );
        }
    };
    let publisher = start_mqtt(&daemon, &mqtt)?;
    say!(
        "pace2pylon demo: {} simulated packs at {}x speed; the daemon polls them and answers the simulated inverter",
        packs,
        args.speed
    );
    match &args.pylon_listen {
        Some(addr) => say!(
            "  Pylontech port for an external master: tcp://{addr} (the simulated inverter runs on its no-comm settings)"
        ),
        None if args.inverter == InverterLink::Can => {
            say!(
                "  the simulated inverter reads the daemon's CAN frames on {bms_url} (slcan) and sends 0x305"
            )
        }
        None => say!("  the simulated inverter polls the daemon on {bms_url}"),
    }
    say!(
        "  probes (lines of their own, beside the daemon's): pace-probe --link {probe_pack} analog | coil-probe --link {probe_coil} read | vevor-probe --link {probe_inverter} read"
    );
    say!(
        "  fault commands on standard input: silence|restore|garbage|clear pack N, fault pack N KIND, drift pack N MV, replace-fuse pack N, soc pack N|all PERCENT, inverter set REG VALUE, silence|restore coil"
    );
    say!("  event log: {}", dir.join("events.jsonl").display());
    if let Some(web) = &web {
        say!("  web UI: http://{}/  (controls: token {token})", web.local_addr());
        say!("  API: http://{0}/api/v1/status  metrics: http://{0}/metrics", web.local_addr());
    }
    if let Some(url) = &args.mqtt {
        say!(
            "  MQTT: {url}, Home Assistant discovery under {}/ (try: mosquitto_sub -h HOST -p PORT -t '{}/#' -v)",
            mqtt.discovery_prefix,
            mqtt.discovery_prefix
        );
    }
    say!("  status is printed every 5 s; Ctrl-C stops");
    let mut commands = Commands::from_stdin();
    let _hup = hangup_flag()?;
    let started = std::time::Instant::now();
    let mut script = script.into_iter().peekable();
    let mut last_status = std::time::Instant::now();
    while !stop.load(Ordering::Relaxed) && !stdout_closed() {
        let elapsed = started.elapsed().as_secs();
        while let Some(&(at, beat)) = script.peek() {
            if elapsed < at {
                break;
            }
            match beat {
                Beat::Command(cmd) => {
                    say!("scenario: {cmd} -> {}", sim.command(cmd).unwrap_or_else(|e| format!("error: {e}")))
                }
                Beat::Speed(speed) => {
                    sim.set_speed(speed);
                    say!("scenario: the plant now runs at {speed}x");
                }
            }
            script.next();
        }
        commands.next(Duration::from_millis(100), |line| sim.command(line));
        if last_status.elapsed() >= Duration::from_secs(5) {
            last_status = std::time::Instant::now();
            print_status(&sim, &daemon);
        }
    }
    if let Some(p) = publisher {
        p.stop();
    }
    if let Some(web) = web {
        web.stop();
    }
    daemon.stop();
    sim.stop();
    Ok(())
}

fn print_status(sim: &Sim, daemon: &daemon::runtime::Daemon) {
    let snapshot = daemon.snapshot();
    let decision = daemon.handle().published().decision.clone();
    let plant = sim::server::lock(&sim.plant()).clone();
    let onoff = |b: bool| if b { "on" } else { "OFF" };
    let (charge, discharge, reasons) =
        decision.map_or((false, false, Vec::new()), |d| (d.charge, d.discharge, d.reasons));
    let view = snapshot.view;
    let step = daemon.handle().status().rebalance;
    let rebalance = match step.step {
        daemon::status::Step::Idle => String::new(),
        _ => format!(" | rebalance {}", step.progress),
    };
    // What the inverter is told (SAFETY.md §2a), and the plant's worst pack against its 30 A fuse.
    let limits = daemon.handle().status().limits.map_or(String::new(), |l| {
        let a = |ma: Option<i32>| ma.map_or("-".into(), |v| format!("{:.1}", f64::from(v) / 1000.0));
        let guard = |d: &daemon::status::DirectionLimit| {
            d.guard.as_ref().map_or(String::new(), |g| format!(" (guard: pack {})", g.pack))
        };
        format!(
            " | limits charge {} A{} discharge {} A{}",
            a(l.charge.limit_ma),
            guard(&l.charge),
            a(l.discharge.limit_ma),
            guard(&l.discharge)
        )
    });
    let worst = plant
        .packs
        .iter()
        .max_by(|a, b| a.current_a.abs().total_cmp(&b.current_a.abs()))
        .map_or(String::new(), |p| format!(" | worst pack {} {:+.1} A", p.number, tenths(p.current_a)));
    let trips: u32 = plant.packs.iter().map(|p| p.charge_oc_trips + p.discharge_oc_trips).sum();
    let damage = match (trips, plant.blown_fuses()) {
        (0, 0) => String::new(),
        (t, f) => format!(" | BMS over-current trips {t}, fuses blown {f}"),
    };
    say!(
        "{:02}:{:02} plant | charge {} discharge {} | SOC {} | {:.2} V {:+.1} A{limits}{worst}{damage} | PV {:.0} W load {:.0} W grid {:.0} W | inverter: {}{rebalance}{}",
        plant.hour() as u32,
        ((plant.hour() * 60.0) % 60.0) as u32,
        onoff(charge),
        onoff(discharge),
        view.map_or("-".into(), |v| format!("{} %", v.soc.raw())),
        plant.bus_v,
        tenths(plant.current_a),
        plant.inverter.pv_w,
        plant.inverter.load_w,
        plant.inverter.grid_w,
        if plant.inverter.limits().from_bms { "BMS limits" } else { "no-comm settings" },
        if reasons.is_empty() {
            String::new()
        } else {
            format!(" | {}", reasons.iter().map(|r| r.describe()).collect::<Vec<_>>().join("; "))
        }
    );
}

/// A `pace2pylon run` configuration for the simulator's lines.
fn run_config(packs: &[String], coil: &str, inverter: &str, bms: &str, kind: InverterLink) -> String {
    let mut s = String::from("# pace2pylon run configuration for `pace2pylon sim`\n\n");
    s += &match kind {
        InverterLink::Rs485 => format!(
            "[pylon]\n# The simulated inverter polls whoever connects to its BMS port.\nlink = \"{bms}\"\naddress = 2\n\n"
        ),
        InverterLink::Can => format!(
            "[can]\n# The simulated inverter reads the Pylontech CAN frames on its slcan line.\nlink = \"{bms}\"\nprofile = \"pylon\"\n\n"
        ),
    };
    for url in packs {
        s += &format!("[[pack]]\nlink = \"{url}\"\nadr = 0\n\n");
    }
    s += &format!("[coil]\nlink = \"{coil}\"\nslave = 1\n\n[inverter]\nlink = \"{inverter}\"\nslave = 1\n");
    s
}
