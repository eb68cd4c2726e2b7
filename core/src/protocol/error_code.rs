//! Kafka's error codes: the `int16` that responses carry for the whole
//! request, per topic or per partition.
//!
//! [`ErrorCode`] names every code that Apache Kafka 4.0 defines, `-1..=129`
//! with no gaps. A code this build does not know decodes to
//! [`ErrorCode::Unknown`] with the number kept, so it can still be logged,
//! compared and encoded again. (Kafka's Java client turns such a code into
//! `UNKNOWN_SERVER_ERROR` and loses it.) Codes 130 to 133, added in Kafka 4.1
//! for streams groups (KIP-1071) and share-session limits (KIP-932), are
//! `Unknown` here until the table grows.
//!
//! # Where the table comes from
//!
//! Names, numbers and messages are those of
//! `clients/src/main/java/org/apache/kafka/common/protocol/Errors.java` as of
//! Kafka 4.0; the message is the default text Kafka gives each exception, and
//! the one a broker sends when it has nothing better.
//!
//! Two flags come from the Java exception class behind each code:
//!
//! - [`ErrorCode::is_retriable`]: the class extends `RetriableException`,
//!   directly or through `InvalidMetadataException`. This is the "Retriable"
//!   column of the protocol guide. It means the same request *may* succeed
//!   later, not that resending it is harmless: after
//!   `NOT_ENOUGH_REPLICAS_AFTER_APPEND` the records were written, and a
//!   producer that resends them without idempotence duplicates them.
//! - [`ErrorCode::invalidates_metadata`]: the class extends
//!   `InvalidMetadataException` ("the client's metadata is out of date"). The
//!   Java client asks for a metadata refresh on these and so does sansa.
//!
//! Some codes that sound stale are deliberately not in the second set,
//! because Java does not put them there and refreshing would not help:
//!
//! - `UNKNOWN_LEADER_EPOCH`: the client's leader epoch is *newer* than the
//!   broker's; the broker is behind, so the fix is to wait and retry.
//! - `NOT_COORDINATOR`, `COORDINATOR_NOT_AVAILABLE`: the cure is to find the
//!   coordinator again (FindCoordinator), not to refresh topic metadata.
//! - `REBOOTSTRAP_REQUIRED` (KIP-1102): the client must forget every broker
//!   it knows and start again from its bootstrap servers, which is stronger
//!   than a refresh; it is not retriable either.
//!
//! ```
//! use sansa_core::protocol::error_code::ErrorCode;
//!
//! let error = ErrorCode::from_code(6);
//! assert_eq!(error, ErrorCode::NotLeaderOrFollower);
//! assert!(error.is_retriable() && error.invalidates_metadata());
//! assert_eq!(ErrorCode::from_code(0).into_result(), Ok(()));
//! assert_eq!(ErrorCode::from_code(999).code(), 999);
//! ```

use std::fmt;

/// Turns the flag list of one table row into a `bool` at compile time.
macro_rules! flag {
    ($wanted:ident in) => {
        false
    };
    (retriable in retriable $(, $rest:ident)*) => {
        true
    };
    (stale_metadata in stale_metadata $(, $rest:ident)*) => {
        true
    };
    ($wanted:ident in $other:ident $(, $rest:ident)*) => {
        flag!($wanted in $($rest),*)
    };
}

/// Builds [`ErrorCode`] and its lookups from one row per code:
/// `(code, Variant, "NAME", [flags], "message")`, where the flags are
/// `retriable` and `stale_metadata`. Every lookup is a `match`, so the
/// compiler turns each into a jump or a table, never a search.
macro_rules! error_codes {
    ($(
        $(#[doc = $extra:literal])*
        ($code:literal, $variant:ident, $name:literal, [$($flag:ident),*], $message:literal),
    )*) => {
        /// A Kafka error code (an `int16` on the wire), as Kafka 4.0 names it.
        ///
        /// Build one with [`ErrorCode::from_code`] (or `From<i16>`): it never
        /// fails, and a code this build does not know becomes
        /// [`ErrorCode::Unknown`] holding the number.
        ///
        /// The success code is spelled [`ErrorCode::None`], Kafka's own name
        /// for it, so that the enum reads like the protocol guide. Test it
        /// with [`ErrorCode::is_ok`] or [`ErrorCode::into_result`]; and do not
        /// glob-import the variants (`use ErrorCode::*`), which would shadow
        /// `Option::None`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $(
                #[doc = concat!("`", $name, "` (", stringify!($code), ")")]
                #[doc = ""]
                #[doc = $message]
                $(#[doc = $extra])*
                $variant,
            )*
            /// A code this build does not know, kept as it came so that it is
            /// never lost: it can be logged, compared and encoded again.
            ///
            /// [`ErrorCode::from_code`] only makes it for codes missing from
            /// the table; an `Unknown` built by hand around a known code does
            /// not compare equal to that code's variant.
            Unknown(i16),
        }

        impl ErrorCode {
            /// Every code this build knows, in increasing order of code.
            pub const ALL: &[ErrorCode] = &[$(ErrorCode::$variant),*];

            /// The error for a code read off the wire; unknown codes are kept
            /// in [`ErrorCode::Unknown`].
            pub const fn from_code(code: i16) -> ErrorCode {
                match code {
                    $($code => ErrorCode::$variant,)*
                    other => ErrorCode::Unknown(other),
                }
            }

            /// The code to put on the wire.
            pub const fn code(self) -> i16 {
                match self {
                    $(ErrorCode::$variant => $code,)*
                    ErrorCode::Unknown(code) => code,
                }
            }

            /// Kafka's name for the code, such as `"OFFSET_OUT_OF_RANGE"`;
            /// `"UNKNOWN"` for a code this build does not know.
            pub const fn name(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $name,)*
                    ErrorCode::Unknown(_) => "UNKNOWN",
                }
            }

            /// Whether Kafka calls this error retriable: the same request may
            /// succeed if sent again later (see the module docs for what that
            /// does not promise). `false` for unknown codes, as in the Java
            /// client, which treats them as `UNKNOWN_SERVER_ERROR`.
            pub const fn is_retriable(self) -> bool {
                match self {
                    $(ErrorCode::$variant => flag!(retriable in $($flag),*),)*
                    ErrorCode::Unknown(_) => false,
                }
            }

            /// Whether this error means the client's metadata is out of date
            /// and should be refreshed before retrying (Java's
            /// `InvalidMetadataException`): a moved leader, a topic that
            /// appeared or vanished, a failed disk, a lost connection. Every
            /// such code is also retriable. See the module docs for stale-
            /// sounding codes that are deliberately left out.
            pub const fn invalidates_metadata(self) -> bool {
                match self {
                    $(ErrorCode::$variant => flag!(stale_metadata in $($flag),*),)*
                    ErrorCode::Unknown(_) => false,
                }
            }

            /// Kafka's default message for this error: the text a broker
            /// sends when it has nothing more specific. Empty for
            /// [`ErrorCode::None`], which has no message in Kafka.
            pub const fn message(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $message,)*
                    ErrorCode::Unknown(_) => {
                        "The broker sent an error code that this client does not know."
                    }
                }
            }
        }
    };
}

error_codes! {
    // (code, Variant, "NAME", [flags], "default message from Errors.java"),
    (-1, UnknownServerError, "UNKNOWN_SERVER_ERROR", [], "The server experienced an unexpected error when processing the request."),
    /// No error: the request, or this part of it, succeeded.
    (0, None, "NONE", [], ""),
    (1, OffsetOutOfRange, "OFFSET_OUT_OF_RANGE", [], "The requested offset is not within the range of offsets maintained by the server."),
    (2, CorruptMessage, "CORRUPT_MESSAGE", [retriable], "This message has failed its CRC checksum, exceeds the valid size, has a null key for a compacted topic, or is otherwise corrupt."),
    (3, UnknownTopicOrPartition, "UNKNOWN_TOPIC_OR_PARTITION", [retriable, stale_metadata], "This server does not host this topic-partition."),
    (4, InvalidFetchSize, "INVALID_FETCH_SIZE", [], "The requested fetch size is invalid."),
    (5, LeaderNotAvailable, "LEADER_NOT_AVAILABLE", [retriable, stale_metadata], "There is no leader for this topic-partition as we are in the middle of a leadership election."),
    (6, NotLeaderOrFollower, "NOT_LEADER_OR_FOLLOWER", [retriable, stale_metadata], "For requests intended only for the leader, this error indicates that the broker is not the current leader. For requests intended for any replica, this error indicates that the broker is not a replica of the topic partition."),
    (7, RequestTimedOut, "REQUEST_TIMED_OUT", [retriable], "The request timed out."),
    (8, BrokerNotAvailable, "BROKER_NOT_AVAILABLE", [], "The broker is not available."),
    (9, ReplicaNotAvailable, "REPLICA_NOT_AVAILABLE", [retriable, stale_metadata], "The replica is not available for the requested topic-partition. Produce/Fetch requests and other requests intended only for the leader or follower return NOT_LEADER_OR_FOLLOWER if the broker is not a replica of the topic-partition."),
    (10, MessageTooLarge, "MESSAGE_TOO_LARGE", [], "The request included a message larger than the max message size the server will accept."),
    (11, StaleControllerEpoch, "STALE_CONTROLLER_EPOCH", [], "The controller moved to another broker."),
    (12, OffsetMetadataTooLarge, "OFFSET_METADATA_TOO_LARGE", [], "The metadata field of the offset request was too large."),
    (13, NetworkException, "NETWORK_EXCEPTION", [retriable, stale_metadata], "The server disconnected before a response was received."),
    (14, CoordinatorLoadInProgress, "COORDINATOR_LOAD_IN_PROGRESS", [retriable], "The coordinator is loading and hence can't process requests."),
    (15, CoordinatorNotAvailable, "COORDINATOR_NOT_AVAILABLE", [retriable], "The coordinator is not available."),
    (16, NotCoordinator, "NOT_COORDINATOR", [retriable], "This is not the correct coordinator."),
    (17, InvalidTopicException, "INVALID_TOPIC_EXCEPTION", [], "The request attempted to perform an operation on an invalid topic."),
    (18, RecordListTooLarge, "RECORD_LIST_TOO_LARGE", [], "The request included message batch larger than the configured segment size on the server."),
    (19, NotEnoughReplicas, "NOT_ENOUGH_REPLICAS", [retriable], "Messages are rejected since there are fewer in-sync replicas than required."),
    (20, NotEnoughReplicasAfterAppend, "NOT_ENOUGH_REPLICAS_AFTER_APPEND", [retriable], "Messages are written to the log, but to fewer in-sync replicas than required."),
    (21, InvalidRequiredAcks, "INVALID_REQUIRED_ACKS", [], "Produce request specified an invalid value for required acks."),
    (22, IllegalGeneration, "ILLEGAL_GENERATION", [], "Specified group generation id is not valid."),
    (23, InconsistentGroupProtocol, "INCONSISTENT_GROUP_PROTOCOL", [], "The group member's supported protocols are incompatible with those of existing members or first group member tried to join with empty protocol type or empty protocol list."),
    (24, InvalidGroupId, "INVALID_GROUP_ID", [], "The configured groupId is invalid."),
    (25, UnknownMemberId, "UNKNOWN_MEMBER_ID", [], "The coordinator is not aware of this member."),
    (26, InvalidSessionTimeout, "INVALID_SESSION_TIMEOUT", [], "The session timeout is not within the range allowed by the broker (as configured by group.min.session.timeout.ms and group.max.session.timeout.ms)."),
    (27, RebalanceInProgress, "REBALANCE_IN_PROGRESS", [], "The group is rebalancing, so a rejoin is needed."),
    (28, InvalidCommitOffsetSize, "INVALID_COMMIT_OFFSET_SIZE", [], "The committing offset data size is not valid."),
    (29, TopicAuthorizationFailed, "TOPIC_AUTHORIZATION_FAILED", [], "Topic authorization failed."),
    (30, GroupAuthorizationFailed, "GROUP_AUTHORIZATION_FAILED", [], "Group authorization failed."),
    (31, ClusterAuthorizationFailed, "CLUSTER_AUTHORIZATION_FAILED", [], "Cluster authorization failed."),
    (32, InvalidTimestamp, "INVALID_TIMESTAMP", [], "The timestamp of the message is out of acceptable range."),
    (33, UnsupportedSaslMechanism, "UNSUPPORTED_SASL_MECHANISM", [], "The broker does not support the requested SASL mechanism."),
    (34, IllegalSaslState, "ILLEGAL_SASL_STATE", [], "Request is not valid given the current SASL state."),
    (35, UnsupportedVersion, "UNSUPPORTED_VERSION", [], "The version of API is not supported."),
    (36, TopicAlreadyExists, "TOPIC_ALREADY_EXISTS", [], "Topic with this name already exists."),
    (37, InvalidPartitions, "INVALID_PARTITIONS", [], "Number of partitions is below 1."),
    (38, InvalidReplicationFactor, "INVALID_REPLICATION_FACTOR", [], "Replication factor is below 1 or larger than the number of available brokers."),
    (39, InvalidReplicaAssignment, "INVALID_REPLICA_ASSIGNMENT", [], "Replica assignment is invalid."),
    (40, InvalidConfig, "INVALID_CONFIG", [], "Configuration is invalid."),
    (41, NotController, "NOT_CONTROLLER", [retriable], "This is not the correct controller for this cluster."),
    (42, InvalidRequest, "INVALID_REQUEST", [], "This most likely occurs because of a request being malformed by the client library or the message was sent to an incompatible broker. See the broker logs for more details."),
    (43, UnsupportedForMessageFormat, "UNSUPPORTED_FOR_MESSAGE_FORMAT", [], "The message format version on the broker does not support the request."),
    (44, PolicyViolation, "POLICY_VIOLATION", [], "Request parameters do not satisfy the configured policy."),
    (45, OutOfOrderSequenceNumber, "OUT_OF_ORDER_SEQUENCE_NUMBER", [], "The broker received an out of order sequence number."),
    (46, DuplicateSequenceNumber, "DUPLICATE_SEQUENCE_NUMBER", [], "The broker received a duplicate sequence number."),
    (47, InvalidProducerEpoch, "INVALID_PRODUCER_EPOCH", [], "Producer attempted to produce with an old epoch."),
    (48, InvalidTxnState, "INVALID_TXN_STATE", [], "The producer attempted a transactional operation in an invalid state."),
    (49, InvalidProducerIdMapping, "INVALID_PRODUCER_ID_MAPPING", [], "The producer attempted to use a producer id which is not currently assigned to its transactional id."),
    (50, InvalidTransactionTimeout, "INVALID_TRANSACTION_TIMEOUT", [], "The transaction timeout is larger than the maximum value allowed by the broker (as configured by transaction.max.timeout.ms)."),
    (51, ConcurrentTransactions, "CONCURRENT_TRANSACTIONS", [retriable], "The producer attempted to update a transaction while another concurrent operation on the same transaction was ongoing."),
    (52, TransactionCoordinatorFenced, "TRANSACTION_COORDINATOR_FENCED", [], "Indicates that the transaction coordinator sending a WriteTxnMarker is no longer the current coordinator for a given producer."),
    (53, TransactionalIdAuthorizationFailed, "TRANSACTIONAL_ID_AUTHORIZATION_FAILED", [], "Transactional Id authorization failed."),
    (54, SecurityDisabled, "SECURITY_DISABLED", [], "Security features are disabled."),
    (55, OperationNotAttempted, "OPERATION_NOT_ATTEMPTED", [], "The broker did not attempt to execute this operation. This may happen for batched RPCs where some operations in the batch failed, causing the broker to respond without trying the rest."),
    (56, KafkaStorageError, "KAFKA_STORAGE_ERROR", [retriable, stale_metadata], "Disk error when trying to access log file on the disk."),
    (57, LogDirNotFound, "LOG_DIR_NOT_FOUND", [], "The user-specified log directory is not found in the broker config."),
    (58, SaslAuthenticationFailed, "SASL_AUTHENTICATION_FAILED", [], "SASL Authentication failed."),
    (59, UnknownProducerId, "UNKNOWN_PRODUCER_ID", [], "This exception is raised by the broker if it could not locate the producer metadata associated with the producerId in question. This could happen if, for instance, the producer's records were deleted because their retention time had elapsed. Once the last records of the producerId are removed, the producer's metadata is removed from the broker, and future appends by the producer will return this exception."),
    (60, ReassignmentInProgress, "REASSIGNMENT_IN_PROGRESS", [], "A partition reassignment is in progress."),
    (61, DelegationTokenAuthDisabled, "DELEGATION_TOKEN_AUTH_DISABLED", [], "Delegation Token feature is not enabled."),
    (62, DelegationTokenNotFound, "DELEGATION_TOKEN_NOT_FOUND", [], "Delegation Token is not found on server."),
    (63, DelegationTokenOwnerMismatch, "DELEGATION_TOKEN_OWNER_MISMATCH", [], "Specified Principal is not valid Owner/Renewer."),
    (64, DelegationTokenRequestNotAllowed, "DELEGATION_TOKEN_REQUEST_NOT_ALLOWED", [], "Delegation Token requests are not allowed on PLAINTEXT/1-way SSL channels and on delegation token authenticated channels."),
    (65, DelegationTokenAuthorizationFailed, "DELEGATION_TOKEN_AUTHORIZATION_FAILED", [], "Delegation Token authorization failed."),
    (66, DelegationTokenExpired, "DELEGATION_TOKEN_EXPIRED", [], "Delegation Token is expired."),
    (67, InvalidPrincipalType, "INVALID_PRINCIPAL_TYPE", [], "Supplied principalType is not supported."),
    (68, NonEmptyGroup, "NON_EMPTY_GROUP", [], "The group is not empty."),
    (69, GroupIdNotFound, "GROUP_ID_NOT_FOUND", [], "The group id does not exist."),
    (70, FetchSessionIdNotFound, "FETCH_SESSION_ID_NOT_FOUND", [retriable], "The fetch session ID was not found."),
    (71, InvalidFetchSessionEpoch, "INVALID_FETCH_SESSION_EPOCH", [retriable], "The fetch session epoch is invalid."),
    (72, ListenerNotFound, "LISTENER_NOT_FOUND", [retriable, stale_metadata], "There is no listener on the leader broker that matches the listener on which metadata request was processed."),
    (73, TopicDeletionDisabled, "TOPIC_DELETION_DISABLED", [], "Topic deletion is disabled."),
    (74, FencedLeaderEpoch, "FENCED_LEADER_EPOCH", [retriable, stale_metadata], "The leader epoch in the request is older than the epoch on the broker."),
    /// Retriable but not stale metadata: the broker is behind the client.
    (75, UnknownLeaderEpoch, "UNKNOWN_LEADER_EPOCH", [retriable], "The leader epoch in the request is newer than the epoch on the broker."),
    (76, UnsupportedCompressionType, "UNSUPPORTED_COMPRESSION_TYPE", [], "The requesting client does not support the compression type of given partition."),
    (77, StaleBrokerEpoch, "STALE_BROKER_EPOCH", [], "Broker epoch has changed."),
    (78, OffsetNotAvailable, "OFFSET_NOT_AVAILABLE", [retriable], "The leader high watermark has not caught up from a recent leader election so the offsets cannot be guaranteed to be monotonically increasing."),
    (79, MemberIdRequired, "MEMBER_ID_REQUIRED", [], "The group member needs to have a valid member id before actually entering a consumer group."),
    (80, PreferredLeaderNotAvailable, "PREFERRED_LEADER_NOT_AVAILABLE", [retriable, stale_metadata], "The preferred leader was not available."),
    (81, GroupMaxSizeReached, "GROUP_MAX_SIZE_REACHED", [], "The consumer group has reached its max size."),
    (82, FencedInstanceId, "FENCED_INSTANCE_ID", [], "The broker rejected this static consumer since another consumer with the same group.instance.id has registered with a different member.id."),
    (83, EligibleLeadersNotAvailable, "ELIGIBLE_LEADERS_NOT_AVAILABLE", [retriable, stale_metadata], "Eligible topic partition leaders are not available."),
    (84, ElectionNotNeeded, "ELECTION_NOT_NEEDED", [retriable, stale_metadata], "Leader election not needed for topic partition."),
    (85, NoReassignmentInProgress, "NO_REASSIGNMENT_IN_PROGRESS", [], "No partition reassignment is in progress."),
    (86, GroupSubscribedToTopic, "GROUP_SUBSCRIBED_TO_TOPIC", [], "Deleting offsets of a topic is forbidden while the consumer group is actively subscribed to it."),
    (87, InvalidRecord, "INVALID_RECORD", [], "This record has failed the validation on broker and hence will be rejected."),
    (88, UnstableOffsetCommit, "UNSTABLE_OFFSET_COMMIT", [retriable], "There are unstable offsets that need to be cleared."),
    (89, ThrottlingQuotaExceeded, "THROTTLING_QUOTA_EXCEEDED", [retriable], "The throttling quota has been exceeded."),
    (90, ProducerFenced, "PRODUCER_FENCED", [], "There is a newer producer with the same transactionalId which fences the current one."),
    (91, ResourceNotFound, "RESOURCE_NOT_FOUND", [], "A request illegally referred to a resource that does not exist."),
    (92, DuplicateResource, "DUPLICATE_RESOURCE", [], "A request illegally referred to the same resource twice."),
    (93, UnacceptableCredential, "UNACCEPTABLE_CREDENTIAL", [], "Requested credential would not meet criteria for acceptability."),
    (94, InconsistentVoterSet, "INCONSISTENT_VOTER_SET", [], "Indicates that the either the sender or recipient of a voter-only request is not one of the expected voters."),
    (95, InvalidUpdateVersion, "INVALID_UPDATE_VERSION", [], "The given update version was invalid."),
    (96, FeatureUpdateFailed, "FEATURE_UPDATE_FAILED", [], "Unable to update finalized features due to an unexpected server error."),
    (97, PrincipalDeserializationFailure, "PRINCIPAL_DESERIALIZATION_FAILURE", [], "Request principal deserialization failed during forwarding. This indicates an internal error on the broker cluster security setup."),
    (98, SnapshotNotFound, "SNAPSHOT_NOT_FOUND", [], "Requested snapshot was not found."),
    (99, PositionOutOfRange, "POSITION_OUT_OF_RANGE", [], "Requested position is not greater than or equal to zero, and less than the size of the snapshot."),
    (100, UnknownTopicId, "UNKNOWN_TOPIC_ID", [retriable, stale_metadata], "This server does not host this topic ID."),
    (101, DuplicateBrokerRegistration, "DUPLICATE_BROKER_REGISTRATION", [], "This broker ID is already in use."),
    (102, BrokerIdNotRegistered, "BROKER_ID_NOT_REGISTERED", [], "The given broker ID was not registered."),
    (103, InconsistentTopicId, "INCONSISTENT_TOPIC_ID", [retriable, stale_metadata], "The log's topic ID did not match the topic ID in the request."),
    (104, InconsistentClusterId, "INCONSISTENT_CLUSTER_ID", [], "The clusterId in the request does not match that found on the server."),
    (105, TransactionalIdNotFound, "TRANSACTIONAL_ID_NOT_FOUND", [], "The transactionalId could not be found."),
    (106, FetchSessionTopicIdError, "FETCH_SESSION_TOPIC_ID_ERROR", [retriable], "The fetch session encountered inconsistent topic ID usage."),
    (107, IneligibleReplica, "INELIGIBLE_REPLICA", [], "The new ISR contains at least one ineligible replica."),
    (108, NewLeaderElected, "NEW_LEADER_ELECTED", [], "The AlterPartition request successfully updated the partition state but the leader has changed."),
    (109, OffsetMovedToTieredStorage, "OFFSET_MOVED_TO_TIERED_STORAGE", [], "The requested offset is moved to tiered storage."),
    (110, FencedMemberEpoch, "FENCED_MEMBER_EPOCH", [], "The member epoch is fenced by the group coordinator. The member must abandon all its partitions and rejoin."),
    (111, UnreleasedInstanceId, "UNRELEASED_INSTANCE_ID", [], "The instance ID is still used by another member in the consumer group. That member must leave first."),
    (112, UnsupportedAssignor, "UNSUPPORTED_ASSIGNOR", [], "The assignor or its version range is not supported by the consumer group."),
    (113, StaleMemberEpoch, "STALE_MEMBER_EPOCH", [], "The member epoch is stale. The member must retry after receiving its updated member epoch via the ConsumerGroupHeartbeat API."),
    (114, MismatchedEndpointType, "MISMATCHED_ENDPOINT_TYPE", [], "The request was sent to an endpoint of the wrong type."),
    (115, UnsupportedEndpointType, "UNSUPPORTED_ENDPOINT_TYPE", [], "This endpoint type is not supported yet."),
    (116, UnknownControllerId, "UNKNOWN_CONTROLLER_ID", [], "This controller ID is not known."),
    (117, UnknownSubscriptionId, "UNKNOWN_SUBSCRIPTION_ID", [], "Client sent a push telemetry request with an invalid or outdated subscription ID."),
    (118, TelemetryTooLarge, "TELEMETRY_TOO_LARGE", [], "Client sent a push telemetry request larger than the maximum size the broker will accept."),
    (119, InvalidRegistration, "INVALID_REGISTRATION", [], "The controller has considered the broker registration to be invalid."),
    (120, TransactionAbortable, "TRANSACTION_ABORTABLE", [], "The server encountered an error with the transaction. The client can abort the transaction to continue using this transactional ID."),
    (121, InvalidRecordState, "INVALID_RECORD_STATE", [], "The record state is invalid. The acknowledgement of delivery could not be completed."),
    (122, ShareSessionNotFound, "SHARE_SESSION_NOT_FOUND", [retriable], "The share session was not found."),
    (123, InvalidShareSessionEpoch, "INVALID_SHARE_SESSION_EPOCH", [retriable], "The share session epoch is invalid."),
    (124, FencedStateEpoch, "FENCED_STATE_EPOCH", [], "The share coordinator rejected the request because the share-group state epoch did not match."),
    (125, InvalidVoterKey, "INVALID_VOTER_KEY", [], "The voter key doesn't match the receiving replica's key."),
    (126, DuplicateVoter, "DUPLICATE_VOTER", [], "The voter is already part of the set of voters."),
    (127, VoterNotFound, "VOTER_NOT_FOUND", [], "The voter is not part of the set of voters."),
    (128, InvalidRegularExpression, "INVALID_REGULAR_EXPRESSION", [], "The regular expression is not valid."),
    /// Neither retriable nor a metadata refresh: rebootstrap (KIP-1102).
    (129, RebootstrapRequired, "REBOOTSTRAP_REQUIRED", [], "Client metadata is stale, client should rebootstrap to obtain new metadata."),
}

impl ErrorCode {
    /// Whether this is [`ErrorCode::None`], Kafka's code for success.
    pub const fn is_ok(self) -> bool {
        matches!(self, ErrorCode::None)
    }

    /// `Ok(())` for [`ErrorCode::None`], `Err(self)` for every other code, so
    /// that a response's error field can be checked with `?`.
    pub fn into_result(self) -> Result<(), ErrorCode> {
        if self.is_ok() {
            Ok(())
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for ErrorCode {
    /// `NAME (code): message`, as in `NOT_LEADER_OR_FOLLOWER (6): For
    /// requests intended only for the leader, ...`; just `NONE (0)` for
    /// success, which has no message.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.code())?;
        match self.message() {
            "" => Ok(()),
            message => write!(f, ": {message}"),
        }
    }
}

impl std::error::Error for ErrorCode {}

impl From<i16> for ErrorCode {
    /// Same as [`ErrorCode::from_code`].
    fn from(code: i16) -> ErrorCode {
        ErrorCode::from_code(code)
    }
}

impl From<ErrorCode> for i16 {
    /// Same as [`ErrorCode::code`].
    fn from(error: ErrorCode) -> i16 {
        error.code()
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorCode;
    use proptest::prelude::*;
    use std::collections::HashSet;

    /// `NOT_LEADER_OR_FOLLOWER` -> `NotLeaderOrFollower`.
    fn camel_case(name: &str) -> String {
        name.split('_')
            .map(|word| {
                let mut chars = word.chars();
                match chars.next() {
                    Some(first) => first.to_string() + &chars.as_str().to_lowercase(),
                    None => String::new(),
                }
            })
            .collect()
    }

    fn names_where(keep: fn(ErrorCode) -> bool) -> Vec<&'static str> {
        ErrorCode::ALL
            .iter()
            .copied()
            .filter(|e| keep(*e))
            .map(ErrorCode::name)
            .collect()
    }

    #[test]
    fn every_known_code_round_trips_through_from_code() {
        for &error in ErrorCode::ALL {
            assert!(!matches!(error, ErrorCode::Unknown(_)), "{error:?}");
            assert_eq!(ErrorCode::from_code(error.code()), error);
            assert_eq!(ErrorCode::from(i16::from(error)), error);
        }
    }

    #[test]
    fn table_is_sorted_so_codes_are_unique() {
        for pair in ErrorCode::ALL.windows(2) {
            assert!(pair[0].code() < pair[1].code(), "{pair:?}");
        }
    }

    #[test]
    fn table_covers_kafka_4_0_without_gaps() {
        let codes: Vec<i16> = ErrorCode::ALL.iter().map(|e| e.code()).collect();
        let expected: Vec<i16> = (-1..=129).collect();
        assert_eq!(codes, expected);
        assert_eq!(ErrorCode::ALL.len(), 131);
        assert!(matches!(ErrorCode::from_code(130), ErrorCode::Unknown(130)));
        assert!(matches!(ErrorCode::from_code(-2), ErrorCode::Unknown(-2)));
    }

    #[test]
    fn names_are_unique_and_spell_the_variant() {
        let mut seen = HashSet::new();
        for &error in ErrorCode::ALL {
            assert!(seen.insert(error.name()), "duplicate {}", error.name());
            assert_eq!(format!("{error:?}"), camel_case(error.name()));
        }
        assert!(!seen.contains("UNKNOWN"));
    }

    #[test]
    fn every_error_but_none_has_a_message() {
        for &error in ErrorCode::ALL {
            assert_eq!(error.message().is_empty(), error == ErrorCode::None);
        }
        assert!(!ErrorCode::Unknown(4242).message().is_empty());
    }

    #[test]
    fn unknown_code_is_kept_not_mapped_to_unknown_server_error() {
        let error = ErrorCode::from_code(4242);
        assert_eq!(error, ErrorCode::Unknown(4242));
        assert_eq!(error.code(), 4242);
        assert_eq!(error.name(), "UNKNOWN");
        assert!(!error.is_retriable());
        assert!(!error.invalidates_metadata());
        assert_eq!(error.into_result(), Err(ErrorCode::Unknown(4242)));
    }

    #[test]
    fn retriable_matches_java_retriable_exception_spot_checks() {
        use ErrorCode as E;
        for error in [
            E::NotLeaderOrFollower,
            E::RequestTimedOut,
            E::UnknownTopicOrPartition,
            E::ConcurrentTransactions,
            E::CorruptMessage,
            E::NotEnoughReplicasAfterAppend,
            E::CoordinatorLoadInProgress,
            E::NotCoordinator,
            E::UnknownLeaderEpoch,
            E::ThrottlingQuotaExceeded,
            E::ShareSessionNotFound,
        ] {
            assert!(error.is_retriable(), "{error:?} should be retriable");
        }
        for error in [
            E::UnknownServerError,
            E::None,
            E::OffsetOutOfRange,
            E::OutOfOrderSequenceNumber,
            E::BrokerNotAvailable,
            E::IllegalGeneration,
            E::UnknownMemberId,
            E::RebalanceInProgress,
            E::ProducerFenced,
            E::TransactionAbortable,
            E::TopicAuthorizationFailed,
            E::RebootstrapRequired,
            E::InvalidRegularExpression,
        ] {
            assert!(!error.is_retriable(), "{error:?} should not be retriable");
        }
    }

    #[test]
    fn invalidates_metadata_matches_java_invalid_metadata_exception_spot_checks() {
        use ErrorCode as E;
        for error in [
            E::NotLeaderOrFollower,
            E::UnknownTopicOrPartition,
            E::LeaderNotAvailable,
            E::FencedLeaderEpoch,
            E::KafkaStorageError,
            E::NetworkException,
            E::UnknownTopicId,
        ] {
            assert!(error.invalidates_metadata(), "{error:?} should refresh");
        }
        for error in [
            E::UnknownLeaderEpoch,
            E::NotCoordinator,
            E::CoordinatorNotAvailable,
            E::RequestTimedOut,
            E::RebootstrapRequired,
            E::None,
        ] {
            assert!(
                !error.invalidates_metadata(),
                "{error:?} should not refresh"
            );
        }
    }

    #[test]
    fn retriable_set_is_exactly_the_java_retriable_classes() {
        let expected = [
            "CORRUPT_MESSAGE",
            "UNKNOWN_TOPIC_OR_PARTITION",
            "LEADER_NOT_AVAILABLE",
            "NOT_LEADER_OR_FOLLOWER",
            "REQUEST_TIMED_OUT",
            "REPLICA_NOT_AVAILABLE",
            "NETWORK_EXCEPTION",
            "COORDINATOR_LOAD_IN_PROGRESS",
            "COORDINATOR_NOT_AVAILABLE",
            "NOT_COORDINATOR",
            "NOT_ENOUGH_REPLICAS",
            "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
            "NOT_CONTROLLER",
            "CONCURRENT_TRANSACTIONS",
            "KAFKA_STORAGE_ERROR",
            "FETCH_SESSION_ID_NOT_FOUND",
            "INVALID_FETCH_SESSION_EPOCH",
            "LISTENER_NOT_FOUND",
            "FENCED_LEADER_EPOCH",
            "UNKNOWN_LEADER_EPOCH",
            "OFFSET_NOT_AVAILABLE",
            "PREFERRED_LEADER_NOT_AVAILABLE",
            "ELIGIBLE_LEADERS_NOT_AVAILABLE",
            "ELECTION_NOT_NEEDED",
            "UNSTABLE_OFFSET_COMMIT",
            "THROTTLING_QUOTA_EXCEEDED",
            "UNKNOWN_TOPIC_ID",
            "INCONSISTENT_TOPIC_ID",
            "FETCH_SESSION_TOPIC_ID_ERROR",
            "SHARE_SESSION_NOT_FOUND",
            "INVALID_SHARE_SESSION_EPOCH",
        ];
        assert_eq!(names_where(ErrorCode::is_retriable), expected);
    }

    #[test]
    fn stale_metadata_set_is_exactly_the_java_invalid_metadata_classes() {
        let expected = [
            "UNKNOWN_TOPIC_OR_PARTITION",
            "LEADER_NOT_AVAILABLE",
            "NOT_LEADER_OR_FOLLOWER",
            "REPLICA_NOT_AVAILABLE",
            "NETWORK_EXCEPTION",
            "KAFKA_STORAGE_ERROR",
            "LISTENER_NOT_FOUND",
            "FENCED_LEADER_EPOCH",
            "PREFERRED_LEADER_NOT_AVAILABLE",
            "ELIGIBLE_LEADERS_NOT_AVAILABLE",
            "ELECTION_NOT_NEEDED",
            "UNKNOWN_TOPIC_ID",
            "INCONSISTENT_TOPIC_ID",
        ];
        assert_eq!(names_where(ErrorCode::invalidates_metadata), expected);
    }

    #[test]
    fn every_stale_metadata_code_is_retriable() {
        for &error in ErrorCode::ALL {
            if error.invalidates_metadata() {
                assert!(error.is_retriable(), "{error:?}");
            }
        }
    }

    #[test]
    fn none_is_ok_and_everything_else_is_an_error() {
        assert!(ErrorCode::None.is_ok());
        assert_eq!(ErrorCode::None.into_result(), Ok(()));
        for &error in ErrorCode::ALL {
            if error != ErrorCode::None {
                assert!(!error.is_ok());
                assert_eq!(error.into_result(), Err(error));
            }
        }
    }

    #[test]
    fn display_is_name_code_and_message() {
        assert_eq!(
            ErrorCode::RequestTimedOut.to_string(),
            "REQUEST_TIMED_OUT (7): The request timed out."
        );
        assert!(ErrorCode::NotLeaderOrFollower
            .to_string()
            .starts_with("NOT_LEADER_OR_FOLLOWER (6): For requests intended only for the leader"));
        assert_eq!(ErrorCode::None.to_string(), "NONE (0)");
        assert_eq!(
            ErrorCode::UnknownServerError.to_string(),
            "UNKNOWN_SERVER_ERROR (-1): The server experienced an unexpected error when processing the request."
        );
        assert!(ErrorCode::Unknown(-7)
            .to_string()
            .starts_with("UNKNOWN (-7): "));
    }

    #[test]
    fn is_a_std_error() {
        let error: Box<dyn std::error::Error> = Box::new(ErrorCode::InvalidRequest);
        assert!(error.to_string().starts_with("INVALID_REQUEST (42)"));
    }

    #[test]
    fn from_code_then_code_is_identity_for_all_65536_codes() {
        for code in i16::MIN..=i16::MAX {
            assert_eq!(ErrorCode::from_code(code).code(), code);
        }
    }

    proptest! {
        #[test]
        fn from_code_then_code_is_identity_and_unknown_codes_are_kept(code in any::<i16>()) {
            let error = ErrorCode::from_code(code);
            prop_assert_eq!(error.code(), code);
            let known = (-1..=129).contains(&code);
            prop_assert_eq!(matches!(error, ErrorCode::Unknown(_)), !known);
            prop_assert_eq!(ErrorCode::from(code), error);
        }
    }
}
