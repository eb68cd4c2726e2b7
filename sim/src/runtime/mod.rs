//! The simulator as a runtime for an application's own tests: put your
//! producer, consumer and group logic on a simulated cluster, written as
//! async code with the same client calls as `sansa-tokio`, and run it
//! deterministically on virtual time with faults where you choose them.
//!
//! - [`Sim`] builds a [`World`] (cluster, virtual network, seeded RNG)
//!   from a seed and runs application tasks on it: [`Sim::block_on`] runs
//!   a main future (and every task it spawns) to its end.
//! - [`SimHandle`] is what tasks hold: [`SimHandle::client`] builds a
//!   [`Client`] (produce, `poll_fetches`, `commit_*`,
//!   `next_group_event`, `close`, `abort`, as on the adapters),
//!   [`SimHandle::sleep`] waits on virtual time, [`SimHandle::spawn`] and
//!   [`SimHandle::spawn_on`] start tasks, and the fault calls
//!   ([`SimHandle::crash_broker`], [`SimHandle::move_leader`],
//!   [`SimHandle::move_coordinator`], [`SimHandle::crash_client`], any
//!   [`Fault`] through [`SimHandle::apply`], random rates through
//!   [`SimHandle::with_world`]) break the cluster.
//! - [`AtLeastOnce`] checks a process-then-commit loop's promise;
//!   `sim/tests/app_at_least_once.rs` is a whole application test with it
//!   (member crashes mid-batch, broker crash, coordinator and leader moves,
//!   random faults), and shows it catching a loop that commits before it
//!   processes.
//! - Many seeds: run the test over [`scenario::seeds`](crate::scenario::seeds)
//!   (`SANSA_SIM_SEED=<n>` replays one, `SANSA_SIM_SEEDS=<count>` runs
//!   more); every [`SimError`] names its seed.
//!
//! It is one more runtime for the core's
//! [`Session`](sansa_core::session::Session): a client's calls become
//! session commands, which the world feeds to the session at the same
//! virtual instant; the world carries the session's bytes over its
//! virtual network to the simulated brokers. The executor polls woken
//! tasks in spawn order and lets virtual time move only when every task
//! waits, to the earliest of the world's next event and the tasks' next
//! timer. No tokio, no threads, no wall clock: the same seed is the same
//! run (the world's trace hash says so, see [`SimHandle::trace_hash`]).
//!
//! A process is a client and the tasks spawned on it with
//! [`SimHandle::spawn_on`]: crashing the client drops those tasks where
//! they wait (the work they held is lost as a killed process's is), its
//! connections are reset, and calls of other tasks on it answer as a
//! closed client. A restart is the application's: build a new client
//! with the same settings and spawn its loop again. A stalled client
//! ([`Fault::StallClient`]) is not driven for a while; the application's
//! tasks still run, and their calls on it wait.
//!
//! ```
//! use std::time::Duration;
//! use sansa_sim::runtime::{Sim, SimHandle};
//! use sansa_sim::ClusterConfig;
//! use sansa_sim::core::group::GroupConfig;
//! use sansa_sim::core::producer::Record;
//!
//! let mut sim = Sim::new(7, ClusterConfig::new(3));
//! let seen = sim.block_on(|h: SimHandle| async move {
//!     h.create_topic("orders", 2, 3).expect("topic");
//!     let producer = h.client().build().await.expect("client");
//!     for i in 0..10 {
//!         producer.produce_sync(Record::new("orders", format!("order-{i}"))).await.expect("delivered");
//!     }
//!     let mut group = GroupConfig::new("billing");
//!     group.auto_commit = None;
//!     let consumer = h.client().consumer_group(group).build().await.expect("client");
//!     consumer.consume_topics(["orders"]);
//!     // A leader moves under the consumer; it carries on.
//!     h.move_leader("orders", 0, None);
//!     let mut seen = 0;
//!     while seen < 10 {
//!         let records = consumer.poll_records(None).await;
//!         seen += records.len();
//!         h.sleep(Duration::from_millis(5)).await; // processing takes virtual time
//!         consumer.commit_records(&records).await.expect("committed");
//!     }
//!     consumer.close().await;
//!     seen
//! });
//! assert_eq!(sim.seed(), 7);
//! assert_eq!(seen, Ok(10));
//! ```

mod client;
pub(crate) mod driven;
mod executor;
mod ledger;
mod oneshot;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use sansa_core::protocol::ErrorCode;
use sansa_core::Timestamp;

use crate::clock::ClientClock;
use crate::cluster::{ClusterConfig, NodeId};
use crate::world::{ClientIdx, Fault, NetConfig, World};
use crate::Violation;
pub use client::{Client, ClientBuilder, Error, FirstError, ProduceFuture};
use client::{Inbox, Inner};
use driven::Command;
use executor::{Executor, TaskFuture};
pub use ledger::{AtLeastOnce, Breach};

/// How a run of [`Sim::block_on`] failed to finish its main task.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// Every task waits, no task timer is set and nothing is left to
    /// happen in the world: the main task can never finish.
    #[error(
        "seed {seed}: every task waits for something that can no longer happen \
         (at {at:?} of virtual time, {tasks} tasks left); replay with SANSA_SIM_SEED={seed}"
    )]
    Deadlock {
        /// The simulation's seed.
        seed: u64,
        /// Virtual time when it was found.
        at: Duration,
        /// Tasks not finished.
        tasks: usize,
    },
    /// The main task had not finished when virtual time reached the
    /// limit ([`Sim::time_limit`]).
    #[error(
        "seed {seed}: the main task had not finished after {limit:?} of virtual time; \
         replay with SANSA_SIM_SEED={seed}"
    )]
    TimeLimit {
        /// The simulation's seed.
        seed: u64,
        /// The limit.
        limit: Duration,
    },
    /// A client fed itself timeouts at one instant without end (a core
    /// bug, caught by the world).
    #[error("seed {seed}: {violation:?}; replay with SANSA_SIM_SEED={seed}")]
    Spinning {
        /// The simulation's seed.
        seed: u64,
        /// What the world saw.
        violation: Violation,
    },
}

/// An application's client, as the runtime feeds it.
#[derive(Debug)]
struct App {
    index: ClientIdx,
    inbox: Arc<Inbox>,
    /// Gone when every [`Client`] handle was dropped.
    handles: Weak<Inner>,
    close_sent: bool,
    /// The session ended (closed or crashed).
    ended: bool,
}

/// What tasks reach through a [`SimHandle`].
struct Shared {
    world: World,
    /// Tasks' timers by deadline (world time), in registration order.
    timers: BTreeMap<(Timestamp, u64), Waker>,
    next_timer: u64,
    /// Tasks spawned since the runtime last looked, with their process.
    spawned: Vec<(TaskFuture, Option<ClientIdx>)>,
    apps: Vec<App>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("now", &self.world.now())
            .field("timers", &self.timers.len())
            .field("spawned", &self.spawned.len())
            .field("apps", &self.apps)
            .finish()
    }
}

impl Shared {
    /// Feeds every application client's queued commands to its session
    /// and ends the sessions that are done; returns the clients that
    /// crashed since the last call, with the commands they left.
    fn pump(&mut self) -> (Vec<ClientIdx>, Vec<Command>) {
        let mut crashed = Vec::new();
        let mut dropped = Vec::new();
        for app in &mut self.apps {
            if app.ended {
                continue;
            }
            if self.world.client_crashed(app.index) {
                app.ended = true;
                crashed.push(app.index);
                dropped.extend(app.inbox.close());
                continue;
            }
            if !app.close_sent && app.handles.strong_count() == 0 {
                app.close_sent = true;
                let _ = app.inbox.push(Command::Close(None));
            }
            if !self.world.client_stalled(app.index) {
                while let Some(cmd) = app.inbox.pop() {
                    if let Err(cmd) = self.world.app_command(app.index, cmd) {
                        app.inbox.unpop(*cmd);
                        break;
                    }
                }
            }
            if self.world.finish_app_if_done(app.index) {
                app.ended = true;
                dropped.extend(app.inbox.close());
            }
        }
        (crashed, dropped)
    }

    /// Wakes the tasks whose timers are due; returns whether any were.
    fn fire_timers(&mut self) -> bool {
        let now = self.world.now();
        let mut fired = false;
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            entry.remove().wake();
            fired = true;
        }
        fired
    }
}

/// A simulated cluster and the application tasks running on it. See the
/// [module documentation](self).
#[derive(Debug)]
pub struct Sim {
    shared: Rc<RefCell<Shared>>,
    executor: Executor,
    time_limit: Duration,
}

impl Sim {
    /// A cluster of `cluster`'s shape on the default virtual network;
    /// every random choice descends from `seed`.
    pub fn new(seed: u64, cluster: ClusterConfig) -> Self {
        Sim::with_net(seed, cluster, NetConfig::default())
    }

    /// [`Sim::new`] with the network's delays given.
    pub fn with_net(seed: u64, cluster: ClusterConfig, net: NetConfig) -> Self {
        Sim {
            shared: Rc::new(RefCell::new(Shared {
                world: World::new(seed, cluster, net),
                timers: BTreeMap::new(),
                next_timer: 0,
                spawned: Vec::new(),
                apps: Vec::new(),
            })),
            executor: Executor::new(),
            time_limit: Duration::from_secs(600),
        }
    }

    /// How much virtual time a [`Sim::block_on`] may take, from its
    /// start. Default 10 minutes.
    pub fn time_limit(mut self, limit: Duration) -> Self {
        self.time_limit = limit;
        self
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.shared.borrow().world.seed()
    }

    /// A handle on the simulation, as tasks hold it.
    pub fn handle(&self) -> SimHandle {
        SimHandle {
            shared: self.shared.clone(),
        }
    }

    /// The world, to read or change between runs (to set up topics, to
    /// read the logs and the trace after a run).
    pub fn with_world<R>(&self, f: impl FnOnce(&mut World) -> R) -> R {
        f(&mut self.shared.borrow_mut().world)
    }

    /// Runs `main(handle)` and every task it spawns on virtual time
    /// until `main` finishes, and returns its output. Tasks still
    /// running stay for the next call. Fails when `main` can never
    /// finish (every task waits and nothing is due), when it takes
    /// longer than [`Sim::time_limit`], or when a client spins.
    pub fn block_on<F, Fut, T>(&mut self, main: F) -> Result<T, SimError>
    where
        F: FnOnce(SimHandle) -> Fut,
        Fut: Future<Output = T> + 'static,
        T: 'static,
    {
        let handle = self.handle();
        let done = handle.spawn(main(handle.clone()));
        let (seed, limit_at) = {
            let sh = self.shared.borrow();
            (sh.world.seed(), sh.world.now() + self.time_limit)
        };
        loop {
            self.settle();
            if let Some(out) = done.0.try_take() {
                return Ok(out);
            }
            let ready = self.executor.take_ready();
            if !ready.is_empty() {
                for id in ready {
                    self.executor.poll(id);
                    self.settle();
                }
                continue;
            }
            let mut sh = self.shared.borrow_mut();
            if sh.fire_timers() {
                continue;
            }
            let now = sh.world.now();
            if now >= limit_at {
                return Err(SimError::TimeLimit {
                    seed,
                    limit: self.time_limit,
                });
            }
            let next_timer = sh.timers.keys().next().map(|&(t, _)| t);
            if next_timer.is_none() && sh.world.next_due().is_none() {
                return Err(SimError::Deadlock {
                    seed,
                    at: Duration::from_nanos(now.as_nanos()),
                    tasks: self.executor.len(),
                });
            }
            let deadline = next_timer.map_or(limit_at, |t| t.min(limit_at));
            // Stop as soon as a task is woken, a session ended (its
            // callers hear at the next settle) or a stalled client with
            // commands waiting runs again.
            let woken = self.executor.ready();
            let watched: Vec<(ClientIdx, bool)> = sh
                .apps
                .iter()
                .filter(|a| !a.ended)
                .map(|a| (a.index, a.inbox.pending()))
                .collect();
            sh.world.run_until(deadline, |w| {
                woken.any()
                    || watched.iter().any(|&(c, pending)| {
                        w.client_crashed(c)
                            || w.app_session_done(c)
                            || (pending && !w.client_stalled(c))
                    })
            });
            if let Some(v) = sh
                .world
                .violations()
                .iter()
                .find(|v| matches!(v, Violation::ClientSpins { .. }))
            {
                return Err(SimError::Spinning {
                    seed,
                    violation: v.clone(),
                });
            }
        }
    }

    /// Moves new tasks into the executor, feeds clients' commands to
    /// their sessions, and drops the tasks of crashed processes, until
    /// nothing changes.
    fn settle(&mut self) {
        loop {
            let (spawned, (crashed, dropped)) = {
                let mut sh = self.shared.borrow_mut();
                let spawned = std::mem::take(&mut sh.spawned);
                (spawned, sh.pump())
            };
            let quiet = spawned.is_empty() && crashed.is_empty();
            // Dropped outside the borrow: a dropped task's futures may
            // reach the simulation as they go.
            drop(dropped);
            for c in &crashed {
                drop(self.executor.remove_owned_by(*c));
            }
            let sh = self.shared.borrow();
            for (future, owner) in spawned {
                let dead = owner.is_some_and(|c| sh.world.client_crashed(c));
                if !dead {
                    self.executor.spawn(future, owner);
                }
            }
            drop(sh);
            if quiet {
                return;
            }
        }
    }
}

/// What tasks hold: the simulation's clock, tasks, clients and faults.
/// Cheap to clone; for this thread only.
#[derive(Debug, Clone)]
pub struct SimHandle {
    shared: Rc<RefCell<Shared>>,
}

impl SimHandle {
    /// A builder of an application's client on the simulated cluster.
    pub fn client(&self) -> ClientBuilder {
        ClientBuilder::new(self.clone())
    }

    fn add_client(
        &self,
        config: sansa_core::client::ConfigBuilder,
        clock: ClientClock,
    ) -> Result<Client, String> {
        let mut sh = self.shared.borrow_mut();
        let index = sh.world.add_app_client(config, clock)?;
        let inbox = Arc::new(Inbox::default());
        let client = Client::new(inbox.clone(), index);
        sh.apps.push(App {
            index,
            inbox,
            handles: Arc::downgrade(&client.inner),
            close_sent: false,
            ended: false,
        });
        Ok(client)
    }

    /// Virtual time since the simulation began.
    pub fn now(&self) -> Duration {
        Duration::from_nanos(self.shared.borrow().world.now().as_nanos())
    }

    /// Waits `d` of virtual time.
    pub fn sleep(&self, d: Duration) -> Sleep {
        let deadline = self.shared.borrow().world.now() + d;
        Sleep {
            shared: self.shared.clone(),
            deadline,
            key: None,
        }
    }

    /// Starts a task; its handle resolves with the task's output.
    pub fn spawn<T: 'static>(&self, task: impl Future<Output = T> + 'static) -> JoinHandle<T> {
        self.spawn_owned(task, None)
    }

    /// Starts a task in `client`'s process: crashing the client
    /// ([`SimHandle::crash_client`] or a random client crash) drops the
    /// task where it waits, and its handle resolves with `None`.
    pub fn spawn_on<T: 'static>(
        &self,
        client: &Client,
        task: impl Future<Output = T> + 'static,
    ) -> JoinHandle<T> {
        self.spawn_owned(task, Some(client.index()))
    }

    fn spawn_owned<T: 'static>(
        &self,
        task: impl Future<Output = T> + 'static,
        owner: Option<ClientIdx>,
    ) -> JoinHandle<T> {
        let (tx, rx) = oneshot::channel();
        let future: TaskFuture = Box::pin(async move {
            let _ = tx.send(task.await);
        });
        self.shared.borrow_mut().spawned.push((future, owner));
        JoinHandle(rx)
    }

    /// The world: its cluster, clients, checkers and fault rates. The
    /// world is borrowed for the call: `f` must not use a [`SimHandle`]
    /// (read the time and the like before), or the borrow panics.
    pub fn with_world<R>(&self, f: impl FnOnce(&mut World) -> R) -> R {
        f(&mut self.shared.borrow_mut().world)
    }

    /// Creates a topic with `partitions` partitions of `replication`
    /// replicas each.
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication: i16,
    ) -> Result<(), ErrorCode> {
        self.with_world(|w| {
            w.cluster_mut()
                .create_topic(name, partitions, replication)
                .map(|_| ())
        })
    }

    /// Applies a fault now.
    pub fn apply(&self, fault: Fault) {
        self.with_world(|w| w.apply(fault));
    }

    /// Crashes broker `node` (its connections and in-flight requests are
    /// lost, its logs kept, its leaderships moved).
    pub fn crash_broker(&self, node: NodeId) {
        self.apply(Fault::Crash(node));
    }

    /// Restarts crashed broker `node`.
    pub fn restart_broker(&self, node: NodeId) {
        self.apply(Fault::Restart(node));
    }

    /// Moves a partition's leadership (epoch bumped) to `to`, or to the
    /// next live replica.
    pub fn move_leader(&self, topic: &str, partition: i32, to: Option<NodeId>) {
        self.apply(Fault::MoveLeader {
            topic: topic.into(),
            partition,
            to,
        });
    }

    /// Moves `group`'s coordinator to another broker.
    pub fn move_coordinator(&self, group: &str) {
        self.apply(Fault::MoveCoordinator {
            group: group.into(),
        });
    }

    /// Crashes `client`'s process: its connections are reset, its
    /// tasks spawned with [`SimHandle::spawn_on`] dropped, every call on
    /// it answers as closed. No flush, commit or LeaveGroup: the
    /// coordinator keeps its partitions until its session times out.
    pub fn crash_client(&self, client: &Client) {
        self.apply(Fault::CrashClient {
            client: client.index(),
            restart_after: None,
        });
    }

    /// The offset `group` has committed for a partition, at the
    /// coordinator.
    pub fn committed_offset(&self, group: &str, topic: &str, partition: i32) -> Option<i64> {
        let sh = self.shared.borrow();
        sh.world
            .cluster()
            .group(group)
            .and_then(|g| g.committed(topic, partition))
            .map(|c| c.offset)
    }

    /// The hash of everything that happened so far (every byte on the
    /// wire, every fault): equal for equal seeds and equal code.
    pub fn trace_hash(&self) -> u64 {
        self.shared.borrow().world.trace_hash()
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.shared.borrow().world.seed()
    }
}

/// [`SimHandle::sleep`]'s future.
#[derive(Debug)]
#[must_use = "a sleep does nothing unless awaited"]
pub struct Sleep {
    shared: Rc<RefCell<Shared>>,
    deadline: Timestamp,
    /// Its entry among the timers, once registered.
    key: Option<(Timestamp, u64)>,
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let mut sh = this.shared.borrow_mut();
        if sh.world.now() >= this.deadline {
            return Poll::Ready(());
        }
        let key = match this.key {
            Some(k) => k,
            None => {
                let k = (this.deadline, sh.next_timer);
                sh.next_timer += 1;
                this.key = Some(k);
                k
            }
        };
        // A timer that fired was removed: registering again re-arms it.
        sh.timers.insert(key, cx.waker().clone());
        Poll::Pending
    }
}

/// A spawned task's output; `None` if the task was dropped (its process
/// crashed).
#[derive(Debug)]
#[must_use = "dropping a handle does not stop its task"]
pub struct JoinHandle<T>(oneshot::Receiver<T>);

impl<T> Future for JoinHandle<T> {
    type Output = Option<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        Pin::new(&mut self.0).poll(cx)
    }
}

#[cfg(test)]
mod tests;
