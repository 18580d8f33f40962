//! The plant's devices answering request bytes with reply bytes, as they do on their lines: the
//! simulator's servers (over TCP and ptys) and the simulated world (over simulated wires) both
//! answer through these.

use crate::Plant;
use crate::plant::Coil;

/// Pack `k` answers a whole Pace request frame: not at all when silent or asked at another
/// address; with noise before the reply (and now and then a broken character) when garbling.
pub fn pack(plant: &mut Plant, k: usize, frame: &[u8]) -> Option<Vec<u8>> {
    let request = pace_proto::Request::parse(frame).ok()?;
    let now = plant.date_time();
    let pack = plant.packs.get_mut(k)?;
    if pack.silent {
        return None;
    }
    let garbage = pack.garbage;
    let reply = pack.answer(&request, now)?;
    let mut out = Vec::with_capacity(256);
    reply.emit(&mut out).ok()?;
    if garbage {
        let mut noisy: Vec<u8> = (0..8).map(|_| plant.rng.byte()).filter(|b| *b != b'~').collect();
        if plant.rng.next_f64() < 0.5 && out.len() > 20 {
            out[15] = if out[15] == b'0' { b'1' } else { b'0' };
        }
        noisy.append(&mut out);
        return Some(noisy);
    }
    Some(out)
}

/// The counter answers a deframed Modbus request (slave address, then the PDU) with an RTU
/// frame: not when silent or asked at another address.
pub fn coil(coil: &mut Coil, frame: &[u8]) -> Option<Vec<u8>> {
    let (slave, pdu) = frame.split_first()?;
    if coil.silent || *slave != coil_modbus::DEFAULT_SLAVE {
        return None;
    }
    let request = modbus_rtu::Request::parse(pdu).ok()?;
    let (response, effect) = coil.registers.serve(&request);
    coil.apply(effect);
    let mut out = Vec::with_capacity(40);
    response.encode(*slave, &mut out).ok()?;
    Some(out)
}

/// The inverter answers a deframed Modbus request on its Modbus port.
pub fn inverter(registers: &mut vevor_modbus::Registers, frame: &[u8]) -> Option<Vec<u8>> {
    let (slave, pdu) = frame.split_first()?;
    if *slave != vevor_modbus::DEFAULT_SLAVE {
        return None;
    }
    let request = modbus_rtu::Request::parse(pdu).ok()?;
    let (response, _) = registers.serve(&request);
    let mut out = Vec::with_capacity(80);
    response.encode(*slave, &mut out).ok()?;
    Some(out)
}
