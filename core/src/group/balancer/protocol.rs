//! The bytes members and leader exchange through the coordinator: the
//! consumer protocol's subscription (JoinGroup metadata) and assignment
//! (SyncGroup), each an `int16` version followed by the
//! `ConsumerProtocolSubscription` / `ConsumerProtocolAssignment` body, and
//! the `user_data` formats of Java's sticky balancers.
//!
//! Versions as Java reads them (`ConsumerProtocol`): a negative version is
//! an error; a version newer than this build knows is read as the newest it
//! knows (later versions only append fields), and bytes after the known
//! fields are ignored. We always write the newest version, as Java does.

use bytes::{BufMut, Bytes, BytesMut};

use super::{MemberAssignment, MemberSubscription, PartitionsByTopic};
use crate::protocol::messages::consumer_protocol_assignment::{
    self as assignment_msg, ConsumerProtocolAssignment,
};
use crate::protocol::messages::consumer_protocol_subscription::{
    self as subscription_msg, ConsumerProtocolSubscription,
};
use crate::protocol::wire::{
    read_array, read_i16, read_i32, read_string, write_array, write_string,
};
use crate::protocol::{Codec, DecodeError, EncodeError, Message};

/// The subscription version written: 3, with the rack (KIP-881).
pub const SUBSCRIPTION_VERSION: i16 = 3;
/// The assignment version written: 3 (the body is the same at every version).
pub const ASSIGNMENT_VERSION: i16 = 3;

/// Encodes a subscription at [`SUBSCRIPTION_VERSION`], version prefix
/// included. Topics and owned partitions are written in sorted order.
pub fn encode_subscription(sub: &MemberSubscription) -> Result<Bytes, EncodeError> {
    encode_subscription_at(sub, SUBSCRIPTION_VERSION)
}

/// Encodes a subscription at `version` (0..=3). Fields the version cannot
/// carry are dropped, as Java drops them: owned partitions below v1, the
/// generation below v2, the rack below v3.
pub fn encode_subscription_at(
    sub: &MemberSubscription,
    version: i16,
) -> Result<Bytes, EncodeError> {
    let msg = ConsumerProtocolSubscription {
        topics: sub.topics.clone(),
        user_data: sub.user_data.clone(),
        owned_partitions: if version >= 1 {
            sub.owned_partitions
                .iter()
                .map(|(topic, partitions)| subscription_msg::TopicPartition {
                    topic: topic.clone(),
                    partitions: partitions.clone(),
                    ..Default::default()
                })
                .collect()
        } else {
            Vec::new()
        },
        generation_id: sub.generation.unwrap_or(super::NO_GENERATION),
        rack_id: sub.rack.clone(),
        ..Default::default()
    };
    let mut buf = BytesMut::new();
    buf.put_i16(version);
    msg.encode(&mut buf, version)?;
    Ok(buf.freeze())
}

/// Decodes version-prefixed subscription bytes from an untrusted member.
pub fn decode_subscription(mut bytes: Bytes) -> Result<MemberSubscription, DecodeError> {
    let version = known_version::<ConsumerProtocolSubscription>(&mut bytes)?;
    let msg = ConsumerProtocolSubscription::decode(&mut bytes, version)?;
    Ok(MemberSubscription {
        version,
        topics: msg.topics,
        user_data: msg.user_data,
        owned_partitions: group_partitions(
            msg.owned_partitions
                .into_iter()
                .map(|tp| (tp.topic, tp.partitions)),
        ),
        generation: (version >= 2 && msg.generation_id >= 0).then_some(msg.generation_id),
        rack: msg.rack_id.filter(|r| !r.is_empty()),
    })
}

/// Encodes an assignment at [`ASSIGNMENT_VERSION`], version prefix included.
pub fn encode_assignment(assignment: &MemberAssignment) -> Result<Bytes, EncodeError> {
    let msg = ConsumerProtocolAssignment {
        assigned_partitions: assignment
            .partitions
            .iter()
            .map(|(topic, partitions)| assignment_msg::TopicPartition {
                topic: topic.clone(),
                partitions: partitions.clone(),
                ..Default::default()
            })
            .collect(),
        user_data: assignment.user_data.clone(),
        ..Default::default()
    };
    let mut buf = BytesMut::new();
    buf.put_i16(ASSIGNMENT_VERSION);
    msg.encode(&mut buf, ASSIGNMENT_VERSION)?;
    Ok(buf.freeze())
}

/// Decodes the version-prefixed assignment bytes a member gets in SyncGroup.
/// Empty bytes are an empty assignment: the coordinator sends them to
/// members the leader gave nothing (or when the leader sent nothing).
pub fn decode_assignment(mut bytes: Bytes) -> Result<MemberAssignment, DecodeError> {
    if bytes.is_empty() {
        return Ok(MemberAssignment::default());
    }
    let version = known_version::<ConsumerProtocolAssignment>(&mut bytes)?;
    let msg = ConsumerProtocolAssignment::decode(&mut bytes, version)?;
    Ok(MemberAssignment {
        partitions: group_partitions(
            msg.assigned_partitions
                .into_iter()
                .map(|tp| (tp.topic, tp.partitions)),
        ),
        user_data: msg.user_data,
    })
}

/// Reads the version prefix and maps it to one this build can decode.
fn known_version<M: Message>(bytes: &mut Bytes) -> Result<i16, DecodeError> {
    let version = read_i16(bytes)?;
    if version < M::VERSIONS.min {
        return Err(DecodeError::UnsupportedVersion {
            message: M::NAME,
            version,
        });
    }
    Ok(version.min(M::VERSIONS.max))
}

/// Merges repeated topics and sorts and dedups partitions, so that a plan
/// or a claim never depends on the order a peer listed them in.
fn group_partitions(items: impl IntoIterator<Item = (String, Vec<i32>)>) -> PartitionsByTopic {
    let mut out = PartitionsByTopic::new();
    for (topic, partitions) in items {
        out.entry(topic).or_default().extend(partitions);
    }
    for partitions in out.values_mut() {
        partitions.sort_unstable();
        partitions.dedup();
    }
    out
}

// --------------------------------------------------------------------------
// StickyAssignorUserData (Java's eager StickyAssignor)
// --------------------------------------------------------------------------

/// Encodes Java's `StickyAssignorUserData` v1: the member's previous
/// assignment and its generation, in the classic (non-flexible) struct
/// format with no version prefix:
///
/// ```text
/// previous_assignment: [ topic: string (int16 len), partitions: [int32] ]  (int32 count)
/// generation: int32
/// ```
pub fn encode_sticky_user_data(
    previous: &PartitionsByTopic,
    generation: i32,
) -> Result<Bytes, EncodeError> {
    let mut buf = BytesMut::new();
    let topics: Vec<(&String, &Vec<i32>)> = previous.iter().collect();
    write_array(
        &mut buf,
        &topics,
        false,
        "previous_assignment",
        |buf, (t, ps)| {
            write_string(buf, t, false, "topic")?;
            write_array(buf, ps, false, "partitions", |buf, p| {
                buf.put_i32(*p);
                Ok(())
            })
        },
    )?;
    buf.put_i32(generation);
    Ok(buf.freeze())
}

/// Decodes `StickyAssignorUserData`: v1 (with the generation) first, then
/// v0 (without), as Java's `deserializeTopicPartitionAssignment` does.
/// Returns the previous assignment and the generation (`None` for v0).
pub fn decode_sticky_user_data(
    bytes: &Bytes,
) -> Result<(PartitionsByTopic, Option<i32>), DecodeError> {
    let mut buf = bytes.clone();
    let previous = read_sticky_topics(&mut buf)?;
    match read_i32(&mut buf) {
        Ok(generation) => Ok((previous, Some(generation))),
        // v0: the same topics and no generation.
        Err(_) => Ok((previous, None)),
    }
}

fn read_sticky_topics(buf: &mut Bytes) -> Result<PartitionsByTopic, DecodeError> {
    let topics = read_array(buf, false, "previous_assignment", |buf| {
        let topic = read_string(buf, false, "topic")?;
        let partitions = read_array(buf, false, "partitions", read_i32)?;
        Ok((topic, partitions))
    })?;
    Ok(group_partitions(topics))
}

/// Encodes Java's `CooperativeStickyAssignor` user data: the generation as
/// one `int32`. Java writes it for leaders older than KIP-792 that cannot
/// read the generation field.
pub fn encode_generation_user_data(generation: i32) -> Bytes {
    Bytes::copy_from_slice(&generation.to_be_bytes())
}

/// Decodes the cooperative-sticky user data: a generation.
pub fn decode_generation_user_data(bytes: &Bytes) -> Result<i32, DecodeError> {
    read_i32(&mut bytes.clone())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn owned(items: &[(&str, &[i32])]) -> PartitionsByTopic {
        items
            .iter()
            .map(|(t, ps)| (t.to_string(), ps.to_vec()))
            .collect()
    }

    /// Hand-assembled from ConsumerProtocolSubscription.json: version,
    /// topics, user_data, owned_partitions (v1+), generation (v2+), rack (v3+).
    #[test]
    fn subscription_v3_bytes_are_javas() {
        let sub = MemberSubscription {
            version: 3,
            topics: vec!["t".into()],
            user_data: Some(Bytes::from_static(&[0xAB])),
            owned_partitions: owned(&[("t", &[1, 2])]),
            generation: Some(7),
            rack: Some("r1".into()),
        };
        let bytes = encode_subscription(&sub).unwrap();
        #[rustfmt::skip]
        let expected: &[u8] = &[
            0, 3,                   // version
            0, 0, 0, 1, 0, 1, b't', // topics: ["t"]
            0, 0, 0, 1, 0xAB,       // user_data
            0, 0, 0, 1,             // owned_partitions: 1 topic
            0, 1, b't',             //   topic "t"
            0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2, // partitions [1, 2]
            0, 0, 0, 7,             // generation
            0, 2, b'r', b'1',       // rack
        ];
        assert_eq!(&bytes[..], expected);
        assert_eq!(decode_subscription(bytes).unwrap(), sub);
    }

    #[test]
    fn subscription_v0_bytes_are_javas_and_lack_the_later_fields() {
        // Java 2.3's encoding of Subscription(["a", "b"]) with null user data.
        #[rustfmt::skip]
        let v0: &[u8] = &[
            0, 0,
            0, 0, 0, 2, 0, 1, b'a', 0, 1, b'b',
            0xFF, 0xFF, 0xFF, 0xFF, // null user_data
        ];
        let sub = decode_subscription(Bytes::from_static(v0)).unwrap();
        assert_eq!(sub.version, 0);
        assert_eq!(sub.topics, ["a", "b"]);
        assert_eq!(sub.user_data, None);
        assert!(sub.owned_partitions.is_empty());
        assert_eq!(sub.generation, None);
        assert_eq!(sub.rack, None);
        let back = encode_subscription_at(&sub, 0).unwrap();
        assert_eq!(&back[..], v0);
    }

    #[test]
    fn a_future_subscription_version_is_read_as_the_newest_known() {
        let sub = MemberSubscription {
            version: 3,
            topics: vec!["x".into()],
            generation: Some(2),
            rack: Some("az".into()),
            ..Default::default()
        };
        let mut bytes = BytesMut::from(&encode_subscription(&sub).unwrap()[..]);
        bytes[1] = 9; // version 9
        bytes.extend_from_slice(&[1, 2, 3]); // a field from the future
        let back = decode_subscription(bytes.freeze()).unwrap();
        assert_eq!(back, MemberSubscription { version: 3, ..sub });
    }

    #[test]
    fn negative_generation_and_empty_rack_read_as_absent() {
        let sub = MemberSubscription {
            version: 3,
            topics: vec!["x".into()],
            generation: None,
            rack: Some(String::new()),
            ..Default::default()
        };
        let back = decode_subscription(encode_subscription(&sub).unwrap()).unwrap();
        assert_eq!(back.generation, None);
        assert_eq!(back.rack, None);
    }

    #[test]
    fn hostile_subscriptions_are_typed_errors() {
        assert!(matches!(
            decode_subscription(Bytes::from_static(&[0xFF, 0xFF])),
            Err(DecodeError::UnsupportedVersion { version: -1, .. })
        ));
        assert!(matches!(
            decode_subscription(Bytes::from_static(&[0])),
            Err(DecodeError::Truncated { .. })
        ));
        // A topic count of 2^31-1 with nothing behind it: refused before
        // any allocation.
        assert!(matches!(
            decode_subscription(Bytes::from_static(&[0, 1, 0x7F, 0xFF, 0xFF, 0xFF])),
            Err(DecodeError::LengthExceedsFrame { .. })
        ));
    }

    #[test]
    fn assignment_bytes_are_javas() {
        let a = MemberAssignment {
            partitions: owned(&[("t", &[0])]),
            user_data: None,
        };
        let bytes = encode_assignment(&a).unwrap();
        #[rustfmt::skip]
        let expected: &[u8] = &[
            0, 3,
            0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 1, 0, 0, 0, 0,
            0xFF, 0xFF, 0xFF, 0xFF,
        ];
        assert_eq!(&bytes[..], expected);
        assert_eq!(decode_assignment(bytes).unwrap(), a);
        assert_eq!(
            decode_assignment(Bytes::new()).unwrap(),
            MemberAssignment::default()
        );
    }

    /// StickyAssignorUserData v1 as Java's `Struct` writes it.
    #[test]
    fn sticky_user_data_bytes_are_javas_and_v0_still_reads() {
        let prev = owned(&[("t", &[3])]);
        let bytes = encode_sticky_user_data(&prev, 5).unwrap();
        #[rustfmt::skip]
        let expected: &[u8] = &[
            0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 1, 0, 0, 0, 3,
            0, 0, 0, 5,
        ];
        assert_eq!(&bytes[..], expected);
        assert_eq!(
            decode_sticky_user_data(&bytes).unwrap(),
            (prev.clone(), Some(5))
        );
        let v0 = bytes.slice(..bytes.len() - 4);
        assert_eq!(decode_sticky_user_data(&v0).unwrap(), (prev, None));
        assert!(decode_sticky_user_data(&Bytes::from_static(&[0, 0, 0, 9])).is_err());
    }

    #[test]
    fn generation_user_data_is_one_big_endian_int() {
        let b = encode_generation_user_data(258);
        assert_eq!(&b[..], &[0, 0, 1, 2]);
        assert_eq!(decode_generation_user_data(&b), Ok(258));
        assert!(decode_generation_user_data(&Bytes::from_static(&[1])).is_err());
    }

    fn arb_owned() -> impl Strategy<Value = PartitionsByTopic> {
        proptest::collection::btree_map(
            "[a-z]{1,4}",
            proptest::collection::btree_set(0i32..50, 0..5).prop_map(|s| s.into_iter().collect()),
            0..4,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, rng_seed: proptest::test_runner::RngSeed::Fixed(0x5a45a), ..ProptestConfig::default() })]

        #[test]
        fn subscription_round_trips_at_every_version(
            version in 0i16..=3,
            topics in proptest::collection::vec("[a-z]{1,6}", 0..4),
            user_data in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8)),
            owned in arb_owned(),
            generation in proptest::option::of(0i32..1000),
            rack in proptest::option::of("[a-z]{1,3}"),
        ) {
            let sub = MemberSubscription {
                version,
                topics,
                user_data: user_data.map(Bytes::from),
                owned_partitions: owned,
                generation,
                rack,
            };
            let back = decode_subscription(encode_subscription_at(&sub, version).unwrap()).unwrap();
            let expected = MemberSubscription {
                owned_partitions: if version >= 1 { sub.owned_partitions.clone() } else { Default::default() },
                generation: if version >= 2 { sub.generation } else { None },
                rack: if version >= 3 { sub.rack.clone() } else { None },
                ..sub
            };
            prop_assert_eq!(back, expected);
        }

        #[test]
        fn sticky_user_data_round_trips(owned in arb_owned(), generation in any::<i32>()) {
            let bytes = encode_sticky_user_data(&owned, generation).unwrap();
            prop_assert_eq!(decode_sticky_user_data(&bytes).unwrap(), (owned, Some(generation)));
        }

        #[test]
        fn arbitrary_bytes_never_panic_the_decoders(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let b = Bytes::from(bytes);
            let _ = decode_subscription(b.clone());
            let _ = decode_assignment(b.clone());
            let _ = decode_sticky_user_data(&b);
            let _ = decode_generation_user_data(&b);
        }
    }
}
