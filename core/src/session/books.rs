//! The books of records in the core: who waits for each [`ProduceId`].
//!
//! The core hands out ids in order and records mostly finish in order, so
//! the books are a window of slots indexed by id rather than a hash map:
//! an insert, a lookup and a removal are an index each, with no hashing.

use std::collections::VecDeque;

use crate::producer::ProduceId;

/// Values keyed by ids that are inserted in increasing order.
#[derive(Debug)]
pub(crate) struct ById<T> {
    /// The id of `slots[0]`.
    base: u64,
    slots: VecDeque<Option<T>>,
}

impl<T> Default for ById<T> {
    fn default() -> Self {
        ById {
            base: 0,
            slots: VecDeque::new(),
        }
    }
}

impl<T> ById<T> {
    /// Adds `value` under `id`, which must be above every id added
    /// before; an id out of order is refused and handed back.
    pub(crate) fn insert(&mut self, id: ProduceId, value: T) -> Result<(), T> {
        if self.slots.is_empty() {
            self.base = id.0;
        }
        let Some(index) =
            id.0.checked_sub(self.base)
                .and_then(|i| usize::try_from(i).ok())
        else {
            return Err(value);
        };
        if index < self.slots.len() {
            return Err(value);
        }
        // Ids the core used for records that never reached the books
        // (none today) leave empty slots behind.
        while self.slots.len() < index {
            self.slots.push_back(None);
        }
        self.slots.push_back(Some(value));
        Ok(())
    }

    fn index(&self, id: ProduceId) -> Option<usize> {
        let i = usize::try_from(id.0.checked_sub(self.base)?).ok()?;
        (i < self.slots.len()).then_some(i)
    }

    pub(crate) fn get_mut(&mut self, id: ProduceId) -> Option<&mut T> {
        let i = self.index(id)?;
        self.slots.get_mut(i)?.as_mut()
    }

    pub(crate) fn remove(&mut self, id: ProduceId) -> Option<T> {
        let i = self.index(id)?;
        let value = self.slots.get_mut(i)?.take();
        while matches!(self.slots.front(), Some(None)) {
            self.slots.pop_front();
            self.base += 1;
        }
        value
    }

    /// The id of the first value `pred` picks; a scan, for rare lookups
    /// by something other than the id.
    pub(crate) fn find(&self, mut pred: impl FnMut(&T) -> bool) -> Option<ProduceId> {
        self.slots
            .iter()
            .position(|s| s.as_ref().is_some_and(&mut pred))
            .map(|i| ProduceId(self.base + i as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserts_lookups_and_out_of_order_removals() {
        let mut books = ById::default();
        for i in 10..20 {
            assert!(books.insert(ProduceId(i), i * 2).is_ok());
        }
        assert_eq!(books.insert(ProduceId(15), 0), Err(0), "not above the last");
        assert_eq!(books.remove(ProduceId(12)), Some(24));
        assert_eq!(books.remove(ProduceId(12)), None);
        assert_eq!(books.get_mut(ProduceId(13)).copied(), Some(26));
        assert_eq!(books.find(|&v| v == 38), Some(ProduceId(19)));
        for i in [10, 11, 13, 14, 15, 16, 17, 18] {
            assert_eq!(books.remove(ProduceId(i)), Some(i * 2));
        }
        assert_eq!(books.slots.len(), 1, "finished slots in front are dropped");
        assert!(books.insert(ProduceId(25), 1).is_ok(), "gaps are allowed");
        assert_eq!(books.remove(ProduceId(19)), Some(38));
        assert_eq!(books.get_mut(ProduceId(25)).copied(), Some(1));
        assert_eq!(books.remove(ProduceId(25)), Some(1));
        assert!(books.slots.is_empty());
        assert!(
            books.insert(ProduceId(3), 7).is_ok(),
            "an empty book starts anywhere"
        );
    }
}
