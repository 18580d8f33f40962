//! A simulated serial line: bytes take their wire time at the line's baud rate (8N1, ten bits a
//! byte), the device thinks for a while before it answers, and a fault injector may drop, corrupt,
//! prefix with garbage or split what travels on it. Seeded: the same seed, the same faults.

use sim::plant::Rng;

/// Which way a transfer goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// From the daemon to the device.
    ToDevice,
    /// From the device to the daemon.
    ToDaemon,
}

/// Bytes on their way, arriving at `at_ms`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transfer {
    /// When the last byte has arrived.
    pub at_ms: u64,
    /// Which way.
    pub dir: Dir,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// What the injector does to replies while it is on (probabilities per reply).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Noise {
    /// A reply is lost.
    pub drop: f64,
    /// One byte of a reply is changed (its checksum then fails).
    pub corrupt: f64,
    /// Eight garbage bytes arrive before a reply.
    pub garbage: f64,
    /// A reply arrives in two pieces (the deframer must join them).
    pub split: bool,
}

impl Noise {
    /// The injector's "noisy line": 10 % of replies lost, 20 % corrupted, 20 % after garbage, all
    /// split.
    pub const NOISY: Self = Self { drop: 0.1, corrupt: 0.2, garbage: 0.2, split: true };
}

/// One line between the daemon and a device.
#[derive(Clone, Debug)]
pub struct Wire {
    /// Bits per second.
    pub baud: u32,
    /// The device's think time before its reply starts, ms.
    pub reply_delay_ms: u64,
    /// The fault injector, when on.
    pub noise: Option<Noise>,
    in_flight: Vec<Transfer>,
    rng: Rng,
}

/// The time `bytes` take at `baud`, ms, rounded up.
pub fn wire_ms(bytes: usize, baud: u32) -> u64 {
    (bytes as u64 * 10 * 1000).div_ceil(u64::from(baud.max(1)))
}

impl Wire {
    /// A quiet line at `baud` to a device that thinks `reply_delay_ms`, its injector seeded.
    pub fn new(baud: u32, reply_delay_ms: u64, seed: u64) -> Self {
        Self { baud, reply_delay_ms, noise: None, in_flight: Vec::new(), rng: Rng::new(seed) }
    }

    /// The daemon writes `bytes` at `now_ms`.
    pub fn send(&mut self, now_ms: u64, bytes: Vec<u8>) {
        let at_ms = now_ms + wire_ms(bytes.len(), self.baud);
        self.in_flight.push(Transfer { at_ms, dir: Dir::ToDevice, bytes });
    }

    /// The device answers `bytes` to a request that arrived at `now_ms`: after its think time and
    /// the reply's wire time, through the injector. Split replies arrive as two transfers.
    pub fn reply(&mut self, now_ms: u64, mut bytes: Vec<u8>) {
        let mut split = false;
        if let Some(noise) = self.noise {
            if self.rng.next_f64() < noise.drop {
                return;
            }
            if self.rng.next_f64() < noise.corrupt && bytes.len() > 2 {
                let k = 1 + (self.rng.next_f64() * (bytes.len() - 2) as f64) as usize;
                bytes[k] = if bytes[k] == b'0' { b'1' } else { b'0' };
            }
            if self.rng.next_f64() < noise.garbage {
                let mut garbage: Vec<u8> = (0..8).map(|_| self.rng.byte()).filter(|b| *b != b'~').collect();
                garbage.append(&mut bytes);
                bytes = garbage;
            }
            split = noise.split;
        }
        let start = now_ms + self.reply_delay_ms;
        if split && bytes.len() > 1 {
            let k = 1 + (self.rng.next_f64() * (bytes.len() - 1) as f64) as usize;
            let tail = bytes.split_off(k);
            let first_at = start + wire_ms(bytes.len(), self.baud);
            self.in_flight.push(Transfer { at_ms: first_at, dir: Dir::ToDaemon, bytes });
            self.in_flight.push(Transfer {
                at_ms: first_at + wire_ms(tail.len(), self.baud),
                dir: Dir::ToDaemon,
                bytes: tail,
            });
        } else {
            let at_ms = start + wire_ms(bytes.len(), self.baud);
            self.in_flight.push(Transfer { at_ms, dir: Dir::ToDaemon, bytes });
        }
    }

    /// When the next transfer arrives.
    pub fn next_at(&self) -> Option<u64> {
        self.in_flight.iter().map(|t| t.at_ms).min()
    }

    /// The next transfer that has arrived by `now_ms`, oldest first.
    pub fn arrived(&mut self, now_ms: u64) -> Option<Transfer> {
        let k = self
            .in_flight
            .iter()
            .enumerate()
            .filter(|(_, t)| t.at_ms <= now_ms)
            .min_by_key(|(k, t)| (t.at_ms, *k))
            .map(|(k, _)| k)?;
        Some(self.in_flight.remove(k))
    }

    /// Everything on the line is lost (the daemon restarted, the port was reopened).
    pub fn clear(&mut self) {
        self.in_flight.clear();
    }
}
