//! The consumer-protocol bytes a group leader reads from other members
//! (JoinGroup metadata, the sticky balancers' `user_data`) and a member
//! reads from the leader (SyncGroup assignments): every one comes from a
//! peer the client does not control.
//!
//! Byte 0 picks the check (mod 4), the rest is its input:
//! - 0, 1, 2: decode a subscription, an assignment or `StickyAssignorUserData`;
//!   never a panic, and what decodes re-encodes to bytes that decode to the
//!   same value;
//! - 3: a leader's whole assignment over hostile members: the rest is split
//!   into member metadata chunks (a length byte before each) and every
//!   built-in balancer runs on them. A balancer may refuse (a typed error)
//!   but never panics, and a plan it returns gives each partition of the
//!   layout at most once, only to a member subscribed to its topic, and
//!   nothing outside the layout.
#![no_main]

use std::collections::BTreeSet;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sansa_core::group::balancer::{
    protocol, Balancer, CooperativeStickyBalancer, GroupMember, RangeBalancer, RoundRobinBalancer,
    StickyBalancer, TopicLayout,
};

/// Members one input may hold: enough for every balancer's interesting
/// paths, small enough to keep executions fast.
const MAX_MEMBERS: usize = 8;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let rest = Bytes::copy_from_slice(rest);
    match mode % 4 {
        0 => subscription_round_trip(rest),
        1 => assignment_round_trip(rest),
        2 => sticky_user_data_round_trip(rest),
        _ => leader_assigns_hostile_members(&rest),
    }
});

fn subscription_round_trip(bytes: Bytes) {
    let Ok(sub) = protocol::decode_subscription(bytes) else {
        return;
    };
    let encoded = protocol::encode_subscription_at(&sub, sub.version)
        .expect("a decoded subscription re-encodes at its version");
    let again = protocol::decode_subscription(encoded).expect("re-decodes");
    assert_eq!(again, sub);
}

fn assignment_round_trip(bytes: Bytes) {
    let Ok(assignment) = protocol::decode_assignment(bytes) else {
        return;
    };
    let encoded =
        protocol::encode_assignment(&assignment).expect("a decoded assignment re-encodes");
    let again = protocol::decode_assignment(encoded).expect("re-decodes");
    assert_eq!(again, assignment);
}

fn sticky_user_data_round_trip(bytes: Bytes) {
    let Ok((previous, generation)) = protocol::decode_sticky_user_data(&bytes) else {
        return;
    };
    // v0 (no generation) is only ever read: v1 is written, with any value.
    let encoded = protocol::encode_sticky_user_data(&previous, generation.unwrap_or(-1))
        .expect("decoded user data re-encodes");
    let (again, again_generation) =
        protocol::decode_sticky_user_data(&encoded).expect("re-decodes");
    assert_eq!(again, previous);
    assert_eq!(again_generation, Some(generation.unwrap_or(-1)));
}

fn leader_assigns_hostile_members(data: &Bytes) {
    let mut members = Vec::new();
    let mut at = 0;
    while at < data.len() && members.len() < MAX_MEMBERS {
        let len = usize::from(data[at]);
        let chunk = data.slice((at + 1).min(data.len())..(at + 1 + len).min(data.len()));
        at += 1 + len;
        let id = format!("m{}", members.len());
        // Every third member is static: instance ids drive some balancers.
        let instance = (members.len() % 3 == 2).then(|| format!("i{}", members.len()));
        if let Ok(member) = GroupMember::from_metadata(id, instance, chunk) {
            members.push(member);
        }
    }
    // The layout: each topic any member names gets a small partition count
    // derived from its name, so claims beyond the count and topics missing
    // from the layout both occur.
    let mut layout = TopicLayout::new();
    for topic in members.iter().flat_map(|m| &m.subscription.topics) {
        let count = topic.bytes().fold(0u8, |a, b| a.wrapping_add(b)) % 9;
        if count == 8 {
            continue; // absent from the metadata: never assigned
        }
        layout = layout.with_topic(topic.clone(), i32::from(count));
    }
    let balancers: [&dyn Balancer; 4] = [
        &RangeBalancer,
        &RoundRobinBalancer,
        &StickyBalancer,
        &CooperativeStickyBalancer,
    ];
    for balancer in balancers {
        let Ok(plan) = balancer.assign(&members, &layout) else {
            continue;
        };
        let mut given = BTreeSet::new();
        for (member_id, assignment) in plan.iter() {
            let member = members
                .iter()
                .find(|m| m.member_id == member_id)
                .unwrap_or_else(|| {
                    panic!(
                        "{}: plan names unknown member {member_id}",
                        balancer.protocol_name()
                    )
                });
            for (topic, partitions) in &assignment.partitions {
                assert!(
                    member.subscription.topics.contains(topic),
                    "{}: {member_id} got unsubscribed topic {topic}",
                    balancer.protocol_name()
                );
                let count = layout.partition_count(topic).unwrap_or_else(|| {
                    panic!(
                        "{}: assigned topic {topic} is not in the layout",
                        balancer.protocol_name()
                    )
                });
                for &p in partitions {
                    assert!(
                        (0..count).contains(&p),
                        "{}: {topic}/{p} is outside the layout ({count} partitions)",
                        balancer.protocol_name()
                    );
                    assert!(
                        given.insert((topic.clone(), p)),
                        "{}: {topic}/{p} assigned twice",
                        balancer.protocol_name()
                    );
                }
            }
        }
    }
}
