//! The cluster's attributes (issue 32, first part): `berth attribute` in crm_attribute's
//! shape against the real etcd, and permanent node attributes confining placement through
//! an OpenStack-style `rsc_location` (resource-discovery="exclusive", score 0, a rule on a
//! node attribute), with real node agents and dockerd.

mod common;

use std::time::Duration;

use common::{
    TestController, TestNode, TestPrefix, berth, etcdctl, etcdctl_get, etcdctl_put, eventually,
    stderr, stdout, test_image,
};

const WAIT: Duration = Duration::from_secs(40);

#[test]
fn attributes_are_set_read_and_deleted_as_crm_attribute_does() {
    let p = TestPrefix::new("attrcli");
    // `berth` with whitespace-separated arguments.
    let run = |args: &str| berth(&p, &args.split_whitespace().collect::<Vec<_>>(), None);
    let ok = |args: &str| {
        let o = run(args);
        assert!(o.status.success(), "berth {args}: {}", stderr(&o));
        stdout(&o)
    };
    let key = |rest: &str| etcdctl_get(&format!("{}/attributes/{rest}", p.prefix));
    // A permanent node attribute: the nodes section, one key.
    ok("attribute -N controller-0 -n galera-role -v true");
    assert_eq!(
        key("nodes/controller-0/galera-role").as_deref(),
        Some("true")
    );
    assert_eq!(
        ok("attribute -N controller-0 -n galera-role -G"),
        "scope=nodes  name=galera-role value=true\n"
    );
    assert_eq!(ok("attribute -N controller-0 -n galera-role -q"), "true\n");
    // Transient (-l reboot) is another section: not the same attribute.
    let missing = run("attribute -N controller-0 -n galera-role -l reboot -q");
    assert_eq!(missing.status.code(), Some(105), "{}", stderr(&missing));
    assert!(stderr(&missing).contains("no such attribute"));
    assert_eq!(
        ok("attribute -N controller-0 -n galera-role -l reboot -q -d none"),
        "none\n"
    );
    // A cluster property in a named set, and a promotion score.
    ok("attribute --type crm_config -s redis_replication -n redis_REPL_INFO -v rds-0");
    assert_eq!(
        ok("attribute --type crm_config -s redis_replication -n redis_REPL_INFO -q"),
        "rds-0\n"
    );
    // A transient attribute (here a promotion score) of a host lives under the host's
    // registration: gone with it, as Pacemaker clears a departed node's status section.
    let granted = etcdctl(&["lease", "grant", "60"]);
    let lease = granted.split_whitespace().nth(1).expect("lease id");
    etcdctl(&[
        "put",
        "--lease",
        lease,
        &format!("{}/nodes/controller-1", p.prefix),
        "{}",
    ]);
    ok("attribute -N controller-1 -p redis -v 10");
    assert_eq!(
        key("status/controller-1/master-redis").as_deref(),
        Some("10")
    );
    // A transient attribute of a node that is not in the cluster is refused.
    let gone = run("attribute -N controller-9 -p redis -v 10");
    assert!(!gone.status.success());
    assert!(stderr(&gone).contains("controller-9"), "{}", stderr(&gone));
    assert_eq!(key("status/controller-9/master-redis"), None);
    // Everything, listed.
    let all = ok("attribute");
    for want in [
        "galera-role",
        "redis_REPL_INFO",
        "master-redis",
        "crm_config",
    ] {
        assert!(all.contains(want), "{all}");
    }
    // The host leaves (its registration's lease ends): its transient attributes go, its
    // permanent ones stay.
    etcdctl(&["lease", "revoke", lease]);
    assert_eq!(key("status/controller-1/master-redis"), None);
    assert_eq!(
        key("nodes/controller-0/galera-role").as_deref(),
        Some("true")
    );
    // Deleted; deleting again is no error.
    ok("attribute -N controller-0 -n galera-role -D");
    ok("attribute -N controller-0 -n galera-role -D");
    assert_eq!(key("nodes/controller-0/galera-role"), None);
    // Bad input is refused by name, and nothing is written.
    for (args, why) in [
        (
            &["attribute", "-N", "../x", "-n", "a", "-v", "1"][..],
            "node name",
        ),
        (
            &["attribute", "-N", "n1", "-n", "a/b", "-v", "1"],
            "attribute name",
        ),
        (
            &["attribute", "-N", "n1", "-n", "a", "-v", "x\u{7}"],
            "attribute value",
        ),
        (
            &["attribute", "-N", "n1", "-n", "a", "-t", "cib", "-v", "1"],
            "--type",
        ),
        (
            &[
                "attribute",
                "-N",
                "n1",
                "-n",
                "a",
                "-t",
                "crm_config",
                "-v",
                "1",
            ],
            "--node",
        ),
    ] {
        let o = berth(&p, args, None);
        assert!(!o.status.success(), "{args:?} was accepted");
        assert!(stderr(&o).contains(why), "{args:?}: {}", stderr(&o));
    }
    assert_eq!(key("nodes/n1/a"), None);
}

/// OpenStack confines its services to the controllers with a node attribute:
/// `pcs node attribute controller-0 galera-role=true` and an `rsc_location` with
/// resource-discovery="exclusive", score 0 and a rule `galera-role eq true`. Imported from
/// CIB XML, it keeps the replica off every node until the attribute is set on one at run
/// time, then places it there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exclusive_location_rule_on_a_node_attribute_confines_placement() {
    test_image();
    let p = TestPrefix::new("attrplace");
    let store = p.store().await;
    let tag = format!("attrplace{}", std::process::id() % 100_000);
    let a = TestNode::start(&p, &format!("{tag}-a")).await;
    let b = TestNode::start(&p, &format!("{tag}-b")).await;
    let _ctl = TestController::start(&p, "ctl").await;
    let bundle = format!("{tag}-web");
    let cib = format!(
        r#"<cib><configuration><crm_config/><nodes/><resources>
  <bundle id="{bundle}">
    <docker image="berth-test/httpd:1" replicas="1" options="--stop-timeout 1"/>
    <network ip-range-start="127.0.182.10" host-netmask="24">
      <port-mapping id="{bundle}-port" port="8080" internal-port="80"/>
    </network>
  </bundle>
</resources><constraints>
  <rsc_location id="location-{bundle}" resource-discovery="exclusive" rsc="{bundle}">
    <rule id="location-{bundle}-rule" score="0">
      <expression attribute="galera-role" id="location-{bundle}-rule-expr" operation="eq" value="true"/>
    </rule>
  </rsc_location>
</constraints></configuration><status/></cib>"#
    );
    let applied = berth(&p, &["apply", "-f", "-"], Some(&cib));
    assert!(applied.status.success(), "{}", stderr(&applied));
    assert!(
        !stderr(&applied).contains("skipped"),
        "the location was skipped: {}",
        stderr(&applied)
    );
    let row = || async {
        let st = store.get_bundle(&bundle).await.unwrap()?.value.status?;
        st.replica_rows.into_iter().next()
    };
    // No node has the attribute: pending, on neither node.
    let pending = eventually(WAIT, "the replica pending", || async {
        row()
            .await
            .filter(|r| r.state == berth::model::cluster::ReplicaState::Pending)
    })
    .await;
    assert!(pending.node.is_empty(), "{pending:?}");
    let set = berth(
        &p,
        &[
            "attribute",
            "-N",
            &b.name,
            "-n",
            "galera-role",
            "-v",
            "true",
        ],
        None,
    );
    assert!(set.status.success(), "{}", stderr(&set));
    let placed = eventually(WAIT, "the replica running on b", || async {
        row()
            .await
            .filter(|r| r.state == berth::model::cluster::ReplicaState::Running)
    })
    .await;
    assert_eq!(placed.node, b.name);
    assert_ne!(placed.node, a.name);
    // Round trip: the export keeps the rule and its discovery.
    let exported = stdout(&berth(&p, &["cib", "export"], None));
    assert!(
        exported.contains(r#"resource-discovery="exclusive""#),
        "{exported}"
    );
    store
        .delete_bundle(&bundle, berth::store::Expect::Any)
        .await
        .unwrap();
}

/// `crm_attribute` run inside a replica (`docker exec`), with its exit code and output.
fn crm_attribute(container: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new("docker")
        .args(["exec", container, "/run/berth-bin/crm_attribute"])
        .args(args)
        .output()
        .expect("the docker CLI must be installed (scripts/setup.sh)")
}

/// Issue 32: the tools inside a replica reach the cluster's attributes. One replica writes
/// a transient attribute for a peer and a property of its primitive; the others read them
/// back; the keys are in etcd; a write outside the replica's scope is refused and stores
/// nothing; an unchanged value is not written again; and a replica's transient attributes go
/// when its container restarts, its permanent ones stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_tools_read_and_write_the_clusters_attributes_within_their_scope() {
    common::ocf_test_image();
    let c = common::one_node("attrtools").await;
    let store = &c.store;
    let b = common::ocf_bundle(&format!("{}-kv", c.tag), 3, 183, "heartbeat", "apache");
    store
        .put_bundle(&b, berth::store::Expect::Absent)
        .await
        .unwrap();
    common::primitives_started(store, &b).await;
    let (r0, r1, r2) = (
        b.container_name(0),
        b.container_name(1),
        b.container_name(2),
    );
    let peer = b.replica_name(1);
    // Replica 0 writes for replica 1; it is stored once the call returns.
    let set = crm_attribute(
        &r0,
        &["-N", &peer, "-l", "reboot", "-n", "seqno", "-v", "42"],
    );
    assert!(set.status.success(), "{set:?}");
    let key = format!("{}/attributes/status/{peer}/seqno", c.p.prefix);
    assert_eq!(etcdctl_get(&key), Some("42".to_string()));
    // Replica 2 reads it (its view follows etcd within a second).
    let read = eventually(WAIT, "replica 2 reading replica 1's attribute", || async {
        let o = crm_attribute(&r2, &["-N", &peer, "-l", "reboot", "-n", "seqno", "-q"]);
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
    })
    .await;
    assert_eq!(read, "42\n");
    // A property of its primitive, in a set of its own (redis keeps its master so).
    let prop = format!("{}-apache_REPL_INFO", b.name());
    let set = crm_attribute(
        &r0,
        &[
            "--type",
            "crm_config",
            "-s",
            "kv_replication",
            "-n",
            &prop,
            "-v",
            "r0",
        ],
    );
    assert!(set.status.success(), "{set:?}");
    let read = eventually(WAIT, "replica 1 reading the property", || async {
        let o = crm_attribute(
            &r1,
            &[
                "--type",
                "crm_config",
                "-s",
                "kv_replication",
                "-n",
                &prop,
                "-q",
            ],
        );
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
    })
    .await;
    assert_eq!(read, "r0\n");
    // The members: the host online (crm_node), and the bundle's replicas running on it.
    let node = |c: &str, flag: &str| {
        let o = std::process::Command::new("docker")
            .args(["exec", c, "/run/berth-bin/crm_node", flag])
            .output()
            .unwrap();
        assert!(o.status.success(), "crm_node {flag}: {o:?}");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let listed = eventually(WAIT, "crm_node -l listing the host", || async {
        let l = node(&r2, "-l");
        (l == format!("1 {} member\n", c.node.name)).then_some(l)
    })
    .await;
    assert_eq!(node(&r2, "-p"), format!("{}\n", c.node.name), "{listed}");
    assert_eq!(node(&r2, "-q"), "1\n");
    let version = std::process::Command::new("docker")
        .args(["exec", &r2, "/run/berth-bin/pacemakerd", "-$"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&version.stdout).starts_with("Pacemaker 2."),
        "{version:?}"
    );
    assert_eq!(node(&r2, "-n"), format!("{}\n", b.replica_name(2)));
    let socket = c
        .node
        .state_dir
        .path()
        .join(b.name())
        .join(b.replica_name(2))
        .join("run")
        .join(berth::remote::attrd::SOCKET);
    let members = eventually(WAIT, "every replica seen running", || async {
        let reply = berth::remote::attrd::ask(&socket, &berth::remote::attrd::ToolRequest::Members)
            .unwrap();
        reply
            .members
            .filter(|m| m.replicas.len() == 3 && m.replicas.iter().all(|g| g.running))
    })
    .await;
    for (i, g) in members.replicas.iter().enumerate() {
        assert_eq!(g.name, b.replica_name(i as u32));
        assert_eq!(g.host, c.node.name);
    }
    // crm_mon's XML as agents read it: the host a member, the replicas guest nodes online,
    // the primitive started in each.
    let x = crm_mon_xml(&r2);
    let lines = |pat: &str| {
        let re = regex::Regex::new(pat).unwrap();
        x.lines().filter(|l| re.is_match(l)).count()
    };
    assert_eq!(
        lines(&format!(
            r#"<node name="{}" .*online="true".*unclean="false".*type="member""#,
            c.node.name
        )),
        1,
        "{x}"
    );
    assert_eq!(
        lines(r#"<node name=.*online="true".*type="remote""#),
        3,
        "{x}"
    );
    assert_eq!(
        lines(&format!(
            r#"resource id="{}-apache".*role="Started".*active="true".*orphaned="false".*failed="false""#,
            b.name()
        )),
        3,
        "{x}"
    );
    // A host in standby is online with standby="true" (rabbitmq-cluster's XPath skips it),
    // one left in maintenance is configured but offline: followed from etcd, not reloaded.
    let standby_host = format!("{}-sb", c.tag);
    let away_host = format!("{}-mt", c.tag);
    etcdctl_put(&format!("{}/standby/{standby_host}", c.p.prefix), "{}");
    let granted = etcdctl(&["lease", "grant", "120"]);
    let lease = granted.split_whitespace().nth(1).expect("lease id");
    let registration = etcdctl_get(&format!("{}/nodes/{}", c.p.prefix, c.node.name))
        .expect("the node's registration")
        .replace(&c.node.name, &standby_host);
    etcdctl(&[
        "put",
        "--lease",
        lease,
        &format!("{}/nodes/{standby_host}", c.p.prefix),
        &registration,
    ]);
    etcdctl_put(&format!("{}/maintenance/{away_host}", c.p.prefix), "{}");
    eventually(
        WAIT,
        "crm_mon showing the standby and maintenance hosts",
        || async {
            let x = crm_mon_xml(&r2);
            let has = |name: &str, pat: &str| {
                x.lines()
                    .any(|l| l.contains(&format!(r#"<node name="{name}""#)) && l.contains(pat))
            };
            (has(&standby_host, r#"online="true" standby="true""#)
                && has(&away_host, r#"online="false""#)
                && has(&away_host, r#"maintenance="true""#)
                && has(&c.node.name, r#"online="true" standby="false""#))
            .then_some(x)
        },
    )
    .await;
    etcdctl(&["lease", "revoke", lease]);
    etcdctl(&["del", "--prefix", &format!("{}/standby/", c.p.prefix)]);
    etcdctl(&["del", "--prefix", &format!("{}/maintenance/", c.p.prefix)]);
    // rabbitmq-cluster's way to its peers: each replica keeps its own transient attribute,
    // and reads the online ones' with cibadmin and XPath, cutting the value out of each line.
    for (c_, i) in [(&r0, 0), (&r1, 1)] {
        let o = crm_attribute(
            c_,
            &[
                "-N",
                &b.replica_name(i),
                "-l",
                "reboot",
                "-n",
                "rmq-node-attr-kv",
                "-v",
                &format!("rabbit@r{i}"),
            ],
        );
        assert!(o.status.success(), "{o:?}");
    }
    let cut = regex::Regex::new(r#"^.*value=.(.*)".*$"#).unwrap();
    let joined = eventually(WAIT, "cibadmin finding both peers", || async {
        let o = std::process::Command::new("docker")
            .args([
                "exec",
                &r2,
                "/run/berth-bin/cibadmin",
                "-Q",
                "--xpath",
                "//node_state[@crmd='online']//nvpair[@name='rmq-node-attr-kv']",
            ])
            .output()
            .unwrap();
        let values: Vec<String> = String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| l.contains("rmq-node-attr-kv"))
            .filter_map(|l| Some(cut.captures(l)?[1].to_string()))
            .collect();
        (values.len() == 2).then_some(values)
    })
    .await;
    assert_eq!(joined, ["rabbit@r0", "rabbit@r1"]);
    // attrd_updater, as Pacemaker's ocf:pacemaker:attribute agent calls it.
    let updater = |c_: &str, args: &[&str]| {
        std::process::Command::new("docker")
            .args(["exec", c_, "/run/berth-bin/attrd_updater"])
            .args(args)
            .output()
            .unwrap()
    };
    let set = updater(&r0, &["-n", "probe", "-U", "5", "-d", "0"]);
    assert!(set.status.success(), "{set:?}");
    let line = eventually(WAIT, "attrd_updater -Q from a peer", || async {
        let o = updater(&r2, &["-n", "probe", "-Q", "-N", &b.replica_name(0)]);
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
    })
    .await;
    assert_eq!(
        line,
        format!(
            "name=\"probe\" host=\"{}\" value=\"5\"\n",
            b.replica_name(0)
        )
    );
    let missing = updater(&r0, &["-n", "nothing-here", "-Q"]);
    assert_eq!(missing.status.code(), Some(105), "{missing:?}");
    // Outside its scope: another node's attributes, a cluster-wide property.
    for args in [
        &["-N", "controller-0", "-n", "galera-role", "-v", "true"][..],
        &[
            "--type",
            "crm_config",
            "-n",
            "maintenance-mode",
            "-v",
            "true",
        ],
    ] {
        let o = crm_attribute(&r0, args);
        assert!(!o.status.success(), "{args:?} was stored");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("crm_attribute:"),
            "{o:?}"
        );
    }
    assert_eq!(
        etcdctl_get(&format!(
            "{}/attributes/nodes/controller-0/galera-role",
            c.p.prefix
        )),
        None
    );
    // The same value again: no etcd write.
    let before = store.get(&key).await.unwrap().unwrap().mod_revision;
    let again = crm_attribute(
        &r0,
        &["-N", &peer, "-l", "reboot", "-n", "seqno", "-v", "42"],
    );
    assert!(again.status.success(), "{again:?}");
    assert_eq!(store.get(&key).await.unwrap().unwrap().mod_revision, before);
    // Replica 1 keeps a permanent attribute too; then its container restarts.
    let keep = crm_attribute(&r1, &["-n", "joined", "-v", "yes"]);
    assert!(keep.status.success(), "{keep:?}");
    let restarts = common::replica_status(store, b.name(), 1)
        .await
        .map_or(0, |s| s.restart_count);
    common::docker(&["kill", &r1]);
    eventually(WAIT, "replica 1's transient attributes cleared", || async {
        let restarted = common::replica_status(store, b.name(), 1)
            .await
            .is_some_and(|s| s.restart_count > restarts);
        (restarted && store.get(&key).await.unwrap().is_none()).then_some(())
    })
    .await;
    assert_eq!(
        etcdctl_get(&format!("{}/attributes/nodes/{peer}/joined", c.p.prefix)),
        Some("yes".to_string())
    );
    store
        .delete_bundle(b.name(), berth::store::Expect::Any)
        .await
        .unwrap();
}

/// `crm_mon -1 --output-as=xml` inside container `c`, as its agents run it; its output.
fn crm_mon_xml(c: &str) -> String {
    let o = std::process::Command::new("docker")
        .args(["exec", c, "/run/berth-bin/crm_mon", "-1", "--output-as=xml"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    String::from_utf8_lossy(&o.stdout).into_owned()
}
