//! Group balancers at scale: 1,000 members, all subscribed to 100 topics
//! of 100 partitions (10,000 partitions).
//!
//! - `fresh/<balancer>`: nobody owns anything yet;
//! - `rebalance_one_gone/<balancer>`: everyone owns what a fresh plan gave
//!   them, and one member has left;
//! - `mixed_subscriptions/<case>`: cooperative-sticky when each member
//!   subscribes to two thirds of the topics (three different sets), which
//!   takes the sticky algorithm's general path, fresh, after one member
//!   left, and from a skewed prior where one member claims everything;
//! - `leader_round_trip/cooperative-sticky`: the same rebalance as the
//!   leader runs it: decode every member's JoinGroup metadata, assign, and
//!   encode every SyncGroup assignment.
//!
//! Run: `cargo bench -p sansa-core --bench balancer`.

#![allow(missing_docs)]

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use sansa_core::group::balancer::{
    Balancer, CooperativeStickyBalancer, GroupMember, JoinSubscription, Plan, RangeBalancer,
    RoundRobinBalancer, StickyBalancer, TopicLayout,
};

const MEMBERS: usize = 1_000;
const TOPICS: usize = 100;
const PARTITIONS: i32 = 100;

fn topics() -> Vec<String> {
    (0..TOPICS).map(|t| format!("topic-{t:03}")).collect()
}

fn layout() -> TopicLayout {
    topics()
        .into_iter()
        .fold(TopicLayout::new(), |l, t| l.with_topic(t, PARTITIONS))
}

/// Each member's JoinGroup metadata, owning what `plan` gave it.
fn metadata(balancer: &dyn Balancer, plan: Option<&Plan>, generation: i32) -> Vec<(String, Bytes)> {
    metadata_with(balancer, plan, generation, |_| topics())
}

/// Member `m` subscribes to the topics `t` with `(t + m) % 3 != 0`.
fn two_thirds(m: usize) -> Vec<String> {
    topics()
        .into_iter()
        .enumerate()
        .filter(|(t, _)| !(t + m).is_multiple_of(3))
        .map(|(_, name)| name)
        .collect()
}

fn metadata_with(
    balancer: &dyn Balancer,
    plan: Option<&Plan>,
    generation: i32,
    topics_of: impl Fn(usize) -> Vec<String>,
) -> Vec<(String, Bytes)> {
    (0..MEMBERS)
        .map(|m| {
            let topics = topics_of(m);
            let id = format!("member-{m:04}");
            let owned = plan
                .and_then(|p| p.get(&id))
                .map(|a| a.partitions.clone())
                .unwrap_or_default();
            let join = JoinSubscription {
                topics: &topics,
                owned: &owned,
                generation,
                rack: None,
            };
            let bytes = balancer.member_metadata(&join).expect("encodable");
            (id, bytes)
        })
        .collect()
}

fn decode(metadata: &[(String, Bytes)]) -> Vec<GroupMember> {
    metadata
        .iter()
        .map(|(id, b)| GroupMember::from_metadata(id.clone(), None, b.clone()).expect("decodable"))
        .collect()
}

fn bench(c: &mut Criterion) {
    let layout = layout();
    let balancers: [&dyn Balancer; 4] = [
        &CooperativeStickyBalancer,
        &StickyBalancer,
        &RangeBalancer,
        &RoundRobinBalancer,
    ];

    let mut fresh = c.benchmark_group("fresh");
    fresh.sample_size(10);
    for balancer in balancers {
        let members = decode(&metadata(balancer, None, -1));
        fresh.bench_function(balancer.protocol_name(), |b| {
            b.iter(|| black_box(balancer.assign(black_box(&members), &layout).expect("plan")))
        });
    }
    fresh.finish();

    let mut rebalance = c.benchmark_group("rebalance_one_gone");
    rebalance.sample_size(10);
    for balancer in balancers {
        let first = balancer
            .assign(&decode(&metadata(balancer, None, -1)), &layout)
            .expect("plan");
        let mut members = decode(&metadata(balancer, Some(&first), 1));
        members.remove(MEMBERS / 2);
        rebalance.bench_function(balancer.protocol_name(), |b| {
            b.iter(|| black_box(balancer.assign(black_box(&members), &layout).expect("plan")))
        });
    }
    rebalance.finish();

    let mut mixed = c.benchmark_group("mixed_subscriptions");
    mixed.sample_size(10);
    let balancer = CooperativeStickyBalancer;
    let members = decode(&metadata_with(&balancer, None, -1, two_thirds));
    mixed.bench_function("fresh", |b| {
        b.iter(|| black_box(balancer.assign(black_box(&members), &layout).expect("plan")))
    });
    let first = balancer.assign(&members, &layout).expect("plan");
    let mut members = decode(&metadata_with(&balancer, Some(&first), 1, two_thirds));
    members.remove(MEMBERS / 2);
    mixed.bench_function("rebalance_one_gone", |b| {
        b.iter(|| black_box(balancer.assign(black_box(&members), &layout).expect("plan")))
    });
    // A skewed prior: the first member claims every partition (of the
    // topics it subscribes to), the rest nothing.
    let mut members = decode(&metadata_with(&balancer, None, -1, two_thirds));
    let all = topics()
        .into_iter()
        .map(|t| (t, (0..PARTITIONS).collect::<Vec<i32>>()))
        .collect();
    members[0].subscription.owned_partitions = all;
    members[0].subscription.generation = Some(1);
    mixed.bench_function("one_member_claims_all", |b| {
        b.iter(|| black_box(balancer.assign(black_box(&members), &layout).expect("plan")))
    });
    mixed.finish();

    let mut leader = c.benchmark_group("leader_round_trip");
    leader.sample_size(10);
    let balancer = CooperativeStickyBalancer;
    let first = balancer
        .assign(&decode(&metadata(&balancer, None, -1)), &layout)
        .expect("plan");
    let mut joined = metadata(&balancer, Some(&first), 1);
    joined.remove(MEMBERS / 2);
    leader.bench_function(balancer.protocol_name(), |b| {
        b.iter(|| {
            let members = decode(black_box(&joined));
            let plan = balancer.assign(&members, &layout).expect("plan");
            black_box(plan.encode_assignments().expect("encodable"))
        })
    });
    leader.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
