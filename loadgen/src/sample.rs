//! The statistics `loadgen compare` needs, small and tested against SciPy:
//! Welch's t-test, the Mann–Whitney U test (normal approximation with tie
//! and continuity corrections, SciPy's `method="asymptotic"`), the
//! Shapiro–Wilk normality test (Royston's algorithm AS R94, as SciPy's
//! `swilk.c`), and a percentile bootstrap. Distributions come from statrs.

use statrs::distribution::{ContinuousCDF, Normal, StudentsT};

pub fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len().max(1) as f64
}

/// Sample variance (n − 1).
pub fn variance(x: &[f64]) -> f64 {
    if x.len() < 2 {
        return 0.0;
    }
    let m = mean(x);
    x.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (x.len() - 1) as f64
}

pub fn median(x: &[f64]) -> f64 {
    if x.is_empty() {
        return f64::NAN;
    }
    let mut v = x.to_vec();
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// Coefficient of variation (stdev / mean).
pub fn cv(x: &[f64]) -> f64 {
    let m = mean(x);
    if m == 0.0 {
        0.0
    } else {
        variance(x).sqrt() / m.abs()
    }
}

fn std_normal() -> Normal {
    Normal::new(0.0, 1.0).expect("valid parameters")
}

/// Welch's unequal-variance t-test, two-sided: (t, degrees of freedom, p).
pub fn welch_t(a: &[f64], b: &[f64]) -> (f64, f64, f64) {
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let (va, vb) = (variance(a) / na, variance(b) / nb);
    let se = (va + vb).sqrt();
    if se == 0.0 {
        let same = mean(a) == mean(b);
        return (0.0, na + nb - 2.0, if same { 1.0 } else { 0.0 });
    }
    let t = (mean(a) - mean(b)) / se;
    let df = (va + vb).powi(2) / (va * va / (na - 1.0) + vb * vb / (nb - 1.0));
    let dist = StudentsT::new(0.0, 1.0, df).expect("df > 0");
    (t, df, 2.0 * (1.0 - dist.cdf(t.abs())))
}

/// Mann–Whitney U test, two-sided, normal approximation with tie and
/// continuity corrections: (U of `a`, p).
pub fn mann_whitney_u(a: &[f64], b: &[f64]) -> (f64, f64) {
    let (n1, n2) = (a.len(), b.len());
    let mut all: Vec<(f64, usize)> = a
        .iter()
        .map(|&v| (v, 0))
        .chain(b.iter().map(|&v| (v, 1)))
        .collect();
    all.sort_by(|x, y| x.0.total_cmp(&y.0));
    let n = all.len();
    let mut ranks = vec![0.0; n];
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        for rank in &mut ranks[i..=j] {
            *rank = r;
        }
        let t = (j - i + 1) as f64;
        tie_term += t * t * t - t;
        i = j + 1;
    }
    let r1: f64 = all
        .iter()
        .zip(&ranks)
        .filter(|((_, g), _)| *g == 0)
        .map(|(_, r)| r)
        .sum();
    let (n1f, n2f, nf) = (n1 as f64, n2 as f64, n as f64);
    let u1 = r1 - n1f * (n1f + 1.0) / 2.0;
    let mu = n1f * n2f / 2.0;
    let sigma = (n1f * n2f / 12.0 * ((nf + 1.0) - tie_term / (nf * (nf - 1.0)))).sqrt();
    if sigma == 0.0 {
        return (u1, 1.0);
    }
    let z = ((u1 - mu).abs() - 0.5).max(0.0) / sigma;
    (u1, (2.0 * (1.0 - std_normal().cdf(z))).min(1.0))
}

/// The smallest p-value [`mann_whitney_u`] can give for samples of these
/// sizes (every `a` below every `b`): above α, the rank test cannot find
/// any difference, however large (3 against 3 gives 0.081).
pub fn mann_whitney_min_p(n1: usize, n2: usize) -> f64 {
    let (n1, n2) = (n1 as f64, n2 as f64);
    let mu = n1 * n2 / 2.0;
    let sigma = (n1 * n2 * (n1 + n2 + 1.0) / 12.0).sqrt();
    if sigma == 0.0 {
        return 1.0;
    }
    (2.0 * (1.0 - std_normal().cdf((mu - 0.5) / sigma))).min(1.0)
}

fn poly(c: &[f64], x: f64) -> f64 {
    c.iter().rev().fold(0.0, |acc, &k| acc * x + k)
}

/// Shapiro–Wilk test for normality: (W, p). Needs 3 ≤ n ≤ 5000.
pub fn shapiro_wilk(data: &[f64]) -> Option<(f64, f64)> {
    let n = data.len();
    if !(3..=5000).contains(&n) {
        return None;
    }
    let mut x = data.to_vec();
    x.sort_by(f64::total_cmp);
    let range = x[n - 1] - x[0];
    if range <= 0.0 {
        return None;
    }
    let nn2 = n / 2;
    let an = n as f64;
    let mut a = vec![0.0; nn2];
    let norm = std_normal();
    if n == 3 {
        a[0] = 0.5f64.sqrt();
    } else {
        let an25 = an + 0.25;
        let m: Vec<f64> = (1..=nn2)
            .map(|i| norm.inverse_cdf((i as f64 - 0.375) / an25))
            .collect();
        let summ2 = 2.0 * m.iter().map(|v| v * v).sum::<f64>();
        let ssumm2 = summ2.sqrt();
        let rsn = 1.0 / an.sqrt();
        const C1: [f64; 6] = [0.0, 0.221157, -0.147981, -2.07119, 4.434685, -2.706056];
        const C2: [f64; 6] = [0.0, 0.042981, -0.293762, -1.752461, 5.682633, -3.582633];
        let a1 = poly(&C1, rsn) - m[0] / ssumm2;
        let (i1, fac) = if n > 5 {
            let a2 = -m[1] / ssumm2 + poly(&C2, rsn);
            a[1] = a2;
            (
                2,
                ((summ2 - 2.0 * m[0] * m[0] - 2.0 * m[1] * m[1])
                    / (1.0 - 2.0 * a1 * a1 - 2.0 * a2 * a2))
                    .sqrt(),
            )
        } else {
            (
                1,
                ((summ2 - 2.0 * m[0] * m[0]) / (1.0 - 2.0 * a1 * a1)).sqrt(),
            )
        };
        a[0] = a1;
        for i in i1..nn2 {
            a[i] = -m[i] / fac;
        }
    }
    // W = (Σ coef·x)² / Σ(x − x̄)², coefficients antisymmetric.
    let xm = mean(&x);
    let ss: f64 = x.iter().map(|v| (v - xm) * (v - xm)).sum();
    let num: f64 = (0..nn2).map(|i| a[i] * (x[n - 1 - i] - x[i])).sum();
    let w = (num * num / ss).min(1.0);
    let w1 = 1.0 - w;
    if n == 3 {
        // Exact for n = 3: p = 6/π · (asin √W − π/3).
        let p = 6.0 / std::f64::consts::PI * (w.sqrt().asin() - std::f64::consts::FRAC_PI_3);
        return Some((w, p.max(0.0)));
    }
    let y = w1.ln();
    let xx = an.ln();
    let (yv, mm, s) = if n <= 11 {
        let gamma = poly(&[-2.273, 0.459], an);
        if y >= gamma {
            return Some((w, 1e-99));
        }
        (
            -(gamma - y).ln(),
            poly(&[0.544, -0.39978, 0.025054, -6.714e-4], an),
            poly(&[1.3822, -0.77857, 0.062767, -0.0020322], an).exp(),
        )
    } else {
        (
            y,
            poly(&[-1.5861, -0.31082, -0.083751, 0.0038915], xx),
            poly(&[-0.4803, -0.082676, 0.0030302], xx).exp(),
        )
    };
    let z = (yv - mm) / s;
    Some((w, 1.0 - norm.cdf(z)))
}

/// 95 % percentile-bootstrap interval of the relative change of medians,
/// `100·(median(b) − median(a)) / median(a)`, deterministic (seeded).
pub fn bootstrap_delta_pct(a: &[f64], b: &[f64], iterations: usize, seed: u64) -> (f64, f64) {
    let mut state = seed.max(1);
    let mut next = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let mut deltas = Vec::with_capacity(iterations);
    let mut ra = vec![0.0; a.len()];
    let mut rb = vec![0.0; b.len()];
    for _ in 0..iterations {
        for v in ra.iter_mut() {
            *v = a[next(a.len())];
        }
        for v in rb.iter_mut() {
            *v = b[next(b.len())];
        }
        let ma = median(&ra);
        if ma != 0.0 {
            deltas.push(100.0 * (median(&rb) - ma) / ma);
        }
    }
    deltas.sort_by(f64::total_cmp);
    if deltas.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let at = |q: f64| deltas[((deltas.len() - 1) as f64 * q).round() as usize];
    (at(0.025), at(0.975))
}

#[cfg(test)]
mod tests {
    //! Expected values computed with SciPy 1.x (`scipy.stats.shapiro`,
    //! `ttest_ind(equal_var=False)`, `mannwhitneyu(method="asymptotic")`)
    //! and copied here.
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * b.abs().max(1e-12)
    }

    #[test]
    fn shapiro_wilk_matches_scipy() {
        let x = [
            148., 154., 158., 160., 161., 162., 166., 170., 182., 195., 236.,
        ];
        let (w, p) = shapiro_wilk(&x).unwrap();
        assert!(close(w, 0.788_814_694_863_171_6, 1e-4), "{w}");
        assert!(close(p, 0.006_703_814_061_898_823, 2e-2), "{p}");
        let x = [2.1, 3.4, 1.9, 5.6, 4.4, 3.3, 2.8, 4.1];
        let (w, p) = shapiro_wilk(&x).unwrap();
        assert!(close(w, 0.963_924_773_141_336_1, 1e-4), "{w}");
        assert!(close(p, 0.846_546_504_282_920_3, 2e-2), "{p}");
        let (w, p) = shapiro_wilk(&[1.0, 2.0, 4.0]).unwrap();
        assert!(close(w, 0.964_285_714_285_714_2, 1e-6), "{w}");
        assert!(close(p, 0.636_886_845_028_968_9, 1e-4), "{p}");
        let x = [
            103.456, 108.216, 103.304, 86.968, 109.054, 104.464, 94.63, 105.811, 103.646, 102.941,
            100.284, 105.467, 92.635, 98.371, 95.179, 105.988, 100.397, 97.075, 92.181, 97.428,
            100.081, 97.244, 112.941, 110.067, 72.888, 81.11, 98.252, 95.778, 102.136, 102.173,
        ];
        let (w, p) = shapiro_wilk(&x).unwrap();
        assert!(close(w, 0.915_677_061_205_214_3, 1e-4), "{w}");
        assert!(close(p, 0.020_748_132_641_715_46, 2e-2), "{p}");
        assert!(shapiro_wilk(&[1.0, 2.0]).is_none());
        assert!(shapiro_wilk(&[5.0; 10]).is_none());
    }

    #[test]
    fn welch_matches_scipy() {
        let a = [10.1, 10.4, 9.8, 10.0, 10.3, 9.9, 10.2];
        let b = [11.0, 11.3, 10.9, 11.4, 11.1, 10.8, 11.2];
        let (t, df, p) = welch_t(&a, &b);
        assert!(close(t, -8.660_254_037_844_405, 1e-9), "{t}");
        assert!(close(df, 12.0, 1e-9), "{df}");
        assert!(close(p, 1.654_494_352_136_113_4e-6, 1e-4), "{p}");
    }

    #[test]
    fn the_rank_test_needs_four_samples_a_side_to_reach_five_percent() {
        assert!(mann_whitney_min_p(3, 3) > 0.05);
        assert!((mann_whitney_min_p(3, 3) - 0.0809).abs() < 1e-3);
        assert!(mann_whitney_min_p(4, 4) < 0.05);
        // Complete separation gives exactly the smallest p.
        let (_, p) = mann_whitney_u(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]);
        assert!((p - mann_whitney_min_p(3, 3)).abs() < 1e-12);
    }

    #[test]
    fn mann_whitney_matches_scipy() {
        let a = [1., 2., 2., 3., 4., 5., 5., 5., 6.];
        let b = [3., 4., 6., 6., 7., 8., 8., 9.];
        let (u, p) = mann_whitney_u(&a, &b);
        assert_eq!(u, 11.0);
        assert!(close(p, 0.017_546_961_881_012_04, 1e-6), "{p}");
    }

    #[test]
    fn bootstrap_covers_a_known_shift_and_is_deterministic() {
        let a: Vec<f64> = (0..40).map(|i| 100.0 + (i % 7) as f64).collect();
        let b: Vec<f64> = a.iter().map(|v| v * 1.10).collect();
        let (lo, hi) = bootstrap_delta_pct(&a, &b, 2000, 42);
        assert!(lo <= 10.0 && 10.0 <= hi, "[{lo}, {hi}]");
        assert_eq!(bootstrap_delta_pct(&a, &b, 2000, 42), (lo, hi));
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
