//! Placeholder, replaced by the generator.
fn main() {}
