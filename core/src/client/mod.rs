//! The client: one value that holds every connection, the metadata cache
//! and the producer, and that a driver feeds with time, bytes and commands.
//!
//! ```text
//! loop {
//!     while let Some(out) = client.poll_output(now) { /* connect, write, close, deliver */ }
//!     wait for a socket, a command, or client.poll_timeout();
//!     client.handle_input(now, input);   // or a command: produce, flush, ...
//! }
//! ```
//!
//! The client owns connections by [`ConnId`], one per broker, opened on
//! demand (the seed brokers until metadata names the real ones) and closed
//! when idle. A connection that fails hands its requests back: metadata and
//! producer-id requests are retried after a backoff; produce requests go
//! back to the producer marked ambiguous if their bytes had left, which
//! decides what may be retried or failed.

pub mod config;
mod group;
mod group_txn;
pub mod io;
#[cfg(test)]
mod tests;
mod txn;

use std::collections::{BTreeMap, VecDeque};

use crate::cluster::{Metadata, NodeId, RefreshSchedule};
use crate::conn::{ConnError, Connection, RequestToken, Response};
use crate::consumer::{
    Consumer, ConsumerInFlight, FetchedPartition, StartOffset, MAX_FETCH_VERSION,
    MIN_VALIDATION_VERSION,
};
use crate::group::member::{GroupInFlight, GroupResponse, Member};
use crate::producer::{ProduceError, ProduceId, ProduceInFlight, Producer, Record, WhenFull};
use crate::protocol::{ApiKey, ResponseBody};
use crate::rng::SeededRng;
use crate::time::Timestamp;
use crate::txn::{GroupTxnSession, TxnManager, TxnResponse, PRODUCE_V2_VERSION};

pub use config::{Acks, Config, ConfigBuilder, ConfigError};
pub use io::{ConnId, Event, Input, Output};

/// Largest produce request built, well under brokers' default
/// `socket.request.max.bytes` of 100 MiB.
const MAX_PRODUCE_REQUEST_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug)]
enum Pending {
    /// `true` when every topic was asked for.
    Metadata(bool),
    InitProducerId,
    Produce(ProduceInFlight),
    ListOffsets(ConsumerInFlight),
    Fetch(ConsumerInFlight),
    /// OffsetForLeaderEpoch, validating cursors after a leader change.
    ValidateEpochs(ConsumerInFlight),
    /// A consumer-group request (`group.rs`).
    Group(GroupInFlight),
    /// A transaction request (`txn.rs`).
    Txn(crate::txn::TxnInFlight),
}

#[derive(Debug)]
struct Slot {
    addr: String,
    node: Option<NodeId>,
    conn: Connection,
    last_active: Timestamp,
}

/// Bytes a produce request needs beyond its batches (header, client id,
/// transactional id, acks, timeout), and per partition (topic name,
/// index, lengths, tagged fields); generous rather than exact, for
/// [`Connection::reserve`](crate::conn::Connection::reserve).
const PRODUCE_REQUEST_OVERHEAD: usize = 512;
const PRODUCE_PARTITION_OVERHEAD: usize = 300;

/// Why a connection's timer fired.
#[derive(Debug)]
enum Expiry {
    Connect,
    Request(ConnError),
    Idle,
}

/// Reconnect backoff per address.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    attempts: u32,
    until: Timestamp,
}

/// How a produce call behaves; see [`Client::produce_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProduceOptions {
    /// Fail or wait when the buffer is full.
    pub when_full: WhenFull,
    /// Send without lingering (`produce_sync`).
    pub urgent: bool,
}

/// The sans-IO Kafka client.
#[derive(Debug)]
pub struct Client {
    config: Config,
    now: Timestamp,
    rng: SeededRng,
    slots: BTreeMap<ConnId, Slot>,
    by_node: BTreeMap<NodeId, ConnId>,
    seed_conn: Option<ConnId>,
    next_seed: usize,
    next_conn: u64,
    backoff: BTreeMap<String, Backoff>,
    metadata: Metadata,
    refresh: RefreshSchedule,
    metadata_in_flight: bool,
    metadata_retry_at: Option<Timestamp>,
    metadata_failures: u32,
    producer: Producer,
    consumer: Consumer,
    /// `FetchesReady` was sent and not yet answered by a poll.
    fetches_signalled: bool,
    pending: BTreeMap<RequestToken, Pending>,
    next_token: u64,
    outputs: VecDeque<Output>,
    closed: bool,
    /// The consumer-group member, when a group is configured (`group.rs`).
    group: Option<Member>,
    /// Metadata answers so far, so a group leader knows when the layout
    /// it asked for has been refreshed.
    metadata_answers: u64,
    /// The `metadata_answers` count after which the answer to a request
    /// sent since the group leader asked for a topic layout comes.
    layout_asked_at: Option<u64>,
    /// The `metadata_answers` count when the KIP-848 member last asked
    /// for metadata to name its target's topic ids.
    topic_ids_asked_at: Option<u64>,
    /// `close` waits for the member to leave its group.
    close_after_leave: bool,
    /// The group's own connection to its coordinator (`group.rs`).
    group_conn: Option<ConnId>,
    /// The transaction manager, with a transactional id (`txn.rs`).
    txn: Option<TxnManager>,
    /// The manager's own connections to the transaction coordinator and
    /// to the group coordinator of offsets it commits (`txn.rs`).
    txn_conn: Option<ConnId>,
    txn_group_conn: Option<ConnId>,
    /// The group-transact session, when configured (`group_txn.rs`).
    group_txn: Option<GroupTxnSession>,
}

impl Client {
    /// A client that has not connected anywhere yet; the first
    /// `poll_output` asks for a connection when there is work.
    pub fn new(config: Config) -> Result<Self, ConfigError> {
        config.validate()?;
        let session = config.group_transact_session;
        let group = config.group.clone().map(|mut g| {
            if session {
                // Offsets commit only in transactions; the session
                // acknowledges each rebalance step itself, holding a
                // revoke met in a transaction until its end.
                g.auto_commit = None;
                g.commit_on_revoke = false;
                g.require_rebalance_ack = true;
            }
            Member::new(
                g,
                config.consumer.start_offset,
                config.retry_backoff,
                config.seed ^ 0x0067_726f_7570,
            )
        });
        let txn = config.transactional_id.clone().map(|id| {
            let mut t = TxnManager::new(
                id,
                config.transaction_timeout,
                config.retry_backoff,
                config.seed ^ 0x0074_786e,
            );
            t.abort_on_offset_doubt(session);
            t
        });
        let group_txn = session.then(|| {
            let mut s = GroupTxnSession::new();
            if config.sabotage_commit_despite_revoke {
                s.sabotage_commit_despite_revoke();
            }
            s
        });
        Ok(Client {
            group,
            txn,
            group_txn,
            txn_conn: None,
            txn_group_conn: None,
            metadata_answers: 0,
            layout_asked_at: None,
            topic_ids_asked_at: None,
            close_after_leave: false,
            group_conn: None,
            rng: SeededRng::new(config.seed),
            refresh: RefreshSchedule::new(config.metadata_max_age, config.metadata_min_age)
                .with_urgent_min_age(config.retry_backoff.initial),
            producer: Producer::new(&config),
            consumer: Consumer::new(config.consumer.clone(), config.retry_backoff.initial),
            fetches_signalled: false,
            config,
            now: Timestamp::ZERO,
            slots: BTreeMap::new(),
            by_node: BTreeMap::new(),
            seed_conn: None,
            next_seed: 0,
            next_conn: 0,
            backoff: BTreeMap::new(),
            metadata: Metadata::new(),
            metadata_in_flight: false,
            metadata_retry_at: None,
            metadata_failures: 0,
            pending: BTreeMap::new(),
            next_token: 0,
            outputs: VecDeque::new(),
            closed: false,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The metadata cache.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    fn tick(&mut self, now: Timestamp) {
        if now > self.now {
            self.now = now;
        }
    }

    // ------------------------------------------------------------------
    // Commands
    // ------------------------------------------------------------------

    /// Buffers a record, waiting for space if the buffer is full (the
    /// record is taken at once; [`Event::Buffered`] says when it got
    /// space). `wall_ms` is the wall clock in ms since the Unix epoch, the
    /// record's timestamp unless it has one.
    pub fn produce(
        &mut self,
        now: Timestamp,
        record: Record,
        wall_ms: i64,
    ) -> Result<ProduceId, ProduceError> {
        self.produce_with(
            now,
            record,
            wall_ms,
            ProduceOptions {
                when_full: WhenFull::Wait,
                urgent: false,
            },
        )
    }

    /// Buffers a record, failing at once with
    /// [`ProduceError::BufferFull`] if the buffer is full.
    pub fn try_produce(
        &mut self,
        now: Timestamp,
        record: Record,
        wall_ms: i64,
    ) -> Result<ProduceId, ProduceError> {
        self.produce_with(
            now,
            record,
            wall_ms,
            ProduceOptions {
                when_full: WhenFull::Fail,
                urgent: false,
            },
        )
    }

    /// Buffers a record with explicit options.
    pub fn produce_with(
        &mut self,
        now: Timestamp,
        record: Record,
        wall_ms: i64,
        options: ProduceOptions,
    ) -> Result<ProduceId, ProduceError> {
        self.tick(now);
        if self.closed {
            return Err(ProduceError::Closed);
        }
        if let Some(refused) = self.txn_refuses_records() {
            return Err(refused);
        }
        let id = self
            .producer
            .produce(now, record, wall_ms, options.when_full, options.urgent)?;
        if self.producer.wants_metadata() {
            self.refresh.trigger();
        }
        Ok(id)
    }

    /// Whether [`Client::poll_output`] has work since it last ran, beyond
    /// what [`Client::poll_timeout`] already said: a produced record
    /// opened a batch, was urgent, waits or failed, or an output is
    /// queued. False after records that only joined open batches, whose
    /// deadlines and sends are the ones already planned. Clears what it
    /// reports.
    ///
    /// For an adapter that takes records on the caller's thread (as
    /// librdkafka's `produce` does) while its driver sleeps: it wakes the
    /// driver only when this says so, not once per record.
    pub fn take_needs_poll(&mut self) -> bool {
        self.producer.take_needs_drive() || !self.outputs.is_empty()
    }

    /// Sends everything buffered without waiting for linger;
    /// [`Event::Flushed`] with the returned id follows when every record
    /// produced before the call is delivered or failed.
    pub fn flush(&mut self, now: Timestamp) -> u64 {
        self.tick(now);
        self.producer.flush()
    }

    /// Cancels a record; see [`Producer::cancel`].
    pub fn cancel(&mut self, now: Timestamp, id: ProduceId) {
        self.tick(now);
        self.producer.cancel(now, id);
    }

    /// Consumes every partition of these topics from the configured start
    /// offset (`Config::consumer.start_offset`), including partitions
    /// added later.
    pub fn consume_topics<I, S>(&mut self, now: Timestamp, topics: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tick(now);
        if let Some(g) = &mut self.group {
            // A group member consumes what the group assigns.
            g.subscribe(now, topics.into_iter().map(Into::into));
            self.refresh.trigger();
            return;
        }
        self.consumer
            .consume_topics(topics.into_iter().map(Into::into));
        // What the cache knows is used at once; the refresh adds the rest.
        self.consumer.on_metadata(&self.metadata);
        self.refresh.trigger();
    }

    /// Consumes every topic whose whole name matches one of `patterns`,
    /// including topics created later (seen at the next metadata refresh,
    /// at most `metadata_max_age` away) and dropping deleted ones.
    pub fn consume_regex<I, S>(&mut self, now: Timestamp, patterns: I) -> Result<(), regex::Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.tick(now);
        self.consumer.consume_regex(patterns)?;
        self.refresh.trigger();
        Ok(())
    }

    /// Consumes exactly these partitions from these offsets.
    pub fn consume_partitions(
        &mut self,
        now: Timestamp,
        partitions: BTreeMap<String, BTreeMap<i32, StartOffset>>,
    ) {
        self.tick(now);
        self.consumer.consume_partitions(partitions);
        self.consumer.settle_exact_offsets();
        // Leaders and epochs the cache knows are used at once.
        self.consumer.on_metadata(&self.metadata);
        self.refresh.trigger();
    }

    /// Pauses fetching a topic's partitions (all with `None`); records
    /// already buffered for them are dropped and will be fetched again.
    pub fn pause(&mut self, now: Timestamp, topic: &str, partitions: Option<&[i32]>) {
        self.tick(now);
        self.consumer.set_paused(topic, partitions, true);
    }

    /// Resumes what `pause` paused.
    pub fn resume(&mut self, now: Timestamp, topic: &str, partitions: Option<&[i32]>) {
        self.tick(now);
        self.consumer.set_paused(topic, partitions, false);
    }

    /// Takes fetched records, up to `max_records` (all with `None`), by
    /// partition in fetch order; partition errors come in the same list.
    pub fn poll_fetches(
        &mut self,
        now: Timestamp,
        max_records: Option<usize>,
    ) -> Vec<FetchedPartition> {
        self.tick(now);
        let out = self.consumer.take(max_records);
        self.fetches_signalled = self.consumer.has_buffered();
        self.note_polled(&out);
        out
    }

    /// Takes back what [`Client::poll_fetches`] returned but the
    /// application never received (an adapter's caller left before the
    /// hand-over, or dropped its future unread): the records are polled
    /// again, first, and the group no longer counts them as polled, so no
    /// commit (auto, on revoke, or a group-transact session's) covers
    /// records nobody processed.
    pub fn unpoll_fetches(&mut self, now: Timestamp, fetched: Vec<FetchedPartition>) {
        self.tick(now);
        self.note_unpolled(&fetched);
        self.consumer.untake(fetched);
        // Signal again, so waiting callers hear of them.
        self.fetches_signalled = false;
    }

    /// Records buffered and not yet delivered or failed.
    pub fn buffered_records(&self) -> usize {
        self.producer.buffered_records()
    }

    /// Whether nothing is buffered or in flight.
    pub fn is_idle(&self) -> bool {
        self.producer.is_idle()
    }

    /// Closes the client: every record not yet delivered fails with
    /// [`ProduceError::Closed`] and every connection closes. Flush first
    /// to deliver what is buffered.
    pub fn close(&mut self, now: Timestamp) {
        self.tick(now);
        if self.leave_before_close(now) {
            return;
        }
        self.closed = true;
        self.producer.fail_all(ProduceError::Closed);
        let ids: Vec<ConnId> = self.slots.keys().copied().collect();
        for id in ids {
            self.drop_conn(now, id, "client closed", true);
        }
    }

    /// Whether the client is closed: [`Client::close`] finished (after
    /// leaving the group, when it had to) or [`Client::abort`] ran.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Closes at once, as a crash would: no flush, no final commit and no
    /// LeaveGroup, so the coordinator keeps the member (and its
    /// partitions) until its session timeout. Every record not yet
    /// delivered fails with [`ProduceError::Closed`]. For tests of crash
    /// recovery, and for a process that must stop without a word.
    pub fn abort(&mut self, now: Timestamp) {
        self.tick(now);
        self.group = None;
        self.close_after_leave = false;
        self.close(now);
    }

    // ------------------------------------------------------------------
    // Inputs
    // ------------------------------------------------------------------

    /// Feeds what happened outside.
    pub fn handle_input(&mut self, now: Timestamp, input: Input) {
        self.tick(now);
        match input {
            Input::Connected(id) => {
                let Some(slot) = self.slots.get_mut(&id) else {
                    return;
                };
                slot.last_active = now;
                self.backoff.remove(&slot.addr);
                if let Err(e) = slot.conn.on_connected(now) {
                    self.conn_failed(now, id, &e);
                }
            }
            Input::ConnectFailed(id, reason) => {
                tracing::debug!(conn = %id, %reason, "connect failed");
                self.broker_unreachable(id);
                self.drop_conn(now, id, &reason, false);
            }
            Input::Received(id, data) => {
                let Some(slot) = self.slots.get_mut(&id) else {
                    return;
                };
                slot.last_active = now;
                let result = slot.conn.handle_bytes(now, &data);
                let mut responses = Vec::new();
                while let Some(r) = slot.conn.poll_response() {
                    responses.push(r);
                }
                for r in responses {
                    self.on_response(now, r);
                }
                if let Err(e) = result {
                    self.conn_failed(now, id, &e);
                }
            }
            Input::Closed(id, reason) => {
                tracing::debug!(conn = %id, %reason, "connection closed");
                self.broker_unreachable(id);
                self.drop_conn(now, id, &reason, false);
            }
            Input::Timeout => self.handle_timeout(now),
        }
    }

    fn handle_timeout(&mut self, now: Timestamp) {
        // Runs on every poll: find what expired without allocating, then
        // act on the few (usually none) that did.
        let mut expired: Vec<(ConnId, Expiry)> = Vec::new();
        for (&id, slot) in &mut self.slots {
            if slot.conn.is_connecting() {
                if now >= slot.last_active + self.config.conn.connect_timeout {
                    expired.push((id, Expiry::Connect));
                }
            } else if let Err(e) = slot.conn.handle_timeout(now) {
                expired.push((id, Expiry::Request(e)));
            } else if slot.conn.in_flight() == 0
                && slot.conn.is_ready()
                && now >= slot.last_active + self.config.conn_idle_timeout
            {
                expired.push((id, Expiry::Idle));
            }
        }
        for (id, why) in expired {
            match why {
                Expiry::Connect => {
                    tracing::debug!(conn = %id, "connect timed out");
                    self.broker_unreachable(id);
                    self.drop_conn(now, id, "connect timed out", true);
                }
                Expiry::Request(e) => self.conn_failed(now, id, &e),
                Expiry::Idle => {
                    tracing::debug!(conn = %id, "closing idle connection");
                    self.drop_conn(now, id, "idle", true);
                }
            }
        }
        self.producer.handle_timeout(now);
        if let Some(g) = &mut self.group {
            g.handle_timeout(now);
        }
    }

    fn conn_failed(&mut self, now: Timestamp, id: ConnId, e: &ConnError) {
        tracing::warn!(conn = %id, error = %e, "connection failed");
        self.broker_unreachable(id);
        self.drop_conn(now, id, &e.to_string(), true);
    }

    /// A connection to a broker failed or the broker closed it: the broker
    /// may be gone and its partitions led elsewhere, so metadata is asked
    /// for again (within `metadata_min_age`), as Java's client does on
    /// every disconnect. Without it, records for a partition whose leader
    /// died wait for `metadata_max_age`.
    fn broker_unreachable(&mut self, id: ConnId) {
        if self.slots.get(&id).is_some_and(|s| s.node.is_some()) && !self.closed {
            self.refresh.trigger();
        }
    }

    /// Forgets a connection, handing its requests back to their owners.
    fn drop_conn(&mut self, now: Timestamp, id: ConnId, reason: &str, tell_driver: bool) {
        let Some(mut slot) = self.slots.remove(&id) else {
            return;
        };
        if let Some(node) = slot.node {
            if self.by_node.get(&node) == Some(&id) {
                self.by_node.remove(&node);
            }
        }
        if self.seed_conn == Some(id) {
            self.seed_conn = None;
        }
        if self.group_conn == Some(id) {
            self.group_conn = None;
        }
        if self.txn_conn == Some(id) {
            self.txn_conn = None;
        }
        if self.txn_group_conn == Some(id) {
            self.txn_group_conn = None;
        }
        let failed_early = !slot.conn.is_ready();
        if failed_early && !self.closed {
            let entry = self.backoff.entry(slot.addr.clone()).or_insert(Backoff {
                attempts: 0,
                until: now,
            });
            entry.attempts += 1;
            entry.until = now
                + self
                    .config
                    .retry_backoff
                    .delay(entry.attempts, &mut self.rng);
        }
        let mut stale = false;
        let mut consumer_stalled = false;
        for orphan in slot.conn.close() {
            match self.pending.remove(&orphan.token) {
                Some(Pending::Metadata(_)) => self.metadata_failed(now),
                Some(Pending::InitProducerId) => self.producer.on_producer_id(now, None),
                Some(Pending::Produce(inflight)) => {
                    stale = true;
                    self.producer.on_lost(now, inflight, orphan.written);
                }
                // A lost consumer request may mean a broker that is gone:
                // its partitions wait on metadata that names their new
                // leader, so it is asked for at once.
                Some(Pending::ListOffsets(inflight)) => {
                    self.consumer.on_list_offsets(now, inflight, None);
                    consumer_stalled = true;
                }
                Some(Pending::Fetch(inflight)) => {
                    self.consumer.on_fetch(now, inflight, None);
                    consumer_stalled = true;
                }
                Some(Pending::ValidateEpochs(inflight)) => {
                    self.consumer
                        .on_offset_for_leader_epoch(now, inflight, None);
                    consumer_stalled = true;
                }
                Some(Pending::Group(inflight)) => {
                    if let Some(g) = &mut self.group {
                        g.on_response(now, inflight, None);
                    }
                }
                Some(Pending::Txn(inflight)) => {
                    if let Some(t) = &mut self.txn {
                        t.on_response(now, inflight, None);
                    }
                }
                None => {}
            }
        }
        if stale {
            self.refresh.trigger();
        }
        if consumer_stalled && !self.closed {
            self.refresh.trigger_urgent();
        }
        tracing::trace!(conn = %id, reason, "dropped");
        if tell_driver {
            self.outputs.push_back(Output::Close(id));
        }
    }

    fn metadata_failed(&mut self, now: Timestamp) {
        self.metadata_in_flight = false;
        self.metadata_failures += 1;
        self.metadata_retry_at = Some(
            now + self
                .config
                .retry_backoff
                .delay(self.metadata_failures, &mut self.rng),
        );
        self.refresh.trigger();
    }

    fn on_response(&mut self, now: Timestamp, r: Response) {
        let Some(pending) = self.pending.remove(&r.token) else {
            return;
        };
        match (pending, r.body) {
            (Pending::Metadata(all), ResponseBody::Metadata(resp)) => {
                self.metadata_in_flight = false;
                if resp.brokers.is_empty() {
                    self.metadata_failed(now);
                    return;
                }
                self.metadata_failures = 0;
                self.metadata_retry_at = None;
                self.metadata_answers += 1;
                let changes = if all {
                    self.metadata.apply_all(now, &resp)
                } else {
                    self.metadata.apply(now, &resp)
                };
                // Connections to brokers that changed address are replaced
                // lazily: the node map points at the newest address.
                self.producer.on_metadata(now, &self.metadata, &changes);
                if self.consumer.on_metadata(&self.metadata) {
                    // A partition between leaders: ask again soon, not in
                    // `metadata_max_age`.
                    self.refresh.trigger_urgent();
                }
                self.check_group_layout(now);
                if !changes.failed.is_empty() && self.producer.wants_metadata() {
                    self.refresh.trigger();
                }
            }
            (Pending::InitProducerId, ResponseBody::InitProducerId(resp)) => {
                self.producer.on_producer_id(now, Some(&resp));
            }
            // A producer told its leader moved asks at once too (within
            // the retry backoff): the partition's records wait on the
            // answer, and `metadata_min_age` would stall them for seconds.
            (Pending::Produce(inflight), ResponseBody::Produce(resp)) => {
                if self.producer.on_response(now, inflight, &resp) {
                    self.refresh.trigger_urgent();
                }
            }
            // A consumer that sees a stale leader asks for metadata at
            // once (within the retry backoff, not `metadata_min_age`): its
            // partitions wait on the answer.
            (Pending::ListOffsets(inflight), ResponseBody::ListOffsets(resp)) => {
                if self.consumer.on_list_offsets(now, inflight, Some(&resp)) {
                    self.refresh.trigger_urgent();
                }
            }
            (Pending::Fetch(inflight), ResponseBody::Fetch(resp)) => {
                if self.consumer.on_fetch(now, inflight, Some(&resp)) {
                    self.refresh.trigger_urgent();
                }
            }
            (Pending::ValidateEpochs(inflight), ResponseBody::OffsetForLeaderEpoch(resp)) => {
                if self
                    .consumer
                    .on_offset_for_leader_epoch(now, inflight, Some(&resp))
                {
                    self.refresh.trigger_urgent();
                }
            }
            (Pending::Group(inflight), body) => {
                if let Some(g) = &mut self.group {
                    g.on_response(now, inflight, GroupResponse::from_body(body));
                }
            }
            (Pending::Txn(inflight), body) => {
                if let Some(t) = &mut self.txn {
                    t.on_response(now, inflight, TxnResponse::from_body(body));
                }
            }
            (p, body) => {
                tracing::error!(pending = ?p, api = ?body.api_key(), "response of the wrong kind");
            }
        }
    }

    // ------------------------------------------------------------------
    // Outputs
    // ------------------------------------------------------------------

    /// The next thing to do. Call after every input and command until it
    /// returns `None`.
    #[must_use = "outputs must be carried out; drain until None"]
    pub fn poll_output(&mut self, now: Timestamp) -> Option<Output> {
        self.tick(now);
        if let Some(o) = self.outputs.pop_front() {
            return Some(o);
        }
        self.drive(now);
        self.outputs.pop_front()
    }

    /// When to call `handle_input(now, Input::Timeout)` at the latest:
    /// always later than the `now` of the last call, or `None`.
    ///
    /// Work that is due but waits on something other than time (a
    /// metadata refresh or a ready batch while its connection is still
    /// opening, an expired batch still in flight) has no deadline here:
    /// the input that unblocks it (connected, bytes received, closed) is
    /// the wake-up. Reporting its past deadline would make a driver spin,
    /// feeding `Timeout` in a loop until the connection is up.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let now = self.now;
        let mut t: Option<Timestamp> = None;
        // `poll_output` ran every timer due by `now` (see `drive`), so a
        // deadline not after `now` is blocked, not pending: skip it.
        let mut min = |x: Timestamp| {
            if x > now {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        for slot in self.slots.values() {
            if let Some(d) = slot.conn.poll_timeout() {
                min(d);
            }
            if slot.conn.is_connecting() {
                min(slot.last_active + self.config.conn.connect_timeout);
            }
            if slot.conn.in_flight() == 0 && slot.conn.is_ready() {
                min(slot.last_active + self.config.conn_idle_timeout);
            }
        }
        if let Some(p) = self.producer.poll_timeout(now) {
            min(p);
        }
        if let Some(c) = self.consumer.poll_timeout(now) {
            min(c);
        }
        if let Some(g) = self.group.as_ref().and_then(|g| g.poll_timeout(now)) {
            min(g);
        }
        if let Some(x) = self.txn.as_ref().and_then(|t| t.poll_timeout(now)) {
            min(x);
        }
        if (self.producer.topics().next().is_some()
            || self.consumer.is_active()
            || self.group_wants_metadata())
            && !self.metadata_in_flight
        {
            let due = self.refresh.due_at();
            let at = self.metadata_retry_at.map_or(due, |r| r.max(due));
            // Due already: it waits for a connection, which reports in.
            if at > now {
                min(at);
            }
        }
        for b in self.backoff.values() {
            min(b.until);
        }
        t
    }

    fn token(&mut self) -> RequestToken {
        self.next_token += 1;
        RequestToken(self.next_token)
    }

    /// Does whatever is due: metadata, producer ids, produce requests;
    /// then collects bytes to write and events.
    fn drive(&mut self, now: Timestamp) {
        // What records asked of a drive is done by this one.
        self.producer.take_needs_drive();
        if !self.closed {
            // Timers due by `now` run here too, not only on
            // `Input::Timeout`: a driver busy with other inputs may pass a
            // deadline without ever feeding `Timeout`, and `poll_timeout`
            // relies on nothing due being left behind.
            self.handle_timeout(now);
            self.drive_metadata(now);
            self.drive_producer_id(now);
            self.drive_txn(now);
            self.drive_produce(now);
            self.drive_consume(now);
            self.drive_group(now);
        }
        for (&id, slot) in &mut self.slots {
            while let Some(data) = slot.conn.poll_transmit() {
                slot.last_active = now;
                self.outputs.push_back(Output::Transmit { conn: id, data });
            }
        }
        while let Some(e) = self.producer.poll_event() {
            self.outputs.push_back(Output::Event(e));
        }
        if self.consumer.has_buffered() && !self.fetches_signalled {
            self.fetches_signalled = true;
            self.outputs.push_back(Output::Event(Event::FetchesReady));
        }
    }

    /// Every topic the client needs metadata for.
    fn wanted_topics(&self) -> Vec<String> {
        let mut topics: Vec<String> = self
            .producer
            .topics()
            .chain(self.consumer.topics())
            .cloned()
            .chain(self.group_topics())
            .collect();
        topics.sort();
        topics.dedup();
        topics
    }

    fn drive_metadata(&mut self, now: Timestamp) {
        if self.producer.take_leader_wanted() {
            self.refresh.trigger();
        }
        let wanted = self.producer.topics().next().is_some()
            || self.consumer.is_active()
            || self.group_wants_metadata();
        if !wanted || self.metadata_in_flight || !self.refresh.is_due(now) {
            return;
        }
        if self.metadata_retry_at.is_some_and(|t| t > now) {
            return;
        }
        let Some(id) = self.any_ready_conn(now) else {
            return;
        };
        let all = self.consumer.needs_all_topics();
        let topics = self.wanted_topics();
        let req = Metadata::request(
            (!all).then_some(&topics[..]),
            self.config.allow_auto_topic_creation,
        );
        let token = self.token();
        let Some(slot) = self.slots.get_mut(&id) else {
            return;
        };
        let sent = slot
            .conn
            .version_for(ApiKey::Metadata, None)
            // v4+ can say "do not create"; below it the field must stay
            // at its default (true), which brokers then ignore.
            .and_then(|v| {
                let mut req = req;
                if v < 4 {
                    req.allow_auto_topic_creation = true;
                }
                slot.conn.send(now, &req, v, token, true)
            });
        match sent {
            Ok(_) => {
                self.pending.insert(token, Pending::Metadata(all));
                self.metadata_in_flight = true;
                self.refresh.started(now);
            }
            Err(e) => self.conn_failed(now, id, &e),
        }
    }

    fn drive_producer_id(&mut self, now: Timestamp) {
        if !self.producer.wants_producer_id(now) {
            return;
        }
        let Some(id) = self.any_ready_conn(now) else {
            return;
        };
        let Some(mut req) = self.producer.producer_id_request(now) else {
            return;
        };
        let token = self.token();
        let Some(slot) = self.slots.get_mut(&id) else {
            return;
        };
        let sent = slot
            .conn
            .version_for(ApiKey::InitProducerId, None)
            .and_then(|v| {
                if v < 3 {
                    // No epoch bumps before v3 (KIP-360): ask for a new id.
                    req.producer_id = -1;
                    req.producer_epoch = -1;
                }
                slot.conn.send(now, &req, v, token, true)
            });
        match sent {
            Ok(_) => {
                self.pending.insert(token, Pending::InitProducerId);
            }
            Err(e) => {
                self.producer.on_producer_id(now, None);
                self.conn_failed(now, id, &e);
            }
        }
    }

    fn drive_produce(&mut self, now: Timestamp) {
        let brokers = self.producer.ready_brokers(now, &self.metadata);
        // Which of them can take a request now; the rest start their
        // batches' delivery timeouts.
        if self.config.record_delivery_timeout.is_some() {
            let sendable: std::collections::BTreeSet<NodeId> = self
                .by_node
                .iter()
                .filter(|(_, id)| self.slots.get(id).is_some_and(|s| s.conn.is_ready()))
                .map(|(&node, _)| node)
                .collect();
            self.producer
                .note_unsendable(now, &self.metadata, &sendable);
        }
        let cap = self.produce_version_cap();
        // A transactions v2 transaction needs Produce v12 (it adds the
        // partition); a finalized transaction.version is cluster-wide, so
        // every broker speaks it unless the cluster is mid-downgrade.
        let min = if cap == PRODUCE_V2_VERSION { cap } else { 3 };
        for broker in brokers {
            let Some(id) = self.conn_to(now, broker) else {
                continue;
            };
            while let Some(slot) = self.slots.get_mut(&id) {
                if !slot.conn.is_ready() {
                    break;
                }
                let version = match slot.conn.version_for(ApiKey::Produce, Some(cap)) {
                    // sansa writes record batches v2 only: Produce v3+.
                    Ok(v) if v >= min => v,
                    Ok(_) | Err(_) => {
                        tracing::error!(
                            broker = broker.0,
                            min,
                            "broker does not speak the Produce version needed"
                        );
                        break;
                    }
                };
                let Some((req, inflight)) =
                    self.producer
                        .drain(now, broker, &self.metadata, MAX_PRODUCE_REQUEST_BYTES)
                else {
                    break;
                };
                self.next_token += 1;
                let token = RequestToken(self.next_token);
                let acks0 = req.acks == 0;
                let batch_bytes: usize = req
                    .topic_data
                    .iter()
                    .flat_map(|t| &t.partition_data)
                    .filter_map(|p| {
                        p.records
                            .as_ref()
                            .map(|r| r.len() + PRODUCE_PARTITION_OVERHEAD)
                    })
                    .sum();
                slot.conn.reserve(batch_bytes + PRODUCE_REQUEST_OVERHEAD);
                match slot.conn.send(now, &req, version, token, !acks0) {
                    Ok(_) if acks0 => self.producer.on_sent_without_ack(inflight),
                    Ok(_) => {
                        self.pending.insert(token, Pending::Produce(inflight));
                    }
                    Err(e) => {
                        self.producer.on_lost(now, inflight, false);
                        self.conn_failed(now, id, &e);
                        break;
                    }
                }
            }
        }
    }

    fn drive_consume(&mut self, now: Timestamp) {
        if !self.consumer.is_active() {
            return;
        }
        for (broker, req, inflight) in self.consumer.list_offsets_requests(now, &self.metadata) {
            let token = self.token();
            let sent = match self
                .conn_to(now, broker)
                .and_then(|id| self.slots.get_mut(&id).map(|s| (id, s)))
            {
                Some((id, slot)) if slot.conn.is_ready() => {
                    let r = slot
                        .conn
                        .version_for(ApiKey::ListOffsets, None)
                        .and_then(|v| slot.conn.send(now, &req, v, token, true));
                    match r {
                        Ok(_) => true,
                        Err(e) => {
                            self.conn_failed(now, id, &e);
                            false
                        }
                    }
                }
                _ => false,
            };
            if sent {
                self.pending.insert(token, Pending::ListOffsets(inflight));
            } else {
                // Not sent: put the partitions back to wait for the
                // connection (no backoff, the connection reports in).
                self.consumer.on_list_offsets(now, inflight, None);
            }
        }
        for broker in self.consumer.validation_brokers(now, &self.metadata) {
            let Some(id) = self.conn_to(now, broker) else {
                continue;
            };
            let Some(slot) = self.slots.get_mut(&id) else {
                continue;
            };
            if !slot.conn.is_ready() {
                continue;
            }
            let version = match slot.conn.version_for(ApiKey::OffsetForLeaderEpoch, None) {
                Ok(v) if v >= MIN_VALIDATION_VERSION => v,
                _ => {
                    self.consumer.skip_validation(broker, &self.metadata);
                    continue;
                }
            };
            let Some((req, inflight)) =
                self.consumer
                    .validation_request(now, broker, &self.metadata)
            else {
                continue;
            };
            self.next_token += 1;
            let token = RequestToken(self.next_token);
            match slot.conn.send(now, &req, version, token, true) {
                Ok(_) => {
                    self.pending
                        .insert(token, Pending::ValidateEpochs(inflight));
                }
                Err(e) => {
                    self.consumer
                        .on_offset_for_leader_epoch(now, inflight, None);
                    self.conn_failed(now, id, &e);
                }
            }
        }
        for broker in self.consumer.fetch_brokers(now, &self.metadata) {
            let Some(id) = self.conn_to(now, broker) else {
                continue;
            };
            let Some(slot) = self.slots.get_mut(&id) else {
                continue;
            };
            if !slot.conn.is_ready() {
                continue;
            }
            let version = match slot
                .conn
                .version_for(ApiKey::Fetch, Some(MAX_FETCH_VERSION))
            {
                // Record batches v2 need Fetch v4+.
                Ok(v) if v >= 4 => v,
                _ => {
                    tracing::error!(broker = broker.0, "broker does not speak Fetch v4+");
                    continue;
                }
            };
            let Some((req, inflight)) =
                self.consumer
                    .fetch_request(now, broker, &self.metadata, version)
            else {
                continue;
            };
            self.next_token += 1;
            let token = RequestToken(self.next_token);
            // The broker may hold a fetch for its max wait before
            // answering: that is no sign of a dead broker.
            let hold = self.consumer.config().fetch_max_wait;
            match slot.conn.send_held(now, &req, version, token, true, hold) {
                Ok(_) => {
                    self.pending.insert(token, Pending::Fetch(inflight));
                }
                Err(e) => {
                    self.consumer.on_fetch(now, inflight, None);
                    self.conn_failed(now, id, &e);
                }
            }
        }
    }

    /// A ready connection to any broker, opening one (to a known broker,
    /// else a seed) if none is.
    fn any_ready_conn(&mut self, now: Timestamp) -> Option<ConnId> {
        if let Some((&id, _)) = self
            .slots
            .iter()
            // Not the group's connection: a JoinGroup may hold it for the
            // whole rebalance timeout.
            .filter(|(id, s)| s.conn.is_ready() && self.group_conn != Some(**id))
            .min_by_key(|(_, s)| s.conn.in_flight())
        {
            return Some(id);
        }
        // One is opening: wait for it. The group's connection does not
        // count (it is never handed out here), or a client left with only
        // it would never open another and never refresh metadata again
        // (the sim's group swarm, seed 202).
        if self
            .slots
            .iter()
            .any(|(id, s)| !s.conn.is_closed() && self.group_conn != Some(*id))
        {
            return None;
        }
        let nodes: Vec<NodeId> = self.metadata.brokers().map(|b| b.node).collect();
        for node in nodes {
            if self.conn_to(now, node).is_some() {
                return None;
            }
        }
        self.open_seed(now);
        None
    }

    fn open_seed(&mut self, now: Timestamp) {
        if self.seed_conn.is_some() || self.config.seed_brokers.is_empty() {
            return;
        }
        let n = self.config.seed_brokers.len();
        for _ in 0..n {
            let addr = self.config.seed_brokers[self.next_seed % n].clone();
            self.next_seed += 1;
            if self.backoff.get(&addr).is_some_and(|b| b.until > now) {
                continue;
            }
            let id = self.open(now, addr, None);
            self.seed_conn = Some(id);
            return;
        }
    }

    /// The connection to `node`, opened if needed; `None` while backing off
    /// or if the node is unknown.
    fn conn_to(&mut self, now: Timestamp, node: NodeId) -> Option<ConnId> {
        if let Some(&id) = self.by_node.get(&node) {
            return Some(id);
        }
        let addr = self.metadata.broker(node)?.address();
        if self.backoff.get(&addr).is_some_and(|b| b.until > now) {
            return None;
        }
        let id = self.open(now, addr, Some(node));
        self.by_node.insert(node, id);
        Some(id)
    }

    fn open(&mut self, now: Timestamp, addr: String, node: Option<NodeId>) -> ConnId {
        let id = ConnId(self.next_conn);
        self.next_conn += 1;
        self.slots.insert(
            id,
            Slot {
                addr: addr.clone(),
                node,
                conn: Connection::new(self.config.conn.clone()),
                last_active: now,
            },
        );
        self.outputs.push_back(Output::Connect { conn: id, addr });
        id
    }
}

#[cfg(test)]
mod deadline_tests {
    use super::*;
    use std::time::Duration;

    fn client() -> Client {
        let config = Config::builder()
            .seed_brokers(["broker:9092"])
            .build()
            .expect("valid");
        Client::new(config).expect("valid")
    }

    fn drain(c: &mut Client, now: Timestamp) -> Vec<Output> {
        std::iter::from_fn(|| c.poll_output(now)).collect()
    }

    fn connect_id(outputs: &[Output]) -> ConnId {
        outputs
            .iter()
            .find_map(|o| match o {
                Output::Connect { conn, .. } => Some(*conn),
                _ => None,
            })
            .expect("a connect")
    }

    #[test]
    fn poll_timeout_is_never_due_while_work_waits_for_a_connection() {
        let mut c = client();
        let now = Timestamp::from_nanos(1_000_000_000);
        c.produce(now, Record::new("t", "v"), 0).expect("buffered");
        let conn = connect_id(&drain(&mut c, now));
        // Metadata is due, but the only connection is still opening: a
        // past deadline here made drivers spin until it opened.
        assert!(
            c.poll_timeout().is_none_or(|t| t > now),
            "{:?}",
            c.poll_timeout()
        );
        c.handle_input(now, Input::Connected(conn));
        let outs = drain(&mut c, now);
        assert!(
            matches!(outs.as_slice(), [Output::Transmit { .. }]),
            "{outs:?}"
        );
        // Handshaking: the only deadline is the ApiVersions request's.
        let request_timeout = c.config().conn.request_timeout;
        assert_eq!(c.poll_timeout(), Some(now + request_timeout));
    }

    #[test]
    fn a_deadline_passed_without_a_timeout_input_is_still_honoured() {
        let mut c = client();
        let now = Timestamp::from_nanos(1_000_000_000);
        c.produce(now, Record::new("t", "v"), 0).expect("buffered");
        let conn = connect_id(&drain(&mut c, now));
        c.handle_input(now, Input::Connected(conn));
        let _ = drain(&mut c, now);
        // The ApiVersions answer never comes; the driver feeds an
        // unrelated command after the deadline instead of `Timeout`.
        let later = now + c.config().conn.request_timeout + Duration::from_millis(1);
        c.flush(later);
        let outs = drain(&mut c, later);
        assert!(outs.contains(&Output::Close(conn)), "{outs:?}");
        assert!(c.poll_timeout().is_none_or(|t| t > later));
    }
}
