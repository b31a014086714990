//! Shapes (what a resource is, minus its identity) and criteria (what a request needs of one).
//!
//! Resources with the same shape are interchangeable for matching, so the engine matches a
//! request against shapes, not against every resource: a lab of 100,000 machines has a few
//! hundred shapes at most.

use crate::model::{Gpu, Requirements, ResourceSpec};

/// The matching-relevant part of a resource, normalised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Shape {
    /// Labels, sorted, without repeats.
    pub labels: Vec<String>,
    pub kind: String,
    pub cpu_count: u64,
    pub memory_gb: u64,
    /// GPUs, sorted.
    pub gpus: Vec<Gpu>,
    /// The GPUs' labels in lower case, in the order of `gpus`.
    pub gpu_labels_lower: Vec<String>,
    /// A canonical text form, used as the intern key and to derive inventory ids.
    pub key: String,
}

impl Shape {
    /// The shape of a registered resource.
    pub fn of(spec: &ResourceSpec) -> Self {
        let mut labels = spec.labels.clone();
        labels.sort_unstable();
        labels.dedup();
        let mut gpus = spec.gpu.clone();
        gpus.sort_unstable();
        let gpu_labels_lower = gpus.iter().map(|g| g.label.to_lowercase()).collect();
        let key = serde_json::json!([labels, spec.kind, spec.cpu_count, spec.memory_gb, gpus])
            .to_string();
        Shape {
            labels,
            kind: spec.kind.clone(),
            cpu_count: spec.cpu_count,
            memory_gb: spec.memory_gb,
            gpus,
            gpu_labels_lower,
            key,
        }
    }

    fn has_label(&self, label: &str) -> bool {
        self.labels
            .binary_search_by(|l| l.as_str().cmp(label))
            .is_ok()
    }

    fn gpu_memory_total(&self) -> u64 {
        self.gpus
            .iter()
            .fold(0u64, |sum, g| sum.saturating_add(g.memory_gb))
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
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Criteria {
    pub tags: Vec<String>,
    pub exclude_tags: Vec<String>,
    pub kind: Option<String>,
    pub min_cpu_count: u64,
    pub min_memory_gb: u64,
    pub gpu: Option<GpuCriteria>,
}

/// How much a shape exceeds a request: GPU memory, GPU count, CPUs, memory. Less is a better fit.
pub(crate) type Fit = [u64; 4];

fn sorted_unique(list: &[String]) -> Vec<String> {
    let mut v = list.to_vec();
    v.sort_unstable();
    v.dedup();
    v
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

    /// Whether a resource of this shape satisfies the request.
    pub fn matches(&self, shape: &Shape) -> bool {
        shape.cpu_count >= self.min_cpu_count
            && shape.memory_gb >= self.min_memory_gb
            && self.kind.as_ref().is_none_or(|k| *k == shape.kind)
            && self.tags.iter().all(|t| shape.has_label(t))
            && !self.exclude_tags.iter().any(|t| shape.has_label(t))
            && self.gpus_match(shape)
    }

    fn gpus_match(&self, shape: &Shape) -> bool {
        let Some(gpu) = &self.gpu else {
            return true;
        };
        let suitable = shape
            .gpus
            .iter()
            .zip(&shape.gpu_labels_lower)
            .filter(|(g, lower)| {
                g.memory_gb >= gpu.min_memory_gb
                    && gpu
                        .label_lower
                        .as_ref()
                        .is_none_or(|want| lower.contains(want.as_str()))
            })
            .count();
        suitable >= gpu.count as usize
    }

    /// How much a matching shape exceeds the request (see [`Fit`]).
    pub fn fit(&self, shape: &Shape) -> Fit {
        let (count, per_gpu) = self
            .gpu
            .as_ref()
            .map_or((0, 0), |g| (u64::from(g.count), g.min_memory_gb));
        [
            shape
                .gpu_memory_total()
                .saturating_sub(count.saturating_mul(per_gpu)),
            (shape.gpus.len() as u64).saturating_sub(count),
            shape.cpu_count.saturating_sub(self.min_cpu_count),
            shape.memory_gb.saturating_sub(self.min_memory_gb),
        ]
    }

    /// The label to look up in the label index: the required tag that fewest shapes carry.
    pub fn rarest_tag(&self, shapes_with: impl Fn(&str) -> usize) -> Option<&str> {
        self.tags
            .iter()
            .min_by_key(|t| shapes_with(t))
            .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::GpuRequirement;

    fn spec(labels: &[&str], cpu: u64, mem: u64, gpus: &[(&str, u64)], kind: &str) -> ResourceSpec {
        ResourceSpec {
            inventory_id: None,
            labels: labels.iter().map(|s| s.to_string()).collect(),
            cpu_count: cpu,
            memory_gb: mem,
            gpu: gpus
                .iter()
                .map(|(l, m)| Gpu {
                    label: l.to_string(),
                    memory_gb: *m,
                })
                .collect(),
            kind: kind.into(),
            connection: None,
        }
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
        let shape = Shape::of(&spec(&["nvidia", "cuda", "nvidia"], 12, 32, &[], "VM"));
        assert_eq!(shape.labels, ["cuda", "nvidia"]);
        let mut r = Requirements::for_user("u");
        r.tags = vec!["nvidia".into()];
        assert!(Criteria::of(&r).matches(&shape));
        r.tags.push("rocm".into());
        assert!(!Criteria::of(&r).matches(&shape));
        r.tags.pop();
        r.exclude_tags = vec!["cuda".into()];
        assert!(!Criteria::of(&r).matches(&shape));
        r.exclude_tags.clear();
        r.kind = Some("vm".into());
        assert!(
            !Criteria::of(&r).matches(&shape),
            "type is compared exactly"
        );
        r.kind = Some("VM".into());
        r.min_cpu_count = Some(12);
        r.min_memory_gb = Some(32);
        assert!(Criteria::of(&r).matches(&shape));
        r.min_memory_gb = Some(33);
        assert!(!Criteria::of(&r).matches(&shape));
    }

    #[test]
    fn gpu_label_is_a_case_insensitive_substring_and_count_applies_to_both() {
        let shape = Shape::of(&spec(
            &[],
            8,
            16,
            &[
                ("NVIDIA GeForce RTX 2080", 8),
                ("NVIDIA GeForce RTX 2080", 8),
                ("Tesla T4", 16),
            ],
            "",
        ));
        assert!(Criteria::of(&gpu_req(Some("rtx 2080"), 8, 2)).matches(&shape));
        assert!(!Criteria::of(&gpu_req(Some("rtx 2080"), 8, 3)).matches(&shape));
        assert!(!Criteria::of(&gpu_req(Some("rtx 2080"), 9, 1)).matches(&shape));
        assert!(Criteria::of(&gpu_req(None, 8, 3)).matches(&shape));
        assert!(Criteria::of(&gpu_req(None, 16, 1)).matches(&shape));
        assert!(!Criteria::of(&gpu_req(None, 16, 2)).matches(&shape));
    }

    #[test]
    fn fit_orders_gpu_memory_then_count_then_cpu_then_memory() {
        let small = Shape::of(&spec(&[], 64, 256, &[("a", 8)], ""));
        let big = Shape::of(&spec(&[], 4, 8, &[("a", 24)], ""));
        let none = Shape::of(&spec(&[], 64, 512, &[], ""));
        let c = Criteria::of(&gpu_req(None, 8, 1));
        assert!(c.fit(&small) < c.fit(&big));
        let cpu_only = Criteria::of(&Requirements::for_user("u"));
        assert!(
            cpu_only.fit(&none) < cpu_only.fit(&small),
            "a CPU job avoids GPU machines"
        );
        assert_eq!(c.fit(&small), [0, 0, 64, 256]);
    }
}
