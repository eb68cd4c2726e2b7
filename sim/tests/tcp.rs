//! The TCP front serves real sockets: an unmodified sansa-core client,
//! driven by a few lines of tokio (the `sansa-tokio` adapter is not a
//! dependency of the simulator), produces to a three-broker simulated
//! cluster over loopback, and what it was told was delivered is in the
//! logs, and comes back through a Fetch on a raw socket.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use sansa_core::client::{ConnId, Input, Output};
use sansa_core::producer::Record;
use sansa_core::protocol::header::{decode_response, encode_request};
use sansa_core::protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use sansa_core::protocol::messages::FetchRequest;
use sansa_core::record::Batches;
use sansa_core::{Client, Config, Event, Timestamp};
use sansa_sim::tcp::TcpCluster;
use sansa_sim::ClusterConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// What the socket tasks report to the driver.
enum Net {
    Connected(ConnId, TcpStream),
    Failed(ConnId, String),
    Data(ConnId, Bytes),
    Closed(ConnId),
}

/// The smallest driver of a sans-IO client: carry out its outputs, feed it
/// what the sockets say and its timer, until `done` holds or `limit`
/// passes. Returns every event.
async fn drive(
    client: &mut Client,
    limit: Duration,
    mut done: impl FnMut(&[Event]) -> bool,
) -> Vec<Event> {
    let origin = Instant::now();
    let now = move || {
        Timestamp::from_nanos(u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX))
    };
    let (tx, mut rx) = mpsc::unbounded_channel::<Net>();
    let mut writers: BTreeMap<ConnId, OwnedWriteHalf> = BTreeMap::new();
    let mut events = Vec::new();
    while origin.elapsed() < limit {
        while let Some(out) = client.poll_output(now()) {
            match out {
                Output::Connect { conn, addr } => {
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        let _ = match TcpStream::connect(&addr).await {
                            Ok(s) => tx.send(Net::Connected(conn, s)),
                            Err(e) => tx.send(Net::Failed(conn, e.to_string())),
                        };
                    });
                }
                Output::Transmit { conn, data } => {
                    if let Some(w) = writers.get_mut(&conn) {
                        if w.write_all(&data).await.is_err() {
                            writers.remove(&conn);
                            let _ = tx.send(Net::Closed(conn));
                        }
                    }
                }
                Output::Close(conn) => {
                    writers.remove(&conn);
                }
                Output::Event(e) => events.push(e),
                _ => {}
            }
        }
        if done(&events) {
            break;
        }
        let sleep = client
            .poll_timeout()
            .map(|t| t.saturating_duration_since(now()))
            .unwrap_or(Duration::from_millis(100));
        let input = tokio::select! {
            net = rx.recv() => match net {
                Some(Net::Connected(conn, stream)) => {
                    let (mut read, write) = stream.into_split();
                    writers.insert(conn, write);
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            match read.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    let data = Bytes::copy_from_slice(&buf[..n]);
                                    if tx.send(Net::Data(conn, data)).is_err() {
                                        return;
                                    }
                                }
                            }
                        }
                        let _ = tx.send(Net::Closed(conn));
                    });
                    Input::Connected(conn)
                }
                Some(Net::Failed(conn, why)) => Input::ConnectFailed(conn, why),
                Some(Net::Data(conn, data)) => Input::Received(conn, data),
                Some(Net::Closed(conn)) => Input::Closed(conn, "eof".into()),
                None => Input::Timeout,
            },
            () = tokio::time::sleep(sleep) => Input::Timeout,
        };
        client.handle_input(now(), input);
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sansa_client_produces_to_the_simulated_cluster_over_tcp() {
    let mut server = TcpCluster::bind("127.0.0.1".parse().expect("ip"), ClusterConfig::new(3))
        .await
        .expect("bind");
    let topic = server
        .cluster_mut()
        .create_topic("events", 3, 3)
        .expect("topic")
        .clone();
    let bootstrap = server.bootstrap();
    let handle = server.spawn();

    let config = Config::builder()
        .seed_brokers(bootstrap.split(','))
        .build()
        .expect("config");
    let mut client = Client::new(config).expect("client");
    let n = 300;
    let wall = 1_700_000_000_000;
    for i in 0..n {
        let r = Record::new("events", format!("v{i}")).with_key(format!("k{}", i % 17));
        client.produce(Timestamp::ZERO, r, wall).expect("buffered");
    }
    let events = drive(&mut client, Duration::from_secs(30), |e| {
        e.iter()
            .filter(|e| matches!(e, Event::Delivered { .. } | Event::ProduceFailed { .. }))
            .count()
            == n
    })
    .await;
    let delivered: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Delivered { meta, .. } => Some(meta.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(delivered.len(), n, "{events:?}");

    // The logs hold it all, at the reported offsets.
    let ends = handle
        .with(|c| {
            (0..3)
                .map(|p| {
                    c.partition("events", p)
                        .map_or(0, |p| p.log().log_end_offset())
                })
                .collect::<Vec<i64>>()
        })
        .await
        .expect("serving");
    assert_eq!(ends.iter().sum::<i64>(), n as i64);
    for m in &delivered {
        assert!(m.offset >= 0 && m.offset < ends[m.partition as usize]);
    }

    // A Fetch on a raw socket to partition 0's leader returns the records.
    let leader = topic.partition(0).and_then(|p| p.leader()).expect("leader");
    let addr = handle.addrs()[(leader - 1) as usize];
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let version = 12;
    let req = FetchRequest {
        max_wait_ms: 100,
        max_bytes: 1 << 20,
        topics: vec![FetchTopic {
            topic: "events".into(),
            partitions: vec![FetchPartition {
                partition: 0,
                fetch_offset: 0,
                partition_max_bytes: 1 << 20,
                current_leader_epoch: -1,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut body = BytesMut::new();
    encode_request(&mut body, version, 1, Some("raw"), &req).expect("encode");
    s.write_all(&(body.len() as i32).to_be_bytes())
        .await
        .expect("write");
    s.write_all(&body).await.expect("write");
    let size = s.read_i32().await.expect("size");
    let mut frame = vec![0u8; size as usize];
    s.read_exact(&mut frame).await.expect("frame");
    let (_, resp) = decode_response::<FetchRequest>(Bytes::from(frame), version).expect("decode");
    let p = &resp.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    let mut fetched = 0;
    for b in Batches::new(p.records.clone().unwrap_or_default()) {
        for r in b.expect("batch").records().expect("records") {
            let r = r.expect("record");
            assert!(r.value.is_some_and(|v| v.starts_with(b"v")));
            fetched += 1;
        }
    }
    assert_eq!(fetched, ends[0]);
    handle.shutdown().await;
}

#[tokio::test]
async fn serve_answers_on_the_given_address_and_creates_topics_on_first_use() {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("probe");
    let addr = probe.local_addr().expect("addr");
    drop(probe);
    let server = tokio::spawn(sansa_sim::serve(addr));
    // The listener comes up shortly.
    let mut client = None;
    for _ in 0..100 {
        if TcpStream::connect(addr).await.is_ok() {
            let config = Config::builder()
                .seed_brokers([addr.to_string()])
                .allow_auto_topic_creation(true)
                .metadata_min_age(Duration::from_millis(10))
                .build()
                .expect("config");
            client = Some(Client::new(config).expect("client"));
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut client = client.expect("serve listens");
    client
        .produce(Timestamp::ZERO, Record::new("fresh", "hello"), 0)
        .expect("buffered");
    let events = drive(&mut client, Duration::from_secs(20), |e| {
        e.iter().any(|e| matches!(e, Event::Delivered { .. }))
    })
    .await;
    assert!(
        events.iter().any(|e| matches!(e, Event::Delivered { .. })),
        "{events:?}"
    );
    server.abort();
}
