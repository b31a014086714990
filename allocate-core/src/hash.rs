//! Deterministic hash maps: std's default hasher seeds itself from the OS, which the core must not do.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A fast, unseeded hasher (the FxHash mix used by rustc); fine for ids we generate or validate.
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

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

/// A `HashMap` with the deterministic [`FxHasher`].
pub type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// [`FxHasher`] with a folded multiply at the end, for keys that may differ only in their high
/// bytes, as sequential UUIDs (read little-endian) do: FxHash's last multiply leaves the low
/// bits of such keys alike, and hashbrown picks the bucket by the low bits, so without the fold
/// they all probe from one bucket and each lookup walks the whole run.
#[derive(Clone, Copy, Debug, Default)]
pub struct IdHasher(FxHasher);

impl Hasher for IdHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        self.0.write(bytes);
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.0.write_u64(n);
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.0.write_usize(n);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // Both halves of the 128-bit product: the high half depends on every bit of the hash.
        let full = u128::from(self.0.hash) * u128::from(SEED);
        (full as u64) ^ ((full >> 64) as u64)
    }
}

/// A `HashMap` keyed by ids, with the deterministic [`IdHasher`].
pub type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;
