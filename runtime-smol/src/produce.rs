//! What a produce call gives back: a [`ProduceFuture`] per record, or a
//! [`FirstError`] for a batch of records, both expanded from the core's
//! [`sansa_core::async_produce_handles!`] over its cells
//! ([`WakerCells`]): this adapter adds only its channel to the driver.

use async_channel::WeakSender;
use sansa_core::session::{self, WakerCells};

use crate::client::Client;
use crate::driver::Command;

/// Where the driver sends a record's result.
pub(crate) type Sink = session::Sink<WakerCells>;

sansa_core::async_produce_handles!(WeakSender<Command>);
