//! The user's handle: [`Client`] and its [`ClientBuilder`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Weak};
use std::time::Duration;

use sansa_core::client::{ConfigBuilder, ConfigError};
use sansa_core::consumer::{ConsumedRecord, FetchedPartition};
use sansa_core::producer::{ProduceError, Record, RecordMeta};
use sansa_core::session::{self, Produce, Sink};

use crate::driver::{Command, Driver, Intake, Msg};
use crate::produce::ProduceHandle;
use crate::wait;

/// Commands and connection inputs waiting for the driver; a caller (or a
/// connection reader) waits when it is full.
const INBOX: usize = 8192;

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The settings contradict each other or are out of range.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// The driver thread could not be started.
    #[error("could not start the driver thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// A Kafka client for programs without an async runtime: a cheap,
/// cloneable handle to a driver thread that owns the connections and the
/// core client. Every call that waits has a form with a timeout.
///
/// When the last handle is dropped the driver flushes, then closes, as
/// [`Client::close`] does.
///
/// ```no_run
/// use sansa_blocking::{Client, Record};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let client = Client::builder().seed_brokers(["localhost:9092"]).build()?;
/// let meta = client.produce_sync(Record::new("events", "hello"))?;
/// println!("written at offset {}", meta.offset);
/// client.close();
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    inbox: SyncSender<Msg>,
    /// Where records go, on the caller's thread.
    intake: Arc<Intake>,
    /// Names produce calls so a [`ProduceHandle`] can cancel its record;
    /// 0 is "not cancellable".
    tickets: AtomicU64,
    /// Set by the driver thread when it ends.
    closed: Arc<AtomicBool>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let _ = self.inbox.send(Msg::HandlesGone);
    }
}

/// A handle that does not keep the client open (for a
/// [`ProduceHandle`]'s cancel).
#[derive(Debug)]
pub(crate) struct WeakClient(Weak<Inner>);

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

    /// Produces `record` and returns its handle at once. Records keep the
    /// order of the calls; when
    /// `max_buffered_records` is reached the record waits inside the
    /// client for space (see [`ProduceHandle::buffered`]).
    pub fn produce(&self, record: Record) -> ProduceHandle {
        ProduceHandle::start(self, record, false, false)
    }

    /// Produces `record` without lingering and blocks for the result.
    pub fn produce_sync(&self, record: Record) -> Result<RecordMeta, ProduceError> {
        ProduceHandle::start(self, record, false, true).wait()
    }

    /// Produces `record` unless the buffer is full: fails with
    /// [`ProduceError::BufferFull`] at once, else returns its handle.
    pub fn try_produce(&self, record: Record) -> Result<ProduceHandle, ProduceError> {
        let delivery = ProduceHandle::start(self, record, true, false);
        delivery.buffered()?;
        Ok(delivery)
    }

    /// Sends everything buffered without waiting for linger, and blocks
    /// until every record produced before the call is done.
    pub fn flush(&self) {
        self.flush_timeout(None);
    }

    /// [`Client::flush`] for at most `timeout` (`None`: no limit); true
    /// if the flush finished.
    pub fn flush_timeout(&self, timeout: Option<Duration>) -> bool {
        let (done, reply) = session::answer();
        self.send(Command::Flush(reply));
        wait::answer(done, timeout).is_some()
    }

    /// Flushes, then closes every connection and stops the driver.
    /// Records produced after the close began fail with
    /// [`ProduceError::Closed`]. Closing twice is harmless.
    pub fn close(&self) {
        self.close_timeout(None);
    }

    /// [`Client::close`], waiting at most `timeout`; true if the client
    /// closed in time (it keeps closing in the background otherwise).
    pub fn close_timeout(&self, timeout: Option<Duration>) -> bool {
        let (done, reply) = session::answer();
        self.send(Command::Close(Some(reply)));
        wait::answer(done, timeout);
        self.is_closed()
    }

    /// Whether the driver has ended (after [`Client::close`]).
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    sansa_core::client_consume_methods!();

    /// Blocks for fetched records, at most `max_records` (all buffered
    /// with `None`) by partition, for at most `timeout`; empty when none
    /// came in time or the client is closed.
    pub fn poll_fetches(
        &self,
        max_records: Option<usize>,
        timeout: Duration,
    ) -> Vec<FetchedPartition> {
        let (fetched, reply) = session::answer();
        self.send(Command::PollFetches(max_records, reply));
        wait::answer(fetched, Some(timeout)).unwrap_or_default()
    }

    /// Like [`Client::poll_fetches`], flattened to records in order per
    /// partition (partition errors are logged and skipped).
    pub fn poll_records(
        &self,
        max_records: Option<usize>,
        timeout: Duration,
    ) -> Vec<ConsumedRecord> {
        session::into_records(self.poll_fetches(max_records, timeout))
    }

    pub(crate) fn send(&self, cmd: Command) {
        // Commands after close are refused, as the calls document.
        if let Err(mpsc::SendError(Msg::Command(cmd))) = self.inner.inbox.send(Msg::Command(cmd)) {
            cmd.refuse();
        }
    }

    pub(crate) fn next_ticket(&self) -> u64 {
        self.inner.tickets.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn downgrade(&self) -> WeakClient {
        WeakClient(Arc::downgrade(&self.inner))
    }

    /// Asks the driver to cancel the record of `ticket`, if the client is
    /// still open.
    pub(crate) fn send_cancel(client: &WeakClient, ticket: u64) {
        if let Some(inner) = client.0.upgrade() {
            let _ = inner.inbox.send(Msg::Command(Command::Cancel(ticket)));
        }
    }

    /// Hands a produce to the core on this thread (see [`Intake`]); if
    /// the driver is gone, fails the record with
    /// [`ProduceError::Closed`].
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
/// use sansa_blocking::{Client, Compression};
///
/// let builder = Client::builder()
///     .seed_brokers(["k1:9092"])
///     .linger(Duration::from_millis(5))
///     .compression(Compression::Lz4);
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct ClientBuilder {
    config: ConfigBuilder,
}

impl ClientBuilder {
    sansa_core::client_builder_methods!();

    /// Validates the settings and starts the driver thread. Nothing
    /// connects until there is work.
    pub fn build(self) -> Result<Client, Error> {
        let config = self.config.build()?;
        let core = sansa_core::Client::new(config)?;
        let (inbox, rx) = mpsc::sync_channel(INBOX);
        let closed = Arc::new(AtomicBool::new(false));
        let (driver, intake) = Driver::new(core, rx, inbox.clone(), closed.clone());
        std::thread::Builder::new()
            .name("sansa-driver".into())
            .spawn(move || driver.run())?;
        Ok(Client {
            inner: Arc::new(Inner {
                inbox,
                intake,
                tickets: AtomicU64::new(1),
                closed,
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
