//! Consumer-group members in a scenario: who joins which group when, with
//! which balancers, commit habits and timeouts; when they widen their
//! subscription and when they leave. Swarm mode draws them from the seed
//! ([`draw_group`]) next to the producers, and the world's faults (client
//! stalls and crashes, coordinator moves, injected group errors) hit them
//! like any client; the group checkers in
//! [`invariants::group`](crate::invariants::group) judge what they did.

use std::sync::Arc;
use std::time::Duration;

use sansa_core::client::ConfigBuilder;
use sansa_core::group::balancer::{
    CooperativeStickyBalancer, RangeBalancer, RoundRobinBalancer, StickyBalancer,
};
use sansa_core::group::config::SharedBalancer;
use sansa_core::group::{GroupConfig, GroupProtocol};

use crate::rng::SimRng;
use crate::world::{ClientIdx, Work, World};

/// A balancer a member offers, by name (the real ones hold no state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BalancerKind {
    /// `cooperative-sticky` (KIP-429).
    CooperativeSticky,
    /// `range` (eager).
    Range,
    /// `sticky` (eager).
    Sticky,
    /// `roundrobin` (eager).
    RoundRobin,
}

impl BalancerKind {
    fn shared(self) -> SharedBalancer {
        match self {
            BalancerKind::CooperativeSticky => Arc::new(CooperativeStickyBalancer),
            BalancerKind::Range => Arc::new(RangeBalancer),
            BalancerKind::Sticky => Arc::new(StickyBalancer),
            BalancerKind::RoundRobin => Arc::new(RoundRobinBalancer),
        }
    }
}

/// One member of a consumer group.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupMemberSpec {
    /// The group.
    pub group: String,
    /// The group protocol it speaks (a whole group speaks one). With
    /// [`GroupProtocol::Consumer`] the coordinator assigns and the
    /// balancers are not used; the scenario turns the simulated
    /// cluster's KIP-848 coordinator on.
    pub protocol: GroupProtocol,
    /// A static member's instance id (kept across restarts).
    pub instance_id: Option<String>,
    /// The balancers it offers, most preferred first.
    pub balancers: Vec<BalancerKind>,
    /// Session timeout.
    pub session_timeout: Duration,
    /// Heartbeat interval.
    pub heartbeat_interval: Duration,
    /// Rebalance timeout.
    pub rebalance_timeout: Duration,
    /// Auto-commit interval, `None` for none.
    pub auto_commit: Option<Duration>,
    /// Commit what was polled of revoked partitions before giving them up.
    pub commit_on_revoke: bool,
    /// Commit everything polled after each poll, by hand.
    pub commit_after_poll: bool,
    /// The topics it subscribes to when it joins.
    pub topics: Vec<String>,
    /// When it joins.
    pub join_at: Duration,
    /// When it widens its subscription, and with what.
    pub more_topics: Option<(Duration, Vec<String>)>,
    /// When it closes (commits and leaves), if it does.
    pub leave_at: Option<Duration>,
}

impl GroupMemberSpec {
    /// A dynamic cooperative member of `group` reading `topics` from the
    /// start, with short timeouts for the simulation's pace.
    pub fn new(group: &str, topics: &[&str]) -> Self {
        GroupMemberSpec {
            group: group.to_owned(),
            protocol: GroupProtocol::Classic,
            instance_id: None,
            balancers: vec![BalancerKind::CooperativeSticky],
            session_timeout: Duration::from_secs(2),
            heartbeat_interval: Duration::from_millis(500),
            rebalance_timeout: Duration::from_secs(4),
            auto_commit: Some(Duration::from_millis(500)),
            commit_on_revoke: true,
            commit_after_poll: false,
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            join_at: Duration::ZERO,
            more_topics: None,
            leave_at: None,
        }
    }

    /// Its group settings.
    pub fn group_config(&self) -> GroupConfig {
        let mut g = GroupConfig::new(self.group.clone());
        g.group_protocol = self.protocol;
        g.instance_id = self.instance_id.clone();
        g.balancers = self.balancers.iter().map(|b| b.shared()).collect();
        g.session_timeout = self.session_timeout;
        g.heartbeat_interval = self.heartbeat_interval;
        g.rebalance_timeout = self.rebalance_timeout;
        g.auto_commit = self.auto_commit;
        g.commit_on_revoke = self.commit_on_revoke;
        g
    }

    /// Adds the member to `w` with client settings `base` and queues its
    /// joining, widening and leaving.
    pub fn add_to(&self, w: &mut World, base: ConfigBuilder) -> Result<ClientIdx, String> {
        let c = w.add_client(base.consumer_group(self.group_config()))?;
        w.commit_after_poll(c, self.commit_after_poll);
        w.schedule_work(
            self.join_at,
            Work::Subscribe {
                client: c,
                topics: self.topics.clone(),
            },
        );
        if let Some((at, topics)) = &self.more_topics {
            w.schedule_work(
                *at,
                Work::Subscribe {
                    client: c,
                    topics: topics.clone(),
                },
            );
        }
        if let Some(at) = self.leave_at {
            w.schedule_work(at, Work::Close(c));
        }
        Ok(c)
    }
}

/// Draws (in about a third of the seeds, to keep CI runs short) 1 to 4
/// members of one group `g0` over `topics`, joining within
/// `window`: all cooperative, all eager, or mixed (cooperative members
/// that also offer `range` with eager-only ones, so the group runs eager
/// and the cooperative members follow it); some static; some leaving,
/// some widening their subscription; commit habits and timeouts drawn.
pub fn draw_group(r: &mut SimRng, topics: &[String], window: Duration) -> Vec<GroupMemberSpec> {
    if topics.is_empty() || !r.chance(0.35) {
        return Vec::new();
    }
    draw_members(r, topics, window)
}

/// Turns a drawn group into a KIP-848 one: every member speaks the
/// consumer protocol, and none is static (under KIP-848 a restarted
/// static member whose predecessor has not left is refused with
/// UNRELEASED_INSTANCE_ID, which stops it: the drawn crashes would end
/// such members for good).
pub fn use_consumer_protocol(members: &mut [GroupMemberSpec]) {
    for m in members {
        m.protocol = GroupProtocol::Consumer;
        m.instance_id = None;
    }
}

/// [`draw_group`] without the coin: always 1 to 4 members (for sweeps
/// of group seeds only).
pub fn draw_members(r: &mut SimRng, topics: &[String], window: Duration) -> Vec<GroupMemberSpec> {
    use BalancerKind::{CooperativeSticky as Coop, Range, RoundRobin, Sticky};
    let count = r.range(1, 4);
    let style = r.below(3);
    let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
    (0..count)
        .map(|i| {
            let balancers = match style {
                0 => {
                    if r.chance(0.5) {
                        vec![Coop]
                    } else {
                        vec![Coop, Range]
                    }
                }
                1 => r
                    .pick(&[vec![Range], vec![Sticky, Range], vec![RoundRobin, Range]])
                    .cloned()
                    .unwrap_or_else(|| vec![Range]),
                _ => r
                    .pick(&[vec![Coop, Range], vec![Range], vec![Sticky, Range]])
                    .cloned()
                    .unwrap_or_else(|| vec![Range]),
            };
            let session = Duration::from_millis(r.range(1000, 4000));
            let mut own: Vec<String> = topics.iter().filter(|_| r.chance(0.6)).cloned().collect();
            if own.is_empty() {
                own.push(r.pick(topics).cloned().unwrap_or_default());
            }
            let rest: Vec<String> = topics
                .iter()
                .filter(|t| !own.contains(t))
                .cloned()
                .collect();
            let join_at = Duration::from_millis(r.range(0, window_ms));
            let more_topics = (!rest.is_empty() && r.chance(0.4))
                .then(|| (join_at + Duration::from_millis(r.range(0, window_ms)), rest));
            GroupMemberSpec {
                group: "g0".into(),
                protocol: GroupProtocol::Classic,
                instance_id: r.chance(0.3).then(|| format!("member-{i}")),
                balancers,
                session_timeout: session,
                heartbeat_interval: session / 4,
                rebalance_timeout: Duration::from_millis(r.range(2000, 8000)),
                auto_commit: r
                    .chance(0.8)
                    .then(|| Duration::from_millis(r.range(50, 2000))),
                commit_on_revoke: r.chance(0.85),
                commit_after_poll: r.chance(0.3),
                topics: own,
                join_at,
                more_topics,
                leave_at: r
                    .chance(0.2)
                    .then(|| join_at + Duration::from_millis(r.range(0, window_ms + 1000))),
            }
        })
        .collect()
}
