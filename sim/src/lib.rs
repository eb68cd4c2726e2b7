//! `sansa-sim`: a deterministic simulated Kafka cluster on virtual time,
//! for testing `sansa-core` (and any Kafka client) under faults.
//!
//! This crate is not a Kafka broker: it keeps no files, replicates nothing
//! over a network and runs no controller quorum. It models what a client
//! can observe of a cluster (brokers that answer the real wire protocol,
//! partitions with leaders, leader epochs and logs, idempotent producer
//! state, the classic group coordinator) and lets a test break it on
//! purpose.
//!
//! - [`cluster`]: the simulated brokers, a sans-IO machine of their own,
//!   with the group coordinator on the leader of each group's
//!   `__consumer_offsets` partition.
//! - [`clock`]: each client's own clocks (skew, drift, wall offset).
//! - [`World`]: one seeded RNG, a virtual clock and a virtual network
//!   between unmodified [`sansa_core::Client`] values and the brokers, with
//!   faults and invariant checkers run on every step.
//! - [`scenario`]: seeded workloads under random faults (swarm mode) and
//!   seed replay with `SANSA_SIM_SEED`; [`group_workload`]: the
//!   consumer-group members a scenario runs (joining, widening their
//!   subscription, leaving, static or dynamic, cooperative or eager);
//!   the world also runs transactional producers (a loop of commits and
//!   aborts) with read_committed consumers, and exactly-once pipeline
//!   members (group-transact sessions), under transaction faults
//!   (injected coordinator errors, transaction coordinator moves).
//! - [`tcp`]: the same cluster on real sockets, for any Kafka client.
//! - [`runtime`]: the simulator as a runtime for an application's own
//!   tests: async tasks with the adapters' client calls on virtual time,
//!   faults where the test chooses, and a check of a process-then-commit
//!   loop's at-least-once promise.
//!
//! A run in a few lines:
//!
//! ```
//! use sansa_sim::Scenario;
//!
//! // Cluster shape, client settings and fault rates all drawn from seed 7.
//! let report = Scenario::swarm(7).run().expect("promises kept");
//! assert!(report.delivered > 0);
//! // The same seed is the same run, byte for byte.
//! let again = Scenario::swarm(7).run().expect("promises kept");
//! assert_eq!(report.trace_hash, again.trace_hash);
//! ```
//!
//! When a seed breaks a promise, [`check_seeds`] panics with the
//! violations, the last steps of the run (every broker decision included)
//! and the command that replays it:
//! `SANSA_SIM_SEED=<seed> cargo test -p sansa-sim --test swarm <test>`.
//! What the simulator found in `sansa-core` so far (two idempotence bugs,
//! a stuck epoch bump; with group members, a leader waiting 5 s for
//! metadata or balancing with a stale answer, a widened subscription
//! never seen, a stale fetch answer replayed, a client that never
//! reconnected for metadata; with transactions, an abort that waited
//! forever for a batch stranded by a broken sequence) is fixed;
//! `tests/core_bugs.rs` and the core's own tests keep their reproductions
//! as regression tests.

pub mod clock;
pub mod cluster;
pub mod group_workload;
pub mod invariants;
pub mod rng;
pub mod runtime;
pub mod scenario;
pub mod tcp;
pub mod world;

pub use clock::ClientClock;
pub use cluster::{Cluster, ClusterConfig};
pub use invariants::{Checker, Violation};
pub use rng::SimRng;
pub use sansa_core as core;
pub use scenario::{check_seeds, Scenario};
pub use tcp::{serve, TcpCluster, TcpHandle};
pub use world::{Fault, FaultRates, NetConfig, World};
