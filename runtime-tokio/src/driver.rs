//! The driver task: the one place the core [`sansa_core::Client`] lives.
//!
//! Its loop is the core's contract and nothing more: feed one input or
//! command, drain `poll_output` until `None` (carrying out each output),
//! then wait for a command, a connection event or the core's deadline,
//! whichever comes first. Every Kafka decision is the core's; the driver
//! only keeps the books that tie the core's ids to the user's futures.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sansa_core::client::{ConnId, ProduceOptions};
use sansa_core::consumer::{FetchedPartition, StartOffset};
use sansa_core::producer::{ProduceError, ProduceId, Record, WhenFull};
use sansa_core::{Event, Input, Output, Timestamp};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::Instrument;

use crate::conn::ConnHandle;
use crate::produce::Sink;
use crate::waiters::ById;

/// Events from connection tasks waiting for the driver; readers wait when
/// it is full rather than buffer without bound.
const CONN_EVENTS: usize = 1024;

/// At most this many commands (or connection events) are fed to the core
/// between two drains. Draining after every one made the per-poll
/// bookkeeping (timers, ready partitions, deadlines) cost more than the
/// records themselves; a bound keeps a flood of produces from holding
/// back bytes that are ready to write.
const BURST: usize = 256;

/// What a [`crate::Client`] asks of the driver.
#[derive(Debug)]
pub(crate) enum Command {
    Produce(ProduceCommand),
    Flush(oneshot::Sender<()>),
    Cancel(u64),
    Close(oneshot::Sender<()>),
    ConsumeTopics(Vec<String>),
    ConsumeRegex(Vec<String>),
    ConsumePartitions(BTreeMap<String, BTreeMap<i32, StartOffset>>),
    Pause(String, Option<Vec<i32>>, bool),
    PollFetches(Option<usize>, oneshot::Sender<Vec<FetchedPartition>>),
}

/// One record to produce and where its results go.
#[derive(Debug)]
pub(crate) struct ProduceCommand {
    record: Record,
    /// Wall clock at the call, the record's timestamp unless it has one.
    wall_ms: i64,
    /// `try_produce`: refuse at once when the buffer is full, and report a
    /// refusal through the admission only.
    fail_when_full: bool,
    /// `produce_sync`: no linger.
    urgent: bool,
    /// The caller's name for this record, for cancelling; 0 for none.
    ticket: u64,
    /// Told when the record is in the buffer (or why it never will be),
    /// and how it ended.
    sink: Sink,
}

impl ProduceCommand {
    pub(crate) fn new(
        record: Record,
        fail_when_full: bool,
        urgent: bool,
        ticket: u64,
        sink: Sink,
    ) -> Self {
        ProduceCommand {
            record,
            wall_ms: wall_ms(),
            fail_when_full,
            urgent,
            ticket,
            sink,
        }
    }

    /// The record was refused before the core took it.
    pub(crate) fn refuse(self, error: ProduceError) {
        self.sink.refuse(error, self.fail_when_full);
    }
}

/// Milliseconds since the Unix epoch; 0 for a clock set before 1970.
fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A record the core has taken.
#[derive(Debug)]
struct Waiter {
    ticket: u64,
    sink: Sink,
}

/// Starts the driver of `core` on `runtime`.
pub(crate) fn spawn(
    runtime: &tokio::runtime::Handle,
    core: sansa_core::Client,
    commands: mpsc::UnboundedReceiver<Command>,
) {
    let client_id = core.config().conn.client_id.clone().unwrap_or_default();
    let span = tracing::info_span!("sansa", client = %client_id);
    let driver = Driver::new(core, commands);
    runtime.spawn(driver.run().instrument(span));
}

struct Driver {
    core: sansa_core::Client,
    /// The origin of the core's timestamps.
    origin: Instant,
    commands: mpsc::UnboundedReceiver<Command>,
    /// False once every handle is gone.
    commands_open: bool,
    conn_tx: mpsc::Sender<Input>,
    conn_rx: mpsc::Receiver<Input>,
    conns: HashMap<ConnId, ConnHandle>,
    waiters: ById<Waiter>,
    flushes: HashMap<u64, oneshot::Sender<()>>,
    /// The flush a close waits for, once a close began.
    closing: Option<u64>,
    close_waiters: Vec<oneshot::Sender<()>>,
    /// `poll_fetches` calls waiting for records, oldest first.
    fetch_waiters: Vec<(Option<usize>, oneshot::Sender<Vec<FetchedPartition>>)>,
    /// The core is closed; the loop ends.
    done: bool,
}

impl Driver {
    fn new(core: sansa_core::Client, commands: mpsc::UnboundedReceiver<Command>) -> Self {
        let (conn_tx, conn_rx) = mpsc::channel(CONN_EVENTS);
        Driver {
            core,
            origin: Instant::now(),
            commands,
            commands_open: true,
            conn_tx,
            conn_rx,
            conns: HashMap::new(),
            waiters: ById::default(),
            flushes: HashMap::new(),
            closing: None,
            close_waiters: Vec::new(),
            fetch_waiters: Vec::new(),
            done: false,
        }
    }

    fn now(&self) -> Timestamp {
        let nanos = self.origin.elapsed().as_nanos();
        Timestamp::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    fn instant(&self, t: Timestamp) -> Instant {
        self.origin
            .checked_add(Duration::from_nanos(t.as_nanos()))
            .unwrap_or_else(far_future)
    }

    async fn run(mut self) {
        tracing::debug!("driver started");
        let sleep = tokio::time::sleep_until(far_future());
        tokio::pin!(sleep);
        let mut armed = None;
        loop {
            self.drain();
            if self.done {
                break;
            }
            // The core's deadline is always after the `now` of the drain,
            // so a timer that fired is re-armed for a new one.
            let deadline = self.core.poll_timeout();
            if let Some(t) = deadline.filter(|&t| armed != Some(t)) {
                sleep.as_mut().reset(self.instant(t));
            }
            armed = deadline;
            tokio::select! {
                Some(input) = self.conn_rx.recv() => {
                    let now = self.now();
                    self.on_conn_input(now, input);
                    // Whatever else arrived meanwhile is fed before the
                    // next drain: one drain per burst, not per input.
                    for _ in 1..BURST {
                        match self.conn_rx.try_recv() {
                            Ok(input) => self.on_conn_input(now, input),
                            Err(_) => break,
                        }
                    }
                }
                cmd = self.commands.recv(), if self.commands_open => match cmd {
                    Some(cmd) => {
                        let now = self.now();
                        self.on_command(now, cmd);
                        for _ in 1..BURST {
                            match self.commands.try_recv() {
                                Ok(cmd) => self.on_command(now, cmd),
                                Err(_) => break,
                            }
                        }
                    }
                    None => {
                        tracing::debug!("every handle dropped; closing");
                        self.commands_open = false;
                        self.begin_close(None);
                    }
                },
                () = &mut sleep, if deadline.is_some() => {
                    tracing::trace!(target: "sansa_tokio::timer", "deadline reached");
                    let now = self.now();
                    self.core.handle_input(now, Input::Timeout);
                }
            }
        }
        // The core closed every connection it knew; drop any it had not
        // opened yet as well.
        self.conns.clear();
        for w in self.close_waiters.drain(..) {
            let _ = w.send(());
        }
        tracing::debug!("driver stopped");
    }

    /// Carries out every output the core has.
    fn drain(&mut self) {
        let now = self.now();
        while let Some(out) = self.core.poll_output(now) {
            match out {
                Output::Connect { conn, addr } => {
                    let timeout = self.core.config().conn.request_timeout;
                    let handle = ConnHandle::open(conn, addr, timeout, self.conn_tx.clone());
                    self.conns.insert(conn, handle);
                }
                Output::Transmit { conn, data } => match self.conns.get(&conn) {
                    Some(c) => c.write(data),
                    None => {
                        tracing::error!(%conn, "the core wrote to a connection it never opened")
                    }
                },
                Output::Close(conn) => {
                    tracing::debug!(%conn, "closing connection");
                    self.conns.remove(&conn);
                }
                Output::Event(event) => self.on_event(now, event),
                other => tracing::error!(?other, "output this driver does not know; ignored"),
            }
        }
    }

    fn on_conn_input(&mut self, now: Timestamp, input: Input) {
        let conn = match &input {
            Input::Connected(c)
            | Input::ConnectFailed(c, _)
            | Input::Received(c, _)
            | Input::Closed(c, _) => *c,
            _ => return,
        };
        // A task may report after the core closed its connection; the core
        // asked to hear nothing more about it.
        if !self.conns.contains_key(&conn) {
            return;
        }
        if matches!(input, Input::ConnectFailed(..) | Input::Closed(..)) {
            self.conns.remove(&conn);
        }
        self.core.handle_input(now, input);
    }

    fn on_command(&mut self, now: Timestamp, cmd: Command) {
        match cmd {
            Command::Produce(p) => self.on_produce(now, p),
            Command::Flush(tx) => {
                let id = self.core.flush(now);
                self.flushes.insert(id, tx);
            }
            Command::Cancel(0) => {}
            Command::Cancel(ticket) => {
                // Rare: a scan beats keeping a second index per record.
                if let Some(id) = self.waiters.find(|w| w.ticket == ticket) {
                    self.core.cancel(now, id);
                }
            }
            Command::Close(tx) => self.begin_close(Some(tx)),
            Command::ConsumeTopics(topics) => self.core.consume_topics(now, topics),
            Command::ConsumeRegex(patterns) => {
                if let Err(e) = self.core.consume_regex(now, patterns) {
                    // Checked by the caller already; only a bug lands here.
                    tracing::error!(error = %e, "regex subscription refused");
                }
            }
            Command::ConsumePartitions(parts) => self.core.consume_partitions(now, parts),
            Command::Pause(topic, partitions, paused) => {
                if paused {
                    self.core.pause(now, &topic, partitions.as_deref());
                } else {
                    self.core.resume(now, &topic, partitions.as_deref());
                }
            }
            Command::PollFetches(max, tx) => {
                self.fetch_waiters.push((max, tx));
                self.answer_fetch_waiters(now);
            }
        }
    }

    /// Hands buffered records to waiting `poll_fetches` calls, oldest
    /// first, while there are any.
    fn answer_fetch_waiters(&mut self, now: Timestamp) {
        // A caller that gave up (dropped its future) is skipped.
        self.fetch_waiters.retain(|(_, tx)| !tx.is_closed());
        while !self.fetch_waiters.is_empty() {
            let (max, _) = self.fetch_waiters[0];
            let fetched = self.core.poll_fetches(now, max);
            if fetched.is_empty() {
                break;
            }
            let (_, tx) = self.fetch_waiters.remove(0);
            if let Err(unsent) = tx.send(fetched) {
                // Gone between the check and the send: the records are
                // lost to it, so log rather than drop them silently.
                tracing::warn!(
                    partitions = unsent.len(),
                    "a poll_fetches caller left; records dropped"
                );
            }
        }
    }

    fn on_produce(&mut self, now: Timestamp, p: ProduceCommand) {
        if self.closing.is_some() {
            p.refuse(ProduceError::Closed);
            return;
        }
        let options = ProduceOptions {
            when_full: if p.fail_when_full {
                WhenFull::Fail
            } else {
                WhenFull::Wait
            },
            urgent: p.urgent,
        };
        let ProduceCommand {
            record,
            wall_ms,
            fail_when_full,
            urgent: _,
            ticket,
            mut sink,
        } = p;
        let before = self.core.buffered_records();
        match self.core.produce_with(now, record, wall_ms, options) {
            Ok(id) => {
                // The core counts a record as buffered once it has space;
                // one that waits for space is counted at `Event::Buffered`.
                // A record refused by `try_produce` never gets here.
                if fail_when_full || self.core.buffered_records() > before {
                    sink.admit(Ok(()));
                }
                if let Err(w) = self.waiters.insert(id, Waiter { ticket, sink }) {
                    // The core hands out ids in order; only a bug lands here.
                    tracing::error!(id = id.0, "record id out of order; its result is lost");
                    w.sink.complete(Err(ProduceError::Closed));
                }
            }
            Err(error) => sink.refuse(error, fail_when_full),
        }
    }

    fn on_event(&mut self, now: Timestamp, event: Event) {
        match event {
            Event::Buffered(id) => {
                if let Some(w) = self.waiters.get_mut(id) {
                    w.sink.admit(Ok(()));
                }
            }
            Event::Delivered { id, meta } => {
                if let Some(w) = self.finish(id) {
                    w.sink.complete(Ok(meta));
                }
            }
            Event::ProduceFailed { id, record, error } => {
                tracing::debug!(
                    id = id.0,
                    topic = %record.topic,
                    %error,
                    "record failed"
                );
                if let Some(w) = self.finish(id) {
                    w.sink.complete(Err(error));
                }
            }
            Event::Flushed(id) => {
                if let Some(tx) = self.flushes.remove(&id) {
                    let _ = tx.send(());
                }
                if self.closing == Some(id) {
                    tracing::debug!("flushed; closing the core");
                    self.core.close(now);
                    self.done = true;
                }
            }
            Event::FetchesReady => self.answer_fetch_waiters(now),
            other => tracing::debug!(?other, "event this driver does not know; ignored"),
        }
    }

    fn finish(&mut self, id: ProduceId) -> Option<Waiter> {
        self.waiters.remove(id)
    }

    /// Flushes, then (at that flush's event) closes the core.
    fn begin_close(&mut self, waiter: Option<oneshot::Sender<()>>) {
        if let Some(w) = waiter {
            self.close_waiters.push(w);
        }
        if self.closing.is_none() {
            tracing::debug!("closing: flushing first");
            let now = self.now();
            self.closing = Some(self.core.flush(now));
        }
    }
}

/// A deadline that never comes in practice (a year away).
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(365 * 24 * 3600)
}
