//! The consumer-group calls of every adapter, written once: commits that
//! report their outcome, the group's events, `allow_rebalance` and
//! `abort`. Each hands a [`Command`](crate::session::Command) with a
//! [`Reply`](crate::session::Reply) to the driver and waits on the
//! [`Answer`](crate::session::Answer); the bookkeeping is the session's
//! (see [`group`](crate::session::group)). Templates, like
//! [`client_builder_methods!`](crate::client_builder_methods): the core
//! neither awaits nor blocks.
//!
//! Why events to read rather than callbacks: a callback run by the
//! driver would stall heartbeats while it runs, and one that commits
//! would wait for the driver it blocks. With
//! `GroupConfig::require_rebalance_ack` the group holds each assignment,
//! revoke or loss until `allow_rebalance`, which gives the application
//! the same "finish before the rebalance goes on" a blocking callback
//! would.
//!
//! Contract: in scope where a template is invoked, `Client` with
//! `fn send(&self, Command)`, where `Command` is the adapter's
//! `sansa_core::session::Command`; the blocking template also needs
//! `fn is_closed(&self) -> bool` and a module `wait` with
//! `fn answer<T>(Answer<T>, Option<Duration>) -> Option<T>` (the value, or
//! `None` when the driver ended without one or the time ran out).
//! Attributes given to a template (an example) are added to the doc of
//! `next_group_event`.

/// Expands to the group calls of an async adapter as an `impl Client`
/// block: each returns a future. See the [module contract](self).
#[macro_export]
macro_rules! async_group_commits {
    ($(#[$event_doc:meta])*) => {
        impl Client {
            /// Commits everything polled and not yet committed, and waits
            /// for the coordinator's answer. Fails with
            /// `CommitFailure::NoGroup` without a consumer group,
            /// `CommitFailure::Refused` when some partitions were not
            /// committed.
            pub fn commit_uncommitted_offsets(
                &self,
            ) -> impl ::std::future::Future<Output = $crate::session::CommitResult> + '_ {
                self.commit($crate::session::CommitRequest::Uncommitted)
            }

            /// Commits past these records (per partition, the offset after
            /// the highest one), forward only, and waits for the answer.
            pub fn commit_records(
                &self,
                records: &[$crate::consumer::ConsumedRecord],
            ) -> impl ::std::future::Future<Output = $crate::session::CommitResult> + '_ {
                self.commit_offsets($crate::group::offsets::positions_after(records), false)
            }

            /// Commits these positions (the next offset to consume per
            /// owned partition); positions at or below what is committed
            /// are left out unless `allow_backwards`.
            pub fn commit_offsets(
                &self,
                offsets: ::std::collections::BTreeMap<
                    $crate::group::TopicPartition,
                    $crate::group::EpochOffset,
                >,
                allow_backwards: bool,
            ) -> impl ::std::future::Future<Output = $crate::session::CommitResult> + '_ {
                self.commit($crate::session::CommitRequest::Offsets {
                    offsets,
                    allow_backwards,
                })
            }

            /// Lets a rebalance step held for the application go on (with
            /// `require_rebalance_ack` or `block_rebalance_on_poll`).
            pub fn allow_rebalance(&self) {
                self.send($crate::session::Command::AllowRebalance);
            }

            /// The group's next event: partitions assigned, revoked or
            /// lost, a group error, or the outcome of a commit nobody
            /// awaited (auto, on revoke). `None` once the client is
            /// closed. Events wait (up to a bound, oldest dropped) until
            /// read. Rebalances are events to read here, not callbacks;
            /// with `GroupConfig::require_rebalance_ack` each step waits
            /// for [`Client::allow_rebalance`].
            $(#[$event_doc])*
            pub fn next_group_event(&self) -> impl ::std::future::Future<Output = Option<$crate::group::GroupEvent>> + '_ {
                async move {
                    let (event, reply) = $crate::session::answer();
                    self.send($crate::session::Command::NextGroupEvent(reply));
                    event.await
                }
            }

            /// Stops at once, as a crash would: no flush, no final commit,
            /// no LeaveGroup (the coordinator keeps the member's
            /// partitions until its session timeout). Records not yet
            /// delivered fail with `ProduceError::Closed`.
            pub fn abort(&self) -> impl ::std::future::Future<Output = ()> + '_ {
                async move {
                    let (done, reply) = $crate::session::answer();
                    self.send($crate::session::Command::Abort(Some(reply)));
                    let _ = done.await;
                }
            }

            /// Hands a commit to the driver and waits for its answer.
            fn commit(
                &self,
                request: $crate::session::CommitRequest,
            ) -> impl ::std::future::Future<Output = $crate::session::CommitResult> + '_ {
                async move {
                    let (outcome, reply) = $crate::session::answer();
                    self.send($crate::session::Command::Commit(request, reply));
                    outcome
                        .await
                        .unwrap_or(Err($crate::session::CommitFailure::Closed))
                }
            }
        }
    };
}

/// Expands to the group calls of the blocking adapter as an `impl
/// Client` block: each blocks, the commits for at most a timeout
/// (`CommitFailure::TimedOut` then; the commit goes on). See the
/// [module contract](self).
#[macro_export]
macro_rules! blocking_group_commits {
    ($(#[$event_doc:meta])*) => {
        impl Client {
            /// Commits everything polled and not yet committed, and blocks
            /// for the coordinator's answer at most `timeout`
            /// (`CommitFailure::TimedOut` then; the commit goes on). Fails
            /// with `CommitFailure::NoGroup` without a consumer group,
            /// `CommitFailure::Refused` when some partitions were not
            /// committed.
            pub fn commit_uncommitted_offsets(
                &self,
                timeout: ::std::time::Duration,
            ) -> $crate::session::CommitResult {
                self.commit($crate::session::CommitRequest::Uncommitted, timeout)
            }

            /// Commits past these records (per partition, the offset after
            /// the highest one), forward only; blocks for the answer at
            /// most `timeout`.
            pub fn commit_records(
                &self,
                records: &[$crate::consumer::ConsumedRecord],
                timeout: ::std::time::Duration,
            ) -> $crate::session::CommitResult {
                let offsets = $crate::group::offsets::positions_after(records);
                self.commit_offsets(offsets, false, timeout)
            }

            /// Commits these positions (the next offset to consume per
            /// owned partition); positions at or below what is committed
            /// are left out unless `allow_backwards`. Blocks for the
            /// answer at most `timeout`.
            pub fn commit_offsets(
                &self,
                offsets: ::std::collections::BTreeMap<
                    $crate::group::TopicPartition,
                    $crate::group::EpochOffset,
                >,
                allow_backwards: bool,
                timeout: ::std::time::Duration,
            ) -> $crate::session::CommitResult {
                let request = $crate::session::CommitRequest::Offsets {
                    offsets,
                    allow_backwards,
                };
                self.commit(request, timeout)
            }

            /// Lets a rebalance step held for the application go on (with
            /// `require_rebalance_ack` or `block_rebalance_on_poll`).
            pub fn allow_rebalance(&self) {
                self.send($crate::session::Command::AllowRebalance);
            }

            /// The group's next event (partitions assigned, revoked or
            /// lost, a group error, the outcome of a commit nobody
            /// awaited), waiting at most `timeout`; `None` when none came
            /// in time or the client is closed. Events wait (up to a
            /// bound, oldest dropped) until read. Rebalances are events to
            /// read here, not callbacks; with
            /// `GroupConfig::require_rebalance_ack` each step waits for
            /// [`Client::allow_rebalance`].
            $(#[$event_doc])*
            pub fn next_group_event(
                &self,
                timeout: ::std::time::Duration,
            ) -> Option<$crate::group::GroupEvent> {
                let (event, reply) = $crate::session::answer();
                self.send($crate::session::Command::NextGroupEvent(reply));
                wait::answer(event, Some(timeout))
            }

            /// Stops at once, as a crash would: no flush, no final commit,
            /// no LeaveGroup (the coordinator keeps the member's
            /// partitions until its session timeout). Records not yet
            /// delivered fail with `ProduceError::Closed`.
            pub fn abort(&self) {
                let (done, reply) = $crate::session::answer();
                self.send($crate::session::Command::Abort(Some(reply)));
                wait::answer(done, None);
            }

            /// Hands a commit to the driver and waits at most `timeout`
            /// for its answer.
            fn commit(
                &self,
                request: $crate::session::CommitRequest,
                timeout: ::std::time::Duration,
            ) -> $crate::session::CommitResult {
                let (outcome, reply) = $crate::session::answer();
                self.send($crate::session::Command::Commit(request, reply));
                wait::answer(outcome, Some(timeout)).unwrap_or_else(|| {
                    Err(if self.is_closed() {
                        $crate::session::CommitFailure::Closed
                    } else {
                        $crate::session::CommitFailure::TimedOut
                    })
                })
            }
        }
    };
}
