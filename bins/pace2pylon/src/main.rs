//! `pace2pylon`: a stack of Pace-BMS packs posing as one Pylontech master BMS. This build has the
//! simulated plant (`sim`); `run`, `demo` and `check-config` come with the daemon.

use std::io::{self, BufRead, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use link::Link;
use sim::server::{Lines, Options, Sim};
use sim::{Plant, PlantConfig};

#[derive(Debug, Parser)]
#[command(name = "pace2pylon", version, about = "Pace-BMS packs posing as one Pylontech master BMS")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Serve a simulated plant like a console server: pack N on TCP port P+N-1, the coulomb
    /// counter on P+100, the inverter's Modbus port on P+101 and its BMS port on P+102 (the
    /// simulated inverter polls whoever connects there). Fault commands are read from standard
    /// input, one per line.
    Sim(SimArgs),
}

#[derive(Debug, clap::Args)]
struct SimArgs {
    /// Number of packs.
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u16).range(1..=64))]
    packs: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    listen: String,
    /// First port (P).
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Sim(args) => sim(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pace2pylon: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A listening link on `port`, bound now so a busy port is reported at once.
fn listen(host: &str, port: u32) -> anyhow::Result<(Link, String)> {
    let port = u16::try_from(port)
        .with_context(|| format!("port {port} is above 65535: choose a lower --base-port"))?;
    let mut link = Link::open(&format!("tcp-listen://{host}:{port}"))?;
    link.local_addr()?;
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
    let open = |offset: u32| if args.pty { pty() } else { listen(&args.listen, p + offset) };
    let mut packs = Vec::new();
    let mut pack_urls = Vec::new();
    for k in 0..u32::from(args.packs) {
        let (l, url) = open(k)?;
        packs.push(l);
        pack_urls.push(url);
    }
    let (coil, coil_url) = open(100)?;
    let (inverter, inverter_url) = open(101)?;
    let (bms_port, bms_url) = open(102)?;
    if args.print_config {
        print!("{}", run_config(&pack_urls, &coil_url, &inverter_url, &bms_url));
        io::stdout().flush()?;
    }
    eprintln!("pace2pylon sim: {} packs at {}x speed (seed {})", args.packs, args.speed, args.seed);
    for (k, url) in pack_urls.iter().enumerate() {
        eprintln!("  pack {:>2}         {url}  (Pace v25, ADR 0)", k + 1);
    }
    eprintln!("  coil            {coil_url}  (Modbus RTU, slave 1)");
    eprintln!("  inverter        {inverter_url}  (Modbus RTU, slave 1)");
    eprintln!("  inverter BMS    {bms_url}  (polls 0x61/0x63 at ADR 2 once a second)");
    eprintln!(
        "  commands on standard input: silence|restore|garbage|clear pack N, fault pack N KIND, drift pack N MV, silence|restore coil"
    );
    let options = Options { speed: args.speed, baud: args.baud, ..Options::default() };
    let sim = Sim::start(Plant::new(config), Lines { packs, coil, inverter, bms_port }, options);

    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, stop.clone()).context("cannot install the signal handler")?;
    }
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in io::stdin().lock().lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    while !stop.load(Ordering::Relaxed) {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) if line.trim().is_empty() => {}
            Ok(line) => {
                let mut out = io::stdout().lock();
                match sim.command(&line) {
                    Ok(_) => writeln!(out, "ok")?,
                    Err(e) => writeln!(out, "error: {e}")?,
                }
                out.flush()?;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            // End of input does not stop the simulator; a signal does.
            Err(mpsc::RecvTimeoutError::Disconnected) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    eprintln!("pace2pylon sim: stopping");
    sim.stop();
    Ok(())
}

/// A `pace2pylon run` configuration for the simulator's lines.
fn run_config(packs: &[String], coil: &str, inverter: &str, bms: &str) -> String {
    let mut s = String::from("# pace2pylon run configuration for `pace2pylon sim`\n\n");
    s += &format!(
        "[pylon]\n# The simulated inverter polls whoever connects to its BMS port.\nlink = \"{bms}\"\naddress = 2\n\n"
    );
    for url in packs {
        s += &format!("[[pack]]\nlink = \"{url}\"\nadr = 0\n\n");
    }
    s += &format!("[coil]\nlink = \"{coil}\"\nslave = 1\n\n[inverter]\nlink = \"{inverter}\"\nslave = 1\n");
    s
}
