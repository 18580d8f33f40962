//! The daemon wired to the simulated plant over loopback TCP, as a real installation is wired.

use std::path::{Path, PathBuf};

use daemon::Config;
use daemon::runtime::Daemon;
use link::Link;
use sim::server::{Lines, Options, Sim};
use sim::{Plant, PlantConfig};

/// A TCP listener on a free port and the URL a client connects to.
pub fn listen() -> (Link, String) {
    let mut l = Link::open("tcp-listen://127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().unwrap();
    (l, format!("tcp://{addr}"))
}

/// An empty directory of its own for a daemon's state file and event log.
pub fn state_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("p2p-e2e-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A plant of `packs` packs at 11:00 and a daemon polling it, keeping its state in `dir`. The
/// daemon's Pylontech responder is on `pylon` when given, else on the port the simulated inverter
/// polls.
pub fn start_with(packs: usize, pylon: Option<&str>, options: Options, dir: &Path) -> (Sim, Daemon) {
    let plant = PlantConfig { packs, start_of_day_s: 11.0 * 3600.0, ..PlantConfig::default() };
    let (sim, config) = plant_and_config(plant, pylon, options, "", dir);
    (sim, Daemon::start(config).unwrap())
}

/// The plant served on loopback TCP and the configuration of a daemon for it (not started), with
/// `extra` TOML appended (e.g. a `[rebalance]` table).
pub fn plant_and_config(
    plant: PlantConfig,
    pylon: Option<&str>,
    options: Options,
    extra: &str,
    dir: &Path,
) -> (Sim, Config) {
    let (mut links, mut urls) = (Vec::new(), Vec::new());
    for _ in 0..plant.packs {
        let (l, u) = listen();
        links.push(l);
        urls.push(u);
    }
    let (coil, coil_url) = listen();
    let (inverter, inverter_url) = listen();
    let (bms_port, bms_url) = listen();
    let sim = Sim::start(
        Plant::new(plant),
        Lines { packs: links, coil, inverter, bms_port: sim::server::BmsPort::Rs485(bms_port) },
        options,
    );
    let pylon = pylon.unwrap_or(&bms_url);
    let mut toml = format!(
        "[pylon]\nlink = \"{pylon}\"\naddress = 2\n\n[coil]\nlink = \"{coil_url}\"\n\n[inverter]\nlink = \"{inverter_url}\"\n\n"
    );
    for u in &urls {
        toml += &format!("[[pack]]\nlink = \"{u}\"\nadr = 0\n\n");
    }
    toml += &format!(
        "[state]\nstate_file = \"{}\"\nevent_log = \"{}\"\n\n{extra}",
        dir.join("state.json").display(),
        dir.join("events.jsonl").display()
    );
    (sim, Config::parse(&toml, "test.toml").unwrap())
}
