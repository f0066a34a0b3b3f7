//! Large benchmark data, streamed row group by row group: the demo incident's timeline at any
//! size, with faults planted at fixed low rates so that every check has findings to report.
//!
//! Columns are built directly as Arrow arrays (no per-row structs), so 100M rows generate in
//! minutes in bounded memory.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int32Builder, RecordBatch, StringBuilder,
    StringDictionaryBuilder, TimestampMillisecondBuilder,
};
use arrow::datatypes::Int32Type;

use super::{incident_toml, Rng, Scenario, BAD, GOOD, PIN_NAMES, REGIONS};
use crate::time::{MICROS_PER_MINUTE, MICROS_PER_SECOND};

/// Benchmark data settings.
#[derive(Debug, Clone)]
pub struct BenchSpec {
    pub requests: u64,
    /// Receipts per request (0.1: ~10%).
    pub receipt_share: f64,
    pub row_group_rows: usize,
    pub seed: u64,
    pub users: u64,
}

impl BenchSpec {
    pub fn new(requests: u64) -> BenchSpec {
        BenchSpec {
            requests,
            receipt_share: 0.1,
            row_group_rows: 1 << 20,
            seed: 42,
            users: (requests / 20).clamp(100, 5_000_000),
        }
    }
}

/// The scenario whose timeline the benchmark data follows.
pub fn bench_scenario() -> Scenario {
    let mut s = Scenario::rollback("bench", "benchmark incident", 42);
    s.root_cause_url = Some("https://tracker.example/BENCH");
    s
}

fn namespace(index_hash: &str, prompt_ver: &str) -> String {
    format!("ns:{index_hash}:{prompt_ver}")
}

/// Writes `requests.parquet`, `receipts.parquet` and `incident.toml` into `dir`.
pub fn write_bench(spec: &BenchSpec, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let s = bench_scenario();
    let span = s.end - s.start;
    let props = || {
        parquet::file::properties::WriterProperties::builder()
            .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
            .set_max_row_group_row_count(Some(spec.row_group_rows))
            .build()
    };
    let mut requests_writer: Option<parquet::arrow::ArrowWriter<std::fs::File>> = None;
    let mut receipts_writer: Option<parquet::arrow::ArrowWriter<std::fs::File>> = None;
    let mut rng = Rng::new(spec.seed);
    let good_ns = namespace(GOOD[4], GOOD[3]);
    let bad_ns = namespace(BAD[4], BAD[3]);
    let mut start_row = 0u64;
    let mut receipt_no = 0u64;
    while start_row < spec.requests {
        let n = (spec.requests - start_row).min(spec.row_group_rows as u64) as usize;
        let mut ts = TimestampMillisecondBuilder::with_capacity(n);
        let mut request_id = StringBuilder::with_capacity(n, n * 10);
        let mut region = StringDictionaryBuilder::<Int32Type>::new();
        let mut user_id = StringBuilder::with_capacity(n, n * 8);
        let mut pins: Vec<StringDictionaryBuilder<Int32Type>> =
            (0..8).map(|_| StringDictionaryBuilder::new()).collect();
        let mut cache_ns = StringDictionaryBuilder::<Int32Type>::new();
        let mut cache_hit = BooleanBuilder::with_capacity(n);
        let mut status = Int32Builder::with_capacity(n);
        let mut latency = Float64Builder::with_capacity(n);
        let mut delta_s = Float64Builder::with_capacity(n);
        let mut coverage = Float64Builder::with_capacity(n);
        let mut lambda = StringDictionaryBuilder::<Int32Type>::new();
        // Receipts of this chunk.
        let mut r_ts = TimestampMillisecondBuilder::new();
        let mut r_id = StringBuilder::new();
        let mut r_request = StringBuilder::new();
        let mut r_key = StringBuilder::new();
        let mut r_effect = StringDictionaryBuilder::<Int32Type>::new();
        let mut r_writer = StringDictionaryBuilder::<Int32Type>::new();
        let mut r_decision = StringDictionaryBuilder::<Int32Type>::new();
        let mut buf = String::new();
        for k in 0..n {
            let i = start_row + k as u64;
            let t = s.start + (i as i128 * span as i128 / spec.requests as i128) as i64;
            ts.append_value(t / 1000);
            buf.clear();
            let _ = write!(buf, "r-{i:09}");
            request_id.append_value(&buf);
            let user = rng.below(spec.users);
            let reg = REGIONS[(user % 3) as usize];
            region.append_value(reg);
            buf.clear();
            let _ = write!(buf, "u-{user:07}");
            user_id.append_value(&buf);
            let bad_window = t >= s.bad_rollout_at && t < s.flip_at;
            let after_flip = t >= s.flip_at;
            let roll = rng.below(100_000);
            // Faults after the flip, at fixed rates: 0.02% wrong index hash in eu-west, 0.01%
            // missing prompt pin, 0.01% stale cache hits.
            let wrong_index = after_flip && reg == "eu-west" && roll < 20;
            let missing_prompt = after_flip && (20..30).contains(&roll);
            let stale_hit = after_flip && (30..40).contains(&roll);
            for p in 0..8 {
                let value = if bad_window { BAD[p] } else { GOOD[p] };
                match p {
                    4 if wrong_index => pins[p].append_value(BAD[4]),
                    3 if missing_prompt => pins[p].append_null(),
                    _ => pins[p].append_value(value),
                }
            }
            let hit = stale_hit || rng.below(10) < 3;
            cache_hit.append_value(hit);
            cache_ns.append_value(if bad_window || stale_hit {
                &bad_ns
            } else {
                &good_ns
            });
            let minute_after_flip = (t - s.flip_at) / MICROS_PER_MINUTE;
            let err = if bad_window {
                rng.below(5) == 0
            } else if after_flip && minute_after_flip < 3 {
                rng.below(10) == 0
            } else {
                rng.below(10_000) == 0
            };
            status.append_value(if err {
                if rng.below(4) == 0 {
                    429
                } else {
                    503
                }
            } else {
                200
            });
            let mut l = 80.0 + rng.below(2000) as f64 * 0.1;
            if bad_window {
                l *= 1.6;
            }
            latency.append_value(l);
            let mut ds = 0.20 + rng.below(2000) as f64 * 0.0001;
            if bad_window {
                ds += 0.2;
            }
            delta_s.append_value(ds);
            coverage.append_value(0.70 + rng.below(2000) as f64 * 0.0001);
            lambda.append_value(if rng.below(20) == 0 {
                "divergent"
            } else {
                "convergent"
            });
            // Receipts: ~share of requests execute a side effect; 0.1% of them twice.
            if rng.unit() < spec.receipt_share {
                let in_freeze = s.freeze.is_some_and(|(a, b)| t >= a && t < b);
                // A few writes in the freeze (0.5% of the requests that fall in it).
                if in_freeze && rng.below(200) != 0 {
                    continue;
                }
                let effect =
                    ["email.send", "payment.charge", "ticket.create"][rng.below(3) as usize];
                let writer = if t < s.flip_at {
                    "writer-a"
                } else {
                    "writer-b"
                };
                let copies = if rng.below(1000) == 0 { 2 } else { 1 };
                for c in 0..copies {
                    r_ts.append_value((t + 5_000 + c * 700 * MICROS_PER_SECOND / 1000) / 1000);
                    buf.clear();
                    let _ = write!(buf, "rc-{receipt_no:09}");
                    r_id.append_value(&buf);
                    receipt_no += 1;
                    buf.clear();
                    let _ = write!(buf, "r-{i:09}");
                    r_request.append_value(&buf);
                    buf.clear();
                    let _ = write!(buf, "k-{i:09}");
                    r_key.append_value(&buf);
                    r_effect.append_value(effect);
                    r_writer.append_value(writer);
                    match rng.below(3) {
                        0 => r_decision.append_null(),
                        _ => r_decision.append_value("new"),
                    }
                }
                if rng.below(100) == 0 {
                    // A dedupe decision: the fence caught a retry.
                    r_ts.append_value((t + 2 * MICROS_PER_SECOND) / 1000);
                    buf.clear();
                    let _ = write!(buf, "rc-{receipt_no:09}");
                    r_id.append_value(&buf);
                    receipt_no += 1;
                    buf.clear();
                    let _ = write!(buf, "r-{i:09}");
                    r_request.append_value(&buf);
                    buf.clear();
                    let _ = write!(buf, "k-{i:09}");
                    r_key.append_value(&buf);
                    r_effect.append_value(effect);
                    r_writer.append_value(writer);
                    r_decision.append_value("duplicate");
                }
            }
        }
        let mut columns: Vec<(&str, ArrayRef)> = vec![
            ("ts", Arc::new(ts.finish().with_timezone("+00:00"))),
            ("request_id", Arc::new(request_id.finish())),
            ("region", Arc::new(region.finish())),
            ("user_id", Arc::new(user_id.finish())),
        ];
        for (p, b) in pins.iter_mut().enumerate() {
            columns.push((PIN_NAMES[p], Arc::new(b.finish())));
        }
        columns.extend([
            ("cache_ns", Arc::new(cache_ns.finish()) as ArrayRef),
            ("cache_hit", Arc::new(cache_hit.finish())),
            ("status", Arc::new(status.finish())),
            ("latency_ms", Arc::new(latency.finish())),
            ("delta_s", Arc::new(delta_s.finish())),
            ("coverage", Arc::new(coverage.finish())),
            ("lambda_state", Arc::new(lambda.finish())),
        ]);
        // Every column nullable: the first row group may have no null where later ones do.
        let batch = RecordBatch::try_from_iter_with_nullable(
            columns.into_iter().map(|(n, a)| (n, a, true)),
        )?;
        let w = match &mut requests_writer {
            Some(w) => w,
            None => requests_writer.insert(parquet::arrow::ArrowWriter::try_new(
                std::fs::File::create(dir.join("requests.parquet"))?,
                batch.schema(),
                Some(props()),
            )?),
        };
        w.write(&batch)?;
        let receipts = RecordBatch::try_from_iter_with_nullable(vec![
            (
                "ts",
                Arc::new(r_ts.finish().with_timezone("+00:00")) as ArrayRef,
                true,
            ),
            ("receipt_id", Arc::new(r_id.finish()), true),
            ("request_id", Arc::new(r_request.finish()), true),
            ("idempotency_key", Arc::new(r_key.finish()), true),
            ("effect", Arc::new(r_effect.finish()), true),
            ("writer_id", Arc::new(r_writer.finish()), true),
            ("decision", Arc::new(r_decision.finish()), true),
        ])?;
        let w = match &mut receipts_writer {
            Some(w) => w,
            None => receipts_writer.insert(parquet::arrow::ArrowWriter::try_new(
                std::fs::File::create(dir.join("receipts.parquet"))?,
                receipts.schema(),
                Some(props()),
            )?),
        };
        w.write(&receipts)?;
        start_row += n as u64;
    }
    if let Some(w) = requests_writer {
        w.close()?;
    }
    if let Some(w) = receipts_writer {
        w.close()?;
    }
    std::fs::write(
        dir.join("incident.toml"),
        incident_toml(&s, "requests.parquet", Some("receipts.parquet"), None),
    )?;
    Ok(())
}
