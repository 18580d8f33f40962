//! The simulated plant the demo and the integration tests run on, and a tool for people testing
//! their own set-up: Pace packs, the coulomb counter and the inverter, with physics, a simulated
//! clock that can run faster than real time, and fault injection.
//!
//! ```text
//!   PV ──┐                          ┌── pack 1: 8 LFP cells + Pace BMS ── Pace v25 (TCP P)
//!  grid ─┼─ inverter ─ bus ─ coil ──┼── pack 2                          ── Pace v25 (TCP P+1)
//!  load ─┘   │   │                  └── ...
//!            │   └ Vevor registers over Modbus RTU (TCP P+101)
//!            └ polls 0x61/0x63 as a Pylontech master (TCP P+102)    coil: Modbus RTU (TCP P+100)
//! ```
//!
//! [`Plant`] is pure (time is passed in); [`server`] puts it on links and drives its clock.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod answer;
pub mod cell;
pub mod pack;
pub mod plant;
pub mod server;

pub use pack::{FaultKind, Pack};
pub use plant::{Ledger, Limits, NO_COMM, Plant, PlantConfig};
