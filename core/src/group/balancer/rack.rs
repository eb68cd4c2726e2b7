//! Rack matching for the sticky balancers (KIP-881).
//!
//! A consumer that fetches from a replica in its own rack (availability
//! zone) saves cross-zone traffic, so when members report racks and the
//! cluster reports the racks of each partition's replicas, the sticky
//! balancers prefer to give a partition to a member in one of its
//! replicas' racks, as long as that costs no balance.
//!
//! Rack matching applies, as in Java's `useRackAwareAssignment`, only when
//! it can change something: some member has a rack, some partition has a
//! replica in a member's rack, and not every partition has replicas in
//! every rack (then any placement is same-rack).

use std::collections::BTreeMap;

use super::index::{Index, Part};

/// Racks as small integers: which member is in which rack, which racks
/// hold each partition's replicas.
#[derive(Debug)]
pub(crate) struct RackMatch {
    /// Each member's rack (none for members that did not report one).
    member_rack: Vec<Option<u32>>,
    /// Each partition's replica racks, ascending and unique.
    partition_racks: Vec<Vec<u32>>,
    /// How many members sit in the racks of each partition: a partition
    /// few members can read locally is placed first.
    local_members: Vec<u32>,
}

impl RackMatch {
    /// The rack information of `index`, or `None` when rack matching does
    /// not apply.
    pub(crate) fn new<'a>(index: &Index<'a>) -> Option<RackMatch> {
        let mut ids: BTreeMap<&'a str, u32> = BTreeMap::new();
        let mut intern = |rack: &'a str| {
            let next = ids.len() as u32;
            *ids.entry(rack).or_insert(next)
        };
        let member_rack: Vec<Option<u32>> = index
            .members
            .iter()
            .map(|m| {
                m.member
                    .subscription
                    .rack
                    .as_deref()
                    .filter(|r| !r.is_empty())
                    .map(&mut intern)
            })
            .collect();
        if member_rack.iter().all(Option::is_none) {
            return None;
        }
        let mut members_per_rack: BTreeMap<u32, u32> = BTreeMap::new();
        for rack in member_rack.iter().flatten() {
            *members_per_rack.entry(*rack).or_default() += 1;
        }
        let partition_racks: Vec<Vec<u32>> = (0..index.partition_count() as Part)
            .map(|p| {
                let mut racks: Vec<u32> =
                    index.replica_racks(p).iter().map(|r| intern(r)).collect();
                racks.sort_unstable();
                racks.dedup();
                racks
            })
            .collect();
        let mut all_partition_racks: Vec<u32> = partition_racks.iter().flatten().copied().collect();
        all_partition_racks.sort_unstable();
        all_partition_racks.dedup();
        let overlap = members_per_rack
            .keys()
            .any(|r| all_partition_racks.binary_search(r).is_ok());
        if !overlap || partition_racks.iter().all(|r| *r == all_partition_racks) {
            return None;
        }
        let local_members = partition_racks
            .iter()
            .map(|racks| {
                racks
                    .iter()
                    .map(|r| members_per_rack.get(r).copied().unwrap_or(0))
                    .sum()
            })
            .collect();
        Some(RackMatch {
            member_rack,
            partition_racks,
            local_members,
        })
    }

    /// Whether member `m` has a rack and a replica of `p` is in it.
    pub(crate) fn is_local(&self, m: usize, p: Part) -> bool {
        self.member_rack[m]
            .is_some_and(|r| self.partition_racks[p as usize].binary_search(&r).is_ok())
    }

    /// Whether member `m` has a rack and no replica of `p` is in it (a
    /// member without a rack is never mismatched).
    pub(crate) fn is_remote(&self, m: usize, p: Part) -> bool {
        self.member_rack[m].is_some() && !self.is_local(m, p)
    }

    /// How many members can read `p` from their own rack.
    pub(crate) fn local_members(&self, p: Part) -> u32 {
        self.local_members[p as usize]
    }
}
