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

/// A world whose capture is replayed alongside it; when it goes out of scope (the test passed),
/// the replay must have taken every decision, written every byte and answered the inverter as
/// the world's station did.
pub struct Checked(pub World);

/// `w`, replayed alongside from now on.
pub fn checked(mut w: World) -> Checked {
    w.replay_alongside();
    Checked(w)
}

impl std::ops::Deref for Checked {
    type Target = World;
    fn deref(&self) -> &World {
        &self.0
    }
}

impl std::ops::DerefMut for Checked {
    fn deref_mut(&mut self) -> &mut World {
        &mut self.0
    }
}

impl Drop for Checked {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        if let Err(e) = self.0.replay_check() {
            panic!("the capture of this scenario does not replay as it ran: {e}");
        }
    }
}
