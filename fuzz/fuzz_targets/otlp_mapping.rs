//! A mapping file and OTLP/JSON spans together (the input is the mapping, a NUL byte, then the
//! spans): the mapping parser, the OpenTelemetry preset and the OTLP reader.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rollproof_gen::harness::audit_mapping_and_file("spans.jsonl", data);
});
