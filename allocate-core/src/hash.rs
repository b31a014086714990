//! Deterministic hash maps: std's default hasher seeds itself from the OS, which the core must not do.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A fast, unseeded hasher (the FxHash mix used by rustc, folded at the end); fine for ids we
/// generate or validate.
#[derive(Clone, Copy, Debug, Default)]
pub struct FxHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        for &b in chunks.remainder() {
            self.add(u64::from(b));
        }
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    /// The hash, folded: both halves of its 128-bit product with the seed. FxHash's last
    /// multiply leaves the low bits of keys that differ only in their high bytes alike (as
    /// sequential UUIDs, read little-endian, do), and hashbrown picks the bucket by the low
    /// bits, so without the fold such keys all probe from one bucket and each lookup walks
    /// the whole run.
    #[inline]
    fn finish(&self) -> u64 {
        let full = u128::from(self.hash) * u128::from(SEED);
        (full as u64) ^ ((full >> 64) as u64)
    }
}

/// A `HashMap` with the deterministic [`FxHasher`].
pub type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::hash::BuildHasher;

    /// Keys that differ only in their high bytes (sequential UUIDs, read little-endian) still
    /// spread over the low bits, which pick a bucket: without the fold, all 1,024 share them.
    #[test]
    fn keys_differing_in_their_high_bytes_spread_over_the_low_bits() {
        let build = BuildHasherDefault::<FxHasher>::default();
        let low: BTreeSet<u64> = (0..1024u128)
            .map(|i| build.hash_one(uuid::Uuid::from_u128(i)) & 1023)
            .collect();
        assert!(low.len() > 256, "{} of 1,024 low-bit patterns", low.len());
    }
}
