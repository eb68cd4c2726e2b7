//! Exactly-once pipeline members in the world: consumer-group members
//! with a transactional id in a group-transact session (read_committed)
//! that, for each record they poll, produce its transform
//! ([`eos_transform`]) to the same partition of the input topic's output
//! topic ([`eos_output_topic`]) inside a transaction, and end the
//! transaction every `txn_len` (a commit, which also commits the polled
//! offsets, KIP-447; an abort when a produce was refused or the
//! transaction must abort). The session aborts on its own when a revoke
//! meets an open transaction, and rewinds to the committed offsets.
//! [`invariants::eos`](crate::invariants::eos) judges the output.
//!
//! A member polls only inside a transaction: what it polls while the last
//! transaction ends waits for the next one.

use std::time::Duration;

use sansa_core::client::ConfigBuilder;
use sansa_core::consumer::{ConsumerConfig, IsolationLevel};
use sansa_core::producer::partitioner::ManualPartitioner;
use sansa_core::producer::Record;
use sansa_core::txn::{TxnEnd, TxnState};

use super::{ClientIdx, Ev, Fault, Running, Work, World};
use crate::group_workload::GroupMemberSpec;
use crate::invariants::eos::{eos_output_topic, eos_transform};

/// An exactly-once member's loop.
#[derive(Debug)]
pub(super) struct EosLoop {
    /// How long a transaction stays open.
    txn_len: Duration,
    /// A produce of the open transaction was refused: it must abort.
    doomed: bool,
}

impl World {
    /// Adds an exactly-once pipeline member: `member` says its group,
    /// input topics, timeouts, balancers and when it joins (its commit
    /// settings are replaced: the transaction commits); `base` is the
    /// rest of its configuration. Returns its index.
    pub fn add_eos_member(
        &mut self,
        member: &GroupMemberSpec,
        base: ConfigBuilder,
        transactional_id: String,
        txn_len: Duration,
    ) -> Result<ClientIdx, String> {
        let mut group = member.group_config();
        group.auto_commit = None;
        group.commit_on_revoke = false;
        // Transforms go to the input's partition number.
        let config = base
            .partitioner(ManualPartitioner)
            .consumer_group(group)
            .transactional_id(transactional_id)
            .group_transact_session(true)
            .consumer(ConsumerConfig {
                isolation: IsolationLevel::ReadCommitted,
                ..ConsumerConfig::default()
            });
        let c = self.add_client(config)?;
        for t in &member.topics {
            self.checker.add_eos_pipeline(t);
        }
        self.schedule_work(
            member.join_at,
            Work::Subscribe {
                client: c,
                topics: member.topics.clone(),
            },
        );
        self.eos_members.insert(
            c,
            EosLoop {
                txn_len,
                doomed: false,
            },
        );
        let at = self.now + txn_len;
        self.push(at, Ev::EosTurn(c));
        Ok(c)
    }

    /// Whether exactly-once member `c` has a transaction open or ending.
    pub(super) fn eos_busy(&self, c: ClientIdx) -> bool {
        self.eos_members.contains_key(&c)
            && self.clients.get(c).is_some_and(|sc| {
                sc.running != Running::Crashed
                    && sc
                        .client
                        .transaction_state()
                        .is_some_and(|s| s != TxnState::Ready && s != TxnState::Failed)
            })
    }

    /// Whether client `c`, if an exactly-once member, is done: its group
    /// committed everything of its topics and it has no transaction open
    /// (a processed record counts only once its offset commits with the
    /// transform).
    pub(super) fn eos_settled(&self, c: ClientIdx) -> bool {
        if !self.eos_members.contains_key(&c) {
            return true;
        }
        let Some(sc) = self.clients.get(c) else {
            return true;
        };
        let Some(group) = &sc.group else {
            return true;
        };
        !self.eos_busy(c)
            && (!self.group_member_live(c)
                || self
                    .checker
                    .eos_caught_up(&self.cluster, group, &sc.group_topics))
    }

    /// After healing: input records of the topics live exactly-once
    /// members read whose transform never committed (a pipeline whose
    /// members all crashed for good promises nothing more).
    pub(super) fn eos_missing(&self) -> Vec<crate::invariants::Violation> {
        let mut groups: Vec<&str> = self
            .eos_members
            .keys()
            .filter_map(|&c| self.clients.get(c).and_then(|sc| sc.group.as_deref()))
            .collect();
        groups.sort_unstable();
        groups.dedup();
        let topics: Vec<String> = groups
            .into_iter()
            .flat_map(|g| self.live_group_topics(g))
            .collect();
        self.checker.eos_missing(&self.cluster, &topics)
    }

    /// Exactly-once member `c` polls what it fetched (inside a
    /// transaction, begun if need be) and produces the transforms.
    /// Returns whether it polled.
    pub(super) fn eos_take_fetches(&mut self, c: ClientIdx) -> bool {
        let now = self.local_now(c);
        let Some(sc) = self.clients.get_mut(c) else {
            return false;
        };
        if !sc.fetches_ready {
            return false;
        }
        match sc.client.transaction_state() {
            Some(TxnState::InTransaction) => {}
            Some(TxnState::Ready) => {
                if sc.client.begin_transaction(now).is_err() {
                    return false;
                }
                self.trace.line(self.now, || format!("c{c} begins"));
            }
            _ => return false,
        }
        sc.fetches_ready = false;
        let checker_id = sc.checker_id;
        let wall = sc.clock.wall_ms(self.now);
        let fetched = sc.client.poll_fetches(now, None);
        let mut doomed = false;
        for f in &fetched {
            if let (Some(first), Some(last)) = (f.records.first(), f.records.last()) {
                self.trace.line(self.now, || {
                    format!(
                        "c{c} processed {}/{} {}..={}",
                        f.topic, f.partition, first.offset, last.offset
                    )
                });
            }
            let out = eos_output_topic(&f.topic);
            for r in &f.records {
                self.trace.event(
                    self.now,
                    b'G',
                    c as u64,
                    r.offset as u64,
                    f.topic.as_bytes(),
                );
                self.checker
                    .on_processed(checker_id, &f.topic, f.partition, r.offset);
                let value = eos_transform(r.offset, r.value.as_deref().unwrap_or_default());
                let record = Record::new(out.as_str(), value).with_partition(f.partition);
                if let Err(e) = self.clients[c].client.produce(now, record, wall) {
                    self.trace.line(self.now, || {
                        format!("c{c} cannot produce the transform: {e}")
                    });
                    doomed = true;
                }
            }
        }
        if let Some(l) = self.eos_members.get_mut(&c) {
            l.doomed |= doomed;
        }
        true
    }

    /// A turn of exactly-once member `c`: end the open transaction, then
    /// come back after `txn_len`.
    pub(super) fn eos_turn(&mut self, c: ClientIdx) {
        let Some(l) = self.eos_members.get_mut(&c) else {
            return;
        };
        let txn_len = l.txn_len;
        let doomed = std::mem::take(&mut l.doomed);
        let at = self.now + txn_len;
        let Some(sc) = self.clients.get_mut(c) else {
            return;
        };
        match sc.running {
            Running::Crashed => {
                if self.restart_queued(c) {
                    self.push(at, Ev::EosTurn(c));
                }
                return;
            }
            Running::Stalled(_) => {
                self.push(at, Ev::EosTurn(c));
                return;
            }
            Running::Yes => {}
        }
        let now = sc.clock.local(self.now);
        match sc.client.transaction_state() {
            Some(state @ (TxnState::InTransaction | TxnState::MustAbort)) => {
                let how = if state == TxnState::InTransaction && !doomed {
                    TxnEnd::Commit
                } else {
                    TxnEnd::Abort
                };
                let r = sc.client.end_transaction(now, how);
                self.trace
                    .line(self.now, || format!("c{c} ends: {how:?}: {r:?}"));
                self.drain();
            }
            Some(TxnState::Failed) => {
                self.trace
                    .line(self.now, || format!("c{c} failed fatally: a new member"));
                self.apply_fault(Fault::CrashClient {
                    client: c,
                    restart_after: Some(Duration::ZERO),
                });
            }
            _ => {}
        }
        self.push(at, Ev::EosTurn(c));
    }
}
