//! What the world drives for each client: the bare core
//! [`sansa_core::Client`] (the world's own workload clients, whose every
//! event the checkers read), or a [`Session`] serving an application's
//! async calls (a [`runtime`](super) client), exactly as an adapter's
//! driver does. Both read as a core client for the world's state queries
//! (idle, deadlines, group membership); connection inputs and outputs go
//! through the session when there is one, so its books stay right.

use std::ops::{Deref, DerefMut};

use sansa_core::client::{Input, Output};
use sansa_core::session::{self, Io, Session};
use sansa_core::{Client, Timestamp};

/// Where a record's result goes: the core's waker cells, as in the async
/// adapters.
pub(crate) type Sink = session::Sink;

/// A command of an application's client to its session.
pub(crate) type Command = session::Command<Sink>;

/// A client as the world drives it.
#[derive(Debug)]
pub(crate) enum Driven {
    /// A core client the world drives itself (its events are the
    /// world's to read).
    Core(Box<Client>),
    /// An application's client: a session that turns events into its
    /// callers' answers.
    Session(Box<Session<Sink>>),
}

impl Driven {
    /// An application's client over `core`.
    pub(crate) fn session(core: Client) -> Self {
        Driven::Session(Box::new(Session::new(core)))
    }

    /// Feeds a connection input or a timeout.
    pub(crate) fn handle_input(&mut self, now: Timestamp, input: Input) {
        match self {
            Driven::Core(c) => c.handle_input(now, input),
            Driven::Session(s) => s.handle_input(now, input),
        }
    }

    /// The next connection action (a session hands events to its callers
    /// on the way, so none comes out of it).
    pub(crate) fn poll_output(&mut self, now: Timestamp) -> Option<Output> {
        match self {
            Driven::Core(c) => c.poll_output(now),
            Driven::Session(s) => s.poll_io(now).map(|io| match io {
                Io::Connect { conn, addr, .. } => Output::Connect { conn, addr },
                Io::Transmit { conn, data } => Output::Transmit { conn, data },
                Io::Close(conn) => Output::Close(conn),
            }),
        }
    }

    /// Feeds an application's command; false for a bare core client.
    pub(crate) fn command(&mut self, now: Timestamp, cmd: Command) -> bool {
        match self {
            Driven::Core(_) => false,
            Driven::Session(s) => {
                s.handle_command(now, cmd);
                true
            }
        }
    }

    /// The session's core is closed (its loop would end).
    pub(crate) fn session_done(&self) -> bool {
        matches!(self, Driven::Session(s) if s.is_done())
    }

    /// Ends a session: its callers hear that the client is closed, and
    /// the core stays for inspection. With `abort`, the core is aborted
    /// first (a crash: no flush, commit or LeaveGroup), its connection
    /// actions discarded (the world has dropped its connections).
    pub(crate) fn finish(&mut self, now: Timestamp, abort: bool) {
        let Driven::Session(s) = self else {
            return;
        };
        if abort {
            s.handle_command(now, session::Command::Abort(None));
            while s.poll_io(now).is_some() {}
        }
        // A placeholder for the moment the session is moved out: a core
        // client needs a config, and the session's own is at hand.
        let Ok(placeholder) = Client::new(s.config().clone()) else {
            tracing::error!("a session's own config was refused; its callers wait forever");
            return;
        };
        let placeholder = Driven::Core(Box::new(placeholder));
        if let Driven::Session(s) = std::mem::replace(self, placeholder) {
            *self = Driven::Core(Box::new(s.finish()));
        }
    }
}

impl Deref for Driven {
    type Target = Client;

    fn deref(&self) -> &Client {
        match self {
            Driven::Core(c) => c,
            Driven::Session(s) => s.core(),
        }
    }
}

impl DerefMut for Driven {
    /// The core client past any session (see [`Session::core_mut`]): the
    /// world's workload calls use it; an application's client gets none.
    fn deref_mut(&mut self) -> &mut Client {
        match self {
            Driven::Core(c) => c,
            Driven::Session(s) => s.core_mut(),
        }
    }
}
