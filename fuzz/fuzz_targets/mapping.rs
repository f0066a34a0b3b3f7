//! The mapping file parser: any text gives a mapping or input problems, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = rollproof::fuzzing::Mapping::parse(std::path::Path::new("mapping.toml"), text);
    }
});
