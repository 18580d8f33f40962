use crate::{EOI, MAX_FRAME_LEN, MIN_FRAME_LEN, SOI};

/// Finds `~ … CR` frames in a byte stream.
///
/// It only delimits; [`crate::Frame::parse`] then checks each frame. Bytes before a `~` are garbage
/// and are dropped (counted by [`Framer::discarded`]); a `~` inside a candidate restarts the frame
/// there, since INFO is hex and never holds `~`; a candidate longer than the longest legal frame
/// is dropped. The buffer never holds more than the longest frame, however much is pushed.
///
/// ```
/// use ascii_envelope::Framer;
///
/// let mut framer = Framer::new();
/// let mut frames = Vec::new();
/// framer.feed(b"noise~250046000000FDAF\r~2500460", |f| frames.push(f.to_vec()));
/// framer.feed(b"00000FDAF\r", |f| frames.push(f.to_vec()));
/// assert_eq!(frames, [b"~250046000000FDAF\r".to_vec(), b"~250046000000FDAF\r".to_vec()]);
/// assert_eq!(framer.discarded(), 5);
/// ```
#[derive(Clone, Debug)]
pub struct Framer {
    buf: Vec<u8>,
    /// Start of the unconsumed bytes in `buf`.
    start: usize,
    /// Bytes of the current candidate (from `start`) already scanned without finding `~` or CR.
    scanned: usize,
    max_frame: usize,
    discarded: u64,
}

impl Default for Framer {
    fn default() -> Self {
        Self::new()
    }
}

impl Framer {
    /// A framer for frames up to [`MAX_FRAME_LEN`] bytes.
    pub fn new() -> Self {
        Self::with_max_frame_len(MAX_FRAME_LEN)
    }

    /// A framer that drops candidates longer than `max` bytes (at least the shortest frame).
    pub fn with_max_frame_len(max: usize) -> Self {
        let max_frame = max.max(MIN_FRAME_LEN);
        Self { buf: Vec::with_capacity(max_frame), start: 0, scanned: 0, max_frame, discarded: 0 }
    }

    /// Appends as much of `data` as fits and returns how many bytes were taken. Take the complete
    /// frames with [`Framer::next_frame`] and push the rest; after `next_frame` has returned `None`
    /// at least one byte always fits. [`Framer::feed`] does both.
    pub fn push(&mut self, data: &[u8]) -> usize {
        if self.start > 0 {
            self.buf.copy_within(self.start.., 0);
            self.buf.truncate(self.buf.len() - self.start);
            self.start = 0;
        }
        let n = data.len().min(self.max_frame - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        n
    }

    /// The next complete frame, `~` through CR, or `None` when more bytes are needed.
    pub fn next_frame(&mut self) -> Option<&[u8]> {
        loop {
            let pending = &self.buf[self.start..];
            if self.scanned == 0 {
                // Not inside a candidate yet: skip to the next SOI.
                match pending.iter().position(|&b| b == SOI) {
                    Some(i) => {
                        self.drop_bytes(i);
                        self.scanned = 1;
                    }
                    None => {
                        self.drop_bytes(pending.len());
                        return None;
                    }
                }
                continue;
            }
            let rest = &pending[self.scanned..];
            match rest.iter().position(|&b| b == EOI || b == SOI) {
                Some(i) if rest[i] == EOI => {
                    let end = self.start + self.scanned + i + 1;
                    let begin = self.start;
                    self.start = end;
                    self.scanned = 0;
                    return Some(&self.buf[begin..end]);
                }
                Some(i) => {
                    // A new SOI before the CR: the candidate was cut off; restart at the new SOI.
                    let cut = self.scanned + i;
                    self.drop_bytes(cut);
                    self.scanned = 1;
                }
                None => {
                    self.scanned = pending.len();
                    if pending.len() >= self.max_frame {
                        let n = pending.len();
                        self.drop_bytes(n);
                        self.scanned = 0;
                    }
                    return None;
                }
            }
        }
    }

    /// Pushes all of `data`, calling `on_frame` for every complete frame in order.
    pub fn feed(&mut self, mut data: &[u8], mut on_frame: impl FnMut(&[u8])) {
        loop {
            while let Some(frame) = self.next_frame() {
                on_frame(frame);
            }
            if data.is_empty() {
                return;
            }
            let n = self.push(data);
            data = &data[n..];
        }
    }

    /// Garbage bytes dropped so far (before an SOI, cut-off candidates, oversized candidates).
    pub fn discarded(&self) -> u64 {
        self.discarded
    }

    /// Bytes held, waiting for the rest of a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Forgets any partial frame (e.g. before sending a new request on a line); counts it as discarded.
    pub fn clear(&mut self) {
        self.discarded += self.buffered() as u64;
        self.buf.clear();
        self.start = 0;
        self.scanned = 0;
    }

    fn drop_bytes(&mut self, n: usize) {
        self.start += n;
        self.discarded += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACK: &[u8] = b"~250046000000FDAF\r";

    fn collect(framer: &mut Framer, data: &[u8]) -> Vec<Vec<u8>> {
        let mut v = Vec::new();
        framer.feed(data, |f| v.push(f.to_vec()));
        v
    }

    #[test]
    fn split_reads_byte_by_byte() {
        let mut framer = Framer::new();
        let mut got = Vec::new();
        for b in ACK {
            got.extend(collect(&mut framer, &[*b]));
        }
        assert_eq!(got, [ACK.to_vec()]);
        assert_eq!(framer.buffered(), 0);
    }

    #[test]
    fn several_frames_in_one_read_with_garbage_between() {
        let mut data = Vec::new();
        data.extend_from_slice(b"\x00\xff");
        data.extend_from_slice(ACK);
        data.extend_from_slice(b"xx");
        data.extend_from_slice(ACK);
        let mut framer = Framer::new();
        assert_eq!(collect(&mut framer, &data), [ACK.to_vec(), ACK.to_vec()]);
        assert_eq!(framer.discarded(), 4);
    }

    #[test]
    fn a_cut_off_frame_resyncs_at_the_next_soi() {
        let mut framer = Framer::new();
        assert_eq!(collect(&mut framer, b"~2500460~250046000000FDAF\r"), [ACK.to_vec()]);
        assert_eq!(framer.discarded(), 8);
    }

    #[test]
    fn a_flood_without_cr_stays_bounded() {
        let mut framer = Framer::with_max_frame_len(64);
        let mut flood = vec![b'~'];
        flood.extend(std::iter::repeat_n(b'A', 10_000));
        assert!(collect(&mut framer, &flood).is_empty());
        assert!(framer.buffered() <= 64);
        assert_eq!(collect(&mut framer, ACK), [ACK.to_vec()]);
    }

    #[test]
    fn a_big_push_yields_every_frame() {
        let data: Vec<u8> = ACK.iter().copied().cycle().take(ACK.len() * 1000).collect();
        let mut framer = Framer::with_max_frame_len(32);
        assert_eq!(collect(&mut framer, &data).len(), 1000);
    }
}
