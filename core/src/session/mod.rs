//! A [`Client`] with the books a runtime adapter keeps beside it: which
//! caller waits for each record, flush, close and fetch. Every adapter
//! (tokio, smol, blocking) drives a [`Session`], so none of them holds
//! Kafka or bookkeeping logic of its own. Every caller waits the same
//! way: on a waker cell ([`WakerSlot`], [`WakerBatch`]) for a record or a
//! batch, on an [`Answer`] for anything else. An async adapter polls them
//! from its futures, the blocking one with a waker that unparks its
//! thread; a test may plug in its own [`ProduceWaiter`].
//!
//! Like the rest of the core it reads no clock and does no I/O: the
//! adapter's loop is
//!
//! ```text
//! loop {
//!     while let Some(io) = session.poll_io(now) { connect, write or close }
//!     if session.is_done() { break }
//!     let timer = session.poll_timer();      // re-arm only if it changed
//!     wait for a command, a connection input or timer.deadline;
//!     session.handle_command(now, cmd) / handle_input(now, input) / handle_timeout(now);
//! }
//! session.finish();
//! ```
//!
//! Rules kept here, so every adapter keeps them the same way:
//! - Admission: a record counts as buffered at once unless it waits for
//!   space, in which case [`Event::Buffered`] admits it later; a
//!   `try_produce` refusal is reported as the call's answer only.
//! - Close: flush first, then (at that flush's event) close the core;
//!   records produced after the close began fail with
//!   [`ProduceError::Closed`].
//! - `poll_fetches` callers are served oldest first; one that left is
//!   skipped. They get nothing (an empty answer) when the session ends,
//!   and in a group-transact session when a revoke or loss waits for the
//!   open transaction's end: the application must end it for the group
//!   to go on, and the records it waits for may never come.
//! - A connection input after the core closed that connection is dropped:
//!   the core asked to hear nothing more about it.
//! - A close of a group member ends only after the member left the group
//!   ([`Event::GroupLeft`]: final commit, then LeaveGroup), so an adapter
//!   never stops its loop under a commit in flight. An abort ends at once.
//! - Group commits and events: see [`group`](self::group)'s rules.

mod books;
mod builder;
mod client_calls;
mod conns;
pub mod group;
mod group_calls;
mod handles;
mod helpers;
mod outcome;
mod reply;
mod shared;
mod sink;
mod txn_handles;
mod waker;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use bytes::Bytes;

use crate::client::{ConnId, ProduceOptions};
use crate::consumer::{FetchedPartition, StartOffset};
use crate::group::{EpochOffset, GroupEvent, TopicPartition};
use crate::producer::{ProduceError, Record, WhenFull};
use crate::txn::{GroupMetadata, TransactionOutcome, TxnEnd, TxnError};
use crate::{Client, Config, Event, Input, Output, Timestamp};

use books::ById;
pub use conns::{ConnWriter, Conns};
use group::GroupBooks;
pub use group::{CommitFailure, CommitRequest, CommitResult};
pub use helpers::{
    check_patterns, into_items, into_records, timestamp, wall_ms, PartitionError, WallAnchor,
};
pub use outcome::{BatchState, Outcome, RecordState};
pub use reply::{answer, Answer, Delivery, Reclaim, Reply};
pub use shared::{Locked, Produce, SharedSession};
pub use sink::Sink;
pub use waker::{WakerBatch, WakerSlot};

/// At most this many commands (or connection inputs) an adapter should
/// feed between two drains. Draining after every one made the per-poll
/// bookkeeping (timers, ready partitions, deadlines) cost more than the
/// records themselves; a bound keeps a flood of produces from holding
/// back bytes that are ready to write.
pub const BURST: usize = 256;

/// Who waits for one record: whether it got into the buffer, and how it
/// ended. [`Sink`] is the one every adapter uses.
///
/// Each change hands back the waiting caller's wake-up rather than
/// waking it: the session wakes them all at the end of a drain
/// ([`Session::poll_io`] returning `None`). A produce response completes
/// thousands of records; woken one by one, a caller waiting on the
/// oldest of a window of records ran as soon as it was woken (on the
/// driver's CPU), found the next record not done yet and slept again, a
/// context switch each way per record.
pub trait ProduceWaiter {
    /// A caller's wake-up, held back until the end of the drain.
    type Wake: std::fmt::Debug;
    /// The record is in the buffer.
    fn buffered(&mut self) -> Option<Self::Wake>;
    /// The record was delivered or failed; a failure before it was
    /// buffered is its refusal too.
    fn complete(self, outcome: Outcome) -> Option<Self::Wake>;
    /// A `try_produce` record was refused before the core took it: the
    /// refusal is the call's answer, and the record never counted (in a
    /// batch, say).
    fn refused(self, error: ProduceError) -> Option<Self::Wake>;
    /// Wakes the caller now.
    fn wake(wake: Self::Wake);
}

/// What a user's handle asks of the session.
#[derive(Debug)]
#[non_exhaustive]
pub enum Command<P> {
    /// Produce a record.
    Produce(ProduceRequest<P>),
    /// Send what is buffered and tell the waiter when everything
    /// produced before is done.
    Flush(Reply<()>),
    /// Cancel the record produced with this ticket (0: none).
    Cancel(u64),
    /// Flush, then close; the waiter hears when the core is closed.
    /// `None` when every handle is gone and nobody waits.
    Close(Option<Reply<()>>),
    /// `consume_topics`.
    ConsumeTopics(Vec<String>),
    /// `consume_regex`; the patterns were checked by the caller.
    ConsumeRegex(Vec<String>),
    /// `consume_partitions`.
    ConsumePartitions(BTreeMap<String, BTreeMap<i32, StartOffset>>),
    /// Pause (`true`) or resume a topic's partitions (all with `None`).
    Pause(String, Option<Vec<i32>>, bool),
    /// Wait for at most this many fetched records (all with `None`).
    PollFetches(Option<usize>, Reply<Vec<FetchedPartition>>),
    /// `begin_transaction`; the reply says whether it opened.
    BeginTransaction(Reply<Result<(), TxnError>>),
    /// `end_transaction`; the reply comes with the outcome, once the
    /// producer flushed (commit) or failed what was buffered (abort) and
    /// the coordinator answered. With `Config::group_transact_session`
    /// this is the session's end: a commit is a *try* (the offsets of what
    /// was polled go with it; a doubtful one aborts and rewinds) and
    /// [`TransactionOutcome::committed`] is its answer, so an adapter's
    /// `GroupTransactSession` is begin / poll_fetches / produce / this.
    EndTransaction(TxnEnd, Reply<Result<TransactionOutcome, TxnError>>),
    /// `send_offsets_to_transaction`: for the client's own group with
    /// `None`, else for the group named.
    SendOffsetsToTransaction(
        BTreeMap<TopicPartition, EpochOffset>,
        Option<GroupMetadata>,
        Reply<Result<(), TxnError>>,
    ),
    /// Commit as the group member; the waiter hears the outcome.
    Commit(CommitRequest, Reply<CommitResult>),
    /// Let a rebalance step held for the application go on
    /// (`require_rebalance_ack`, `block_rebalance_on_poll`).
    AllowRebalance,
    /// Wait for the next [`GroupEvent`].
    NextGroupEvent(Reply<GroupEvent>),
    /// Stop at once as a crash would (no flush, commit or LeaveGroup);
    /// the waiter hears when the core is closed.
    Abort(Option<Reply<()>>),
}

impl<P: ProduceWaiter> Command<P> {
    /// Answers a command no driver will take (its channel is closed: the
    /// client closed): a record fails with [`ProduceError::Closed`], the
    /// answer of a session that is closing (a `try_produce` record is
    /// refused with it, so a batch does not count it); any other command
    /// is dropped, so its caller hears `None`.
    pub fn refuse(self) {
        if let Command::Produce(request) = self {
            request.refuse(ProduceError::Closed);
        }
    }
}

/// One record to produce and who waits for it.
#[derive(Debug)]
pub struct ProduceRequest<P> {
    /// The record.
    pub record: Record,
    /// Wall clock at the call (ms since the Unix epoch), the record's
    /// timestamp unless it has one.
    pub wall_ms: i64,
    /// `try_produce`: refuse at once when the buffer is full, and report
    /// a refusal as the call's answer only.
    pub fail_when_full: bool,
    /// `produce_sync`: no linger.
    pub urgent: bool,
    /// The caller's name for this record, for [`Command::Cancel`]; 0 for
    /// none.
    pub ticket: u64,
    /// Told when the record is in the buffer and how it ended.
    pub waiter: P,
}

impl<P: ProduceWaiter> ProduceRequest<P> {
    /// A request stamped with the wall clock of the call.
    pub fn new(
        record: Record,
        wall: std::time::SystemTime,
        fail_when_full: bool,
        urgent: bool,
        ticket: u64,
        waiter: P,
    ) -> Self {
        ProduceRequest {
            record,
            wall_ms: wall_ms(wall),
            fail_when_full,
            urgent,
            ticket,
            waiter,
        }
    }

    /// Fails the record before any session took it (the driver is gone):
    /// the same answer the session gives once it is closing.
    pub fn refuse(self, error: ProduceError) {
        let wake = if self.fail_when_full {
            self.waiter.refused(error)
        } else {
            self.waiter.complete(Err(error))
        };
        if let Some(w) = wake {
            P::wake(w);
        }
    }
}

/// What the adapter must do with a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Io {
    /// Open a TCP connection to `addr` and report
    /// [`Input::Connected`] or [`Input::ConnectFailed`] for `conn`.
    Connect {
        /// The id to report back with.
        conn: ConnId,
        /// `host:port`.
        addr: String,
        /// How long the connect may take (the request timeout).
        timeout: std::time::Duration,
    },
    /// Write these bytes, in order, on `conn`.
    Transmit {
        /// The connection.
        conn: ConnId,
        /// What to write.
        data: Bytes,
    },
    /// Close `conn` at once; nothing queued on it matters any more.
    Close(ConnId),
}

/// The core's next deadline, and whether the adapter's timer must be set
/// to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerUpdate {
    /// When to call [`Session::handle_timeout`]; `None` for never.
    pub deadline: Option<Timestamp>,
    /// `deadline` differs from the one last returned: re-arm the timer.
    /// A timer that fired is always re-armed, since the core's deadline
    /// is always after the `now` of the last drain.
    pub rearm: bool,
}

/// A record the core has taken.
#[derive(Debug)]
struct Entry<P> {
    ticket: u64,
    waiter: P,
}

/// The core [`Client`] and the books tying its ids to the adapter's
/// waiting callers. See the [module documentation](self).
///
/// ```
/// use std::task::{Context, Poll, Waker};
/// use sansa_core::session::{answer, Command, Outcome, ProduceWaiter, Session};
/// use sansa_core::producer::ProduceError;
/// use sansa_core::{Client, Config, Timestamp};
///
/// /// Callers of records that need no news.
/// struct Ignored;
/// impl ProduceWaiter for Ignored {
///     type Wake = ();
///     fn buffered(&mut self) -> Option<()> { None }
///     fn complete(self, _: Outcome) -> Option<()> { None }
///     fn refused(self, _: ProduceError) -> Option<()> { None }
///     fn wake(_: ()) {}
/// }
///
/// let config = Config::builder().seed_brokers(["localhost:9092"]).build()?;
/// let mut session = Session::<Ignored>::new(Client::new(config)?);
/// let (mut closed, reply) = answer();
/// let now = Timestamp::from_nanos(0);
/// session.handle_command(now, Command::Close(Some(reply)));
/// while let Some(_io) = session.poll_io(now) {}
/// assert!(session.is_done(), "nothing to flush: closed at once");
/// session.finish();
/// let mut cx = Context::from_waker(Waker::noop());
/// assert_eq!(closed.poll_answer(&mut cx), Poll::Ready(Some(())));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Session<P: ProduceWaiter> {
    core: Client,
    /// Connections the core opened and has not closed or lost.
    live: HashSet<ConnId>,
    records: ById<Entry<P>>,
    flushes: HashMap<u64, Reply<()>>,
    /// The flush a close waits for, once a close began.
    closing: Option<u64>,
    close_waiters: Vec<Reply<()>>,
    /// `poll_fetches` callers waiting for records, oldest first.
    fetch_waiters: VecDeque<(Option<usize>, Reply<Vec<FetchedPartition>>)>,
    /// Records handed to `poll_fetches` callers not yet read: a caller
    /// that drops its future unread gives them back to the core.
    fetch_deliveries: Vec<Delivery<Vec<FetchedPartition>>>,
    /// Group commits waiting for their outcome, group events for readers.
    group: GroupBooks,
    /// The core is closed; the adapter's loop ends.
    done: bool,
    /// The deadline last returned by `poll_timer`.
    armed: Option<Timestamp>,
    /// Callers waiting for a transaction's end, by the id the core gave.
    txn_ends: HashMap<u64, Reply<Result<TransactionOutcome, TxnError>>>,
    /// Callers' wake-ups held back until the end of the drain (see
    /// [`ProduceWaiter`]).
    wakes: Vec<P::Wake>,
}

impl<P: ProduceWaiter> Session<P> {
    /// Wraps a core client that has done nothing yet.
    pub fn new(core: Client) -> Self {
        Session {
            core,
            live: HashSet::new(),
            records: ById::default(),
            flushes: HashMap::new(),
            closing: None,
            close_waiters: Vec::new(),
            fetch_waiters: VecDeque::new(),
            fetch_deliveries: Vec::new(),
            group: GroupBooks::default(),
            done: false,
            armed: None,
            txn_ends: HashMap::new(),
            wakes: Vec::new(),
        }
    }

    /// The core's configuration.
    pub fn config(&self) -> &Config {
        self.core.config()
    }

    /// The core client, to read its state (idle, buffered records, group
    /// membership, next deadline); a simulator's checkers read it.
    pub fn core(&self) -> &Client {
        &self.core
    }

    /// The core client, to change it past the session: what is done
    /// through it has no caller in the session's books (a record produced
    /// here has nobody to tell how it ended). For a driver that mixes its
    /// own workload with the session's callers, as the simulator's world
    /// does; an adapter has no use for it.
    pub fn core_mut(&mut self) -> &mut Client {
        &mut self.core
    }

    /// The core is closed: stop the loop, then call [`Session::finish`].
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Feeds a caller's command.
    pub fn handle_command(&mut self, now: Timestamp, cmd: Command<P>) {
        self.reclaim_fetches(now);
        match cmd {
            Command::Produce(p) => self.produce(now, p),
            Command::Flush(waiter) => {
                let id = self.core.flush(now);
                self.flushes.insert(id, waiter);
            }
            Command::Cancel(0) => {}
            Command::Cancel(ticket) => {
                // Rare: a scan beats keeping a second index per record.
                if let Some(id) = self.records.find(|e| e.ticket == ticket) {
                    self.core.cancel(now, id);
                }
            }
            Command::Close(waiter) => self.begin_close(now, waiter),
            Command::ConsumeTopics(topics) => self.core.consume_topics(now, topics),
            Command::ConsumeRegex(patterns) => {
                if let Err(e) = self.core.consume_regex(now, patterns) {
                    // Checked by the caller already; only a bug lands here.
                    tracing::error!(error = %e, "regex subscription refused");
                }
            }
            Command::ConsumePartitions(parts) => self.core.consume_partitions(now, parts),
            Command::Pause(topic, partitions, true) => {
                self.core.pause(now, &topic, partitions.as_deref())
            }
            Command::Pause(topic, partitions, false) => {
                self.core.resume(now, &topic, partitions.as_deref())
            }
            Command::PollFetches(max, waiter) => {
                self.fetch_waiters.push_back((max, waiter));
                self.answer_fetch_waiters(now);
            }
            Command::BeginTransaction(reply) => {
                let _ = reply.send(self.core.begin_transaction(now));
            }
            Command::EndTransaction(how, reply) => match self.core.end_transaction(now, how) {
                Ok(id) => {
                    self.txn_ends.insert(id, reply);
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::SendOffsetsToTransaction(offsets, group, reply) => {
                let _ = reply.send(match group {
                    Some(g) => self.core.send_offsets_to_transaction_for(now, offsets, g),
                    None => self.core.send_offsets_to_transaction(now, offsets),
                });
            }
            Command::Commit(request, waiter) => {
                self.group.commit(&mut self.core, now, request, waiter)
            }
            Command::AllowRebalance => self.core.allow_rebalance(now),
            Command::NextGroupEvent(reader) => self.group.next_event(reader),
            Command::Abort(waiter) => {
                tracing::debug!("aborting: no flush, no commit, no LeaveGroup");
                self.close_waiters.extend(waiter);
                self.core.abort(now);
                self.done = true;
            }
        }
    }

    /// Takes a record on the caller's thread, for an adapter that keeps
    /// the session behind a lock its callers share with the driver (as
    /// librdkafka appends to a partition's queue in `produce`): no
    /// command crosses a channel per record. Callers waiting on the
    /// outcome are woken before this returns.
    ///
    /// True when the driver must drain now ([`Client::take_needs_poll`]:
    /// the record opened or readied a batch, waits, or failed); false when
    /// it only joined an open batch, whose deadline the driver has.
    pub fn intake(&mut self, now: Timestamp, request: ProduceRequest<P>) -> bool {
        self.produce(now, request);
        self.wake_all();
        self.core.take_needs_poll()
    }

    /// Feeds what a connection reported. Reports on a connection the core
    /// no longer knows (a task that lagged behind a close) are dropped.
    pub fn handle_input(&mut self, now: Timestamp, input: Input) {
        let (conn, ends) = match &input {
            Input::Connected(c) | Input::Received(c, _) => (*c, false),
            Input::ConnectFailed(c, _) | Input::Closed(c, _) => (*c, true),
            Input::Timeout => return self.handle_timeout(now),
        };
        let known = if ends {
            self.live.remove(&conn)
        } else {
            self.live.contains(&conn)
        };
        if known {
            self.core.handle_input(now, input);
        }
    }

    /// The deadline from [`Session::poll_timer`] passed.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.core.handle_input(now, Input::Timeout);
    }

    /// The next connection action; events are turned into caller
    /// completions on the way. Call after every command or input until
    /// `None`, as [`Client::poll_output`].
    #[must_use = "connection actions must be carried out; drain until None"]
    pub fn poll_io(&mut self, now: Timestamp) -> Option<Io> {
        while let Some(out) = self.core.poll_output(now) {
            match out {
                Output::Connect { conn, addr } => {
                    self.live.insert(conn);
                    let timeout = self.core.config().conn.request_timeout;
                    return Some(Io::Connect {
                        conn,
                        addr,
                        timeout,
                    });
                }
                Output::Transmit { conn, data } => {
                    if self.live.contains(&conn) {
                        return Some(Io::Transmit { conn, data });
                    }
                    tracing::error!(%conn, "the core wrote to a connection it never opened");
                }
                Output::Close(conn) => {
                    tracing::debug!(%conn, "closing connection");
                    self.live.remove(&conn);
                    return Some(Io::Close(conn));
                }
                Output::Event(event) => self.on_event(now, event),
            }
        }
        self.wake_all();
        None
    }

    /// Holds a caller's wake-up back until the end of the drain.
    fn defer(&mut self, wake: Option<P::Wake>) {
        self.wakes.extend(wake);
    }

    /// Wakes every caller whose record changed during the drain.
    fn wake_all(&mut self) {
        for w in self.wakes.drain(..) {
            P::wake(w);
        }
    }

    /// The core's next deadline, and whether it changed since the last
    /// call. Call after draining [`Session::poll_io`].
    pub fn poll_timer(&mut self) -> TimerUpdate {
        let deadline = self.core.poll_timeout();
        let rearm = deadline.is_some() && deadline != self.armed;
        self.armed = deadline;
        TimerUpdate { deadline, rearm }
    }

    /// Ends the session after the loop: close waiters hear the core is
    /// closed; every record still waiting fails with
    /// [`ProduceError::Closed`] and every `poll_fetches` caller gets
    /// nothing. Hands back the core client in the state it ended in, for a
    /// driver that inspects it afterwards (the simulator keeps a crashed
    /// client's state).
    pub fn finish(mut self) -> Client {
        for (_, waiter) in self.fetch_waiters.drain(..) {
            let _ = waiter.send(Vec::new());
        }
        self.group.finish();
        for waiter in self.close_waiters.drain(..) {
            let _ = waiter.send(());
        }
        for (_, reply) in self.txn_ends.drain() {
            let _ = reply.send(Err(TxnError::Closed));
        }
        while let Some(id) = self.records.find(|_| true) {
            if let Some(e) = self.records.remove(id) {
                let wake = e.waiter.complete(Err(ProduceError::Closed));
                self.defer(wake);
            }
        }
        self.wake_all();
        tracing::debug!("session finished");
        self.core
    }

    fn produce(&mut self, now: Timestamp, p: ProduceRequest<P>) {
        if self.closing.is_some() {
            return p.refuse(ProduceError::Closed);
        }
        let options = ProduceOptions {
            when_full: if p.fail_when_full {
                WhenFull::Fail
            } else {
                WhenFull::Wait
            },
            urgent: p.urgent,
        };
        let ProduceRequest {
            record,
            wall_ms,
            fail_when_full,
            urgent: _,
            ticket,
            mut waiter,
        } = p;
        let before = self.core.buffered_records();
        match self.core.produce_with(now, record, wall_ms, options) {
            Ok(id) => {
                // The core counts a record as buffered once it has space;
                // one that waits for space is admitted at
                // `Event::Buffered`. A refused `try_produce` never gets
                // here.
                if fail_when_full || self.core.buffered_records() > before {
                    let wake = waiter.buffered();
                    self.defer(wake);
                }
                if let Err(e) = self.records.insert(id, Entry { ticket, waiter }) {
                    // The core hands out ids in order; only a bug lands here.
                    tracing::error!(id = id.0, "record id out of order; its result is lost");
                    let wake = e.waiter.complete(Err(ProduceError::Closed));
                    self.defer(wake);
                }
            }
            Err(error) if fail_when_full => {
                let wake = waiter.refused(error);
                self.defer(wake);
            }
            Err(error) => {
                let wake = waiter.complete(Err(error));
                self.defer(wake);
            }
        }
    }

    fn on_event(&mut self, now: Timestamp, event: Event) {
        match event {
            Event::Buffered(id) => {
                if let Some(e) = self.records.get_mut(id) {
                    let wake = e.waiter.buffered();
                    self.defer(wake);
                }
            }
            Event::Delivered { id, meta } => {
                if let Some(e) = self.records.remove(id) {
                    let wake = e.waiter.complete(Ok(meta));
                    self.defer(wake);
                }
            }
            Event::ProduceFailed { id, record, error } => {
                tracing::debug!(id = id.0, topic = %record.topic, %error, "record failed");
                if let Some(e) = self.records.remove(id) {
                    let wake = e.waiter.complete(Err(error));
                    self.defer(wake);
                }
            }
            Event::Flushed(id) => {
                if let Some(waiter) = self.flushes.remove(&id) {
                    let _ = waiter.send(());
                }
                if self.closing == Some(id) {
                    tracing::debug!("flushed; closing the core");
                    self.core.close(now);
                    // A group member closes after it left (GroupLeft).
                    self.done = self.core.is_closed();
                }
            }
            Event::FetchesReady => self.answer_fetch_waiters(now),
            Event::TransactionEnded(outcome) => {
                if let Some(reply) = self.txn_ends.remove(&outcome.id) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            Event::GroupLeft => {
                tracing::debug!("left the group");
                self.done = self.closing.is_some() && self.core.is_closed();
            }
            Event::PartitionsAssigned(p) => self.group.push(GroupEvent::PartitionsAssigned(p)),
            Event::PartitionsRevoked(p) => {
                self.group.push(GroupEvent::PartitionsRevoked(p));
                self.release_fetch_waiters_for_txn_end();
            }
            Event::PartitionsLost(p) => {
                self.group.push(GroupEvent::PartitionsLost(p));
                self.release_fetch_waiters_for_txn_end();
            }
            Event::GroupError(e) => self.group.push(GroupEvent::Error(e)),
            Event::CommitFinished(outcome) => self.group.commit_finished(outcome),
            other => tracing::debug!(?other, "event the session does not act on; ignored"),
        }
    }

    /// Hands buffered records to waiting `poll_fetches` callers, oldest
    /// first, while there are any.
    fn answer_fetch_waiters(&mut self, now: Timestamp) {
        self.fetch_waiters
            .retain(|(_, waiter)| !waiter.is_abandoned());
        while let Some(&(max, _)) = self.fetch_waiters.front() {
            let fetched = self.core.poll_fetches(now, max);
            if fetched.is_empty() {
                break;
            }
            let Some((_, waiter)) = self.fetch_waiters.pop_front() else {
                break;
            };
            match waiter.send_reclaimable(fetched) {
                Ok(delivery) => self.fetch_deliveries.push(delivery),
                // Gone between the check and the hand-over: the records
                // go back for the next poll.
                Err(unsent) => self.core.unpoll_fetches(now, unsent),
            }
        }
    }

    /// Records handed to a `poll_fetches` caller that left without reading
    /// them go back to the core, in front of what it buffered since, so
    /// the next poll gets them and no offset counts them as polled. Run
    /// before every command, so that a command after the drop (a seek, a
    /// commit) sees them back.
    fn reclaim_fetches(&mut self, now: Timestamp) {
        if self.fetch_deliveries.is_empty() {
            return;
        }
        let mut returned = Vec::new();
        self.fetch_deliveries.retain(|d| match d.reclaim() {
            Reclaim::Pending => true,
            Reclaim::Taken => false,
            Reclaim::Returned(fetched) => {
                returned.push(fetched);
                false
            }
        });
        // Later deliveries go back first, so each lands in front of what
        // followed it.
        for fetched in returned.into_iter().rev() {
            tracing::debug!(
                partitions = fetched.len(),
                "a poll_fetches caller left unread records; they are polled again"
            );
            self.core.unpoll_fetches(now, fetched);
        }
    }

    /// A group-transact session holds a revoke or loss until the open
    /// transaction ends: callers waiting for records (which may never
    /// come, the partitions being gone) get none now, so the application
    /// goes on to end the transaction and the group can rebalance.
    fn release_fetch_waiters_for_txn_end(&mut self) {
        if !self.core.transaction_holds_rebalance() {
            return;
        }
        for (_, waiter) in self.fetch_waiters.drain(..) {
            let _ = waiter.send(Vec::new());
        }
    }

    /// Flushes, then (at that flush's event) closes the core.
    fn begin_close(&mut self, now: Timestamp, waiter: Option<Reply<()>>) {
        if let Some(w) = waiter {
            if self.done {
                let _ = w.send(());
                return;
            }
            self.close_waiters.push(w);
        }
        if self.closing.is_none() {
            tracing::debug!("closing: flushing first");
            self.closing = Some(self.core.flush(now));
        }
    }
}

#[cfg(test)]
mod tests;
