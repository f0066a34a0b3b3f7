//! The decode floor: what reading the columns the audit's first pass reads costs before any check
//! runs (`rollproof::bench::decode_floor`). The end-to-end script (`benches/compare.sh`) runs it
//! next to the audit to report rollproof's CPU as a multiple of its own decode.
//!
//!   cargo bench -p rollproof --features bench --bench floor -- bench-data/10m/incident.toml

fn main() {
    let path = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_else(|| "bench-data/10m/incident.toml".to_string());
    let start = std::time::Instant::now();
    let rows = rollproof::bench::decode_floor(std::path::Path::new(&path));
    eprintln!("decoded {rows} rows of {path} in {:.2?}", start.elapsed());
}
