//! Arrow IPC (file and stream) ingest end to end from bit-flipped small files.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rollproof_gen::harness::audit_one_file("requests.arrow", data);
});
