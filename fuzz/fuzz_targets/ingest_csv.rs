//! CSV ingest end to end (detection, header, conversion of every canonical column): any bytes
//! give canonical batches or input problems, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rollproof_gen::harness::audit_one_file("requests.csv", data);
});
