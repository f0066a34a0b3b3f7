//! The incident file parser: any text gives an incident or input problems, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = rollproof::Incident::parse(std::path::Path::new("incident.toml"), text);
    }
});
