//! The pace2pylon daemon: the configuration, the [`station::Station`] that owns every machine
//! (pack pollers, the counter's and inverter's keepers, the controller, the order queue, the
//! energy meters, the history's minutes), and the drivers that run it.
//!
//! ```text
//!   line threads ×N ──reply──┐                              ┌─► responder ◄──► inverter (0x61/0x63 ...)
//!   (bytes only)   ◄─write───┤   station thread             │   (answers from one immutable snapshot,
//!                            ├─► Station (no I/O, no clock) ─┤    checking its age on every reply)
//!   orders (API, MQTT) ──────┘   handle_* / poll_*           └─► published (Arc, swapped whole)
//! ```
//!
//! The station decides without I/O, thread or clock, so the simulated world (`sim-world`) and the
//! replay of a capture ([`replay`]) drive the very same machine in plant time or capture time.
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
