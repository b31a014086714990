//! Criteria (what a request needs of a resource) and how a resource is judged against them.
//!
//! Matching itself goes through the [`crate::index`], which also holds the best-fit order; this
//! module says what a match is: the rules the index's bitmaps and numeric checks implement,
//! applied to one resource at a time where a single resource is offered to the queue.

use crate::model::{Gpu, Requirements, ResourceSpec};

/// Writes the canonical text of resources' matching-relevant part (labels, type, CPUs, memory,
/// GPUs, normalised), their shape keys: resources with equal keys are interchangeable, and
/// inventory ids are derived from it, so its format must never change. It keeps its sorting
/// lists from one key to the next, as a registration writes one key per resource.
#[derive(Debug, Default)]
pub(crate) struct ShapeKeys<'a> {
    /// The labels, each after its first 8 bytes as a number (see [`prefix`]).
    labels: Vec<(u64, &'a str)>,
    gpus: Vec<&'a Gpu>,
}

impl<'a> ShapeKeys<'a> {
    /// About how long the shape key of `spec` is, to reserve room for it.
    pub fn len_estimate(spec: &ResourceSpec) -> usize {
        64 + 16 * spec.labels.len() + 48 * spec.gpu.len()
    }

    /// Appends the shape key of `spec` to `key`.
    pub fn push(&mut self, key: &mut String, spec: &'a ResourceSpec) {
        let (labels, gpus) = (&mut self.labels, &mut self.gpus);
        labels.clear();
        labels.extend(spec.labels.iter().map(|l| (prefix(l), l.as_str())));
        // In the labels' order: the prefixes settle most comparisons without a `memcmp`.
        labels.sort_unstable();
        labels.dedup();
        gpus.clear();
        gpus.extend(&spec.gpu);
        gpus.sort_unstable();
        // The JSON array `[labels, type, cpu_count, memory_gb, gpus]` that serde_json writes
        // for that tuple (a test holds it to serde_json's text), written by hand.
        key.reserve(Self::len_estimate(spec));
        key.push('[');
        push_list(key, labels, |key, (_, label)| push_json_str(key, label));
        key.push(',');
        push_json_str(key, &spec.kind);
        key.push(',');
        push_u64(key, spec.cpu_count);
        key.push(',');
        push_u64(key, spec.memory_gb);
        key.push(',');
        push_list(key, gpus, |key, gpu| {
            key.push_str("{\"label\":");
            push_json_str(key, &gpu.label);
            key.push_str(",\"memory_gb\":");
            push_u64(key, gpu.memory_gb);
            key.push('}');
        });
        key.push(']');
    }
}

/// The first 8 bytes of `s` (padded with zeros) as a big-endian number: strings whose
/// prefixes differ are in the order of their prefixes, and the others are decided by the rest.
fn prefix(s: &str) -> u64 {
    let mut bytes = [0u8; 8];
    let n = s.len().min(8);
    bytes[..n].copy_from_slice(&s.as_bytes()[..n]);
    u64::from_be_bytes(bytes)
}

/// Appends `n` in decimal, as `Display` writes it, without the formatting machinery (a
/// registration writes several per resource).
fn push_u64(key: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    key.push_str(std::str::from_utf8(&digits[at..]).expect("decimal digits are ASCII"));
}

/// Appends `items` to `key` as a JSON array, each written by `push`.
fn push_list<T>(key: &mut String, items: &[T], push: impl Fn(&mut String, &T)) {
    key.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            key.push(',');
        }
        push(key, item);
    }
    key.push(']');
}

/// Appends `s` to `key` as a JSON string, escaped as serde_json escapes it.
fn push_json_str(key: &mut String, s: &str) {
    // Every byte tested, with no early exit: the test vectorises.
    let plain = s.bytes().fold(true, |plain, b| {
        plain & (b >= 0x20) & (b != b'"') & (b != b'\\')
    });
    if !plain {
        key.push_str(&serde_json::to_string(s).expect("a string always serialises"));
    } else {
        key.push('"');
        key.push_str(s);
        key.push('"');
    }
}

/// The GPU part of [`Criteria`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct GpuCriteria {
    pub label_lower: Option<String>,
    pub min_memory_gb: u64,
    pub count: u32,
}

/// The matching-relevant part of a request, normalised so that equal needs compare equal.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Criteria {
    pub tags: Vec<String>,
    pub exclude_tags: Vec<String>,
    pub kind: Option<String>,
    pub min_cpu_count: u64,
    pub min_memory_gb: u64,
    pub gpu: Option<GpuCriteria>,
}

fn sorted_unique(list: &[String]) -> Vec<String> {
    let mut v = list.to_vec();
    v.sort_unstable();
    v.dedup();
    v
}

/// Whether `haystack` contains `needle_lower` (already in lower case), ignoring case.
pub(crate) fn contains_ignoring_case(haystack: &str, needle_lower: &str) -> bool {
    if haystack.is_ascii() && needle_lower.is_ascii() {
        let (h, n) = (haystack.as_bytes(), needle_lower.as_bytes());
        return n.is_empty()
            || h.windows(n.len())
                .any(|w| w.iter().zip(n).all(|(a, b)| a.to_ascii_lowercase() == *b));
    }
    haystack.to_lowercase().contains(needle_lower)
}

impl Criteria {
    /// The criteria of a request.
    pub fn of(req: &Requirements) -> Self {
        Criteria {
            tags: sorted_unique(&req.tags),
            exclude_tags: sorted_unique(&req.exclude_tags),
            kind: req.kind.clone(),
            min_cpu_count: req.min_cpu_count.unwrap_or(0),
            min_memory_gb: req.min_memory_gb.unwrap_or(0),
            gpu: req.gpu.as_ref().map(|g| GpuCriteria {
                label_lower: g.label.as_ref().map(|l| l.to_lowercase()),
                min_memory_gb: g.min_memory_gb,
                count: g.count,
            }),
        }
    }

    /// Whether a resource satisfies the request.
    pub fn matches(&self, spec: &ResourceSpec) -> bool {
        let has = |label: &String| spec.labels.contains(label);
        spec.cpu_count >= self.min_cpu_count
            && spec.memory_gb >= self.min_memory_gb
            && self.kind.as_ref().is_none_or(|k| *k == spec.kind)
            && self.tags.iter().all(has)
            && !self.exclude_tags.iter().any(has)
            && self.gpus_match(&spec.gpu)
    }

    /// Whether enough of `gpus` have the memory and model asked for.
    pub fn gpus_match(&self, gpus: &[Gpu]) -> bool {
        let Some(want) = &self.gpu else {
            return true;
        };
        let suitable = gpus
            .iter()
            .filter(|g| {
                g.memory_gb >= want.min_memory_gb
                    && want
                        .label_lower
                        .as_ref()
                        .is_none_or(|l| contains_ignoring_case(&g.label, l))
            })
            .count();
        suitable >= want.count as usize
    }

    /// The GPU count and the total GPU memory any matching resource has at least.
    pub fn gpu_floor(&self) -> (u64, u64) {
        self.gpu.as_ref().map_or((0, 0), |g| {
            let count = u64::from(g.count);
            (count, count.saturating_mul(g.min_memory_gb))
        })
    }

    /// Whether matching needs a look at each GPU, beyond counting them.
    pub fn checks_each_gpu(&self) -> bool {
        self.gpu
            .as_ref()
            .is_some_and(|g| g.label_lower.is_some() || g.min_memory_gb > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{test_spec as spec, GpuRequirement};

    /// The shape key of `spec` on its own.
    fn shape_key(spec: &ResourceSpec) -> String {
        let mut key = String::new();
        ShapeKeys::default().push(&mut key, spec);
        key
    }

    fn gpu_req(label: Option<&str>, min: u64, count: u32) -> Requirements {
        let mut r = Requirements::for_user("u");
        r.gpu = Some(GpuRequirement {
            label: label.map(str::to_owned),
            min_memory_gb: min,
            count,
        });
        r
    }

    #[test]
    fn tags_exclusions_type_cpu_memory() {
        let machine = spec(&["nvidia", "cuda", "nvidia"], 12, 32, &[], "VM");
        let mut r = Requirements::for_user("u");
        r.tags = vec!["nvidia".into()];
        assert!(Criteria::of(&r).matches(&machine));
        r.tags.push("rocm".into());
        assert!(!Criteria::of(&r).matches(&machine));
        r.tags.pop();
        r.exclude_tags = vec!["cuda".into()];
        assert!(!Criteria::of(&r).matches(&machine));
        r.exclude_tags.clear();
        r.kind = Some("vm".into());
        assert!(
            !Criteria::of(&r).matches(&machine),
            "type is compared exactly"
        );
        r.kind = Some("VM".into());
        r.min_cpu_count = Some(12);
        r.min_memory_gb = Some(32);
        assert!(Criteria::of(&r).matches(&machine));
        r.min_memory_gb = Some(33);
        assert!(!Criteria::of(&r).matches(&machine));
    }

    #[test]
    fn gpu_label_is_a_case_insensitive_substring_and_count_applies_to_both() {
        let machine = spec(
            &[],
            8,
            16,
            &[
                ("NVIDIA GeForce RTX 2080", 8),
                ("NVIDIA GeForce RTX 2080", 8),
                ("Tesla T4", 16),
            ],
            "",
        );
        assert!(Criteria::of(&gpu_req(Some("rtx 2080"), 8, 2)).matches(&machine));
        assert!(!Criteria::of(&gpu_req(Some("rtx 2080"), 8, 3)).matches(&machine));
        assert!(!Criteria::of(&gpu_req(Some("rtx 2080"), 9, 1)).matches(&machine));
        assert!(Criteria::of(&gpu_req(Some("GEFORCE"), 0, 2)).matches(&machine));
        assert!(Criteria::of(&gpu_req(None, 8, 3)).matches(&machine));
        assert!(Criteria::of(&gpu_req(None, 16, 1)).matches(&machine));
        assert!(!Criteria::of(&gpu_req(None, 16, 2)).matches(&machine));
    }

    #[test]
    fn case_is_ignored_beyond_ascii_too() {
        let machine = spec(&[], 1, 1, &[("ÉCLAIR Ω-100", 8)], "");
        assert!(Criteria::of(&gpu_req(Some("éclair ω"), 0, 1)).matches(&machine));
        assert!(Criteria::of(&gpu_req(Some("Ω-100"), 0, 1)).matches(&machine));
        assert!(!Criteria::of(&gpu_req(Some("eclair"), 0, 1)).matches(&machine));
        assert!(contains_ignoring_case("Tesla T4", ""));
    }

    #[test]
    fn shape_keys_are_the_json_serde_json_writes() {
        let odd = [
            "a\"b",
            "back\\slash",
            "tab\there",
            "nul\u{0}",
            "é ü 🚀",
            "\u{7f}",
            "",
        ];
        for (i, label) in odd.iter().enumerate() {
            let mut s = spec(
                &[label, "plain", odd[(i + 1) % odd.len()]],
                3,
                9,
                &[],
                label,
            );
            s.gpu = vec![
                Gpu {
                    label: (*label).to_owned(),
                    memory_gb: u64::MAX,
                },
                Gpu {
                    label: "T4".to_owned(),
                    memory_gb: 16,
                },
            ];
            s.cpu_count = u64::MAX - i as u64;
            let mut labels: Vec<&str> = s.labels.iter().map(String::as_str).collect();
            labels.sort_unstable();
            labels.dedup();
            let mut gpus: Vec<&Gpu> = s.gpu.iter().collect();
            gpus.sort_unstable();
            let want = serde_json::to_string(&(labels, &s.kind, s.cpu_count, s.memory_gb, gpus));
            assert_eq!(shape_key(&s), want.expect("serialises"), "{s:?}");
        }
    }

    #[test]
    fn shape_keys_ignore_label_order_and_repeats_and_keep_their_format() {
        let a = spec(&["b", "a", "b"], 4, 8, &[("T4", 16)], "VM");
        let b = spec(&["a", "b"], 4, 8, &[("T4", 16)], "VM");
        assert_eq!(shape_key(&a), shape_key(&b));
        // Inventory ids derive from this text: changing it would change registered ids.
        assert_eq!(
            shape_key(&a),
            r#"[["a","b"],"VM",4,8,[{"label":"T4","memory_gb":16}]]"#
        );
        assert_ne!(
            shape_key(&a),
            shape_key(&spec(&["a"], 4, 8, &[("T4", 16)], "VM"))
        );
    }
}
