//! What a produce call gives back: a [`ProduceHandle`] per record, or a
//! [`FirstError`] for a batch, both expanded from the core's
//! [`sansa_core::blocking_produce_handles!`] over its waker cells, which
//! a blocked thread polls through [`wait::until`]: this adapter adds only
//! its inbox.

use crate::client::{Client, WeakClient};
use crate::wait;

sansa_core::blocking_produce_handles!(WeakClient);
