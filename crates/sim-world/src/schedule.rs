//! Fault schedules: when which fault is injected, for how long, and how it is cleared. The
//! default one is [`DEFAULT_SCHEDULE`]; `simulate --faults FILE` reads the same format.

use sim::plant::Rng;

/// `simulate --faults default`, in the schedule format (the README shows it).
pub const DEFAULT_SCHEDULE: &str = "\
# pace2pylon simulate's default fault schedule.
# Every 6 plant hours (± 2 h, seeded) one of these, equally likely:
every 6h ±2h:
  | silence pack * for 60s then restore pack *
  | noise pack * for 10m then quiet pack *
  | silence coil for 60s then restore coil
  | lose inverter for 120s then restore inverter
  | restart daemon for 15s
  | fault pack * cell-ov for 120s then clear pack *
  | fault pack * overtemp for 120s then clear pack *
  | fault pack * overcurrent for 120s then clear pack *
  | fault pack * short-circuit for 120s then clear pack *
  | fault pack * mosfet-fault for 120s then clear pack *
# A cell drifting low, as a weak cell does over months.
every 3d: drift pack * -60
";

/// A line of a schedule that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{name} line {line}: {message}")]
pub struct Error {
    /// The schedule's name (its file).
    pub name: String,
    /// 1-based.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// When a rule fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum When {
    /// Once, this many plant seconds after the start.
    At(u64),
    /// Every `period` s (the first after one period), the later ones ± `jitter` s.
    Every { period: u64, jitter: u64 },
}

/// One of a rule's alternatives.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Choice {
    start: String,
    window_s: u64,
    clear: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Rule {
    line: usize,
    when: When,
    choices: Vec<Choice>,
}

/// What kind of fault, for time-to-safe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A fault in a pack's reply (`fault pack`): time-to-safe counts to the first 0x63 with both
    /// bits clear.
    Reported,
    /// A pack gone silent (`silence pack`): likewise, bounded by `stale_after`.
    SilentPack,
    /// Anything else (the counter, the inverter, a restart, a line's noise): only its window counts.
    Other,
}

/// A parsed schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// `none`, `default`, or the file it came from (the scorecard's `faults`).
    pub name: String,
    rules: Vec<Rule>,
}

/// A fault to inject now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Firing {
    pub start: String,
    pub window_s: u64,
    pub clear: Option<String>,
    pub kind: Kind,
}

fn duration(text: &str) -> Result<u64, String> {
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: u64 = number.parse().map_err(|_| format!("'{text}' is not a duration (90s, 10m, 6h, 3d)"))?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("'{text}' is not a duration: the unit is s, m, h or d")),
    };
    n.checked_mul(scale).ok_or_else(|| format!("'{text}' is too long"))
}

fn choice(text: &str) -> Result<Choice, String> {
    let text = text.trim();
    let (start, rest) = match text.split_once(" for ") {
        Some((start, rest)) => (start.trim(), Some(rest.trim())),
        None => (text, None),
    };
    if start.is_empty() {
        return Err("an empty command".into());
    }
    let (window_s, clear) = match rest {
        None => (0, None),
        Some(rest) => match rest.split_once(" then ") {
            Some((d, clear)) if !clear.trim().is_empty() => {
                (duration(d.trim())?, Some(clear.trim().to_owned()))
            }
            Some(_) => return Err(format!("'{text}': nothing after 'then'")),
            None => (duration(rest)?, None),
        },
    };
    Ok(Choice { start: start.to_owned(), window_s, clear })
}

fn when(text: &str) -> Result<When, String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    match words.as_slice() {
        ["at", d] => Ok(When::At(duration(d)?)),
        ["every", d] => Ok(When::Every { period: duration(d)?, jitter: 0 }),
        ["every", d, j] => {
            let j = j
                .strip_prefix('±')
                .or_else(|| j.strip_prefix("+-"))
                .ok_or_else(|| format!("'{j}': a jitter is written ±D or +-D (every 6h ±2h)"))?;
            let (period, jitter) = (duration(d)?, duration(j)?);
            if period == 0 || jitter >= period {
                return Err(format!("every {d} ±{j}: the period must be above 0 and above the jitter"));
            }
            Ok(When::Every { period, jitter })
        }
        ["every", _, ..] => Err("every D [±J]: too many words".into()),
        _ => Err(format!("'{text}': a rule starts with 'at D:' or 'every D [±J]:'")),
    }
}

impl Schedule {
    /// No faults.
    pub fn none() -> Self {
        Self { name: "none".into(), rules: Vec::new() }
    }

    /// [`DEFAULT_SCHEDULE`].
    pub fn default_schedule() -> Self {
        let mut s = Self::parse(DEFAULT_SCHEDULE, "default").unwrap_or_else(|_| Self::none());
        s.name = "default".into();
        s
    }

    /// Reads a schedule: one rule a line (`at D: CHOICE | CHOICE ...` or `every D [±J]: ...`),
    /// continued on lines that start with `|`; `#` starts a comment. A CHOICE is a fault command
    /// with `for D then COMMAND` to clear it after D (or `for D` alone: a window with nothing to
    /// clear); `*` in it is a pack picked at random, the same in both commands.
    ///
    /// # Errors
    /// The first line that cannot be read, named with its number.
    pub fn parse(text: &str, name: &str) -> Result<Self, Error> {
        let err = |line: usize, message: String| Error { name: name.to_owned(), line, message };
        let mut rules: Vec<Rule> = Vec::new();
        for (k, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix('|') {
                let Some(rule) = rules.last_mut() else {
                    return Err(err(
                        k + 1,
                        "a '|' line continues a rule, but there is none before it".into(),
                    ));
                };
                for c in rest.split('|') {
                    rule.choices.push(choice(c).map_err(|m| err(k + 1, m))?);
                }
                continue;
            }
            let (head, body) = line
                .split_once(':')
                .ok_or_else(|| err(k + 1, "a rule is 'WHEN: COMMAND ...' (no ':' here)".into()))?;
            let when = when(head).map_err(|m| err(k + 1, m))?;
            let choices = body
                .split('|')
                .filter(|c| !c.trim().is_empty())
                .map(choice)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|m| err(k + 1, m))?;
            rules.push(Rule { line: k + 1, when, choices });
        }
        if let Some(rule) = rules.iter().find(|r| r.choices.is_empty()) {
            return Err(err(rule.line, "a rule without a command".into()));
        }
        Ok(Self { name: name.to_owned(), rules })
    }

    /// Every command of the schedule, with `*` as pack 1, and the line it is on (for checking
    /// them against a world before a run).
    pub(crate) fn commands(&self) -> impl Iterator<Item = (usize, String)> + '_ {
        self.rules.iter().flat_map(|r| {
            r.choices.iter().flat_map(move |c| {
                std::iter::once(&c.start).chain(&c.clear).map(move |cmd| (r.line, cmd.replace('*', "1")))
            })
        })
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// A schedule being run: each rule's next time, and whether its last fault is still on.
#[derive(Debug)]
pub(crate) struct Runner {
    schedule: Schedule,
    next: Vec<Option<u64>>,
    busy_until: Vec<u64>,
    rng: Rng,
}

impl Runner {
    pub(crate) fn new(schedule: Schedule, seed: u64) -> Self {
        let next = schedule
            .rules
            .iter()
            .map(|r| match r.when {
                When::At(t) => Some(t),
                When::Every { period, .. } => Some(period),
            })
            .collect();
        let busy_until = vec![0; schedule.rules.len()];
        Self { schedule, next, busy_until, rng: Rng::new(seed ^ 0x5EED) }
    }

    /// The faults due at plant second `t` on a plant of `packs` packs. A rule whose last fault is
    /// still on waits for it to end.
    pub(crate) fn due(&mut self, t: u64, packs: usize) -> Vec<Firing> {
        let mut out = Vec::new();
        for (k, rule) in self.schedule.rules.iter().enumerate() {
            let Some(at) = self.next[k] else { continue };
            if t < at || t < self.busy_until[k] {
                continue;
            }
            let pack = 1 + (self.rng.next_f64() * packs as f64) as usize % packs.max(1);
            let pick = (self.rng.next_f64() * rule.choices.len() as f64) as usize % rule.choices.len();
            let c = &rule.choices[pick];
            let fill = |s: &str| s.replace('*', &pack.to_string());
            let start = fill(&c.start);
            let kind = if start.starts_with("fault pack") {
                Kind::Reported
            } else if start.starts_with("silence pack") {
                Kind::SilentPack
            } else {
                Kind::Other
            };
            out.push(Firing { start, window_s: c.window_s, clear: c.clear.as_deref().map(fill), kind });
            self.busy_until[k] = t + c.window_s;
            self.next[k] = match rule.when {
                When::At(_) => None,
                When::Every { period, jitter } => {
                    let spread = (self.rng.next_f64() * 2.0 - 1.0) * jitter as f64;
                    Some(t + (period as f64 + spread).max(1.0) as u64)
                }
            };
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_schedule_reads_and_fires_every_6_h_give_or_take_2() {
        let s = Schedule::default_schedule();
        assert_eq!(s.name, "default");
        assert_eq!(s.rules.len(), 2);
        assert_eq!(s.rules[0].choices.len(), 10);
        assert_eq!(s.rules[0].when, When::Every { period: 6 * 3600, jitter: 2 * 3600 });
        assert_eq!(
            s.rules[0].choices[0],
            Choice { start: "silence pack *".into(), window_s: 60, clear: Some("restore pack *".into()) }
        );
        assert_eq!(
            s.rules[0].choices[4],
            Choice { start: "restart daemon".into(), window_s: 15, clear: None }
        );
        let mut runner = Runner::new(s, 9);
        let mut fired = Vec::new();
        for t in 0..30 * 86400 {
            for f in runner.due(t, 4) {
                if !f.start.starts_with("drift") {
                    fired.push(t);
                }
                assert!(!f.start.contains('*'), "{f:?}");
            }
        }
        assert_eq!(fired[0], 6 * 3600);
        for pair in fired.windows(2) {
            let gap = pair[1] - pair[0];
            assert!((4 * 3600..=8 * 3600).contains(&gap), "{gap}");
        }
    }

    #[test]
    fn at_fires_once_and_a_busy_rule_waits_for_its_fault_to_end() {
        let s = Schedule::parse(
            "at 10s: silence coil for 60s then restore coil\nevery 5s: silence pack * for 20s",
            "t",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let mut runner = Runner::new(s, 1);
        let mut at = Vec::new();
        for t in 0..100 {
            at.extend(runner.due(t, 1).into_iter().map(|f| (t, f.start)));
        }
        let coil: Vec<u64> = at.iter().filter(|(_, s)| s == "silence coil").map(|(t, _)| *t).collect();
        let pack: Vec<u64> = at.iter().filter(|(_, s)| s == "silence pack 1").map(|(t, _)| *t).collect();
        assert_eq!(coil, vec![10]);
        // Every 5 s, but each waits for the previous 20 s window to end.
        assert_eq!(pack, vec![5, 25, 45, 65, 85]);
    }
}
