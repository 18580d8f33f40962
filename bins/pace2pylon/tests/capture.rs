//! `pace2pylon run --capture DIR` against `pace2pylon sim` with a fault injected and cleared, then
//! `pace2pylon replay DIR`: the replay takes the same decisions, in the same order and with the
//! same reasons, as the live run wrote in its event log, makes the same writes on every line,
//! and answers the inverter as the live run did. Bad capture lines are named and passed over.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use test_support::process::{Guard, free_port, sim_printing_config};

const BIN: &str = env!("CARGO_BIN_EXE_pace2pylon");

fn events(dir: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("events.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The capture folder `run --capture DIR` made inside `dir` (its only `capture-…` folder).
fn capture_folder(dir: &std::path::Path) -> std::path::PathBuf {
    let folders: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() && p.file_name().unwrap().to_string_lossy().starts_with("capture-"))
        .collect();
    assert_eq!(folders.len(), 1, "{folders:?}");
    folders[0].clone()
}

/// A decision as the event log says it: `charge …, discharge …` and its reasons.
type Decision = (String, Vec<String>);

/// The decisions of an event list.
fn decisions(events: &[Value]) -> Vec<Decision> {
    events
        .iter()
        .filter(|e| e["event"].as_str().is_some_and(|t| t.starts_with("charge ")))
        .map(|e| {
            let reasons = e["reasons"]
                .as_array()
                .map_or_else(Vec::new, |r| r.iter().map(|x| x.as_str().unwrap().to_owned()).collect());
            (e["event"].as_str().unwrap().to_owned(), reasons)
        })
        .collect()
}

#[test]
fn a_replayed_capture_takes_the_decisions_of_the_live_run() {
    let (mut sim, sim_config, _out) = sim_printing_config(BIN, 2);
    let dir = std::env::temp_dir().join(format!("p2p-capture-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let http = free_port();
    let config = format!(
        "{sim_config}\n[state]\nstate_file = \"{0}/state.json\"\nevent_log = \"{0}/events.jsonl\"\n\n\
         [http]\nlisten = \"127.0.0.1:{http}\"\n",
        dir.display()
    );
    std::fs::write(dir.join("run.toml"), config).unwrap();
    let capture = dir.join("capture");
    let mut run = Guard(
        Command::new(BIN)
            .args([
                "run",
                "--config",
                dir.join("run.toml").to_str().unwrap(),
                "--capture",
                capture.to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let wait = |what: &str, ok: &dyn Fn(&[Decision]) -> bool| {
        let start = Instant::now();
        while !ok(&decisions(&events(&dir))) {
            assert!(start.elapsed() < Duration::from_secs(30), "{what}: {:?}", decisions(&events(&dir)));
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    wait("enabled", &|d| d.last().is_some_and(|(t, _)| t == "charge enabled, discharge enabled"));
    let stdin = sim.0.stdin.as_mut().unwrap();
    writeln!(stdin, "fault pack 1 overtemp").unwrap();
    wait("the fault", &|d| d.iter().any(|(_, r)| r.iter().any(|r| r.contains("too hot"))));
    writeln!(stdin, "clear pack 1").unwrap();
    wait("enabled after the fault", &|d| {
        d.len() >= 4 && d.last().is_some_and(|(t, _)| t.ends_with("discharge enabled"))
    });
    let before = decisions(&events(&dir)).len();
    writeln!(stdin, "silence pack 2").unwrap();
    wait("pack 2 silent", &|d| {
        d[before.min(d.len())..]
            .iter()
            .any(|(_, r)| r.iter().any(|r| r == "pack 2 has not answered recently"))
    });
    let silent = decisions(&events(&dir)).len();
    writeln!(stdin, "clear pack 2").unwrap();
    wait("enabled again", &|d| {
        d.len() > silent && d.last().is_some_and(|(t, _)| t == "charge enabled, discharge enabled")
    });
    std::thread::sleep(Duration::from_secs(1));
    let _ = Command::new("kill").args(["-TERM", &run.0.id().to_string()]).status();
    assert!(run.0.wait().unwrap().success());
    let live = decisions(&events(&dir));

    let out = Command::new(BIN).args(["replay", capture.to_str().unwrap(), "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let replayed = decisions(&lines.iter().filter(|l| l["kind"] == "event").cloned().collect::<Vec<_>>());
    assert_eq!(replayed, live, "the replay decides as the live run did");
    let summary = &lines.last().unwrap()["summary"];
    eprintln!("replay: {summary}; live decisions: {}", live.len());
    assert_eq!(summary["diverged"], 0, "every write the capture holds is one the replay makes: {summary}");
    assert_eq!(summary["bad_lines"], 0);
    let (answers, same) = (summary["answers"].as_u64().unwrap(), summary["answers_same"].as_u64().unwrap());
    assert!(answers > 10, "{summary}");
    // The service and the replay are one station, and the capture holds its journal: every
    // answer is the same, byte for byte.
    assert_eq!(same, answers, "{same} of {answers} answers the same: {summary}");
    let exchanges = lines.iter().filter(|l| l["kind"] == "exchange").count();
    assert!(exchanges > 20, "{exchanges}");
    assert!(
        lines.iter().any(|l| l["kind"] == "exchange" && l["link"] == "pack2" && l["answer"] == "no reply"),
        "the silenced pack's timeouts are replayed"
    );
    assert!(lines.iter().any(
        |l| l["link"] == "pack1" && l["answer"].as_str().is_some_and(|a| a.starts_with("0x42: 8 cells"))
    ));

    // A capture that lost 3 s (a full disk): without its gap marker the replay would see
    // divergences there; with it, nothing inside the gap is compared.
    let file = capture_folder(&capture).join("capture-000001.log");
    let original = std::fs::read_to_string(&file).unwrap();
    let seconds = |l: &str| l.split(' ').next().and_then(|t| t.parse::<f64>().ok());
    let end = original.lines().filter_map(seconds).fold(0.0, f64::max);
    let (from, to) = (end / 2.0, end / 2.0 + 3.0);
    let mut holed = String::new();
    let mut marked = false;
    for line in original.lines() {
        match seconds(line) {
            Some(t) if !line.starts_with('#') && t >= from && t <= to => {
                if !marked {
                    holed += &format!("# gap {from:.6} {to:.6}: 40 records lost (writing failed)\n");
                    marked = true;
                }
            }
            _ => holed += &format!("{line}\n"),
        }
    }
    std::fs::write(&file, &holed).unwrap();
    let out = Command::new(BIN).args(["replay", capture.to_str().unwrap(), "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let summary: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    eprintln!("with a gap: {summary}");
    assert_eq!(summary["summary"]["gaps"], 1, "{summary}");
    assert_eq!(summary["summary"]["diverged"], 0, "{summary}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing there is compared"));
    std::fs::write(&file, &original).unwrap();

    // A damaged capture: the bad line is named and passed over, the rest replays.
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.insert_str(text.find('\n').unwrap() + 1, "1.0 pack1 sideways 7E\n");
    std::fs::write(&file, text).unwrap();
    let out = Command::new(BIN).args(["replay", capture.to_str().unwrap(), "--decisions"]).output().unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("capture-000001.log:2: direction \"sideways\" is neither tx nor rx; passed over"),
        "{err}"
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("(1 bad lines passed over)"), "{text}");
    assert_eq!(text.matches("EVENT    charge ").count(), live.len(), "{text}");

    // No capture there: said so.
    let out = Command::new(BIN)
        .args(["replay", dir.to_str().unwrap(), "--config", dir.join("run.toml").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no capture files"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `run --capture DIR` with the operator's own configuration in DIR: it is never written over,
/// the capture goes into a folder of its own, and its copy of the configuration leaves the
/// token out (a placeholder would itself have been a valid token). A record dated 1e12 s later
/// does not hold the replay: it jumps.
#[test]
fn run_capture_never_overwrites_the_operators_config() {
    let dir = std::env::temp_dir().join(format!("p2p-capture-own-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let http = free_port();
    let own = format!(
        "[pylon]\nlink = \"tcp-listen://127.0.0.1:{}\"\n\n[[pack]]\nlink = \"tcp://127.0.0.1:1\"\n\n\
         [state]\nstate_file = \"{1}/state.json\"\nevent_log = \"{1}/events.jsonl\"\n\n\
         [http]\nlisten = \"127.0.0.1:{http}\"\ntoken = \"s3cret-token-of-the-operator\"\n",
        free_port(),
        dir.display()
    );
    let config = dir.join("config.toml");
    std::fs::write(&config, &own).unwrap();
    let mut run = Guard(
        Command::new(BIN)
            .args(["run", "--config", config.to_str().unwrap(), "--capture", dir.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let start = Instant::now();
    while !dir.read_dir().unwrap().any(|e| e.unwrap().file_name().to_string_lossy().starts_with("capture-")) {
        assert!(start.elapsed() < Duration::from_secs(20), "no capture folder");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    let _ = Command::new("kill").args(["-TERM", &run.0.id().to_string()]).status();
    assert!(run.0.wait().unwrap().success());
    assert_eq!(std::fs::read_to_string(&config).unwrap(), own, "the operator's configuration is untouched");
    let folder = capture_folder(&dir);
    let copy = std::fs::read_to_string(folder.join("config.toml")).unwrap();
    assert!(!copy.contains("s3cret") && !copy.contains("<hidden>"), "{copy}");
    assert!(copy.contains("# http.token: set, not shown"), "{copy}");
    let check = Command::new(BIN)
        .args(["check-config", folder.join("config.toml").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    assert!(!String::from_utf8_lossy(&check.stdout).contains("token ="), "the copy holds no token");

    // A record dated 1e12 s ahead: the replay warns, jumps and ends. (No pack answered, so the
    // capture may hold nothing yet.)
    let file = folder.join("capture-000001.log");
    let mut text = std::fs::read_to_string(&file)
        .unwrap_or_else(|_| "# pace2pylon capture 1; t=0 is unix 1764662400.0\n".into());
    text += "1.000000 pack1 tx 7E0D\n1000000000000.000000 pack1 rx 7E0D\n";
    std::fs::write(&file, text).unwrap();
    let mut replay = Guard(
        Command::new(BIN)
            .args(["replay", dir.to_str().unwrap(), "--decisions"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let start = Instant::now();
    while replay.0.try_wait().unwrap().is_none() {
        assert!(start.elapsed() < Duration::from_secs(30), "the replay steps through the 1e12 s gap");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut out = String::new();
    std::io::Read::read_to_string(replay.0.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert!(out.contains("the replay jumps over all but 600 s of it"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `simulate --capture DIR`, then `replay DIR`: the replay is the same station fed the same bytes
/// at the same instants, so it writes every byte, answers every request of the inverter and takes
/// every decision as the simulation did (a daemon restart of the fault schedule included).
#[test]
fn a_simulated_capture_replays_byte_for_byte() {
    let dir = std::env::temp_dir().join(format!("p2p-simcapture-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let faults = dir.join("faults.txt");
    std::fs::create_dir_all(&dir).unwrap();
    let schedule = "at 10m: restart daemon for 15s\n\
                    at 15m: fault pack 2 overtemp for 10m then clear pack 2\n\
                    at 40m: silence pack 1 for 10m then restore pack 1\n\
                    at 55m: noise pack 2 for 5m then quiet pack 2\n";
    std::fs::write(&faults, schedule).unwrap();
    let sim = Command::new(BIN)
        .args(["simulate", "--days", "0.05", "--packs", "2", "--seed", "3", "--trace", "--capture"])
        .arg(dir.join("capture"))
        .arg("--faults")
        .arg(&faults)
        .output()
        .unwrap();
    assert!(sim.status.success(), "{}", String::from_utf8_lossy(&sim.stderr));
    let trace = String::from_utf8_lossy(&sim.stdout);
    // The trace's decisions: "   1234 s charge enabled, discharge disabled [reasons]".
    let simulated: Vec<String> = trace
        .lines()
        .filter_map(|l| l.trim_start().split_once(" s "))
        .map(|(_, rest)| rest.to_owned())
        .filter(|rest| rest.starts_with("charge "))
        .collect();
    assert!(simulated.len() >= 4, "{trace}");

    let out =
        Command::new(BIN).args(["replay", dir.join("capture").to_str().unwrap(), "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let replayed: Vec<String> = lines
        .iter()
        .filter(|l| l["kind"] == "event" && l["event"].as_str().is_some_and(|e| e.starts_with("charge ")))
        .map(|l| {
            let text = l["event"].as_str().unwrap().to_owned();
            let reasons: Vec<String> =
                l["reasons"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_owned()).collect();
            if reasons.is_empty() { text } else { format!("{text} {reasons:?}") }
        })
        .collect();
    assert_eq!(replayed, simulated, "the replay decides as the simulation did");
    let summary = &lines.last().unwrap()["summary"];
    assert_eq!(summary["diverged"], 0, "{summary}");
    assert!(summary["answers"].as_u64().unwrap() > 100, "{summary}");
    assert_eq!(summary["answers_same"], summary["answers"], "{summary}");
    let _ = std::fs::remove_dir_all(&dir);
}
