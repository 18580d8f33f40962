//! Every link kind against a real peer in this process: TCP sockets on 127.0.0.1, a listener, a
//! pty pair. Framing with split reads, garbage and back-to-back frames; timeouts; reconnects.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use link::{AsciiDeframer, Error, Link, RtuDeframer};

const REQUEST: &[u8] = b"~25014642E00201FD30\r";
const ACK: &[u8] = b"~250046000000FDAF\r";
const REPLY: &[u8] = b"~25014600E00202FD35\r";

/// Reads one `\r`-terminated request from `s`.
fn read_request(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut req = Vec::new();
    let mut b = [0u8; 1];
    while !req.ends_with(b"\r") {
        if s.read(&mut b).ok()? == 0 {
            return None;
        }
        req.push(b[0]);
    }
    Some(req)
}

/// A console-server stand-in: answers each request with `answer(n)` written in small pieces.
fn peer(answer: impl Fn(usize) -> Option<Vec<u8>> + Send + 'static) -> (String, thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("tcp://{}", listener.local_addr().unwrap());
    let h = thread::spawn(move || {
        let mut n = 0;
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            while read_request(&mut s).is_some() {
                match answer(n) {
                    Some(bytes) => {
                        for piece in bytes.chunks(5) {
                            let _ = s.write_all(piece);
                            thread::sleep(Duration::from_millis(2));
                        }
                    }
                    None => {
                        n += 1;
                        break; // drop the connection
                    }
                }
                n += 1;
            }
            if n > 100 {
                return;
            }
        }
    });
    (url, h)
}

#[test]
fn tcp_request_survives_garbage_split_reads_and_an_earlier_frame() {
    let (url, _h) = peer(|_| {
        let mut v = b"\x00\xffnoise~2501".to_vec(); // garbage and a cut-off frame
        v.extend_from_slice(ACK);
        Some(v)
    });
    let mut link = Link::open(&url).unwrap();
    let mut d = AsciiDeframer::new();
    for _ in 0..3 {
        assert_eq!(link.request(REQUEST, &mut d, Duration::from_secs(2)).unwrap(), ACK);
    }
    let s = link.stats();
    assert_eq!((s.frames, s.timeouts, s.reconnects), (3, 0, 0));
    assert!(s.connected);
}

#[test]
fn back_to_back_frames_are_kept_for_the_next_receive() {
    let (url, _h) = peer(|_| Some([REPLY, ACK].concat()));
    let mut link = Link::open(&url).unwrap();
    let mut d = AsciiDeframer::new();
    assert_eq!(link.request(REQUEST, &mut d, Duration::from_secs(2)).unwrap(), REPLY);
    let second = link.receive(&mut d, Instant::now() + Duration::from_secs(2)).unwrap();
    assert_eq!(second.as_deref(), Some(ACK));
}

#[test]
fn a_silent_peer_times_out_with_the_link_in_the_message() {
    let (url, _h) = peer(|_| Some(Vec::new()));
    let mut link = Link::open(&url).unwrap();
    let started = Instant::now();
    let e = link.request(REQUEST, &mut AsciiDeframer::new(), Duration::from_millis(300)).unwrap_err();
    let waited = started.elapsed();
    assert_eq!(e.to_string(), format!("{url}: no reply within 0.3 s"));
    assert!(waited >= Duration::from_millis(300) && waited < Duration::from_millis(1500), "{waited:?}");
    assert_eq!(link.stats().timeouts, 1);
}

#[test]
fn a_bad_checksum_is_counted_and_named_in_the_timeout() {
    let (url, _h) = peer(|_| Some(b"~250046000000FDAE\r".to_vec()));
    let mut link = Link::open(&url).unwrap();
    let e = link.request(REQUEST, &mut AsciiDeframer::new(), Duration::from_millis(300)).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("no reply within 0.3 s (1 bad frame(s); last: checksum: expected FDAF, found FDAE"),
        "{msg}"
    );
    assert_eq!(link.stats().checksum_errors, 1);
}

#[test]
fn a_dropped_connection_is_reported_then_reconnected() {
    // The peer answers the first request, hangs up on the second, answers the rest.
    let (url, _h) = peer(|n| if n == 1 { None } else { Some(ACK.to_vec()) });
    let mut link = Link::open(&url).unwrap();
    let mut d = AsciiDeframer::new();
    assert!(link.request(REQUEST, &mut d, Duration::from_secs(2)).is_ok());
    let e = link.request(REQUEST, &mut d, Duration::from_secs(2)).unwrap_err();
    assert!(matches!(e, Error::Closed { .. } | Error::Io { .. }), "{e}");
    // Right after a failure the link backs off instead of hammering the peer.
    let e = link.request(REQUEST, &mut d, Duration::from_secs(2)).unwrap_err();
    assert!(matches!(e, Error::Backoff { .. }), "{e}");
    assert!(e.to_string().contains("next attempt in"), "{e}");
    thread::sleep(Duration::from_millis(250));
    assert_eq!(link.request(REQUEST, &mut d, Duration::from_secs(2)).unwrap(), ACK);
    assert_eq!(link.stats().reconnects, 1);
}

#[test]
fn a_dead_port_gives_a_clear_error() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port(); // now closed
    let mut link = Link::open(&format!("tcp://127.0.0.1:{port}")).unwrap();
    let e = link.request(REQUEST, &mut AsciiDeframer::new(), Duration::from_secs(1)).unwrap_err();
    assert!(e.to_string().starts_with(&format!("tcp://127.0.0.1:{port}: cannot open:")), "{e}");
    assert!(!link.stats().connected);
}

#[test]
fn stale_input_is_dropped_before_a_request() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("tcp://{}", listener.local_addr().unwrap());
    let h = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.write_all(REPLY).unwrap(); // unsolicited, before any request
        read_request(&mut s).unwrap();
        s.write_all(ACK).unwrap();
        read_request(&mut s)
    });
    let mut link = Link::open(&url).unwrap();
    let mut d = AsciiDeframer::new();
    link.send(b"").unwrap(); // connect
    thread::sleep(Duration::from_millis(100));
    assert_eq!(link.request(REQUEST, &mut d, Duration::from_secs(2)).unwrap(), ACK);
    assert_eq!(link.stats().stale_bytes, REPLY.len() as u64);
    drop(link);
    let _ = h.join();
}

#[test]
fn a_listener_serves_one_peer_and_a_newer_peer_replaces_it() {
    let mut link = Link::open("tcp-listen://127.0.0.1:0").unwrap();
    let addr = link.local_addr().unwrap().unwrap();
    let mut d = AsciiDeframer::new();
    // Nobody connected: receiving just times out, sending says so.
    assert_eq!(link.receive(&mut d, Instant::now() + Duration::from_millis(50)).unwrap(), None);
    assert!(matches!(link.send(ACK), Err(Error::NoPeer { .. })));
    for round in 0..2 {
        let mut client = TcpStream::connect(addr).unwrap();
        client.write_all(REQUEST).unwrap();
        let got = link.receive(&mut d, Instant::now() + Duration::from_secs(2)).unwrap();
        assert_eq!(got.as_deref(), Some(REQUEST), "round {round}");
        link.send(ACK).unwrap();
        let mut buf = vec![0u8; ACK.len()];
        client.read_exact(&mut buf).unwrap();
        assert_eq!(buf, ACK);
    }
    assert_eq!(link.stats().reconnects, 1);
}

#[test]
fn rtu_over_tcp_with_garbage() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("tcp://{}", listener.local_addr().unwrap());
    thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut req = [0u8; 8];
        s.read_exact(&mut req).unwrap();
        // Garbage, then the EG4 PDF's reply to "read 202..204", split.
        let reply = [0x13, 0x37, 0x01, 0x03, 0x06, 0x08, 0xFC, 0x13, 0x88, 0x04, 0xB0, 0xF7, 0xF3];
        for piece in reply.chunks(3) {
            s.write_all(piece).unwrap();
            thread::sleep(Duration::from_millis(3));
        }
        thread::sleep(Duration::from_millis(200));
    });
    let mut link = Link::open(&url).unwrap();
    let mut d = RtuDeframer::new(modbus_rtu::Side::Response);
    let frame = link
        .request(&[0x01, 0x03, 0x00, 0xCA, 0x00, 0x03, 0x25, 0xF5], &mut d, Duration::from_secs(2))
        .unwrap();
    assert_eq!(frame, [0x01, 0x03, 0x06, 0x08, 0xFC, 0x13, 0x88, 0x04, 0xB0]);
}

#[test]
fn a_pty_pair_as_a_serial_line_reopened_by_path() {
    use serialport::{SerialPort, TTYPort};
    let (mut master, slave) = TTYPort::pair().expect("pty pair");
    let path = slave.name().expect("pty name");
    drop(slave); // the master keeps the pty; the link opens the slave side by its path
    let peer = thread::spawn(move || {
        master.set_timeout(Duration::from_secs(3)).unwrap();
        let mut req = Vec::new();
        let mut b = [0u8; 1];
        while !req.ends_with(b"\r") {
            master.read_exact(&mut b).unwrap();
            req.push(b[0]);
        }
        for piece in [&b"junk"[..], &ACK[..7], &ACK[7..]] {
            master.write_all(piece).unwrap();
            thread::sleep(Duration::from_millis(5));
        }
        req
    });
    let mut link = Link::open(&format!("serial://{path}?baud=9600")).unwrap();
    assert_eq!(link.name(), format!("serial://{path}"));
    let reply = link.request(REQUEST, &mut AsciiDeframer::new(), Duration::from_secs(3)).unwrap();
    assert_eq!(reply, ACK);
    assert_eq!(peer.join().unwrap(), REQUEST);
}

#[test]
fn a_missing_serial_device_is_named() {
    let mut link = Link::open("/dev/does-not-exist-pace2pylon").unwrap();
    let e = link.request(REQUEST, &mut AsciiDeframer::new(), Duration::from_millis(100)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "serial:///dev/does-not-exist-pace2pylon: cannot open: No such file or directory"
    );
}

#[test]
fn rtu_garbage_that_looks_like_a_long_frame_is_skipped_at_the_gap() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("tcp://{}", listener.local_addr().unwrap());
    thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut req = [0u8; 8];
        s.read_exact(&mut req).unwrap();
        // 00 01 0A reads as the start of a 15-byte read-coils reply; the real reply follows at once.
        let mut reply = vec![0x00, 0x01, 0x0A];
        reply.extend_from_slice(&[0x01, 0x03, 0x06, 0x08, 0xFC, 0x13, 0x88, 0x04, 0xB0, 0xF7, 0xF3]);
        s.write_all(&reply).unwrap();
        thread::sleep(Duration::from_millis(500));
    });
    let mut link = Link::open(&url).unwrap();
    let started = Instant::now();
    let frame = link
        .request(
            &[0x01, 0x03, 0x00, 0xCA, 0x00, 0x03, 0x25, 0xF5],
            &mut RtuDeframer::new(modbus_rtu::Side::Response),
            Duration::from_secs(2),
        )
        .unwrap();
    assert_eq!(frame, [0x01, 0x03, 0x06, 0x08, 0xFC, 0x13, 0x88, 0x04, 0xB0]);
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "found at the first gap: {:?}",
        started.elapsed()
    );
}

/// Issue 10 item 10: a daemon once read a late 0x42 reply as the next 0x44's. A peer that answers
/// the first request only after the timeout, and every later one at once with another frame: the
/// second request gets its own reply, never the late one.
#[test]
fn a_late_reply_is_not_taken_for_the_next_requests() {
    let (url, _h) = peer(|n| {
        if n == 0 {
            thread::sleep(Duration::from_millis(300)); // late: the requester gives up at 200 ms
            Some(REPLY.to_vec())
        } else {
            Some(ACK.to_vec())
        }
    });
    let mut link = Link::open(&url).unwrap();
    let mut d = AsciiDeframer::new();
    assert!(matches!(link.request(REQUEST, &mut d, Duration::from_millis(200)), Err(Error::Timeout { .. })));
    for _ in 0..3 {
        assert_eq!(link.request(REQUEST, &mut d, Duration::from_secs(1)).unwrap(), ACK);
    }
    assert!(link.stats().stale_bytes >= REPLY.len() as u64, "{:?}", link.stats());
}

/// Issue 10 item 6: hundreds of peers connecting and leaving at once do not displace the master
/// that stays on a listening link, and cost no timeout each.
#[test]
fn connect_churn_on_a_listening_link_does_not_displace_the_master() {
    let mut link = Link::open("tcp-listen://127.0.0.1:0").unwrap();
    let addr = link.local_addr().unwrap().unwrap();
    let mut master = TcpStream::connect(addr).unwrap();
    master.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut d = AsciiDeframer::new();
    let ask = |master: &mut TcpStream, link: &mut Link, d: &mut AsciiDeframer| {
        master.write_all(REQUEST).unwrap();
        let frame = link.receive(d, Instant::now() + Duration::from_secs(1)).unwrap();
        assert_eq!(frame.as_deref(), Some(REQUEST));
        link.send(ACK).unwrap();
        let mut got = vec![0u8; ACK.len()];
        master.read_exact(&mut got).unwrap();
        assert_eq!(got, ACK);
    };
    ask(&mut master, &mut link, &mut d);
    let churn = thread::spawn(move || {
        for _ in 0..300 {
            drop(TcpStream::connect(addr).unwrap());
        }
        (0..20).map(|_| TcpStream::connect(addr).unwrap()).collect::<Vec<_>>()
    });
    while !churn.is_finished() {
        assert_eq!(link.receive(&mut d, Instant::now() + Duration::from_millis(50)).unwrap(), None);
    }
    let _silent = churn.join().unwrap();
    let started = Instant::now();
    ask(&mut master, &mut link, &mut d);
    assert!(started.elapsed() < Duration::from_millis(500), "took {:?}", started.elapsed());
    // A peer that speaks takes over (a converter that reconnected); the master gets it back by speaking.
    let mut other = TcpStream::connect(addr).unwrap();
    other.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    ask(&mut other, &mut link, &mut d);
    ask(&mut master, &mut link, &mut d);
}

/// Issue 10 item 9: a rejected frame is named in log lines with its bytes escaped: no raw LF,
/// TAB or invalid UTF-8 from the line reaches the log.
#[test]
fn a_rejected_frame_is_named_with_its_raw_bytes_escaped() {
    use link::Deframer;
    let mut d = AsciiDeframer::new();
    d.push(b"~2500\t46\n00\xff\xfe0000FDAF\r");
    assert_eq!(d.next_frame(), None);
    let why = d.last_rejection().expect("the frame was rejected");
    assert!(why.chars().all(|c| c.is_ascii() && !c.is_ascii_control()), "{why:?}");
    assert!(why.contains("\\t") && why.contains("\\xff"), "{why}");
}

/// A peer that floods the line never runs dry: draining the stale bytes before a request is
/// bounded, so the request goes out and times out as it would, within a second.
#[test]
fn a_flooding_peer_does_not_keep_drop_stale_reading_forever() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("tcp://{}", listener.local_addr().unwrap());
    let flood = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let junk = [b'x'; 4096];
        let until = Instant::now() + Duration::from_secs(8);
        while Instant::now() < until && s.write_all(&junk).is_ok() {}
    });
    let mut link = Link::open(&url).unwrap();
    link.connect().unwrap();
    thread::sleep(Duration::from_millis(200));
    let mut d = AsciiDeframer::new();
    for _ in 0..3 {
        let started = Instant::now();
        let result = link.request(REQUEST, &mut d, Duration::from_millis(300));
        let took = started.elapsed();
        assert!(took < Duration::from_secs(1), "a request took {took:?} against a flood");
        assert!(matches!(result, Err(Error::Timeout { .. })), "{result:?}");
    }
    assert!(link.stats().stale_bytes > 0);
    drop(link);
    flood.join().unwrap();
}

/// On a listening link a newer peer that sends garbage never takes the line over from the
/// master that polls: it waits, its bytes are counted, and it is never promoted; one that sends
/// a request with a good checksum takes over.
#[test]
fn a_garbage_peer_on_a_listening_link_never_takes_over() {
    let mut link = Link::open("tcp-listen://127.0.0.1:0").unwrap();
    link.take_over_on(|| Box::new(AsciiDeframer::new()));
    let addr = link.local_addr().unwrap().unwrap();
    let mut d = AsciiDeframer::new();
    let mut master = TcpStream::connect(addr).unwrap();
    master.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut answer = |link: &mut Link, master: &mut TcpStream| {
        master.write_all(REQUEST).unwrap();
        let got = link.receive(&mut d, Instant::now() + Duration::from_secs(2)).unwrap();
        assert_eq!(got.as_deref(), Some(REQUEST));
        link.send(ACK).unwrap();
        let mut buf = vec![0u8; ACK.len()];
        master.read_exact(&mut buf).unwrap();
    };
    answer(&mut link, &mut master);
    let mut garbage = TcpStream::connect(addr).unwrap();
    garbage.write_all(b"\x00\xffGET / HTTP/1.1\r\n~2501464200\r~garbage\r").unwrap();
    thread::sleep(Duration::from_millis(100));
    for _ in 0..5 {
        answer(&mut link, &mut master);
    }
    assert!(link.stats().ignored_peer_bytes > 0, "{:?}", link.stats());
    assert_eq!(link.stats().reconnects, 0, "the garbage peer never took the line");
    // A real master reconnecting (the old connection lost without a FIN) takes over with a
    // request of good checksum.
    let mut newer = TcpStream::connect(addr).unwrap();
    newer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    thread::sleep(Duration::from_millis(50));
    answer(&mut link, &mut newer);
    assert_eq!(link.stats().reconnects, 1);
    drop(garbage);
}

/// The CAN side's listening link: random bytes from a newer client never make it the adapter;
/// the real one goes on getting every line, and an adapter that sends a parseable slcan frame
/// takes over.
#[test]
fn a_garbage_client_never_takes_the_can_listening_link() {
    let mut link = Link::open("tcp-listen://127.0.0.1:0").unwrap();
    link.take_over_on(|| Box::new(link::SlcanDeframer::new()));
    let addr = link.local_addr().unwrap().unwrap();
    let mut adapter = TcpStream::connect(addr).unwrap();
    adapter.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    link.connect().unwrap();
    let line = b"t35E8PYLON   \r";
    let mut got = vec![0u8; line.len()];
    link.send(line).unwrap();
    adapter.read_exact(&mut got).unwrap();
    let mut garbage = TcpStream::connect(addr).unwrap();
    garbage.write_all(&[0x13, 0x37, 0xFF, b'\r', b'x', b'y', b'\r']).unwrap();
    thread::sleep(Duration::from_millis(50));
    for _ in 0..10 {
        let mut d = link::SlcanDeframer::new();
        assert_eq!(link.receive(&mut d, Instant::now() + Duration::from_millis(20)).unwrap(), None);
        link.send(line).unwrap();
        adapter.read_exact(&mut got).unwrap();
        assert_eq!(got, line, "the real adapter gets every line");
    }
    assert!(link.stats().ignored_peer_bytes >= 7, "{:?}", link.stats());
    let mut newer = TcpStream::connect(addr).unwrap();
    newer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    newer.write_all(b"t30580000000000000000\r").unwrap();
    thread::sleep(Duration::from_millis(50));
    let mut d = link::SlcanDeframer::new();
    let frame = link.receive(&mut d, Instant::now() + Duration::from_secs(1)).unwrap();
    assert_eq!(frame.as_deref(), Some(&b"t30580000000000000000\r"[..]));
    link.send(line).unwrap();
    newer.read_exact(&mut got).unwrap();
    drop(garbage);
}
