//! The manager's next request: which step is due, where it goes, and the
//! request itself.

use super::{Lane, Pid, TxnManager};
use crate::protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use crate::protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use crate::protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, EndTxnRequest, FindCoordinatorRequest,
    InitProducerIdRequest, TxnOffsetCommitRequest,
};
use crate::protocol::{ApiKey, ErrorCode};
use crate::time::Timestamp;
use crate::txn::wire::{KEY_TYPE_GROUP, KEY_TYPE_TRANSACTION, MAX_VERSIONS, TXN_V2_VERSION};
use crate::txn::{TxnError, TxnInFlight, TxnOut, TxnRequest, TxnTarget};

/// The highest version of `api` to ask for, and the lowest acceptable:
/// with transactions v2, TxnOffsetCommit and EndTxn must be v5 (a lower
/// version would mean v1 inside a v2 transaction); with v1 they must stay
/// below it (KIP-890: v5 inside a v1 transaction is refused).
fn versions_for(api: ApiKey, v2: bool) -> (i16, i16) {
    let cap = MAX_VERSIONS
        .iter()
        .find(|(k, _)| *k == api)
        .map_or(0, |&(_, v)| v);
    match api {
        ApiKey::TxnOffsetCommit | ApiKey::EndTxn if v2 => (TXN_V2_VERSION, TXN_V2_VERSION),
        _ => (cap, 0),
    }
}

impl TxnManager {
    fn pid_wanted(&self) -> bool {
        self.started && matches!(self.pid, Pid::Wanted { .. })
    }

    fn end_due(&self) -> bool {
        self.end_ready()
            && self
                .ending
                .as_ref()
                .is_some_and(|e| !e.commit || e.group_check != Some(false))
    }

    /// EndTxn could go but for a group check the commit waits for.
    pub(super) fn end_ready(&self) -> bool {
        self.ending.as_ref().is_some_and(|e| {
            e.settled
                && !e.recovering
                && self.coordinator_involved
                && (!e.commit || (self.to_add.is_empty() && self.offsets.is_empty()))
        })
    }

    /// The next step, if one is due now (and no request is out).
    fn next_lane(&self, now: Timestamp) -> Option<Lane> {
        if self.fatal.is_some() || self.in_flight || self.retry_at.is_some_and(|t| t > now) {
            return None;
        }
        let ending_recovery = self.ending.as_ref().is_some_and(|e| e.recovering);
        if self.pid_wanted() || ending_recovery {
            return Some(Lane::Init);
        }
        // Everything below needs the producer id.
        self.producer_id()?;
        if !self.to_add.is_empty() {
            return Some(Lane::AddPartitions(Vec::new()));
        }
        if let Some(job) = self.offsets.front() {
            // With transactions v2, TxnOffsetCommit v5 adds the group.
            return Some(if job.added || self.v2 {
                Lane::OffsetCommit
            } else {
                Lane::AddOffsets
            });
        }
        if self.end_due() {
            let commit = self.ending.as_ref().is_some_and(|e| e.commit);
            return Some(Lane::End { commit });
        }
        None
    }

    /// Where the next request goes, if one is due now.
    pub fn next_target(&self, now: Timestamp) -> Option<TxnTarget> {
        let lane = self.next_lane(now)?;
        if lane == Lane::OffsetCommit {
            let group = &self.offsets.front()?.group.group_id;
            return Some(match &self.group_coordinator {
                Some((g, c)) if g == group => TxnTarget::GroupCoordinator(c.clone()),
                _ => TxnTarget::AnyBroker,
            });
        }
        Some(match &self.coordinator {
            Some(c) => TxnTarget::TxnCoordinator(c.clone()),
            None => TxnTarget::AnyBroker,
        })
    }

    /// Builds the next request; `negotiate(api, cap)` gives the version
    /// the target broker speaks up to `cap`, `None` if it does not.
    pub fn build_request(
        &mut self,
        now: Timestamp,
        negotiate: &mut dyn FnMut(ApiKey, i16) -> Option<i16>,
    ) -> Option<TxnOut> {
        let lane = self.next_lane(now)?;
        let (lane, find_group) = match lane {
            Lane::OffsetCommit => {
                let group = &self.offsets.front()?.group.group_id;
                let known = self
                    .group_coordinator
                    .as_ref()
                    .is_some_and(|(g, _)| g == group);
                if known {
                    (Lane::OffsetCommit, None)
                } else {
                    (Lane::Find { group: true }, Some(group.clone()))
                }
            }
            _ if self.coordinator.is_none() => (Lane::Find { group: false }, None),
            other => (other, None),
        };
        let api = match lane {
            Lane::Find { .. } => ApiKey::FindCoordinator,
            Lane::Init => ApiKey::InitProducerId,
            Lane::AddPartitions(_) => ApiKey::AddPartitionsToTxn,
            Lane::AddOffsets => ApiKey::AddOffsetsToTxn,
            Lane::OffsetCommit => ApiKey::TxnOffsetCommit,
            Lane::End { .. } => ApiKey::EndTxn,
        };
        let (cap, v2_min) = versions_for(api, self.v2);
        let version = negotiate(api, cap).filter(|&v| v >= v2_min);
        let Some(version) = version else {
            // Also a coordinator that offered transactions v2 and no
            // longer speaks its versions (a downgrade mid-life).
            self.fail_fatal(TxnError::Broker {
                api,
                error: ErrorCode::UnsupportedVersion,
            });
            return None;
        };
        let id = self.transactional_id.clone();
        let (pid, epoch) = self.producer_id().unwrap_or((-1, -1));
        let (request, lane) = match lane {
            Lane::Find { group } => {
                let (key, key_type) = match find_group {
                    Some(g) => (g, KEY_TYPE_GROUP),
                    None => (id, KEY_TYPE_TRANSACTION),
                };
                if version < 1 && key_type == KEY_TYPE_TRANSACTION {
                    // FindCoordinator v0 only knows groups.
                    self.fail_fatal(TxnError::Broker {
                        api,
                        error: ErrorCode::UnsupportedVersion,
                    });
                    return None;
                }
                let mut req = FindCoordinatorRequest {
                    key_type,
                    ..Default::default()
                };
                if version >= 4 {
                    req.coordinator_keys = vec![key];
                } else {
                    req.key = key;
                }
                (TxnRequest::FindCoordinator(req), Lane::Find { group })
            }
            Lane::Init => {
                let bump = match self.pid {
                    Pid::Wanted { bump } => bump,
                    // Recovering after an abort answered
                    // UNKNOWN_PRODUCER_ID / INVALID_PRODUCER_ID_MAPPING:
                    // name the current id and epoch (KIP-360).
                    Pid::Ready { id, epoch } => Some((id, epoch)),
                };
                if bump.is_some() && version < 3 {
                    // Without KIP-360 the only way on is a new producer,
                    // which would fence a live newer instance.
                    self.fail_fatal(TxnError::Broker {
                        api,
                        error: ErrorCode::UnsupportedVersion,
                    });
                    return None;
                }
                let req = InitProducerIdRequest {
                    transactional_id: Some(id),
                    transaction_timeout_ms: self.timeout_ms,
                    producer_id: bump.map_or(-1, |b| b.0),
                    producer_epoch: bump.map_or(-1, |b| b.1),
                    ..Default::default()
                };
                (TxnRequest::InitProducerId(req), Lane::Init)
            }
            Lane::AddPartitions(_) => {
                let asked: Vec<(String, i32)> = self.to_add.iter().cloned().collect();
                let mut topics: Vec<AddPartitionsToTxnTopic> = Vec::new();
                for (t, p) in &asked {
                    match topics.last_mut() {
                        Some(last) if last.name == *t => last.partitions.push(*p),
                        _ => topics.push(AddPartitionsToTxnTopic {
                            name: t.clone(),
                            partitions: vec![*p],
                            ..Default::default()
                        }),
                    }
                }
                let req = AddPartitionsToTxnRequest {
                    v3_and_below_transactional_id: id,
                    v3_and_below_producer_id: pid,
                    v3_and_below_producer_epoch: epoch,
                    v3_and_below_topics: topics,
                    ..Default::default()
                };
                (
                    TxnRequest::AddPartitionsToTxn(req),
                    Lane::AddPartitions(asked),
                )
            }
            Lane::AddOffsets => {
                let group_id = self.offsets.front()?.group.group_id.clone();
                let req = AddOffsetsToTxnRequest {
                    transactional_id: id,
                    producer_id: pid,
                    producer_epoch: epoch,
                    group_id,
                    ..Default::default()
                };
                (TxnRequest::AddOffsetsToTxn(req), Lane::AddOffsets)
            }
            Lane::OffsetCommit => {
                if self.v2 {
                    // From here the group coordinator may have added the
                    // group to the transaction: an abort must not drop
                    // this job (its answer is still to come) and needs
                    // EndTxn.
                    self.coordinator_involved = true;
                    if let Some(job) = self.offsets.front_mut() {
                        job.added = true;
                    }
                }
                let job = self.offsets.front()?;
                if job.group.instance_id.is_some() && version < 3 {
                    self.fail_fatal(TxnError::Broker {
                        api,
                        error: ErrorCode::UnsupportedVersion,
                    });
                    return None;
                }
                let mut topics: Vec<TxnOffsetCommitRequestTopic> = Vec::new();
                for ((t, p), at) in &job.offsets {
                    let part = TxnOffsetCommitRequestPartition {
                        partition_index: *p,
                        committed_offset: at.offset,
                        committed_leader_epoch: at.leader_epoch,
                        committed_metadata: Some(String::new()),
                        ..Default::default()
                    };
                    match topics.last_mut() {
                        Some(last) if last.name == *t => last.partitions.push(part),
                        _ => topics.push(TxnOffsetCommitRequestTopic {
                            name: t.clone(),
                            partitions: vec![part],
                            ..Default::default()
                        }),
                    }
                }
                let req = TxnOffsetCommitRequest {
                    transactional_id: id,
                    group_id: job.group.group_id.clone(),
                    producer_id: pid,
                    producer_epoch: epoch,
                    generation_id: job.group.generation_id,
                    member_id: job.group.member_id.clone(),
                    group_instance_id: job.group.instance_id.clone(),
                    topics,
                    ..Default::default()
                };
                (TxnRequest::TxnOffsetCommit(req), Lane::OffsetCommit)
            }
            Lane::End { commit } => {
                if let Some(e) = &mut self.ending {
                    e.commit_sent |= commit;
                }
                let req = EndTxnRequest {
                    transactional_id: id,
                    producer_id: pid,
                    producer_epoch: epoch,
                    committed: commit,
                    ..Default::default()
                };
                (TxnRequest::EndTxn(req), Lane::End { commit })
            }
        };
        self.in_flight = true;
        Some(TxnOut {
            request,
            version,
            in_flight: TxnInFlight { lane },
        })
    }
}
