//! `flag_drift`: after the rollback, the server applies every flag listed in `[flags]` in its
//! listed state, and clients do not act on another one.
//!
//! A flag column is `name=value` pairs separated by `,` or `;` (spaces ignored, order free). Each
//! distinct flag string is parsed once (per dictionary value, or per row for plain strings) into
//! a small code: per listed flag, whether the string names it and whether its value is the
//! listed state.

use serde::{Deserialize, Serialize};

use super::rows::{RowsKernel, ROWS};
use super::Lever;
use super::{
    region_of, CheckInfo, CheckResult, CheckSpec, Fields, Finish, Metric, Status, ROLLBACK,
};
use crate::columns::{Col, StrCol, Table};
use crate::engine::{Kernel, Rows, Stage, States};
use crate::plan::Ctx;
use crate::stats::{Counts, Keyed, SampleKey, Strata};
use crate::words::plural;

/// Flags one incident may list.
pub(crate) const MAX_FLAGS: usize = 16;

pub(crate) static CHECK: CheckSpec = CheckSpec {
    info: &INFO,
    kernels: &[&FLAGS, &ROWS],
    finish,
    evidence: &[&super::Evidence {
        kind: "requests_with_flag_drift",
        table: Table::Requests,
        select: |ctx, _, rows| {
            let verdicts = row_verdicts(ctx, rows);
            verdicts.iter().map(|v| v.any()).collect()
        },
    }],
};

pub(crate) static INFO: CheckInfo = CheckInfo {
    id: "flag_drift",
    title: "Client flags against server reality",
    modes: ROLLBACK,
    what_it_checks: "For every request after its region's flip, the flags of [flags] in the \
        server_flags column (what the server applied) and the client_flags column (what the client \
        believed), as name=value pairs separated by `,` or `;`. The server is wrong when it applied a \
        listed flag in another state or did not report it; the client is stale when it reported a \
        listed flag in another state; the two drifted when both reported a listed flag with different \
        values.",
    why_it_matters: "A kill switch that took on the server but not on the clients (or the reverse) keeps \
        the bad behaviour alive: clients keep calling the path the rollback turned off, or the server \
        still serves it. The rollback page calls client-only flags that drift from server reality a \
        common pitfall.",
    what_fails_it: "It fails when server_wrong > 0 (the kill switch did not take); it warns when \
        client_stale > 0 or drifted > 0. It skips without [flags] or without a server_flags column.",
    columns_it_needs: "ts, server_flags; client_flags for the client figures; region (per-region \
        flips), request_id for samples.",
    figures: &[
        ("requests_checked", "Requests at or after their region's flip."),
        ("server_wrong", "Of those, requests whose server_flags has a listed flag in another state, or lacks it."),
        ("client_stale", "Requests whose client_flags has a listed flag in another state."),
        ("drifted", "Requests where client_flags and server_flags both have a listed flag, with different values."),
        ("by_flag", "Flag → requests where the server or the client is wrong about it."),
    ],
    remediation: "push the flag state to every server and client (config reload, client cache busting) and confirm it from the logs",
    region_column: None,
    impact: Some(|_, m, _| {
        let server = m.get("server_wrong").and_then(Metric::as_count).unwrap_or(0);
        let client = m.get("client_stale").and_then(Metric::as_count).unwrap_or(0);
        match (server, client) {
            (0, 0) => None,
            (0, c) => Some(format!(
                "{} after the flip acted on a flag state the server no longer had.",
                plural(c, "client request", "client requests")
            )),
            (s, _) => Some(format!(
                "{} after the flip ran with a flag the rollback should have switched.",
                plural(s, "request", "requests")
            )),
        }
    }),
    events: None,
    lever: Some(|_| Some(Lever::PushFlagState)),
};

/// What one request's flags say, per listed flag: 2 bits each.
#[derive(Debug, Clone, Copy, Default)]
struct Verdict {
    server_wrong: u64,
    client_stale: u64,
    drifted: u64,
}

impl Verdict {
    fn any(&self) -> bool {
        self.server_wrong | self.client_stale | self.drifted != 0
    }
}

/// A flag string parsed against the listed flags: bit i of `named` when it names flag i, bit i of
/// `agrees` when its value is the listed state; `values[i]` its value's hash (for drift).
#[derive(Debug, Clone, Copy, Default)]
struct Parsed {
    named: u64,
    agrees: u64,
    /// A 64-bit hash of each named flag's value, folded per flag: drift compares them.
    values: [u64; MAX_FLAGS],
}

fn parse(flags: &[(String, String)], text: Option<&str>) -> Parsed {
    let mut p = Parsed::default();
    let Some(text) = text else { return p };
    for pair in text.split([',', ';']) {
        let Some((name, value)) = pair.split_once('=') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if let Ok(i) = flags.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
            p.named |= 1 << i;
            if value == flags[i].1 {
                p.agrees |= 1 << i;
            } else {
                p.agrees &= !(1 << i);
            }
            p.values[i] = crate::columns::hash_str(Some(value));
        }
    }
    p
}

/// Per row: the server's and the client's flags parsed (once per distinct string).
fn parsed_column(flags: &[(String, String)], col: Option<StrCol<'_>>, n: usize) -> Vec<Parsed> {
    match col {
        Some(c) => c.map_rows(|v| parse(flags, v)),
        None => vec![Parsed::default(); n],
    }
}

/// Per row of the batch: the verdict (all clear for rows before their region's flip).
fn row_verdicts(ctx: &Ctx, rows: &Rows<'_>) -> Vec<Verdict> {
    let n = rows.len();
    let flags = &ctx.flags;
    let all: u64 = (1u64 << flags.len()) - 1;
    let server = parsed_column(flags, rows.batch.str(Col::ServerFlags), n);
    let client = parsed_column(flags, rows.batch.str(Col::ClientFlags), n);
    let has_client = rows.batch.str(Col::ClientFlags).is_some();
    (0..n)
        .map(|i| {
            if rows.set.get(i).is_none_or(|s| *s == 0) {
                return Verdict::default();
            }
            let (s, c) = (&server[i], &client[i]);
            let both = s.named & c.named;
            let mut drifted = 0;
            for f in 0..flags.len() {
                if both & (1 << f) != 0 && s.values[f] != c.values[f] {
                    drifted |= 1 << f;
                }
            }
            Verdict {
                server_wrong: all & !(s.named & s.agrees),
                client_stale: if has_client { c.named & !c.agrees } else { 0 },
                drifted,
            }
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) struct Sample {
    ts: i64,
    request_id: Option<String>,
    flag: usize,
    server: Option<String>,
    client: Option<String>,
    region: String,
}

impl Keyed for Sample {
    fn key(&self) -> SampleKey<'_> {
        (self.ts, self.request_id.as_deref())
    }
}

#[derive(Serialize, Deserialize)]
pub(crate) struct State {
    requests_checked: u64,
    server_wrong: u64,
    client_stale: u64,
    drifted: u64,
    by_flag: Vec<u64>,
    samples: Strata<Sample>,
}

pub(crate) struct FlagsKernel;
pub(crate) static FLAGS: FlagsKernel = FlagsKernel;

fn skip_reason(ctx: &Ctx) -> Option<String> {
    if ctx.flags.is_empty() {
        Some("no [flags] in the incident file".to_string())
    } else if !ctx.has(Col::ServerFlags) {
        Some("the requests have no `server_flags` column".to_string())
    } else {
        None
    }
}

/// The value a flag string gives flag `name` (for samples).
fn value_of(text: Option<&str>, name: &str) -> Option<String> {
    text?.split([',', ';']).find_map(|pair| {
        let (n, v) = pair.split_once('=')?;
        (n.trim() == name).then(|| v.trim().to_string())
    })
}

impl Kernel for FlagsKernel {
    type State = State;
    const NAME: &'static str = "flags";
    const TABLE: Table = Table::Requests;
    const STAGE: Stage = Stage::Requests;

    fn columns(&self, ctx: &Ctx) -> Vec<Col> {
        if skip_reason(ctx).is_some() {
            return Vec::new();
        }
        vec![
            Col::ServerFlags,
            Col::ClientFlags,
            Col::Region,
            Col::RequestId,
        ]
    }

    fn init(&self, ctx: &Ctx, _prior: &States) -> State {
        State {
            requests_checked: 0,
            server_wrong: 0,
            client_stale: 0,
            drifted: 0,
            by_flag: vec![0; ctx.flags.len()],
            samples: Strata::new(2),
        }
    }

    fn update(&self, ctx: &Ctx, state: &mut State, rows: &Rows<'_>) {
        if skip_reason(ctx).is_some() {
            return;
        }
        let verdicts = row_verdicts(ctx, rows);
        let batch = rows.batch;
        let region = batch.str(Col::Region);
        let id = batch.str(Col::RequestId);
        let (server, client) = (batch.str(Col::ServerFlags), batch.str(Col::ClientFlags));
        let ts = batch.ts();
        for (i, v) in verdicts.iter().enumerate() {
            if rows.set[i] == 0 {
                continue;
            }
            state.requests_checked += 1;
            state.server_wrong += (v.server_wrong != 0) as u64;
            state.client_stale += (v.client_stale != 0) as u64;
            state.drifted += (v.drifted != 0) as u64;
            let wrong = v.server_wrong | v.client_stale;
            if wrong == 0 && v.drifted == 0 {
                continue;
            }
            for (f, (name, _)) in ctx.flags.iter().enumerate() {
                if wrong & (1 << f) != 0 {
                    state.by_flag[f] += 1;
                }
                if (wrong | v.drifted) & (1 << f) != 0 {
                    let request_id = id.as_ref().and_then(|c| c.get(i));
                    state.samples.offer(name, (ts[i], request_id), || Sample {
                        ts: ts[i],
                        request_id: request_id.map(str::to_string),
                        flag: f,
                        server: value_of(server.as_ref().and_then(|c| c.get(i)), name),
                        client: value_of(client.as_ref().and_then(|c| c.get(i)), name),
                        region: region_of(region.as_ref(), i).to_string(),
                    });
                }
            }
        }
    }

    fn merge(&self, state: &mut State, other: State) {
        state.requests_checked += other.requests_checked;
        state.server_wrong += other.server_wrong;
        state.client_stale += other.client_stale;
        state.drifted += other.drifted;
        for (a, b) in state.by_flag.iter_mut().zip(other.by_flag) {
            *a += b;
        }
        state.samples.merge(other.samples);
    }
}

fn finish(f: &Finish<'_>) -> CheckResult {
    let ctx = f.ctx;
    if let Some(reason) = skip_reason(ctx) {
        return CheckResult::skip(INFO.id, reason);
    }
    let s = f.states.get::<FlagsKernel>();
    let _ = f.states.get::<RowsKernel>();
    let mut parts = Vec::new();
    let mut status = Status::Pass;
    if s.server_wrong > 0 {
        status = Status::Fail;
        parts.push(format!(
            "{} after the flip ran with a listed flag in another state (or unreported) on the server",
            plural(s.server_wrong, "request", "requests")
        ));
    }
    if s.client_stale > 0 {
        status = status.worst(Status::Warn);
        parts.push(format!(
            "{} from clients holding a stale flag",
            plural(s.client_stale, "request", "requests")
        ));
    }
    if s.drifted > 0 {
        status = status.worst(Status::Warn);
        parts.push(format!(
            "{} where client and server disagree",
            plural(s.drifted, "request", "requests")
        ));
    }
    if parts.is_empty() {
        parts.push(format!(
            "every one of {} after the flip ran with the listed flag states",
            plural(s.requests_checked, "request", "requests")
        ));
    }
    let by_flag: Counts = {
        let mut c = Counts::default();
        for (i, n) in s.by_flag.iter().enumerate() {
            if *n > 0 {
                c.add(&ctx.flags[i].0, *n);
            }
        }
        c
    };
    let mut result = CheckResult::new(INFO.id, status, parts.join("; "))
        .metric("requests_checked", Metric::Count(s.requests_checked))
        .metric("server_wrong", Metric::Count(s.server_wrong))
        .metric("client_stale", Metric::Count(s.client_stale))
        .metric("drifted", Metric::Count(s.drifted))
        .metric("by_flag", Metric::Counts(by_flag.sorted()))
        .cells(
            format!(
                "{} wrong on the server, {} stale on clients",
                s.server_wrong, s.client_stale
            ),
            "",
            "0 on the server (fail), 0 on clients (warn)",
        )
        .sample_size(s.requests_checked.to_string());
    result.samples = s
        .samples
        .pick(super::SAMPLE_CAP)
        .into_iter()
        .map(|x| {
            let flag = &ctx.flags[x.flag];
            Fields::from([
                ("ts".to_string(), Metric::Time(Some(x.ts))),
                ("request_id".to_string(), Metric::Text(x.request_id)),
                ("region".to_string(), Metric::Text(Some(x.region))),
                ("flag".to_string(), Metric::Text(Some(flag.0.clone()))),
                ("expected".to_string(), Metric::Text(Some(flag.1.clone()))),
                ("server".to_string(), Metric::Text(x.server)),
                ("client".to_string(), Metric::Text(x.client)),
            ])
        })
        .collect();
    result
}
