//! Unit tests of the transaction manager.
