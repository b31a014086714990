//! Where ids come from: an injected source for allocation ids, and stable derived inventory ids.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Supplies allocation ids. The server uses random v4 ids; tests use [`SeededIds`].
pub trait IdSource: Send {
    /// The next id; must not repeat an id this source gave before.
    fn next_id(&mut self) -> Uuid;
}

/// A deterministic id source: a seeded splitmix64 stream shaped as v4 UUIDs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeededIds {
    state: u64,
}

impl SeededIds {
    /// A source whose ids depend only on `seed`.
    pub fn new(seed: u64) -> Self {
        SeededIds { state: seed }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

impl IdSource for SeededIds {
    fn next_id(&mut self) -> Uuid {
        let hi = self.next_u64();
        let lo = self.next_u64();
        uuid::Builder::from_random_bytes(((u128::from(hi) << 64) | u128::from(lo)).to_be_bytes())
            .into_uuid()
    }
}

/// The namespace under which inventory ids are derived (a fixed, arbitrary v4 id).
const INVENTORY_NAMESPACE: Uuid = Uuid::from_u128(0x6b1f_3a52_9c0e_4d7a_8f21_5e4b_c3d2_a190);

/// The inventory id for the `occurrence`-th resource of one shape that `agent_id` registers.
///
/// Derived (UUID v5) rather than drawn, so the same agent registering the same list gets
/// the same ids even across a restart without a journal.
///
/// Exactly `Uuid::new_v5(INVENTORY_NAMESPACE, agent_id ‖ shape_key ‖ occurrence)` (a test holds
/// it to that), hashed with the `sha1` crate, which uses the CPU's SHA instructions where
/// there are some: a registration derives one per resource.
pub fn derive_inventory_id(agent_id: Uuid, shape_key: &str, occurrence: u32) -> Uuid {
    use sha1::Digest;
    let digest = sha1::Sha1::new()
        .chain_update(INVENTORY_NAMESPACE.as_bytes())
        .chain_update(agent_id.as_bytes())
        .chain_update(shape_key.as_bytes())
        .chain_update(occurrence.to_be_bytes())
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_sha1_bytes(bytes).into_uuid()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inventory_ids_are_the_v5_ids_of_agent_shape_and_occurrence() {
        let agent = Uuid::from_u128(0x1234_5678_9abc_def0_0fed_cba9_8765_4321);
        for (key, n) in [("", 0), ("[[\"a\"],\"VM\",4,16,[]]", 3), ("é", u32::MAX)] {
            let mut name = agent.as_bytes().to_vec();
            name.extend_from_slice(key.as_bytes());
            name.extend_from_slice(&n.to_be_bytes());
            let want = Uuid::new_v5(&INVENTORY_NAMESPACE, &name);
            assert_eq!(derive_inventory_id(agent, key, n), want, "{key:?} {n}");
        }
    }

    #[test]
    fn seeded_ids_repeat_per_seed_and_differ_between_seeds() {
        let a: Vec<Uuid> = {
            let mut s = SeededIds::new(7);
            (0..3).map(|_| s.next_id()).collect()
        };
        let mut again = SeededIds::new(7);
        assert_eq!(a, (0..3).map(|_| again.next_id()).collect::<Vec<_>>());
        assert_ne!(a[0], a[1]);
        assert_ne!(a[0], SeededIds::new(8).next_id());
        assert_eq!(a[0].get_version_num(), 4);
    }

    #[test]
    fn derived_inventory_ids_are_stable_and_distinct() {
        let agent = Uuid::from_u128(1);
        let id = derive_inventory_id(agent, "shape", 0);
        assert_eq!(id, derive_inventory_id(agent, "shape", 0));
        assert_ne!(id, derive_inventory_id(agent, "shape", 1));
        assert_ne!(id, derive_inventory_id(Uuid::from_u128(2), "shape", 0));
    }
}
