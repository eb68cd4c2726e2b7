//! sansa-core in your own event loop: no adapter, no async runtime, just
//! [`mio`] and the core's three verbs.
//!
//! The loop is the core's contract written out by hand:
//!
//! 1. after every command or input, drain `poll_output` (open a socket,
//!    queue bytes, close a socket, or an event for the application);
//! 2. sleep in `mio::Poll::poll` until a socket is ready or the core's
//!    `poll_timeout` passes;
//! 3. feed what happened back: `Connected`, `Received`, `Closed`,
//!    `Timeout`.
//!
//! It produces keyed records, waits for the flush, then consumes them
//! back. Run it against a broker:
//!
//! ```text
//! KAFKA_BROKERS=localhost:9092 cargo run -p sansa-core --example mio_loop
//! ```
//!
//! or with no `KAFKA_BROKERS` against an embedded simulated cluster. The
//! `sansa-tests` crate runs [`run`] against librdkafka's mock cluster and
//! Tansu, so this example cannot rot.

#![allow(clippy::print_stdout)]

use std::collections::{HashMap, VecDeque};
use std::error::Error;
use std::io::{ErrorKind, Read, Write};
use std::net::ToSocketAddrs;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use sansa_core::client::ConnId;
use sansa_core::consumer::ConsumedRecord;
use sansa_core::producer::Record;
use sansa_core::{Client, Config, Event, Input, Output, Timestamp};

/// One socket the core asked for.
struct Socket {
    stream: TcpStream,
    connected: bool,
    /// Bytes the core gave us that the socket has not taken yet.
    unsent: VecDeque<Bytes>,
}

/// The core, its sockets, and mio.
pub struct EventLoop {
    client: Client,
    poll: Poll,
    sockets: HashMap<ConnId, Socket>,
    origin: Instant,
}

impl EventLoop {
    /// A loop around a client of `config`.
    pub fn new(config: Config) -> Result<Self, Box<dyn Error>> {
        Ok(EventLoop {
            client: Client::new(config)?,
            poll: Poll::new()?,
            sockets: HashMap::new(),
            origin: Instant::now(),
        })
    }

    /// The core's clock: time since the loop began.
    pub fn now(&self) -> Timestamp {
        Timestamp::from_nanos(u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }

    /// The core, for commands (produce, flush, consume, poll_fetches).
    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    /// Runs until `done` says so, handing it every event. Gives up after
    /// `limit`.
    pub fn run_until(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&mut Client, Timestamp, Event) -> bool,
    ) -> Result<(), Box<dyn Error>> {
        let mut events = Events::with_capacity(128);
        let start = Instant::now();
        loop {
            // 1. Carry out everything the core wants done.
            let now = self.now();
            while let Some(output) = self.client.poll_output(now) {
                match output {
                    Output::Connect { conn, addr } => self.connect(now, conn, &addr)?,
                    Output::Transmit { conn, data } => {
                        if let Some(s) = self.sockets.get_mut(&conn) {
                            s.unsent.push_back(data);
                        }
                        self.write(now, conn);
                    }
                    Output::Close(conn) => {
                        if let Some(mut s) = self.sockets.remove(&conn) {
                            self.poll.registry().deregister(&mut s.stream)?;
                        }
                    }
                    Output::Event(event) => {
                        let finished = done(&mut self.client, now, event);
                        if finished {
                            return Ok(());
                        }
                    }
                    _ => {}
                }
            }
            if start.elapsed() > limit {
                return Err(format!("not done within {limit:?}").into());
            }
            // 2. Sleep until a socket is ready or the core's deadline.
            let deadline = self.client.poll_timeout();
            let wait = deadline.map(|t| t.saturating_duration_since(self.now()));
            self.poll.poll(&mut events, wait.or(Some(limit)))?;
            // 3. Feed back what happened.
            let now = self.now();
            for event in &events {
                let conn = ConnId(event.token().0 as u64);
                if event.is_writable() {
                    self.on_writable(now, conn);
                }
                if event.is_readable() || event.is_read_closed() {
                    self.read(now, conn);
                }
            }
            if deadline.is_some_and(|t| self.now() >= t) {
                self.client.handle_input(self.now(), Input::Timeout);
            }
        }
    }

    fn connect(&mut self, now: Timestamp, conn: ConnId, addr: &str) -> Result<(), Box<dyn Error>> {
        let resolved = addr.to_socket_addrs().map(|mut a| a.next());
        let stream = match resolved {
            Ok(Some(a)) => TcpStream::connect(a),
            Ok(None) => Err(ErrorKind::NotFound.into()),
            Err(e) => Err(e),
        };
        match stream {
            Ok(mut stream) => {
                let token = Token(usize::try_from(conn.0)?);
                let interest = Interest::READABLE | Interest::WRITABLE;
                self.poll
                    .registry()
                    .register(&mut stream, token, interest)?;
                let unsent = VecDeque::new();
                self.sockets.insert(
                    conn,
                    Socket {
                        stream,
                        connected: false,
                        unsent,
                    },
                );
            }
            Err(e) => self
                .client
                .handle_input(now, Input::ConnectFailed(conn, e.to_string())),
        }
        Ok(())
    }

    /// A connecting socket became writable: connected or failed. A
    /// connected one can take more bytes.
    fn on_writable(&mut self, now: Timestamp, conn: ConnId) {
        let Some(s) = self.sockets.get_mut(&conn) else {
            return;
        };
        if !s.connected {
            match (s.stream.take_error(), s.stream.peer_addr()) {
                (Ok(None), Ok(_)) => {
                    s.connected = true;
                    let _ = s.stream.set_nodelay(true);
                    self.client.handle_input(now, Input::Connected(conn));
                }
                (Ok(None), Err(e)) if e.kind() == ErrorKind::NotConnected => return,
                (Ok(Some(e)) | Err(e), _) | (Ok(None), Err(e)) => {
                    self.sockets.remove(&conn);
                    self.client
                        .handle_input(now, Input::ConnectFailed(conn, e.to_string()));
                    return;
                }
            }
        }
        self.write(now, conn);
    }

    fn write(&mut self, now: Timestamp, conn: ConnId) {
        let Some(s) = self.sockets.get_mut(&conn) else {
            return;
        };
        if !s.connected {
            return;
        }
        while let Some(front) = s.unsent.front_mut() {
            match s.stream.write(front) {
                Ok(n) if n == front.len() => drop(s.unsent.pop_front()),
                Ok(n) => drop(front.split_to(n)),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    self.sockets.remove(&conn);
                    self.client
                        .handle_input(now, Input::Closed(conn, e.to_string()));
                    return;
                }
            }
        }
    }

    fn read(&mut self, now: Timestamp, conn: ConnId) {
        let mut buf = [0u8; 64 * 1024];
        loop {
            let Some(s) = self.sockets.get_mut(&conn) else {
                return;
            };
            match s.stream.read(&mut buf) {
                Ok(0) => {
                    self.sockets.remove(&conn);
                    self.client
                        .handle_input(now, Input::Closed(conn, "closed by the broker".into()));
                    return;
                }
                Ok(n) => {
                    let data = Bytes::copy_from_slice(&buf[..n]);
                    self.client.handle_input(now, Input::Received(conn, data));
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    self.sockets.remove(&conn);
                    self.client
                        .handle_input(now, Input::Closed(conn, e.to_string()));
                    return;
                }
            }
        }
    }
}

/// Produces `count` keyed records to `topic`, waits for all of them,
/// then consumes them back from the start; returns what it read.
pub fn run(
    bootstrap: &str,
    topic: &str,
    count: usize,
) -> Result<Vec<ConsumedRecord>, Box<dyn Error>> {
    let config = Config::builder()
        .seed_brokers(bootstrap.split(','))
        .linger(Duration::from_millis(5))
        .build()?;
    let mut event_loop = EventLoop::new(config)?;
    let wall_ms = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis())?;
    let now = event_loop.now();
    for i in 0..count {
        let record = Record::new(topic, format!("value-{i}")).with_key(format!("key-{}", i % 10));
        event_loop.client().produce(now, record, wall_ms)?;
    }
    let flush = event_loop.client().flush(now);
    let mut delivered = 0;
    let mut failed = Vec::new();
    event_loop.run_until(Duration::from_secs(60), |_, _, event| match event {
        Event::Delivered { .. } => {
            delivered += 1;
            false
        }
        Event::ProduceFailed { error, .. } => {
            failed.push(error);
            false
        }
        Event::Flushed(id) => id == flush,
        _ => false,
    })?;
    if !failed.is_empty() {
        return Err(format!("{} records failed, the first: {}", failed.len(), failed[0]).into());
    }
    println!("produced {delivered} records to {topic}");

    let now = event_loop.now();
    event_loop.client().consume_topics(now, [topic]);
    let mut consumed = Vec::new();
    event_loop.run_until(Duration::from_secs(60), |client, now, event| {
        if event == Event::FetchesReady {
            for partition in client.poll_fetches(now, None) {
                consumed.extend(partition.records);
            }
        }
        consumed.len() >= count
    })?;
    println!("consumed {} records from {topic}", consumed.len());
    let now = event_loop.now();
    event_loop.client().close(now);
    Ok(consumed)
}

fn main() -> Result<(), Box<dyn Error>> {
    let topic = "mio-loop";
    match std::env::var("KAFKA_BROKERS") {
        Ok(brokers) => {
            run(&brokers, topic, 1_000)?;
        }
        Err(_) => {
            let bootstrap = embedded_cluster(topic)?;
            run(&bootstrap, topic, 1_000)?;
        }
    }
    Ok(())
}

/// A simulated 3-broker cluster on loopback, served on its own thread
/// (the simulator's TCP front runs on tokio; the loop above does not).
fn embedded_cluster(topic: &str) -> Result<String, Box<dyn Error>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let topic = topic.to_string();
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            let config = sansa_sim::ClusterConfig::new(3);
            let Ok(mut server) =
                sansa_sim::tcp::TcpCluster::bind([127, 0, 0, 1].into(), config).await
            else {
                return;
            };
            if server.cluster_mut().create_topic(&topic, 3, 3).is_err() {
                return;
            }
            let handle = server.spawn();
            let _ = tx.send(handle.bootstrap());
            std::future::pending::<()>().await;
        });
    });
    println!("no KAFKA_BROKERS: using an embedded simulated cluster");
    Ok(rx.recv()?)
}
