//! Consumer-group settings, with franz-go's defaults (see `semantics.md`):
//! cooperative-sticky, 45 s session, 60 s rebalance, 3 s heartbeat,
//! auto-commit every 5 s, commit on revoke; the classic protocol unless
//! the application opts into KIP-848's (`group_protocol`).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::balancer::{Balancer, CooperativeStickyBalancer};

/// A balancer shared between the configuration and the member.
pub type SharedBalancer = Arc<dyn Balancer + Send + Sync>;

/// Which group protocol the member speaks (Java's `group.protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GroupProtocol {
    /// JoinGroup / SyncGroup / Heartbeat / LeaveGroup, balanced by the
    /// group leader on the client (every broker since Kafka 0.9).
    #[default]
    Classic,
    /// KIP-848's ConsumerGroupHeartbeat, balanced by the coordinator
    /// (Kafka 4.0+). A coordinator that does not speak it gets the
    /// classic protocol instead. The member id is drawn from the client's
    /// seed (KIP-1082): members of one group need different seeds.
    Consumer,
}

/// How a member of a consumer group behaves.
#[derive(Clone)]
pub struct GroupConfig {
    /// The group to join (`group.id`).
    pub group_id: String,
    /// The group protocol (`group.protocol`). Default
    /// [`GroupProtocol::Classic`]. With [`GroupProtocol::Consumer`] the
    /// coordinator balances the group and decides the heartbeat interval
    /// and session timeout; `balancers`, `session_timeout` and
    /// `heartbeat_interval` then serve only a fallback to the classic
    /// protocol (and the first heartbeat interval and the client's own
    /// session watchdog).
    pub group_protocol: GroupProtocol,
    /// The server-side assignor the coordinator should use with
    /// [`GroupProtocol::Consumer`] (`group.remote.assignor`: `uniform` or
    /// `range` on Apache Kafka). Default none: the broker's default.
    pub server_assignor: Option<String>,
    /// A static member's `group.instance.id` (KIP-345). A static member
    /// keeps its assignment across restarts within the session timeout and
    /// sends no LeaveGroup on close. Default none (a dynamic member).
    pub instance_id: Option<String>,
    /// The balancers offered in JoinGroup, most preferred first. Default
    /// `[cooperative-sticky]`, which eager-only members cannot share a
    /// group with: add `range` or `sticky` to join such groups.
    pub balancers: Vec<SharedBalancer>,
    /// How long the coordinator waits for a heartbeat before it expels the
    /// member. Default 45 s.
    pub session_timeout: Duration,
    /// How long the coordinator waits for every member to rejoin during a
    /// rebalance. Default 60 s.
    pub rebalance_timeout: Duration,
    /// How often the member heartbeats. Default 3 s.
    pub heartbeat_interval: Duration,
    /// Commit what was polled before the latest poll this often; `None`
    /// disables auto-commit. Default every 5 s.
    pub auto_commit: Option<Duration>,
    /// Commit everything polled of the partitions being revoked before the
    /// revoke completes (franz-go's default revoke). Default on.
    pub commit_on_revoke: bool,
    /// Hold each assignment, revoke or loss until the application calls
    /// [`Client::allow_rebalance`](crate::client::Client::allow_rebalance):
    /// the member sends no JoinGroup and completes no revoke before then,
    /// so the application can finish with its partitions (the callback
    /// that blocks the rebalance, as an event). Default off: each step
    /// completes at once.
    pub require_rebalance_ack: bool,
    /// After a poll that returned records, hold any rebalance (no
    /// JoinGroup, no revoke completes) until the application calls
    /// [`Client::allow_rebalance`](crate::client::Client::allow_rebalance)
    /// (franz-go's `BlockRebalanceOnPoll`): what it polled cannot move to
    /// another member while it processes. It must allow within the
    /// rebalance timeout, or the coordinator expels it. Default off.
    pub block_rebalance_on_poll: bool,
    /// Leave the group when the application has not polled for this long
    /// while it owns partitions (Java's `max.poll.interval.ms`, which
    /// franz-go lacks and its users ask for, franz-go #708): a stuck
    /// application gives its partitions up instead of holding them with
    /// heartbeats. The partitions count as lost (nothing is committed for
    /// an application that stopped); the member rejoins at its next poll.
    /// Default none (franz-go); Java's default is 5 min.
    pub max_poll_interval: Option<Duration>,
    /// The member's rack (`client.rack`), for rack-aware balancers.
    pub rack: Option<String>,
}

impl GroupConfig {
    /// The defaults for `group_id`.
    pub fn new(group_id: impl Into<String>) -> Self {
        GroupConfig {
            group_id: group_id.into(),
            group_protocol: GroupProtocol::Classic,
            server_assignor: None,
            instance_id: None,
            balancers: vec![Arc::new(CooperativeStickyBalancer)],
            session_timeout: Duration::from_secs(45),
            rebalance_timeout: Duration::from_secs(60),
            heartbeat_interval: Duration::from_secs(3),
            auto_commit: Some(Duration::from_secs(5)),
            commit_on_revoke: true,
            require_rebalance_ack: false,
            block_rebalance_on_poll: false,
            max_poll_interval: None,
            rack: None,
        }
    }

    /// Why these settings cannot work, if they cannot.
    pub fn problem(&self) -> Option<(&'static str, &'static str)> {
        let ms_fits = |d: Duration| d.as_millis() <= i32::MAX as u128 && !d.is_zero();
        if self.group_id.is_empty() {
            return Some(("group_id", "non-empty"));
        }
        if self.balancers.is_empty() {
            return Some(("balancers", "at least one"));
        }
        if self.server_assignor.as_deref() == Some("") {
            return Some(("server_assignor", "non-empty when set"));
        }
        if self.instance_id.as_deref() == Some("") {
            return Some(("instance_id", "non-empty when set"));
        }
        if !ms_fits(self.session_timeout) || !ms_fits(self.rebalance_timeout) {
            return Some((
                "session_timeout/rebalance_timeout",
                "between 1 ms and i32::MAX ms",
            ));
        }
        if self.heartbeat_interval.is_zero() || self.heartbeat_interval >= self.session_timeout {
            return Some(("heartbeat_interval", "non-zero and below session_timeout"));
        }
        if self.auto_commit.is_some_and(|d| d.is_zero()) {
            return Some(("auto_commit", "non-zero when set"));
        }
        None
    }
}

impl fmt::Debug for GroupConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.balancers.iter().map(|b| b.protocol_name()).collect();
        f.debug_struct("GroupConfig")
            .field("group_id", &self.group_id)
            .field("group_protocol", &self.group_protocol)
            .field("server_assignor", &self.server_assignor)
            .field("instance_id", &self.instance_id)
            .field("balancers", &names)
            .field("session_timeout", &self.session_timeout)
            .field("rebalance_timeout", &self.rebalance_timeout)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("auto_commit", &self.auto_commit)
            .field("commit_on_revoke", &self.commit_on_revoke)
            .field("require_rebalance_ack", &self.require_rebalance_ack)
            .field("block_rebalance_on_poll", &self.block_rebalance_on_poll)
            .field("max_poll_interval", &self.max_poll_interval)
            .field("rack", &self.rack)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_franz_go_s() {
        let c = GroupConfig::new("g");
        assert_eq!(c.session_timeout, Duration::from_secs(45));
        assert_eq!(c.rebalance_timeout, Duration::from_secs(60));
        assert_eq!(c.heartbeat_interval, Duration::from_secs(3));
        assert_eq!(c.auto_commit, Some(Duration::from_secs(5)));
        assert!(c.commit_on_revoke);
        assert_eq!(c.group_protocol, GroupProtocol::Classic, "Java's default");
        assert_eq!(c.server_assignor, None);
        let names: Vec<&str> = c.balancers.iter().map(|b| b.protocol_name()).collect();
        assert_eq!(names, ["cooperative-sticky"]);
        assert_eq!(c.problem(), None);
    }

    #[test]
    fn contradictions_are_named() {
        let mut c = GroupConfig::new("");
        assert_eq!(c.problem().map(|p| p.0), Some("group_id"));
        c.group_id = "g".into();
        c.heartbeat_interval = c.session_timeout;
        assert_eq!(c.problem().map(|p| p.0), Some("heartbeat_interval"));
        c.heartbeat_interval = Duration::from_secs(1);
        c.balancers.clear();
        assert_eq!(c.problem().map(|p| p.0), Some("balancers"));
    }
}
