//! What an audit compares, typed by mode: the [`Plan`] the incident file yields (every derived
//! window resolved once), and the [`Ctx`] every kernel and check reads (plan, thresholds, which
//! columns the inputs have, what the run builds). Built once before the passes; never mutated.

use std::collections::BTreeSet;

use crate::columns::Col;
use crate::incident::{PinSet, Thresholds, Window};
use crate::time::{Micros, MICROS_PER_MINUTE};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Rollback,
    Canary,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Rollback => "rollback",
            Mode::Canary => "canary",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The comparison an audit makes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Plan {
    /// Requests after the flip against the last known good pins; baseline window against post window.
    Rollback(Rollback),
    /// Two arms side by side, each against its own pins.
    Canary(Canary),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Rollback {
    pub(crate) flip_at: Micros,
    pub(crate) baseline: Window,
    /// The incident's post window, or the default `[flip_at + 10 min, ∞)` ("to the end of data").
    pub(crate) post: Window,
    pub(crate) post_is_default: bool,
    pub(crate) freeze: Option<Window>,
    /// One set: the last known good pins.
    pub(crate) pins: [PinSet; 1],
    /// `[flip_at_by_region]`: a region listed here flips at its own instant; the others (and
    /// requests without a region) at `flip_at`.
    pub(crate) flip_by_region: std::collections::BTreeMap<String, Micros>,
}

impl Rollback {
    /// The flip of `region` (its own, else `flip_at`).
    #[inline]
    pub(crate) fn flip_of(&self, region: Option<&str>) -> Micros {
        region
            .and_then(|r| self.flip_by_region.get(r))
            .copied()
            .unwrap_or(self.flip_at)
    }

    /// The settling window: from the flip to the start of the post window.
    pub(crate) fn settling(&self) -> Window {
        Window {
            start: self.flip_at,
            end: self.post.start.max(self.flip_at),
        }
    }

    /// Flip-aligned minute of `t`: minute k is [flip_at + k min, flip_at + (k+1) min).
    #[inline]
    pub(crate) fn minute(&self, t: Micros) -> i64 {
        crate::time::minute_since(t, self.flip_at)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Canary {
    pub(crate) baseline_arm: String,
    pub(crate) canary_arm: String,
    /// `None`: all data.
    pub(crate) window: Option<Window>,
    /// `[baseline arm's, canary arm's]`.
    pub(crate) pins: [PinSet; 2],
}

/// The default post window starts this long after the flip.
pub(crate) const DEFAULT_POST_DELAY: Micros = 10 * MICROS_PER_MINUTE;

impl Canary {
    #[inline]
    pub(crate) fn in_window(&self, ts: Micros) -> bool {
        self.window.is_none_or(|w| w.contains(ts))
    }
}

impl Plan {
    /// The times of every audited row (one whose [`crate::engine::Rows`] `set` is not 0), as an
    /// inclusive range: from the earliest flip of any region on (rollback), the window (canary).
    pub(crate) fn audited_span(&self) -> (Micros, Micros) {
        match self {
            Plan::Rollback(r) => {
                let first = r
                    .flip_by_region
                    .values()
                    .copied()
                    .fold(r.flip_at, Micros::min);
                (first, Micros::MAX)
            }
            Plan::Canary(c) => match c.window {
                Some(w) => (w.start, w.end.saturating_sub(1)),
                None => (Micros::MIN, Micros::MAX),
            },
        }
    }

    pub(crate) fn mode(&self) -> Mode {
        match self {
            Plan::Rollback(_) => Mode::Rollback,
            Plan::Canary(_) => Mode::Canary,
        }
    }

    /// The pin sets rows are audited against: index `s` is set `s + 1` in [`crate::engine::Rows`].
    pub(crate) fn pin_sets(&self) -> &[PinSet] {
        match self {
            Plan::Rollback(r) => &r.pins,
            Plan::Canary(c) => &c.pins,
        }
    }

    pub(crate) fn flip_at(&self) -> Option<Micros> {
        match self {
            Plan::Rollback(r) => Some(r.flip_at),
            Plan::Canary(_) => None,
        }
    }

    pub(crate) fn freeze(&self) -> Option<Window> {
        match self {
            Plan::Rollback(r) => r.freeze,
            Plan::Canary(_) => None,
        }
    }

    pub(crate) fn rollback(&self) -> Option<&Rollback> {
        match self {
            Plan::Rollback(r) => Some(r),
            Plan::Canary(_) => None,
        }
    }

    pub(crate) fn canary(&self) -> Option<&Canary> {
        match self {
            Plan::Canary(c) => Some(c),
            Plan::Rollback(_) => None,
        }
    }

    /// Whether a receipt with this `ts` is audited: canary mode audits only the window.
    #[inline]
    pub(crate) fn receipt_in_scope(&self, ts: Micros) -> bool {
        match self {
            Plan::Rollback(_) => true,
            Plan::Canary(c) => c.in_window(ts),
        }
    }

    /// `post` or `canary`: the prefix of the subject side's metrics.
    pub(crate) fn subject(&self) -> &'static str {
        match self {
            Plan::Rollback(_) => "post",
            Plan::Canary(_) => "canary",
        }
    }

    /// Name of the audited rows, for summaries.
    pub(crate) fn audited_noun(&self) -> &'static str {
        match self {
            Plan::Rollback(_) => "post-flip requests",
            Plan::Canary(_) => "requests of both arms",
        }
    }

    /// Names of the two sides, for messages.
    pub(crate) fn side_names(&self) -> [&'static str; 2] {
        match self {
            Plan::Rollback(_) => ["baseline window", "post window"],
            Plan::Canary(_) => ["baseline arm", "canary arm"],
        }
    }

    /// Label of pin set `s` (0-based) in breakdowns.
    pub(crate) fn set_label(&self, s: usize) -> String {
        match self {
            Plan::Canary(c) if s == 0 => c.baseline_arm.clone(),
            Plan::Canary(c) => c.canary_arm.clone(),
            Plan::Rollback(_) => "expected".to_string(),
        }
    }

    /// Pins named in any of the sets, sorted, for projection.
    pub(crate) fn pins_named(&self) -> Vec<Col> {
        let mut cols: Vec<Col> = self
            .pin_sets()
            .iter()
            .flat_map(|s| s.pins.iter().map(|(c, _)| *c))
            .collect();
        cols.sort();
        cols.dedup();
        cols
    }
}

/// Which canonical columns the inputs have.
#[derive(Debug, Clone, Default)]
pub(crate) struct Columns {
    pub(crate) requests: BTreeSet<Col>,
    /// `None` when no receipts were given.
    pub(crate) receipts: Option<BTreeSet<Col>>,
}

/// Everything a kernel or check may know besides the data.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    pub(crate) plan: Plan,
    pub(crate) thresholds: Thresholds,
    pub(crate) root_cause_url: Option<String>,
    pub(crate) columns: Columns,
    /// Build the per-minute series (only the HTML report draws them).
    pub(crate) series: bool,
    /// `[flags]`: flag name → the state it must be in after the rollback, sorted by name.
    pub(crate) flags: Vec<(String, String)>,
    /// Whether a captured-state file was given (the pins live before the flip are then counted).
    pub(crate) captured_state: bool,
    /// `[statistics]`: point or interval judgement, confidence, sequential.
    pub(crate) statistics: crate::incident::Statistics,
    /// The tables are folded on several machines: a kernel cannot count on an earlier stage's
    /// states (the requests of one shard, the receipts of another) while it folds.
    pub(crate) sharded: bool,
    /// The mixed users' samples may come from the first pass (`users::Captured`) instead of a
    /// look-up; `ROLLPROOF_NO_SAMPLE_CAPTURE` turns this off, to compare the two.
    pub(crate) first_pass_samples: bool,
}

impl Ctx {
    pub(crate) fn has(&self, col: Col) -> bool {
        self.columns.requests.contains(&col)
    }

    pub(crate) fn has_receipt(&self, col: Col) -> bool {
        self.columns
            .receipts
            .as_ref()
            .is_some_and(|p| p.contains(&col))
    }

    pub(crate) fn receipts_given(&self) -> bool {
        self.columns.receipts.is_some()
    }
}
