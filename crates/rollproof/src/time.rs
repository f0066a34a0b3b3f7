//! Time as epoch microseconds (UTC), and its RFC 3339 rendering.

use chrono::{DateTime, SecondsFormat, Utc};

/// Microseconds since the Unix epoch, UTC.
pub(crate) type Micros = i64;

pub(crate) const MICROS_PER_SECOND: i64 = 1_000_000;
pub(crate) const MICROS_PER_MINUTE: i64 = 60 * MICROS_PER_SECOND;

/// The minute of `t` counted from `origin`: minute k is [origin + k min, origin + (k+1) min),
/// negative before `origin`.
#[inline]
pub(crate) fn minute_since(t: Micros, origin: Micros) -> i64 {
    t.saturating_sub(origin).div_euclid(MICROS_PER_MINUTE)
}

/// Instants are accepted within ±10,000 years of 1970 (10,000 Gregorian years of 31,556,952 s):
/// far beyond any log, and far enough inside i64 microseconds that durations between two
/// accepted instants never overflow.
pub(crate) const TIME_LIMIT: Micros = 10_000 * 31_556_952 * MICROS_PER_SECOND;

/// Parses an RFC 3339 time with a zone (`Z` or an offset).
pub(crate) fn parse_rfc3339(text: &str) -> Option<Micros> {
    DateTime::parse_from_rfc3339(text.trim())
        .ok()
        .map(|t| t.with_timezone(&Utc).timestamp_micros())
        .filter(|t| t.abs() <= TIME_LIMIT)
}

/// RFC 3339 UTC with millisecond precision, e.g. `2026-11-27T10:15:00.000Z`.
pub(crate) fn format_millis(t: Micros) -> String {
    match DateTime::<Utc>::from_timestamp_micros(t) {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::Millis, true),
        None => format!("invalid time ({t} µs)"),
    }
}

/// RFC 3339 UTC with whole seconds when the time has no fraction (as written in incident files).
pub(crate) fn format_seconds(t: Micros) -> String {
    match DateTime::<Utc>::from_timestamp_micros(t) {
        Some(dt) if t % MICROS_PER_SECOND == 0 => dt.to_rfc3339_opts(SecondsFormat::Secs, true),
        Some(dt) => dt.to_rfc3339_opts(SecondsFormat::Millis, true),
        None => format!("invalid time ({t} µs)"),
    }
}
