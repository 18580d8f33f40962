//! The fail-safe rules (SAFETY.md §3) as a pure state machine: an [`Observation`] of the packs,
//! the counter, the operator and the current goes in with the time; a [`Decision`] comes out —
//! charge and discharge enabled or not, and every [`Reason`] that blocks them.
//!
//! ```text
//!            observe(now, packs, coil, current, operator, rebalance)
//!   ┌──────────────────────────────────────────────────────────────┐
//!   │ Maestro: latches with hysteresis (cell OV/UV, temperatures,  │──► Decision { at, charge,
//!   │ cold), the over-current timer                                │     discharge, reasons }
//!   └──────────────────────────────────────────────────────────────┘
//! ```
//!
//! Time is passed in ([`Millis`], any monotonic epoch), so hours of behaviour run in microseconds
//! in a test. Rule 10 (a decision older than `decision_max_age` must not be served) is checked where
//! replies are made, with [`Decision::is_fresh`].
//!
//! ```
//! use maestro_core::{Maestro, Millis, Observation, PackObservation, Reason, Thresholds};
//!
//! let mut maestro = Maestro::new(Thresholds::default());
//! let pack = PackObservation { cells_mv: vec![3300; 8], temps_dc: vec![250; 6], ..PackObservation::seen_at(Millis(0)) };
//! let obs = Observation { packs: &[pack], ..Observation::at(Millis(1000)) };
//! let d = maestro.decide(&obs);
//! assert!(d.charge && d.discharge, "{:?}", d.reasons);
//!
//! // Six seconds later without new data: stale.
//! let d = maestro.decide(&Observation { now: Millis(7000), ..obs });
//! assert!(!d.charge && !d.discharge);
//! assert_eq!(d.reasons, [Reason::PackStale { pack: 1 }]);
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod join;
pub mod rebalance;
mod rules;

pub use rebalance::{
    Action, Event, Imbalance, Outcome, Rebalance, RebalanceConfig, RebalanceInput, RebalanceState, Step,
    Targets, Trigger,
};
pub use rules::{Blocks, Decision, Maestro, Millis, Observation, PackObservation, Reason, Thresholds};
