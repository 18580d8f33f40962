//! A simulated plant on 127.0.0.1 ports for the probe tests. Included by path.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use link::Link;
use sim::server::{Lines, Options, Sim};
use sim::{Plant, PlantConfig};

/// A running simulator and the URLs of its lines.
pub struct RunningSim {
    /// The simulator.
    pub sim: Sim,
    /// One URL per pack.
    pub packs: Vec<String>,
    /// The coulomb counter.
    pub coil: String,
    /// The inverter's Modbus port.
    pub inverter: String,
    /// The inverter's BMS port (it polls whoever connects).
    pub bms: String,
}

fn listen() -> (Link, String) {
    let mut l = Link::open("tcp-listen://127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().unwrap();
    (l, format!("tcp://{addr}"))
}

/// Starts a plant of `packs` packs at 11:00 with default options.
pub fn start_sim(packs: usize) -> RunningSim {
    let (mut links, mut urls) = (Vec::new(), Vec::new());
    for _ in 0..packs {
        let (l, u) = listen();
        links.push(l);
        urls.push(u);
    }
    let (coil, coil_url) = listen();
    let (inverter, inverter_url) = listen();
    let (bms_port, bms_url) = listen();
    let plant = Plant::new(PlantConfig { packs, start_of_day_s: 11.0 * 3600.0, ..PlantConfig::default() });
    let sim = Sim::start(
        plant,
        Lines { packs: links, coil, inverter, bms_port: sim::server::BmsPort::Rs485(bms_port) },
        Options::default(),
    );
    RunningSim { sim, packs: urls, coil: coil_url, inverter: inverter_url, bms: bms_url }
}
