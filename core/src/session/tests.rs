//! The session's books against a core with no broker behind it: what a
//! caller hears, and when.

use std::cell::RefCell;
use std::rc::Rc;

use super::*;

type Log = Rc<RefCell<Vec<String>>>;

/// Waiters that write what happened to them into a shared log.
struct Logged;

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

impl Waiters for Logged {
    type Produce = Named;
    type Flush = (&'static str, Log);
    type Fetch = (&'static str, Log);
    /// The caller keeps a clone; once it drops it, it left.
    type Reply<T> = Rc<RefCell<Option<T>>>;

    fn flushed((name, log): Self::Flush) {
        log.borrow_mut().push(format!("{name} done"));
    }
    fn fetch_abandoned(_: &Self::Fetch) -> bool {
        false
    }
    fn fetched(
        (name, log): Self::Fetch,
        fetched: Vec<FetchedPartition>,
    ) -> Result<(), Vec<FetchedPartition>> {
        log.borrow_mut()
            .push(format!("{name} got {} partitions", fetched.len()));
        Ok(())
    }
    fn reply<T>(waiter: Self::Reply<T>, value: T) -> Result<(), T> {
        if Self::reply_abandoned(&waiter) {
            return Err(value);
        }
        *waiter.borrow_mut() = Some(value);
        Ok(())
    }
    fn reply_abandoned<T>(waiter: &Self::Reply<T>) -> bool {
        Rc::strong_count(waiter) == 1
    }
}

fn session(max_buffered: usize) -> Session<Logged> {
    let config = Config::builder()
        .seed_brokers(["127.0.0.1:9"])
        .max_buffered_records(max_buffered)
        .build()
        .expect("valid config");
    Session::new(Client::new(config).expect("valid config"))
}

fn produce(name: &'static str, log: &Log, ticket: u64, try_: bool) -> Command<Logged> {
    Command::Produce(ProduceRequest {
        record: Record::new("t", "v"),
        wall_ms: 0,
        fail_when_full: try_,
        urgent: false,
        ticket,
        waiter: Named(name, log.clone()),
    })
}

fn drain(s: &mut Session<Logged>, now: Timestamp) -> Vec<Io> {
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
    s.handle_command(now, Command::Close(Some(("close", log.clone()))));
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
    s.finish();
    assert_eq!(take(&log), ["a failed: cancelled", "close done"]);
}

#[test]
fn fetch_waiters_left_at_the_end_get_nothing_and_records_fail_closed() {
    let log = Log::default();
    let mut s = session(10);
    let now = Timestamp::from_nanos(1);
    s.handle_command(now, Command::PollFetches(None, ("poll", log.clone())));
    s.handle_command(now, produce("a", &log, 1, false));
    let _ = drain(&mut s, now);
    assert_eq!(take(&log), ["a buffered"], "no records fetched yet");
    s.finish();
    assert_eq!(
        take(&log),
        ["poll got 0 partitions", "a failed: the client is closed"]
    );
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

struct WokenWaiters;

impl Waiters for WokenWaiters {
    type Produce = Woken;
    type Flush = ();
    type Fetch = ();
    type Reply<T> = ();
    fn flushed(_: ()) {}
    fn fetch_abandoned(_: &()) -> bool {
        false
    }
    fn fetched(_: (), _: Vec<FetchedPartition>) -> Result<(), Vec<FetchedPartition>> {
        Ok(())
    }
    fn reply<T>(_: (), _: T) -> Result<(), T> {
        Ok(())
    }
    fn reply_abandoned<T>(_: &()) -> bool {
        false
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
    let mut s = Session::<WokenWaiters>::new(Client::new(config).expect("valid config"));
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

fn transactional() -> Session<Logged> {
    let config = Config::builder()
        .seed_brokers(["127.0.0.1:9"])
        .transactional_id("tx")
        .build()
        .expect("valid config");
    Session::new(Client::new(config).expect("valid config"))
}

/// A reply that records its answer, for [`replies`]: a `Reply` must be
/// `Send`, so it cannot write into the single-threaded log.
fn reply<T: std::fmt::Debug + 'static>(name: &'static str) -> Reply<T> {
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    REPLIES.with(|r| r.borrow_mut().push(rx));
    Reply::new(move |answer: T| {
        let _ = tx.send(format!("{name}: {answer:?}"));
    })
}

thread_local! {
    static REPLIES: RefCell<Vec<std::sync::mpsc::Receiver<String>>> = const { RefCell::new(Vec::new()) };
}

fn replies() -> Vec<String> {
    REPLIES.with(|r| {
        r.borrow()
            .iter()
            .filter_map(|rx| rx.try_recv().ok())
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

fn group_session() -> Session<Logged> {
    let config = Config::builder()
        .seed_brokers(["127.0.0.1:9"])
        .consumer_group(GroupConfig::new("g"))
        .build()
        .expect("valid config");
    Session::new(Client::new(config).expect("valid config"))
}

fn group_reply<T>() -> Rc<RefCell<Option<T>>> {
    Rc::new(RefCell::new(None))
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
    let answer = group_reply();
    s.handle_command(
        now,
        Command::Commit(CommitRequest::Uncommitted, answer.clone()),
    );
    assert_eq!(answer.take(), Some(Err(CommitFailure::NoGroup)));
}

#[test]
fn an_abort_ends_at_once_and_fails_the_commits_still_waiting() {
    let log = Log::default();
    let mut s = group_session();
    let now = Timestamp::from_nanos(1);
    s.handle_command(now, Command::ConsumeTopics(vec!["t".into()]));
    let commit = group_reply();
    s.handle_command(
        now,
        Command::Commit(CommitRequest::Uncommitted, commit.clone()),
    );
    let _ = drain(&mut s, now);
    assert!(!s.is_done());
    s.handle_command(now, Command::Abort(Some(("abort", log.clone()))));
    let _ = drain(&mut s, now);
    assert!(s.is_done(), "an abort ends at once");
    s.finish();
    assert_eq!(take(&log), ["abort done"]);
    assert_eq!(commit.take(), Some(Err(CommitFailure::Closed)));
}

#[test]
fn a_commit_s_caller_hears_its_own_outcome_and_unclaimed_outcomes_become_events() {
    let mut s = group_session();
    let now = Timestamp::from_nanos(1);
    s.handle_command(now, Command::ConsumeTopics(vec!["t".into()]));
    let (ok, refused, gone) = (group_reply(), group_reply(), group_reply());
    for r in [&ok, &refused, &gone] {
        s.handle_command(now, Command::Commit(CommitRequest::Uncommitted, r.clone()));
    }
    drop(gone); // this caller stopped waiting; its outcome becomes an event
    s.group.commit_finished(outcome(1, false));
    s.group.commit_finished(outcome(2, true));
    s.group.commit_finished(outcome(3, false));
    s.group.commit_finished(outcome(99, false)); // an auto-commit, say
    assert_eq!(ok.take(), Some(Ok(outcome(1, false))));
    assert_eq!(
        refused.take(),
        Some(Err(CommitFailure::Refused(outcome(2, true))))
    );
    for id in [3, 99] {
        let event = group_reply();
        s.handle_command(now, Command::NextGroupEvent(event.clone()));
        assert_eq!(
            event.take(),
            Some(GroupEvent::CommitFinished(outcome(id, false)))
        );
    }
}

#[test]
fn group_events_go_to_the_oldest_reader_still_waiting_and_queue_bounded_otherwise() {
    let mut s = group_session();
    let now = Timestamp::from_nanos(1);
    let assigned = |n: i32| GroupEvent::PartitionsAssigned(BTreeMap::from([("t".into(), vec![n])]));
    let (left, waiting) = (group_reply(), group_reply());
    s.handle_command(now, Command::NextGroupEvent(left.clone()));
    s.handle_command(now, Command::NextGroupEvent(waiting.clone()));
    drop(left);
    s.group.push(assigned(0));
    assert_eq!(waiting.take(), Some(assigned(0)));
    // Nobody reads: the queue keeps the newest, up to its bound.
    for n in 1..=(group::MAX_QUEUED_GROUP_EVENTS as i32 + 1) {
        s.group.push(assigned(n));
    }
    let first = group_reply();
    s.handle_command(now, Command::NextGroupEvent(first.clone()));
    assert_eq!(first.take(), Some(assigned(2)), "the oldest was dropped");
    // At the end, a reader still waiting hears nothing.
    let last = group_reply();
    let mut s = group_session();
    s.handle_command(now, Command::NextGroupEvent(last.clone()));
    s.finish();
    assert_eq!(Rc::strong_count(&last), 1, "the session let go of it");
    assert_eq!(last.take(), None);
}
