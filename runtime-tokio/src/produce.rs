//! What a produce call gives back: a [`ProduceFuture`] per record, or a
//! [`FirstError`] for a batch of records, both expanded from the core's
//! [`sansa_core::async_produce_handles!`] over its waker cells: this
//! adapter adds only its channel to the driver.

use tokio::sync::mpsc;

use crate::client::Client;
use crate::driver::Command;

sansa_core::async_produce_handles!(mpsc::WeakUnboundedSender<Command>);
