//! librdkafka's mock cluster: a multi-broker Kafka stand-in inside the test
//! process, with fault controls.
//!
//! # Why this talks to `rdkafka_sys` directly (and uses `unsafe`)
//!
//! `rdkafka::mocking::MockCluster` hides its cluster pointer, so a test could
//! not reach the knobs it lacks, above all the group initial rebalance delay:
//! librdkafka's mock defaults it to 3 s, which every classic-group test would
//! pay on each join. The alternative, a client created with
//! `test.mock.num.brokers`, owns a cluster whose pointer *is* reachable, but
//! that client connects to the cluster itself (seen with `ss`: it opens a
//! connection at once) and would swallow injected request errors meant for
//! the client under test. So this module owns the cluster the way the crate
//! does (`rd_kafka_mock_cluster_new` on a client with no bootstrap servers,
//! which never connects anywhere) and wraps each control it needs. Every
//! `unsafe` block is an FFI call that gets the live cluster pointer and, at
//! most, a NUL-terminated string that outlives the call.

#![allow(unsafe_code)]

use std::ffi::{c_int, CStr, CString};
use std::ops::RangeInclusive;
use std::ptr::NonNull;
use std::time::Duration;

use rdkafka::bindings as rdsys;
use rdkafka::bindings::rd_kafka_mock_cluster_t;
use rdkafka::client::{Client, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::types::{RDKafkaRespErr, RDKafkaType};
use sansa_core::protocol::{ApiKey, ErrorCode};

use super::{KafkaPeer, PeerError};
use crate::deadline::TestDeadline;

/// Which coordinator [`MockCluster::coordinator`] pins to a broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Coordinator {
    /// The group coordinator of this group id.
    Group(String),
    /// The transaction coordinator of this transactional id.
    Transaction(String),
}

/// One request the cluster received while tracking was on
/// ([`MockCluster::start_request_tracking`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackedRequest {
    /// The broker that received it.
    pub broker_id: i32,
    /// Its API key (`None` if sansa-core does not know the key).
    pub api_key: Option<ApiKey>,
    /// When it arrived, on librdkafka's monotonic clock in microseconds.
    pub timestamp_us: i64,
}

/// librdkafka's mock cluster with `n` brokers (ids `1..=n`) on loopback
/// ports, living inside this process until dropped.
///
/// Built with the classic group initial rebalance delay set to 0 (the mock's
/// default is 3 s). Topics are created through [`MockCluster::create_topic`]
/// (the mock has no CreateTopics API) or auto-created by Metadata.
///
/// Pitfall (BROKERS.md): each partition keeps only its last ~5 MiB or
/// 100,000 message sets; spread big volumes over many partitions.
pub struct MockCluster {
    cluster: NonNull<rd_kafka_mock_cluster_t>,
    /// The librdkafka handle the cluster runs on. It has no bootstrap
    /// servers, so it never connects anywhere; it must outlive `cluster`
    /// (Drop destroys the cluster first, then this field drops).
    _owner: Client<DefaultClientContext>,
    brokers: i32,
    bootstrap: String,
    /// Bounds the test that started this cluster; `None` once disarmed.
    deadline: Option<TestDeadline>,
}

// SAFETY: librdkafka's mock cluster is built to be driven from any thread:
// every control function either takes the cluster's mutex or posts an op to
// the cluster's own thread and waits for it (rdkafka_mock.c), and the
// bootstrap string is immutable after creation. The owning `Client` is
// itself `Send + Sync`.
unsafe impl Send for MockCluster {}
// SAFETY: as above; no method hands out interior references.
unsafe impl Sync for MockCluster {}

impl std::fmt::Debug for MockCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockCluster")
            .field("brokers", &self.brokers)
            .field("bootstrap", &self.bootstrap)
            .finish_non_exhaustive()
    }
}

impl MockCluster {
    /// Pass as a broker id to apply a broker setting to every broker.
    pub const ALL_BROKERS: i32 = -1;

    /// Starts a cluster of `brokers` brokers, with ids `1..=brokers`, and
    /// sets the group initial rebalance delay to 0.
    pub fn new(brokers: i32) -> Result<Self, PeerError> {
        let config = ClientConfig::new();
        let native = config
            .create_native_config()
            .map_err(|e| PeerError::kafka("mock cluster: librdkafka config", e))?;
        let owner = Client::new(
            &config,
            native,
            RDKafkaType::RD_KAFKA_PRODUCER,
            DefaultClientContext,
        )
        .map_err(|e| PeerError::kafka("mock cluster: librdkafka handle", e))?;
        // SAFETY: `owner.native_ptr()` is a live rd_kafka_t that `_owner`
        // keeps alive for as long as the cluster exists.
        let raw = unsafe { rdsys::rd_kafka_mock_cluster_new(owner.native_ptr(), brokers) };
        let cluster = NonNull::new(raw).ok_or_else(|| PeerError::Mock {
            op: format!("new({brokers})"),
            code: RDKafkaErrorCode::Fail,
        })?;
        // SAFETY: `cluster` is live; the returned string is owned by the
        // cluster and copied before anything can free it.
        let bootstrap = unsafe {
            CStr::from_ptr(rdsys::rd_kafka_mock_cluster_bootstraps(cluster.as_ptr()))
                .to_string_lossy()
                .into_owned()
        };
        let mock = MockCluster {
            cluster,
            _owner: owner,
            brokers,
            bootstrap,
            deadline: TestDeadline::arm_default(),
        };
        mock.group_initial_rebalance_delay(Duration::ZERO);
        Ok(mock)
    }

    /// This cluster without the bound on how long the test that started it
    /// may run ([`TestDeadline`]): for the benchmark, whose runs may take
    /// longer than any test.
    pub fn without_deadline(mut self) -> Self {
        self.deadline = None;
        self
    }

    fn ptr(&self) -> *mut rd_kafka_mock_cluster_t {
        self.cluster.as_ptr()
    }

    /// The `bootstrap.servers` string of all brokers.
    pub fn bootstrap(&self) -> String {
        self.bootstrap.clone()
    }

    /// The broker ids: `1..=n`.
    pub fn broker_ids(&self) -> RangeInclusive<i32> {
        1..=self.brokers
    }

    /// Creates `topic` with `partitions` partitions of `replication`
    /// replicas each (at most the number of brokers).
    pub fn create_topic(
        &self,
        topic: &str,
        partitions: i32,
        replication: i32,
    ) -> Result<(), PeerError> {
        let name = c_string(topic)?;
        // SAFETY: live cluster, `name` outlives the call.
        let err = unsafe {
            rdsys::rd_kafka_mock_topic_create(self.ptr(), name.as_ptr(), partitions, replication)
        };
        check(err, || {
            format!("create_topic({topic:?}, {partitions}, {replication})")
        })
    }

    /// Makes `broker_id` the leader of `topic`/`partition`, or leaves the
    /// partition without a leader when `None`. Clients learn of it through
    /// NOT_LEADER_OR_FOLLOWER and a metadata refresh, as with a real move.
    pub fn partition_leader(
        &self,
        topic: &str,
        partition: i32,
        broker_id: Option<i32>,
    ) -> Result<(), PeerError> {
        let name = c_string(topic)?;
        let id = broker_id.unwrap_or(-1);
        // SAFETY: live cluster, `name` outlives the call.
        let err = unsafe {
            rdsys::rd_kafka_mock_partition_set_leader(self.ptr(), name.as_ptr(), partition, id)
        };
        check(err, || {
            format!("partition_leader({topic:?}, {partition}, {broker_id:?})")
        })
    }

    /// Makes `broker_id` the preferred follower of `topic`/`partition`, the
    /// one Fetch from followers (KIP-392) is sent to.
    pub fn partition_follower(
        &self,
        topic: &str,
        partition: i32,
        broker_id: i32,
    ) -> Result<(), PeerError> {
        let name = c_string(topic)?;
        // SAFETY: live cluster, `name` outlives the call.
        let err = unsafe {
            rdsys::rd_kafka_mock_partition_set_follower(
                self.ptr(),
                name.as_ptr(),
                partition,
                broker_id,
            )
        };
        check(err, || {
            format!("partition_follower({topic:?}, {partition}, {broker_id})")
        })
    }

    /// Overrides the low and high watermarks the follower of
    /// `topic`/`partition` reports (`-1` restores the leader's).
    pub fn follower_watermarks(
        &self,
        topic: &str,
        partition: i32,
        low: i64,
        high: i64,
    ) -> Result<(), PeerError> {
        let name = c_string(topic)?;
        // SAFETY: live cluster, `name` outlives the call.
        let err = unsafe {
            rdsys::rd_kafka_mock_partition_set_follower_wmarks(
                self.ptr(),
                name.as_ptr(),
                partition,
                low,
                high,
            )
        };
        check(err, || {
            format!("follower_watermarks({topic:?}, {partition}, {low}, {high})")
        })
    }

    /// Disconnects `broker_id` (or [`Self::ALL_BROKERS`]) and refuses new
    /// connections. Leadership does not move: partitions it leads become
    /// unavailable until [`MockCluster::broker_up`] or a leader move.
    pub fn broker_down(&self, broker_id: i32) -> Result<(), PeerError> {
        // SAFETY: live cluster.
        let err = unsafe { rdsys::rd_kafka_mock_broker_set_down(self.ptr(), broker_id) };
        check(err, || format!("broker_down({broker_id})"))
    }

    /// Lets `broker_id` (or [`Self::ALL_BROKERS`]) accept connections again.
    pub fn broker_up(&self, broker_id: i32) -> Result<(), PeerError> {
        // SAFETY: live cluster.
        let err = unsafe { rdsys::rd_kafka_mock_broker_set_up(self.ptr(), broker_id) };
        check(err, || format!("broker_up({broker_id})"))
    }

    /// Delays every response of `broker_id` (or [`Self::ALL_BROKERS`]) by
    /// `rtt` (millisecond resolution).
    pub fn round_trip_time(&self, broker_id: i32, rtt: Duration) -> Result<(), PeerError> {
        let ms = c_int::try_from(rtt.as_millis()).unwrap_or(c_int::MAX);
        // SAFETY: live cluster.
        let err = unsafe { rdsys::rd_kafka_mock_broker_set_rtt(self.ptr(), broker_id, ms) };
        check(err, || format!("round_trip_time({broker_id}, {rtt:?})"))
    }

    /// Queues `errors` for the next requests of `api` to any broker: each
    /// request takes the next error from the front of the queue, and once it
    /// is empty requests succeed again.
    pub fn request_errors(&self, api: ApiKey, errors: &[ErrorCode]) -> Result<(), PeerError> {
        let errors = errors
            .iter()
            .map(|e| resp_err(*e))
            .collect::<Result<Vec<_>, _>>()?;
        // SAFETY: live cluster; librdkafka copies `errors.len()` codes from
        // the array before returning.
        unsafe {
            rdsys::rd_kafka_mock_push_request_errors_array(
                self.ptr(),
                api.key(),
                errors.len(),
                errors.as_ptr(),
            );
        }
        Ok(())
    }

    /// Forgets the queued errors of `api` ([`MockCluster::request_errors`]).
    pub fn clear_request_errors(&self, api: ApiKey) {
        // SAFETY: live cluster.
        unsafe { rdsys::rd_kafka_mock_clear_request_errors(self.ptr(), api.key()) }
    }

    /// Queues errors for the next requests of `api` to one broker, each with
    /// its own extra response delay (e.g. `(ErrorCode::None, 5 s)` makes the
    /// next request time out without failing it).
    pub fn broker_request_errors_with_rtt(
        &self,
        broker_id: i32,
        api: ApiKey,
        errors: &[(ErrorCode, Duration)],
    ) -> Result<(), PeerError> {
        for (error, rtt) in errors {
            let code = resp_err(*error)?;
            let ms = c_int::try_from(rtt.as_millis()).unwrap_or(c_int::MAX);
            // SAFETY: live cluster; the variadic arguments are exactly the
            // one (rd_kafka_resp_err_t, int) pair that `cnt = 1` announces,
            // each promoted to int as C's variadic convention expects.
            let err = unsafe {
                rdsys::rd_kafka_mock_broker_push_request_error_rtts(
                    self.ptr(),
                    broker_id,
                    api.key(),
                    1,
                    code as c_int,
                    ms,
                )
            };
            check(err, || {
                format!("broker_request_errors_with_rtt({broker_id}, {api:?}, {error:?}, {rtt:?})")
            })?;
        }
        Ok(())
    }

    /// Makes every request about `topic` fail with `error` (Metadata and
    /// Produce/Fetch per partition), until set back to `ErrorCode::None`.
    pub fn topic_error(&self, topic: &str, error: ErrorCode) -> Result<(), PeerError> {
        let name = c_string(topic)?;
        let code = resp_err(error)?;
        // SAFETY: live cluster, `name` outlives the call.
        unsafe { rdsys::rd_kafka_mock_topic_set_error(self.ptr(), name.as_ptr(), code) }
        Ok(())
    }

    /// Pins the group or transaction coordinator of a key to `broker_id`.
    pub fn coordinator(&self, which: &Coordinator, broker_id: i32) -> Result<(), PeerError> {
        let (kind, key) = match which {
            Coordinator::Group(id) => ("group", id.as_str()),
            Coordinator::Transaction(id) => ("transaction", id.as_str()),
        };
        let kind_c = c_string(kind)?;
        let key_c = c_string(key)?;
        // SAFETY: live cluster, both strings outlive the call.
        let err = unsafe {
            rdsys::rd_kafka_mock_coordinator_set(
                self.ptr(),
                kind_c.as_ptr(),
                key_c.as_ptr(),
                broker_id,
            )
        };
        check(err, || format!("coordinator({which:?}, {broker_id})"))
    }

    /// Narrows the versions of `api` the brokers advertise in ApiVersions
    /// (`max` may not exceed what the mock implements; `-1, -1` disables the
    /// API).
    pub fn api_versions(&self, api: ApiKey, min: i16, max: i16) -> Result<(), PeerError> {
        // SAFETY: live cluster.
        let err = unsafe { rdsys::rd_kafka_mock_set_apiversion(self.ptr(), api.key(), min, max) };
        check(err, || format!("api_versions({api:?}, {min}, {max})"))
    }

    /// Sets how long a new classic group waits for more members before its
    /// first rebalance (`group.initial.rebalance.delay.ms`; 0 from
    /// [`MockCluster::new`], 3 s in librdkafka's default).
    pub fn group_initial_rebalance_delay(&self, delay: Duration) {
        let ms = i32::try_from(delay.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: live cluster.
        unsafe { rdsys::rd_kafka_mock_group_initial_rebalance_delay_ms(self.ptr(), ms) }
    }

    /// Sets the session timeout of KIP-848 (consumer protocol) groups.
    pub fn consumer_group_session_timeout(&self, timeout: Duration) {
        let ms = c_int::try_from(timeout.as_millis()).unwrap_or(c_int::MAX);
        // SAFETY: live cluster.
        unsafe { rdsys::rd_kafka_mock_set_group_consumer_session_timeout_ms(self.ptr(), ms) }
    }

    /// Sets the heartbeat interval of KIP-848 (consumer protocol) groups.
    pub fn consumer_group_heartbeat_interval(&self, interval: Duration) {
        let ms = c_int::try_from(interval.as_millis()).unwrap_or(c_int::MAX);
        // SAFETY: live cluster.
        unsafe { rdsys::rd_kafka_mock_set_group_consumer_heartbeat_interval_ms(self.ptr(), ms) }
    }

    /// Starts recording every request the brokers receive.
    pub fn start_request_tracking(&self) {
        // SAFETY: live cluster.
        unsafe { rdsys::rd_kafka_mock_start_request_tracking(self.ptr()) }
    }

    /// Stops recording requests and forgets those recorded.
    pub fn stop_request_tracking(&self) {
        // SAFETY: live cluster.
        unsafe { rdsys::rd_kafka_mock_stop_request_tracking(self.ptr()) }
    }

    /// Forgets the requests recorded so far; tracking goes on.
    pub fn clear_requests(&self) {
        // SAFETY: live cluster.
        unsafe { rdsys::rd_kafka_mock_clear_requests(self.ptr()) }
    }

    /// The requests recorded since tracking started (or the last clear), in
    /// arrival order.
    pub fn requests(&self) -> Vec<TrackedRequest> {
        let mut count = 0usize;
        // SAFETY: live cluster; on return `array` is null or holds `count`
        // request copies that we own and free below with the matching
        // destroy function, after reading them.
        unsafe {
            let array = rdsys::rd_kafka_mock_get_requests(self.ptr(), &mut count);
            if array.is_null() {
                return Vec::new();
            }
            let out = (0..count)
                .map(|i| {
                    let req = *array.add(i);
                    TrackedRequest {
                        broker_id: rdsys::rd_kafka_mock_request_id(req),
                        api_key: ApiKey::from_i16(rdsys::rd_kafka_mock_request_api_key(req)),
                        timestamp_us: rdsys::rd_kafka_mock_request_timestamp(req),
                    }
                })
                .collect();
            rdsys::rd_kafka_mock_request_destroy_array(array, count);
            out
        }
    }
}

impl Drop for MockCluster {
    fn drop(&mut self) {
        // SAFETY: the cluster is live and destroyed exactly once, here,
        // before `_owner` (the rd_kafka_t it runs on) is dropped.
        unsafe { rdsys::rd_kafka_mock_cluster_destroy(self.ptr()) }
    }
}

impl KafkaPeer for MockCluster {
    fn name(&self) -> &'static str {
        "librdkafka mock cluster"
    }

    fn bootstrap(&self) -> String {
        MockCluster::bootstrap(self)
    }

    fn create_topic(
        &self,
        topic: &str,
        partitions: i32,
        replication: i32,
    ) -> Result<(), PeerError> {
        MockCluster::create_topic(self, topic, partitions, replication)
    }
}

fn c_string(s: &str) -> Result<CString, PeerError> {
    CString::new(s).map_err(|_| PeerError::Mock {
        op: format!("{s:?} contains a NUL byte"),
        code: RDKafkaErrorCode::InvalidArgument,
    })
}

fn resp_err(error: ErrorCode) -> Result<RDKafkaRespErr, PeerError> {
    RDKafkaRespErr::try_from(i32::from(error.code()))
        .map_err(|_| PeerError::UnknownToLibrdkafka(error.code()))
}

fn check(err: RDKafkaRespErr, op: impl FnOnce() -> String) -> Result<(), PeerError> {
    if err == RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
        Ok(())
    } else {
        Err(PeerError::Mock {
            op: op(),
            code: err.into(),
        })
    }
}
