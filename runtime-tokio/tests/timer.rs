//! The driver sleeps while a connection is opening: no wake-ups without a
//! deadline. Counts the driver's timer wake-ups through `tracing`.

#![allow(missing_docs)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sansa_tokio::{Client, Record};
use tokio::net::TcpListener;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

struct CountTimer(Arc<AtomicUsize>);

impl<S: tracing::Subscriber> Layer<S> for CountTimer {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() == "sansa_tokio::timer" {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[test]
fn the_driver_does_not_spin_while_a_broker_stalls_the_handshake() {
    let wakes = Arc::new(AtomicUsize::new(0));
    let subscriber = tracing_subscriber::registry().with(CountTimer(wakes.clone()));
    tracing::subscriber::with_default(subscriber, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            // Accepts, reads nothing, answers nothing.
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("addr").to_string();
            let accept = tokio::spawn(async move {
                let mut held = Vec::new();
                while let Ok((s, _)) = listener.accept().await {
                    held.push(s);
                }
            });
            let client = Client::builder()
                .seed_brokers([addr])
                .build()
                .await
                .expect("client");
            let delivery = client.produce(Record::new("t", "v"));
            tokio::time::sleep(Duration::from_millis(500)).await;
            // Nothing is due before the handshake's request timeout (30 s).
            let n = wakes.load(Ordering::Relaxed);
            assert!(n <= 2, "the driver woke {n} times while waiting");
            delivery.cancel();
            drop(client);
            accept.abort();
        });
    });
}
