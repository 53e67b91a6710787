//! The node's private, seeded random number generator: the only source of election jitter
//! (ARCHITECTURE.md, design rule 1). It is part of the node's state, so cloning a node clones
//! its future choices, and two nodes built from the same seed behave identically.
//!
//! The generator is SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number
//! generators", 2014): one `u64` of state, `Clone + Eq + Hash`, and ample quality for
//! spreading timeouts. Nothing here is for cryptography.

/// A deterministic generator seeded by [`crate::Config::rng_seed`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator whose whole future is fixed by `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `[low, high)`; `low` when the range is empty.
    pub fn in_range(&mut self, low: u32, high: u32) -> u32 {
        if high <= low {
            return low;
        }
        let span = u64::from(high - low);
        // Multiply-shift maps 64 random bits onto the span with negligible bias for spans
        // this small (Lemire, "Fast random integer generation in an interval", 2019).
        let pick = ((u128::from(self.next_u64()) * u128::from(span)) >> 64) as u64;
        low + pick as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        assert_ne!(Rng::new(7).next_u64(), Rng::new(8).next_u64());
    }

    #[test]
    fn in_range_stays_in_range_and_covers_it() {
        let mut rng = Rng::new(1);
        let mut seen = [false; 10];
        for _ in 0..10_000 {
            let v = rng.in_range(10, 20);
            assert!((10..20).contains(&v));
            seen[(v - 10) as usize] = true;
        }
        assert!(seen.iter().all(|s| *s), "every value of the range is drawn: {seen:?}");
        assert_eq!(rng.in_range(5, 5), 5);
    }
}
