//! The transaction coordinator and the partition side of transactions,
//! request by request through the real codecs, on a clock the test moves.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use proptest::prelude::*;
use sansa_core::protocol::header::{decode_response, encode_request};
use sansa_core::protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use sansa_core::protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use sansa_core::protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsTopic,
};
use sansa_core::protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use sansa_core::protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use sansa_core::protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use sansa_core::protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, EndTxnRequest, FetchRequest, FetchResponse,
    FindCoordinatorRequest, InitProducerIdRequest, ListOffsetsRequest, OffsetFetchRequest,
    ProduceRequest, TxnOffsetCommitRequest,
};
use sansa_core::protocol::{ErrorCode, Request};
use sansa_core::record::{
    BatchBuilder, BatchOptions, BatchStamp, Batches, ControlRecord, ControlRecordKind,
    ProducerStamp, NO_HEADERS,
};

use super::*;

const TXN: &str = "tx";
const GROUP: &str = "g";
const TIMEOUT_MS: i32 = 60_000;

/// Clients' view of a cluster: one connection per broker and a clock.
struct Net {
    cluster: Cluster,
    now: Timestamp,
    corr: i32,
    conns: BTreeMap<NodeId, ServerConnId>,
}

impl Net {
    fn new(brokers: i32) -> Self {
        Self::with(ClusterConfig::new(brokers))
    }

    fn with(mut config: ClusterConfig) -> Self {
        config.transactions.state_partitions = 5;
        config.groups.offsets_partitions = 5;
        let mut cluster = Cluster::new(config, SimRng::new(5));
        let rf = config_brokers(&cluster).min(3);
        cluster.create_topic("t", 2, rf).expect("topic");
        Net {
            cluster,
            now: Timestamp::ZERO,
            corr: 0,
            conns: BTreeMap::new(),
        }
    }

    /// Sends one request to `node` and returns its answer, `None` if the
    /// connection was closed instead.
    fn try_call<R: Request>(
        &mut self,
        node: NodeId,
        version: i16,
        body: &R,
    ) -> Option<R::Response> {
        let conn = match self.conns.get(&node) {
            Some(&c) if self.cluster.is_connected(c) => c,
            _ => {
                let c = self.cluster.accept(node).expect("broker up");
                self.conns.insert(node, c);
                c
            }
        };
        self.corr += 1;
        let mut b = BytesMut::new();
        b.put_i32(0);
        // What cannot be encoded at this version cannot be sent.
        encode_request(&mut b, version, self.corr, Some("cli"), body).ok()?;
        let size = (b.len() - 4) as i32;
        b[..4].copy_from_slice(&size.to_be_bytes());
        self.cluster.handle_bytes(self.now, conn, &b);
        let mut answer = None;
        while let Some(o) = self.cluster.poll_output() {
            if let ClusterOutput::Send { conn: c, data } = o {
                if c == conn {
                    let (h, body) =
                        decode_response::<R>(data.slice(4..), version).expect("decodes");
                    assert_eq!(h.correlation_id, self.corr);
                    answer = Some(body);
                }
            }
        }
        answer
    }

    fn call<R: Request>(&mut self, node: NodeId, version: i16, body: &R) -> R::Response {
        self.try_call(node, version, body).expect("answered")
    }

    fn any_up(&self) -> NodeId {
        self.cluster
            .broker_ids()
            .find(|&n| self.cluster.is_up(n))
            .expect("a broker is up")
    }

    fn advance(&mut self, d: Duration) {
        self.now = self.now.saturating_add(d);
        self.cluster.handle_timeout(self.now);
        while self.cluster.poll_output().is_some() {}
    }

    /// FindCoordinator for a transactional id (key type 1).
    fn txn_coordinator(&mut self, id: &str) -> NodeId {
        let up = self.any_up();
        let r = self.call(
            up,
            3,
            &FindCoordinatorRequest {
                key: id.into(),
                key_type: 1,
                ..Default::default()
            },
        );
        assert_eq!(err(r.error_code), ErrorCode::None);
        assert_eq!(Some(r.node_id), self.cluster.transaction_coordinator_of(id));
        r.node_id
    }

    fn group_coordinator(&mut self, group: &str) -> NodeId {
        let up = self.any_up();
        let r = self.call(
            up,
            3,
            &FindCoordinatorRequest {
                key: group.into(),
                key_type: 0,
                ..Default::default()
            },
        );
        assert_eq!(err(r.error_code), ErrorCode::None);
        r.node_id
    }

    fn init(&mut self, node: NodeId, v: i16, expected: (i64, i16)) -> (ErrorCode, i64, i16) {
        let r = self.call(
            node,
            v,
            &InitProducerIdRequest {
                transactional_id: Some(TXN.into()),
                transaction_timeout_ms: TIMEOUT_MS,
                producer_id: expected.0,
                producer_epoch: expected.1,
                ..Default::default()
            },
        );
        (err(r.error_code), r.producer_id, r.producer_epoch)
    }

    fn add_partitions(
        &mut self,
        node: NodeId,
        v: i16,
        pid: i64,
        epoch: i16,
        parts: &[i32],
    ) -> Vec<ErrorCode> {
        let r = self.call(
            node,
            v,
            &AddPartitionsToTxnRequest {
                v3_and_below_transactional_id: TXN.into(),
                v3_and_below_producer_id: pid,
                v3_and_below_producer_epoch: epoch,
                v3_and_below_topics: vec![AddPartitionsToTxnTopic {
                    name: "t".into(),
                    partitions: parts.to_vec(),
                    ..Default::default()
                }],
                ..Default::default()
            },
        );
        r.results_by_topic_v3_and_below
            .iter()
            .flat_map(|t| {
                t.results_by_partition
                    .iter()
                    .map(|p| err(p.partition_error_code))
            })
            .collect()
    }

    fn end(&mut self, node: NodeId, v: i16, pid: i64, epoch: i16, commit: bool) -> ErrorCode {
        let r = self.call(
            node,
            v,
            &EndTxnRequest {
                transactional_id: TXN.into(),
                producer_id: pid,
                producer_epoch: epoch,
                committed: commit,
                ..Default::default()
            },
        );
        err(r.error_code)
    }

    /// Produces a transactional batch of `values` to `t`/`partition`.
    fn produce(
        &mut self,
        partition: i32,
        pid: i64,
        epoch: i16,
        seq: i32,
        values: &[&str],
    ) -> (ErrorCode, i64) {
        let leader = self.leader(partition);
        let r = self.call(
            leader,
            9,
            &ProduceRequest {
                transactional_id: Some(TXN.into()),
                acks: -1,
                timeout_ms: 1000,
                topic_data: vec![TopicProduceData {
                    name: "t".into(),
                    partition_data: vec![PartitionProduceData {
                        index: partition,
                        records: Some(txn_batch(pid, epoch, seq, values)),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            },
        );
        let p = &r.responses[0].partition_responses[0];
        (err(p.error_code), p.base_offset)
    }

    fn leader(&self, partition: i32) -> NodeId {
        self.cluster
            .partition("t", partition)
            .and_then(Partition::leader)
            .expect("leader")
    }

    /// A fetch of `t`/`partition` from offset 0 at `isolation`.
    fn fetch(&mut self, partition: i32, isolation: i8) -> FetchResponse {
        let leader = self.leader(partition);
        self.call(
            leader,
            11,
            &FetchRequest {
                max_wait_ms: 0,
                max_bytes: 1 << 20,
                isolation_level: isolation,
                topics: vec![FetchTopic {
                    topic: "t".into(),
                    partitions: vec![FetchPartition {
                        partition,
                        fetch_offset: 0,
                        partition_max_bytes: 1 << 20,
                        current_leader_epoch: -1,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            },
        )
    }

    fn latest(&mut self, partition: i32, isolation: i8) -> i64 {
        let leader = self.leader(partition);
        let r = self.call(
            leader,
            5,
            &ListOffsetsRequest {
                replica_id: -1,
                isolation_level: isolation,
                topics: vec![ListOffsetsTopic {
                    name: "t".into(),
                    partitions: vec![ListOffsetsPartition {
                        partition_index: partition,
                        timestamp: -1,
                        current_leader_epoch: -1,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            },
        );
        r.topics[0].partitions[0].offset
    }

    fn lso(&self, partition: i32) -> i64 {
        self.cluster
            .partition("t", partition)
            .expect("p")
            .log()
            .last_stable_offset()
    }

    /// Offsets of `t`/0 and `t`/1 committed for `GROUP`, with their
    /// errors, at OffsetFetch v7 with `require_stable`.
    fn committed(&mut self, require_stable: bool) -> Vec<(i64, ErrorCode)> {
        let node = self.group_coordinator(GROUP);
        let r = self.call(
            node,
            7,
            &OffsetFetchRequest {
                group_id: GROUP.into(),
                topics: Some(vec![OffsetFetchRequestTopic {
                    name: "t".into(),
                    partition_indexes: vec![0, 1],
                    ..Default::default()
                }]),
                require_stable,
                ..Default::default()
            },
        );
        assert_eq!(err(r.error_code), ErrorCode::None);
        r.topics[0]
            .partitions
            .iter()
            .map(|p| (p.committed_offset, err(p.error_code)))
            .collect()
    }
}

fn config_brokers(c: &Cluster) -> i16 {
    c.config().brokers.len() as i16
}

fn err(code: i16) -> ErrorCode {
    ErrorCode::from_code(code)
}

fn txn_batch(pid: i64, epoch: i16, seq: i32, values: &[&str]) -> Bytes {
    let mut b = BatchBuilder::new(BatchOptions {
        transactional: true,
        ..Default::default()
    });
    for (i, v) in values.iter().enumerate() {
        b.append(i as i64, None, Some(v.as_bytes()), NO_HEADERS)
            .expect("fits");
    }
    b.seal(&BatchStamp {
        producer: ProducerStamp {
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
        },
        ..Default::default()
    })
    .expect("seals")
    .into_bytes()
}

/// Data values and markers of a fetched partition, in order.
fn contents(resp: &FetchResponse) -> Vec<String> {
    let Some(records) = resp.responses[0].partitions[0].records.clone() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for b in Batches::new(records) {
        let b = b.expect("batch");
        for r in b.records().expect("records") {
            let r = r.expect("record");
            if b.is_control() {
                let c = ControlRecord::from_record(&r).expect("marker");
                out.push(format!("{:?}@{}", c.kind, c.coordinator_epoch));
            } else {
                out.push(
                    String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned(),
                );
            }
        }
    }
    out
}

fn aborted(resp: &FetchResponse) -> Option<Vec<(i64, i64)>> {
    resp.responses[0].partitions[0]
        .aborted_transactions
        .as_ref()
        .map(|a| a.iter().map(|a| (a.producer_id, a.first_offset)).collect())
}

/// A producer that found its coordinator and has an id: (node, pid, epoch).
fn start(net: &mut Net) -> (NodeId, i64, i16) {
    let node = net.txn_coordinator(TXN);
    let (e, pid, epoch) = net.init(node, 4, (-1, -1));
    assert_eq!(e, ErrorCode::None);
    assert_eq!(epoch, 0);
    (node, pid, epoch)
}

fn txn_offset_commit(net: &mut Net, pid: i64, epoch: i16, offset: i64) -> ErrorCode {
    let node = net.group_coordinator(GROUP);
    let r = net.call(
        node,
        3,
        &TxnOffsetCommitRequest {
            transactional_id: TXN.into(),
            group_id: GROUP.into(),
            producer_id: pid,
            producer_epoch: epoch,
            generation_id: -1,
            member_id: String::new(),
            group_instance_id: None,
            topics: vec![TxnOffsetCommitRequestTopic {
                name: "t".into(),
                partitions: vec![TxnOffsetCommitRequestPartition {
                    partition_index: 0,
                    committed_offset: offset,
                    committed_leader_epoch: -1,
                    committed_metadata: Some(String::new()),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        },
    );
    err(r.topics[0].partitions[0].error_code)
}

/// TxnOffsetCommit v3 for `t`/1 as member `member` of `generation`.
fn txn_offset_commit_as(
    net: &mut Net,
    pid: i64,
    epoch: i16,
    generation: i32,
    member: &str,
) -> ErrorCode {
    let node = net.group_coordinator(GROUP);
    let r = net.call(
        node,
        3,
        &TxnOffsetCommitRequest {
            transactional_id: TXN.into(),
            group_id: GROUP.into(),
            producer_id: pid,
            producer_epoch: epoch,
            generation_id: generation,
            member_id: member.into(),
            group_instance_id: None,
            topics: vec![TxnOffsetCommitRequestTopic {
                name: "t".into(),
                partitions: vec![TxnOffsetCommitRequestPartition {
                    partition_index: 1,
                    committed_offset: 1,
                    committed_leader_epoch: -1,
                    committed_metadata: None,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        },
    );
    err(r.topics[0].partitions[0].error_code)
}

#[test]
fn txn_offset_commit_checks_the_transaction_and_the_member() {
    let mut net = Net::new(3);
    let (node, pid, epoch) = start(&mut net);
    // The group is not in the transaction yet.
    assert_eq!(
        txn_offset_commit(&mut net, pid, epoch, 1),
        ErrorCode::InvalidTxnState
    );
    assert_eq!(add_offsets(&mut net, node, pid, epoch), ErrorCode::None);
    assert_eq!(
        txn_offset_commit(&mut net, pid + 1, epoch, 1),
        ErrorCode::InvalidProducerIdMapping
    );
    // KIP-447 against the (new, empty) group: an unknown member and a
    // wrong generation are refused; no member at all is accepted.
    assert_eq!(
        txn_offset_commit_as(&mut net, pid, epoch, 0, "m"),
        ErrorCode::UnknownMemberId
    );
    assert_eq!(
        txn_offset_commit_as(&mut net, pid, epoch, 4, ""),
        ErrorCode::IllegalGeneration
    );
    assert_eq!(
        txn_offset_commit_as(&mut net, pid, epoch, -1, ""),
        ErrorCode::None
    );
    assert_eq!(
        net.committed(true),
        vec![(-1, ErrorCode::None), (-1, ErrorCode::UnstableOffsetCommit)]
    );
    // A fence drops the pending offset with the aborted transaction, and
    // the fenced producer's commit is refused.
    assert_eq!(
        net.init(node, 4, (-1, -1)).0,
        ErrorCode::ConcurrentTransactions
    );
    assert_eq!(
        net.committed(true),
        vec![(-1, ErrorCode::None), (-1, ErrorCode::None)]
    );
    assert_eq!(
        txn_offset_commit(&mut net, pid, epoch, 1),
        ErrorCode::InvalidProducerEpoch
    );
}

fn add_offsets(net: &mut Net, node: NodeId, pid: i64, epoch: i16) -> ErrorCode {
    let r = net.call(
        node,
        3,
        &AddOffsetsToTxnRequest {
            transactional_id: TXN.into(),
            producer_id: pid,
            producer_epoch: epoch,
            group_id: GROUP.into(),
            ..Default::default()
        },
    );
    err(r.error_code)
}

#[test]
fn a_committed_transaction_becomes_visible_with_its_offsets_at_the_commit_marker() {
    let mut net = Net::new(3);
    let (node, pid, epoch) = start(&mut net);
    assert_eq!(
        net.cluster
            .topic(TRANSACTION_STATE_TOPIC)
            .map(|t| t.partitions().len()),
        Some(5)
    );
    // Producing before adding the partition is refused.
    assert_eq!(
        net.produce(0, pid, epoch, 0, &["early"]).0,
        ErrorCode::InvalidTxnState
    );
    assert_eq!(
        net.add_partitions(node, 3, pid, epoch, &[0, 1]),
        vec![ErrorCode::None, ErrorCode::None]
    );
    assert_eq!(
        net.produce(0, pid, epoch, 0, &["a", "b"]),
        (ErrorCode::None, 0)
    );
    assert_eq!(net.produce(1, pid, epoch, 0, &["c"]), (ErrorCode::None, 0));
    // Open: read_committed stops at the transaction's first offset.
    assert_eq!(net.lso(0), 0);
    assert_eq!(net.latest(0, 1), 0);
    assert_eq!(net.latest(0, 0), 2);
    let rc = net.fetch(0, 1);
    assert_eq!(rc.responses[0].partitions[0].last_stable_offset, 0);
    assert!(contents(&rc).is_empty());
    assert_eq!(contents(&net.fetch(0, 0)), vec!["a", "b"]);
    // Offsets in the transaction are pending until the commit.
    assert_eq!(add_offsets(&mut net, node, pid, epoch), ErrorCode::None);
    assert_eq!(txn_offset_commit(&mut net, pid, epoch, 2), ErrorCode::None);
    assert_eq!(
        net.committed(true)[0],
        (-1, ErrorCode::UnstableOffsetCommit)
    );
    assert_eq!(net.committed(false)[0], (-1, ErrorCode::None));
    assert_eq!(net.end(node, 3, pid, epoch, true), ErrorCode::None);
    // Committed: markers at both partitions, the LSO is the HW, the
    // offsets are committed.
    let coordinator_epoch = net
        .cluster
        .partition(TRANSACTION_STATE_TOPIC, offsets_partition_for(TXN, 5))
        .expect("state partition")
        .leader_epoch();
    let rc = net.fetch(0, 1);
    assert_eq!(
        contents(&rc),
        vec![
            "a".to_owned(),
            "b".into(),
            format!("{:?}@{coordinator_epoch}", ControlRecordKind::Commit)
        ]
    );
    assert_eq!(aborted(&rc), Some(vec![]));
    assert_eq!(net.lso(0), 3);
    assert_eq!(net.latest(0, 1), 3);
    assert_eq!(net.lso(1), 2);
    assert_eq!(net.committed(true)[0], (2, ErrorCode::None));
    assert_eq!(
        net.cluster.transaction(TXN).map(Transaction::state),
        Some(TxnState::CompleteCommit)
    );
    // A retried EndTxn is answered as done; the other outcome is refused.
    assert_eq!(net.end(node, 3, pid, epoch, true), ErrorCode::None);
    assert_eq!(
        net.end(node, 3, pid, epoch, false),
        ErrorCode::InvalidTxnState
    );
    // The next transaction continues the sequences.
    assert_eq!(
        net.add_partitions(node, 3, pid, epoch, &[0]),
        vec![ErrorCode::None]
    );
    assert_eq!(net.produce(0, pid, epoch, 2, &["d"]), (ErrorCode::None, 3));
    assert_eq!(net.lso(0), 3);
}

#[test]
fn an_aborted_transaction_is_listed_to_read_committed_and_its_offsets_dropped() {
    let mut net = Net::new(1);
    let (node, pid, epoch) = start(&mut net);
    assert_eq!(
        net.add_partitions(node, 1, pid, epoch, &[0]),
        vec![ErrorCode::None]
    );
    assert_eq!(
        net.produce(0, pid, epoch, 0, &["x", "y"]),
        (ErrorCode::None, 0)
    );
    assert_eq!(add_offsets(&mut net, node, pid, epoch), ErrorCode::None);
    assert_eq!(txn_offset_commit(&mut net, pid, epoch, 9), ErrorCode::None);
    assert_eq!(net.end(node, 1, pid, epoch, false), ErrorCode::None);
    let rc = net.fetch(0, 1);
    assert_eq!(aborted(&rc), Some(vec![(pid, 0)]));
    assert_eq!(contents(&rc).len(), 3, "data and the ABORT marker");
    assert_eq!(contents(&rc)[2], "Abort@0");
    // read_uncommitted has no aborted list.
    assert_eq!(aborted(&net.fetch(0, 0)), None);
    assert_eq!(net.lso(0), 3);
    assert_eq!(net.committed(true)[0], (-1, ErrorCode::None));
    // A committed transaction after it: the aborted one is still listed
    // from offset 0, and the index is what the log says after a restart.
    assert_eq!(
        net.add_partitions(node, 1, pid, epoch, &[0]),
        vec![ErrorCode::None]
    );
    assert_eq!(net.produce(0, pid, epoch, 2, &["z"]), (ErrorCode::None, 3));
    assert_eq!(net.end(node, 1, pid, epoch, true), ErrorCode::None);
    let before = net
        .cluster
        .partition("t", 0)
        .expect("p")
        .log()
        .txn_index()
        .clone();
    assert!(net.cluster.crash(1));
    assert!(net.cluster.restart(1));
    let after = net
        .cluster
        .partition("t", 0)
        .expect("p")
        .log()
        .txn_index()
        .clone();
    assert_eq!(before, after);
    assert_eq!(aborted(&net.fetch(0, 1)), Some(vec![(pid, 0)]));
}

#[test]
fn a_new_init_producer_id_aborts_the_open_transaction_and_fences_the_old_producer() {
    let mut net = Net::new(3);
    let (node, pid, epoch) = start(&mut net);
    assert_eq!(
        net.add_partitions(node, 3, pid, epoch, &[0]),
        vec![ErrorCode::None]
    );
    assert_eq!(
        net.produce(0, pid, epoch, 0, &["old"]),
        (ErrorCode::None, 0)
    );
    // A new producer with the same id: the open transaction is aborted
    // (markers at the bumped epoch) while it is told to retry.
    assert_eq!(
        net.init(node, 4, (-1, -1)).0,
        ErrorCode::ConcurrentTransactions
    );
    assert_eq!(aborted(&net.fetch(0, 1)), Some(vec![(pid, 0)]));
    assert_eq!(
        net.init(node, 4, (-1, -1)),
        (ErrorCode::None, pid, epoch + 2)
    );
    // The old producer is fenced everywhere.
    assert_eq!(
        net.produce(0, pid, epoch, 1, &["zombie"]).0,
        ErrorCode::InvalidProducerEpoch
    );
    assert_eq!(
        net.end(node, 3, pid, epoch, true),
        ErrorCode::ProducerFenced
    );
    assert_eq!(
        net.end(node, 1, pid, epoch, true),
        ErrorCode::InvalidProducerEpoch
    );
    assert_eq!(
        net.add_partitions(node, 2, pid, epoch, &[0]),
        vec![ErrorCode::ProducerFenced]
    );
    assert_eq!(
        net.add_partitions(node, 1, pid, epoch, &[0]),
        vec![ErrorCode::InvalidProducerEpoch]
    );
    assert_eq!(
        add_offsets(&mut net, node, pid, epoch),
        ErrorCode::ProducerFenced
    );
    // KIP-360: the old epoch is fenced; the current one bumps; a retry
    // of that bump gets the same answer.
    assert_eq!(net.init(node, 4, (pid, epoch)).0, ErrorCode::ProducerFenced);
    assert_eq!(
        net.init(node, 3, (pid, epoch)).0,
        ErrorCode::InvalidProducerEpoch
    );
    assert_eq!(
        net.init(node, 4, (pid, epoch + 2)),
        (ErrorCode::None, pid, epoch + 3)
    );
    assert_eq!(
        net.init(node, 4, (pid, epoch + 2)),
        (ErrorCode::None, pid, epoch + 3)
    );
    // Producer id mismatches and state errors.
    assert_eq!(
        net.end(node, 4, pid + 1, epoch + 3, true),
        ErrorCode::InvalidProducerIdMapping
    );
    assert_eq!(
        net.end(node, 4, pid, epoch + 3, true),
        ErrorCode::InvalidTxnState
    );
    let bad_timeout = net.call(
        node,
        4,
        &InitProducerIdRequest {
            transactional_id: Some(TXN.into()),
            transaction_timeout_ms: 0,
            producer_id: -1,
            producer_epoch: -1,
            ..Default::default()
        },
    );
    assert_eq!(
        err(bad_timeout.error_code),
        ErrorCode::InvalidTransactionTimeout
    );
}

#[test]
fn a_transaction_older_than_its_timeout_is_aborted_and_its_producer_fenced() {
    let mut net = Net::new(3);
    let (node, pid, epoch) = start(&mut net);
    assert_eq!(
        net.add_partitions(node, 3, pid, epoch, &[1]),
        vec![ErrorCode::None]
    );
    assert_eq!(
        net.produce(1, pid, epoch, 0, &["slow"]),
        (ErrorCode::None, 0)
    );
    let deadline = net
        .cluster
        .poll_timeout()
        .expect("the timeout is a deadline");
    assert_eq!(
        deadline,
        Timestamp::ZERO.saturating_add(Duration::from_millis(TIMEOUT_MS as u64))
    );
    net.advance(Duration::from_millis(TIMEOUT_MS as u64 - 1));
    assert_eq!(net.lso(1), 0, "not yet");
    net.advance(Duration::from_millis(1));
    assert_eq!(net.lso(1), 2);
    assert_eq!(aborted(&net.fetch(1, 1)), Some(vec![(pid, 0)]));
    let t = net.cluster.transaction(TXN).expect("txn");
    assert_eq!(
        (t.state(), t.producer_epoch()),
        (TxnState::CompleteAbort, epoch + 1)
    );
    assert_eq!(
        net.produce(1, pid, epoch, 1, &["late"]).0,
        ErrorCode::InvalidProducerEpoch
    );
    assert_eq!(
        net.end(node, 3, pid, epoch, true),
        ErrorCode::ProducerFenced
    );
    assert_eq!(net.cluster.poll_timeout(), None);
}

#[test]
fn concurrent_transactions_is_answered_while_markers_are_being_written() {
    let mut config = ClusterConfig::new(3);
    config.transactions.marker_delay = Duration::from_millis(50);
    let mut net = Net::with(config);
    let (node, pid, epoch) = start(&mut net);
    assert_eq!(
        net.add_partitions(node, 3, pid, epoch, &[0]),
        vec![ErrorCode::None]
    );
    assert_eq!(net.produce(0, pid, epoch, 0, &["a"]), (ErrorCode::None, 0));
    assert_eq!(net.end(node, 3, pid, epoch, true), ErrorCode::None);
    assert_eq!(net.lso(0), 0, "no marker yet");
    assert_eq!(
        net.end(node, 3, pid, epoch, true),
        ErrorCode::ConcurrentTransactions
    );
    assert_eq!(
        net.end(node, 3, pid, epoch, false),
        ErrorCode::InvalidTxnState
    );
    assert_eq!(
        net.add_partitions(node, 3, pid, epoch, &[1]),
        vec![ErrorCode::ConcurrentTransactions]
    );
    assert_eq!(
        add_offsets(&mut net, node, pid, epoch),
        ErrorCode::ConcurrentTransactions
    );
    assert_eq!(
        net.init(node, 4, (pid, epoch)).0,
        ErrorCode::ConcurrentTransactions
    );
    net.advance(Duration::from_millis(50));
    assert_eq!(net.lso(0), 2);
    assert_eq!(
        net.add_partitions(node, 3, pid, epoch, &[1]),
        vec![ErrorCode::None]
    );
}

#[test]
fn the_transaction_coordinator_moves_with_its_partition_leader() {
    let mut net = Net::new(3);
    let (old, pid, epoch) = start(&mut net);
    assert_eq!(
        net.add_partitions(old, 3, pid, epoch, &[0]),
        vec![ErrorCode::None]
    );
    assert_eq!(net.produce(0, pid, epoch, 0, &["a"]), (ErrorCode::None, 0));
    let state_partition = offsets_partition_for(TXN, 5);
    let moved = net
        .cluster
        .move_leader(TRANSACTION_STATE_TOPIC, state_partition, None)
        .expect("moved");
    assert_ne!(moved, old);
    assert_eq!(net.end(old, 3, pid, epoch, true), ErrorCode::NotCoordinator);
    assert_eq!(
        net.add_partitions(old, 3, pid, epoch, &[1]),
        vec![ErrorCode::NotCoordinator]
    );
    assert_eq!(net.init(old, 4, (-1, -1)).0, ErrorCode::NotCoordinator);
    let new = net.txn_coordinator(TXN);
    assert_eq!(new, moved);
    // The transaction survives the move; the marker carries the new
    // coordinator epoch.
    assert_eq!(net.end(new, 3, pid, epoch, true), ErrorCode::None);
    assert_eq!(contents(&net.fetch(0, 1)), vec!["a", "Commit@1"]);
    // A crash of the coordinator moves it again.
    assert!(net.cluster.crash(new));
    let third = net.txn_coordinator(TXN);
    assert!(third != new);
    assert_eq!(
        net.init(third, 4, (pid, epoch)),
        (ErrorCode::None, pid, epoch + 1)
    );
}

#[test]
fn markers_wait_for_a_partition_with_no_leader() {
    let mut net = Net::new(2);
    net.cluster
        .create_topic_with("solo", vec![vec![2]])
        .expect("solo");
    // The coordinator on broker 1, which stays up.
    assert!(net.cluster.ensure_transaction_topic());
    let state_partition = offsets_partition_for(TXN, 5);
    if net.cluster.transaction_coordinator_of(TXN) != Some(1) {
        net.cluster
            .move_leader(TRANSACTION_STATE_TOPIC, state_partition, Some(1))
            .expect("moved");
    }
    let (node, pid, epoch) = start(&mut net);
    assert_eq!(node, 1);
    let r = net.call(
        node,
        3,
        &AddPartitionsToTxnRequest {
            v3_and_below_transactional_id: TXN.into(),
            v3_and_below_producer_id: pid,
            v3_and_below_producer_epoch: epoch,
            v3_and_below_topics: vec![
                AddPartitionsToTxnTopic {
                    name: "solo".into(),
                    partitions: vec![0],
                    ..Default::default()
                },
                AddPartitionsToTxnTopic {
                    name: "missing".into(),
                    partitions: vec![0],
                    ..Default::default()
                },
            ],
            ..Default::default()
        },
    );
    let codes: Vec<ErrorCode> = r
        .results_by_topic_v3_and_below
        .iter()
        .map(|t| err(t.results_by_partition[0].partition_error_code))
        .collect();
    assert_eq!(
        codes,
        vec![
            ErrorCode::OperationNotAttempted,
            ErrorCode::UnknownTopicOrPartition
        ]
    );
    assert_eq!(
        net.add_partitions(node, 3, pid, epoch, &[0]),
        vec![ErrorCode::None]
    );
    let r = net.call(
        node,
        3,
        &AddPartitionsToTxnRequest {
            v3_and_below_transactional_id: TXN.into(),
            v3_and_below_producer_id: pid,
            v3_and_below_producer_epoch: epoch,
            v3_and_below_topics: vec![AddPartitionsToTxnTopic {
                name: "solo".into(),
                partitions: vec![0],
                ..Default::default()
            }],
            ..Default::default()
        },
    );
    assert_eq!(
        err(r.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code),
        ErrorCode::None
    );
    assert!(net.cluster.crash(2));
    assert_eq!(net.end(node, 3, pid, epoch, false), ErrorCode::None);
    let t = net.cluster.transaction(TXN).expect("txn");
    assert_eq!(t.state(), TxnState::PrepareAbort, "solo has no leader");
    net.advance(Duration::from_secs(1));
    assert_eq!(
        net.cluster.transaction(TXN).map(Transaction::state),
        Some(TxnState::PrepareAbort)
    );
    assert!(net.cluster.restart(2));
    net.advance(Duration::from_secs(1));
    assert_eq!(
        net.cluster.transaction(TXN).map(Transaction::state),
        Some(TxnState::CompleteAbort)
    );
    assert_eq!(
        net.cluster
            .partition("solo", 0)
            .expect("solo")
            .log()
            .last_stable_offset(),
        1
    );
}

// ----------------------------------------------------------------------
// Hostile input
// ----------------------------------------------------------------------

/// One transactional request with fields drawn small, so they often hit
/// real state.
#[derive(Debug, Clone)]
enum Op {
    Find(u8),
    Init(i16, i64, i16, i32),
    Add(i16, i64, i16, Vec<i32>),
    Offsets(i16, i64, i16),
    Commit(i16, i64, i16, i32, String),
    End(i16, i64, i16, bool),
    Produce(i64, i16, i32, i32, bool),
    Fetch(i32, i8),
    Time(u32),
    Move(i32),
}

fn op() -> impl Strategy<Value = Op> {
    let pid = prop_oneof![Just(1000i64), Just(1001), any::<i64>()];
    let epoch = prop_oneof![0i16..4, any::<i16>()];
    prop_oneof![
        (0u8..3).prop_map(Op::Find),
        (
            0i16..=5,
            pid.clone(),
            epoch.clone(),
            prop_oneof![Just(TIMEOUT_MS), any::<i32>()]
        )
            .prop_map(|(v, p, e, t)| Op::Init(v, p, e, t)),
        (
            0i16..=3,
            pid.clone(),
            epoch.clone(),
            proptest::collection::vec(-1i32..3, 0..4)
        )
            .prop_map(|(v, p, e, ps)| Op::Add(v, p, e, ps)),
        (0i16..=4, pid.clone(), epoch.clone()).prop_map(|(v, p, e)| Op::Offsets(v, p, e)),
        (0i16..=4, pid.clone(), epoch.clone(), -1i32..2, "[a-z]{0,3}")
            .prop_map(|(v, p, e, g, m)| Op::Commit(v, p, e, g, m)),
        (0i16..=4, pid.clone(), epoch.clone(), any::<bool>())
            .prop_map(|(v, p, e, c)| Op::End(v, p, e, c)),
        (pid, epoch, 0i32..4, -1i32..3, any::<bool>())
            .prop_map(|(p, e, s, part, t)| Op::Produce(p, e, s, part, t)),
        (-1i32..3, 0i8..2).prop_map(|(p, i)| Op::Fetch(p, i)),
        (0u32..120_000).prop_map(Op::Time),
        (0i32..5).prop_map(Op::Move),
    ]
}

impl Net {
    fn run_op(&mut self, node: NodeId, op: Op) {
        match op {
            Op::Find(k) => {
                self.try_call(
                    node,
                    3,
                    &FindCoordinatorRequest {
                        key: if k == 2 { String::new() } else { TXN.into() },
                        key_type: k as i8,
                        ..Default::default()
                    },
                );
            }
            Op::Init(v, p, e, t) => {
                self.try_call(
                    node,
                    v,
                    &InitProducerIdRequest {
                        transactional_id: Some(TXN.into()),
                        transaction_timeout_ms: t,
                        producer_id: p,
                        producer_epoch: e,
                        ..Default::default()
                    },
                );
            }
            Op::Add(v, p, e, ps) => {
                self.try_call(
                    node,
                    v,
                    &AddPartitionsToTxnRequest {
                        v3_and_below_transactional_id: TXN.into(),
                        v3_and_below_producer_id: p,
                        v3_and_below_producer_epoch: e,
                        v3_and_below_topics: vec![AddPartitionsToTxnTopic {
                            name: "t".into(),
                            partitions: ps,
                            ..Default::default()
                        }],
                        ..Default::default()
                    },
                );
            }
            Op::Offsets(v, p, e) => {
                self.try_call(
                    node,
                    v,
                    &AddOffsetsToTxnRequest {
                        transactional_id: TXN.into(),
                        producer_id: p,
                        producer_epoch: e,
                        group_id: GROUP.into(),
                        ..Default::default()
                    },
                );
            }
            Op::Commit(v, p, e, g, m) => {
                self.try_call(
                    node,
                    v,
                    &TxnOffsetCommitRequest {
                        transactional_id: TXN.into(),
                        group_id: GROUP.into(),
                        producer_id: p,
                        producer_epoch: e,
                        generation_id: g,
                        member_id: m,
                        topics: vec![TxnOffsetCommitRequestTopic {
                            name: "t".into(),
                            partitions: vec![TxnOffsetCommitRequestPartition {
                                partition_index: 0,
                                committed_offset: 1,
                                committed_leader_epoch: -1,
                                committed_metadata: None,
                                ..Default::default()
                            }],
                            ..Default::default()
                        }],
                        ..Default::default()
                    },
                );
            }
            Op::End(v, p, e, c) => {
                self.try_call(
                    node,
                    v,
                    &EndTxnRequest {
                        transactional_id: TXN.into(),
                        producer_id: p,
                        producer_epoch: e,
                        committed: c,
                        ..Default::default()
                    },
                );
            }
            Op::Produce(p, e, s, part, transactional) => {
                let records = if transactional {
                    txn_batch(p, e, s, &["v"])
                } else {
                    Bytes::from_static(b"garbage")
                };
                self.try_call(
                    node,
                    9,
                    &ProduceRequest {
                        transactional_id: Some(TXN.into()),
                        acks: -1,
                        timeout_ms: 1000,
                        topic_data: vec![TopicProduceData {
                            name: "t".into(),
                            partition_data: vec![PartitionProduceData {
                                index: part,
                                records: Some(records),
                                ..Default::default()
                            }],
                            ..Default::default()
                        }],
                        ..Default::default()
                    },
                );
            }
            Op::Fetch(part, iso) => {
                self.try_call(
                    node,
                    11,
                    &FetchRequest {
                        max_wait_ms: 0,
                        max_bytes: 1 << 20,
                        isolation_level: iso,
                        topics: vec![FetchTopic {
                            topic: "t".into(),
                            partitions: vec![FetchPartition {
                                partition: part,
                                fetch_offset: 0,
                                partition_max_bytes: 1 << 20,
                                current_leader_epoch: -1,
                                ..Default::default()
                            }],
                            ..Default::default()
                        }],
                        ..Default::default()
                    },
                );
            }
            Op::Time(ms) => self.advance(Duration::from_millis(u64::from(ms))),
            Op::Move(p) => {
                self.cluster.move_leader(TRANSACTION_STATE_TOPIC, p, None);
                self.cluster.move_leader("t", p % 2, None);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Whatever transactional requests come, at whatever versions and
    /// times: no panic, every answer encodes, the last stable offset
    /// never passes the high watermark, a transaction that is not open
    /// holds no partition open, and time settles everything.
    #[test]
    fn random_transaction_requests_never_panic_and_keep_partitions_consistent(
        ops in proptest::collection::vec((1i32..=3, op()), 1..60)
    ) {
        let mut net = Net::new(3);
        net.cluster.ensure_transaction_topic();
        net.cluster.ensure_offsets_topic();
        for (node, op) in ops {
            net.run_op(node, op);
            prop_assert_eq!(net.cluster.stats().encode_failures, 0);
            for p in net.cluster.topic("t").expect("t").partitions() {
                let log = p.log();
                prop_assert!(log.last_stable_offset() <= log.high_watermark());
            }
        }
        net.advance(Duration::from_secs(3600));
        for p in net.cluster.topic("t").expect("t").partitions() {
            let log = p.log();
            prop_assert_eq!(log.last_stable_offset(), log.high_watermark(), "a transaction stayed open");
        }
        prop_assert_eq!(net.cluster.poll_timeout(), None);
    }
}
