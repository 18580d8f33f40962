//! The daemon's [`Controller`] against the simulated plant in simulated time: no thread, no
//! socket, no clock. The plant's packs are "read" each second as the pollers would read them, the
//! inverter "polls" 0x63 through the real responder and obeys it, the controller's targets and
//! commands are carried out at once. A day of plant time runs in well under a second, the
//! rebalance's hours-long bounds (the 4 h top hold, 36 h settling, the 3-day re-trigger guard)
//! included — which the real-time end-to-end tests cannot reach.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use daemon::Config;
use daemon::core::{Controller, Inputs, Now};
use daemon::runtime::{InverterReadings, Order, PackReadings};
use daemon::state::Overrides;
use maestro_core::{Millis, Step};
use pylon_proto::{Dialect, ManagementFlags, Reply, Response};
use sim::{Plant, PlantConfig};
use translator::PackLimits;
use translator::respond::{EmulationSettings, respond};
use units::Millivolts;

/// The plant and the controller, stepped together one plant second at a time.
struct World {
    plant: Plant,
    controller: Controller,
    overrides: Overrides,
    /// Plant seconds since the start.
    t: u64,
    /// Wall clock at t = 0.
    epoch: jiff::Timestamp,
    orders: Vec<Order>,
    events: Vec<String>,
    /// (t, charge, discharge) of every step.
    told: Vec<(u64, bool, bool)>,
}

fn config(packs: usize, extra: &str) -> Config {
    let mut toml =
        String::from("[pylon]\nlink = \"tcp://127.0.0.1:1\"\n\n[coil]\nlink = \"tcp://127.0.0.1:2\"\n\n");
    for k in 0..packs {
        toml += &format!("[[pack]]\nlink = \"tcp://127.0.0.1:{}\"\n\n", 10 + k);
    }
    toml += "[tariff]\ntime_zone = \"UTC\"\n\n";
    toml += extra;
    Config::parse(&toml, "world.toml").unwrap()
}

/// The sim's default configuration blocks, as the daemon reads them (D5, D7, D9, DB, D3).
fn limits(cells: u16) -> PackLimits {
    PackLimits {
        pack_ov_alarm: Some(Millivolts::from_raw(3600 * cells)),
        pack_uv_alarm: Some(Millivolts::from_raw(2800 * cells)),
        pack_uv_protect: Some(Millivolts::from_raw(2500 * cells)),
        cell_uv_protect: Some(Millivolts::from_raw(2500)),
        charge_oc_alarm_a: Some(30),
        discharge_oc_alarm_a: Some(30),
    }
}

impl World {
    fn new(plant: PlantConfig, config: &Config) -> Self {
        let controller = Controller::new(config, Default::default());
        Self {
            plant: Plant::new(plant),
            controller,
            overrides: Overrides::default(),
            t: 0,
            epoch: "2026-12-01T10:00:00Z".parse().unwrap(),
            orders: Vec::new(),
            events: Vec::new(),
            told: Vec::new(),
        }
    }

    fn now(&self) -> Now {
        Now { mono: Millis(self.t * 1000), wall: self.epoch + jiff::SignedDuration::from_secs(self.t as i64) }
    }

    /// One plant second: read, decide, answer the inverter's 0x63, carry out, advance.
    fn step(&mut self) {
        let now = self.now();
        let cells = self.plant.config.cells as u16;
        let readings: Vec<PackReadings> = self
            .plant
            .packs
            .iter()
            .map(|p| PackReadings {
                analog: Some((p.analog(), now.mono)),
                status: Some((p.status(), now.mono)),
                limits: limits(cells),
                limits_read: true,
                ..PackReadings::default()
            })
            .collect();
        let r = &self.plant.inverter.registers;
        let inverter = InverterReadings {
            output_priority: Some(r.get(301)),
            charging_priority: Some(r.get(331)),
            ..InverterReadings::default()
        };
        let inputs = Inputs {
            packs: &readings,
            coil: Some((self.plant.coil.registers.reading, now.mono)),
            coil_settings: Some(self.plant.coil.registers.settings),
            inverter: &inverter,
            overrides: &self.overrides,
            order: self.orders.pop(),
        };
        let out = self.controller.step(now, &inputs);
        // The inverter polls 0x63 through the real responder and obeys what it is told.
        let reply = respond(&out.snapshot, b"~200246630000FDA9\r", &EmulationSettings::default(), now.mono.0);
        if let Some(bytes) = reply {
            if let Ok(Response::SystemManagement(m)) =
                Reply::parse(0x63, &bytes, Dialect::default()).unwrap().outcome
            {
                self.told.push((
                    self.t,
                    m.flags.contains(ManagementFlags::CHARGE_ENABLE),
                    m.flags.contains(ManagementFlags::DISCHARGE_ENABLE),
                ));
                self.plant.inverter.bms = Some(m);
            }
        }
        // A perfect keeper: targets and commands take effect at once.
        let t = out.targets;
        if let Some(v) = t.output_priority {
            self.plant.inverter.registers.set(301, v);
        }
        if let Some(v) = t.charging_priority {
            self.plant.inverter.registers.set(331, v);
        }
        if let Some((capacity_mah, full_voltage_cv)) = t.coil {
            let s = &mut self.plant.coil.registers.settings;
            (s.capacity_mah, s.full_voltage_cv) = (capacity_mah, full_voltage_cv);
            self.plant.coil.apply(coil_modbus::Effect::SettingsChanged);
        }
        for action in out.coil_actions {
            if let maestro_core::Action::CalibrateCoilFull { capacity_mah, full_voltage_cv } = action {
                let s = &mut self.plant.coil.registers.settings;
                (s.capacity_mah, s.full_voltage_cv) = (capacity_mah, full_voltage_cv);
                self.plant.coil.apply(coil_modbus::Effect::SettingsChanged);
                self.plant.coil.apply(coil_modbus::Effect::SetLevel(coil_modbus::Level::Full));
            }
        }
        let date = self.plant.date_time();
        for (k, command) in out.pack_commands {
            let adr = self.plant.packs[k].adr;
            self.plant.packs[k].answer(&pace_proto::Request { adr, command }, date);
        }
        self.events
            .extend(out.events.into_iter().map(|(text, why)| format!("{:>7} s {text} {why:?}", self.t)));
        self.plant.step(1.0);
        self.t += 1;
    }

    fn run(&mut self, seconds: u64) {
        for _ in 0..seconds {
            self.step();
        }
    }

    fn run_until(&mut self, limit_s: u64, what: &str, f: impl Fn(&World) -> bool) -> u64 {
        let start = self.t;
        while !f(self) {
            assert!(
                self.t - start < limit_s,
                "not within {limit_s} plant s: {what}\n{}",
                self.events.join("\n")
            );
            self.step();
        }
        self.t - start
    }

    fn logged(&self, needle: &str) -> bool {
        self.events.iter().any(|e| e.contains(needle))
    }
}

/// The whole rebalance with the default bounds, in plant time: a cell drifts low, rule 14 starts
/// it, the top hold keeps the charge at the top, the completion unlocks first and never tells the
/// inverter both off, settling ends, and a cell falling low again within 3 days raises
/// `pack_imbalance` instead of a second run.
#[test]
fn a_whole_rebalance_with_the_default_bounds_in_plant_time() {
    let config = config(2, "[rebalance]\ncapacity_mah = 44000\nregular_capacity_mah = 39000\n");
    let plant = PlantConfig { packs: 2, start_of_day_s: 10.0 * 3600.0, ..PlantConfig::default() };
    let mut w = World::new(plant, &config);
    w.run(30);
    assert!(w.told.last().is_some_and(|&(_, c, d)| c && d), "{:?}", w.told.last());
    w.plant.command("drift pack 1 -580").unwrap();
    w.run_until(60, "rule 14 starts a rebalance", |w| w.logged("rebalance: Started(CellUnderVoltage)"));
    let hit = w.run_until(12 * 3600, "the threshold", |w| w.logged("rebalance: ThresholdHit"));
    let completed = w.run_until(12 * 3600, "completion", |w| w.logged("rebalance: Completed"));
    eprintln!("threshold hit after {hit} plant s, completed {completed} plant s later");
    assert!(w.logged("rebalance: Unlocking"));
    let at = |needle: &str| w.events.iter().position(|e| e.contains(needle)).unwrap();
    assert!(at("rebalance: ThresholdHit") < at("rebalance: Unlocking"));
    assert!(at("rebalance: Unlocking") < at("rebalance: Completed"));
    // Never both off from the threshold to the end of the completion.
    let t_hit = w.events[at("rebalance: ThresholdHit")]
        .trim_start()
        .split(' ')
        .next()
        .unwrap()
        .parse::<u64>()
        .unwrap();
    let both_off: Vec<_> = w.told.iter().filter(|(t, c, d)| *t >= t_hit && !c && !d).collect();
    assert!(both_off.is_empty(), "both off at {both_off:?}\n{}", w.events.join("\n"));
    assert_eq!(w.controller.rebalance().step, Step::Settling);
    let settled =
        w.run_until(48 * 3600, "settling ends", |w| w.controller.rebalance().step != Step::Settling);
    eprintln!("settled {settled} plant s after completion");
    assert!(settled <= 36 * 3600, "settle_max_s bounds settling: {settled} s");
    // The cell that drifted falls low again as the stack empties: within 3 days of the completion
    // that is pack_imbalance, not a new run.
    w.run_until(3 * 86400 - settled - 60, "pack_imbalance", |w| w.logged("pack_imbalance: pack 1 cell 1"));
    assert_eq!(
        w.events.iter().filter(|e| e.contains("rebalance: Started")).count(),
        1,
        "{}",
        w.events.join("\n")
    );
    assert_eq!(w.controller.rebalance().imbalance.map(|i| (i.pack, i.cell)), Some((1, 1)));
    // From the top of the charge to the end, through completion, settling and the alarm, the
    // inverter was never told both off. (It was, for 11 s after the completion, before the guard
    // took the current circulating into the freshly unlocked pack into account.)
    let both_off: Vec<_> = w.told.iter().filter(|(t, c, d)| *t >= t_hit && !c && !d).collect();
    assert!(both_off.is_empty(), "both off at {both_off:?}\n{}", w.events.join("\n"));
    eprintln!("{}", w.events.join("\n"));
}

/// The cascade in plant time: 3 packs, an 80 A inverter charging from the grid and the sun, a
/// cell of pack 1 drifting 50 mV a minute for 10 minutes; nothing trips and no fuse blows.
#[test]
fn the_cascade_in_plant_time_trips_nothing() {
    let config = config(3, "");
    let plant = PlantConfig { packs: 3, start_of_day_s: 10.0 * 3600.0, ..PlantConfig::default() };
    let mut w = World::new(plant, &config);
    for c in ["inverter set 332 800", "inverter set 333 800", "inverter set 331 2"] {
        w.plant.command(c).unwrap();
    }
    w.run(60);
    assert!(w.plant.current_a > 70.0, "{}", w.plant.current_a);
    let mut worst = 0.0f64;
    for _ in 0..10 {
        w.plant.command("drift pack 1 -50").unwrap();
        for _ in 0..60 {
            w.step();
            worst = worst.max(w.plant.packs.iter().map(|p| p.current_a.abs()).fold(0.0, f64::max));
        }
    }
    let trips: u32 = w.plant.packs.iter().map(|p| p.charge_oc_trips + p.discharge_oc_trips).sum();
    eprintln!(
        "cascade in plant time: worst pack {worst:.1} A, trips {trips}, fuses {}",
        w.plant.blown_fuses()
    );
    assert!(worst < 35.0, "{worst}");
    assert_eq!((trips, w.plant.blown_fuses()), (0, 0));
    assert!(w.plant.current_a > 30.0, "still charging: {}", w.plant.current_a);
}
