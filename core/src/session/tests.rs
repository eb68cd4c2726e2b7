//! The session's books against a core with no broker behind it: what a
//! caller hears, and when.

use std::cell::RefCell;
use std::rc::Rc;

use super::*;

type Log = Rc<RefCell<Vec<String>>>;

/// A record's waiter: its name in the log.
struct Named(&'static str, Log);

impl ProduceWaiter for Named {
    type Wake = ();
    fn buffered(&mut self) -> Option<()> {
        self.1.borrow_mut().push(format!("{} buffered", self.0));
        None
    }
    fn complete(self, outcome: Outcome) -> Option<()> {
        let what = match outcome {
            Ok(_) => "delivered".to_string(),
            Err(e) => format!("failed: {e}"),
        };
        self.1.borrow_mut().push(format!("{} {what}", self.0));
        None
    }
    fn refused(self, error: ProduceError) -> Option<()> {
        self.1
            .borrow_mut()
            .push(format!("{} refused: {error}", self.0));
        None
    }
    fn wake(_: ()) {}
}

/// The caller's answer so far: `None` while it waits, `Some(None)` when
/// the session dropped its reply unanswered.
fn got<T>(answer: &mut Answer<T>) -> Option<Option<T>> {
    match answer.poll_answer(&std::task::Context::from_waker(std::task::Waker::noop())) {
        std::task::Poll::Ready(value) => Some(value),
        std::task::Poll::Pending => None,
    }
}

fn session(max_buffered: usize) -> Session<Named> {
    let config = Config::builder()
        .seed_brokers(["127.0.0.1:9"])
        .max_buffered_records(max_buffered)
        .build()
        .expect("valid config");
    Session::new(Client::new(config).expect("valid config"))
}

fn produce(name: &'static str, log: &Log, ticket: u64, try_: bool) -> Command<Named> {
    Command::Produce(ProduceRequest {
        record: Record::new("t", "v"),
        wall_ms: 0,
        fail_when_full: try_,
        urgent: false,
        ticket,
        waiter: Named(name, log.clone()),
    })
}

fn drain(s: &mut Session<Named>, now: Timestamp) -> Vec<Io> {
    std::iter::from_fn(|| s.poll_io(now)).collect()
}

fn take(log: &Log) -> Vec<String> {
    std::mem::take(&mut *log.borrow_mut())
}

#[test]
fn a_record_waiting_for_space_is_admitted_only_when_space_frees_up() {
    let log = Log::default();
    let mut s = session(1);
    let now = Timestamp::from_nanos(1);
    s.handle_command(now, produce("a", &log, 1, false));
    s.handle_command(now, produce("b", &log, 2, false));
    s.handle_command(now, produce("c", &log, 3, true));
    let _ = drain(&mut s, now);
    assert_eq!(
        take(&log),
        ["a buffered", "c refused: the produce buffer is full"]
    );
    // Cancelling `a` (never sent) frees its space for `b`.
    s.handle_command(now, Command::Cancel(1));
    let _ = drain(&mut s, now);
    assert_eq!(take(&log), ["a failed: cancelled", "b buffered"]);
}

#[test]
fn a_close_flushes_first_and_refuses_records_produced_after_it_began() {
    let log = Log::default();
    let mut s = session(10);
    let now = Timestamp::from_nanos(1);
    s.handle_command(now, produce("a", &log, 1, false));
    let (mut closed, reply) = answer();
    s.handle_command(now, Command::Close(Some(reply)));
    s.handle_command(now, produce("late", &log, 2, false));
    s.handle_command(now, produce("late-try", &log, 3, true));
    let _ = drain(&mut s, now);
    assert!(!s.is_done(), "`a` is still to be delivered");
    assert_eq!(
        take(&log),
        [
            "a buffered",
            "late failed: the client is closed",
            "late-try refused: the client is closed"
        ]
    );
    // `a` is cancelled (never sent): the flush completes, the core closes.
    s.handle_command(now, Command::Cancel(1));
    let _ = drain(&mut s, now);
    assert!(s.is_done());
    assert_eq!(take(&log), ["a failed: cancelled"]);
    assert_eq!(got(&mut closed), None, "closed only when the session ends");
    s.finish();
    assert_eq!(got(&mut closed), Some(Some(())));
}

#[test]
fn a_command_no_driver_takes_fails_its_record_closed_and_leaves_other_callers_unanswered() {
    let log = Log::default();
    produce("a", &log, 1, false).refuse();
    produce("b", &log, 2, true).refuse();
    let (mut flushed, reply) = answer();
    Command::<Named>::Flush(reply).refuse();
    assert_eq!(
        take(&log),
        [
            "a failed: the client is closed",
            "b refused: the client is closed"
        ]
    );
    assert_eq!(got(&mut flushed), Some(None));
}

#[test]
fn fetch_waiters_left_at_the_end_get_nothing_and_records_fail_closed() {
    let log = Log::default();
    let mut s = session(10);
    let now = Timestamp::from_nanos(1);
    let (mut poll, reply) = answer();
    s.handle_command(now, Command::PollFetches(None, reply));
    s.handle_command(now, produce("a", &log, 1, false));
    let _ = drain(&mut s, now);
    assert_eq!(take(&log), ["a buffered"]);
    assert!(got(&mut poll).is_none(), "no records fetched yet");
    s.finish();
    assert_eq!(got(&mut poll).map(|p| p.map(|p| p.len())), Some(Some(0)));
    assert_eq!(take(&log), ["a failed: the client is closed"]);
}

#[test]
fn the_timer_is_rearmed_only_when_the_deadline_changes_and_stale_conn_reports_are_dropped() {
    let log = Log::default();
    let mut s = session(10);
    let now = Timestamp::from_nanos(1);
    s.handle_command(now, produce("a", &log, 1, false));
    let io = drain(&mut s, now);
    let Some(Io::Connect { conn, .. }) = io.first().cloned() else {
        panic!("expected a connect to the seed broker, got {io:?}");
    };
    let first = s.poll_timer();
    assert!(first.deadline.is_some(), "a connect has a timeout");
    assert!(first.rearm);
    assert_eq!(
        s.poll_timer(),
        TimerUpdate {
            rearm: false,
            ..first
        }
    );
    // The connection failed; a late report for it changes nothing.
    s.handle_input(now, Input::ConnectFailed(conn, "refused".into()));
    let _ = drain(&mut s, now);
    s.handle_input(now, Input::Received(conn, Bytes::from_static(b"junk")));
    assert!(drain(&mut s, now).is_empty());
}

/// A record's waiter whose wake-ups are logged too.
struct Woken(&'static str, Log);

impl Woken {
    fn note(self, what: String) -> Option<(&'static str, Log)> {
        self.1.borrow_mut().push(format!("{} {what}", self.0));
        Some((self.0, self.1))
    }
}

impl ProduceWaiter for Woken {
    type Wake = (&'static str, Log);
    fn buffered(&mut self) -> Option<Self::Wake> {
        Woken(self.0, self.1.clone()).note("buffered".into())
    }
    fn complete(self, outcome: Outcome) -> Option<Self::Wake> {
        self.note(format!("done: {}", outcome.is_ok()))
    }
    fn refused(self, error: ProduceError) -> Option<Self::Wake> {
        self.note(format!("refused: {error}"))
    }
    fn wake((name, log): Self::Wake) {
        log.borrow_mut().push(format!("{name} woken"));
    }
}

#[test]
fn callers_are_woken_after_the_whole_burst_not_once_per_record() {
    let log = Log::default();
    let config = Config::builder()
        .seed_brokers(["127.0.0.1:9"])
        .max_buffered_records(2)
        .build()
        .expect("valid config");
    let mut s = Session::<Woken>::new(Client::new(config).expect("valid config"));
    let now = Timestamp::from_nanos(1);
    for (name, try_) in [("a", false), ("b", false), ("c", true)] {
        s.handle_command(
            now,
            Command::Produce(ProduceRequest::new(
                Record::new("t", "v"),
                std::time::UNIX_EPOCH,
                try_,
                false,
                0,
                Woken(name, log.clone()),
            )),
        );
    }
    assert_eq!(
        take(&log),
        [
            "a buffered",
            "b buffered",
            "c refused: the produce buffer is full"
        ],
        "nobody is woken while the session works"
    );
    while s.poll_io(now).is_some() {}
    assert_eq!(take(&log), ["a woken", "b woken", "c woken"]);
    s.finish();
    assert_eq!(
        take(&log),
        ["a done: false", "b done: false", "a woken", "b woken"]
    );
}

fn transactional() -> Session<Named> {
    let config = Config::builder()
        .seed_brokers(["127.0.0.1:9"])
        .transactional_id("tx")
        .build()
        .expect("valid config");
    Session::new(Client::new(config).expect("valid config"))
}

/// A reply whose answer [`replies`] reports, named.
fn reply<T: std::fmt::Debug + 'static>(name: &'static str) -> Reply<T> {
    let (mut answer, reply) = answer::<T>();
    REPLIES.with(|r| {
        r.borrow_mut()
            .push(Box::new(move || match got(&mut answer) {
                Some(Some(a)) => Some(format!("{name}: {a:?}")),
                _ => None,
            }))
    });
    reply
}

type Poller = Box<dyn FnMut() -> Option<String>>;

thread_local! {
    static REPLIES: RefCell<Vec<Poller>> = const { RefCell::new(Vec::new()) };
}

/// The answers that came since the last call, in the order the replies
/// were made.
fn replies() -> Vec<String> {
    REPLIES.with(|r| {
        r.borrow_mut()
            .iter_mut()
            .filter_map(|poll| poll())
            .collect()
    })
}

#[test]
fn transaction_commands_answer_through_their_replies() {
    let log: Log = Rc::default();
    let mut s = transactional();
    let now = Timestamp::from_nanos(1);
    s.handle_command(
        now,
        Command::EndTransaction(TxnEnd::Commit, reply("early end")),
    );
    s.handle_command(now, Command::BeginTransaction(reply("begin")));
    s.handle_command(now, Command::BeginTransaction(reply("again")));
    // Nothing produced: the commit needs no coordinator and ends at the
    // next drain.
    s.handle_command(now, Command::EndTransaction(TxnEnd::Commit, reply("end")));
    let _ = drain(&mut s, now);
    assert_eq!(
        replies(),
        vec![
            "early end: Err(NotInTransaction)".to_owned(),
            "begin: Ok(())".to_owned(),
            "again: Err(AlreadyInTransaction)".to_owned(),
            "end: Ok(TransactionOutcome { id: 0, committed: true, error: None, commit_in_doubt: false })"
                .to_owned(),
        ]
    );

    // A transaction with a record waits for a coordinator that never
    // comes; finishing the session answers its caller.
    s.handle_command(now, Command::BeginTransaction(reply("begin")));
    s.handle_command(now, produce("r", &log, 1, false));
    s.handle_command(
        now,
        Command::EndTransaction(TxnEnd::Commit, reply("pending")),
    );
    let _ = drain(&mut s, now);
    assert_eq!(replies(), vec!["begin: Ok(())".to_owned()]);
    s.finish();
    assert_eq!(replies(), vec!["pending: Err(Closed)".to_owned()]);
}

// ----------------------------------------------------------------------
// Consumer groups
// ----------------------------------------------------------------------

use crate::group::{CommitError, CommitId, CommitOutcome, CommitReason, GroupConfig};

fn group_session() -> Session<Named> {
    let config = Config::builder()
        .seed_brokers(["127.0.0.1:9"])
        .consumer_group(GroupConfig::new("g"))
        .build()
        .expect("valid config");
    Session::new(Client::new(config).expect("valid config"))
}

fn outcome(id: u64, failed: bool) -> CommitOutcome {
    let mut o = CommitOutcome {
        id: CommitId(id),
        reason: CommitReason::Manual,
        committed: BTreeMap::new(),
        failed: BTreeMap::new(),
    };
    if failed {
        o.failed.insert(("t".into(), 0), CommitError::NotInGroup);
    }
    o
}

#[test]
fn a_commit_without_a_consumer_group_fails_with_no_group() {
    let mut s = session(10);
    let now = Timestamp::from_nanos(1);
    let (mut commit, reply) = answer();
    s.handle_command(now, Command::Commit(CommitRequest::Uncommitted, reply));
    assert_eq!(got(&mut commit), Some(Some(Err(CommitFailure::NoGroup))));
}

#[test]
fn an_abort_ends_at_once_and_fails_the_commits_still_waiting() {
    let mut s = group_session();
    let now = Timestamp::from_nanos(1);
    s.handle_command(now, Command::ConsumeTopics(vec!["t".into()]));
    let (mut commit, reply) = answer();
    s.handle_command(now, Command::Commit(CommitRequest::Uncommitted, reply));
    let _ = drain(&mut s, now);
    assert!(!s.is_done());
    let (mut aborted, reply) = answer();
    s.handle_command(now, Command::Abort(Some(reply)));
    let _ = drain(&mut s, now);
    assert!(s.is_done(), "an abort ends at once");
    s.finish();
    assert_eq!(got(&mut aborted), Some(Some(())));
    assert_eq!(got(&mut commit), Some(Some(Err(CommitFailure::Closed))));
}

#[test]
fn a_commit_s_caller_hears_its_own_outcome_and_unclaimed_outcomes_become_events() {
    let mut s = group_session();
    let now = Timestamp::from_nanos(1);
    s.handle_command(now, Command::ConsumeTopics(vec!["t".into()]));
    let mut callers: Vec<_> = (0..3)
        .map(|_| {
            let (caller, reply) = answer();
            s.handle_command(now, Command::Commit(CommitRequest::Uncommitted, reply));
            caller
        })
        .collect();
    drop(callers.pop()); // this caller stopped waiting; its outcome becomes an event
    s.group.commit_finished(outcome(1, false));
    s.group.commit_finished(outcome(2, true));
    s.group.commit_finished(outcome(3, false));
    s.group.commit_finished(outcome(99, false)); // an auto-commit, say
    assert_eq!(got(&mut callers[0]), Some(Some(Ok(outcome(1, false)))));
    assert_eq!(
        got(&mut callers[1]),
        Some(Some(Err(CommitFailure::Refused(outcome(2, true)))))
    );
    for id in [3, 99] {
        let (mut event, reply) = answer();
        s.handle_command(now, Command::NextGroupEvent(reply));
        assert_eq!(
            got(&mut event),
            Some(Some(GroupEvent::CommitFinished(outcome(id, false))))
        );
    }
}

#[test]
fn group_events_go_to_the_oldest_reader_still_waiting_and_queue_bounded_otherwise() {
    let mut s = group_session();
    let now = Timestamp::from_nanos(1);
    let assigned = |n: i32| GroupEvent::PartitionsAssigned(BTreeMap::from([("t".into(), vec![n])]));
    let (left, reply) = answer();
    s.handle_command(now, Command::NextGroupEvent(reply));
    let (mut waiting, reply) = answer();
    s.handle_command(now, Command::NextGroupEvent(reply));
    drop(left);
    s.group.push(assigned(0));
    assert_eq!(got(&mut waiting), Some(Some(assigned(0))));
    // Nobody reads: the queue keeps the newest, up to its bound.
    for n in 1..=(group::MAX_QUEUED_GROUP_EVENTS as i32 + 1) {
        s.group.push(assigned(n));
    }
    let (mut first, reply) = answer();
    s.handle_command(now, Command::NextGroupEvent(reply));
    assert_eq!(
        got(&mut first),
        Some(Some(assigned(2))),
        "the oldest was dropped"
    );
    // At the end, a reader still waiting hears nothing.
    let (mut last, reply) = answer::<GroupEvent>();
    let mut s = group_session();
    s.handle_command(now, Command::NextGroupEvent(reply));
    assert_eq!(got(&mut last), None);
    s.finish();
    assert_eq!(got(&mut last), Some(None), "the session let go of it");
}

fn shared_produce(name: &'static str, log: &Log) -> shared::Produce<Named> {
    shared::Produce {
        record: Record::new("t", "v"),
        fail_when_full: false,
        urgent: false,
        ticket: 0,
        waiter: Named(name, log.clone()),
    }
}

#[test]
fn a_shared_session_reads_the_wall_clock_once_per_anchor_age_and_wakes_the_driver_for_a_new_batch()
{
    let s = SharedSession::new(session(100));
    let log = Log::default();
    let reads = std::cell::Cell::new(0);
    let wall = || {
        reads.set(reads.get() + 1);
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000)
    };
    let t0 = Timestamp::from_nanos(1_000);
    let woke: Vec<bool> = (0..10u64)
        .map(|i| {
            let now = t0 + std::time::Duration::from_millis(i);
            s.produce(now, wall, shared_produce("r", &log))
        })
        .collect();
    assert_eq!(reads.get(), 1, "one reading serves WallAnchor::MAX_AGE");
    assert_eq!(take(&log), vec!["r buffered"; 10]);
    assert!(woke[0], "no metadata yet: the driver must go and get it");
    let later = t0 + WallAnchor::MAX_AGE + std::time::Duration::from_millis(1);
    let _ = s.produce(later, wall, shared_produce("late", &log));
    assert_eq!(reads.get(), 2, "a stale anchor is read again");
}

#[test]
fn a_shared_session_fails_records_closed_once_finished_without_waking_the_driver() {
    let s = SharedSession::new(session(100));
    let log = Log::default();
    s.finish();
    assert!(s.lock().session.is_none());
    let wall = || std::time::UNIX_EPOCH;
    assert!(!s.produce(Timestamp::from_nanos(0), wall, shared_produce("r", &log)));
    assert_eq!(take(&log), vec!["r failed: the client is closed"]);
}
