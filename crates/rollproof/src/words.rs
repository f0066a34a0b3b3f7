//! Numbers and words as the human reports write them: counts with thousands separators, plurals,
//! percentages.

/// A count with thousands separators: `9697` → `9,697`.
pub(crate) fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `1 input file`, `2 input files`, `12,000 rows`.
pub(crate) fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{} {}", count(n), if n == 1 { one } else { many })
}

/// A fraction as a percentage with two decimals: `0.0123` → `1.23%`.
pub(crate) fn pct(v: f64) -> String {
    format!("{:.2}%", v * 100.0)
}

/// An optional number with `digits` decimals, or `n/a`.
pub(crate) fn num(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "n/a".to_string(), |v| format!("{v:.digits$}"))
}

/// Minutes as people say them: `1 minute`, `48 minutes`, `2 h 5 min`.
pub(crate) fn minutes(m: u64) -> String {
    match m {
        0..=119 => plural(m, "minute", "minutes"),
        _ => format!("{} h {} min", m / 60, m % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_plurals() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(plural(1, "file", "files"), "1 file");
        assert_eq!(plural(2000, "file", "files"), "2,000 files");
        assert_eq!(minutes(48), "48 minutes");
        assert_eq!(minutes(125), "2 h 5 min");
    }
}
