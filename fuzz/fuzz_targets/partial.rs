//! Partial-state files: a mutated body (sealed with a valid header and checksum, so that the
//! mutations reach postcard and every kernel state's decoding) merged into a report.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rollproof_gen::harness::merge_partial_body(data);
});
