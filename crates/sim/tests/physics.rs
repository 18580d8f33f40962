//! Plant physics and the BMS model, driven with a simulated clock (no I/O, no waiting).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use pace_proto::{Command, ControlState, FaultState, Protect1, Protect2, Reply, Request, Response};
use pylon_proto::units::{DeciAmps, Millivolts};
use pylon_proto::{Management, ManagementFlags};
use sim::{Plant, PlantConfig};

/// What a sensible master tells the inverter: charge up to `charge_mv`, 80 A each way.
fn limits(charge_mv: u16, charge: bool, discharge: bool) -> Management {
    let mut flags = ManagementFlags::empty();
    flags.set(ManagementFlags::CHARGE_ENABLE, charge);
    flags.set(ManagementFlags::DISCHARGE_ENABLE, discharge);
    Management {
        charge_voltage: Millivolts::from_raw(charge_mv),
        discharge_voltage: Millivolts::from_raw(24400),
        charge_current: DeciAmps::from_raw(800),
        discharge_current: DeciAmps::from_raw(-800),
        flags,
    }
}

fn true_soc(plant: &Plant) -> f64 {
    let cells: Vec<_> = plant.packs.iter().flat_map(|p| &p.cells).collect();
    cells.iter().map(|c| c.soc).sum::<f64>() / cells.len() as f64
}

/// The 0x44 block of pack `k` as a host decodes it from the simulator's bytes.
fn status_over_the_wire(plant: &mut Plant, k: usize) -> pace_proto::PackStatus {
    let now = plant.date_time();
    let reply =
        plant.packs[k].answer(&Request { adr: 0, command: Command::Status { pack: 0xFF } }, now).unwrap();
    let mut bytes = Vec::new();
    reply.emit(&mut bytes).unwrap();
    match Reply::parse(0x44, &bytes).unwrap().outcome {
        Ok(Response::Status(s)) => s.packs[0].clone(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn charging_raises_soc_and_cell_voltages() {
    let mut plant = Plant::new(PlantConfig { start_of_day_s: 11.0 * 3600.0, ..PlantConfig::default() });
    plant.inverter.bms = Some(limits(28400, true, true));
    let (soc0, v0) = (true_soc(&plant), plant.packs[0].ocv_v());
    plant.step(1800.0);
    assert!(plant.current_a > 10.0, "PV surplus charges the stack: {} A", plant.current_a);
    assert!(true_soc(&plant) > soc0 + 0.02, "{} -> {}", soc0, true_soc(&plant));
    assert!(plant.packs[0].ocv_v() > v0);
    // Parallel packs share the current by resistance and voltage: all of them take some.
    assert!(
        plant.packs.iter().all(|p| p.current_a > 0.5),
        "{:?}",
        plant.packs.iter().map(|p| p.current_a).collect::<Vec<_>>()
    );
}

#[test]
fn without_bms_limits_the_inverter_uses_its_no_comm_settings() {
    let mut plant = Plant::new(PlantConfig { start_of_day_s: 11.0 * 3600.0, ..PlantConfig::default() });
    assert!(plant.inverter.bms.is_none());
    plant.step(600.0);
    // 24.5 V is below a 60 % pack: no charging at all, the PV only feeds the load.
    assert!(plant.current_a.abs() < 0.01, "{}", plant.current_a);
    assert!(plant.inverter.pv_w < plant.pv_available_w());
}

#[test]
fn disabled_charge_is_obeyed() {
    let mut plant = Plant::new(PlantConfig { start_of_day_s: 11.0 * 3600.0, ..PlantConfig::default() });
    plant.inverter.bms = Some(limits(28400, false, true));
    plant.step(600.0);
    assert!(plant.current_a <= 0.01, "{}", plant.current_a);
}

#[test]
fn a_drifted_cell_is_balanced_while_in_over_voltage_protection() {
    let mut plant = Plant::new(PlantConfig {
        packs: 2,
        soc: 0.96,
        start_of_day_s: 11.0 * 3600.0,
        ..PlantConfig::default()
    });
    plant.command("drift pack 1 120").unwrap();
    plant.inverter.bms = Some(limits(27950, true, true));
    // Charge until the drifted cell trips the BMS.
    let mut tripped = false;
    for _ in 0..7200 {
        plant.step(1.0);
        if plant.packs[0].protect1.contains(Protect1::HIGH_CELL_VOLTAGE) {
            tripped = true;
            break;
        }
    }
    assert!(tripped, "cell 1 of pack 1 never reached over-voltage protection");
    let status = status_over_the_wire(&mut plant, 0);
    assert!(status.protect1.contains(Protect1::HIGH_CELL_VOLTAGE));
    assert_eq!(status.balance.cells_pdf() & 1, 1, "cell 1 is balanced");
    // Both MOSFETs are locked: the pack carries no current, only the balancing resistor bleeds cell 1.
    let soc_before: Vec<f64> = plant.packs[0].cells.iter().map(|c| c.soc).collect();
    plant.step(600.0);
    assert_eq!(plant.packs[0].current_a, 0.0);
    assert!(plant.packs[0].cells[0].soc < soc_before[0]);
    assert!((plant.packs[0].cells[5].soc - soc_before[5]).abs() < 1e-9);
}

#[test]
fn the_bms_dead_band_lets_pack_soc_drift_while_the_coil_stays_right() {
    // Night, small load: about 0.3 A per pack, below the BMS's 0.5 A dead band.
    let mut plant =
        Plant::new(PlantConfig { start_of_day_s: 1.0 * 3600.0, base_load_w: 95.0, ..PlantConfig::default() });
    plant.inverter.bms = Some(limits(27350, true, true));
    let counted0: Vec<f64> = plant.packs.iter().map(|p| p.counted_mah).collect();
    let coil0 = plant.coil.remaining_mah();
    let true0: f64 =
        plant.packs.iter().flat_map(|p| &p.cells).map(|c| c.soc * c.capacity_ah).sum::<f64>() / 8.0;
    plant.step(2.0 * 3600.0);
    let per_pack = plant.current_a / plant.packs.len() as f64;
    assert!(per_pack < -0.2 && per_pack > -0.5, "{per_pack} A per pack");
    let true1: f64 =
        plant.packs.iter().flat_map(|p| &p.cells).map(|c| c.soc * c.capacity_ah).sum::<f64>() / 8.0;
    let used_mah = (true0 - true1) * 1000.0;
    assert!(used_mah > 5000.0, "the stack really delivered {used_mah} mAh");
    // Each pack delivered about a twelfth of it but counted almost nothing: only the short
    // equalising currents between packs at the start pass the 0.5 A dead band.
    let per_pack_mah = used_mah / plant.packs.len() as f64;
    for (p, c0) in plant.packs.iter().zip(&counted0) {
        let counted = c0 - p.counted_mah;
        assert!(
            counted.abs() < 0.25 * per_pack_mah,
            "pack {} counted {counted:.0} of about {per_pack_mah:.0} mAh",
            p.number
        );
    }
    let coil_used = coil0 - plant.coil.remaining_mah();
    assert!((coil_used - used_mah).abs() < 0.1 * used_mah, "coil {coil_used} vs true {used_mah} mAh");
}

#[test]
fn every_fault_kind_shows_up_in_the_right_status_bits() {
    /// A fault kind and how a host sees it in the status bytes.
    type Case = (&'static str, fn(&pace_proto::PackStatus) -> bool);
    let cases: &[Case] = &[
        ("cell-ov", |s| s.protect1.contains(Protect1::HIGH_CELL_VOLTAGE)),
        ("cell-uv", |s| s.protect1.contains(Protect1::LOW_CELL_VOLTAGE)),
        ("overtemp", |s| s.protect2.contains(Protect2::HIGH_CHARGE_TEMP | Protect2::HIGH_DISCHARGE_TEMP)),
        ("undertemp", |s| s.protect2.contains(Protect2::LOW_CHARGE_TEMP | Protect2::LOW_DISCHARGE_TEMP)),
        ("overcurrent", |s| s.protect1.contains(Protect1::DISCHARGE_OVER_CURRENT)),
        ("short-circuit", |s| s.protect1.contains(Protect1::SHORT_CIRCUIT)),
        ("mosfet-fault", |s| s.fault.contains(FaultState::CHARGE_MOSFET | FaultState::DISCHARGE_MOSFET)),
        ("cell-fault", |s| s.fault.contains(FaultState::CELL)),
    ];
    for (kind, check) in cases {
        let mut plant = Plant::new(PlantConfig { packs: 2, ..PlantConfig::default() });
        plant.inverter.bms = Some(limits(27350, true, true));
        assert_eq!(plant.command(&format!("fault pack 2 {kind}")), Ok(format!("pack 2: fault {kind}")));
        plant.step(2.0);
        let faulty = status_over_the_wire(&mut plant, 1);
        assert!(check(&faulty), "{kind}: {faulty:?}");
        let healthy = status_over_the_wire(&mut plant, 0);
        assert!(!check(&healthy), "{kind} leaked to pack 1");
        plant.command("clear pack 2").unwrap();
        plant.step(2.0);
        assert!(!check(&status_over_the_wire(&mut plant, 1)), "{kind} did not clear");
    }
}

#[test]
fn the_bms_refuses_to_turn_both_mosfets_off() {
    let mut plant = Plant::new(PlantConfig { packs: 1, ..PlantConfig::default() });
    let now = plant.date_time();
    let pack = &mut plant.packs[0];
    let off = |charge: bool| {
        let s = pace_proto::MosfetSwitch::Off;
        Request {
            adr: 0,
            command: if charge { Command::ChargeMosfet(s) } else { Command::DischargeMosfet(s) },
        }
    };
    assert!(pack.answer(&off(true), now).unwrap().outcome.is_ok());
    assert!(pack.control.contains(ControlState::CHARGE_MOSFET_OFF));
    let refused = pack.answer(&off(false), now).unwrap();
    assert_eq!(refused.rtn(), pace_proto::Rtn::OperationError);
    assert!(pack.discharge_on());
}

#[test]
fn fault_commands_are_checked() {
    let mut plant = Plant::new(PlantConfig { packs: 2, ..PlantConfig::default() });
    assert_eq!(plant.command("silence pack 3").unwrap_err(), "no pack 3: packs are numbered 1 to 2");
    assert!(
        plant.command("fault pack 1 fire").unwrap_err().starts_with("unknown fault 'fire'; kinds: cell-ov")
    );
    assert!(plant.command("explode").unwrap_err().starts_with("unknown command 'explode'"));
    assert!(plant.command("silence coil").is_ok() && plant.coil.silent);
    assert!(plant.command("restore coil").is_ok() && !plant.coil.silent);
}

#[test]
fn a_plant_day_keeps_energy_balanced() {
    let mut plant = Plant::new(PlantConfig { start_of_day_s: 0.0, soc: 0.5, ..PlantConfig::default() });
    let stored0 = plant.stored_wh();
    let started = std::time::Instant::now();
    for _ in 0..(24 * 60) {
        // A simple master: charge to 27.35 V, discharge down to 24.4 V.
        plant.inverter.bms = Some(limits(27350, true, true));
        plant.step(60.0);
    }
    let elapsed = started.elapsed();
    let l = plant.ledger;
    assert!(l.pv_wh > 5000.0 && l.load_wh > 5000.0, "{l:?}");
    // Supply = demand, by construction of the inverter's flows: no export, PV curtailed.
    assert!((l.pv_wh + l.grid_wh - l.load_wh - l.battery_wh).abs() < 1e-6 * l.load_wh, "{l:?}");
    // Into the battery terminals = stored + resistive losses + balancing, from the cells' state:
    // a check of the physics integration. Tolerance: 0.5 % of the energy that went through.
    let stored = plant.stored_wh() - stored0;
    let throughput = l.pv_wh + l.grid_wh;
    let error = l.battery_wh - stored - l.loss_wh - l.balance_wh;
    assert!(
        error.abs() < 0.005 * throughput,
        "battery {:.1} Wh vs stored {stored:.1} + losses {:.1} + balancing {:.1} (error {error:.2} Wh of {throughput:.0})",
        l.battery_wh,
        l.loss_wh,
        l.balance_wh
    );
    eprintln!("24 h of plant time in {elapsed:?}: {l:?}, stored {stored:.1} Wh, error {error:.3} Wh");
    assert!(elapsed.as_secs() < 60, "{elapsed:?}");
}
