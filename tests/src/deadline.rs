//! A bound on how long a real-peer test may run, so that a test which
//! hangs fails in minutes, naming itself and what it last did, instead of
//! holding CI until its overall limit (which reports nothing about which
//! test hung: libtest prints a test's name before it runs and its output
//! only after it ends).
//!
//! Every peer fixture arms one when it starts and disarms it when it drops,
//! so every test against a real peer is bounded without saying so. When the
//! bound passes, the watchdog writes the test's name, its [`progress!`]
//! notes and the elapsed time straight to the process's standard error
//! (past libtest's capture) and aborts the process: a hung test cannot be
//! cancelled from another thread, and its binary's other tests are not
//! worth the wait.
//!
//! The bound is [`DEFAULT_BOUND`] unless `SANSA_TEST_DEADLINE_SECS` says
//! otherwise (`0` turns it off, e.g. to sit in a debugger).

use std::collections::VecDeque;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long a test holding a peer may run by default: five times the
/// longest such test's usual time on a 2-core machine (about 60 s).
pub const DEFAULT_BOUND: Duration = Duration::from_secs(300);

/// How many [`progress!`] notes are kept for the watchdog to show.
const NOTES_KEPT: usize = 64;

/// The latest progress notes of this process, oldest first.
static NOTES: Mutex<VecDeque<(Instant, String)>> = Mutex::new(VecDeque::new());

/// Child processes (broker peers) to kill before aborting, by process id.
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Has an expiring deadline kill process `pid` (a broker a test started)
/// before it aborts, so no broker outlives the aborted test binary.
pub(crate) fn kill_on_expiry(pid: u32) {
    CHILDREN
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(pid);
}

/// Undoes [`kill_on_expiry`] (the process was killed and reaped).
pub(crate) fn forget_on_expiry(pid: u32) {
    CHILDREN
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .retain(|p| *p != pid);
}

/// Sets every flag it holds when dropped while its thread panics.
///
/// A test that runs helper threads in a [`std::thread::scope`], each
/// looping until a stop flag is set, hangs instead of failing when a check
/// in the scope's body panics: the scope joins every thread before the
/// panic goes on, and nothing sets the flags. Holding one of these in the
/// body turns such a failure back into a failure.
///
/// ```
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use sansa_tests::deadline::StopOnPanic;
///
/// let stop = AtomicBool::new(false);
/// let failed = std::panic::catch_unwind(|| {
///     std::thread::scope(|s| {
///         let _stop_all = StopOnPanic::new([&stop]);
///         s.spawn(|| while !stop.load(Ordering::Acquire) {
///             std::thread::yield_now();
///         });
///         panic!("a check failed");
///     })
/// });
/// assert!(failed.is_err());
/// ```
#[derive(Debug)]
pub struct StopOnPanic<'a>(Vec<&'a AtomicBool>);

impl<'a> StopOnPanic<'a> {
    /// Holds `flags`.
    pub fn new(flags: impl IntoIterator<Item = &'a AtomicBool>) -> Self {
        StopOnPanic(flags.into_iter().collect())
    }
}

impl Drop for StopOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for flag in &self.0 {
                flag.store(true, Ordering::Release);
            }
        }
    }
}

/// Notes a step of a test: printed as `eprintln!` would (captured by
/// libtest, shown if the test fails) and kept for the watchdog of
/// [`TestDeadline`], which shows the latest ones if the test hangs.
///
/// ```
/// sansa_tests::progress!("every member assigned; feeding {} records", 450);
/// ```
#[macro_export]
macro_rules! progress {
    ($($arg:tt)*) => {
        $crate::deadline::note(::std::format!($($arg)*))
    };
}

/// What [`progress!`] does with its formatted note.
pub fn note(message: String) {
    eprintln!("{message}");
    let mut notes = NOTES.lock().unwrap_or_else(PoisonError::into_inner);
    if notes.len() == NOTES_KEPT {
        notes.pop_front();
    }
    notes.push_back((Instant::now(), message));
}

/// Aborts the process if not dropped within its bound; see the module
/// documentation.
#[derive(Debug)]
pub struct TestDeadline {
    /// Set to true when dropped; the watchdog waits on it.
    disarmed: Arc<(Mutex<bool>, Condvar)>,
}

impl TestDeadline {
    /// Arms the bound set by `SANSA_TEST_DEADLINE_SECS`, or
    /// [`DEFAULT_BOUND`]; `None` when that variable is `0`.
    pub fn arm_default() -> Option<TestDeadline> {
        let bound = match std::env::var("SANSA_TEST_DEADLINE_SECS") {
            Ok(secs) => match secs.trim().parse::<u64>() {
                Ok(0) => return None,
                Ok(secs) => Duration::from_secs(secs),
                Err(_) => panic!("SANSA_TEST_DEADLINE_SECS={secs:?} is not a number of seconds"),
            },
            Err(_) => DEFAULT_BOUND,
        };
        Some(TestDeadline::arm(bound))
    }

    /// Arms a watchdog that aborts the process after `bound` unless this
    /// value is dropped first. Names the test after the current thread
    /// (libtest names each test's thread after the test).
    pub fn arm(bound: Duration) -> TestDeadline {
        let test = std::thread::current()
            .name()
            .unwrap_or("an unnamed thread")
            .to_owned();
        let disarmed = Arc::new((Mutex::new(false), Condvar::new()));
        let watched = disarmed.clone();
        let armed_at = Instant::now();
        let watchdog = format!("deadline of {test}");
        let spawned = std::thread::Builder::new()
            .name(watchdog.clone())
            .spawn(move || {
                let (lock, woken) = &*watched;
                let guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
                let (guard, waited) = woken
                    .wait_timeout_while(guard, bound, |disarmed| !*disarmed)
                    .unwrap_or_else(PoisonError::into_inner);
                if *guard || !waited.timed_out() {
                    return;
                }
                expire(&test, armed_at, bound);
            });
        if let Err(e) = spawned {
            panic!("cannot start the thread `{watchdog}`: {e}");
        }
        TestDeadline { disarmed }
    }
}

impl Drop for TestDeadline {
    fn drop(&mut self) {
        let (lock, woken) = &*self.disarmed;
        *lock.lock().unwrap_or_else(PoisonError::into_inner) = true;
        woken.notify_all();
    }
}

/// Reports the hung test and aborts the process.
fn expire(test: &str, armed_at: Instant, bound: Duration) -> ! {
    let mut report = format!(
        "\n\n{test}: still running {bound:?} after its peer started \
         (SANSA_TEST_DEADLINE_SECS sets the bound); aborting this test binary.\n\
         Its latest progress notes (seconds since the peer started):\n"
    );
    let notes = NOTES.lock().unwrap_or_else(PoisonError::into_inner);
    let mut any = false;
    for (at, message) in notes.iter().filter(|(at, _)| *at >= armed_at) {
        any = true;
        let since = at.duration_since(armed_at).as_secs_f64();
        report.push_str(&format!("  {since:8.2}  {message}\n"));
    }
    if !any {
        report.push_str("  (none)\n");
    }
    // Straight to the file descriptor: `eprintln!` from a thread a test
    // spawned is captured with the test's output, which a hung test never
    // prints.
    let mut stderr = std::io::stderr().lock();
    let _ = stderr.write_all(report.as_bytes());
    let _ = stderr.flush();
    let children: Vec<String> = CHILDREN
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .map(u32::to_string)
        .collect();
    if !children.is_empty() {
        // kill(1) rather than kill(2): this crate forbids `unsafe`.
        let _ = std::process::Command::new("kill")
            .arg("-9")
            .args(&children)
            .status();
    }
    std::process::abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Set in the child process of
    /// [`a_test_past_its_deadline_aborts_its_binary_naming_itself`].
    const CHILD: &str = "SANSA_DEADLINE_SELF_TEST_CHILD";

    #[test]
    fn a_deadline_dropped_in_time_lets_the_process_go_on() {
        let deadline = TestDeadline::arm(Duration::from_millis(200));
        drop(deadline);
        std::thread::sleep(Duration::from_millis(400));
        // Still here: the watchdog saw the drop and did not abort.
    }

    /// Runs this test's binary again with only this test selected: the
    /// child arms a short deadline, notes a step and hangs; the parent
    /// checks the child was aborted with a report naming the test and the
    /// step.
    #[test]
    fn a_test_past_its_deadline_aborts_its_binary_naming_itself() {
        const NAME: &str =
            "deadline::tests::a_test_past_its_deadline_aborts_its_binary_naming_itself";
        if std::env::var_os(CHILD).is_some() {
            let _deadline = TestDeadline::arm(Duration::from_millis(300));
            crate::progress!("about to hang");
            std::thread::sleep(Duration::from_secs(30));
            return;
        }
        let started = Instant::now();
        let exe = std::env::current_exe().expect("this test binary's path");
        let out = std::process::Command::new(exe)
            .args([NAME, "--exact", "--test-threads=1"])
            .env(CHILD, "1")
            .output()
            .expect("running this test binary again");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "the child passed: {stderr}");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the child ran its whole sleep"
        );
        assert!(
            stderr.contains(&format!("{NAME}: still running 300ms")),
            "{stderr}"
        );
        assert!(stderr.contains("about to hang"), "{stderr}");
    }

    #[test]
    fn progress_notes_keep_only_the_latest() {
        for i in 0..NOTES_KEPT + 5 {
            crate::progress!("note {i}");
        }
        let notes = NOTES.lock().unwrap_or_else(PoisonError::into_inner);
        assert!(notes.len() <= NOTES_KEPT);
        assert!(notes
            .iter()
            .any(|(_, m)| m == &format!("note {}", NOTES_KEPT + 4)));
        assert!(!notes.iter().any(|(_, m)| m == "note 0"));
    }
}
