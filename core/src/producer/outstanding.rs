//! The set of records not yet delivered or failed, by id.
//!
//! Ids are handed out in order and mostly finish in order, so the set is a
//! bitmap over a sliding window of ids: adding the next id, removing any id
//! and finding the lowest are O(1) amortized, with no allocation in the
//! steady state. A `BTreeSet` did the same job at a node walk (and now and
//! then an allocation) per record, which showed in the produce profile.

use std::collections::VecDeque;

const WORD: u64 = 64;

/// Ids of records still outstanding.
#[derive(Debug, Default)]
pub(crate) struct Outstanding {
    /// The id of bit 0 of `words[0]`; a multiple of 64.
    base: u64,
    /// One bit per id from `base`: set while the record is outstanding.
    words: VecDeque<u64>,
    /// The next id `insert` expects.
    next: u64,
    len: usize,
}

impl Outstanding {
    /// Adds `id`, which must be the next id in order (ids are handed out
    /// one after another); an id out of order is ignored with an error
    /// log, since only a producer bug could cause one.
    pub(crate) fn insert(&mut self, id: u64) {
        if id != self.next {
            tracing::error!(id, expected = self.next, "record ids out of order");
            return;
        }
        self.next += 1;
        let offset = id - self.base;
        let word = usize::try_from(offset / WORD).unwrap_or(usize::MAX);
        if word >= self.words.len() {
            self.words.push_back(0);
        }
        if let Some(w) = self.words.get_mut(word) {
            *w |= 1 << (offset % WORD);
            self.len += 1;
        }
    }

    /// Removes `id`; removing an id not in the set does nothing.
    pub(crate) fn remove(&mut self, id: u64) {
        let Some(offset) = id.checked_sub(self.base) else {
            return;
        };
        let Ok(word) = usize::try_from(offset / WORD) else {
            return;
        };
        let Some(w) = self.words.get_mut(word) else {
            return;
        };
        let bit = 1 << (offset % WORD);
        if *w & bit == 0 {
            return;
        }
        *w &= !bit;
        self.len -= 1;
        // Drop leading words whose ids are all handed out and finished.
        while self.words.front() == Some(&0) && self.base + WORD <= self.next {
            self.words.pop_front();
            self.base += WORD;
        }
    }

    /// The lowest outstanding id.
    pub(crate) fn first(&self) -> Option<u64> {
        if self.len == 0 {
            return None;
        }
        self.words
            .iter()
            .enumerate()
            .find(|(_, &w)| w != 0)
            .map(|(i, w)| self.base + i as u64 * WORD + u64::from(w.trailing_zeros()))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Any interleaving of adds and removes answers as a `BTreeSet`
        /// does, and the window never holds more words than the span of
        /// outstanding ids needs.
        #[test]
        fn behaves_like_a_set(ops in prop::collection::vec((any::<bool>(), 0u64..400), 0..2000)) {
            let mut set = Outstanding::default();
            let mut model = BTreeSet::new();
            let mut next = 0u64;
            for (add, pick) in ops {
                if add {
                    set.insert(next);
                    model.insert(next);
                    next += 1;
                } else {
                    // Remove something that may or may not be there.
                    let id = next.saturating_sub(pick);
                    set.remove(id);
                    model.remove(&id);
                }
                prop_assert_eq!(set.first(), model.first().copied());
                prop_assert_eq!(set.is_empty(), model.is_empty());
                let span = match model.first() {
                    Some(&lo) => next - lo,
                    None => 0,
                };
                prop_assert!(set.words.len() as u64 <= span / WORD + 2);
            }
        }
    }

    #[test]
    fn an_id_out_of_order_is_refused() {
        let mut set = Outstanding::default();
        set.insert(0);
        set.insert(5);
        assert_eq!(set.first(), Some(0));
        set.remove(0);
        assert!(set.is_empty());
        set.insert(1);
        assert_eq!(set.first(), Some(1));
    }
}
