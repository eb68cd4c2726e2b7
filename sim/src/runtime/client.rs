//! An application's client on the simulated cluster: the same calls as
//! `sansa_tokio::Client` (produce, `poll_fetches`, commits, group
//! events, close, abort), made of the same core templates, reaching a
//! [`Session`](sansa_core::session::Session) the world drives on virtual
//! time. A call hands a command to the client's inbox; the runtime feeds
//! the inbox to the session at the same virtual instant, before time
//! moves on, as an adapter's driver task drains its command channel.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use sansa_core::client::ConfigBuilder;
use sansa_core::producer::Record;
use sansa_core::session::ProduceRequest;

use super::driven::{Command, Sink};
use super::SimHandle;
use crate::clock::ClientClock;
use crate::world::ClientIdx;

/// Why a client could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The settings contradict each other or are out of range; the text
    /// says which.
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// Commands waiting for the runtime to feed them to the session.
#[derive(Debug, Default)]
pub(crate) struct Inbox(Mutex<InboxState>);

#[derive(Debug, Default)]
struct InboxState {
    commands: VecDeque<Command>,
    /// The session ended (closed, aborted or crashed): commands are
    /// dropped, which answers their callers as a closed client.
    closed: bool,
}

impl Inbox {
    fn lock(&self) -> MutexGuard<'_, InboxState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `cmd`, or gives it back when the client is closed.
    pub(crate) fn push(&self, cmd: Command) -> Result<(), Box<Command>> {
        let mut state = self.lock();
        if state.closed {
            return Err(Box::new(cmd));
        }
        state.commands.push_back(cmd);
        Ok(())
    }

    /// The oldest command waiting.
    pub(crate) fn pop(&self) -> Option<Command> {
        self.lock().commands.pop_front()
    }

    /// Puts a command the session could not take yet back in front.
    pub(crate) fn unpop(&self, cmd: Command) {
        self.lock().commands.push_front(cmd);
    }

    /// Whether commands wait.
    pub(crate) fn pending(&self) -> bool {
        !self.lock().commands.is_empty()
    }

    /// The session ended; hands back what was still queued, to be
    /// dropped by the caller (which answers each as closed).
    pub(crate) fn close(&self) -> VecDeque<Command> {
        let mut state = self.lock();
        state.closed = true;
        std::mem::take(&mut state.commands)
    }

    fn is_closed(&self) -> bool {
        self.lock().closed
    }
}

/// An application's Kafka client on the simulated cluster: a cheap,
/// cloneable handle, like `sansa_tokio::Client`, whose calls run on
/// virtual time. Build one with [`SimHandle::client`].
///
/// When the last handle is dropped the client flushes, commits and
/// leaves its group, then closes, as [`Client::close`] does.
#[derive(Debug, Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) inbox: Arc<Inbox>,
    pub(crate) index: ClientIdx,
    /// Names produce calls so a [`ProduceFuture`] can cancel its record;
    /// 0 is "not cancellable".
    tickets: AtomicU64,
}

sansa_core::async_produce_handles!(Weak<Inbox>);
sansa_core::async_group_commits!();

impl Client {
    /// The client's index in the [`World`](crate::World), for
    /// [`Fault`](crate::Fault)s that name a client.
    pub fn index(&self) -> ClientIdx {
        self.inner.index
    }

    sansa_core::async_client_calls!();

    sansa_core::client_consume_methods!();

    /// Whether the client is closed (closed, aborted or crashed).
    pub fn is_closed(&self) -> bool {
        self.inner.inbox.is_closed()
    }

    /// Queues a command; on a closed client it is refused, which answers
    /// its caller as closed.
    pub(crate) fn send(&self, cmd: Command) {
        if let Err(cmd) = self.inner.inbox.push(cmd) {
            cmd.refuse();
        }
    }

    fn next_ticket(&self) -> u64 {
        self.inner.tickets.fetch_add(1, Ordering::Relaxed)
    }

    fn downgrade(&self) -> Weak<Inbox> {
        Arc::downgrade(&self.inner.inbox)
    }

    fn send_cancel(inbox: &Weak<Inbox>, ticket: u64) {
        if let Some(inbox) = inbox.upgrade() {
            let _ = inbox.push(Command::Cancel(ticket));
        }
    }

    /// Hands a produce over. Its wall-clock timestamp is the client's
    /// virtual wall clock, stamped when the runtime feeds it to the
    /// session (the same virtual instant as this call).
    fn send_produce(
        &self,
        record: Record,
        fail_when_full: bool,
        urgent: bool,
        ticket: u64,
        sink: Sink,
    ) {
        let request = ProduceRequest {
            record,
            wall_ms: 0,
            fail_when_full,
            urgent,
            ticket,
            waiter: sink,
        };
        self.send(Command::Produce(request));
    }
}

/// Builds a [`Client`] on the simulated cluster: the adapters' settings
/// (see `sansa_tokio::ClientBuilder`). The seed brokers are the
/// simulated cluster's and the client's random seed is drawn from the
/// simulation's seed, whatever is set here.
#[derive(Debug, Clone)]
#[must_use]
pub struct ClientBuilder {
    config: ConfigBuilder,
    clock: ClientClock,
    sim: SimHandle,
}

impl ClientBuilder {
    pub(crate) fn new(sim: SimHandle) -> Self {
        ClientBuilder {
            config: sansa_core::Config::builder(),
            clock: ClientClock::EXACT,
            sim,
        }
    }

    sansa_core::client_builder_methods!();

    /// The client's clocks (skew, drift, wall offset against the
    /// world's). Default: exact.
    pub fn clock(mut self, clock: ClientClock) -> Self {
        self.clock = clock;
        self
    }

    /// Validates the settings and adds the client to the world. Nothing
    /// connects until there is work.
    pub async fn build(self) -> Result<Client, Error> {
        self.sim
            .add_client(self.config, self.clock)
            .map_err(Error::Config)
    }
}

impl Client {
    pub(crate) fn new(inbox: Arc<Inbox>, index: ClientIdx) -> Self {
        Client {
            inner: Arc::new(Inner {
                inbox,
                index,
                tickets: AtomicU64::new(1),
            }),
        }
    }
}
