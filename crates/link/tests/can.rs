//! Two slcan hosts face each other on one TCP line and on one pty pair: each sets its "adapter"
//! up, passes over the other's set-up lines, and reads the other's frames.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use std::time::{Duration, Instant};

use can_wire::slcan::Bitrate;
use can_wire::{CanFrame, CanId};
use link::{CanBus, Link};
use serialport::SerialPort;

fn frame(id: u16, data: &[u8]) -> CanFrame {
    CanFrame::new(CanId::standard(id).unwrap(), data).unwrap()
}

fn next(bus: &mut CanBus) -> Option<CanFrame> {
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        match bus.receive(deadline) {
            Ok(Some(f)) => return Some(f),
            Ok(None) => {}
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    None
}

fn exchange(a: &mut CanBus, b: &mut CanBus) {
    let heartbeat = frame(0x305, &[0; 8]);
    let limits = frame(0x351, &[0x2C, 0x01, 0xF4, 0x01, 0xF4, 0x01, 0xE0, 0x01]);
    // The listening side has no peer until the other connects: retry.
    let deadline = Instant::now() + Duration::from_secs(3);
    while b.send(&heartbeat).is_err() {
        assert!(Instant::now() < deadline, "no connection");
        let _ = a.receive(Instant::now() + Duration::from_millis(20));
    }
    assert_eq!(next(a), Some(heartbeat));
    a.send(&limits).unwrap();
    assert_eq!(next(b), Some(limits));
    assert_eq!(a.stats().checksum_errors + b.stats().checksum_errors, 0);
}

#[test]
fn two_slcan_hosts_on_tcp() {
    let mut listener = CanBus::open("slcan+tcp-listen://127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().unwrap();
    let mut client = CanBus::open(&format!("slcan+tcp://{addr}")).unwrap();
    exchange(&mut client, &mut listener);
}

#[test]
fn two_slcan_hosts_on_a_pty_pair() {
    let (master, slave) = serialport::TTYPort::pair().unwrap();
    let path = slave.name().unwrap();
    let mut a = CanBus::slcan_over(Link::from_serial_port(master, "pty-master", 115_200), Bitrate::K500);
    let mut b = CanBus::slcan_over(Link::from_serial_port(slave, &path, 115_200), Bitrate::K500);
    exchange(&mut a, &mut b);
}

#[test]
fn a_socketcan_url_without_the_feature_says_how_to_get_it() {
    if cfg!(feature = "socketcan") {
        // The URL opens lazily either way: with the feature the bus exists until it is used.
        assert!(CanBus::open("socketcan://can9").is_ok());
    } else {
        let e = CanBus::open("socketcan://can0").unwrap_err().to_string();
        assert!(e.contains("--features socketcan"), "{e}");
    }
}

/// A capture's tap on an slcan bus hears its adapter's bytes both ways: the set-up lines and the
/// frames written, and the other side's frames read.
#[test]
fn a_tapped_slcan_bus_tells_every_byte_it_moves() {
    use std::sync::{Arc, Mutex};
    let mut listener = CanBus::open("slcan+tcp-listen://127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().unwrap();
    let mut client = CanBus::open(&format!("slcan+tcp://{addr}")).unwrap();
    type Heard = Vec<(link::capture::Dir, Vec<u8>)>;
    let heard: Arc<Mutex<Heard>> = Arc::default();
    let h = heard.clone();
    client.set_tap(Arc::new(move |dir: link::capture::Dir, bytes: &[u8]| {
        h.lock().unwrap().push((dir, bytes.to_vec()))
    }));
    exchange(&mut client, &mut listener);
    let heard = heard.lock().unwrap();
    let all = |dir| -> String {
        heard
            .iter()
            .filter(|(d, _)| *d == dir)
            .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
            .collect()
    };
    let (tx, rx) = (all(link::capture::Dir::Tx), all(link::capture::Dir::Rx));
    assert!(tx.contains("S6\r") && tx.contains("O\r"), "the set-up lines: {tx:?}");
    assert!(tx.contains("t35182C01F401F401E001\r"), "the limits frame written: {tx:?}");
    assert!(rx.contains("t30580000000000000000\r"), "the heartbeat read: {rx:?}");
}
