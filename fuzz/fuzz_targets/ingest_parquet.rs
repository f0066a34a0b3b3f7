//! Parquet ingest end to end from bit-flipped small files: footer, page headers (checked before
//! decoding), every canonical column; input problems or a report, never a panic or an abort.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rollproof_gen::harness::audit_one_file("requests.parquet", data);
});
