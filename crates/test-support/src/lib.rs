//! What pace2pylon's tests share, in one place (issue 12: one test-support module instead of a
//! harness per crate):
//!
//! - [`plant`]: the daemon wired to the simulated plant over loopback TCP, in the test's process,
//!   as a real installation is wired (the daemon's end-to-end tests and bench, the web API tests);
//! - [`history`]: a history file of made-up but plausible days, for the history endpoint and
//!   the charts;
//! - [`process`]: external programs (the installed binaries, mosquitto), free ports, processes
//!   killed when a test ends (the CLI, hardening, MQTT and browser tests).
//!
//! Plant-time scenarios need none of this: `sim_world::World` runs the daemon's machines against
//! the plant without sockets or threads.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support fails loudly

pub mod history;
pub mod plant;
pub mod process;
