//! Clone notifications (`notify=true`) end to end, with real etcd, dockerd, controller and
//! node agent: Pacemaker's own ocf:pacemaker:Stateful (Debian's package, run unchanged)
//! dumps its environment at every action to `envfile`, a file in each replica's host
//! directory, and the test reads back what each replica was told, in order: the start from
//! empty and the promotion, a scale up, a scale down, and a failure that bans a replica.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use berth::model::{NvPair, StorageMapping};
use berth::store::Expect;
use common::{docker, eventually, ocf_bundle, third_party_ocf_image};

const WAIT: Duration = Duration::from_secs(60);

/// One notification as the agent saw it: type, operation and the lists it was given.
#[derive(Debug, Clone, PartialEq)]
struct Told {
    kind: String,
    op: String,
    vars: BTreeMap<String, String>,
}

impl Told {
    fn short(&self) -> String {
        format!("{} {}", self.kind, self.op)
    }
    fn list(&self, name: &str) -> Vec<String> {
        self.vars
            .get(name)
            .map(|v| v.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default()
    }
}

/// The notifications in a Stateful envfile (`### notify @ … ###`, the environment, `###`).
fn told(envfile: &Path) -> Vec<Told> {
    let text = std::fs::read_to_string(envfile).unwrap_or_default();
    let mut out = Vec::new();
    for block in text.split("### ").filter(|b| b.starts_with("notify @")) {
        let mut vars = BTreeMap::new();
        for line in block.lines() {
            if let Some((k, v)) = line.split_once('=')
                && let Some(name) = k.strip_prefix("OCF_RESKEY_CRM_meta_notify_")
            {
                vars.insert(name.to_string(), v.to_string());
            }
        }
        out.push(Told {
            kind: vars.get("type").cloned().unwrap_or_default(),
            op: vars.get("operation").cloned().unwrap_or_default(),
            vars,
        });
    }
    out
}

/// Writes a new spec of a stored bundle.
async fn update(store: &berth::store::Store, b: &berth::model::Bundle) {
    let kv = store.get(&store.keys().bundle(b.name())).await.unwrap();
    let rev = kv.expect("the bundle is stored").mod_revision;
    store.put_bundle(b, Expect::Revision(rev)).await.unwrap();
}

fn shorts(envfile: &Path) -> Vec<String> {
    told(envfile).iter().map(Told::short).collect()
}

/// What the replica with this envfile has been told, once it has been told at least as
/// many notifications as `want` has (fails the test after `WAIT`).
async fn settle(envfile: &Path, who: &str, want: &[&str]) -> Vec<String> {
    eventually(WAIT, &format!("{who} to be told {want:?}"), || async {
        let s = shorts(envfile);
        (s.len() >= want.len()).then_some(s)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_reach_every_replica_in_pacemakers_order() {
    third_party_ocf_image();
    let c = common::one_node("notify").await;
    let store = &c.store;
    let logs = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
    let mut b = ocf_bundle(&format!("{}-st", c.tag), 2, 66, "pacemaker", "Stateful");
    let name = b.name().to_string();
    {
        let d = b.spec.docker.as_mut().unwrap();
        d.image = "berth-test/httpd-ra:1".into();
        d.promoted_max = Some(1);
        d.replicas_per_host = Some(3);
    }
    b.spec.storage_mappings = vec![StorageMapping {
        id: "notify-log".into(),
        source_dir_root: Some(logs.path().display().to_string()),
        target_dir: "/var/log/notify".into(),
        options: Some("rw".into()),
        ..Default::default()
    }];
    let prim = b.spec.primitive.as_mut().unwrap();
    prim.operations[0].interval = "5s".into();
    prim.instance_attributes.push(NvPair {
        id: None,
        name: "envfile".into(),
        value: Some("/var/log/notify/env".into()),
    });
    prim.meta_attributes.push(NvPair {
        id: None,
        name: "notify".into(),
        value: Some("true".into()),
    });
    b.spec.meta_attributes.push(NvPair {
        id: None,
        name: "migration-threshold".into(),
        value: Some("1".into()),
    });
    let env = |i: u32| logs.path().join(format!("{name}-{i}")).join("env");
    let seen = |i: u32| shorts(&env(i));
    let who = |i: u32| format!("{name}-{i}");

    // From empty: nobody is active before the start, so no pre-start; both hear the
    // post-start, then the promotion's pre and post.
    store.put_bundle(&b, Expect::Absent).await.unwrap();
    let from_empty = ["post start", "pre promote", "post promote"];
    for i in 0..2 {
        assert_eq!(
            settle(&env(i), &who(i), &from_empty).await,
            from_empty,
            "{name}-{i}"
        );
    }
    let post_start = &told(&env(0))[0];
    assert_eq!(
        post_start.list("start_uname"),
        [format!("{name}-0"), format!("{name}-1")]
    );
    let pre_promote = &told(&env(0))[1];
    let promoted = pre_promote.list("promote_uname");
    assert_eq!(promoted.len(), 1, "{pre_promote:?}");
    assert_eq!(pre_promote.list("promoted_uname"), Vec::<String>::new());
    let post_promote = &told(&env(1))[2];
    assert_eq!(post_promote.vars["key_operation"], "promoted");

    // Scale up: the two active ones hear of the third before it starts, all three after.
    let mut three = b.clone();
    three.spec.docker.as_mut().unwrap().replicas = Some(3);
    update(store, &three).await;
    let scaled_up = [
        "post start",
        "pre promote",
        "post promote",
        "pre start",
        "post start",
    ];
    for i in 0..2 {
        assert_eq!(
            settle(&env(i), &who(i), &scaled_up).await,
            scaled_up,
            "{name}-{i}"
        );
        let pre = &told(&env(i))[3];
        assert_eq!(pre.list("start_uname"), [format!("{name}-2")], "{pre:?}");
        assert_eq!(pre.list("active_uname").len(), 2, "{pre:?}");
        assert_eq!(pre.list("promoted_uname"), promoted, "{pre:?}");
    }
    assert_eq!(
        settle(&env(2), &who(2), &["post start"]).await,
        ["post start"]
    );
    assert_eq!(told(&env(2))[0].list("active_uname").len(), 2);

    // Scale down: all three hear of the stop before it, the two left after it.
    update(store, &b).await;
    let scaled_down = [&scaled_up[..], &["pre stop", "post stop"]].concat();
    for i in 0..2 {
        assert_eq!(
            settle(&env(i), &who(i), &scaled_down).await,
            scaled_down,
            "{name}-{i}"
        );
        assert_eq!(told(&env(i))[5].list("stop_uname"), [format!("{name}-2")]);
    }
    assert_eq!(
        seen(2),
        ["post start", "pre stop"],
        "the stopped one hears the pre only"
    );

    // A failure: the unpromoted replica's container is killed; with migration-threshold=1
    // it may not run here again, so it is stopped: the promoted one hears of it, before
    // and after.
    let promoted_i: u32 = promoted[0].rsplit('-').next().unwrap().parse().unwrap();
    let victim = 1 - promoted_i;
    docker(&["kill", &b.container_name(victim)]);
    let failed = [&scaled_down[..], &["pre stop", "post stop"]].concat();
    let got = settle(&env(promoted_i), &who(promoted_i), &failed).await;
    assert_eq!(got[..failed.len()], failed, "{name}-{promoted_i}");
    let (pre_stop, post_stop) = (&told(&env(promoted_i))[7], &told(&env(promoted_i))[8]);
    for t in [pre_stop, post_stop] {
        assert_eq!(t.list("stop_uname"), [format!("{name}-{victim}")], "{t:?}");
    }
    assert_eq!(pre_stop.vars["key_operation"], "stop", "{pre_stop:?}");
    assert_eq!(post_stop.vars["key_operation"], "stopped", "{post_stop:?}");
    assert_eq!(pre_stop.list("promoted_uname"), promoted, "{pre_stop:?}");

    store.delete_bundle(&name, Expect::Any).await.unwrap();
    for i in 0..3 {
        common::container_gone(&b.container_name(i), Duration::from_secs(30)).await;
    }
    // The stopped replicas never heard a notification after they stopped.
    assert_eq!(seen(2), ["post start", "pre stop"]);
}
