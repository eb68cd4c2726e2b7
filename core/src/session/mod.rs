//! A [`Client`] with the books a runtime adapter keeps beside it: which
//! caller waits for each record, flush, close and fetch. Every adapter
//! (tokio, smol, blocking) drives a [`Session`], so none of them holds
//! Kafka or bookkeeping logic of its own; each only plugs in how it
//! hands a result to a caller (a oneshot, a waker slot, a condvar)
//! through [`Waiters`].
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
//!   skipped.
//! - A connection input after the core closed that connection is dropped:
//!   the core asked to hear nothing more about it.
//! - A close of a group member ends only after the member left the group
//!   ([`Event::GroupLeft`]: final commit, then LeaveGroup), so an adapter
//!   never stops its loop under a commit in flight. An abort ends at once.
//! - Group commits and events: see [`group`](self::group)'s rules.

mod books;
mod builder;
mod conns;
pub mod group;
mod handles;
mod helpers;
mod outcome;
mod sink;
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
pub use sink::{Cells, Sink};
pub use waker::{WakerBatch, WakerCells, WakerSlot};

/// At most this many commands (or connection inputs) an adapter should
/// feed between two drains. Draining after every one made the per-poll
/// bookkeeping (timers, ready partitions, deadlines) cost more than the
/// records themselves; a bound keeps a flood of produces from holding
/// back bytes that are ready to write.
pub const BURST: usize = 256;

/// Who waits for one record: whether it got into the buffer, and how it
/// ended. [`Sink`] is one for any adapter's [`Cells`].
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

/// How an adapter hands results to its callers: one type per kind of
/// waiting caller, and what to do with each.
///
/// Functions rather than methods on the flush and fetch waiter types, so
/// an adapter can plug in a foreign type (a tokio oneshot sender) as it
/// is.
pub trait Waiters {
    /// Waits for one record.
    type Produce: ProduceWaiter;
    /// Waits for a flush or a close to finish.
    type Flush;
    /// Waits for fetched records (`poll_fetches`).
    type Fetch;
    /// Waits for one answer of type `T` (a commit's outcome, the next
    /// group event); dropped unanswered, the caller hears none.
    type Reply<T>;

    /// The flush or close is done.
    fn flushed(waiter: Self::Flush);
    /// The caller stopped waiting (dropped its future, timed out).
    fn fetch_abandoned(waiter: &Self::Fetch) -> bool;
    /// Hands records over; gives them back if the caller left meanwhile.
    fn fetched(
        waiter: Self::Fetch,
        fetched: Vec<FetchedPartition>,
    ) -> Result<(), Vec<FetchedPartition>>;
    /// Hands `value` over; gives it back if the caller left meanwhile.
    fn reply<T>(waiter: Self::Reply<T>, value: T) -> Result<(), T>;
    /// The caller stopped waiting for its answer.
    fn reply_abandoned<T>(waiter: &Self::Reply<T>) -> bool;
}

/// What a user's handle asks of the session.
#[derive(Debug)]
#[non_exhaustive]
pub enum Command<W: Waiters> {
    /// Produce a record.
    Produce(ProduceRequest<W::Produce>),
    /// Send what is buffered and tell the waiter when everything
    /// produced before is done.
    Flush(W::Flush),
    /// Cancel the record produced with this ticket (0: none).
    Cancel(u64),
    /// Flush, then close; the waiter hears when the core is closed.
    /// `None` when every handle is gone and nobody waits.
    Close(Option<W::Flush>),
    /// `consume_topics`.
    ConsumeTopics(Vec<String>),
    /// `consume_regex`; the patterns were checked by the caller.
    ConsumeRegex(Vec<String>),
    /// `consume_partitions`.
    ConsumePartitions(BTreeMap<String, BTreeMap<i32, StartOffset>>),
    /// Pause (`true`) or resume a topic's partitions (all with `None`).
    Pause(String, Option<Vec<i32>>, bool),
    /// Wait for at most this many fetched records (all with `None`).
    PollFetches(Option<usize>, W::Fetch),
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
    Commit(CommitRequest, W::Reply<CommitResult>),
    /// Let a rebalance step held for the application go on
    /// (`require_rebalance_ack`, `block_rebalance_on_poll`).
    AllowRebalance,
    /// Wait for the next [`GroupEvent`].
    NextGroupEvent(W::Reply<GroupEvent>),
    /// Stop at once as a crash would (no flush, commit or LeaveGroup);
    /// the waiter hears when the core is closed.
    Abort(Option<W::Flush>),
}

/// A caller waiting for one answer, whatever the adapter's way of handing
/// it over (a oneshot, a waker slot, a condvar): called once.
pub struct Reply<T>(Box<dyn FnOnce(T) + Send>);

impl<T> Reply<T> {
    /// A reply that hands the answer to `f`.
    pub fn new(f: impl FnOnce(T) + Send + 'static) -> Self {
        Reply(Box::new(f))
    }

    /// Hands over the answer.
    pub fn send(self, answer: T) {
        (self.0)(answer)
    }
}

impl<T> std::fmt::Debug for Reply<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reply")
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
/// use sansa_core::consumer::FetchedPartition;
/// use sansa_core::session::{Command, Outcome, ProduceWaiter, Session, Waiters};
/// use sansa_core::producer::ProduceError;
/// use sansa_core::{Client, Config, Timestamp};
///
/// /// Waiters that only note that a close finished.
/// struct Noting;
/// struct Ignored;
/// impl ProduceWaiter for Ignored {
///     type Wake = ();
///     fn buffered(&mut self) -> Option<()> { None }
///     fn complete(self, _: Outcome) -> Option<()> { None }
///     fn refused(self, _: ProduceError) -> Option<()> { None }
///     fn wake(_: ()) {}
/// }
/// impl Waiters for Noting {
///     type Produce = Ignored;
///     type Flush = std::rc::Rc<std::cell::Cell<bool>>;
///     type Fetch = ();
///     type Reply<T> = ();
///     fn flushed(done: Self::Flush) { done.set(true) }
///     fn fetch_abandoned(_: &()) -> bool { false }
///     fn fetched(_: (), _: Vec<FetchedPartition>) -> Result<(), Vec<FetchedPartition>> { Ok(()) }
///     fn reply<T>(_: (), _: T) -> Result<(), T> { Ok(()) }
///     fn reply_abandoned<T>(_: &()) -> bool { false }
/// }
///
/// let config = Config::builder().seed_brokers(["localhost:9092"]).build()?;
/// let mut session = Session::<Noting>::new(Client::new(config)?);
/// let closed = std::rc::Rc::new(std::cell::Cell::new(false));
/// let now = Timestamp::from_nanos(0);
/// session.handle_command(now, Command::Close(Some(closed.clone())));
/// while let Some(_io) = session.poll_io(now) {}
/// assert!(session.is_done(), "nothing to flush: closed at once");
/// session.finish();
/// assert!(closed.get());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Session<W: Waiters> {
    core: Client,
    /// Connections the core opened and has not closed or lost.
    live: HashSet<ConnId>,
    records: ById<Entry<W::Produce>>,
    flushes: HashMap<u64, W::Flush>,
    /// The flush a close waits for, once a close began.
    closing: Option<u64>,
    close_waiters: Vec<W::Flush>,
    /// `poll_fetches` callers waiting for records, oldest first.
    fetch_waiters: VecDeque<(Option<usize>, W::Fetch)>,
    /// Group commits waiting for their outcome, group events for readers.
    group: GroupBooks<W>,
    /// The core is closed; the adapter's loop ends.
    done: bool,
    /// The deadline last returned by `poll_timer`.
    armed: Option<Timestamp>,
    /// Callers waiting for a transaction's end, by the id the core gave.
    txn_ends: HashMap<u64, Reply<Result<TransactionOutcome, TxnError>>>,
    /// Callers' wake-ups held back until the end of the drain (see
    /// [`ProduceWaiter`]).
    wakes: Vec<<W::Produce as ProduceWaiter>::Wake>,
}

impl<W: Waiters> Session<W> {
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

    /// The core is closed: stop the loop, then call [`Session::finish`].
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Feeds a caller's command.
    pub fn handle_command(&mut self, now: Timestamp, cmd: Command<W>) {
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
            Command::BeginTransaction(reply) => reply.send(self.core.begin_transaction(now)),
            Command::EndTransaction(how, reply) => match self.core.end_transaction(now, how) {
                Ok(id) => {
                    self.txn_ends.insert(id, reply);
                }
                Err(e) => reply.send(Err(e)),
            },
            Command::SendOffsetsToTransaction(offsets, group, reply) => reply.send(match group {
                Some(g) => self.core.send_offsets_to_transaction_for(now, offsets, g),
                None => self.core.send_offsets_to_transaction(now, offsets),
            }),
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
    pub fn intake(&mut self, now: Timestamp, request: ProduceRequest<W::Produce>) -> bool {
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
    fn defer(&mut self, wake: Option<<W::Produce as ProduceWaiter>::Wake>) {
        self.wakes.extend(wake);
    }

    /// Wakes every caller whose record changed during the drain.
    fn wake_all(&mut self) {
        for w in self.wakes.drain(..) {
            W::Produce::wake(w);
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
    /// nothing.
    pub fn finish(mut self) {
        for (_, waiter) in self.fetch_waiters.drain(..) {
            let _ = W::fetched(waiter, Vec::new());
        }
        self.group.finish();
        for waiter in self.close_waiters.drain(..) {
            W::flushed(waiter);
        }
        for (_, reply) in self.txn_ends.drain() {
            reply.send(Err(TxnError::Closed));
        }
        while let Some(id) = self.records.find(|_| true) {
            if let Some(e) = self.records.remove(id) {
                let wake = e.waiter.complete(Err(ProduceError::Closed));
                self.defer(wake);
            }
        }
        self.wake_all();
        tracing::debug!("session finished");
    }

    fn produce(&mut self, now: Timestamp, p: ProduceRequest<W::Produce>) {
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
                    W::flushed(waiter);
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
                    reply.send(Ok(outcome));
                }
            }
            Event::GroupLeft => {
                tracing::debug!("left the group");
                self.done = self.closing.is_some() && self.core.is_closed();
            }
            Event::PartitionsAssigned(p) => self.group.push(GroupEvent::PartitionsAssigned(p)),
            Event::PartitionsRevoked(p) => self.group.push(GroupEvent::PartitionsRevoked(p)),
            Event::PartitionsLost(p) => self.group.push(GroupEvent::PartitionsLost(p)),
            Event::GroupError(e) => self.group.push(GroupEvent::Error(e)),
            Event::CommitFinished(outcome) => self.group.commit_finished(outcome),
            other => tracing::debug!(?other, "event the session does not act on; ignored"),
        }
    }

    /// Hands buffered records to waiting `poll_fetches` callers, oldest
    /// first, while there are any.
    fn answer_fetch_waiters(&mut self, now: Timestamp) {
        self.fetch_waiters
            .retain(|(_, waiter)| !W::fetch_abandoned(waiter));
        while let Some(&(max, _)) = self.fetch_waiters.front() {
            let fetched = self.core.poll_fetches(now, max);
            if fetched.is_empty() {
                break;
            }
            let Some((_, waiter)) = self.fetch_waiters.pop_front() else {
                break;
            };
            if let Err(unsent) = W::fetched(waiter, fetched) {
                // Gone between the check and the hand-over: the records
                // are lost to it, so log rather than drop them silently.
                tracing::warn!(
                    partitions = unsent.len(),
                    "a poll_fetches caller left; records dropped"
                );
            }
        }
    }

    /// Flushes, then (at that flush's event) closes the core.
    fn begin_close(&mut self, now: Timestamp, waiter: Option<W::Flush>) {
        if let Some(w) = waiter {
            if self.done {
                return W::flushed(w);
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
