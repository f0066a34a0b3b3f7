//! The intervals are tested for what they promise, not only for what they compute: coverage of
//! the true value by simulation with known truth (lognormal and Pareto latencies, Bernoulli
//! errors with a zero baseline, Beta coverage), exact binomial coverage where it can be summed,
//! the false-fail rate of the interval gate at a true value equal to the threshold (one look and
//! ten looks), and power on well-separated cases. Monte Carlo figures are asserted within three
//! standard errors. Reference values come from scipy (reference.py next to this file).

use super::*;
use crate::stats::{ExactSum, Quantiles};

/// SplitMix64: a small, seeded generator so that every run draws the same samples.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in (0, 1).
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
    fn lognormal(&mut self, mu: f64, sigma: f64) -> f64 {
        (mu + sigma * self.normal()).exp()
    }
    fn pareto(&mut self, scale: f64, shape: f64) -> f64 {
        scale * self.uniform().powf(-1.0 / shape)
    }
    /// Beta(a, b) for whole a, b: the a-th smallest of a + b − 1 uniforms.
    fn beta(&mut self, a: usize, b: usize) -> f64 {
        let mut u: Vec<f64> = (0..a + b - 1).map(|_| self.uniform()).collect();
        u.sort_by(f64::total_cmp);
        u[a - 1]
    }
}

const LEVEL: Level = Level {
    tail: 0.025,
    sequential: false,
};
const SEQUENTIAL: Level = Level {
    tail: 0.025,
    sequential: true,
};

fn covers(ci: Ci, truth: f64) -> bool {
    ci.low.is_none_or(|l| l <= truth) && ci.high.is_none_or(|h| h >= truth)
}

/// Asserts a Monte Carlo proportion is at least `p` up to three standard errors.
fn assert_at_least(hits: usize, reps: usize, p: f64, what: &str) {
    let rate = hits as f64 / reps as f64;
    let se = (p * (1.0 - p) / reps as f64).sqrt();
    assert!(rate >= p - 3.0 * se, "{what}: {rate:.4} < {p} − 3·{se:.4}");
}

/// Asserts a Monte Carlo proportion is at most `p` up to three standard errors.
fn assert_at_most(hits: usize, reps: usize, p: f64, what: &str) {
    let rate = hits as f64 / reps as f64;
    let se = (p * (1.0 - p) / reps as f64).sqrt().max(1.0 / reps as f64);
    assert!(rate <= p + 3.0 * se, "{what}: {rate:.4} > {p} + 3·{se:.4}");
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * b.abs().max(1e-12)
}

#[test]
fn rates_match_scipy_clopper_pearson() {
    // scipy.stats.binomtest(k, n).proportion_ci(0.95, method="exact")
    let cases = [
        (0, 5000, 0.0, 0.0007375038011147727),
        (3, 200, 0.003104107621555085, 0.043208281917709784),
        (120, 1000, 0.10050092374816791, 0.1417668637928255),
        (200, 200, 0.9817246596448512, 1.0),
    ];
    for (k, n, low, high) in cases {
        let ci = rate(k, n, LEVEL);
        assert!(close(ci.low.unwrap(), low, 1e-7), "{k}/{n}: {ci:?}");
        assert!(close(ci.high.unwrap(), high, 1e-7), "{k}/{n}: {ci:?}");
    }
}

#[test]
fn quantile_ranks_match_exact_order_statistics() {
    // Exact ranks from scipy.stats.binom (reference.py): n, p, lower rank, upper rank.
    let cases = [
        (200, 0.95, Some(184), Some(197)),
        (2000, 0.95, Some(1880), Some(1920)),
        (200, 0.99, Some(195), None),
        (1000, 0.5, Some(469), Some(532)),
    ];
    for (n, p, low, high) in cases {
        assert_eq!(quantile_ranks(n, p, LEVEL), (low, high), "n={n} p={p}");
    }
    assert!((t(0.025, 9.0) - 2.262157162798205).abs() < 1e-9);
    assert!((z(0.025) - 1.959963984540054).abs() < 1e-9);
}

#[test]
fn a_zero_count_is_not_a_rate_of_exactly_zero() {
    for level in [LEVEL, SEQUENTIAL] {
        let ci = rate(0, 5000, level);
        assert_eq!(ci.low, Some(0.0));
        assert!(ci.high.unwrap() > 1e-4, "{level:?}: {ci:?}");
    }
    let d = rate_difference(0, 5000, 0, 5000, LEVEL);
    assert!(d.low.unwrap() < 0.0 && d.high.unwrap() > 0.0, "{d:?}");
}

/// ln P(Bin(n, p) = k).
fn ln_pmf(k: u64, n: u64, p: f64) -> f64 {
    let (k, n) = (k as f64, n as f64);
    puruspe::ln_gamma(n + 1.0) - puruspe::ln_gamma(k + 1.0) - puruspe::ln_gamma(n - k + 1.0)
        + if k > 0.0 { k * p.ln() } else { 0.0 }
        + if n > k { (n - k) * (1.0 - p).ln() } else { 0.0 }
}

/// The exact coverage of the rate interval: Σ_k P(k) · [p ∈ CI(k)]. Both ends of CI(k) increase
/// with k, so the k whose interval covers p are one run [k1, k2], found by bisection.
fn exact_rate_coverage(n: u64, p: f64) -> f64 {
    let k1 = first_where(0, n, |k| rate(k, n, LEVEL).high.unwrap() >= p).unwrap();
    let k2 = last_where(0, n, |k| rate(k, n, LEVEL).low.unwrap() <= p).unwrap();
    (k1..=k2).map(|k| ln_pmf(k, n, p).exp()).sum()
}

#[test]
fn rate_intervals_cover_exactly_from_200_to_ten_million() {
    for n in [200, 2_000, 100_000, 10_000_000] {
        for p in [0.001, 0.005, 0.05, 0.3] {
            let coverage = exact_rate_coverage(n, p);
            assert!(coverage >= 0.95 - 1e-9, "n={n} p={p}: coverage {coverage}");
        }
    }
}

/// Coverage of the p95 interval by simulation, for a sampler with a known p95.
fn quantile_coverage(
    n: usize,
    reps: usize,
    truth: f64,
    mut draw: impl FnMut(&mut Rng) -> f64,
) -> usize {
    let mut rng = Rng(n as u64 * 7919 + reps as u64);
    (0..reps)
        .filter(|_| {
            let mut q = Quantiles::latency_ms();
            for _ in 0..n {
                q.record(draw(&mut rng));
            }
            covers(q.interval(950, LEVEL), truth)
        })
        .count()
}

#[test]
fn p95_intervals_cover_lognormal_and_pareto_latencies() {
    let z95 = 1.6448536269514722;
    let lognormal_p95 = (5.0f64 + 0.5 * z95).exp();
    let pareto_p95 = 50.0 * 0.05f64.powf(-1.0 / 1.5);
    for (n, reps) in [(200, 400), (2_000, 300), (20_000, 150)] {
        let hits = quantile_coverage(n, reps, lognormal_p95, |r| r.lognormal(5.0, 0.5));
        assert_at_least(hits, reps, 0.95, &format!("lognormal p95, n={n}"));
        let hits = quantile_coverage(n, reps, pareto_p95, |r| r.pareto(50.0, 1.5));
        assert_at_least(hits, reps, 0.95, &format!("Pareto p95, n={n}"));
    }
}

#[test]
fn p95_intervals_cover_when_the_histogram_is_coarser_than_the_sample() {
    // 200,000 values in a narrow range: the order statistics are closer together than the HDR
    // buckets, so only the widening to bucket ends keeps the truth inside.
    let truth = 100.0 + 0.01 * 1.6448536269514722;
    let hits = quantile_coverage(200_000, 40, truth, |r| 100.0 + 0.01 * r.normal());
    assert_eq!(hits, 40, "bucket-widened intervals cover");
}

#[test]
fn mean_intervals_cover_beta_coverage_values() {
    let truth = 8.0 / 11.0;
    for (n, reps) in [(200, 400), (2_000, 300)] {
        let mut rng = Rng(n as u64);
        let hits = (0..reps)
            .filter(|_| {
                let mut s = ExactSum::default();
                (0..n).for_each(|_| s.add(rng.beta(8, 3)));
                covers(s.interval(LEVEL), truth)
            })
            .count();
        assert_at_least(hits, reps, 0.95, &format!("Beta(8,3) mean, n={n}"));
    }
}

#[test]
fn rate_differences_cover_including_a_zero_baseline() {
    let mut rng = Rng(42);
    let reps = 400;
    for (p1, p2, n) in [
        (0.0, 0.002, 2_000u64),
        (0.01, 0.01, 500),
        (0.05, 0.03, 5_000),
    ] {
        let hits = (0..reps)
            .filter(|_| {
                let k1 = (0..n).filter(|_| rng.uniform() < p1).count() as u64;
                let k2 = (0..n).filter(|_| rng.uniform() < p2).count() as u64;
                covers(rate_difference(k2, n, k1, n, LEVEL), p2 - p1)
            })
            .count();
        assert_at_least(hits, reps, 0.95, &format!("difference {p2} − {p1}, n={n}"));
    }
}

/// The p95 ratio's interval from two samples.
fn p95_ratio(base: &Quantiles, post: &Quantiles, level: Level) -> (f64, Ci) {
    let ci = Ci::ratio(
        post.interval(950, level.halved()),
        base.interval(950, level.halved()),
    );
    (
        post.quantile(950).unwrap() / base.quantile(950).unwrap(),
        ci,
    )
}

/// How often the interval gate fails (and passes) a p95 ratio whose true value is `ratio`.
fn ratio_gate(ratio: f64, n: usize, reps: usize, level: Level) -> (usize, usize) {
    let mut rng = Rng(ratio.to_bits() ^ n as u64);
    let (mut fails, mut passes) = (0, 0);
    for _ in 0..reps {
        let (mut base, mut post) = (Quantiles::latency_ms(), Quantiles::latency_ms());
        for _ in 0..n {
            base.record(rng.lognormal(5.0, 0.5));
            post.record(ratio * rng.lognormal(5.0, 0.5));
        }
        let (estimate, ci) = p95_ratio(&base, &post, level);
        match decide(estimate, ci, Bound::AtMost, 1.15, true) {
            Decision::Violated => fails += 1,
            Decision::Met => passes += 1,
            Decision::Undecided => {}
        }
    }
    (fails, passes)
}

#[test]
fn the_interval_gate_fails_a_ratio_at_the_threshold_rarely() {
    let reps = 300;
    let (fails, _) = ratio_gate(1.15, 2_000, reps, LEVEL);
    assert_at_most(fails, reps, 0.025, "p95 ratio at 1.15, n=2,000");
    let (fails, _) = ratio_gate(1.15, 300, reps, LEVEL);
    assert_at_most(fails, reps, 0.025, "p95 ratio at 1.15, n=300");
}

#[test]
fn the_interval_gate_decides_well_separated_cases() {
    let reps = 100;
    let (fails, _) = ratio_gate(1.6, 2_000, reps, LEVEL);
    assert!(fails >= 95, "a ×1.6 ratio fails: {fails}/{reps}");
    let (_, passes) = ratio_gate(0.9, 2_000, reps, LEVEL);
    assert!(passes >= 95, "a ×0.9 ratio passes: {passes}/{reps}");
}

#[test]
fn confidence_sequences_hold_over_ten_looks() {
    // A canary whose error rate is exactly the threshold, gated after every 10% of its log with
    // "fails when ≥ max": at most 2.5% of runs fail at any look.
    let reps = 400;
    let (p, n_max) = (0.01, 5_000u64);
    let mut rng = Rng(7);
    let mut failed_runs = 0;
    let mut failed_runs_fixed = 0;
    for _ in 0..reps {
        let (mut k, mut seen) = (0u64, 0u64);
        let (mut failed, mut failed_fixed) = (false, false);
        for look in 1..=10 {
            while seen < n_max * look / 10 {
                k += (rng.uniform() < p) as u64;
                seen += 1;
            }
            let estimate = k as f64 / seen as f64;
            failed |= decide(estimate, rate(k, seen, SEQUENTIAL), Bound::Below, p, true)
                == Decision::Violated;
            failed_fixed |=
                decide(estimate, rate(k, seen, LEVEL), Bound::Below, p, true) == Decision::Violated;
        }
        failed_runs += failed as usize;
        failed_runs_fixed += failed_fixed as usize;
    }
    assert_at_most(failed_runs, reps, 0.025, "sequential, ten looks");
    // The fixed interval peeked at ten times fails more often than its level: why sequences exist.
    assert!(
        failed_runs_fixed >= failed_runs,
        "{failed_runs_fixed} vs {failed_runs}"
    );

    // The p95 ratio at its threshold, ten looks at growing prefixes of both arms.
    let reps = 150;
    let mut rng = Rng(11);
    let mut failed_runs = 0;
    for _ in 0..reps {
        let (mut base, mut post) = (Quantiles::latency_ms(), Quantiles::latency_ms());
        let mut failed = false;
        for _look in 1..=10 {
            for _ in 0..300 {
                base.record(rng.lognormal(5.0, 0.5));
                post.record(1.15 * rng.lognormal(5.0, 0.5));
            }
            let (estimate, ci) = p95_ratio(&base, &post, SEQUENTIAL);
            failed |= decide(estimate, ci, Bound::AtMost, 1.15, true) == Decision::Violated;
        }
        failed_runs += failed as usize;
    }
    assert_at_most(failed_runs, reps, 0.025, "sequential p95 ratio, ten looks");
}

#[test]
fn confidence_sequences_cover_at_every_size() {
    // Every look of a run inside its interval, for rates, quantile ranks and means.
    let mut rng = Rng(3);
    let reps = 200;
    let mut all_covered = 0;
    for _ in 0..reps {
        let mut s = ExactSum::default();
        let mut k = 0u64;
        let mut ok = true;
        for n in 1..=3_000u64 {
            let v = rng.beta(8, 3);
            s.add(v);
            k += (v < 0.5) as u64;
            if n % 300 == 0 {
                ok &= covers(s.interval(SEQUENTIAL), 8.0 / 11.0);
                // P(Beta(8, 3) < 0.5) = 0.0546875.
                ok &= covers(rate(k, n, SEQUENTIAL), 0.0546875);
            }
        }
        all_covered += ok as usize;
    }
    assert_at_least(
        all_covered,
        reps,
        0.95,
        "sequential coverage over ten looks",
    );
}

#[test]
fn more_needed_grows_as_the_estimate_nears_the_threshold() {
    let ci = Ci {
        low: Some(1.04),
        high: Some(1.20),
    };
    let near = more_needed(1.12, ci, 1.15, 2_000).unwrap();
    let far = more_needed(1.12, ci, 1.30, 2_000).unwrap();
    assert!(near > 1_000, "{near}");
    assert_eq!(far, 1, "already decided: {far}");
    assert_eq!(more_needed(1.15, ci, 1.15, 2_000), None);
}

#[test]
fn decisions_follow_the_interval() {
    let ci = Ci {
        low: Some(1.04),
        high: Some(1.21),
    };
    assert_eq!(
        decide(1.12, ci, Bound::AtMost, 1.15, true),
        Decision::Undecided
    );
    assert_eq!(decide(1.12, ci, Bound::AtMost, 1.15, false), Decision::Met);
    assert_eq!(decide(1.12, ci, Bound::AtMost, 1.30, true), Decision::Met);
    assert_eq!(
        decide(1.12, ci, Bound::AtMost, 1.00, true),
        Decision::Violated
    );
    assert_eq!(decide(1.12, ci, Bound::AtLeast, 1.00, true), Decision::Met);
    assert_eq!(
        decide(1.12, ci, Bound::AtLeast, 1.30, true),
        Decision::Violated
    );
    assert_eq!(
        decide(1.12, ci, Bound::Below, 1.04, true),
        Decision::Violated
    );
    assert_eq!(
        decide(1.12, Ci::UNBOUNDED, Bound::AtMost, 1.15, true),
        Decision::Undecided
    );
}

/// The figures docs/reference/statistics.md quotes, at more repetitions than the tests run:
/// `cargo test --release -p rollproof --lib coverage_report -- --ignored --nocapture`.
#[test]
#[ignore = "a report, not a test: minutes in a debug build"]
fn coverage_report() {
    let z95 = 1.6448536269514722;
    let lognormal_p95 = (5.0f64 + 0.5 * z95).exp();
    let pareto_p95 = 50.0 * 0.05f64.powf(-1.0 / 1.5);
    let reps = 2_000;
    for n in [200, 2_000, 20_000, 200_000] {
        let reps = if n >= 200_000 { 200 } else { reps };
        let a = quantile_coverage(n, reps, lognormal_p95, |r| r.lognormal(5.0, 0.5));
        let b = quantile_coverage(n, reps, pareto_p95, |r| r.pareto(50.0, 1.5));
        println!(
            "p95 coverage n={n}: lognormal {:.3}, Pareto(1.5) {:.3} ({reps} runs)",
            a as f64 / reps as f64,
            b as f64 / reps as f64
        );
    }
    for n in [200, 2_000, 100_000, 10_000_000] {
        let worst = [0.0005, 0.001, 0.005, 0.01, 0.05, 0.3]
            .iter()
            .map(|&p| exact_rate_coverage(n, p))
            .fold(1.0, f64::min);
        println!("rate coverage n={n}: exact, worst over p in 0.05%..30%: {worst:.4}");
    }
    let mut rng = Rng(5);
    for n in [200, 2_000, 20_000] {
        let hits = (0..reps)
            .filter(|_| {
                let mut s = ExactSum::default();
                (0..n).for_each(|_| s.add(rng.beta(8, 3)));
                covers(s.interval(LEVEL), 8.0 / 11.0)
            })
            .count();
        println!(
            "Beta(8,3) mean coverage n={n}: {:.3} ({reps} runs)",
            hits as f64 / reps as f64
        );
    }
    for n in [300, 2_000, 20_000] {
        let reps = if n >= 20_000 { 300 } else { 1_000 };
        let (fails, _) = ratio_gate(1.15, n, reps, LEVEL);
        println!(
            "interval gate, true p95 ratio = threshold 1.15, n={n}/arm: fails {:.4} ({reps} runs)",
            fails as f64 / reps as f64
        );
    }
    for (ratio, n) in [(1.3, 2_000), (1.0, 2_000), (1.3, 300)] {
        let (fails, passes) = ratio_gate(ratio, n, 300, LEVEL);
        println!("power, true ratio {ratio}, n={n}/arm: fails {fails}/300, passes {passes}/300");
    }
    // Ten looks: the fixed interval peeked at ten times against the sequence.
    let reps = 2_000;
    let mut rng = Rng(8);
    let (mut seq, mut fixed) = (0, 0);
    for _ in 0..reps {
        let (mut k, mut seen) = (0u64, 0u64);
        let (mut a, mut b) = (false, false);
        for look in 1..=10 {
            while seen < 500 * look {
                k += (rng.uniform() < 0.01) as u64;
                seen += 1;
            }
            let e = k as f64 / seen as f64;
            a |= decide(e, rate(k, seen, SEQUENTIAL), Bound::Below, 0.01, true)
                == Decision::Violated;
            b |= decide(e, rate(k, seen, LEVEL), Bound::Below, 0.01, true) == Decision::Violated;
        }
        seq += a as usize;
        fixed += b as usize;
    }
    println!(
        "ten looks at an error rate equal to the threshold (1%, 500..5,000 requests): sequential fails {:.4}, fixed fails {:.4} ({reps} runs)",
        seq as f64 / reps as f64,
        fixed as f64 / reps as f64
    );
}
