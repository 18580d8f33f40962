//! What the plant-time tests share.

#![allow(dead_code, clippy::panic)] // not every test file uses every helper; tests fail loudly

use sim_world::World;

/// Steps plant seconds until `f` holds; fails the test with the event trace after `limit_s`.
/// Returns the plant seconds it took.
pub fn run_until(w: &mut World, limit_s: u64, what: &str, f: impl Fn(&World) -> bool) -> u64 {
    let start = w.t;
    while !f(w) {
        assert!(w.t - start < limit_s, "not within {limit_s} plant s: {what}\n{}", w.events.join("\n"));
        w.step();
    }
    w.t - start
}
