//! The state file and the event log (SAFETY.md §5).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use daemon::energy::{Counter, Energy};
use std::os::unix::fs::PermissionsExt;

use daemon::state::*;
use maestro_core::{RebalanceState, Step};

fn dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("p2p-state-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn a_state_survives_a_restart_and_is_private() {
    let d = dir("roundtrip");
    let path = d.join("state.json");
    assert_eq!(load(&path).unwrap(), Persisted::default(), "a missing file is a fresh start");
    let state = Persisted {
        version: 1,
        rebalance: RebalanceState {
            step: Step::Running,
            needed: true,
            threshold_hit: true,
            remembered_output_priority: Some(2),
            ..RebalanceState::default()
        },
        overrides: Overrides { forced_disable: true, charge_voltage_mv: Some(27500) },
        energy: Energy {
            // Sums that no short decimal is: they come back to the last bit all the same.
            stack: Counter { charged_wh: 0.1 + 0.2, discharged_wh: 1_234.567_891_234 * 3.0 },
            packs: vec![Counter { charged_wh: 1e-9 / 3.0, discharged_wh: 98_765.4 + 1e-7 }],
        },
    };
    save(&path, &state).unwrap();
    assert_eq!(load(&path).unwrap(), state, "the energy meters come back to the last bit");
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(!d.join("state.json.tmp").exists());
}

#[test]
fn a_corrupt_state_file_stops_start_up_and_can_be_set_aside() {
    let d = dir("corrupt");
    let path = d.join("state.json");
    std::fs::write(&path, "{\"rebalance\": {\"step\": \"sideways\"}}").unwrap();
    let e = load(&path).unwrap_err().to_string();
    assert!(e.starts_with(&format!("state file {} cannot be read: ", path.display())), "{e}");
    assert!(e.ends_with("fix it, or start with --reset-state to set it aside and begin afresh"), "{e}");
    // It is never replaced silently: it is still there, unchanged.
    assert!(std::fs::read_to_string(&path).unwrap().contains("sideways"));
    let aside = set_aside(&path, 1234).unwrap().unwrap();
    assert!(aside.ends_with("state.json.corrupt-1234"));
    assert_eq!(load(&path).unwrap(), Persisted::default());
}

#[test]
fn the_event_log_appends_json_lines_and_rotates_by_size() {
    let d = dir("events");
    let path = d.join("events.jsonl");
    let log = EventLog::new(path.clone(), 300, 2);
    for k in 0..20 {
        log.append(&EventLine {
            time: format!("2026-11-24T08:00:{k:02}Z"),
            event: format!("event {k}"),
            reasons: vec!["a cell is too hot".into()],
        })
        .unwrap();
    }
    let current = std::fs::read_to_string(&path).unwrap();
    let last: EventLine = serde_json::from_str(current.lines().last().unwrap()).unwrap();
    assert_eq!(last.event, "event 19");
    assert!(std::fs::metadata(&path).unwrap().len() < 300 + 120);
    assert!(d.join("events.jsonl.1").exists() && d.join("events.jsonl.2").exists());
    assert!(!d.join("events.jsonl.3").exists(), "only `keep` rotated files are kept");
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
}

#[test]
fn a_state_file_from_before_the_energy_meters_loads_with_them_at_zero() {
    let d = dir("before-energy");
    let path = d.join("state.json");
    std::fs::write(&path, "{\"version\": 1, \"overrides\": {\"forced_disable\": true}}").unwrap();
    let loaded = load(&path).unwrap();
    assert!(loaded.overrides.forced_disable);
    assert_eq!(loaded.energy, Energy::default());
}

/// Each refusal names `--reset-state`: a state file too big to be one, a link to /dev/zero, a
/// folder, a newer format version, and energy meters no battery can hold.
#[test]
fn state_files_are_read_bounded_and_validated() {
    let d = dir("bounded");
    let path = d.join("state.json");
    let refused = |why: &str| {
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains(why) && e.contains("--reset-state"), "{why}: {e}");
    };
    std::fs::write(&path, vec![b' '; 3 << 20]).unwrap();
    refused("more than 1048576 bytes");
    std::fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &path).unwrap();
    refused("more than 1048576 bytes");
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();
    refused("it is a folder");
    std::fs::remove_dir(&path).unwrap();
    std::fs::write(&path, r#"{"version": 2}"#).unwrap();
    refused("version 2, newer than this pace2pylon reads (1)");
    for (meter, why) in [
        (
            r#"{"stack": {"charged_wh": -5e9, "discharged_wh": 0}, "packs": []}"#,
            "stack charged energy meter holds -5000000000 Wh",
        ),
        (
            r#"{"stack": {"charged_wh": 0, "discharged_wh": 1e308}, "packs": []}"#,
            "stack discharged energy meter",
        ),
        (
            r#"{"stack": {"charged_wh": 0, "discharged_wh": 0}, "packs": [{"charged_wh": 2e9, "discharged_wh": 0}]}"#,
            "pack 1 charged energy meter",
        ),
    ] {
        std::fs::write(&path, format!(r#"{{"version": 1, "energy": {meter}}}"#)).unwrap();
        refused(why);
    }
    std::fs::write(&path, r#"{"version": 1}"#).unwrap();
    assert_eq!(load(&path).unwrap().version, 1);
    let _ = std::fs::remove_dir_all(&d);
}
