//! A small deterministic random source, so that every run builds the same lab.

/// splitmix64: a stream that depends only on its seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A source whose stream depends only on `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Puts `items` in a random order (Fisher-Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }

    /// One of `items`, each as likely as its weight.
    pub fn weighted<T: Copy>(&mut self, items: &[(T, usize)]) -> T {
        let mut left = self.below(items.iter().map(|(_, w)| w).sum());
        for &(item, weight) in items {
            if left < weight {
                return item;
            }
            left -= weight;
        }
        unreachable!("the draw is below the total weight")
    }
}
