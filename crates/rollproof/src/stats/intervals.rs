//! Confidence intervals and confidence sequences for the figures the checks judge.
//!
//! Every function takes `tail`: the largest probability that the interval misses the truth *on
//! one side* (0.025 for a two-sided 95% interval). Two constructions:
//!
//! - **fixed** (one look at the data): Clopper–Pearson intervals for rates (Clopper & Pearson
//!   1934), distribution-free order-statistic intervals for quantiles (the ranks from the binomial
//!   distribution of the count below the quantile; David & Nagaraja, *Order Statistics*, §7.1),
//!   Student-t intervals for means, Newcombe's hybrid score interval for a difference of rates
//!   (Newcombe 1998, method 10).
//! - **sequential** (valid at every sample size at once, so a gate re-run on a growing log keeps
//!   its error rate): confidence sequences from mixture martingales and Ville's inequality (Howard,
//!   Ramdas, McAuliffe & Sekhon 2021, "Time-uniform, nonparametric, nonasymptotic confidence
//!   sequences"): a uniform Beta mixture for Bernoulli rates, the same mixture over the count of
//!   observations below a quantile for quantiles (Howard & Ramdas 2022, "Sequential estimation of
//!   quantiles"), and a normal mixture for means of values in [0, 1] (sub-Gaussian with σ = ½).
//!
//! A ratio or difference of two independent estimates takes each at `tail / 2` and combines the
//! ends (a union bound): its interval misses on one side with probability at most `tail`.

use serde::{Deserialize, Serialize};

/// `rollproof explain statistics`: the methods, their guarantees and their references.
pub(crate) const EXPLAIN: &str = "\
statistics — how sure each verdict is

[statistics] in the incident file (defaults shown):
  method = \"point\"      thresholds judge the point estimate
           \"interval\"   thresholds judge the confidence interval: a criterion \"value ≤ max\" fails
                          when the whole interval is above max, passes when it is at or below, and
                          is inconclusive otherwise (exit 3), with about how many more requests
                          would decide it; \"≥ min\" mirrors it; the canary error rate (\"fails when
                          ≥ max\") fails when low ≥ max and passes when high < max
  confidence = 0.95      the two-sided level of every interval
  sequential = false     true: confidence sequences, valid at every sample size at once

Intervals are always reported (metrics `…_ci` = [low, high], an unbounded end null, and the sample
sizes n_baseline, n_post / n_canary with the numerators of rates). With method = \"interval\", a
true value equal to the threshold fails in at most (1 − confidence)/2 of repeated audits.

Fixed-sample intervals (sequential = false)
  rates (error rates, λ flip rates)
      Clopper–Pearson exact interval: never narrower than the level needs, and not a point at zero
      counts (0 errors in 5,000 requests gives [0, 0.074%]). Clopper & Pearson (1934), Biometrika 26.
  quantiles (p95, p99 of latency and ΔS)
      Distribution-free order-statistic interval: the ranks come from the Binomial(n, q)
      distribution of the number of values below the true quantile, the values from the HDR
      histogram, widened to the ends of their buckets so that the histogram's 0.1% precision is
      covered too. One pass over the histogram, no resampling (the Poisson-bootstrap limit of
      Schultzberg & Ankargren 2022, \"Resampling-free bootstrap inference for quantiles\").
      A p99 of few values has no upper end: null.
  means (coverage)
      Student-t interval on the exact sum and sum of squares.
  ratios and differences (p95_ratio, p99_ratio, delta_s_p95_drift, coverage drop)
      Each side's interval at half the miss probability, combined end to end (union bound): the
      ratio's interval misses on a side with probability at most (1 − confidence)/2.
  canary − baseline error rate (error_rate_diff)
      Newcombe's hybrid score interval (Newcombe 1998, Statistics in Medicine 17, method 10).

Confidence sequences (sequential = true)
  A gate re-run on every minute of a growing canary log looks at the data many times; a fixed
  interval checked ten times fails a canary at its threshold far more often than its level says.
  A confidence sequence covers the truth at every sample size simultaneously (Ville's inequality
  on a mixture martingale), so any number of looks keeps the false-fail rate. Howard, Ramdas,
  McAuliffe & Sekhon (2021), \"Time-uniform, nonparametric, nonasymptotic confidence sequences\",
  Annals of Statistics 49.
  rates: a uniform Beta mixture of the Bernoulli likelihood ratio.
  quantiles: the same mixture over the count of values below the quantile (Howard & Ramdas 2022,
      \"Sequential estimation of quantiles with applications to A/B-testing\", Bernoulli 28).
  means of values in [0, 1]: a normal mixture for ½-sub-Gaussian increments, tuned near n = 1,000.
  Sequences are wider than fixed intervals: the price of looking as often as you like. Netflix
  gates canaries this way (Lindon, Sanden & Shirikian 2022, \"Rapid regression detection in software
  deployments through sequential testing\", KDD); guardrails as non-inferiority tests follow
  Schultzberg, Ankargren & Frånberg (2024), \"Risk-aware product decisions in A/B tests with
  multiple metrics\".

The simulation tests (lognormal and Pareto latencies, Bernoulli errors with a zero baseline, Beta
coverage; n from 200 to 10⁷) check coverage, the false-fail rate at the threshold, over ten looks,
and power on well-separated cases.
";

/// An interval; an end is `None` when the data cannot bound it (a p99 of 50 values has no upper
/// bound at 95%).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Ci {
    pub low: Option<f64>,
    pub high: Option<f64>,
}

impl Ci {
    pub(crate) const UNBOUNDED: Ci = Ci {
        low: None,
        high: None,
    };

    /// The interval of `a / b` from intervals of positive `a` and `b`.
    pub(crate) fn ratio(a: Ci, b: Ci) -> Ci {
        let div = |x: Option<f64>, y: Option<f64>| match (x, y) {
            (Some(x), Some(y)) if y > 0.0 => Some(x / y),
            _ => None,
        };
        Ci {
            low: div(a.low, b.high).or(Some(0.0).filter(|_| a.low.is_some())),
            high: div(a.high, b.low),
        }
    }

    /// The interval of `a − b`.
    pub(crate) fn difference(a: Ci, b: Ci) -> Ci {
        Ci {
            low: a.low.zip(b.high).map(|(x, y)| x - y),
            high: a.high.zip(b.low).map(|(x, y)| x - y),
        }
    }
}

/// How the intervals are built.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Level {
    /// The probability of a miss on one side: (1 − confidence) / 2.
    pub(crate) tail: f64,
    pub(crate) sequential: bool,
}

impl Level {
    pub(crate) fn new(confidence: f64, sequential: bool) -> Level {
        Level {
            tail: (1.0 - confidence) / 2.0,
            sequential,
        }
    }

    /// The level of each of two estimates combined into a ratio or a difference.
    pub(crate) fn halved(self) -> Level {
        Level {
            tail: self.tail / 2.0,
            ..self
        }
    }
}

/// The upper `tail` quantile of the standard normal distribution.
pub(crate) fn z(tail: f64) -> f64 {
    std::f64::consts::SQRT_2 * puruspe::inverfc(2.0 * tail)
}

/// The upper `tail` quantile of Student's t with `df` degrees of freedom.
fn t(tail: f64, df: f64) -> f64 {
    // P(|T| > t) = I_{df/(df+t²)}(df/2, 1/2).
    let x = invbetai(2.0 * tail, df / 2.0, 0.5);
    if x <= 0.0 {
        return f64::INFINITY;
    }
    (df * (1.0 / x - 1.0)).sqrt()
}

/// P(Bin(n, p) ≥ r) = I_p(r, n − r + 1), for 1 ≤ r ≤ n.
fn binom_at_least(r: u64, n: u64, p: f64) -> f64 {
    betai(r as f64, (n - r + 1) as f64, p)
}

/// The regularized incomplete beta function I_x(a, b), a, b > 0: the continued fraction of
/// Numerical Recipes (§6.4), evaluated on the side where it converges fast. (puruspe's `betai`
/// switches sides at the wrong point and returns 1 where the answer is 10⁻²⁶.)
pub(crate) fn betai(a: f64, b: f64, x: f64) -> f64 {
    if x.is_nan() || x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = a * x.ln() + b * (1.0 - x).ln() - ln_beta(a, b);
    if x < (a + 1.0) / (a + b + 2.0) {
        (ln_front.exp() * betacf(a, b, x) / a).clamp(0.0, 1.0)
    } else {
        (1.0 - ln_front.exp() * betacf(b, a, 1.0 - x) / b).clamp(0.0, 1.0)
    }
}

/// The continued fraction for I_x(a, b) by the modified Lentz method.
fn betacf(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let floor = |v: f64| if v.abs() < TINY { TINY } else { v };
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 / floor(1.0 - qab * x / qap);
    let mut h = d;
    // One Lentz step with coefficient `aa`: updates c and d, returns the factor h is scaled by.
    let mut step = |aa: f64| {
        d = 1.0 / floor(1.0 + aa * d);
        c = floor(1.0 + aa / c);
        d * c
    };
    // Converges in O(√max(a, b)) steps; 10⁵ covers a and b up to 10¹⁰.
    for m in 1..100_000 {
        let m = m as f64;
        let m2 = 2.0 * m;
        h *= step(m * (b - m) * x / ((qam + m2) * (a + m2)));
        let del = step(-(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)));
        h *= del;
        if (del - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

/// The x in [0, 1] with I_x(a, b) = p, by bisection (I is increasing in x).
fn invbetai(p: f64, a: f64, b: f64) -> f64 {
    if p <= 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return 1.0;
    }
    bisect(0.0, 1.0, true, |x| betai(a, b, x) < p)
}

/// ln B(a, b).
fn ln_beta(a: f64, b: f64) -> f64 {
    puruspe::ln_gamma(a) + puruspe::ln_gamma(b) - puruspe::ln_gamma(a + b)
}

/// The log of the uniform-mixture likelihood ratio for `k` successes in `n` trials against
/// success probability `p`: ln[B(k+1, n−k+1) / (p^k (1−p)^(n−k))]. Ville: P(∃n: ratio ≥ 1/tail)
/// ≤ tail under p.
fn ln_mixture_ratio(k: u64, n: u64, p: f64) -> f64 {
    let (k, f) = (k as f64, (n - k) as f64);
    let ln_lik =
        if k > 0.0 { k * p.ln() } else { 0.0 } + if f > 0.0 { f * (1.0 - p).ln() } else { 0.0 };
    ln_beta(k + 1.0, f + 1.0) - ln_lik
}

/// Bisection for a monotone predicate over f64 in [lo, hi]: the boundary, to 1e-12.
fn bisect(mut lo: f64, mut hi: f64, inside_at_lo: bool, inside: impl Fn(f64) -> bool) -> f64 {
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if inside(mid) == inside_at_lo {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo < 1e-15 * hi.abs().max(1e-300) {
            break;
        }
    }
    if inside_at_lo {
        lo
    } else {
        hi
    }
}

/// An interval for a rate of `k` events in `n` trials. `None` ends never happen for n > 0; n = 0
/// gives [0, 1].
pub(crate) fn rate(k: u64, n: u64, level: Level) -> Ci {
    if n == 0 {
        return Ci {
            low: Some(0.0),
            high: Some(1.0),
        };
    }
    let k = k.min(n);
    if level.sequential {
        let bound = (1.0 / level.tail).ln();
        let inside = |p: f64| ln_mixture_ratio(k, n, p) < bound;
        let centre = k as f64 / n as f64;
        let low = if k == 0 || inside(1e-300) {
            0.0
        } else {
            bisect(1e-300, centre, false, inside)
        };
        let high = if k == n || inside(1.0 - 1e-16) {
            1.0
        } else {
            bisect(centre, 1.0 - 1e-16, true, inside)
        };
        return Ci {
            low: Some(low),
            high: Some(high),
        };
    }
    let (kf, nf) = (k as f64, n as f64);
    let low = if k == 0 {
        0.0
    } else {
        invbetai(level.tail, kf, nf - kf + 1.0)
    };
    let high = if k == n {
        1.0
    } else {
        invbetai(1.0 - level.tail, kf + 1.0, nf - kf)
    };
    Ci {
        low: Some(low),
        high: Some(high),
    }
}

/// The ranks (1-based) of the order statistics that bound the `p` quantile of `n` values:
/// X_(low) ≤ ξ_p and X_(high) ≥ ξ_p, each failing with probability at most `tail`. `None` when no
/// order statistic is far enough out.
pub(crate) fn quantile_ranks(n: u64, p: f64, level: Level) -> (Option<u64>, Option<u64>) {
    if n == 0 {
        return (None, None);
    }
    if level.sequential {
        // The count K of values ≤ ξ_p is Bin(n, p); the mixture confidence sequence bounds it
        // for all n at once. X_(k) ≤ ξ_p when K ≥ k; X_(k+1) > ξ_p when K ≤ k.
        let bound = (1.0 / level.tail).ln();
        let inside = |k: u64| ln_mixture_ratio(k, n, p) < bound;
        let centre = ((n as f64 * p) as u64).min(n);
        let k_lo = first_where(0, centre, inside);
        let k_hi = last_where(centre, n, inside);
        let low = k_lo.filter(|k| *k >= 1);
        let high = k_hi.and_then(|k| (k < n).then_some(k + 1));
        return (low, high);
    }
    // Lower: the largest r with P(Bin(n, p) ≥ r) ≥ 1 − tail. Upper: the smallest r with
    // P(Bin(n, p) ≥ r) ≤ tail (then P(X_(r) ≥ ξ_p) = P(Bin ≤ r − 1) ≥ 1 − tail).
    let low = last_where(1, n, |r| binom_at_least(r, n, p) >= 1.0 - level.tail);
    let high = first_where(1, n, |r| binom_at_least(r, n, p) <= level.tail);
    (low, high)
}

/// The smallest k in [lo, hi] with `pred(k)`, for a predicate false then true.
fn first_where(lo: u64, hi: u64, pred: impl Fn(u64) -> bool) -> Option<u64> {
    if lo > hi || !pred(hi) {
        return None;
    }
    let (mut a, mut b) = (lo, hi);
    while a < b {
        let mid = a + (b - a) / 2;
        if pred(mid) {
            b = mid;
        } else {
            a = mid + 1;
        }
    }
    Some(a)
}

/// The largest k in [lo, hi] with `pred(k)`, for a predicate true then false.
fn last_where(lo: u64, hi: u64, pred: impl Fn(u64) -> bool) -> Option<u64> {
    if lo > hi || !pred(lo) {
        return None;
    }
    let (mut a, mut b) = (lo, hi);
    while a < b {
        let mid = a + (b - a).div_ceil(2);
        if pred(mid) {
            a = mid;
        } else {
            b = mid - 1;
        }
    }
    Some(a)
}

/// An interval for the mean of `n` values in [0, 1] with the given sum and sum of squares.
pub(crate) fn mean_unit(sum: f64, sum_sq: f64, n: u64, level: Level) -> Ci {
    if n == 0 {
        return Ci::UNBOUNDED;
    }
    let nf = n as f64;
    let mean = sum / nf;
    let half = if level.sequential {
        // Normal mixture boundary for σ-sub-Gaussian increments (σ = ½ for values in [0, 1]),
        // tuned to be tightest near n = 1,000: |S_n − nμ| < σ √((n+ρ) ln((n+ρ)/(ρ tail²))).
        let sigma = 0.5;
        let l = (1.0 / level.tail).ln();
        let rho = 1000.0 / (2.0 * l + (1.0 + 2.0 * l).ln());
        sigma * ((nf + rho) * ((nf + rho) / rho).ln().max(0.0) + (nf + rho) * 2.0 * l).sqrt() / nf
    } else if n < 2 {
        f64::INFINITY
    } else {
        let var = ((sum_sq - sum * sum / nf) / (nf - 1.0)).max(0.0);
        t(level.tail, nf - 1.0) * (var / nf).sqrt()
    };
    Ci {
        low: Some((mean - half).max(0.0)),
        high: Some((mean + half).min(1.0)),
    }
}

/// Newcombe's hybrid score interval for `k1/n1 − k2/n2` (fixed), or the difference of the two
/// rates' confidence sequences at half the level (sequential).
pub(crate) fn rate_difference(k1: u64, n1: u64, k2: u64, n2: u64, level: Level) -> Ci {
    if n1 == 0 || n2 == 0 {
        return Ci {
            low: Some(-1.0),
            high: Some(1.0),
        };
    }
    if level.sequential {
        let half = level.halved();
        return Ci::difference(rate(k1, n1, half), rate(k2, n2, half));
    }
    let z = z(level.tail);
    let wilson = |k: u64, n: u64| {
        let (p, n) = (k as f64 / n as f64, n as f64);
        let denom = 1.0 + z * z / n;
        let centre = (p + z * z / (2.0 * n)) / denom;
        let half = z / denom * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt();
        (p, (centre - half).max(0.0), (centre + half).min(1.0))
    };
    let (p1, l1, u1) = wilson(k1, n1);
    let (p2, l2, u2) = wilson(k2, n2);
    let d = p1 - p2;
    Ci {
        low: Some(d - ((p1 - l1).powi(2) + (u2 - p2).powi(2)).sqrt()),
        high: Some(d + ((u1 - p1).powi(2) + (p2 - l2).powi(2)).sqrt()),
    }
}

/// What a criterion concluded from an estimate and its interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    Met,
    Violated,
    /// The interval straddles the threshold (interval method only).
    Undecided,
}

/// The direction of a criterion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bound {
    /// Met when value ≤ threshold.
    AtMost,
    /// Met when value ≥ threshold.
    AtLeast,
    /// Met when value < threshold (violated at the threshold).
    Below,
}

impl Bound {
    /// The criterion's sign as the reports write it: "≤", "≥" or "<".
    pub(crate) fn sign(self) -> &'static str {
        match self {
            Bound::AtMost => "≤",
            Bound::AtLeast => "≥",
            Bound::Below => "<",
        }
    }
}

/// Judges `estimate` (point method) or `ci` (interval method) against `threshold`.
pub(crate) fn decide(
    estimate: f64,
    ci: Ci,
    bound: Bound,
    threshold: f64,
    interval: bool,
) -> Decision {
    if !interval {
        let met = match bound {
            Bound::AtMost => estimate <= threshold,
            Bound::AtLeast => estimate >= threshold,
            Bound::Below => estimate < threshold,
        };
        return if met {
            Decision::Met
        } else {
            Decision::Violated
        };
    }
    let (low, high) = (
        ci.low.unwrap_or(f64::NEG_INFINITY),
        ci.high.unwrap_or(f64::INFINITY),
    );
    match bound {
        Bound::AtMost if low > threshold => Decision::Violated,
        Bound::AtMost if high <= threshold => Decision::Met,
        Bound::AtLeast if high < threshold => Decision::Violated,
        Bound::AtLeast if low >= threshold => Decision::Met,
        Bound::Below if low >= threshold => Decision::Violated,
        Bound::Below if high < threshold => Decision::Met,
        _ => Decision::Undecided,
    }
}

/// About how many more observations (on top of `n`) would make the interval clear `threshold`,
/// if the estimate stayed where it is and the interval narrowed as 1/√n. `None` when the estimate
/// sits on the threshold (no amount of data decides it) or an end is unbounded.
pub(crate) fn more_needed(estimate: f64, ci: Ci, threshold: f64, n: u64) -> Option<u64> {
    let gap = (estimate - threshold).abs();
    if gap <= f64::EPSILON || n == 0 {
        return None;
    }
    let half = if estimate < threshold {
        ci.high? - estimate
    } else {
        estimate - ci.low?
    };
    let needed = n as f64 * (half / gap).powi(2);
    let more = (needed - n as f64).max(1.0).ceil();
    // Two significant figures: the figure is a rough guide, not a promise.
    let magnitude = 10f64.powi((more.log10().floor() as i32 - 1).max(0));
    Some(((more / magnitude).ceil() * magnitude) as u64)
}

#[cfg(test)]
mod tests;
