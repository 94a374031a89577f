//! The crate's one pseudo-random generator (splitmix64) and keyed hashing.
//!
//! Everything the simulator invents is a pure function of the seed and of
//! "what is being invented" (node index, pid, minute, ...), so two runs with
//! the same seed serve the same bytes: the output sequence for a key must
//! never change. [`hash`] keys a value by a tuple; [`Rng`] draws a sequence
//! from one key. Reconnect jitter and the load benchmark's clients use it
//! too. Not cryptographic, and not meant to be.

/// The splitmix64 increment (the golden ratio in 64 bits).
pub const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// The splitmix64 finalizer: a bijective mix of 64 bits.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A 64-bit hash of a tuple of integers: `hash(&[seed, node, pid])`.
pub fn hash(parts: &[u64]) -> u64 {
    let mut h = 0x243f_6a88_85a3_08d3u64;
    for &p in parts {
        h = mix(h ^ mix(p.wrapping_add(GOLDEN)));
    }
    h
}

/// A number in `[0, 1)` from a hash.
pub fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// A splitmix64 stream.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A stream keyed by a tuple (see [`hash`]).
    pub fn new(key: &[u64]) -> Self {
        Rng(hash(key))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        mix(self.0)
    }

    /// A number in `[0, n)`; 0 when `n` is 0.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        // Multiply-shift: unbiased enough for a simulator, and no loop.
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// A number in `[lo, hi]`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo).saturating_add(1))
    }

    /// A number in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        unit(self.next_u64())
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// One element of a slice. Callers pass constant, non-empty tables;
    /// an empty one would panic on the index.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_spread() {
        let a: Vec<u64> = (0..5)
            .map(|_| 0)
            .scan(Rng::new(&[1, 2]), |r, _| Some(r.next_u64()))
            .collect();
        let b: Vec<u64> = (0..5)
            .map(|_| 0)
            .scan(Rng::new(&[1, 2]), |r, _| Some(r.next_u64()))
            .collect();
        assert_eq!(a, b);
        // The simulator's trees are pure functions of these numbers: the
        // sequence for a key is fixed for good.
        assert_eq!(hash(&[1, 2]), 0x8741_c163_ec56_07bc);
        assert_eq!(
            a[..3],
            [
                0xb963_7ab8_377d_fb48,
                0x0dc6_39aa_07c2_e4c1,
                0xa1b5_90e1_11a0_a969
            ]
        );
        assert_ne!(hash(&[1, 2]), hash(&[2, 1]));
        let mut r = Rng::new(&[7]);
        let mut seen = [0u32; 10];
        for _ in 0..10_000 {
            seen[r.below(10) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| (800..1200).contains(&n)), "{seen:?}");
        assert_eq!(r.below(0), 0);
        for _ in 0..1000 {
            let v = r.range(5, 7);
            assert!((5..=7).contains(&v));
            let u = r.unit();
            assert!((0.0..1.0).contains(&u));
        }
    }
}
