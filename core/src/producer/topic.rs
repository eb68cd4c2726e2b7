//! [`Topic`]: a record's topic name, cheap to make and to clone.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;

/// A topic name as a [`Record`](super::Record) carries it.
///
/// Every produced record names its topic, so the name should not cost an
/// allocation per record. Made from a `&str` or a `String`, the name is
/// shared behind an `Arc`: make it once and clone it per record (a
/// reference count, like librdkafka's topic handle). [`Topic::from_static`]
/// keeps a `&'static str` as it is, with no allocation at all. It reads as
/// a `str` (it derefs to one) and compares with `str`, `&str` and
/// `String`.
///
/// ```
/// use sansa_core::producer::{Record, Topic};
///
/// let events = Topic::from("events"); // one allocation, here
/// let records: Vec<Record> = (0..3)
///     .map(|i| Record::new(events.clone(), format!("{i}"))) // none per record
///     .collect();
/// assert_eq!(records[2].topic, "events");
/// assert_eq!(Topic::from_static("events"), events);
/// ```
#[derive(Clone)]
pub struct Topic(Repr);

#[derive(Clone)]
enum Repr {
    Static(&'static str),
    Shared(Arc<str>),
}

impl Topic {
    /// A name known at compile time, kept without an allocation.
    pub const fn from_static(name: &'static str) -> Self {
        Topic(Repr::Static(name))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Static(s) => s,
            Repr::Shared(s) => s,
        }
    }
}

impl Default for Topic {
    /// The empty name: the configured default produce topic.
    fn default() -> Self {
        Topic(Repr::Static(""))
    }
}

impl Deref for Topic {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Topic {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for Topic {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for Topic {
    fn from(s: &str) -> Self {
        Topic(Repr::Shared(s.into()))
    }
}

impl From<String> for Topic {
    fn from(s: String) -> Self {
        Topic(Repr::Shared(s.into()))
    }
}

impl From<&String> for Topic {
    fn from(s: &String) -> Self {
        Topic(Repr::Shared(s.as_str().into()))
    }
}

impl From<Arc<str>> for Topic {
    fn from(s: Arc<str>) -> Self {
        Topic(Repr::Shared(s))
    }
}

impl From<&Arc<str>> for Topic {
    fn from(s: &Arc<str>) -> Self {
        Topic(Repr::Shared(s.clone()))
    }
}

impl From<Topic> for String {
    fn from(t: Topic) -> Self {
        t.as_str().to_owned()
    }
}

impl PartialEq for Topic {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Topic {}

impl PartialEq<str> for Topic {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Topic {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Topic {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<Topic> for str {
    fn eq(&self, other: &Topic) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<Topic> for &str {
    fn eq(&self, other: &Topic) -> bool {
        *self == other.as_str()
    }
}

impl PartialEq<Topic> for String {
    fn eq(&self, other: &Topic) -> bool {
        self == other.as_str()
    }
}

impl PartialOrd for Topic {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Topic {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Hash for Topic {
    /// Hashes as the `str` does, as [`Borrow<str>`] requires.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn static_and_shared_names_are_the_same_name() {
        let a = Topic::from_static("orders");
        let b = Topic::from(String::from("orders"));
        let c = Topic::from(Arc::<str>::from("orders"));
        assert_eq!(a, b);
        assert_eq!(b, c);
        assert_eq!(a.cmp(&b), Ordering::Equal);
        let set: HashSet<Topic> = [a, b, c].into_iter().collect();
        assert_eq!(set.len(), 1);
        assert!(set.contains("orders"), "looked up by &str through Borrow");
        assert_eq!(String::from(Topic::from("x")), "x");
        assert_eq!(
            format!("{} {:?}", Topic::from("x"), Topic::from("x")),
            "x \"x\""
        );
        assert!(Topic::default().is_empty());
        assert_eq!(
            Topic::from("a").cmp(&Topic::from_static("b")),
            Ordering::Less
        );
    }
}
