//! The user's handle: [`Client`] and its [`ClientBuilder`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_channel::{Sender, WeakSender};
use sansa_core::client::{ConfigBuilder, ConfigError};
use sansa_core::producer::Record;
use sansa_core::session::{Produce, Sink};

use crate::driver::{Command, Driver, Intake};
use crate::produce::ProduceFuture;

/// Why a client could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The settings contradict each other or are out of range.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
}

/// An async Kafka client on smol / async-io: a cheap, cloneable handle
/// to a driver task that owns the connections and the core client. It
/// runs under any executor (smol, async-std, a plain `block_on`): its
/// own tasks run on smol's global executor and async-io's reactor.
///
/// When the last handle is dropped the driver flushes, then closes, as
/// [`Client::close`] does.
///
/// ```no_run
/// use sansa_smol::{Client, Record};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// smol::block_on(async {
///     let client = Client::builder().seed_brokers(["localhost:9092"]).build()?;
///     let meta = client.produce_sync(Record::new("events", "hello")).await?;
///     println!("written at offset {}", meta.offset);
///     client.close().await;
///     Ok(())
/// })
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    commands: Sender<Command>,
    /// Where records go, on the caller's thread.
    intake: Arc<Intake>,
    /// Names produce calls so a [`ProduceFuture`] can cancel its record;
    /// 0 is "not cancellable".
    tickets: AtomicU64,
}

impl Client {
    /// A builder with franz-go's defaults; at least
    /// [`ClientBuilder::seed_brokers`] must be set.
    pub fn builder() -> ClientBuilder {
        // The core takes its randomness (backoff jitter, sticky
        // partitions, the KIP-848 member id) as a seed: two clients must
        // not share one, so it comes from the OS (override with `.config`).
        let seed = std::hash::BuildHasher::hash_one(&std::hash::RandomState::new(), 0u8);
        ClientBuilder {
            config: sansa_core::Config::builder().seed(seed),
        }
    }

    /// Whether the driver has ended (after [`Client::close`]).
    pub fn is_closed(&self) -> bool {
        self.inner.commands.is_closed()
    }

    sansa_core::async_client_calls!();

    sansa_core::client_consume_methods!();

    pub(crate) fn send(&self, cmd: Command) {
        // Commands after close are refused, as the calls document.
        if let Err(e) = self.inner.commands.try_send(cmd) {
            e.into_inner().refuse();
        }
    }

    pub(crate) fn next_ticket(&self) -> u64 {
        self.inner.tickets.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn downgrade(&self) -> WeakSender<Command> {
        self.inner.commands.downgrade()
    }

    /// Asks the driver to cancel the record of `ticket`, if it is still
    /// there.
    pub(crate) fn send_cancel(commands: &WeakSender<Command>, ticket: u64) {
        if let Some(tx) = commands.upgrade() {
            let _ = tx.try_send(Command::Cancel(ticket));
        }
    }

    /// Hands a produce to the core on this thread (see [`Intake`]); if
    /// the driver is gone, fails the record with
    /// [`ProduceError::Closed`](sansa_core::producer::ProduceError).
    pub(crate) fn send_produce(
        &self,
        record: Record,
        fail_when_full: bool,
        urgent: bool,
        ticket: u64,
        sink: Sink,
    ) {
        self.inner.intake.produce(Produce {
            record,
            fail_when_full,
            urgent,
            ticket,
            waiter: sink,
        });
    }
}

/// Builds a [`Client`]: the common settings as methods, every other one
/// of [`ConfigBuilder`] through [`ClientBuilder::config`].
///
/// ```
/// use std::time::Duration;
/// use sansa_smol::{Client, Compression};
///
/// let builder = Client::builder()
///     .seed_brokers(["k1:9092"])
///     .linger(Duration::from_millis(5))
///     .compression(Compression::Zstd);
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct ClientBuilder {
    config: ConfigBuilder,
}

impl ClientBuilder {
    sansa_core::client_builder_methods!();

    /// Validates the settings and starts the driver on smol's global
    /// executor. Nothing connects until there is work.
    pub fn build(self) -> Result<Client, Error> {
        let config = self.config.build()?;
        let core = sansa_core::Client::new(config)?;
        let (commands, rx) = async_channel::unbounded();
        let (driver, intake) = Driver::new(core, rx);
        smol::spawn(driver.run()).detach();
        Ok(Client {
            inner: Arc::new(Inner {
                commands,
                intake,
                tickets: AtomicU64::new(1),
            }),
        })
    }
}

#[cfg(test)]
mod seed_tests {
    use super::Client;

    #[test]
    fn every_builder_draws_its_own_seed() {
        let seed = || {
            let builder = Client::builder().seed_brokers(["localhost:9092"]);
            builder.config.build().map(|c| c.seed).ok()
        };
        assert_ne!(seed(), seed());
    }
}
