//! The producer's side of transactions: the gate that holds a partition's
//! batches until the transaction manager added the partition to the
//! transaction, the producer id the manager hands over, and the abort that
//! fails what was never sent. The manager itself is [`crate::txn`]; the
//! producer only answers its questions and follows its decisions.

use super::{ProduceError, Producer, ProducerId};
use crate::protocol::ErrorCode;

/// Whether a record's failure ends the transactional producer, not just
/// the transaction: a partition leader saying another instance took the
/// transactional id over, or refusing the id, or data the broker had
/// acknowledged being lost (semantics.md: with a transactional id, data
/// loss is fatal). INVALID_PRODUCER_EPOCH is not among them (KIP-588, as
/// Java's producer has it): only the transaction must abort, and the
/// coordinator's answer to that abort says whether the producer is fenced
/// (after a coordinator-side timeout it is: see [`crate::txn`]).
pub(super) fn is_fatal(error: &ProduceError) -> bool {
    match error {
        ProduceError::Broker(
            ErrorCode::ProducerFenced | ErrorCode::TransactionalIdAuthorizationFailed,
        )
        | ProduceError::DataLoss(_) => true,
        ProduceError::EarlierBatchFailed(inner) => is_fatal(inner),
        _ => false,
    }
}

impl Producer {
    /// Whether the producer is transactional (has a transactional id).
    pub fn is_transactional(&self) -> bool {
        self.txn_gate.is_some()
    }

    /// Partitions holding batches that are not yet in the open
    /// transaction: the manager adds them before they may be sent.
    pub fn partitions_to_add(&self) -> impl Iterator<Item = (&str, i32)> + '_ {
        let gate = self.txn_gate.as_ref();
        self.topics.iter().flat_map(move |(name, tb)| {
            tb.partitions
                .iter()
                .filter(|p| !p.batches.is_empty())
                .filter(move |p| {
                    gate.is_some_and(|g| !g.get(name).is_some_and(|s| s.contains(&p.partition)))
                })
                .map(move |p| (name.as_str(), p.partition))
        })
    }

    /// The partition is in the open transaction: its batches may go.
    pub fn allow_partition(&mut self, topic: String, partition: i32) {
        if let Some(g) = &mut self.txn_gate {
            g.entry(topic).or_default().insert(partition);
        }
    }

    /// The transaction ended: every partition must be added again before
    /// its next batch.
    pub fn close_gate(&mut self) {
        if let Some(g) = &mut self.txn_gate {
            g.clear();
        }
    }

    /// The transaction manager initialized (or bumped) the producer id:
    /// sequences start over under it.
    pub fn set_producer_id(&mut self, id: i64, epoch: i16) {
        self.producer_id = ProducerId::Ready { id, epoch };
        self.producer_id_attempts = 0;
        self.producer_id_retry_at = None;
        for tb in self.topics.values_mut() {
            for p in &mut tb.partitions {
                p.reset_sequences();
            }
        }
    }

    /// Whether the producer's sequence broke and it needs a new epoch
    /// (KIP-360) or a new id: inside a transaction that makes the
    /// transaction abortable, and the manager bumps the epoch after the
    /// abort.
    pub fn needs_new_epoch(&self) -> bool {
        self.is_transactional() && matches!(self.producer_id, ProducerId::BumpNeeded { .. })
    }

    /// A record failure no transaction survives (see [`is_fatal`]), taken.
    pub fn take_txn_fatal(&mut self) -> Option<ProduceError> {
        self.txn_fatal.take()
    }

    /// Whether a record failed since the last call.
    pub fn take_failed_in_txn(&mut self) -> bool {
        std::mem::take(&mut self.failed_in_txn)
    }

    /// Fails every batch not in flight, sent before or not, while the
    /// producer needs a new epoch: for an abort. A transactional producer
    /// gets its new epoch (KIP-360) only after the abort, so a batch
    /// waiting for a retry (say after UNKNOWN_PRODUCER_ID on a partition's
    /// first batch) could never go out and the abort, which waits for the
    /// producer to settle, would wait forever. Failing it is safe: it is
    /// not on the wire, and whatever an earlier attempt wrote lies in a
    /// partition of the transaction, under its abort marker.
    pub fn fail_stranded(&mut self, error: ProduceError) {
        if !self.needs_new_epoch() {
            return;
        }
        let mut failed = Vec::new();
        for tb in self.topics.values_mut() {
            for p in &mut tb.partitions {
                failed.extend(p.fail_idle(error.clone()));
            }
        }
        for f in failed {
            self.fail_records(f.records, f.error);
        }
        self.check_flushes();
    }

    /// Fails every record buffered and never sent (an abort); batches sent
    /// at least once settle as usual.
    pub fn fail_unsent(&mut self, error: ProduceError) {
        let blocked: Vec<_> = self.blocked.drain(..).collect();
        for (id, record, _, _) in blocked {
            self.outstanding.remove(id.0);
            self.events.push_back(crate::client::Event::ProduceFailed {
                id,
                record: Box::new(record),
                error: error.clone(),
            });
        }
        let mut failed = Vec::new();
        let mut waiting = Vec::new();
        for tb in self.topics.values_mut() {
            waiting.extend(tb.waiting.drain(..).map(|w| w.pending));
            for p in &mut tb.partitions {
                failed.extend(p.fail_unsent(error.clone()));
            }
        }
        self.fail_records(waiting, error);
        for f in failed {
            self.fail_records(f.records, f.error);
        }
        self.check_flushes();
    }
}
