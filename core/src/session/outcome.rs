//! What a caller waiting on one record, or on a batch of records, knows
//! so far: the state behind a `ProduceFuture`, a blocking produce handle
//! and a `FirstError`, kept here once; the waker cells pair it with the
//! caller to wake.

use crate::producer::{ProduceError, RecordMeta};

/// A record's result, as the session reports it.
pub type Outcome = Result<RecordMeta, ProduceError>;

/// Whether a record got into the buffer. A refusal's reason is the
/// outcome's error: keeping only a tag keeps [`RecordState`] small (it is
/// allocated once per record, often on one thread and freed on another).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Admission {
    #[default]
    Pending,
    Buffered,
    Refused,
}

/// One record as its caller sees it: admitted yet or not, and how it
/// ended.
///
/// The session's end calls [`RecordState::buffered`],
/// [`RecordState::complete`] and, if it goes away without a result,
/// [`RecordState::abandoned`]; the caller's end asks
/// [`RecordState::admission`] and takes the result with
/// [`RecordState::take`].
///
/// ```
/// use sansa_core::producer::ProduceError;
/// use sansa_core::session::RecordState;
///
/// let mut state = RecordState::default();
/// assert_eq!(state.admission(), None, "not buffered yet");
/// state.complete(Err(ProduceError::Closed));
/// assert_eq!(state.admission(), Some(Err(ProduceError::Closed)));
/// assert_eq!(state.take(), Some(Err(ProduceError::Closed)));
/// assert_eq!(state.take(), Some(Err(ProduceError::Closed)), "a second take is Closed");
/// ```
#[derive(Debug, Default)]
pub struct RecordState {
    admission: Admission,
    outcome: Option<Outcome>,
    /// The outcome was handed to the caller already.
    taken: bool,
}

impl RecordState {
    /// The record is in the buffer.
    pub fn buffered(&mut self) {
        if self.admission == Admission::Pending {
            self.admission = Admission::Buffered;
        }
    }

    /// The record is done; a failure before it was buffered is its
    /// refusal too.
    pub fn complete(&mut self, outcome: Outcome) {
        if self.admission == Admission::Pending {
            self.admission = match outcome {
                Ok(_) => Admission::Buffered,
                Err(_) => Admission::Refused,
            };
        }
        self.outcome = Some(outcome);
    }

    /// The session's end went away without a result (the driver is
    /// gone): the record failed with [`ProduceError::Closed`], so no
    /// caller waits forever.
    pub fn abandoned(&mut self) {
        if self.admission == Admission::Pending {
            self.admission = Admission::Refused;
        }
        if !self.taken {
            self.outcome.get_or_insert(Err(ProduceError::Closed));
        }
    }

    /// `None` while the record waits for buffer space; `Ok` once it is
    /// buffered, `Err` if it never will be.
    pub fn admission(&self) -> Option<Result<(), ProduceError>> {
        match self.admission {
            Admission::Pending => None,
            Admission::Buffered => Some(Ok(())),
            Admission::Refused => Some(match &self.outcome {
                Some(Err(e)) => Err(e.clone()),
                // The outcome was taken already.
                _ => Err(ProduceError::Closed),
            }),
        }
    }

    /// The result, once; `None` while the record is in flight. Asked
    /// again after that, [`ProduceError::Closed`] (a future polled after
    /// it completed).
    pub fn take(&mut self) -> Option<Outcome> {
        if let Some(outcome) = self.outcome.take() {
            self.taken = true;
            return Some(outcome);
        }
        self.taken.then_some(Err(ProduceError::Closed))
    }
}

/// A batch of records and its first failure, franz-go's
/// `FirstErrPromise`; "first" is in completion order.
///
/// ```
/// use sansa_core::producer::ProduceError;
/// use sansa_core::session::BatchState;
///
/// let mut batch = BatchState::default();
/// batch.add();
/// batch.add();
/// assert!(!batch.finish(Some(ProduceError::Cancelled)));
/// assert!(batch.finish(None), "the last one ends the wait");
/// assert_eq!(batch.result(), Some(Err(ProduceError::Cancelled)));
/// ```
#[derive(Debug, Default)]
pub struct BatchState {
    outstanding: usize,
    first: Option<ProduceError>,
}

impl BatchState {
    /// One more record in the batch.
    pub fn add(&mut self) {
        self.outstanding += 1;
    }

    /// One record is done (`error` says why it failed, if it did) or was
    /// refused before it counted (`None`); true when none is left, the
    /// moment to wake waiters.
    pub fn finish(&mut self, error: Option<ProduceError>) -> bool {
        self.outstanding = self.outstanding.saturating_sub(1);
        if let Some(e) = error {
            self.first.get_or_insert(e);
        }
        self.outstanding == 0
    }

    /// Records not yet done.
    pub fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// The first failure so far.
    pub fn first_error(&self) -> Option<ProduceError> {
        self.first.clone()
    }

    /// `None` while records are outstanding, else the batch's answer.
    pub fn result(&self) -> Option<Result<(), ProduceError>> {
        (self.outstanding == 0).then(|| self.first.clone().map_or(Ok(()), Err))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_buffered_then_delivered_is_admitted_once_and_taken_once() {
        let mut s = RecordState::default();
        s.buffered();
        assert_eq!(s.admission(), Some(Ok(())));
        s.complete(Err(ProduceError::Cancelled));
        assert_eq!(s.admission(), Some(Ok(())), "a later failure is no refusal");
        s.abandoned();
        assert_eq!(s.take(), Some(Err(ProduceError::Cancelled)));
    }

    #[test]
    fn an_abandoned_record_fails_closed_unless_its_result_was_taken() {
        let mut s = RecordState::default();
        s.abandoned();
        assert_eq!(s.admission(), Some(Err(ProduceError::Closed)));
        assert_eq!(s.take(), Some(Err(ProduceError::Closed)));
        let mut s = RecordState::default();
        assert_eq!(s.take(), None);
    }
}
