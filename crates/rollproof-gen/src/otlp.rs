//! OTLP/JSON benchmark data: the requests of a bench folder (`requests.parquet`, written by
//! `write_bench`) as OpenTelemetry spans in the Collector's file-exporter spelling, zstd
//! compressed, with the incident and the mapping to audit them. Deterministic: it only reads the
//! seeded Parquet.

use std::io::Write;
use std::path::Path;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type, Int32Type, TimestampMillisecondType};
use serde_json::{json, Value};

/// The canonical column → the span attribute that carries it (the OpenTelemetry preset's names
/// where there is one, the service's own `app.*` attributes for the rest).
const ATTRIBUTES: &[(&str, &str)] = &[
    ("request_id", "app.request_id"),
    ("user_id", "enduser.id"),
    ("build_id", "service.version"),
    ("git_sha", "vcs.ref.head.revision"),
    ("model_ver", "gen_ai.response.model"),
    ("prompt_ver", "app.prompt.version"),
    ("index_hash", "app.index.hash"),
    ("rerank_conf", "app.rerank.conf"),
    ("tok_ver", "app.tokenizer.version"),
    ("analyzer_conf", "app.analyzer.conf"),
    ("cache_ns", "app.cache.ns"),
    ("cache_hit", "app.cache.hit"),
    ("status", "http.response.status_code"),
    ("delta_s", "app.quality.delta_s"),
    ("coverage", "app.quality.coverage"),
    ("lambda_state", "app.quality.lambda"),
];

const SPANS_PER_LINE: usize = 512;

fn value(arr: &dyn Array, i: usize) -> Option<Value> {
    if arr.is_null(i) {
        return None;
    }
    Some(match arr.data_type() {
        DataType::Utf8 => json!({"stringValue": arr.as_string::<i32>().value(i)}),
        DataType::Dictionary(_, _) => {
            let dict = arr.as_dictionary::<Int32Type>();
            let values = dict.values().as_string::<i32>();
            json!({"stringValue": values.value(dict.keys().value(i) as usize)})
        }
        DataType::Boolean => json!({"boolValue": arr.as_boolean().value(i)}),
        DataType::Int32 => {
            json!({"intValue": arr.as_primitive::<Int32Type>().value(i).to_string()})
        }
        DataType::Float64 => json!({"doubleValue": arr.as_primitive::<Float64Type>().value(i)}),
        _ => return None,
    })
}

fn hex(x: u64, width: usize) -> String {
    format!("{x:0width$x}")
}

/// Writes `spans.jsonl.zst`, `mapping.toml` and `incident-otlp.toml` into `dir`, from
/// `dir/requests.parquet`.
pub fn write_otlp(dir: &Path) -> anyhow::Result<()> {
    let file = std::fs::File::open(dir.join("requests.parquet"))?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)?
        .with_batch_size(SPANS_PER_LINE)
        .build()?;
    let out = std::fs::File::create(dir.join("spans.jsonl.zst"))?;
    let mut out = zstd::stream::write::Encoder::new(std::io::BufWriter::new(out), 3)?;
    let mut n: u64 = 0;
    for batch in reader {
        let batch: RecordBatch = batch?;
        serde_json::to_writer(&mut out, &export_request(&batch, &mut n))?;
        out.write_all(b"\n")?;
    }
    out.finish()?.flush()?;
    std::fs::write(dir.join("mapping-otlp.toml"), mapping_toml())?;
    let incident = std::fs::read_to_string(dir.join("incident.toml"))?.replace(
        "requests = \"requests.parquet\"",
        "requests = \"spans.jsonl.zst\"\nmapping = \"mapping-otlp.toml\"",
    );
    std::fs::write(dir.join("incident-otlp.toml"), incident)?;
    eprintln!(
        "wrote {n} spans to {}",
        dir.join("spans.jsonl.zst").display()
    );
    Ok(())
}

/// One OTLP/JSON export request (one line of the Collector's file exporter) holding the requests
/// of `batch` as SERVER spans; `n` numbers the spans (trace and span ids).
pub fn export_request(batch: &RecordBatch, n: &mut u64) -> Value {
    let ts = batch
        .column_by_name("ts")
        .expect("bench requests have ts")
        .as_primitive::<TimestampMillisecondType>();
    let latency = batch
        .column_by_name("latency_ms")
        .map(|a| a.as_primitive::<Float64Type>().clone());
    let region = batch.column_by_name("region").cloned();
    // One resourceSpans per region, as the Collector groups spans by resource.
    let mut by_region: std::collections::BTreeMap<String, Vec<Value>> = Default::default();
    for i in 0..batch.num_rows() {
        let start_ns = ts.value(i) as i128 * 1_000_000;
        let dur_ns = latency.as_ref().map_or(0, |l| (l.value(i) * 1e6) as i128);
        let attributes: Vec<Value> = ATTRIBUTES
            .iter()
            .filter_map(|(col, key)| {
                let arr = batch.column_by_name(col)?;
                value(arr.as_ref(), i).map(|v| json!({"key": key, "value": v}))
            })
            .collect();
        let r = region
            .as_ref()
            .and_then(|a| value(a.as_ref(), i))
            .and_then(|v| v["stringValue"].as_str().map(str::to_string))
            .unwrap_or_default();
        by_region.entry(r).or_default().push(json!({
            "traceId": hex(n.wrapping_mul(0x9e37_79b9_7f4a_7c15), 32),
            "spanId": hex(n.wrapping_add(1), 16),
            "name": "POST /v1/answer",
            "kind": 2,
            "startTimeUnixNano": start_ns.to_string(),
            "endTimeUnixNano": (start_ns + dur_ns).to_string(),
            "attributes": attributes,
            "status": {},
        }));
        *n += 1;
    }
    let resource_spans: Vec<Value> = by_region
        .into_iter()
        .map(|(region, spans)| {
            json!({
                "resource": {"attributes": [
                    {"key": "service.name", "value": {"stringValue": "rag-api"}},
                    {"key": "cloud.region", "value": {"stringValue": region}},
                ]},
                "scopeSpans": [{"scope": {"name": "rag-api"}, "spans": spans}],
            })
        })
        .collect();
    json!({"resourceSpans": resource_spans})
}

/// The mapping of the generator's own `app.*` span attributes (the preset maps the rest).
pub fn mapping_toml() -> String {
    let mut mapping =
        String::from("# The bench's own attributes (the preset maps the rest).\n[requests]\n");
    for (col, key) in ATTRIBUTES.iter().filter(|(_, k)| k.starts_with("app.")) {
        mapping.push_str(&format!("{col} = \"{key}\"\n"));
    }
    mapping
}
