use ascii_envelope::{Frame, Framer};
use modbus_rtu::{Decoder, Side};

/// Cuts a byte stream into frames and checks them; bounded.
pub trait Deframer: Send {
    /// Takes as much of `data` as fits; returns how many bytes were taken. After
    /// [`Deframer::next_frame`] has returned `None`, at least one byte fits.
    fn push(&mut self, data: &[u8]) -> usize;
    /// The next frame that passed its check, or `None` when more bytes are needed.
    fn next_frame(&mut self) -> Option<Vec<u8>>;
    /// Frames rejected so far (bad checksum, bad CRC, malformed envelope).
    fn rejected(&self) -> u64;
    /// Why the last frame was rejected.
    fn last_rejection(&self) -> Option<String>;
    /// Forgets any partial frame; returns the bytes dropped.
    fn clear(&mut self) -> usize;
    /// The line went quiet: held bytes cannot be the start of a frame still arriving. A framing
    /// that waits on possible long frames (Modbus RTU) resynchronises here; the default does nothing.
    fn gap(&mut self) -> Option<Vec<u8>> {
        None
    }
    /// Whether this framing needs to hear of quiet lines ([`Deframer::gap`]); a reader that waits
    /// for it wakes every inter-frame gap, one that does not sleeps until its deadline.
    fn needs_gap(&self) -> bool {
        false
    }
}

/// `~ … CR` frames (Pace v25, Pylontech) whose envelope passes [`Frame::parse`]. The frame is
/// returned whole, CR included.
#[derive(Debug, Default)]
pub struct AsciiDeframer {
    framer: Framer,
    rejected: u64,
    last: Option<String>,
}

impl AsciiDeframer {
    /// A deframer for the longest legal frame.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Deframer for AsciiDeframer {
    fn push(&mut self, data: &[u8]) -> usize {
        self.framer.push(data)
    }

    fn next_frame(&mut self) -> Option<Vec<u8>> {
        loop {
            let frame = self.framer.next_frame()?;
            match Frame::parse(frame) {
                Ok(_) => return Some(frame.to_vec()),
                Err(e) => {
                    self.rejected += 1;
                    // Escaped: the message ends up in log lines, which must never carry the line's raw
                    // bytes (LF, TAB, invalid UTF-8).
                    self.last = Some(format!("{e} in {}", frame.trim_ascii_end().escape_ascii()));
                }
            }
        }
    }

    fn rejected(&self) -> u64 {
        self.rejected
    }

    fn last_rejection(&self) -> Option<String> {
        self.last.clone()
    }

    fn clear(&mut self) -> usize {
        let n = self.framer.buffered();
        self.framer.clear();
        n
    }
}

/// Modbus RTU frames for one direction, CRC-checked, resynchronising on garbage. A frame is
/// returned as the slave address followed by the PDU; the CRC is checked and removed.
#[derive(Debug)]
pub struct RtuDeframer {
    decoder: Decoder,
}

impl RtuDeframer {
    /// A deframer for requests (server side) or responses (client side).
    pub fn new(side: Side) -> Self {
        Self { decoder: Decoder::new(side) }
    }
}

fn to_bytes(frame: modbus_rtu::RtuFrame) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(frame.pdu.len() + 1);
    bytes.push(frame.slave);
    bytes.extend_from_slice(&frame.pdu);
    bytes
}

impl Deframer for RtuDeframer {
    fn push(&mut self, data: &[u8]) -> usize {
        self.decoder.push(data)
    }

    fn gap(&mut self) -> Option<Vec<u8>> {
        self.decoder.gap().map(to_bytes)
    }

    fn needs_gap(&self) -> bool {
        true
    }

    fn next_frame(&mut self) -> Option<Vec<u8>> {
        loop {
            // The decoder only yields CRC-valid frames; errors are counted inside it.
            if let Ok(frame) = self.decoder.next_frame()? {
                return Some(to_bytes(frame));
            }
        }
    }

    fn rejected(&self) -> u64 {
        self.decoder.bad_frames()
    }

    fn last_rejection(&self) -> Option<String> {
        self.decoder.last_error().map(ToString::to_string)
    }

    fn clear(&mut self) -> usize {
        let n = self.decoder.buffered();
        self.decoder.clear();
        n
    }
}

/// slcan (Lawicel ASCII) lines that carry CAN frames, each returned in its canonical form
/// ([`can_wire::slcan::encode`], CR included), so [`can_wire::slcan::parse_frame`] reads it back.
/// The other end's set-up lines and acknowledgements are passed over; a line that starts like a
/// frame but is not one is rejected.
#[derive(Debug, Default)]
pub struct SlcanDeframer {
    decoder: can_wire::slcan::Decoder,
    rejected: u64,
    last: Option<String>,
}

impl SlcanDeframer {
    /// An empty deframer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Deframer for SlcanDeframer {
    fn push(&mut self, data: &[u8]) -> usize {
        self.decoder.push(data)
    }

    fn next_frame(&mut self) -> Option<Vec<u8>> {
        use can_wire::slcan::Item;
        loop {
            match self.decoder.next_item()? {
                Item::Frame(frame) => {
                    let mut line = Vec::with_capacity(32);
                    can_wire::slcan::encode(&frame, &mut line);
                    return Some(line);
                }
                Item::Invalid(e) => {
                    self.rejected += 1;
                    self.last = Some(e.to_string());
                }
                Item::Ack | Item::Nak | Item::Command(_) => {}
            }
        }
    }

    fn rejected(&self) -> u64 {
        self.rejected
    }

    fn last_rejection(&self) -> Option<String> {
        self.last.clone()
    }

    fn clear(&mut self) -> usize {
        self.decoder.clear()
    }
}
