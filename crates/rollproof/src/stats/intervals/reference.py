"""Reference values for stats/intervals/tests.rs, computed with scipy (pip install scipy)."""
import scipy.stats as st

print("Clopper-Pearson, 95%: k, n, low, high")
for k, n in [(0, 5000), (3, 200), (120, 1000), (200, 200)]:
    ci = st.binomtest(k, n).proportion_ci(0.95, method="exact")
    print(k, n, repr(ci.low), repr(ci.high))

print("Order-statistic ranks of a 95% quantile interval: n, p, lower, upper")
for n, p in [(200, 0.95), (2000, 0.95), (200, 0.99), (1000, 0.5)]:
    # lower: the largest r with P(Bin(n, p) >= r) >= 0.975; upper: the smallest r with <= 0.025
    low = [r for r in range(1, n + 1) if st.binom.sf(r - 1, n, p) >= 0.975]
    high = [r for r in range(1, n + 1) if st.binom.sf(r - 1, n, p) <= 0.025]
    print(n, p, max(low) if low else None, min(high) if high else None)

print("t(0.975, 9), z(0.975):", repr(st.t.ppf(0.975, 9)), repr(st.norm.ppf(0.975)))
