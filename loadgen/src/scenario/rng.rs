//! The per-connection generator behind `{{rand}}`, `{{uuid}}` and the
//! weighted pick: SplitMix64, a few cycles per number and seedable, so a
//! `--seed` run sends the same values on the same connection again.

#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The generator of connection `conn` of shard `shard` for run seed
    /// `seed`: distinct streams, the same ones for the same seed.
    pub fn for_connection(seed: u64, shard: usize, conn: usize) -> Rng {
        let mut r = Rng(seed ^ ((shard as u64) << 40) ^ (conn as u64).wrapping_mul(0x9e37_79b9));
        // Mix once, so that neighbouring connections do not start close.
        r.0 = r.next_u64();
        r
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..span` (`span == 0`: any u64). Lemire's multiply-shift:
    /// the bias is below span / 2^64, invisible at load-test sizes.
    #[inline]
    pub fn below(&mut self, span: u64) -> u64 {
        let r = self.next_u64();
        if span == 0 {
            r
        } else {
            ((r as u128 * span as u128) >> 64) as u64
        }
    }
}

/// A seed for runs without `--seed`: different every run.
pub fn fresh_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    Rng::new(t ^ ((std::process::id() as u64) << 32)).next_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_streams_differ() {
        let a: Vec<u64> = (0..5)
            .map({
                let mut r = Rng::for_connection(1, 0, 0);
                move |_| r.next_u64()
            })
            .collect();
        let b: Vec<u64> = (0..5)
            .map({
                let mut r = Rng::for_connection(1, 0, 0);
                move |_| r.next_u64()
            })
            .collect();
        let c: Vec<u64> = (0..5)
            .map({
                let mut r = Rng::for_connection(1, 0, 1);
                move |_| r.next_u64()
            })
            .collect();
        let d: Vec<u64> = (0..5)
            .map({
                let mut r = Rng::for_connection(1, 1, 0);
                move |_| r.next_u64()
            })
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
    }

    #[test]
    fn below_is_in_range() {
        let mut r = Rng::new(5);
        for span in [1, 2, 3, 10, 1000] {
            for _ in 0..1000 {
                assert!(r.below(span) < span);
            }
        }
    }
}
