//! How big the record batches each client sends are (`--count-batches`),
//! so a run shows whether both really batch alike (batch size drives
//! compression ratio and per-request cost).
//!
//! - sansa: a tracing subscriber that listens only to the producer's
//!   `produce request built` trace event (one per Produce request, with its
//!   batch count and bytes) and adds them up. Every other callsite is
//!   disabled for good at registration, so the hot path pays nothing.
//! - librdkafka: its statistics (`statistics.interval.ms`), whose per-topic
//!   `batchsize` window holds the size and number of the batches written
//!   since the last report; the windows are summed over the run. Batches
//!   written after the last report are missed, so the count is a sample.
//!
//! Both count the bytes of a batch as sent: after compression, with its
//! header.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rdkafka::statistics::Statistics;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};

/// Batches sent and their bytes, shared with whoever counts them.
#[derive(Debug, Default)]
pub(super) struct BatchTally {
    batches: AtomicU64,
    bytes: AtomicU64,
}

impl BatchTally {
    fn add(&self, batches: u64, bytes: u64) {
        self.batches.fetch_add(batches, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// The `batches=.. batch_bytes=..` fields of a child's RESULT line.
    pub(super) fn result_fields(&self) -> String {
        format!(
            "batches={} batch_bytes={}",
            self.batches.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed)
        )
    }

    /// Adds the batches librdkafka reports in one statistics callback.
    pub(super) fn add_librdkafka(&self, stats: &Statistics) {
        for topic in stats.topics.values() {
            let window = &topic.batchsize;
            self.add(
                u64::try_from(window.cnt).unwrap_or(0),
                u64::try_from(window.sum).unwrap_or(0),
            );
        }
    }
}

/// The target and message of sansa's per-request event.
const PRODUCER_TARGET: &str = "sansa_core::producer";
const PRODUCE_REQUEST_EVENT: &str = "produce request built";

/// A subscriber that only tallies sansa's `produce request built` events.
pub(super) struct SansaBatchCounter(pub(super) Arc<BatchTally>);

fn is_produce_request(metadata: &Metadata<'_>) -> bool {
    metadata.is_event()
        && metadata.target() == PRODUCER_TARGET
        && *metadata.level() == tracing::Level::TRACE
}

impl Subscriber for SansaBatchCounter {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        if is_produce_request(metadata) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        is_produce_request(metadata)
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::TRACE)
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        // Never called: every span callsite is disabled. Ids must be non-zero.
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut fields = RequestFields::default();
        event.record(&mut fields);
        if fields.is_produce_request {
            self.0.add(fields.batches, fields.bytes);
        }
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// The fields of one `produce request built` event.
#[derive(Default)]
struct RequestFields {
    is_produce_request: bool,
    batches: u64,
    bytes: u64,
}

impl Visit for RequestFields {
    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "batches" => self.batches = value,
            "bytes" => self.bytes = value,
            _ => {}
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record_u64(field, u64::try_from(value).unwrap_or(0));
    }

    fn record_str(&mut self, _: &Field, _: &str) {}

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.is_produce_request = format!("{value:?}") == PRODUCE_REQUEST_EVENT;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_the_produce_request_event() {
        let tally = Arc::new(BatchTally::default());
        tracing::subscriber::with_default(SansaBatchCounter(tally.clone()), || {
            tracing::trace!(target: "sansa_core::producer", broker = 1, batches = 3u64, bytes = 3000u64, "produce request built");
            tracing::trace!(target: "sansa_core::producer", batches = 9u64, bytes = 9u64, "something else");
            tracing::info!(target: "sansa_core::producer", batches = 9u64, bytes = 9u64, "produce request built");
            tracing::trace!(target: "sansa_core::producer", broker = 2, batches = 1u64, bytes = 500u64, "produce request built");
        });
        assert_eq!(tally.result_fields(), "batches=4 batch_bytes=3500");
    }
}
