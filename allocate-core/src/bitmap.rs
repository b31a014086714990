//! A compressed set of positions, laid out as roaring bitmaps are: chunks of 65,536 positions,
//! each a sorted array while sparse and a 8 KiB bitset once dense, so a label carried by a few
//! resources costs a few bytes each and one carried by most costs a bit each.
//!
//! The operation matching leans on is [`Bitmap::seek`], the first member at or after a
//! position: a search among the chunks, then one binary search or a few word scans.

/// Members of an array chunk past which it turns into a bitset (where the two weigh the same).
const ARRAY_MAX: usize = 4096;

/// Words in a bitset chunk.
const WORDS: usize = 1024;

/// Words in a window: the positions a join reads at once, two cache lines of a bitset.
pub(crate) const WINDOW_WORDS: usize = 16;

/// Positions in a window.
pub(crate) const WINDOW: u32 = WINDOW_WORDS as u32 * 64;

/// The members of a bitmap among [`WINDOW`] positions, as bits.
pub(crate) type Window = [u64; WINDOW_WORDS];

/// The positions of one chunk, as their low 16 bits.
#[derive(Clone, Debug)]
enum Chunk {
    /// Sorted, without repeats.
    Array(Vec<u16>),
    /// One bit per position, with the number of bits set.
    Bits(Box<Bits>, u32),
}

/// A bitset chunk, with a bit per word saying whether the word has any bit set, so that a
/// seek across empty stretches reads 16 words rather than 1024.
#[derive(Clone, Debug)]
struct Bits {
    words: [u64; WORDS],
    nonzero: [u64; WORDS / 64],
}

impl Bits {
    /// The bitset of a chunk's `words` (fewer than a chunk's at the end of a bitmap).
    fn of_words(words: &[u64]) -> Box<Bits> {
        let mut bits = Box::new(Bits {
            words: [0; WORDS],
            nonzero: [0; WORDS / 64],
        });
        bits.words[..words.len()].copy_from_slice(words);
        for (w, word) in words.iter().enumerate() {
            bits.nonzero[w / 64] |= u64::from(*word != 0) << (w % 64);
        }
        bits
    }

    fn set(&mut self, low: u16) -> bool {
        let (w, bit) = (usize::from(low) / 64, 1u64 << (low % 64));
        let added = self.words[w] & bit == 0;
        self.words[w] |= bit;
        self.nonzero[w / 64] |= 1 << (w % 64);
        added
    }

    fn clear(&mut self, low: u16) -> bool {
        let (w, bit) = (usize::from(low) / 64, 1u64 << (low % 64));
        let removed = self.words[w] & bit != 0;
        self.words[w] &= !bit;
        if self.words[w] == 0 {
            self.nonzero[w / 64] &= !(1 << (w % 64));
        }
        removed
    }

    /// The first word at or after `w` with a bit set.
    fn next_nonzero(&self, w: usize) -> Option<usize> {
        let mut s = w / 64;
        let mut summary = *self.nonzero.get(s)? & (!0u64 << (w % 64));
        loop {
            if summary != 0 {
                return Some(s * 64 + summary.trailing_zeros() as usize);
            }
            s += 1;
            summary = *self.nonzero.get(s)?;
        }
    }

    fn seek(&self, low: u16) -> Option<u16> {
        let w = usize::from(low) / 64;
        let word = self.words[w] & (!0u64 << (low % 64));
        if word != 0 {
            return Some((w * 64) as u16 + word.trailing_zeros() as u16);
        }
        let w = self.next_nonzero(w + 1)?;
        Some((w * 64) as u16 + self.words[w].trailing_zeros() as u16)
    }
}

impl Chunk {
    fn len(&self) -> usize {
        match self {
            Chunk::Array(v) => v.len(),
            Chunk::Bits(_, n) => *n as usize,
        }
    }

    fn insert(&mut self, low: u16) -> bool {
        match self {
            Chunk::Array(v) => {
                // Positions are mostly added in ascending order: at the end.
                let i = match v.last() {
                    Some(&last) if last >= low => match v.binary_search(&low) {
                        Ok(_) => return false,
                        Err(i) => i,
                    },
                    _ => v.len(),
                };
                v.insert(i, low);
                if v.len() > ARRAY_MAX {
                    *self = Chunk::of_sorted(std::mem::take(v));
                }
                true
            }
            Chunk::Bits(bits, n) => {
                let added = bits.set(low);
                *n += u32::from(added);
                added
            }
        }
    }

    fn remove(&mut self, low: u16) -> bool {
        match self {
            Chunk::Array(v) => {
                let Ok(i) = v.binary_search(&low) else {
                    return false;
                };
                v.remove(i);
                true
            }
            Chunk::Bits(bits, n) => {
                let removed = bits.clear(low);
                *n -= u32::from(removed);
                // Back to an array well below the limit, so that one member more or less at
                // the edge does not convert it back and forth.
                if removed && (*n as usize) < ARRAY_MAX / 2 {
                    *self = Chunk::Array(Chunk::members(&bits.words).collect());
                }
                removed
            }
        }
    }

    /// The chunk of `sorted` (ascending, no repeats): an array up to `ARRAY_MAX`, else bits.
    fn of_sorted(sorted: Vec<u16>) -> Chunk {
        if sorted.len() <= ARRAY_MAX {
            return Chunk::Array(sorted);
        }
        let mut bits = Box::new(Bits {
            words: [0; WORDS],
            nonzero: [0; WORDS / 64],
        });
        for &low in &sorted {
            bits.set(low);
        }
        Chunk::Bits(bits, sorted.len() as u32)
    }

    /// The positions of the bits set in `words` (a chunk's worth or less), ascending.
    fn members(words: &[u64]) -> impl Iterator<Item = u16> + '_ {
        words.iter().enumerate().flat_map(|(w, &word)| {
            let mut rest = word;
            std::iter::from_fn(move || {
                (rest != 0).then(|| {
                    let bit = rest.trailing_zeros();
                    rest &= rest - 1;
                    (w * 64) as u16 + bit as u16
                })
            })
        })
    }

    /// The least member at or after `low`, searched in an array from index `*idx` (galloping
    /// forward, so a cursor moving forward pays for the distance moved), which it leaves at
    /// the member found.
    fn seek_from(&self, low: u16, idx: &mut usize) -> Option<u16> {
        match self {
            Chunk::Array(v) => {
                let (mut lo, mut step) = (*idx, 1);
                while lo < v.len() && v[lo] < low {
                    let probe = lo + step;
                    if probe >= v.len() || v[probe] >= low {
                        let end = probe.min(v.len());
                        lo += 1 + v[lo + 1..end].partition_point(|&x| x < low);
                        break;
                    }
                    lo = probe;
                    step *= 2;
                }
                *idx = lo;
                v.get(lo).copied()
            }
            Chunk::Bits(bits, _) => bits.seek(low),
        }
    }

    /// The low 16 bits of each member, ascending.
    fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        // Not boxed, so that a whole walk (`for_each`, `collect`) runs as a plain loop.
        let (array, bits) = match self {
            Chunk::Array(v) => (Some(v.iter().copied()), None),
            Chunk::Bits(bits, _) => (None, Some(Chunk::members(&bits.words))),
        };
        array
            .into_iter()
            .flatten()
            .chain(bits.into_iter().flatten())
    }
}

/// A set of `u32` positions.
#[derive(Clone, Debug, Default)]
pub(crate) struct Bitmap {
    /// Non-empty chunks by the high 16 bits of their positions, ascending.
    chunks: Vec<(u16, Chunk)>,
    len: u64,
}

fn split(pos: u32) -> (u16, u16) {
    ((pos >> 16) as u16, pos as u16)
}

impl Bitmap {
    /// How many positions it holds.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether it holds no position.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn chunk(&self, high: u16) -> Result<usize, usize> {
        // The last chunk first: positions are mostly added in ascending order.
        match self.chunks.last() {
            Some((last, _)) if *last == high => Ok(self.chunks.len() - 1),
            Some((last, _)) if *last < high => Err(self.chunks.len()),
            _ => self.chunks.binary_search_by_key(&high, |(k, _)| *k),
        }
    }

    /// Adds `pos`; `true` if it was not there.
    pub fn insert(&mut self, pos: u32) -> bool {
        let (high, low) = split(pos);
        let added = match self.chunk(high) {
            Ok(i) => self.chunks[i].1.insert(low),
            Err(i) => {
                self.chunks.insert(i, (high, Chunk::Array(vec![low])));
                true
            }
        };
        self.len += u64::from(added);
        added
    }

    /// Takes out `pos`; `true` if it was there.
    pub fn remove(&mut self, pos: u32) -> bool {
        let (high, low) = split(pos);
        let Ok(i) = self.chunk(high) else {
            return false;
        };
        let removed = self.chunks[i].1.remove(low);
        if self.chunks[i].1.len() == 0 {
            self.chunks.remove(i);
        }
        self.len -= u64::from(removed);
        removed
    }

    /// Every position it holds, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.chunks.iter().flat_map(|(k, chunk)| {
            chunk
                .iter()
                .map(move |l| (u32::from(*k) << 16) | u32::from(l))
        })
    }

    /// The bitmap whose members are the bits set in `words` (bit `i % 64` of word `i / 64`
    /// for position `i`), which it clears on the way, so that one buffer serves many.
    pub fn take_words(words: &mut [u64]) -> Self {
        let mut bitmap = Bitmap::default();
        for (high, block) in words.chunks_mut(WORDS).enumerate() {
            let count: u32 = block.iter().map(|w| w.count_ones()).sum();
            if count == 0 {
                continue;
            }
            let chunk = if count as usize > ARRAY_MAX {
                Chunk::Bits(Bits::of_words(block), count)
            } else {
                Chunk::Array(Chunk::members(block).collect())
            };
            block.fill(0);
            bitmap.chunks.push((high as u16, chunk));
            bitmap.len += u64::from(count);
        }
        bitmap
    }

    /// The bitmap of `positions`, which must be ascending without repeats.
    pub fn from_sorted(positions: &[u32]) -> Self {
        let mut chunks = Vec::new();
        let mut rest = positions;
        while let Some(&first) = rest.first() {
            let high = split(first).0;
            let n = rest.partition_point(|&p| split(p).0 == high);
            let lows: Vec<u16> = rest[..n].iter().map(|&p| p as u16).collect();
            chunks.push((high, Chunk::of_sorted(lows)));
            rest = &rest[n..];
        }
        Bitmap {
            chunks,
            len: positions.len() as u64,
        }
    }
}

/// A forward-only reader of a bitmap: each seek starts from where the last one stopped, so a
/// join that moves forward pays for the distance it moves, not for a search from the start.
#[derive(Clone, Debug)]
pub(crate) struct Cursor<'a> {
    chunks: &'a [(u16, Chunk)],
    /// The chunk holding `at`, `chunks.len()` once there is none.
    chunk: usize,
    /// Where `at` is in an array chunk.
    idx: usize,
    /// The least member at or after every position sought so far, `u32::MAX` if none.
    at: u32,
}

impl<'a> Cursor<'a> {
    /// A cursor on `bitmap`'s least member at or after `pos`.
    pub fn new(bitmap: &'a Bitmap, pos: u32) -> Self {
        let mut cursor = Cursor {
            chunks: &bitmap.chunks,
            chunk: 0,
            idx: 0,
            at: 0,
        };
        cursor.settle(pos);
        cursor
    }

    /// The least member at or after `pos` and every position sought before (`u32::MAX` if
    /// none).
    pub fn seek(&mut self, pos: u32) -> u32 {
        if pos > self.at {
            self.settle(pos);
        }
        self.at
    }

    /// Adds to `out` the members among the [`WINDOW`] positions from `block` (a multiple of
    /// [`WINDOW`]), as bits: every one at or after the least position sought so far, and
    /// perhaps some before it. The cursor moves on to `block`, so the next seek must not be
    /// before it.
    pub fn window(&mut self, block: u32, out: &mut Window) {
        if self.at >= block && self.at - block >= WINDOW {
            return;
        }
        let (high, low) = split(block);
        while self.chunks.get(self.chunk).is_some_and(|(k, _)| *k < high) {
            self.chunk += 1;
            self.idx = 0;
        }
        match self.chunks.get(self.chunk) {
            Some((key, Chunk::Bits(bits, _))) if *key == high => {
                let first = usize::from(low) / 64;
                for (o, w) in out.iter_mut().zip(&bits.words[first..first + WINDOW_WORDS]) {
                    *o |= w;
                }
            }
            Some((key, chunk @ Chunk::Array(v))) if *key == high => {
                if chunk.seek_from(low, &mut self.idx).is_none() {
                    return;
                }
                for offset in v[self.idx..]
                    .iter()
                    .map(|&x| x - low)
                    .take_while(|&offset| u32::from(offset) < WINDOW)
                {
                    out[usize::from(offset) / 64] |= 1 << (offset % 64);
                }
            }
            _ => {}
        }
    }

    /// Moves to the least member at or after `pos`, from the chunk it stands in.
    fn settle(&mut self, pos: u32) {
        let (high, low) = split(pos);
        while self.chunks.get(self.chunk).is_some_and(|(k, _)| *k < high) {
            self.chunk += 1;
            self.idx = 0;
        }
        while let Some((key, chunk)) = self.chunks.get(self.chunk) {
            let from = if *key == high { low } else { 0 };
            if let Some(l) = chunk.seek_from(from, &mut self.idx) {
                self.at = (u32::from(*key) << 16) | u32::from(l);
                return;
            }
            self.chunk += 1;
            self.idx = 0;
        }
        self.at = u32::MAX;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn agrees_with_a_set_through_inserts_removes_and_conversions() {
        let mut bitmap = Bitmap::default();
        let mut set = BTreeSet::new();
        let mut x: u64 = 1;
        for step in 0..60_000u32 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            // Dense around one chunk, sparse elsewhere, and a long removal phase.
            let pos = if x >> 62 == 0 {
                (x >> 20) as u32 % 300_000
            } else {
                70_000 + (x >> 40) as u32 % 9_000
            };
            if step < 40_000 || x & 1 == 0 {
                assert_eq!(bitmap.insert(pos), set.insert(pos));
            } else {
                assert_eq!(bitmap.remove(pos), set.remove(&pos));
            }
            if step % 997 == 0 {
                let probe = (x >> 24) as u32 % 310_000;
                assert_eq!(
                    Cursor::new(&bitmap, probe).seek(probe),
                    set.range(probe..).next().copied().unwrap_or(u32::MAX)
                );
                let block = probe & !(WINDOW - 1);
                let mut got = Window::default();
                Cursor::new(&bitmap, block).window(block, &mut got);
                assert_eq!(got, window_of(&set, block, block));
            }
        }
        assert_eq!(bitmap.len(), set.len() as u64);
        assert!(bitmap.iter().eq(set.iter().copied()));
        let sorted: Vec<u32> = set.iter().copied().collect();
        let rebuilt = Bitmap::from_sorted(&sorted);
        assert!(rebuilt.iter().eq(bitmap.iter()) && rebuilt.len() == bitmap.len());
        assert!(bitmap
            .chunks
            .iter()
            .any(|(_, c)| matches!(c, Chunk::Bits(..))));
        assert!(bitmap
            .chunks
            .iter()
            .any(|(_, c)| matches!(c, Chunk::Array(..))));
        for pos in sorted {
            assert!(bitmap.remove(pos));
        }
        assert!(bitmap.is_empty() && bitmap.chunks.is_empty());
        assert_eq!(Cursor::new(&bitmap, 0).seek(0), u32::MAX);
    }

    /// `take_words` builds what `from_sorted` builds of the same members (arrays where sparse,
    /// bits where dense, no empty chunk), and leaves its buffer clear for the next.
    #[test]
    fn take_words_agrees_with_from_sorted() {
        let mut x: u64 = 3;
        let sorted: Vec<u32> = (0..300_000u32)
            .filter(|&p| {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                // Dense in the first chunk, none in the second, sparse after.
                match p >> 16 {
                    0 => x >> 62 != 0,
                    1 => false,
                    _ => x >> 58 == 0,
                }
            })
            .collect();
        let mut words = vec![0u64; 300_000usize.div_ceil(64)];
        for &p in &sorted {
            words[p as usize / 64] |= 1 << (p % 64);
        }
        let taken = Bitmap::take_words(&mut words);
        let built = Bitmap::from_sorted(&sorted);
        assert!(taken.iter().eq(sorted.iter().copied()) && taken.len() == built.len());
        assert!(words.iter().all(|&w| w == 0), "the buffer is left clear");
        let kinds = |b: &Bitmap| -> Vec<(u16, bool)> {
            b.chunks
                .iter()
                .map(|(k, c)| (*k, matches!(c, Chunk::Bits(..))))
                .collect()
        };
        assert_eq!(kinds(&taken), kinds(&built));
        assert_eq!(
            kinds(&taken),
            [(0, true), (2, false), (3, false), (4, false)]
        );
    }

    /// The members of `set` from `from` among the `WINDOW` positions from `block`, as bits.
    fn window_of(set: &BTreeSet<u32>, block: u32, from: u32) -> Window {
        let mut w = Window::default();
        for p in set.range(from.max(block)..block + WINDOW) {
            w[(p - block) as usize / 64] |= 1 << ((p - block) % 64);
        }
        w
    }

    #[test]
    fn a_cursor_moving_forward_agrees_with_a_set() {
        let mut x: u64 = 7;
        let mut next = || {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            x >> 33
        };
        // Sparse, dense and mixed chunks, and positions in chunks that are empty.
        let set: BTreeSet<u32> = (0..40_000)
            .map(|i| match i % 4 {
                0 => (next() % 65_536) as u32,
                1 => 131_072 + (next() % 2_000) as u32,
                _ => 200_000 + (next() % 30_000) as u32,
            })
            .collect();
        let sorted: Vec<u32> = set.iter().copied().collect();
        let bitmap = Bitmap::from_sorted(&sorted);
        for stride in [1, 3, 64, 700, 20_000] {
            let mut cursor = Cursor::new(&bitmap, 0);
            let mut pos = 0;
            while pos < 300_000 {
                let want = set.range(pos..).next().copied().unwrap_or(u32::MAX);
                assert_eq!(cursor.seek(pos), want, "seek {pos}, stride {stride}");
                let block = pos & !(WINDOW - 1);
                let mut got = Window::default();
                cursor.window(block, &mut got);
                for (i, w) in got.iter_mut().enumerate() {
                    let start = block + 64 * i as u32;
                    *w &= if pos <= start {
                        !0
                    } else if pos < start + 64 {
                        !0 << (pos - start)
                    } else {
                        0
                    };
                }
                assert_eq!(got, window_of(&set, block, pos), "window {pos}");
                pos += 1 + (next() % stride) as u32;
            }
        }
    }
}
