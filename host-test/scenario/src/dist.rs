//! Random draws a scenario needs, from one seeded generator: latencies (fixed, uniform,
//! normal, log-normal), weighted choices, exponential gaps. Knows nothing of requests.

use std::time::Duration;

use crate::model::Latency;

/// A seeded generator (fastrand's wyrand). The same seed gives the same run.
#[derive(Clone, Debug)]
pub struct Draw {
    rng: fastrand::Rng,
}

impl Draw {
    /// A generator for one purpose; `stream` keeps purposes independent of each other
    /// (the traffic does not change when the upstream's draws do).
    pub fn new(seed: u64, stream: u64) -> Self {
        Draw {
            rng: fastrand::Rng::with_seed(seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        }
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        self.rng.f64()
    }

    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n <= 1 {
            0
        } else {
            self.rng.u64(0..n)
        }
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }

    /// A standard normal draw (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.unit(); // (0, 1]
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// An exponential gap with mean `1/rate` seconds.
    pub fn exponential(&mut self, rate: f64) -> f64 {
        let u = 1.0 - self.unit();
        -u.ln() / rate
    }

    /// Index picked with probability proportional to `weights` (some weight > 0).
    pub fn weighted(&mut self, weights: &[f64]) -> usize {
        let total: f64 = weights.iter().sum();
        let mut x = self.unit() * total;
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        weights.iter().rposition(|w| *w > 0.0).unwrap_or(0)
    }

    /// A latency from `dist`, never negative.
    pub fn latency(&mut self, dist: &Latency) -> Duration {
        let secs = match *dist {
            Latency::Fixed(d) => return d.get(),
            Latency::Uniform { min, max } => {
                let (a, b) = (min.get().as_secs_f64(), max.get().as_secs_f64());
                a + (b - a) * self.unit()
            }
            Latency::Normal { mean, stddev } => {
                mean.get().as_secs_f64() + stddev.get().as_secs_f64() * self.normal()
            }
            Latency::Lognormal { median, sigma } => {
                median.get().as_secs_f64() * (sigma * self.normal()).exp()
            }
        };
        Duration::from_secs_f64(secs.clamp(0.0, 86_400.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::Span;

    #[test]
    fn same_seed_same_draws_and_streams_differ() {
        let mut a = Draw::new(7, 1);
        let mut b = Draw::new(7, 1);
        let mut c = Draw::new(7, 2);
        let xa: Vec<u64> = (0..5).map(|_| a.below(1000)).collect();
        let xb: Vec<u64> = (0..5).map(|_| b.below(1000)).collect();
        let xc: Vec<u64> = (0..5).map(|_| c.below(1000)).collect();
        assert_eq!(xa, xb);
        assert_ne!(xa, xc);
    }

    #[test]
    fn latency_distributions_have_their_shape() {
        let mut d = Draw::new(1, 0);
        let ms = |s: &str| s.parse::<Span>().unwrap();
        assert_eq!(
            d.latency(&Latency::Fixed(ms("20ms"))),
            Duration::from_millis(20)
        );
        let uni = Latency::Uniform {
            min: ms("10ms"),
            max: ms("30ms"),
        };
        let lo = Latency::Lognormal {
            median: ms("20ms"),
            sigma: 0.5,
        };
        let mut below_median = 0;
        for _ in 0..2000 {
            let u = d.latency(&uni);
            assert!(u >= Duration::from_millis(10) && u <= Duration::from_millis(30));
            if d.latency(&lo) < Duration::from_millis(20) {
                below_median += 1;
            }
        }
        assert!(
            (900..1100).contains(&below_median),
            "median off: {below_median}/2000 below"
        );
        let n = Latency::Normal {
            mean: ms("1ms"),
            stddev: ms("10ms"),
        };
        assert!((0..500).all(|_| d.latency(&n) >= Duration::ZERO));
    }

    #[test]
    fn weighted_choice_respects_zero_weights() {
        let mut d = Draw::new(3, 0);
        for _ in 0..200 {
            assert_ne!(d.weighted(&[1.0, 0.0, 2.0]), 1);
        }
    }
}
