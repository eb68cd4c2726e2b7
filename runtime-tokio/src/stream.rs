//! Consumed records as a [`futures_core::Stream`]: for users who compose
//! streams (`StreamExt::next`, `take`, `filter`, ...) rather than calling
//! [`Client::poll_records`] in a loop.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use sansa_core::consumer::{ConsumedRecord, FetchedPartition};
use sansa_core::session::{self, PartitionError};

use crate::client::Client;

/// Records taken from the client per poll: what the stream holds outside
/// the client's `max_buffered_bytes` bound at most.
const RECORDS_PER_POLL: usize = 10_000;

type Poll_ = Pin<Box<dyn Future<Output = Vec<FetchedPartition>> + Send>>;

/// The stream of [`Client::record_stream`]: records in offset order per
/// partition, a partition's error after the records fetched before it.
/// Ends when the client is closed.
///
/// It owns a handle to the client and borrows nothing. Records it took
/// from the client and did not yet yield (at most 10,000) are dropped with
/// it.
#[must_use = "streams do nothing unless polled"]
pub struct RecordStream {
    client: Client,
    ready: VecDeque<Result<ConsumedRecord, PartitionError>>,
    polling: Option<Poll_>,
}

impl std::fmt::Debug for RecordStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordStream")
            .field("ready", &self.ready.len())
            .field("polling", &self.polling.is_some())
            .finish()
    }
}

impl RecordStream {
    pub(crate) fn new(client: Client) -> Self {
        RecordStream {
            client,
            ready: VecDeque::new(),
            polling: None,
        }
    }
}

impl Stream for RecordStream {
    type Item = Result<ConsumedRecord, PartitionError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(item) = this.ready.pop_front() {
                return Poll::Ready(Some(item));
            }
            let polling = this.polling.get_or_insert_with(|| {
                let client = this.client.clone();
                Box::pin(async move { client.poll_fetches(Some(RECORDS_PER_POLL)).await })
            });
            let fetched = match polling.as_mut().poll(cx) {
                Poll::Ready(f) => f,
                Poll::Pending => return Poll::Pending,
            };
            this.polling = None;
            if fetched.is_empty() {
                // `poll_fetches` is empty only once the client is closed.
                return Poll::Ready(None);
            }
            this.ready.extend(session::into_items(fetched));
        }
    }
}
