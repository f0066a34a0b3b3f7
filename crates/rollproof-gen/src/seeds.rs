//! The fuzz targets' binary seeds (`rollproof-gen seeds fuzz/seeds`): a few demo requests around
//! the flip as Parquet, Arrow IPC (file and stream) and OTLP/JSON, small enough for libFuzzer to
//! mutate (a few KiB each).

use std::path::Path;

use crate::{fixture_scenarios, generate, requests_batch, write_batches, Naming, OutFormat};

/// Eight demo requests around the flip, with canonical column names.
fn seed_batch() -> arrow::array::RecordBatch {
    let demo = fixture_scenarios()
        .into_iter()
        .find(|s| s.name == "demo")
        .expect("the demo scenario exists");
    let (requests, _) = generate(&demo);
    let flip = requests
        .iter()
        .position(|r| r.ts >= demo.flip_at)
        .expect("the demo has requests after the flip");
    requests_batch(&requests[flip - 4..flip + 4], Naming::Canonical)
}

/// Writes `ingest_parquet/seed.parquet`, `ingest_ipc/seed.arrow`, `ingest_ipc/seed.arrows` and
/// `otlp_mapping/seed.bin` (a mapping, a NUL byte, then OTLP/JSON lines) under `dir`.
pub fn write_seeds(dir: &Path) -> anyhow::Result<()> {
    let batch = seed_batch();
    for (sub, name, format) in [
        ("ingest_parquet", "seed.parquet", OutFormat::Parquet),
        ("ingest_ipc", "seed.arrow", OutFormat::ArrowFile),
        ("ingest_ipc", "seed.arrows", OutFormat::ArrowStream),
    ] {
        std::fs::create_dir_all(dir.join(sub))?;
        write_batches(
            &dir.join(sub).join(name),
            format,
            std::slice::from_ref(&batch),
            4,
        )?;
    }
    std::fs::create_dir_all(dir.join("otlp_mapping"))?;
    let mut seed = crate::otlp::mapping_toml().into_bytes();
    seed.push(0);
    let mut n = 0;
    for half in [batch.slice(0, 4), batch.slice(4, 4)] {
        seed.extend(serde_json::to_vec(&crate::otlp::export_request(
            &half, &mut n,
        ))?);
        seed.push(b'\n');
    }
    std::fs::write(dir.join("otlp_mapping").join("seed.bin"), seed)?;
    // The partial target: the body of a partial of the setup below.
    let setup = tempfile_dir()?;
    write_partial_setup(&setup)?;
    std::fs::create_dir_all(dir.join("partial"))?;
    // Whole, and with its keyed states in three key ranges (the merge then finishes by range).
    for (name, key_partitions) in [("seed.bin", 1), ("key-ranges.bin", 3)] {
        let partial = rollproof::partial(
            &setup.join("incident.toml"),
            &rollproof::InputOverrides::default(),
            &rollproof::PartialRequest {
                key_partitions,
                ..Default::default()
            },
            &|_, _, _| {},
        )
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let body = rollproof::fuzzing::partial_body(&partial).expect("a partial has a body");
        std::fs::write(dir.join("partial").join(name), body)?;
    }
    let _ = std::fs::remove_dir_all(&setup);
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("rollproof-seed-partial-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The partial target's world: the fuzz incident over `requests.parquet`, eight demo requests
/// around the flip.
pub fn write_partial_setup(dir: &Path) -> anyhow::Result<()> {
    let batch = seed_batch();
    std::fs::create_dir_all(dir)?;
    write_batches(
        &dir.join("requests.parquet"),
        OutFormat::Parquet,
        std::slice::from_ref(&batch),
        4,
    )?;
    std::fs::write(
        dir.join("incident.toml"),
        crate::harness::INCIDENT.replace("REQUESTS", "requests.parquet"),
    )?;
    Ok(())
}
