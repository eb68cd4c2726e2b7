//! KIP-848's group coordinator, the state of one group: members with
//! their member epochs, the group epoch, the target assignment the
//! coordinator computes itself (a uniform assignor), and the
//! reconciliation that moves each member toward its target.
//!
//! Rules (KIP-848, as Apache Kafka's `GroupMetadataManager` applies them),
//! and the failures they prevent:
//! - **Group epoch.** Any change of the target assignment (a member joins,
//!   leaves or expires, a subscription changes, a subscribed topic
//!   appears) bumps the group epoch.
//! - **Revoke before assign.** A member is told to drop what its target
//!   lacks at once, but is given a partition only once no other member
//!   is assigned it or still claims it in its latest heartbeat: two live
//!   members never own one partition.
//! - **Member epoch.** A member moves to the group epoch once it owns
//!   nothing beyond what it is assigned (its revocations are done);
//!   until then commits with its old epoch are accepted, so its commit on
//!   revoke lands. A heartbeat with another epoch is fenced
//!   (FENCED_MEMBER_EPOCH), except the previous epoch from a member whose
//!   answer was lost and that owns nothing it may not.
//! - **Leaving.** Epoch -1 leaves; -2 (a static member) keeps its
//!   assignment reserved until its session times out or its instance
//!   rejoins under a new member id.
//! - **Sessions.** A member not heard from within the session timeout is
//!   removed and its partitions go to the others.
//!
//! Not modelled: rebalance timeouts for revocations (a member that never
//! revokes is expelled by its session only), regex subscriptions, racks,
//! server assignor choice.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use sansa_core::protocol::ErrorCode;
use sansa_core::Timestamp;

/// A topic-partition, by topic name.
pub type TopicPartition = (String, i32);

/// The member epoch a heartbeat joins with.
pub const JOIN_EPOCH: i32 = 0;
/// The member epoch a heartbeat leaves with.
pub const LEAVE_EPOCH: i32 = -1;
/// The member epoch a static member leaves with.
pub const STATIC_LEAVE_EPOCH: i32 = -2;

/// Topics one subscription may name at most: a bound on what a hostile
/// heartbeat makes the coordinator keep (the frame bounded it already).
const MAX_SUBSCRIBED_TOPICS: usize = 10_000;

/// One KIP-848 member as the coordinator knows it.
#[derive(Debug, Clone)]
pub struct ConsumerMember {
    id: String,
    instance_id: Option<String>,
    epoch: i32,
    previous_epoch: i32,
    subscription: Vec<String>,
    /// What the coordinator gives the member now; every answer carries it.
    assigned: BTreeSet<TopicPartition>,
    /// What the member's latest heartbeat said it owns.
    owned: BTreeSet<TopicPartition>,
    session_deadline: Timestamp,
    /// Left with epoch -2: its assignment waits for its instance.
    left_static: bool,
}

impl ConsumerMember {
    /// Its member id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Its member epoch.
    pub fn epoch(&self) -> i32 {
        self.epoch
    }

    /// What the coordinator assigns it now.
    pub fn assigned(&self) -> &BTreeSet<TopicPartition> {
        &self.assigned
    }
}

/// What a ConsumerGroupHeartbeat says, with topic ids already named.
#[derive(Debug, Clone, Default)]
pub struct HeartbeatArgs {
    /// The member id (the client's own from v1; empty to get one at v0).
    pub member_id: String,
    /// The member epoch it sends.
    pub epoch: i32,
    /// A static member's instance id.
    pub instance_id: Option<String>,
    /// The subscription, when it changed (required on the join).
    pub subscription: Option<Vec<String>>,
    /// What it owns, when it changed.
    pub owned: Option<BTreeSet<TopicPartition>>,
}

/// The coordinator's answer to a heartbeat that was accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatAnswer {
    /// The member id.
    pub member_id: String,
    /// The member epoch (-1 or -2 after a leave).
    pub epoch: i32,
    /// What the member is assigned; `None` after a leave.
    pub assigned: Option<BTreeSet<TopicPartition>>,
}

/// The KIP-848 side of one group.
#[derive(Debug, Clone, Default)]
pub struct ConsumerGroup {
    epoch: i32,
    members: BTreeMap<String, ConsumerMember>,
    target: BTreeMap<String, BTreeSet<TopicPartition>>,
}

impl ConsumerGroup {
    /// The group epoch.
    pub fn epoch(&self) -> i32 {
        self.epoch
    }

    /// Whether it has members (left static members included).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// A member that has not left.
    pub fn member(&self, id: &str) -> Option<&ConsumerMember> {
        self.members.get(id).filter(|m| !m.left_static)
    }

    /// Its members, left static members included.
    pub fn members(&self) -> impl Iterator<Item = &ConsumerMember> {
        self.members.values()
    }

    /// Handles one heartbeat; `partitions` gives each existing topic's
    /// partition count, `fresh_id` makes a member id for a v0 join, and
    /// `assign_unreleased` is the sabotage that gives partitions away
    /// before their previous owner released them.
    pub fn heartbeat(
        &mut self,
        now: Timestamp,
        args: HeartbeatArgs,
        partitions: &BTreeMap<String, i32>,
        session_timeout: Duration,
        fresh_id: impl FnOnce() -> String,
        assign_unreleased: bool,
    ) -> Result<HeartbeatAnswer, ErrorCode> {
        let id = match args.epoch {
            LEAVE_EPOCH | STATIC_LEAVE_EPOCH => {
                return self.leave(now, &args, partitions, session_timeout);
            }
            JOIN_EPOCH => self.join(now, args, session_timeout, fresh_id)?,
            e if e > 0 => self.existing(now, args, session_timeout)?,
            _ => return Err(ErrorCode::InvalidRequest),
        };
        self.update_target(partitions);
        self.reconcile(&id, assign_unreleased);
        let m = self.members.get(&id).ok_or(ErrorCode::UnknownMemberId)?;
        Ok(HeartbeatAnswer {
            member_id: m.id.clone(),
            epoch: m.epoch,
            assigned: Some(m.assigned.clone()),
        })
    }

    fn leave(
        &mut self,
        now: Timestamp,
        args: &HeartbeatArgs,
        partitions: &BTreeMap<String, i32>,
        session_timeout: Duration,
    ) -> Result<HeartbeatAnswer, ErrorCode> {
        let m = self
            .members
            .get_mut(&args.member_id)
            .ok_or(ErrorCode::UnknownMemberId)?;
        if args.epoch == STATIC_LEAVE_EPOCH && m.instance_id.is_some() {
            // It revoked everything before leaving.
            m.left_static = true;
            m.owned.clear();
            m.session_deadline = now + session_timeout;
            tracing::debug!(member = %args.member_id, "static member left (KIP-848)");
        } else {
            self.members.remove(&args.member_id);
            tracing::debug!(member = %args.member_id, "member left (KIP-848)");
            self.update_target(partitions);
        }
        Ok(HeartbeatAnswer {
            member_id: args.member_id.clone(),
            epoch: args.epoch,
            assigned: None,
        })
    }

    /// A join (epoch 0): a new member, a fenced member rejoining with its
    /// id, or a static member's new incarnation.
    fn join(
        &mut self,
        now: Timestamp,
        args: HeartbeatArgs,
        session_timeout: Duration,
        fresh_id: impl FnOnce() -> String,
    ) -> Result<String, ErrorCode> {
        let Some(mut subscription) = args.subscription else {
            // Apache Kafka refuses a join without a subscription.
            return Err(ErrorCode::InvalidRequest);
        };
        subscription.truncate(MAX_SUBSCRIBED_TOPICS);
        let id = if args.member_id.is_empty() {
            fresh_id()
        } else {
            args.member_id
        };
        if let Some(inst) = &args.instance_id {
            let holder = self
                .members
                .values()
                .find(|m| m.instance_id.as_ref() == Some(inst) && m.id != id)
                .map(|m| (m.id.clone(), m.left_static));
            match holder {
                Some((old, true)) => {
                    self.members.remove(&old);
                }
                Some((_, false)) => return Err(ErrorCode::UnreleasedInstanceId),
                None => {}
            }
        }
        // A rejoining member lost what it had: it starts from nothing.
        self.members.insert(
            id.clone(),
            ConsumerMember {
                id: id.clone(),
                instance_id: args.instance_id,
                epoch: JOIN_EPOCH,
                previous_epoch: JOIN_EPOCH,
                subscription,
                assigned: BTreeSet::new(),
                owned: args.owned.unwrap_or_default(),
                session_deadline: now + session_timeout,
                left_static: false,
            },
        );
        Ok(id)
    }

    /// A heartbeat of a member in the group: fencing, then what changed.
    fn existing(
        &mut self,
        now: Timestamp,
        args: HeartbeatArgs,
        session_timeout: Duration,
    ) -> Result<String, ErrorCode> {
        let m = self
            .members
            .get_mut(&args.member_id)
            .filter(|m| !m.left_static)
            .ok_or(ErrorCode::UnknownMemberId)?;
        let lost_answer = args.epoch == m.previous_epoch
            && args
                .owned
                .as_ref()
                .is_some_and(|o| o.is_subset(&m.assigned));
        if args.epoch != m.epoch && !lost_answer {
            return Err(ErrorCode::FencedMemberEpoch);
        }
        if let Some(mut s) = args.subscription {
            s.truncate(MAX_SUBSCRIBED_TOPICS);
            m.subscription = s;
        }
        if let Some(o) = args.owned {
            m.owned = o;
        }
        m.session_deadline = now + session_timeout;
        Ok(args.member_id)
    }

    /// Recomputes the target assignment; a change bumps the group epoch.
    fn update_target(&mut self, partitions: &BTreeMap<String, i32>) {
        let target = uniform_assignment(&self.members, &self.target, partitions);
        if target != self.target {
            self.epoch += 1;
            self.target = target;
            tracing::debug!(epoch = self.epoch, "new target assignment (KIP-848)");
        }
    }

    /// Moves member `id` toward its target: drops at once what the
    /// target lacks, adds what no other member holds or claims, and moves
    /// its epoch up once its revocations are done.
    fn reconcile(&mut self, id: &str, assign_unreleased: bool) {
        let desired = self.target.get(id).cloned().unwrap_or_default();
        let held_by_others: BTreeSet<TopicPartition> = if assign_unreleased {
            BTreeSet::new()
        } else {
            self.members
                .values()
                .filter(|m| m.id != id)
                .flat_map(|m| m.assigned.iter().chain(&m.owned))
                .cloned()
                .collect()
        };
        let group_epoch = self.epoch;
        let Some(m) = self.members.get_mut(id) else {
            return;
        };
        m.assigned.retain(|tp| desired.contains(tp));
        if m.owned.is_subset(&m.assigned) && m.epoch < group_epoch {
            m.previous_epoch = m.epoch;
            m.epoch = group_epoch;
        }
        for tp in desired {
            if !held_by_others.contains(&tp) {
                m.assigned.insert(tp);
            }
        }
    }

    /// Commit validation (OffsetCommit v9+): the member must be in the
    /// group at the epoch it names. A commit naming no member and no
    /// epoch is an admin's or a simple consumer's.
    pub fn check_commit(&self, member_id: &str, epoch: i32) -> Result<(), ErrorCode> {
        if member_id.is_empty() && epoch < 0 {
            return Ok(());
        }
        let m = self.member(member_id).ok_or(ErrorCode::UnknownMemberId)?;
        if epoch != m.epoch {
            return Err(ErrorCode::StaleMemberEpoch);
        }
        Ok(())
    }

    /// The earliest session deadline.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.members.values().map(|m| m.session_deadline).min()
    }

    /// Removes members whose session ran out by `now`.
    pub fn expire(&mut self, now: Timestamp, partitions: &BTreeMap<String, i32>) {
        let before = self.members.len();
        self.members.retain(|id, m| {
            let alive = m.session_deadline > now;
            if !alive {
                tracing::debug!(member = %id, "session expired (KIP-848)");
            }
            alive
        });
        if self.members.len() != before {
            self.update_target(partitions);
        }
    }

    /// The coordinator moved: sessions start again from `now`.
    pub fn restart_sessions(&mut self, now: Timestamp, session_timeout: Duration) {
        for m in self.members.values_mut() {
            m.session_deadline = now + session_timeout;
        }
    }
}

/// The uniform assignor: every partition of a subscribed topic goes to
/// one of its subscribers, to the one with the fewest so far, its
/// current target owner first among equals (so that little moves).
fn uniform_assignment(
    members: &BTreeMap<String, ConsumerMember>,
    current: &BTreeMap<String, BTreeSet<TopicPartition>>,
    partitions: &BTreeMap<String, i32>,
) -> BTreeMap<String, BTreeSet<TopicPartition>> {
    let mut target: BTreeMap<String, BTreeSet<TopicPartition>> = members
        .keys()
        .map(|id| (id.clone(), BTreeSet::new()))
        .collect();
    let owner_now: BTreeMap<&TopicPartition, &str> = current
        .iter()
        .flat_map(|(id, tps)| tps.iter().map(move |tp| (tp, id.as_str())))
        .collect();
    for (topic, &count) in partitions {
        let subscribers: Vec<&str> = members
            .values()
            .filter(|m| m.subscription.iter().any(|t| t == topic))
            .map(|m| m.id.as_str())
            .collect();
        if subscribers.is_empty() {
            continue;
        }
        for p in 0..count.max(0) {
            let tp = (topic.clone(), p);
            let load = |id: &str| target.get(id).map_or(0, BTreeSet::len);
            let fewest = subscribers.iter().map(|id| load(id)).min().unwrap_or(0);
            let sticky = owner_now
                .get(&tp)
                .copied()
                .filter(|id| subscribers.contains(id) && load(id) == fewest);
            let Some(to) =
                sticky.or_else(|| subscribers.iter().copied().find(|id| load(id) == fewest))
            else {
                continue;
            };
            if let Some(set) = target.get_mut(to) {
                set.insert(tp);
            }
        }
    }
    target
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
#[path = "consumer_group_tests.rs"]
mod tests;
