//! What the inverter is told over CAN: the same snapshot and decision as the RS485 responder's
//! 0x61/0x62/0x63, as one [`pylon_can::Battery`]. Pure: the daemon sends the frames.
//!
//! The enable bits of 0x35C follow the decision exactly as 0x63's do, and a direction that is not
//! enabled also gets a current limit of 0 in 0x351 (SMA reads no enable bits, and other inverters
//! are told twice). Under comm loss or a stalled safety loop (rule 10) both are off; under the
//! `silent` policy nothing is sent, so the inverter falls back to its own settings.

use pace_proto::PackStatus;
use pylon_can::{Alarm, Battery, Protection, RequestFlags};

use crate::limits::{Direction, can_carry};
use crate::respond::{CommLoss, Snapshot, system_alarm};

/// The CAN side's settings (`[can]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CanSettings {
    /// 0x35E.
    pub manufacturer: String,
    /// Our version (major, minor) for 0x35F.
    pub version: (u8, u8),
    /// Rule 10: a decision older than this is not sent as "enabled", ms.
    pub decision_max_age_ms: u64,
    /// Comm-loss policy.
    pub on_comm_loss: CommLoss,
}

impl Default for CanSettings {
    fn default() -> Self {
        Self {
            manufacturer: "PYLON".into(),
            version: (0, 1),
            decision_max_age_ms: 3000,
            on_comm_loss: CommLoss::Disable,
        }
    }
}

/// A limit in 0.1 A, rounded down (never more than allowed).
fn deci(ma: i32) -> i16 {
    (ma / 100).clamp(0, i32::from(i16::MAX)) as i16
}

fn cell_name(id: u16) -> String {
    format!("p{}c{}", id >> 8, id & 0xFF)
}

/// The battery the inverter is told of now; `None` before the first complete snapshot, or under
/// comm loss with the `silent` policy (send nothing).
pub fn battery(snapshot: &Snapshot, settings: &CanSettings, now_ms: u64) -> Option<Battery> {
    let view = snapshot.view.as_ref()?;
    let serve = snapshot.enable.may_serve(settings.decision_max_age_ms, now_ms);
    if !serve && settings.on_comm_loss == CommLoss::Silent {
        return None;
    }
    let charge = serve && snapshot.enable.charge;
    let discharge = serve && snapshot.enable.discharge;
    let mut requests = RequestFlags::empty();
    requests.set(RequestFlags::CHARGE_ENABLE, charge);
    requests.set(RequestFlags::DISCHARGE_ENABLE, discharge);
    let alarm = system_alarm(snapshot);
    let statuses: Vec<Option<&PackStatus>> = snapshot.packs.iter().map(|p| p.status.as_deref()).collect();
    let blocking = |d: Direction| statuses.iter().flatten().filter(|s| !can_carry(s, d)).count() as u8;
    let offline = snapshot.packs.iter().filter(|p| p.analog.is_none() || p.status.is_none()).count() as u8;
    let ah = |f: fn(&pace_proto::PackAnalog) -> units::CentiAmpHours| {
        let sum: u32 =
            snapshot.packs.iter().filter_map(|p| p.analog.as_deref()).map(|a| u32::from(f(a).raw())).sum();
        u16::try_from(sum / 100).unwrap_or(u16::MAX)
    };
    let temps = view.cell_temp;
    let dc = |t: units::DeciKelvin<units::Pace>| t.to_deci_celsius() as i16;
    Some(Battery {
        charge_voltage_dv: view.charge_voltage_limit.raw() / 100,
        discharge_voltage_dv: view.discharge_voltage_limit.map_or(0, |v| v.raw() / 100),
        charge_current_da: if charge { deci(view.max_charge_ma.unwrap_or(0)) } else { 0 },
        discharge_current_da: if discharge { deci(view.max_discharge_ma.unwrap_or(0)) } else { 0 },
        requests,
        soc_centi_pct: u16::from(view.soc.raw()) * 100,
        soh_pct: u16::from(view.soh_avg.raw()),
        voltage_cv: i32::from(view.voltage.raw()) / 10,
        current_da: units::DeciAmps::from_milliamps(view.current_ma).raw(),
        temperature_dc: temps.map_or(0, |t| dc(t.average)),
        cell_min_max_mv: (view.cell_min.0.raw(), view.cell_max.0.raw()),
        cell_temp_min_max_dc: temps.map_or((0, 0), |t| (dc(t.min.0), dc(t.max.0))),
        extreme_ids: [
            cell_name(view.cell_min.1),
            cell_name(view.cell_max.1),
            temps.map_or_else(String::new, |t| cell_name(t.min.1)),
            temps.map_or_else(String::new, |t| cell_name(t.max.1)),
        ],
        protection: Protection::from_bits_retain(
            u16::from(alarm.protect1.bits()) | u16::from(alarm.protect2.bits()) << 8,
        ),
        alarm: Alarm::from_bits_retain(u16::from(alarm.alarm1.bits()) | u16::from(alarm.alarm2.bits()) << 8),
        modules: snapshot.packs.len().min(255) as u8,
        modules_blocking_charge: blocking(Direction::Charge),
        modules_blocking_discharge: blocking(Direction::Discharge),
        modules_offline: offline,
        capacity_ah: ah(|a| a.full),
        available_ah: ah(|a| a.full),
        cycles: view.cycles_max,
        manufacturer: settings.manufacturer.clone(),
        family: "PACE".into(),
        version: settings.version,
    })
}
