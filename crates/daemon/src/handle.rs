//! What the web server, MQTT and the binaries may do with a running daemon: read its status and
//! recent events, give an operator's order, read the configuration. Nothing else of the daemon's
//! shared state is reachable from outside the crate.

use std::sync::Arc;

use crate::config::Config;
use crate::control::{Control, Refused};
use crate::shared::{Published, Shared};
use crate::state::EventLine;
use crate::status::Status;

/// A running daemon's narrow interface; cheap to clone.
#[derive(Clone, Debug)]
pub struct Handle {
    shared: Arc<Shared>,
}

impl Handle {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// The status now, from the last safety-loop cycle (never a mix of two).
    pub fn status(&self) -> Status {
        self.shared.status()
    }

    /// What the last cycle saw and decided.
    pub fn published(&self) -> Arc<Published> {
        self.shared.published()
    }

    /// The most recent `limit` events, newest last.
    pub fn recent_events(&self, limit: usize) -> Vec<EventLine> {
        self.shared.recent_events(limit)
    }

    /// Carries out an operator's order; says what was done.
    ///
    /// # Errors
    /// [`Refused`] naming why the order cannot be carried out.
    pub fn control(&self, order: &Control) -> Result<String, Refused> {
        self.shared.control(order)
    }

    /// The one-minute samples of the last `hours` (at most 48 are kept), oldest first.
    pub fn history(&self, hours: u32) -> Vec<crate::history::Sample> {
        let now = jiff::Timestamp::now().as_second();
        crate::shared::lock(&self.shared.history).last(hours, now)
    }

    /// The JSON of each one-minute sample of the last `hours`, oldest first, shared with the
    /// history itself (nothing is encoded or copied per call).
    pub fn history_encoded(&self, hours: u32) -> Vec<std::sync::Arc<str>> {
        let now = jiff::Timestamp::now().as_second();
        crate::shared::lock(&self.shared.history).last_encoded(hours, now)
    }

    /// The configuration the daemon runs with.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// Fault injection for tests: while frozen, the safety loop stops deciding, as a hung loop
    /// would (rule 10 then makes the responder answer disabled).
    pub fn freeze_safety_loop(&self, frozen: bool) {
        let _ = self.shared.inbox.send(crate::runtime::Inbox::Freeze(frozen));
    }
}
