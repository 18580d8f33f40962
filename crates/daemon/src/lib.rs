//! The pace2pylon daemon: the configuration, one poller thread per pack and one for the counter,
//! the safety loop, and the Pylontech responder on the inverter's line.
//!
//! ```text
//!   pack pollers ──┐                                   ┌─► responder ◄──► inverter (0x61/0x63 ...)
//!   coil poller ───┼─► shared readings ─► safety loop ─┤   (answers from one immutable snapshot,
//!                  │                     (maestro +    │    checking its age on every reply)
//!                  │                      translator)  └─► snapshot (Arc, swapped whole)
//! ```
//!
//! The safety loop is a driver around [`core::Controller`], which decides without I/O, thread or
//! clock, so it also runs against the simulated plant in plant time (`tests/controller.rs`).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod can;
pub mod config;
pub mod control;
pub mod core;
pub mod energy;
pub mod file;
pub mod handle;
pub mod history;
pub mod keeper;
pub mod machine;
pub mod poller;
pub mod replay;
pub mod runtime;
mod shared;
pub mod state;
pub mod station;
pub mod status;
mod writer;

pub use config::Config;
pub use handle::Handle;
