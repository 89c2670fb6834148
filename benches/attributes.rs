//! The cluster's attributes from inside replicas (issue 32's goals), against the real
//! dockerd and etcd, one host: a 3-replica OCF bundle, a node agent and a controller in this
//! process (release build), the replicas' attribute daemons reached on their sockets in the
//! per-replica host directories (what `crm_attribute` inside does, without `docker exec`'s
//! own tens of milliseconds):
//!
//! 1. a write by replica 0 for replica 1, until it is stored (the tool's call returns), and
//!    until replica 2 reads it back: median and max of 100, one every 110 ms (a replica may
//!    write 10 a second after a burst of 50);
//! 2. at rest: the same value written 100 more times: etcd writes (revisions) it costs.
//!
//! Run: `bash scripts/setup.sh && cargo bench --bench attributes`

use std::path::PathBuf;
use std::time::{Duration, Instant};

#[path = "../tests/common/mod.rs"]
mod common;

use berth::model::attributes::{AttrKey, AttrOp, Section};
use berth::remote::attrd::{ToolRequest, ask};

const SAMPLES: usize = 100;

async fn ask_async(socket: PathBuf, request: ToolRequest) -> berth::remote::attrd::ToolReply {
    tokio::task::spawn_blocking(move || {
        ask(&socket, &request).expect("the attribute daemon answers")
    })
    .await
    .unwrap()
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn stats(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[v.len() / 2], v[v.len() - 1])
}

#[tokio::main]
async fn main() {
    common::ocf_test_image();
    let c = common::one_node("benchattrs").await;
    let store = &c.store;
    let b = common::ocf_bundle(&format!("{}-kv", c.tag), 3, 184, "heartbeat", "apache");
    store
        .put_bundle(&b, berth::store::Expect::Absent)
        .await
        .unwrap();
    common::primitives_started(store, &b).await;
    let socket = |i: u32| {
        c.node
            .state_dir
            .path()
            .join(b.name())
            .join(b.replica_name(i))
            .join("run")
            .join(berth::remote::attrd::SOCKET)
    };
    let key = AttrKey {
        section: Section::Status,
        owner: b.replica_name(1),
        name: "probe".into(),
    };
    let (mut stored, mut visible) = (Vec::new(), Vec::new());
    let pace = Duration::from_millis(110);
    for n in 0..SAMPLES {
        let value = format!("v{n}");
        let t0 = Instant::now();
        let next = tokio::time::Instant::now() + pace;
        let reply = ask_async(
            socket(0),
            ToolRequest::Write {
                write: AttrOp::Set {
                    key: key.clone(),
                    value: value.clone(),
                },
            },
        )
        .await;
        assert_eq!(reply.error, None);
        stored.push(t0.elapsed());
        loop {
            let got = ask_async(socket(2), ToolRequest::Get { key: key.clone() }).await;
            if got.value.as_deref() == Some(value.as_str()) {
                break;
            }
            assert!(t0.elapsed() < Duration::from_secs(10), "never visible");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        visible.push(t0.elapsed());
        tokio::time::sleep_until(next).await;
    }
    let before = store.revision().await.unwrap();
    for _ in 0..SAMPLES {
        tokio::time::sleep(pace).await;
        let reply = ask_async(
            socket(0),
            ToolRequest::Write {
                write: AttrOp::Set {
                    key: key.clone(),
                    value: format!("v{}", SAMPLES - 1),
                },
            },
        )
        .await;
        assert_eq!(reply.error, None);
    }
    let rewrites = store.revision().await.unwrap() - before;
    let (sm, sx) = stats(stored);
    let (vm, vx) = stats(visible);
    println!("| measure | median | max |");
    println!("| --- | --- | --- |");
    println!(
        "| write by replica 0, stored (the call returns) | {} | {} |",
        ms(sm),
        ms(sx)
    );
    println!(
        "| the same, read back by replica 2 | {} | {} |",
        ms(vm),
        ms(vx)
    );
    println!("| etcd writes for {SAMPLES} unchanged rewrites | {rewrites} | |");
    store
        .delete_bundle(b.name(), berth::store::Expect::Any)
        .await
        .unwrap();
    for i in 0..3 {
        common::container_gone(&b.container_name(i), Duration::from_secs(60)).await;
    }
}
