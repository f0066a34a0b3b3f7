//! The decode floor: what reading the columns the audit's first pass reads costs before any check
//! runs (`rollproof::bench::decode_floor`). The end-to-end script (`benches/compare.sh`) runs it
//! next to the audit to report rollproof's CPU as a multiple of its own decode.
//!
//!   cargo bench -p rollproof --features bench --bench floor -- bench-data/10m/incident.toml

fn main() {
    keep_freed_memory();
    let path = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_else(|| "bench-data/10m/incident.toml".to_string());
    let start = std::time::Instant::now();
    let rows = rollproof::bench::decode_floor(std::path::Path::new(&path));
    eprintln!("decoded {rows} rows of {path} in {:.2?}", start.elapsed());
}

/// The floor must be what decoding costs at best, not what glibc's allocator adds to a process
/// that holds nothing between batches: with its default, adaptive thresholds, each worker's arena
/// shrinks after a row group's buffers are freed (`madvise`) and faults the same pages back in
/// for the next one (122,000 page faults and 0.31 s of system time at 10M, against 12,000 and
/// 0.09 s with these settings; user time unchanged). The audit holds its tables between batches
/// and does not pay this (its system time is 0.2 s, and these settings do not make it faster: see
/// BENCHMARKS.md), so without them the floor would be too high and the ratio to it too kind.
///
/// A benchmark's `unsafe` block: the library's lints deny `unsafe_code` but for its prefetch hint.
#[allow(unsafe_code)]
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only sets two of the allocator's parameters; it is called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}
