//! The plant on links: every device answers on its own line, a clock thread moves plant time,
//! and the inverter polls whoever is on its BMS port.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use link::{AsciiDeframer, CanBus, Deframer, Link, RtuDeframer};
use modbus_rtu::Side;
use pylon_proto::{Command, Dialect, Reply, Request, Response};

use crate::Plant;

/// How the devices behave on their lines.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Options {
    /// Plant seconds per real second.
    pub speed: f64,
    /// Line speed used to pace replies, so a reply takes as long as on a real wire (8N1).
    pub baud: u32,
    /// A BMS's think time before it starts to answer.
    pub reply_delay: Duration,
    /// How often the inverter polls 0x61 and 0x63.
    pub poll_every: Duration,
    /// Without a valid 0x63 for this long the inverter uses its no-communication settings.
    pub no_comm_after: Duration,
    /// Address the inverter polls (the Vevor polls 2).
    pub pylon_adr: u8,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            speed: 1.0,
            baud: 9600,
            reply_delay: Duration::from_millis(15),
            poll_every: Duration::from_secs(1),
            no_comm_after: Duration::from_secs(30),
            pylon_adr: 2,
        }
    }
}

/// The lines of a plant: one per pack, the counter, the inverter's Modbus port and its BMS port.
#[derive(Debug)]
pub struct Lines {
    /// One per pack, in order.
    pub packs: Vec<Link>,
    /// The coulomb counter's line.
    pub coil: Link,
    /// The inverter's Modbus port.
    pub inverter: Link,
    /// The inverter's BMS port.
    pub bms_port: BmsPort,
}

/// How the inverter talks to its BMS.
#[derive(Debug)]
pub enum BmsPort {
    /// RS485: it polls 0x61 and 0x63 as a Pylontech master.
    Rs485(Link),
    /// CAN: it listens to the battery's frames (Pylontech profile), obeys 0x351 and 0x35C, and
    /// sends its 0x305 heartbeat every second.
    Can(CanBus),
}

/// A simulated device, for [`Sim::serve_probe`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    /// Pack `k` (from 0).
    Pack(usize),
    /// The coulomb counter.
    Coil,
    /// The inverter's Modbus port.
    Inverter,
}

/// A running simulation.
#[derive(Debug)]
pub struct Sim {
    plant: Arc<Mutex<Plant>>,
    stop: Arc<AtomicBool>,
    options: Options,
    /// Plant seconds per real second, as `f64` bits (changeable while it runs).
    speed: Arc<AtomicU64>,
    threads: Vec<JoinHandle<()>>,
}

/// Locks the plant; a thread that panicked while holding it leaves it usable (plain data).
pub fn lock(plant: &Mutex<Plant>) -> MutexGuard<'_, Plant> {
    plant.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A device thread's body: the shared plant and the stop flag.
type Job = Box<dyn FnOnce(&Mutex<Plant>, &AtomicBool) + Send>;

fn wire_time(bytes: usize, baud: u32) -> Duration {
    Duration::from_secs_f64(bytes as f64 * 10.0 / f64::from(baud.max(1)))
}

impl Sim {
    /// Starts the clock and one thread per line.
    pub fn start(plant: Plant, lines: Lines, options: Options) -> Self {
        let plant = Arc::new(Mutex::new(plant));
        let stop = Arc::new(AtomicBool::new(false));
        let speed = Arc::new(AtomicU64::new(options.speed.to_bits()));
        let mut threads = Vec::new();
        let mut spawn = |f: Job| {
            let (plant, stop) = (plant.clone(), stop.clone());
            threads.push(thread::spawn(move || f(&plant, &stop)));
        };
        let clock_speed = speed.clone();
        spawn(Box::new(move |p, s| clock(p, s, &clock_speed)));
        for (k, link) in lines.packs.into_iter().enumerate() {
            spawn(Box::new(move |p, s| {
                serve(link, AsciiDeframer::new(), p, s, options, |p, f| pack_reply(p, k, f))
            }));
        }
        let coil = lines.coil;
        spawn(Box::new(move |p, s| serve(coil, RtuDeframer::new(Side::Request), p, s, options, coil_reply)));
        let inverter = lines.inverter;
        spawn(Box::new(move |p, s| {
            serve(inverter, RtuDeframer::new(Side::Request), p, s, options, inverter_reply)
        }));
        match lines.bms_port {
            BmsPort::Rs485(link) => spawn(Box::new(move |p, s| poll_bms(link, p, s, options))),
            BmsPort::Can(bus) => spawn(Box::new(move |p, s| listen_can(bus, p, s, options))),
        }
        Self { plant, stop, options, speed, threads }
    }

    /// Answers as `device` on one more line of its own, beside the daemon's: a probe connected
    /// there sees the same device without taking the daemon's line away (a listening line keeps
    /// one peer at a time).
    pub fn serve_probe(&mut self, device: Device, link: Link) {
        let (plant, stop, options) = (self.plant.clone(), self.stop.clone(), self.options);
        self.threads.push(thread::spawn(move || match device {
            Device::Pack(k) => {
                serve(link, AsciiDeframer::new(), &plant, &stop, options, |p, f| pack_reply(p, k, f))
            }
            Device::Coil => serve(link, RtuDeframer::new(Side::Request), &plant, &stop, options, coil_reply),
            Device::Inverter => {
                serve(link, RtuDeframer::new(Side::Request), &plant, &stop, options, inverter_reply)
            }
        }));
    }

    /// Changes how many plant seconds pass per real second, from the next clock tick on (e.g. slow
    /// while a fault is injected, fast through the hours that follow).
    pub fn set_speed(&self, speed: f64) {
        if speed.is_finite() && speed > 0.0 {
            self.speed.store(speed.to_bits(), Ordering::Relaxed);
        }
    }

    /// The plant, to read or change while it runs.
    pub fn plant(&self) -> Arc<Mutex<Plant>> {
        self.plant.clone()
    }

    /// Runs a fault-injection command.
    ///
    /// # Errors
    /// What is wrong with the command.
    pub fn command(&self, line: &str) -> Result<String, String> {
        lock(&self.plant).command(line)
    }

    /// Stops every thread and waits for them.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn clock(plant: &Mutex<Plant>, stop: &AtomicBool, speed: &AtomicU64) {
    let tick = Duration::from_millis(50);
    let mut last = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        thread::sleep(tick);
        let now = Instant::now();
        let dt = (now - last).as_secs_f64() * f64::from_bits(speed.load(Ordering::Relaxed));
        last = now;
        lock(plant).step(dt);
    }
}

/// Answers frames on `link` with `answer` until stopped, pacing each exchange like the wire: the
/// request arrives at once over a socket, so its own wire time is waited out before the reply's.
/// A link error (the peer left) is waited out: the next peer is served.
fn serve<D: Deframer>(
    mut link: Link,
    mut deframer: D,
    plant: &Mutex<Plant>,
    stop: &AtomicBool,
    options: Options,
    answer: impl Fn(&Mutex<Plant>, &[u8]) -> Option<Vec<u8>>,
) {
    while !stop.load(Ordering::Relaxed) {
        match link.receive(&mut deframer, Instant::now() + Duration::from_millis(200)) {
            Ok(Some(frame)) => {
                if let Some(reply) = answer(plant, &frame) {
                    thread::sleep(options.reply_delay + wire_time(frame.len() + reply.len(), options.baud));
                    let _ = link.send(&reply);
                }
            }
            Ok(None) => {}
            Err(_) => thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn pack_reply(plant: &Mutex<Plant>, k: usize, frame: &[u8]) -> Option<Vec<u8>> {
    crate::answer::pack(&mut lock(plant), k, frame)
}

fn coil_reply(plant: &Mutex<Plant>, frame: &[u8]) -> Option<Vec<u8>> {
    crate::answer::coil(&mut lock(plant).coil, frame)
}

fn inverter_reply(plant: &Mutex<Plant>, frame: &[u8]) -> Option<Vec<u8>> {
    crate::answer::inverter(&mut lock(plant).inverter.registers, frame)
}

/// The inverter as a Pylontech master: 0x61 then 0x63 about once a second to whoever is on its BMS
/// port; without a valid 0x63 for `no_comm_after` it falls back to its no-communication settings.
fn poll_bms(mut link: Link, plant: &Mutex<Plant>, stop: &AtomicBool, options: Options) {
    let mut last_ok = Instant::now();
    let mut deframer = AsciiDeframer::new();
    let timeout = Duration::from_millis(900);
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let mut good = false;
        for command in [Command::SystemAnalog, Command::SystemManagement] {
            let mut frame = Vec::new();
            if (Request { adr: options.pylon_adr, command }).emit(&mut frame).is_err() {
                continue;
            }
            let Ok(bytes) = link.request(&frame, &mut deframer, timeout) else { continue };
            match Reply::parse(command.cid2(), &bytes, Dialect::default()).map(|r| r.outcome) {
                Ok(Ok(Response::SystemAnalog(a))) => lock(plant).inverter.bms_soc = Some(a.soc.raw()),
                Ok(Ok(Response::SystemManagement(m))) => {
                    lock(plant).inverter.bms = Some(m);
                    good = true;
                }
                _ => {}
            }
        }
        if good {
            last_ok = Instant::now();
        } else if last_ok.elapsed() >= options.no_comm_after {
            lock(plant).inverter.bms = None;
        }
        let rest = options.poll_every.saturating_sub(started.elapsed());
        // Sleep in small steps so a stop request is seen quickly.
        let until = Instant::now() + rest;
        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The inverter on CAN: it reads the battery's 0x351 and 0x35C (and 0x355's SOC), sends its
/// 0x305 heartbeat every `poll_every`, and without a frame for `no_comm_after` falls back to its
/// no-communication settings.
fn listen_can(mut bus: CanBus, plant: &Mutex<Plant>, stop: &AtomicBool, options: Options) {
    use pylon_can::{Heartbeat, Message, Profile, RequestFlags};
    use pylon_proto::{Management, ManagementFlags};
    use units::{DeciAmps, Millivolts};
    let heartbeat = Message::Heartbeat(Heartbeat { data: [0; 8], len: 8 }).encode(Profile::Pylon);
    let mut next_heartbeat = Instant::now();
    let mut last_frame = Instant::now();
    let (mut limits, mut requests) = (None, None);
    while !stop.load(Ordering::Relaxed) {
        if Instant::now() >= next_heartbeat {
            next_heartbeat = Instant::now() + options.poll_every;
            // No battery yet (a listening bus without a peer): try again at the next beat.
            let _ = bus.send(&heartbeat);
        }
        let until = next_heartbeat.min(Instant::now() + Duration::from_millis(200));
        match bus.receive(until) {
            Ok(Some(frame)) => match Message::decode(Profile::Pylon, &frame) {
                Ok(Some(Message::Limits(l))) => {
                    limits = Some(l);
                    last_frame = Instant::now();
                }
                Ok(Some(Message::Requests(r))) => {
                    requests = Some(r.flags);
                    last_frame = Instant::now();
                }
                Ok(Some(Message::Soc(s))) => {
                    lock(plant).inverter.bms_soc = u8::try_from(s.soc_pct.min(100)).ok();
                    last_frame = Instant::now();
                }
                _ => {}
            },
            Ok(None) => {}
            Err(_) => thread::sleep(Duration::from_millis(100)),
        }
        if last_frame.elapsed() >= options.no_comm_after {
            (limits, requests) = (None, None);
            lock(plant).inverter.bms = None;
        } else if let (Some(l), Some(r)) = (limits, requests) {
            let mut flags = ManagementFlags::empty();
            flags.set(ManagementFlags::CHARGE_ENABLE, r.contains(RequestFlags::CHARGE_ENABLE));
            flags.set(ManagementFlags::DISCHARGE_ENABLE, r.contains(RequestFlags::DISCHARGE_ENABLE));
            lock(plant).inverter.bms = Some(Management {
                charge_voltage: Millivolts::from_raw(l.charge_voltage_dv.saturating_mul(100)),
                discharge_voltage: Millivolts::from_raw(
                    l.discharge_voltage_dv.unwrap_or(0).saturating_mul(100),
                ),
                charge_current: DeciAmps::from_raw(l.charge_current_da),
                discharge_current: DeciAmps::from_raw(l.discharge_current_da),
                flags,
            });
        }
    }
}
