//! The rest of the rollback page: region-by-region flips, client and server flags, backpressure
//! (429s, queue waits, breakers), the gold set and the captured state — planted into a
//! scenario's rows with their own random stream (so that scenarios without them keep their rows
//! byte for byte), and their figures computed by plain loops for the oracle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, RecordBatch};
use arrow::datatypes::{Field, Schema};
use serde_json::{json, Value};

use crate::time::{format_millis, format_seconds, Micros, MICROS_PER_MINUTE, MICROS_PER_SECOND};
use crate::{
    dict, pin_column, pins_of, strings, ts_column, write_batches, Naming, OutFormat, Request, Rng,
    Scenario, BAD, GOOD, PIN_NAMES,
};

/// The flag the rollback switched off.
pub const FLAG: &str = "prompt_pack_vNplus1";
/// The gold files and the captured state, as a scenario's incident names them.
pub const GOLD_RUN: &str = "gold.parquet";
pub const GOLD_BASELINE: &str = "gold_baseline.csv";
pub const CAPTURED: &str = "captured.toml";

/// The gold set: its size and planted faults.
#[derive(Debug, Clone, Default)]
pub struct GoldSpec {
    pub questions: usize,
    /// Baseline questions the run lacks.
    pub missing: usize,
    /// Run questions whose ΔS rose by 0.15.
    pub regressed: usize,
    /// Run rows on the bad prompt pack.
    pub pin_violations: usize,
    /// A question whose first run row regressed and a later one did not (must not count).
    pub superseded_decoy: bool,
}

/// The captured state and what is wrong with it.
#[derive(Debug, Clone, Default)]
pub struct CapturedSpec {
    pub after_flip: bool,
    /// Pins named (≤ 8), and how many of them differ from what was live.
    pub pins_named: usize,
    pub mismatched: usize,
}

/// What a scenario plants of the rest of the page.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// `[flip_at_by_region]`: these regions kept the bad pins until their own flip.
    pub region_flips: Vec<(&'static str, Micros)>,
    /// `[flags]` and the `client_flags`/`server_flags` columns.
    pub flags: bool,
    /// Post-flip requests whose server still applies the flag.
    pub server_flag_wrong: usize,
    /// Post-flip requests whose client still reports the flag on (server right).
    pub client_flag_stale: usize,
    /// The `queue_wait_ms` and `breaker_state` columns.
    pub backpressure: bool,
    /// Minutes after the flip with 10% of 429s (a storm at ≥ 5%).
    pub storm_minutes_after_flip: usize,
    /// Decoy: 429s in the baseline only.
    pub baseline_429: bool,
    /// Post-window queue waits ×this.
    pub post_queue_factor: f64,
    /// Requests in the last 60 s of the data with an open breaker.
    pub breaker_open_at_end: usize,
    pub gold: Option<GoldSpec>,
    pub captured: Option<CapturedSpec>,
}

impl Page {
    pub fn any(&self) -> bool {
        !self.region_flips.is_empty()
            || self.flags
            || self.backpressure
            || self.gold.is_some()
            || self.captured.is_some()
    }

    /// The flip of `region`.
    pub fn flip_of(&self, s: &Scenario, region: &str) -> Micros {
        self.region_flips
            .iter()
            .find(|(r, _)| *r == region)
            .map_or(s.flip_at, |(_, t)| *t)
    }
}

/// Plants the page's features into the requests (before the receipts are generated).
pub fn plant(s: &Scenario, rows: &mut [Request]) {
    let p = &s.page;
    if !p.any() || s.canary {
        return;
    }
    let mut rng = Rng::new(s.seed ^ 0x9a6e_2f41);
    // Regions flipped late keep the bad pins (and namespace) until their own flip.
    for r in rows.iter_mut() {
        let own = p.flip_of(s, &r.region);
        if r.ts >= s.flip_at && r.ts < own {
            r.pins = pins_of(&BAD);
            r.cache_ns = crate::namespace(&r.pins);
        }
    }
    if p.flags {
        for r in rows.iter_mut() {
            let own = p.flip_of(s, &r.region);
            // Before the flip the flag was on everywhere: stale values that must not count.
            let state = if r.ts >= s.bad_rollout_at && r.ts < own {
                "on"
            } else {
                "off"
            };
            r.server_flags = Some(format!("{FLAG}={state}; rerank_v2=on"));
            r.client_flags = Some(format!("rerank_v2 = on, {FLAG} = {state}"));
        }
        let post: Vec<usize> = (0..rows.len())
            .filter(|&i| rows[i].ts >= p.flip_of(s, &rows[i].region))
            .collect();
        let mut used = BTreeSet::new();
        for i in crate::pick(&mut rng, &post, &mut used, p.server_flag_wrong) {
            rows[i].server_flags = Some(format!("{FLAG}=on;rerank_v2=on"));
        }
        for i in crate::pick(&mut rng, &post, &mut used, p.client_flag_stale) {
            rows[i].client_flags = Some(format!("{FLAG}=on"));
        }
    }
    if p.backpressure {
        let end = rows.iter().map(|r| r.ts).max().unwrap_or(0);
        for (i, r) in rows.iter_mut().enumerate() {
            let mut wait = 20.0 + rng.below(2000) as f64 * 0.01;
            let bad = r.ts >= s.bad_rollout_at && r.ts < s.flip_at;
            if bad {
                wait *= 3.0;
            }
            if r.ts >= s.post.0 && r.ts < s.post.1 {
                wait *= p.post_queue_factor;
            }
            r.queue_wait_ms = Some((wait * 1000.0).round() / 1000.0);
            // Breakers opened during the incident (closed again by the end: a decoy).
            r.breaker_state = Some(if bad && i % 20 == 7 { "open" } else { "closed" }.to_string());
            let k = (r.ts - s.flip_at).div_euclid(MICROS_PER_MINUTE);
            if r.ts >= s.flip_at && (k as usize) < p.storm_minutes_after_flip && i % 10 == 3 {
                r.status = 429;
            }
            let baseline = r.ts >= s.baseline.0 && r.ts < s.baseline.1;
            if p.baseline_429 && baseline && i % 10 == 3 {
                r.status = 429;
            }
        }
        let tail: Vec<usize> = (0..rows.len())
            .filter(|&i| rows[i].ts > end - 60 * MICROS_PER_SECOND)
            .collect();
        let mut used = BTreeSet::new();
        for (n, i) in crate::pick(&mut rng, &tail, &mut used, p.breaker_open_at_end)
            .into_iter()
            .enumerate()
        {
            rows[i].breaker_state = Some(if n % 2 == 0 { "open" } else { "half_open" }.to_string());
        }
    }
}

/// One gold row.
#[derive(Debug, Clone)]
pub struct GoldRow {
    pub ts: Micros,
    pub question_id: String,
    pub delta_s: f64,
    pub coverage: f64,
    pub lambda_state: String,
    pub pins: [String; 8],
}

/// The gold set's rows: (run after the rollback, baseline on the last known good stack).
pub fn gold_rows(s: &Scenario) -> Option<(Vec<GoldRow>, Vec<GoldRow>)> {
    let g = s.page.gold.as_ref()?;
    let mut rng = Rng::new(s.seed ^ 0x601d);
    let mut run = Vec::new();
    let mut base = Vec::new();
    for q in 0..g.questions {
        let id = format!("q-{q:03}");
        let ds = 0.20 + rng.below(1500) as f64 * 0.0001;
        let cov = 0.72 + rng.below(1500) as f64 * 0.0001;
        let lambda = if rng.below(20) == 0 {
            "divergent"
        } else {
            "convergent"
        };
        let row = |ts: Micros, ds: f64, cov: f64, pins: [String; 8]| GoldRow {
            ts,
            question_id: id.clone(),
            delta_s: (ds * 1e6).round() / 1e6,
            coverage: (cov * 1e6).round() / 1e6,
            lambda_state: lambda.to_string(),
            pins,
        };
        base.push(row(
            s.baseline.0 + q as i64 * MICROS_PER_SECOND,
            ds,
            cov,
            pins_of(&GOOD),
        ));
        if q < g.missing {
            continue;
        }
        let noise = rng.below(200) as f64 * 0.0001;
        let mut ds_run = ds + noise;
        let mut pins = pins_of(&GOOD);
        let k = q - g.missing;
        if k < g.regressed {
            ds_run += 0.15;
        } else if k < g.regressed + g.pin_violations {
            pins[3] = BAD[3].to_string();
        }
        let ts = s.post.0 + q as i64 * MICROS_PER_SECOND;
        if g.superseded_decoy && k == g.regressed + g.pin_violations {
            // An early run that regressed, superseded by a later one that did not.
            run.push(row(ts - 5 * MICROS_PER_MINUTE, ds + 0.3, cov, pins.clone()));
        }
        run.push(row(ts, ds_run, cov - noise, pins));
    }
    Some((run, base))
}

/// Gold rows as one Arrow batch: what an eval harness writes.
pub fn gold_batch(rows: &[GoldRow], naming: Naming) -> RecordBatch {
    let mut fields: Vec<Field> = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    let mut add = |name: &str, arr: ArrayRef| {
        fields.push(Field::new(name, arr.data_type().clone(), true));
        columns.push(arr);
    };
    let (name, ts) = ts_column(naming, rows.iter().map(|r| r.ts));
    add(name, ts);
    add(
        "question_id",
        strings(rows.iter().map(|r| Some(r.question_id.clone()))),
    );
    add(
        "delta_s",
        Arc::new(
            rows.iter()
                .map(|r| Some(r.delta_s))
                .collect::<Float64Array>(),
        ),
    );
    add(
        "coverage",
        Arc::new(
            rows.iter()
                .map(|r| Some(r.coverage))
                .collect::<Float64Array>(),
        ),
    );
    add(
        "lambda_state",
        dict(rows.iter().map(|r| Some(r.lambda_state.clone()))),
    );
    for p in 0..PIN_NAMES.len() {
        add(
            pin_column(naming, p),
            dict(rows.iter().map(|r| Some(r.pins[p].clone()))),
        );
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).expect("consistent batch")
}

/// Writes the gold files (run as Parquet, baseline as CSV) and the captured state, when the
/// scenario has them.
pub fn write_files(s: &Scenario, dir: &Path, naming: Naming) -> anyhow::Result<()> {
    if let Some((run, base)) = gold_rows(s) {
        write_batches(
            &dir.join(GOLD_RUN),
            OutFormat::Parquet,
            &[gold_batch(&run, naming)],
            4096,
        )?;
        // The baseline as a notebook exports it: plain CSV.
        write_batches(
            &dir.join(GOLD_BASELINE),
            OutFormat::Csv,
            &[gold_batch(&base, naming)],
            4096,
        )?;
    }
    if let Some(toml) = captured_toml(s) {
        std::fs::write(dir.join(CAPTURED), toml)?;
    }
    Ok(())
}

/// The captured state's TOML.
pub fn captured_toml(s: &Scenario) -> Option<String> {
    let c = s.page.captured.as_ref()?;
    let at = if c.after_flip {
        s.flip_at + 2 * MICROS_PER_MINUTE
    } else {
        s.flip_at - MICROS_PER_MINUTE
    };
    let mut out = format!(
        "# The live state, dumped in step 1 of the rollback checklist.\ncaptured_at = {}\n",
        format_seconds(at)
    );
    for p in 0..c.pins_named.min(8) {
        let value = if p < c.mismatched {
            format!("{}-not-live", BAD[p])
        } else {
            BAD[p].to_string()
        };
        out.push_str(&format!("{} = \"{value}\"\n", PIN_NAMES[p]));
    }
    out.push_str("delta_s_samples = [0.41, 0.44, 0.39]\ncoverage_samples = [0.61, 0.58]\n");
    Some(out)
}

/// The incident file's lines for the page's features (inputs are added by the caller).
pub fn incident_sections(s: &Scenario) -> String {
    let p = &s.page;
    let mut out = String::new();
    if !p.region_flips.is_empty() {
        out.push_str("\n[flip_at_by_region]\n");
        for (r, t) in &p.region_flips {
            out.push_str(&format!("\"{r}\" = \"{}\"\n", format_seconds(*t)));
        }
    }
    if p.flags {
        out.push_str(&format!("\n[flags]\n{FLAG} = \"off\"\n"));
    }
    out
}

/// The oracle's figures of the page's checks, by plain loops over the rows.
pub fn expected(s: &Scenario, requests: &[Request], checks: &mut serde_json::Map<String, Value>) {
    let p = &s.page;
    if s.canary || !p.any() {
        return;
    }
    let post_flip = |r: &Request| r.ts >= p.flip_of(s, &r.region);
    if !p.region_flips.is_empty() {
        let mut flips = BTreeMap::new();
        for r in requests.iter().filter(|r| post_flip(r)) {
            flips.insert(r.region.clone(), format_millis(p.flip_of(s, &r.region)));
        }
        checks
            .get_mut("pins")
            .and_then(Value::as_object_mut)
            .expect("the oracle computes pins")
            .insert("flip_at_by_region".into(), json!(flips));
    }
    if p.flags {
        let value = |text: &Option<String>| -> Option<String> {
            text.as_ref()?.split([',', ';']).find_map(|pair| {
                let (n, v) = pair.split_once('=')?;
                (n.trim() == FLAG).then(|| v.trim().to_string())
            })
        };
        let (mut checked, mut server_wrong, mut client_stale, mut drifted) = (0, 0, 0, 0);
        for r in requests.iter().filter(|r| post_flip(r)) {
            checked += 1;
            let (sv, cv) = (value(&r.server_flags), value(&r.client_flags));
            server_wrong += (sv.as_deref() != Some("off")) as u64;
            client_stale += cv.as_deref().is_some_and(|v| v != "off") as u64;
            drifted += matches!((&sv, &cv), (Some(a), Some(b)) if a != b) as u64;
        }
        let wrong = requests
            .iter()
            .filter(|r| post_flip(r))
            .filter(|r| {
                value(&r.server_flags).as_deref() != Some("off")
                    || value(&r.client_flags)
                        .as_deref()
                        .is_some_and(|v| v != "off")
            })
            .count();
        let by_flag = if wrong > 0 {
            json!({ FLAG: wrong })
        } else {
            json!({})
        };
        checks.insert(
            "flag_drift".into(),
            json!({"requests_checked": checked, "server_wrong": server_wrong, "client_stale": client_stale, "drifted": drifted, "by_flag": by_flag}),
        );
    }
    if p.backpressure {
        let in_window = |r: &Request, (a, b): (Micros, Micros)| r.ts >= a && r.ts < b;
        let share429 = |w: (Micros, Micros)| {
            let rows: Vec<&Request> = requests.iter().filter(|r| in_window(r, w)).collect();
            (!rows.is_empty())
                .then(|| rows.iter().filter(|r| r.status == 429).count() as f64 / rows.len() as f64)
        };
        let mut minutes: BTreeMap<i64, (u64, u64)> = BTreeMap::new();
        for r in requests.iter().filter(|r| r.ts >= s.flip_at) {
            let e = minutes
                .entry((r.ts - s.flip_at) / MICROS_PER_MINUTE)
                .or_default();
            e.0 += (r.status == 429) as u64;
            e.1 += 1;
        }
        let storm = |k: &(u64, u64)| k.0 as f64 / k.1 as f64 >= 0.05;
        let storm_minutes = minutes.values().filter(|v| storm(v)).count();
        let last = minutes.keys().next_back().copied().unwrap_or(0);
        let subsided = (0..=last).find(|&k| minutes.range(k..).all(|(_, v)| !storm(v)));
        let p95 = |w: (Micros, Micros)| {
            let mut v: Vec<f64> = requests
                .iter()
                .filter(|r| in_window(r, w))
                .filter_map(|r| r.queue_wait_ms)
                .collect();
            v.sort_by(f64::total_cmp);
            let rank = (v.len() * 95).div_ceil(100).max(1);
            v.get(rank - 1).copied()
        };
        let (b, q) = (p95(s.baseline), p95(s.post));
        let post_rows: Vec<&Request> = requests.iter().filter(|r| in_window(r, s.post)).collect();
        let open = |r: &Request| matches!(r.breaker_state.as_deref(), Some("open" | "half_open"));
        let end = requests.iter().map(|r| r.ts).max().unwrap_or(0);
        checks.insert(
            "backpressure".into(),
            json!({
                "baseline_429_rate": share429(s.baseline),
                "post_429_rate": share429(s.post),
                "storm_minutes": storm_minutes,
                "storm_subsided_minute": subsided,
                "baseline_queue_wait_p95_ms": b,
                "post_queue_wait_p95_ms": q,
                "queue_wait_p95_ratio": q.zip(b).map(|(q, b)| q / b),
                "post_breaker_open_share": post_rows.iter().filter(|r| open(r)).count() as f64 / post_rows.len() as f64,
                "breaker_open_at_end": requests.iter().filter(|r| r.ts > end - 60 * MICROS_PER_SECOND && open(r)).count(),
            }),
        );
    }
    if let Some((run, base)) = gold_rows(s) {
        checks.insert("gold_set".into(), gold_expected(&run, &base));
    }
    if let Some(c) = &s.page.captured {
        let from = s.flip_at - 10 * MICROS_PER_MINUTE;
        let mut matching = 0;
        let mut mismatched = Vec::new();
        for pin in 0..c.pins_named.min(8) {
            let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
            for r in requests
                .iter()
                .filter(|r| r.ts >= from && r.ts < s.flip_at && !r.pins[pin].is_empty())
            {
                *counts.entry(&r.pins[pin]).or_default() += 1;
            }
            // The most frequent value; ties to the smaller string (BTreeMap order, first max).
            let top = counts
                .iter()
                .fold(None::<(&str, u64)>, |best, (v, n)| match best {
                    Some((_, m)) if m >= *n => best,
                    _ => Some((v, *n)),
                })
                .map(|(v, _)| v);
            let captured = if pin < c.mismatched {
                format!("{}-not-live", BAD[pin])
            } else {
                BAD[pin].to_string()
            };
            if top == Some(captured.as_str()) {
                matching += 1;
            } else {
                mismatched.push(PIN_NAMES[pin].to_string());
            }
        }
        mismatched.sort();
        checks.insert(
            "captured_state".into(),
            json!({"captured": true, "pins_captured": c.pins_named.min(8), "pins_matching_logs": matching, "mismatched_pins": mismatched}),
        );
    }
}

fn gold_expected(run: &[GoldRow], base: &[GoldRow]) -> Value {
    // One row per question: the latest by ts (no ties are planted).
    let latest = |rows: &[GoldRow]| -> BTreeMap<String, GoldRow> {
        let mut m: BTreeMap<String, GoldRow> = BTreeMap::new();
        for r in rows {
            if m.get(&r.question_id).is_none_or(|have| r.ts > have.ts) {
                m.insert(r.question_id.clone(), r.clone());
            }
        }
        m
    };
    let (run, base) = (latest(run), latest(base));
    let p95 = |m: &BTreeMap<String, GoldRow>| {
        let mut v: Vec<f64> = m.values().map(|r| r.delta_s).collect();
        v.sort_by(f64::total_cmp);
        let rank = (v.len() * 95).div_ceil(100).max(1);
        v.get(rank - 1).copied()
    };
    let mean = |m: &BTreeMap<String, GoldRow>| {
        (!m.is_empty()).then(|| m.values().map(|r| r.coverage).sum::<f64>() / m.len() as f64)
    };
    let flips = |m: &BTreeMap<String, GoldRow>| {
        (!m.is_empty()).then(|| {
            m.values()
                .filter(|r| r.lambda_state != "convergent")
                .count() as f64
                / m.len() as f64
        })
    };
    let questions = run.keys().filter(|q| base.contains_key(*q)).count();
    let missing = base.keys().filter(|q| !run.contains_key(*q)).count();
    let regressed = run
        .iter()
        .filter_map(|(q, r)| base.get(q).map(|b| (r, b)))
        .filter(|(r, b)| r.delta_s - b.delta_s > 0.10 || b.coverage - r.coverage > 0.10)
        .count();
    let expected = pins_of(&GOOD);
    let pin_violations = run
        .values()
        .filter(|r| (0..crate::EXPECTED_PINS).any(|p| r.pins[p] != expected[p]))
        .count();
    let (bp, rp) = (p95(&base), p95(&run));
    json!({
        "questions": questions,
        "missing_questions": missing,
        "baseline_delta_s_p95": bp,
        "post_delta_s_p95": rp,
        "delta_s_p95_drift": rp.zip(bp).map(|(r, b)| r - b),
        "baseline_coverage_mean": mean(&base),
        "post_coverage_mean": mean(&run),
        "baseline_lambda_flip_rate": flips(&base),
        "post_lambda_flip_rate": flips(&run),
        "regressed_questions": regressed,
        "pin_violations": pin_violations,
    })
}
