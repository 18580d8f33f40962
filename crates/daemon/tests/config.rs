//! Every setting checked against physics: a one-digit slip in the configuration is refused when the
//! file is read, naming the key; NaN and the infinities nowhere pass; the keys keep their order;
//! and the configuration reference documents exactly the bounds the check applies.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use daemon::config::{Config, Error, bounds};

const BASE: &str =
    "[pylon]\nlink = \"tcp-listen://127.0.0.1:5000\"\n\n[[pack]]\nlink = \"tcp://127.0.0.1:4001\"\n";

/// The configuration with `key = value` set in `section` (appended as its own table).
fn with(section: &str, key: &str, value: &str) -> Result<Config, Error> {
    Config::parse(&format!("{BASE}\n[{section}]\n{key} = {value}\n"), "test.toml")
}

/// The refusal of `key = value` in `section`, which must name the key.
fn refused(section: &str, key: &str, value: &str) -> String {
    let e = with(section, key, value).map(|_| ()).expect_err(&format!("{section}.{key} = {value} passed"));
    e.to_string()
}

#[test]
fn settings_are_range_checked_the_slips_of_the_report() {
    for (section, key, value) in [
        ("safety", "charge_voltage_mv", "57350"),
        ("safety", "cell_ov_mv", "36300"),
        ("safety", "cell_uv_mv", "0"),
        ("safety", "cell_ot_c", "inf"),
        ("safety", "cell_ot_c", "1e9"),
        ("safety", "cell_ot_c", "nan"),
        ("safety", "cell_cold_charge_c", "-inf"),
        ("rebalance", "charge_voltage_mv", "65535"),
    ] {
        let e = refused(section, key, value);
        assert!(e.contains(&format!("{section}.")), "{section}.{key} = {value}: {e}");
    }
    // The first alone is a 16-cell voltage: it passes with the rest of a 48 V configuration, and
    // the safety loop then checks it against the cells the packs report.
    let e = refused("safety", "charge_voltage_mv", "57350");
    assert!(e.contains("rebalance.charge_voltage_mv"), "the 24 V rebalance voltage lies below it: {e}");
}

#[test]
fn nan_and_infinities_are_refused_for_every_float_key() {
    let floats = [
        ("safety", "stale_after_s"),
        ("safety", "decision_max_age_s"),
        ("safety", "overcurrent_for_s"),
        ("safety", "cell_ot_c"),
        ("safety", "cell_cold_charge_c"),
        ("safety", "cell_cold_discharge_c"),
        ("safety", "current_derating"),
        ("safety", "limit_rise_per_s"),
        ("safety", "pack_current_guard"),
        ("safety", "recovery_charge_a"),
        ("poll", "period_s"),
        ("poll", "timeout_s"),
        ("poll", "limits_every_s"),
        ("state", "energy_save_s"),
        ("rebalance", "every_days"),
        ("rebalance", "tail_current_a"),
        ("mqtt", "state_every_s"),
    ];
    for (section, key) in floats {
        for value in ["nan", "inf", "-inf", "+nan"] {
            let e = refused(section, key, value);
            assert!(e.contains(&format!("{section}.{key}")), "{section}.{key} = {value}: {e}");
        }
    }
    for value in ["nan", "inf"] {
        let e = Config::parse(
            &format!("{BASE}\n[can]\nlink = \"slcan+tcp://127.0.0.1:5001\"\nperiod_s = {value}\n"),
            "t",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("can.period_s"), "{e}");
    }
}

#[test]
fn every_bound_refuses_just_outside_and_takes_its_ends() {
    // The bounds table is what the check applies: each end passes (where the orderings allow it
    // alone), and a step beyond each end is refused naming the key.
    for b in bounds::BOUNDS {
        let (section, key) = b.key.split_once('.').unwrap();
        let beyond = [b.lo - 1.0, b.hi + 1.0];
        for v in beyond {
            if section == "pack" || v < 0.0 && ["pack", "coil", "inverter", "pylon"].contains(&section) {
                continue;
            }
            let text = match section {
                "coil" | "inverter" => {
                    format!("{BASE}\n[{section}]\nlink = \"tcp://127.0.0.1:4010\"\n{key} = {v}\n")
                }
                "pylon" => format!(
                    "[pylon]\nlink = \"tcp-listen://127.0.0.1:5000\"\n{key} = {v}\n\n[[pack]]\nlink = \"tcp://127.0.0.1:4001\"\n"
                ),
                "can" => format!("{BASE}\n[can]\nlink = \"slcan+tcp://127.0.0.1:5001\"\n{key} = {v}\n"),
                _ => format!("{BASE}\n[{section}]\n{key} = {v}\n"),
            };
            // Integer keys cannot hold a fraction or a negative: toml refuses those by type.
            let text = if v.fract() == 0.0 {
                text.replace(&format!("{v}\n"), &format!("{}\n", v as i64))
            } else {
                text
            };
            let e = Config::parse(&text, "t").map(|_| ()).expect_err(&format!("{} = {v} passed", b.key));
            assert!(e.to_string().contains(key), "{} = {v}: {e}", b.key);
        }
    }
    let e = Config::parse(&format!("{BASE}adr = 17\n"), "t").unwrap_err().to_string();
    assert!(e.contains("pack[1].adr"), "{e}");
}

#[test]
fn cross_key_orderings_are_checked() {
    for (text, key) in [
        ("[safety]\ncell_ov_mv = 3500\ncell_ov_release_mv = 3550\n", "safety.cell_ov_release_mv"),
        ("[safety]\ncell_uv_mv = 3000\ncell_uv_release_mv = 2950\n", "safety.cell_uv_release_mv"),
        ("[safety]\ncell_cold_charge_c = 0.0\ncell_cold_discharge_c = 0.0\n", "safety.cell_cold_discharge_c"),
        ("[rebalance]\ncharge_voltage_mv = 27300\nthreshold_mv = 27200\n", "rebalance.charge_voltage_mv"),
        ("[rebalance]\ncharge_voltage_mv = 29250\nthreshold_mv = 29000\n", "rebalance.charge_voltage_mv"),
        ("[rebalance]\nthreshold_mv = 28000\n", "rebalance.threshold_mv"),
        ("[rebalance]\nthreshold_mv = 27000\n", "rebalance.threshold_mv"),
        ("[rebalance]\nregular_capacity_mah = 240000\n", "rebalance.regular_capacity_mah"),
        ("[safety]\ncharge_voltage_mv = 31000\n", "safety.charge_voltage_mv"),
        ("[poll]\nperiod_s = 3.0\ntimeout_s = 1.0\n", "poll.period_s"),
        ("[poll]\ntimeout_s = 1.0\n", "poll.timeout_s"),
        ("[safety.taper]\ncharge_cell_mv = [[3400, 1.0], [3700, 0.1]]\n", "safety.taper.charge_cell_mv"),
        (
            "[safety.taper]\ndischarge_cell_mv = [[2700, 0.0], [3100, 1.0]]\n",
            "safety.taper.discharge_cell_mv",
        ),
        ("[safety.taper]\ncharge_temp_c = [[-5.0, 0.0], [15.0, 1.0]]\n", "safety.taper.charge_temp_c"),
        ("[safety.taper]\ndischarge_temp_c = [[-15.0, 0.0], [60.0, 1.0]]\n", "safety.taper.discharge_temp_c"),
    ] {
        let e = Config::parse(&format!("{BASE}\n{text}"), "t").map(|_| ()).expect_err(text);
        assert!(e.to_string().contains(key), "{text}: {e}");
    }
    // A 48 V stack, consistently configured, passes.
    let ok =
        "[safety]\ncharge_voltage_mv = 54700\n[rebalance]\ncharge_voltage_mv = 55900\nthreshold_mv = 55600\n";
    Config::parse(&format!("{BASE}\n{ok}"), "t").unwrap();
}

#[test]
fn a_taper_row_with_a_third_number_is_refused_not_cut() {
    let e = refused("safety.taper", "charge_cell_mv", "[[3400, 1.0, 7], [3500, 0.5]]");
    assert!(e.contains("two numbers, not 3"), "{e}");
    let e = refused("safety.taper", "charge_cell_mv", "[[3400]]");
    assert!(e.contains("two numbers, not 1"), "{e}");
    let ok = with("safety.taper", "charge_cell_mv", "[[3400, 1.0], [3500, 0.5]]").unwrap();
    assert_eq!(ok.safety.taper.charge_cell_mv.len(), 2);
    // The effective configuration shows the rows as they were.
    assert!(ok.to_toml().contains("[3400.0, 1.0]"), "{}", ok.to_toml());
}

#[test]
fn the_configuration_reference_documents_every_bound() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/configuration.md")).unwrap();
    let table = bounds::markdown_table();
    assert!(
        doc.contains(&table),
        "docs/configuration.md must hold the bounds table exactly as the check applies it:\n{table}"
    );
}

#[test]
fn the_defaults_and_the_example_pass() {
    Config::parse(BASE, "t").unwrap();
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../dist/pace2pylon.example.toml"))
            .unwrap();
    Config::parse(&example, "example").unwrap();
}
