//! The generator's own time helpers. The oracle does not borrow the tool's code, so that a bug in
//! the tool's time handling cannot hide in both the figures and their expected values.

use chrono::{DateTime, SecondsFormat, Utc};

/// Microseconds since the Unix epoch, UTC.
pub type Micros = i64;

pub const MICROS_PER_SECOND: i64 = 1_000_000;
pub const MICROS_PER_MINUTE: i64 = 60 * MICROS_PER_SECOND;

pub fn parse_rfc3339(text: &str) -> Option<Micros> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc).timestamp_micros())
}

/// RFC 3339 UTC with milliseconds, as the report writes instants.
pub fn format_millis(t: Micros) -> String {
    DateTime::<Utc>::from_timestamp_micros(t)
        .expect("generated times are in range")
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// RFC 3339 UTC with whole seconds when the time has no fraction (as incident files are written).
pub fn format_seconds(t: Micros) -> String {
    let precision = if t % MICROS_PER_SECOND == 0 {
        SecondsFormat::Secs
    } else {
        SecondsFormat::Millis
    };
    DateTime::<Utc>::from_timestamp_micros(t)
        .expect("generated times are in range")
        .to_rfc3339_opts(precision, true)
}
