//! The coordinators' answers, step by step: what each error means for the
//! transaction (retry, look the coordinator up again, abortable, fatal).

use super::{Lane, Pid, TxnManager};
use crate::cluster::NodeId;
use crate::group::member::Coordinator;
use crate::protocol::messages::{
    AddPartitionsToTxnResponse, FindCoordinatorResponse, TxnOffsetCommitResponse,
};
use crate::protocol::{ApiKey, ErrorCode};
use crate::time::Timestamp;
use crate::txn::{TxnError, TxnInFlight, TxnResponse};

impl TxnManager {
    fn retry_later(&mut self, now: Timestamp) {
        self.failures = self.failures.saturating_add(1);
        let d = self.backoff.delay(self.failures, &mut self.rng);
        self.retry_at = Some(now + d);
    }

    fn succeeded(&mut self) {
        self.failures = 0;
        self.retry_at = None;
    }

    /// The coordinator moved or is not ready: find it again, then retry.
    fn lost_coordinator(&mut self, now: Timestamp, group: bool) {
        if group {
            self.group_coordinator = None;
        } else {
            self.coordinator = None;
        }
        self.retry_later(now);
    }

    /// An answer, or `None` when its connection was lost.
    pub fn on_response(
        &mut self,
        now: Timestamp,
        in_flight: TxnInFlight,
        response: Option<TxnResponse>,
    ) {
        self.in_flight = false;
        let lane = in_flight.lane;
        let Some(response) = response else {
            // The request may have been handled: an add counts as done
            // for the end (EndTxn is sent; an abort of nothing is then
            // forgiven), and the step is retried against a fresh lookup.
            if matches!(lane, Lane::AddPartitions(_) | Lane::AddOffsets)
                || (self.v2 && lane == Lane::OffsetCommit)
            {
                self.coordinator_involved = true;
            }
            if matches!(lane, Lane::OffsetCommit) && self.abort_on_offset_doubt {
                self.offsets.pop_front();
                self.set_abortable(TxnError::Broker {
                    api: ApiKey::TxnOffsetCommit,
                    error: ErrorCode::NetworkException,
                });
            }
            let group = matches!(lane, Lane::OffsetCommit | Lane::Find { group: true });
            self.lost_coordinator(now, group);
            self.maybe_finish_locally(now);
            return;
        };
        match (lane, response) {
            (Lane::Find { group }, TxnResponse::FindCoordinator(r)) => {
                self.on_find(now, group, &r);
            }
            (Lane::Init, TxnResponse::InitProducerId(r)) => {
                let error = ErrorCode::from_code(r.error_code);
                self.on_init(now, error, r.producer_id, r.producer_epoch);
            }
            (Lane::AddPartitions(asked), TxnResponse::AddPartitionsToTxn(r)) => {
                self.on_add_partitions(now, &asked, &r);
            }
            (Lane::AddOffsets, TxnResponse::AddOffsetsToTxn(r)) => {
                self.on_add_offsets(now, ErrorCode::from_code(r.error_code));
            }
            (Lane::OffsetCommit, TxnResponse::TxnOffsetCommit(r)) => {
                self.on_offset_commit(now, &r);
            }
            (Lane::End { commit }, TxnResponse::EndTxn(r)) => {
                let bumped = (r.producer_id, r.producer_epoch);
                self.on_end(now, commit, ErrorCode::from_code(r.error_code), bumped);
            }
            (lane, r) => {
                tracing::error!(?lane, response = ?r, "transaction answer of the wrong kind");
                self.retry_later(now);
            }
        }
        self.maybe_finish_locally(now);
    }

    fn on_find(&mut self, now: Timestamp, group: bool, r: &FindCoordinatorResponse) {
        let key = if group {
            self.offsets.front().map(|j| j.group.group_id.clone())
        } else {
            Some(self.transactional_id.clone())
        };
        let Some(key) = key else {
            return; // the offsets were dropped by an abort meanwhile
        };
        // v4+ answers per key; earlier versions at the top level.
        let (code, node, host, port) = match r.coordinators.iter().find(|c| c.key == key) {
            Some(c) => (c.error_code, c.node_id, c.host.as_str(), c.port),
            None => (r.error_code, r.node_id, r.host.as_str(), r.port),
        };
        let error = ErrorCode::from_code(code);
        match (error, u16::try_from(port).ok()) {
            (ErrorCode::None, Some(port)) if node >= 0 && !host.is_empty() => {
                tracing::debug!(node, host, port, group, "coordinator found");
                let c = Coordinator {
                    node: NodeId(node),
                    host: host.to_owned(),
                    port,
                };
                if group {
                    self.group_coordinator = Some((key, c));
                } else {
                    self.coordinator = Some(c);
                }
                self.succeeded();
            }
            (ErrorCode::TransactionalIdAuthorizationFailed, _) => {
                self.fail_fatal(TxnError::Broker {
                    api: ApiKey::FindCoordinator,
                    error,
                });
            }
            (ErrorCode::GroupAuthorizationFailed, _) if group => {
                self.offsets.pop_front();
                self.make_abortable(ApiKey::FindCoordinator, error);
            }
            _ => self.retry_later(now),
        }
    }

    fn on_init(&mut self, now: Timestamp, error: ErrorCode, id: i64, epoch: i16) {
        match error {
            ErrorCode::None if id >= 0 && epoch >= 0 => {
                tracing::debug!(id, epoch, "transactional producer id");
                self.pid = Pid::Ready { id, epoch };
                self.new_producer_id = Some((id, epoch));
                self.succeeded();
                if self.ending.as_ref().is_some_and(|e| e.recovering) {
                    // The coordinator had lost the producer or moved its
                    // id on (KIP-360); the producer goes on under the new
                    // epoch, the transaction aborted.
                    if let Some(e) = &mut self.ending {
                        e.recovering = false;
                    }
                    self.finish_end(now, false, None);
                }
                self.decide_version();
                // Which transaction version this producer speaks, for
                // logs and for tests against real peers.
                tracing::debug!(transactions_v2 = self.v2, "transaction version");
            }
            ErrorCode::NotCoordinator | ErrorCode::CoordinatorNotAvailable => {
                self.lost_coordinator(now, false);
            }
            ErrorCode::CoordinatorLoadInProgress | ErrorCode::ConcurrentTransactions => {
                self.retry_later(now);
            }
            ErrorCode::ProducerFenced | ErrorCode::InvalidProducerEpoch => {
                self.fail_fatal(TxnError::Fenced(error));
            }
            e if e.is_retriable() => self.retry_later(now),
            e => self.fail_fatal(TxnError::Broker {
                api: ApiKey::InitProducerId,
                error: e,
            }),
        }
    }

    /// Shared by AddPartitionsToTxn, AddOffsetsToTxn and EndTxn: `Some`
    /// when the error is not one this step handles itself.
    fn common_error(&mut self, now: Timestamp, api: ApiKey, error: ErrorCode) -> Option<ErrorCode> {
        match error {
            ErrorCode::NotCoordinator | ErrorCode::CoordinatorNotAvailable => {
                self.lost_coordinator(now, false);
                None
            }
            ErrorCode::CoordinatorLoadInProgress | ErrorCode::ConcurrentTransactions => {
                self.retry_later(now);
                None
            }
            ErrorCode::ProducerFenced | ErrorCode::InvalidProducerEpoch => {
                self.fail_fatal(TxnError::Fenced(error));
                None
            }
            ErrorCode::TransactionalIdAuthorizationFailed | ErrorCode::InvalidTxnState => {
                self.fail_fatal(TxnError::Broker { api, error });
                None
            }
            e => Some(e),
        }
    }

    fn on_add_partitions(
        &mut self,
        now: Timestamp,
        asked: &[(String, i32)],
        r: &AddPartitionsToTxnResponse,
    ) {
        let mut worst: Option<ErrorCode> = None;
        let mut done = Vec::new();
        for t in &r.results_by_topic_v3_and_below {
            for p in &t.results_by_partition {
                let key = (t.name.clone(), p.partition_index);
                if !asked.contains(&key) {
                    continue;
                }
                match ErrorCode::from_code(p.partition_error_code) {
                    ErrorCode::None => done.push(key),
                    // Not attempted because of another partition's error.
                    ErrorCode::OperationNotAttempted => {}
                    e => {
                        // The first real error decides for the request.
                        worst.get_or_insert(e);
                    }
                }
            }
        }
        if !done.is_empty() {
            self.coordinator_involved = true;
        }
        for key in done {
            self.to_add.remove(&key);
            self.added.insert(key.clone());
            self.newly_added.push(key);
        }
        let Some(error) = worst else {
            self.succeeded();
            return;
        };
        let api = ApiKey::AddPartitionsToTxn;
        let Some(error) = self.common_error(now, api, error) else {
            return;
        };
        match error {
            // The topic may be being created, or metadata is behind.
            ErrorCode::UnknownTopicOrPartition => self.retry_later(now),
            e if e.is_retriable() => self.retry_later(now),
            e => {
                self.to_add.clear();
                self.make_abortable(api, e);
            }
        }
    }

    fn on_add_offsets(&mut self, now: Timestamp, error: ErrorCode) {
        if error.is_ok() {
            self.coordinator_involved = true;
            if let Some(job) = self.offsets.front_mut() {
                job.added = true;
            }
            self.succeeded();
            return;
        }
        let api = ApiKey::AddOffsetsToTxn;
        let Some(error) = self.common_error(now, api, error) else {
            return;
        };
        if error.is_retriable() {
            self.retry_later(now);
        } else {
            self.offsets.pop_front();
            self.make_abortable(api, error);
        }
    }

    fn on_offset_commit(&mut self, now: Timestamp, r: &TxnOffsetCommitResponse) {
        let worst = r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .map(|p| ErrorCode::from_code(p.error_code))
            .find(|e| !e.is_ok());
        let api = ApiKey::TxnOffsetCommit;
        let doubtful = matches!(
            worst,
            Some(
                ErrorCode::NotCoordinator
                    | ErrorCode::CoordinatorNotAvailable
                    | ErrorCode::RequestTimedOut
                    | ErrorCode::CoordinatorLoadInProgress
                    | ErrorCode::ConcurrentTransactions
            )
        );
        if doubtful && self.abort_on_offset_doubt {
            if let Some(e) = worst {
                // Abort rather than retry; the coordinator is looked up
                // afresh for the next transaction's offsets all the same.
                if matches!(
                    e,
                    ErrorCode::NotCoordinator | ErrorCode::CoordinatorNotAvailable
                ) {
                    self.group_coordinator = None;
                }
                self.offsets.pop_front();
                self.make_abortable(api, e);
            }
            return;
        }
        match worst {
            None => {
                self.offsets.pop_front();
                self.succeeded();
            }
            Some(
                ErrorCode::NotCoordinator
                | ErrorCode::CoordinatorNotAvailable
                | ErrorCode::RequestTimedOut,
            ) => self.lost_coordinator(now, true),
            Some(
                ErrorCode::CoordinatorLoadInProgress
                | ErrorCode::UnknownTopicOrPartition
                | ErrorCode::ConcurrentTransactions,
            ) => self.retry_later(now),
            Some(
                e @ (ErrorCode::ProducerFenced
                | ErrorCode::InvalidProducerEpoch
                | ErrorCode::TransactionalIdAuthorizationFailed),
            ) => {
                if e == ErrorCode::TransactionalIdAuthorizationFailed {
                    self.fail_fatal(TxnError::Broker { api, error: e });
                } else {
                    self.fail_fatal(TxnError::Fenced(e));
                }
            }
            // The member is out of its generation (KIP-447), the group
            // is rebalancing, or the group is not authorized: these
            // offsets must not commit.
            Some(e) => {
                self.offsets.pop_front();
                self.make_abortable(api, e);
            }
        }
    }

    /// `bumped`: the producer id and epoch the answer carries (EndTxn
    /// v5; `-1` below).
    fn on_end(&mut self, now: Timestamp, commit: bool, error: ErrorCode, bumped: (i64, i16)) {
        if error.is_ok() {
            self.succeeded();
            if !self.v2 {
                self.finish_end(now, commit, None);
            } else if bumped.0 >= 0 && bumped.1 >= 0 {
                self.finish_end(now, commit, Some(bumped));
            } else {
                // A v5 answer without the bumped epoch: the producer
                // cannot go on under the old one, which the coordinator
                // has retired.
                tracing::error!(
                    ?bumped,
                    "EndTxn v5 answered without a producer id and epoch"
                );
                self.fail_fatal(TxnError::Broker {
                    api: ApiKey::EndTxn,
                    error: ErrorCode::UnknownServerError,
                });
            }
            return;
        }
        // An abort answered UNKNOWN_PRODUCER_ID or
        // INVALID_PRODUCER_ID_MAPPING (KIP-360: the coordinator lost the
        // producer's state, or the id moved on): re-initialize with the
        // current id and epoch, which the coordinator refuses with
        // PRODUCER_FENCED if another producer took over meanwhile.
        // INVALID_PRODUCER_EPOCH is not among them, unlike franz-go's
        // KIP-588 recovery: Kafka answers it only for a fenced epoch
        // (PRODUCER_FENCED as EndTxn below v2 says it), a re-init naming
        // that epoch is refused too (after a timeout abort Kafka keeps no
        // last epoch), and a broker that does not check (noida-db) would
        // accept it and fence the newer instance. Java's producer treats
        // it as fenced as well.
        let recoverable = matches!(
            error,
            ErrorCode::UnknownProducerId | ErrorCode::InvalidProducerIdMapping
        );
        if !commit && recoverable {
            tracing::info!(%error, "abort refused; re-initializing the producer id (KIP-360)");
            if let Some(e) = &mut self.ending {
                e.recovering = true;
            }
            self.succeeded();
            return;
        }
        let api = ApiKey::EndTxn;
        let Some(error) = self.common_error(now, api, error) else {
            return;
        };
        if error.is_retriable() {
            self.retry_later(now);
        } else {
            // The coordinator refused the end outright: only an abort may
            // follow (an abort refused this way is fatal).
            if commit {
                if let Some(e) = &mut self.ending {
                    e.commit = false;
                    e.cause = Some(TxnError::Broker { api, error });
                }
                self.fail_unsent = true;
                self.abortable
                    .get_or_insert(TxnError::Broker { api, error });
                self.retry_later(now);
            } else {
                self.fail_fatal(TxnError::Broker { api, error });
            }
        }
    }
}
