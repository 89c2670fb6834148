//! Rolling updates against a real etcd and dockerd: every replica's HTTP answer sampled every
//! 50 ms through a rollout. Never fewer than `replicas - maxUnavailable` serve; a broken image
//! pauses the rollout with the reason and leaves the old replicas serving; undo restores
//! them; a promotable bundle's promoted replica is replaced last.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use berth::model::Bundle;
use berth::model::cluster::{Phase, Role};
use berth::model::rollout::{RolloutState, RolloutStatus};
use common::{
    OneNode, berth, docker, eventually, http_ok, httpd_bundle, ocf_bundle, ocf_test_image, stderr,
    stdout, test_image,
};

const WAIT: Duration = Duration::from_secs(60);

/// Samples every replica's HTTP answer every 50 ms until stopped: (time since start, how
/// many answered).
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<(Duration, usize)>>,
}

impl Sampler {
    fn start(addrs: Vec<String>) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let t0 = Instant::now();
            let mut out = Vec::new();
            while !flag.load(Ordering::SeqCst) {
                let at = Instant::now();
                let up = addrs
                    .iter()
                    .filter(|a| http_ok(a.parse().unwrap(), Duration::from_millis(200)))
                    .count();
                out.push((at - t0, up));
                std::thread::sleep(Duration::from_millis(50).saturating_sub(at.elapsed()));
            }
            out
        });
        Sampler { stop, thread }
    }

    fn finish(self) -> Vec<(Duration, usize)> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap()
    }
}

/// Waits until every address answers HTTP (each given a second: the sampler's 200 ms can
/// miss an answer on a loaded machine), or fails the test.
async fn all_serve(addrs: &[String]) {
    eventually(WAIT, "every replica to serve", || async {
        tokio::task::block_in_place(|| {
            addrs
                .iter()
                .all(|a| http_ok(a.parse().unwrap(), Duration::from_secs(1)))
        })
        .then_some(())
    })
    .await;
}

async fn cluster(test: &str) -> OneNode {
    common::one_node(test).await
}

impl OneNode {
    /// The berth CLI, waited for without holding up the runtime that runs this test's node
    /// agent and controller (`apply --wait` and `rollout status` wait on them).
    fn cli(&self, args: &[&str], stdin: Option<&str>) -> std::process::Output {
        tokio::task::block_in_place(|| berth(&self.p, args, stdin))
    }

    /// `berth apply -f -` of `b` (with `--wait` when asked); panics on failure.
    fn apply(&self, b: &Bundle, wait: bool) {
        let yaml = String::from_utf8(berth::store::encode_bundle(b)).unwrap();
        let mut args = vec!["apply", "-f", "-"];
        if wait {
            args.extend(["--wait", "--timeout", "90s"]);
        }
        let o = self.cli(&args, Some(&yaml));
        assert!(o.status.success(), "apply: {}{}", stdout(&o), stderr(&o));
    }

    async fn rollout(&self, name: &str) -> Option<RolloutStatus> {
        let kv = self
            .store
            .get(&self.store.keys().bundle_status(name))
            .await
            .unwrap()?;
        serde_json::from_slice::<berth::model::BundleStatus>(&kv.value)
            .ok()?
            .rollout
    }
}

fn addresses(b: &Bundle) -> Vec<String> {
    (0..b.spec.replicas())
        .map(|i| format!("{}:8080", b.spec.replica_address(i).unwrap()))
        .collect()
}

fn image_of(container: &str) -> String {
    docker(&["inspect", "-f", "{{.Config.Image}}", container])
}

fn fewest(samples: &[(Duration, usize)]) -> usize {
    samples.iter().map(|s| s.1).min().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_image_rolls_out_one_replica_at_a_time_never_fewer_than_two_serving() {
    test_image();
    let c = cluster("roll").await;
    // 3 replicas; scripts/bench-rollout.sh sets more for BENCHMARKS.md.
    let n: u32 = std::env::var("BERTH_ROLLOUT_REPLICAS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let mut b = httpd_bundle(&format!("{}-web", c.tag), n, n, 140);
    c.apply(&b, true);
    let sampler = Sampler::start(addresses(&b));
    tokio::time::sleep(Duration::from_millis(300)).await;
    b.spec.docker.as_mut().unwrap().image = "berth-test/httpd:2".into();
    let t0 = Instant::now();
    // --wait waits for the rollout.
    c.apply(&b, true);
    let took = t0.elapsed();
    all_serve(&addresses(&b)).await;
    let samples = sampler.finish();
    for i in 0..n {
        assert_eq!(image_of(&b.container_name(i)), "berth-test/httpd:2");
    }
    let r = c.rollout(b.name()).await.unwrap();
    assert_eq!(
        (r.state, r.updated, r.ready),
        (RolloutState::Complete, n, n)
    );
    assert_eq!(
        fewest(&samples) as u32,
        n - 1,
        "replicas - maxUnavailable serving at every sample, and one replaced at a time"
    );
    println!(
        "rollout of {n} replicas: {:.2} s in all, {:.2} s per replica; fewest serving {} in {} samples",
        took.as_secs_f64(),
        took.as_secs_f64() / f64::from(n),
        fewest(&samples),
        samples.len()
    );
    let o = c.cli(&["rollout", "history", b.name()], None);
    assert!(o.status.success(), "{}", stderr(&o));
    let history = stdout(&o);
    assert!(
        history.contains("berth-test/httpd:1") && history.contains("berth-test/httpd:2"),
        "{history}"
    );
    c.store
        .delete_bundle(b.name(), berth::store::Expect::Any)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_image_pauses_the_rollout_with_the_reason_and_undo_restores_it() {
    test_image();
    let c = cluster("rollbad").await;
    let mut b = httpd_bundle(&format!("{}-web", c.tag), 3, 3, 141);
    c.apply(&b, true);
    let sampler = Sampler::start(addresses(&b));
    b.spec.docker.as_mut().unwrap().image = "berth-test/no-such-image:1".into();
    // apply --wait gives up on a failed rollout only at its timeout: no wait here.
    c.apply(&b, false);
    let r = eventually(WAIT, "the rollout to fail", || async {
        c.rollout(b.name())
            .await
            .filter(|r| r.state == RolloutState::Failed)
    })
    .await;
    assert!(
        r.reason.starts_with(&format!("{}: ", b.replica_name(2))),
        "{}",
        r.reason
    );
    assert!(r.reason.contains("no-such-image"), "{}", r.reason);
    // `rollout status` says so and fails.
    let o = c.cli(&["rollout", "status", b.name()], None);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("rollout failed"), "{}", stderr(&o));
    // Nothing more is replaced: the two others keep the old image and serve.
    let window = Instant::now() + Duration::from_secs(2);
    while Instant::now() < window {
        for i in 0..2 {
            assert_eq!(image_of(&b.container_name(i)), "berth-test/httpd:1");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let o = c.cli(&["rollout", "undo", b.name()], None);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = c.cli(&["rollout", "status", b.name(), "--timeout", "90s"], None);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    all_serve(&addresses(&b)).await;
    let samples = sampler.finish();
    for i in 0..3 {
        assert_eq!(image_of(&b.container_name(i)), "berth-test/httpd:1");
    }
    assert!(fewest(&samples) >= 2, "fewer than two served at some point");
    c.store
        .delete_bundle(b.name(), berth::store::Expect::Any)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promotable_bundle_replaces_its_promoted_replica_last() {
    ocf_test_image();
    // A second tag of the OCF image: a change that replaces the containers.
    docker(&["tag", "berth-test/httpd-ocf:1", "berth-test/httpd-ocf:2"]);
    let c = cluster("rollprom").await;
    let mut b = ocf_bundle(&format!("{}-db", c.tag), 3, 142, "berth", "stateful");
    b.spec.docker.as_mut().unwrap().promoted_max = Some(1);
    c.apply(&b, false);
    let store = &c.store;
    let name = b.name().to_string();
    // All three statuses from one read (one revision): read one by one, a promotion moving
    // between the reads could show the old and the new holder both promoted.
    let roles = || async {
        let prefix = format!("{}replicas/{name}/", store.keys().root());
        let (_, items) = store.list(&prefix).await.ok()?;
        let mut r = Vec::new();
        for i in 0..3u32 {
            let key = store.keys().replica(&name, i);
            let kv = items.iter().find(|kv| kv.key == key)?;
            let st: berth::model::cluster::ReplicaStatus =
                serde_json::from_slice(&kv.value).ok()?;
            let p = st.primitive?;
            r.push((p.state == Phase::Started).then_some(p.role)?);
        }
        Some(r)
    };
    let first = eventually(WAIT, "one replica promoted", || async {
        let r = roles().await?;
        let promoted: Vec<u32> = (0..3)
            .filter(|i| r[*i as usize] == Some(Role::Promoted))
            .collect();
        (promoted.len() == 1).then(|| promoted[0])
    })
    .await;
    let ids: Vec<String> = (0..3)
        .map(|i| docker(&["inspect", "-f", "{{.Id}}", &b.container_name(i)]))
        .collect();
    b.spec.docker.as_mut().unwrap().image = "berth-test/httpd-ocf:2".into();
    c.apply(&b, false);
    // Watch the order in which containers are replaced, and the promoted count.
    let mut order: Vec<u32> = Vec::new();
    let end = Instant::now() + Duration::from_secs(150);
    loop {
        for i in 0..3u32 {
            let id = common::docker_try(&["inspect", "-f", "{{.Id}}", &b.container_name(i)]);
            if id.is_some_and(|id| id != ids[i as usize]) && !order.contains(&i) {
                order.push(i);
            }
        }
        if let Some(r) = roles().await {
            let promoted = r.iter().filter(|x| **x == Some(Role::Promoted)).count();
            assert!(promoted <= 1, "more than promoted-max promoted: {r:?}");
        }
        let done = c
            .rollout(&name)
            .await
            .is_some_and(|r| r.generation >= 2 && r.state == RolloutState::Complete);
        if done && order.len() == 3 {
            break;
        }
        assert!(
            Instant::now() < end,
            "the rollout did not complete: replaced {order:?}, {:?}",
            c.rollout(&name).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("promoted replica {first}; containers replaced in the order {order:?}");
    assert_eq!(
        order.last(),
        Some(&first),
        "the promoted replica ({first}) replaced last: {order:?}"
    );
    // And one is promoted again.
    eventually(WAIT, "one replica promoted after the rollout", || async {
        let r = roles().await?;
        (r.iter().filter(|x| **x == Some(Role::Promoted)).count() == 1).then_some(())
    })
    .await;
    c.store
        .delete_bundle(&name, berth::store::Expect::Any)
        .await
        .unwrap();
}
