//! The TCP front: the simulated cluster on real sockets and the wall
//! clock, so that any Kafka client (librdkafka, the Java client, sansa's
//! own adapters) can talk to it.
//!
//! One listener per broker; each broker advertises the address it is bound
//! to, so Metadata sends clients to the right socket. One task owns the
//! [`Cluster`] and feeds it what every connection reads, in arrival order;
//! the cluster's answers go back through a writer task per connection. The
//! cluster is the same sans-IO machine the deterministic [`World`] drives:
//! nothing here knows Kafka.
//!
//! ```no_run
//! # async fn example() -> std::io::Result<()> {
//! use sansa_sim::{tcp::TcpCluster, ClusterConfig};
//!
//! let mut config = ClusterConfig::new(3);
//! config.auto_create_topics = true;
//! let mut server = TcpCluster::bind("127.0.0.1".parse().unwrap(), config).await?;
//! server.cluster_mut().create_topic("events", 6, 3).expect("created");
//! println!("bootstrap.servers={}", server.bootstrap());
//! let handle = server.spawn();
//! // ... run clients against handle.bootstrap() ...
//! handle.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # librdkafka
//!
//! Point `bootstrap.servers` at [`TcpCluster::bootstrap`] (or the address
//! given to [`serve`]). librdkafka asks ApiVersions first (the default
//! `api.version.request=true`) and picks its record format from the Fetch
//! versions advertised: Fetch starts at v4 here, so it writes and reads
//! magic v2 batches, and idempotent producing (`enable.idempotence=true`)
//! works through InitProducerId. Consumer groups work too (`group.id` and
//! `subscribe`, with any assignor, eager or cooperative): the simulated
//! group coordinator answers FindCoordinator, JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup and the offset APIs, its session and rebalance
//! timeouts on the wall clock. Transactions work too (transactions v1:
//! `transactional.id`, `send_offsets_to_transaction`, read_committed
//! consumers), their timeouts on the wall clock; KIP-890's v2 is not
//! advertised. Topics are created on first use when the
//! cluster allows it (`auto_create_topics`, on in [`serve`]), as Kafka's
//! `auto.create.topics.enable`; the first Metadata answer for a new topic
//! says LEADER_NOT_AVAILABLE, as Kafka's does, and librdkafka retries. The
//! interop test itself lives in the `tests/` crate.
//!
//! [`World`]: crate::World

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use bytes::Bytes;
use sansa_core::Timestamp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::cluster::{Cluster, ClusterConfig, ClusterOutput, NodeId, ServerConnId};
use crate::rng::SimRng;

/// A closure run on the cluster by the engine task.
type Job = Box<dyn FnOnce(&mut Cluster) + Send>;

enum Msg {
    Accepted {
        node: NodeId,
        writer: mpsc::UnboundedSender<Option<Bytes>>,
        reply: oneshot::Sender<Option<ServerConnId>>,
    },
    Bytes(ServerConnId, Bytes),
    Closed(ServerConnId),
    Run(Job),
    Shutdown,
}

/// A simulated cluster bound to TCP listeners, not yet serving.
#[derive(Debug)]
pub struct TcpCluster {
    cluster: Cluster,
    listeners: Vec<(NodeId, TcpListener)>,
}

impl TcpCluster {
    /// Binds a listener for every broker of `config` on `ip`, at any free
    /// port, and advertises the bound addresses.
    pub async fn bind(ip: IpAddr, config: ClusterConfig) -> io::Result<Self> {
        let nodes: Vec<NodeId> = config.brokers.iter().map(|b| b.node).collect();
        let mut listeners = Vec::with_capacity(nodes.len());
        for node in nodes {
            listeners.push((node, TcpListener::bind(SocketAddr::new(ip, 0)).await?));
        }
        Self::with_listeners(config, listeners)
    }

    /// Serves `config`'s brokers on listeners the caller bound, in broker
    /// order (one per broker).
    pub fn with_listeners(
        config: ClusterConfig,
        listeners: Vec<(NodeId, TcpListener)>,
    ) -> io::Result<Self> {
        // Topic ids and random faults still come from a seed: the same
        // seed gives the same ids on every run.
        let mut cluster = Cluster::new(config, SimRng::new(0x7463_7066));
        for (node, l) in &listeners {
            let a = l.local_addr()?;
            cluster.set_address(*node, &a.ip().to_string(), i32::from(a.port()));
        }
        Ok(TcpCluster { cluster, listeners })
    }

    /// The cluster, to set up before serving (topics, faults).
    pub fn cluster_mut(&mut self) -> &mut Cluster {
        &mut self.cluster
    }

    /// Every broker's address, comma-separated: `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.addrs()
            .iter()
            .map(SocketAddr::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The bound addresses, in broker order.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|(_, l)| l.local_addr().ok())
            .collect()
    }

    /// Serves until [`TcpHandle::shutdown`] (from [`TcpCluster::spawn`])
    /// or forever.
    pub async fn run(self) -> io::Result<()> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.serve_with(tx, rx).await
    }

    /// Serves on a task of the current tokio runtime; the handle controls
    /// and stops it.
    pub fn spawn(self) -> TcpHandle {
        let addrs = self.addrs();
        let (tx, rx) = mpsc::unbounded_channel();
        let engine_tx = tx.clone();
        let task = tokio::spawn(async move {
            let _ = self.serve_with(engine_tx, rx).await;
        });
        TcpHandle { addrs, tx, task }
    }

    async fn serve_with(
        self,
        tx: mpsc::UnboundedSender<Msg>,
        rx: mpsc::UnboundedReceiver<Msg>,
    ) -> io::Result<()> {
        let mut acceptors = Vec::new();
        for (node, listener) in self.listeners {
            acceptors.push(tokio::spawn(accept_loop(node, listener, tx.clone())));
        }
        drop(tx);
        engine(self.cluster, rx).await;
        for a in acceptors {
            a.abort();
        }
        Ok(())
    }
}

/// Controls a cluster served by [`TcpCluster::spawn`].
#[derive(Debug)]
pub struct TcpHandle {
    addrs: Vec<SocketAddr>,
    tx: mpsc::UnboundedSender<Msg>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Msg::Accepted { .. } => "Accepted",
            Msg::Bytes(..) => "Bytes",
            Msg::Closed(_) => "Closed",
            Msg::Run(_) => "Run",
            Msg::Shutdown => "Shutdown",
        })
    }
}

impl TcpHandle {
    /// Every broker's address, comma-separated: `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.addrs
            .iter()
            .map(SocketAddr::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The bound addresses, in broker order.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Runs `f` on the cluster between two requests (to inspect logs,
    /// crash a broker, move a leader) and returns its result; `None` if
    /// the server has stopped.
    pub async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Cluster) -> T + Send + 'static,
    ) -> Option<T> {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |c| {
            let _ = reply.send(f(c));
        });
        self.tx.send(Msg::Run(job)).ok()?;
        answer.await.ok()
    }

    /// Stops serving and waits for the server task to end.
    pub async fn shutdown(self) {
        let _ = self.tx.send(Msg::Shutdown);
        let _ = self.task.await;
    }
}

/// Serves a one-broker cluster on `addr` that creates topics on first use
/// (one partition each, as Kafka's `num.partitions` default), until the
/// task is dropped or the listener fails.
pub async fn serve(addr: SocketAddr) -> io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    let mut config = ClusterConfig::new(1);
    config.auto_create_topics = true;
    TcpCluster::with_listeners(config, vec![(1, listener)])?
        .run()
        .await
}

async fn accept_loop(node: NodeId, listener: TcpListener, tx: mpsc::UnboundedSender<Msg>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let tx = tx.clone();
        tokio::spawn(connection(node, stream, tx));
    }
}

/// One client connection: registers with the engine (a broker that is
/// down refuses it by closing at once), then forwards what it reads and
/// writes what the engine sends.
async fn connection(node: NodeId, stream: TcpStream, tx: mpsc::UnboundedSender<Msg>) {
    let (writer_tx, mut writer_rx) = mpsc::unbounded_channel::<Option<Bytes>>();
    let (reply, accepted) = oneshot::channel();
    if tx
        .send(Msg::Accepted {
            node,
            writer: writer_tx,
            reply,
        })
        .is_err()
    {
        return;
    }
    let Ok(Some(id)) = accepted.await else {
        return; // broker down: dropping the stream closes it
    };
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        while let Some(Some(data)) = writer_rx.recv().await {
            if write.write_all(&data).await.is_err() {
                break;
            }
        }
        let _ = write.shutdown().await;
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match read.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tx
                    .send(Msg::Bytes(id, Bytes::copy_from_slice(&buf[..n])))
                    .is_err()
                {
                    break;
                }
            }
        }
    }
    let _ = tx.send(Msg::Closed(id));
    writer.abort();
}

/// What woke the engine.
enum Wake {
    Msg(Option<Msg>),
    Timer,
}

/// The task that owns the cluster.
async fn engine(mut cluster: Cluster, mut rx: mpsc::UnboundedReceiver<Msg>) {
    let start = Instant::now();
    let now = |start: Instant| {
        Timestamp::from_nanos(u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX))
    };
    let mut writers: BTreeMap<ServerConnId, mpsc::UnboundedSender<Option<Bytes>>> = BTreeMap::new();
    loop {
        let deadline = cluster.poll_timeout().map(|t| {
            let wait = t.saturating_duration_since(now(start));
            tokio::time::Instant::now() + wait
        });
        let wake = tokio::select! {
            m = rx.recv() => Wake::Msg(m),
            () = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            } => Wake::Timer,
        };
        match wake {
            Wake::Timer => cluster.handle_timeout(now(start)),
            Wake::Msg(None | Some(Msg::Shutdown)) => return,
            Wake::Msg(Some(Msg::Accepted {
                node,
                writer,
                reply,
            })) => {
                let id = cluster.accept(node);
                if let Some(id) = id {
                    writers.insert(id, writer);
                }
                let _ = reply.send(id);
            }
            Wake::Msg(Some(Msg::Bytes(id, data))) => cluster.handle_bytes(now(start), id, &data),
            Wake::Msg(Some(Msg::Closed(id))) => {
                writers.remove(&id);
                cluster.disconnect(id);
            }
            Wake::Msg(Some(Msg::Run(job))) => job(&mut cluster),
        }
        while let Some(out) = cluster.poll_output() {
            match out {
                ClusterOutput::Send { conn, data } => {
                    if let Some(w) = writers.get(&conn) {
                        let _ = w.send(Some(data));
                    }
                }
                ClusterOutput::Close { conn } => {
                    if let Some(w) = writers.remove(&conn) {
                        let _ = w.send(None);
                    }
                }
            }
        }
    }
}
