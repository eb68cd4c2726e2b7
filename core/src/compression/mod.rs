//! Compression codecs as Kafka uses them.
