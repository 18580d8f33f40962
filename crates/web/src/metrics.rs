//! The status in the Prometheus text exposition format (version 0.0.4), base units throughout
//! (volts, amperes, watts, seconds, degrees Celsius).

use std::fmt::Write;

use daemon::status::{LinkStats, REASON_CODES, Status};

/// One metric family being written: its `# HELP` / `# TYPE` header once, then samples.
struct Out {
    text: String,
}

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP pace2pylon_{name} {help}\n# TYPE pace2pylon_{name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let _ = write!(self.text, "pace2pylon_{name}");
        if !labels.is_empty() {
            self.text.push('{');
            for (k, (key, v)) in labels.iter().enumerate() {
                if k > 0 {
                    self.text.push(',');
                }
                let escaped = v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
                let _ = write!(self.text, "{key}=\"{escaped}\"");
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }

    /// A family with one unlabelled sample, skipped when the value is unknown.
    fn single(&mut self, name: &str, kind: &str, help: &str, value: Option<f64>) {
        if let Some(v) = value {
            self.family(name, kind, help);
            self.sample(name, &[], v);
        }
    }
}

fn flag(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

/// Renders every metric.
pub fn render(s: &Status) -> String {
    let mut o = Out { text: String::with_capacity(16 * 1024) };
    o.family("info", "gauge", "pace2pylon's version (always 1).");
    o.sample("info", &[("version", s.version)], 1.0);
    o.single("uptime_seconds", "gauge", "Seconds since the daemon started.", Some(s.uptime_s as f64));
    o.single(
        "charge_enabled",
        "gauge",
        "Charging enabled, as the inverter is told (1/0).",
        Some(flag(s.charge_enabled)),
    );
    o.single(
        "discharge_enabled",
        "gauge",
        "Discharging enabled, as the inverter is told (1/0).",
        Some(flag(s.discharge_enabled)),
    );
    o.single(
        "decision_age_seconds",
        "gauge",
        "Age of the safety loop's last decision.",
        s.decision_age_ms.map(|a| a as f64 / 1000.0),
    );
    o.single(
        "data_stale",
        "gauge",
        "Some source's data is stale or missing (1/0).",
        Some(flag(s.data_stale)),
    );
    o.single(
        "forced_disable",
        "gauge",
        "The operator forced disable (1/0).",
        Some(flag(s.overrides.forced_disable)),
    );
    o.family("reason_active", "gauge", "Safety reasons now active (1/0), by SAFETY.md rule name.");
    for code in REASON_CODES {
        o.sample("reason_active", &[("reason", code)], flag(s.reasons.iter().any(|r| r.code == code)));
    }
    o.family(
        "pack_join_delta_volts",
        "gauge",
        "A pack waiting to join the bus (state joining) or left out (isolated): its voltage minus the bus's.",
    );
    for r in s.reasons.iter().filter(|r| matches!(r.code, "pack_joining" | "pack_isolated")) {
        let (Some(pack), Some(delta)) = (r.pack, r.delta_mv) else { continue };
        let state = if r.code == "pack_joining" { "joining" } else { "isolated" };
        o.sample(
            "pack_join_delta_volts",
            &[("pack", &pack.to_string()), ("state", state)],
            f64::from(delta) / 1000.0,
        );
    }

    if let Some(st) = &s.stack {
        let mv = |v: u16| f64::from(v) / 1000.0;
        let ma = |v: i32| f64::from(v) / 1000.0;
        o.single("stack_voltage_volts", "gauge", "Stack voltage (mean of packs).", Some(mv(st.voltage_mv)));
        o.single("stack_current_amperes", "gauge", "Stack current, + charging.", Some(ma(st.current_ma)));
        o.single("stack_power_watts", "gauge", "Stack power, + charging.", Some(st.power_w as f64));
        o.single(
            "stack_soc_percent",
            "gauge",
            "State of charge the inverter is told.",
            Some(f64::from(st.soc_pct)),
        );
        o.single("stack_cell_min_volts", "gauge", "Lowest cell of the stack.", Some(mv(st.cell_min_mv)));
        o.single("stack_cell_max_volts", "gauge", "Highest cell of the stack.", Some(mv(st.cell_max_mv)));
        o.single(
            "stack_charge_voltage_limit_volts",
            "gauge",
            "Charge voltage limit sent.",
            Some(mv(st.charge_voltage_mv)),
        );
        o.single(
            "stack_charge_current_limit_amperes",
            "gauge",
            "Charge current limit sent.",
            st.charge_current_ma.map(ma),
        );
        o.single(
            "stack_discharge_current_limit_amperes",
            "gauge",
            "Discharge current limit sent.",
            st.discharge_current_ma.map(ma),
        );
    }

    // Counters kept in the state file: they never fall, across restarts too.
    o.single(
        "stack_energy_charged_kwh_total",
        "counter",
        "Energy into the stack since its counters began (the coil's measure while it reads).",
        Some(s.energy.charged_kwh),
    );
    o.single(
        "stack_energy_discharged_kwh_total",
        "counter",
        "Energy out of the stack since its counters began (the coil's measure while it reads).",
        Some(s.energy.discharged_kwh),
    );
    for (way, into) in [("charged", true), ("discharged", false)] {
        let name = format!("pack_energy_{way}_kwh_total");
        let help =
            format!("Energy {} the pack since its counters began.", if into { "into" } else { "out of" });
        o.family(&name, "counter", &help);
        for p in &s.packs {
            let v = if into { p.energy_charged_kwh } else { p.energy_discharged_kwh };
            o.sample(&name, &[("pack", &p.number.to_string())], v);
        }
    }

    if let Some(l) = &s.limits {
        let directions = [("charge", &l.charge), ("discharge", &l.discharge)];
        let each = |o: &mut Out,
                    name: &str,
                    help: &str,
                    value: &dyn Fn(&daemon::status::DirectionLimit) -> Option<f64>| {
            o.family(name, "gauge", help);
            for (d, x) in directions {
                if let Some(v) = value(x) {
                    o.sample(name, &[("direction", d)], v);
                }
            }
        };
        let amps = |ma: Option<i32>| ma.map(|v| f64::from(v) / 1000.0);
        each(&mut o, "limit_packs", "Packs that can carry current this way (SAFETY.md 2a n).", &|x| {
            Some(x.packs as f64)
        });
        each(&mut o, "limit_base_amperes", "Base limit: derating x n x the weakest pack's alarm.", &|x| {
            amps(x.base_ma)
        });
        each(
            &mut o,
            "limit_taper_factor",
            "The lowest taper factor (cell voltage, cell temperature).",
            &|x| Some(x.taper),
        );
        each(&mut o, "limit_guard_active", "The per-pack guard holds the limit (1/0).", &|x| {
            Some(flag(x.guard.is_some()))
        });
        each(
            &mut o,
            "limit_guard_cut_amperes",
            "The limit the per-pack guard cut to (while active).",
            &|x| amps(x.guard.as_ref().map(|g| g.cut_ma)),
        );
        each(&mut o, "limit_amperes", "The current limit the inverter is told.", &|x| amps(x.limit_ma));
        o.family("limit_factor", "gauge", "Each taper table's factor, by direction and table.");
        for (d, x) in directions {
            for f in &x.factors {
                o.sample("limit_factor", &[("direction", d), ("table", f.table)], f.factor);
            }
        }
    }

    let packs: Vec<String> = s.packs.iter().map(|p| p.number.to_string()).collect();
    let per_pack = |o: &mut Out, name: &str, help: &str, value: &dyn Fn(usize) -> Option<f64>| {
        o.family(name, "gauge", help);
        for (k, label) in packs.iter().enumerate() {
            if let Some(v) = value(k) {
                o.sample(name, &[("pack", label)], v);
            }
        }
    };
    let p = &s.packs;
    per_pack(&mut o, "pack_voltage_volts", "Pack voltage.", &|k| {
        p[k].voltage_mv.map(|v| f64::from(v) / 1000.0)
    });
    per_pack(&mut o, "pack_current_amperes", "Pack current, + charging.", &|k| {
        p[k].current_ma.map(|v| f64::from(v) / 1000.0)
    });
    per_pack(&mut o, "pack_charge_share_amperes", "The pack's share of the charge limit (0x92).", &|k| {
        p[k].share_charge_ma.map(|v| f64::from(v) / 1000.0)
    });
    per_pack(
        &mut o,
        "pack_discharge_share_amperes",
        "The pack's share of the discharge limit (0x92).",
        &|k| p[k].share_discharge_ma.map(|v| f64::from(v) / 1000.0),
    );
    per_pack(&mut o, "pack_charge_alarm_amperes", "The pack's charge over-current alarm.", &|k| {
        p[k].charge_alarm_a.map(f64::from)
    });
    per_pack(&mut o, "pack_discharge_alarm_amperes", "The pack's discharge over-current alarm.", &|k| {
        p[k].discharge_alarm_a.map(f64::from)
    });
    per_pack(&mut o, "pack_soc_percent", "Pack state of charge (remaining / full).", &|k| {
        p[k].soc_pct.map(f64::from)
    });
    per_pack(&mut o, "pack_remaining_amperehours", "Pack remaining capacity.", &|k| {
        p[k].remaining_mah.map(|v| f64::from(v) / 1000.0)
    });
    per_pack(&mut o, "pack_cycles", "Pack cycle count.", &|k| p[k].cycles.map(f64::from));
    per_pack(&mut o, "pack_data_age_seconds", "Age of the pack's last analog reply.", &|k| {
        p[k].age_ms.map(|a| a as f64 / 1000.0)
    });
    per_pack(&mut o, "pack_stale", "The pack has not answered within stale_after_s (1/0).", &|k| {
        Some(flag(p[k].stale))
    });
    per_pack(&mut o, "pack_poll_cycle_seconds", "Time of the pack's last 0x42 + 0x44 exchange.", &|k| {
        p[k].poll_cycle_ms.map(|v| v / 1000.0)
    });
    o.family("pack_cell_voltage_volts", "gauge", "Cell voltage.");
    for pack in p {
        let n = pack.number.to_string();
        for (c, mv) in pack.cells_mv.iter().enumerate() {
            o.sample(
                "pack_cell_voltage_volts",
                &[("pack", &n), ("cell", &(c + 1).to_string())],
                f64::from(*mv) / 1000.0,
            );
        }
    }
    o.family("pack_cell_balancing", "gauge", "The BMS balances this cell (1/0).");
    for pack in p {
        let n = pack.number.to_string();
        for c in 1..=pack.cells_mv.len() {
            o.sample(
                "pack_cell_balancing",
                &[("pack", &n), ("cell", &c.to_string())],
                flag(pack.balancing.contains(&c)),
            );
        }
    }
    o.family("pack_temperature_celsius", "gauge", "Pack temperatures: cell1..cell4, mosfet, environment.");
    for pack in p {
        let n = pack.number.to_string();
        let count = pack.temps_dc.len();
        for (k, t) in pack.temps_dc.iter().enumerate() {
            // The Pace order: cell sensors, then MOSFET, then environment.
            let sensor = match count.checked_sub(k) {
                Some(2) if count >= 3 => "mosfet".to_owned(),
                Some(1) if count >= 3 => "environment".to_owned(),
                _ => format!("cell{}", k + 1),
            };
            o.sample("pack_temperature_celsius", &[("pack", &n), ("sensor", &sensor)], f64::from(*t) / 10.0);
        }
    }

    let c = &s.coil;
    if c.configured {
        o.single("coil_soc_percent", "gauge", "Coulomb counter state of charge.", c.soc_pct.map(f64::from));
        o.single(
            "coil_voltage_volts",
            "gauge",
            "Coulomb counter voltage.",
            c.voltage_mv.map(|v| f64::from(v) / 1000.0),
        );
        o.single(
            "coil_current_amperes",
            "gauge",
            "Coulomb counter current, + charging.",
            c.current_ma.map(|v| f64::from(v) / 1000.0),
        );
        o.single(
            "coil_remaining_amperehours",
            "gauge",
            "Coulomb counter remaining capacity.",
            c.remaining_mah.map(|v| f64::from(v) / 1000.0),
        );
        o.single(
            "coil_data_age_seconds",
            "gauge",
            "Age of the counter's last reading.",
            c.age_ms.map(|a| a as f64 / 1000.0),
        );
        o.single(
            "coil_stale",
            "gauge",
            "The counter has not answered within stale_after_s (1/0).",
            Some(flag(c.stale)),
        );
    }
    let i = &s.inverter;
    if i.configured {
        let w = |v: Option<i32>| v.map(f64::from);
        o.single("inverter_pv_power_watts", "gauge", "PV power (inverter register 223).", w(i.pv_power_w));
        o.single(
            "inverter_load_power_watts",
            "gauge",
            "Output active power (register 213).",
            w(i.load_power_w),
        );
        o.single("inverter_grid_power_watts", "gauge", "Mains power (register 204).", w(i.grid_power_w));
        o.single(
            "inverter_battery_power_watts",
            "gauge",
            "Battery power as the inverter sees it (register 217).",
            w(i.battery_power_w),
        );
        o.single(
            "inverter_output_priority",
            "gauge",
            "Output priority (register 301).",
            i.output_priority.map(f64::from),
        );
        o.single(
            "inverter_charging_priority",
            "gauge",
            "Charging priority (register 331).",
            i.charging_priority.map(f64::from),
        );
        o.single(
            "inverter_data_age_seconds",
            "gauge",
            "Age of the inverter's live registers.",
            i.age_ms.map(|a| a as f64 / 1000.0),
        );
        o.single(
            "inverter_stale",
            "gauge",
            "The inverter has not answered within stale_after_s (1/0).",
            Some(flag(i.stale)),
        );
    }

    o.family("rebalance_step", "gauge", "The rebalance step (1 for the current one).");
    let step = serde_json::to_value(s.rebalance.step).ok();
    for name in ["idle", "running", "completing", "settling"] {
        o.sample(
            "rebalance_step",
            &[("step", name)],
            flag(step.as_ref().and_then(|v| v.as_str()) == Some(name)),
        );
    }
    o.single(
        "rebalance_needed",
        "gauge",
        "Rule 14 asked for a rebalance (1/0).",
        Some(flag(s.rebalance.needed)),
    );

    let mut links: Vec<(String, LinkStats)> =
        s.packs.iter().map(|p| (format!("pack{}", p.number), p.link_stats)).collect();
    if c.configured {
        links.push(("coil".into(), c.link_stats));
    }
    if i.configured {
        links.push(("inverter".into(), i.link_stats));
    }
    if let Some(pylon) = &s.pylon {
        links.push(("pylon".into(), pylon.link_stats));
    }
    if let Some(can) = &s.can {
        links.push(("can".into(), can.link_stats));
    }
    type Counter = (&'static str, &'static str, fn(&LinkStats) -> u64);
    let counters: [Counter; 6] = [
        ("link_frames_total", "Valid frames received.", |l| l.frames),
        ("link_timeouts_total", "Requests without a valid reply in time.", |l| l.timeouts),
        ("link_checksum_errors_total", "Frames failing their checksum or CRC.", |l| l.checksum_errors),
        ("link_reconnects_total", "Reconnections.", |l| l.reconnects),
        ("link_received_bytes_total", "Bytes received.", |l| l.bytes_in),
        ("link_sent_bytes_total", "Bytes sent.", |l| l.bytes_out),
    ];
    for (name, help, get) in counters {
        o.family(name, "counter", help);
        for (link, stats) in &links {
            o.sample(name, &[("link", link)], get(stats) as f64);
        }
    }
    o.family("link_connected", "gauge", "The line is connected (1/0).");
    for (link, stats) in &links {
        o.sample("link_connected", &[("link", link)], flag(stats.connected));
    }

    if let Some(pylon) = &s.pylon {
        o.single(
            "pylon_replies_total",
            "counter",
            "Replies sent to the inverter.",
            Some(pylon.replies as f64),
        );
        o.single(
            "pylon_unanswered_total",
            "counter",
            "Frames from the inverter not answered (other address, no data yet, silent policy).",
            Some(pylon.unanswered as f64),
        );
        o.family(
            "pylon_reply_latency_seconds",
            "histogram",
            "From the request's last byte read to the reply written.",
        );
        let mut cumulative = 0;
        for (bound, count) in &pylon.latency_buckets {
            cumulative += count;
            let le = bound.map_or("+Inf".to_owned(), |us| (us as f64 / 1e6).to_string());
            o.sample("pylon_reply_latency_seconds_bucket", &[("le", &le)], cumulative as f64);
        }
        o.sample("pylon_reply_latency_seconds_sum", &[], pylon.latency_sum_us as f64 / 1e6);
        o.sample("pylon_reply_latency_seconds_count", &[], pylon.replies as f64);
    }
    if let Some(can) = &s.can {
        o.single(
            "can_frames_sent_total",
            "counter",
            "CAN frames sent to the inverter.",
            Some(can.frames_sent as f64),
        );
        o.single(
            "can_urgent_sets_total",
            "counter",
            "Limits and enable bits sent at once because they changed.",
            Some(can.urgent_sets as f64),
        );
        o.single(
            "can_heartbeats_total",
            "counter",
            "The inverter's 0x305 heartbeats received.",
            Some(can.heartbeats as f64),
        );
        o.single(
            "can_peer_alarm",
            "gauge",
            "No heartbeat from the inverter for can.peer_timeout_s (1/0).",
            Some(flag(can.peer_alarm)),
        );
    }
    o.text
}
