//! Property tests: a bundle survives every trip between berth's formats (YAML, JSON,
//! Pacemaker XML), whatever its contents, including text that needs escaping.

use berth::model::{
    Bundle, BundleSpec, ContainerSpec, Metadata, NetworkSpec, NvPair, Operation, PortMapping,
    Primitive, StorageMapping, cib, manifest,
};
use proptest::collection::{btree_map, vec};
use proptest::option::of;
use proptest::prelude::*;

/// Explicit ids never contain '-': the ids berth derives always do, so a generated id is
/// never mistaken for a derived one (which import would fold back into "unset").
fn id() -> impl Strategy<Value = String> {
    "[a-z_][a-z0-9_.]{0,8}"
}

/// Text with markup characters, quotes, tabs, newlines and non-ASCII letters.
fn text() -> impl Strategy<Value = String> {
    "[ -~\t\n\ré日<>&\"']{0,16}"
}

fn pairs() -> impl Strategy<Value = Vec<NvPair>> {
    vec(
        (of(id()), "[a-z][a-z0-9-]{0,8}", of(text())).prop_map(|(id, name, value)| NvPair {
            id,
            name,
            value,
        }),
        0..3,
    )
}

fn container() -> impl Strategy<Value = ContainerSpec> {
    (
        text(),
        (
            of(any::<u32>()),
            of(any::<u32>()),
            of(any::<u32>()),
            of(any::<u32>()),
        ),
        (of(text()), of(text()), of(text())),
    )
        .prop_map(|(image, (r, rph, pm, m), (rc, net, opts))| ContainerSpec {
            image,
            replicas: r,
            replicas_per_host: rph,
            promoted_max: pm,
            masters: m,
            run_command: rc,
            network: net,
            options: opts,
        })
}

fn network() -> impl Strategy<Value = NetworkSpec> {
    let pm = (
        id(),
        of(any::<u16>()),
        of(any::<u16>()),
        of("[0-9]{1,5}-[0-9]{1,5}"),
    )
        .prop_map(|(id, port, internal_port, range)| PortMapping {
            id,
            port,
            internal_port,
            range,
        });
    (
        of(text()),
        of(any::<u8>()),
        of(text()),
        of(any::<u16>()),
        of(any::<bool>()),
        vec(pm, 0..3),
    )
        .prop_map(|(ip, mask, iface, cp, ah, port_mappings)| NetworkSpec {
            ip_range_start: ip,
            host_netmask: mask,
            host_interface: iface,
            control_port: cp,
            add_host: ah,
            port_mappings,
        })
}

fn storage() -> impl Strategy<Value = StorageMapping> {
    (id(), of(text()), of(text()), text(), of(text())).prop_map(|(id, sd, sdr, td, o)| {
        StorageMapping {
            id,
            source_dir: sd,
            source_dir_root: sdr,
            target_dir: td,
            options: o,
        }
    })
}

fn operation() -> impl Strategy<Value = Operation> {
    (
        (
            of(id()),
            "[a-z]{1,8}",
            "[0-9]{1,3}[smh]?",
            of(text()),
            of(text()),
            of(text()),
        ),
        (
            of(text()),
            of(text()),
            of(text()),
            of(any::<bool>()),
            of(any::<bool>()),
        ),
        (pairs(), of(id()), pairs(), of(id())),
    )
        .prop_map(
            |(
                (id, name, interval, timeout, role, on_fail),
                (d, sd, io, en, rp),
                (ia, iaid, ma, maid),
            )| {
                Operation {
                    id,
                    name,
                    interval,
                    timeout,
                    role,
                    on_fail,
                    description: d,
                    start_delay: sd,
                    interval_origin: io,
                    enabled: en,
                    record_pending: rp,
                    instance_attributes: ia,
                    instance_attributes_id: iaid,
                    meta_attributes: ma,
                    meta_attributes_id: maid,
                }
            },
        )
}

fn primitive() -> impl Strategy<Value = Primitive> {
    (
        (
            id(),
            "[a-z]{1,6}",
            of("[a-z]{1,8}"),
            "[a-zA-Z0-9_]{1,8}",
            of(text()),
        ),
        (pairs(), of(id()), pairs(), of(id()), pairs(), of(id())),
        (vec(operation(), 0..3), of(id())),
    )
        .prop_map(
            |(
                (id, class, provider, kind, description),
                (ia, iaid, ma, maid, u, uid),
                (operations, oid),
            )| {
                Primitive {
                    id,
                    class,
                    provider,
                    kind,
                    description,
                    instance_attributes: ia,
                    instance_attributes_id: iaid,
                    meta_attributes: ma,
                    meta_attributes_id: maid,
                    utilization: u,
                    utilization_id: uid,
                    operations,
                    operations_id: oid,
                }
            },
        )
}

/// Any bundle berth's model can hold, with exactly one engine. Labels and annotations only
/// when `with_labels` (Pacemaker XML has no place for them).
fn bundle(with_labels: bool) -> impl Strategy<Value = Bundle> {
    let labels = if with_labels { 0..3usize } else { 0..1usize };
    (
        (
            "[a-z][a-z0-9-]{0,12}",
            btree_map("[a-z]{1,5}", text(), labels.clone()),
            btree_map("[a-z]{1,5}", text(), labels),
        ),
        (
            of(text()),
            any::<bool>(),
            container(),
            of(network()),
            vec(storage(), 0..3),
        ),
        (of(primitive()), pairs(), of(id()), pairs(), of(id())),
    )
        .prop_map(
            move |(
                (name, labels, annotations),
                (description, podman, c, network, storage_mappings),
                (primitive, ma, maid, ia, iaid),
            )| {
                let (labels, annotations) = if with_labels {
                    (labels, annotations)
                } else {
                    Default::default()
                };
                let (docker, podman) = if podman {
                    (None, Some(c))
                } else {
                    (Some(c), None)
                };
                Bundle {
                    metadata: Metadata {
                        name,
                        labels,
                        annotations,
                        generation: None,
                    },
                    ..Bundle::new(
                        "",
                        BundleSpec {
                            description,
                            docker,
                            podman,
                            network,
                            storage_mappings,
                            primitive,
                            meta_attributes: ma,
                            meta_attributes_id: maid,
                            instance_attributes: ia,
                            instance_attributes_id: iaid,
                            locations: vec![],
                            colocations: vec![],
                            orders: vec![],
                        },
                    )
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn yaml_round_trip(b in bundle(true)) {
        let text = manifest::to_yaml(std::slice::from_ref(&b));
        prop_assert_eq!(manifest::parse(&text).unwrap().bundles, vec![b]);
    }

    #[test]
    fn json_round_trip(b in bundle(true)) {
        let text = manifest::to_json(std::slice::from_ref(&b));
        prop_assert_eq!(manifest::parse(&text).unwrap().bundles, vec![b]);
    }

    #[test]
    fn manifest_to_xml_to_manifest(b in bundle(false)) {
        let xml = cib::export_bundle(&b);
        prop_assert_eq!(cib::import(&xml).unwrap().bundles, vec![b]);
    }

    #[test]
    fn xml_to_manifest_to_xml(b in bundle(false)) {
        // Start from XML, go through a YAML manifest, and come back to the same XML text.
        let xml = cib::export_bundle(&b);
        let from_xml = cib::import(&xml).unwrap().bundles;
        let yaml = manifest::to_yaml(&from_xml);
        let back = manifest::parse(&yaml).unwrap().bundles;
        prop_assert_eq!(cib::export_bundle(&back[0]), xml);
    }

    #[test]
    fn cib_document_round_trip(bs in vec(bundle(false), 0..4)) {
        let xml = cib::export_cib(&bs);
        prop_assert_eq!(cib::import(&xml).unwrap().bundles, bs);
    }

    /// Colocations and orders between the bundles of a document, of every form berth keeps,
    /// export as constraints and import back the same, with nothing reported.
    #[test]
    fn cib_constraints_round_trip(
        mut bs in vec(bundle(false), 2..4),
        picks in vec((0..4usize, 0..4usize, any::<bool>(), 0..4usize, any::<bool>()), 0..6),
    ) {
        // Distinct names that are valid references (the generator may repeat one, or end
        // one with '-').
        for (i, b) in bs.iter_mut().enumerate() {
            b.metadata.name = format!("b{i}-{}", b.metadata.name.trim_end_matches('-'));
        }
        let n = bs.len();
        let scores = ["INFINITY", "-INFINITY", "100", "-5"];
        for (k, (a, b, colocate, form, flag)) in picks.into_iter().enumerate() {
            let (a, b) = (a % n, b % n);
            if a == b {
                continue;
            }
            let other = bs[b].name().to_string();
            if colocate {
                let promoted = form == 3 && flag;
                bs[a].spec.colocations.push(berth::model::Colocation {
                    id: flag.then(|| format!("col-{k}")),
                    with: other,
                    score: if promoted { "INFINITY" } else { scores[form] }.into(),
                    role: promoted.then(|| "Promoted".into()),
                    with_role: (form == 1).then(|| "Unpromoted".into()),
                });
            } else {
                bs[a].spec.orders.push(berth::model::Order {
                    id: flag.then(|| format!("ord-{k}")),
                    first: other,
                    first_action: (form == 1).then(|| "promote".into()),
                    then_action: (form == 2).then(|| "start".into()),
                    kind: (form == 3).then(|| "Optional".into()),
                    symmetrical: flag.then_some(form % 2 == 0),
                });
            }
        }
        let xml = cib::export_cib(&bs);
        let back = cib::import(&xml).unwrap();
        prop_assert!(back.warnings.is_empty(), "{:?}", back.warnings);
        for (b, again) in bs.iter().zip(&back.bundles) {
            // Ids come back derived where there were none.
            let ids = |c: &[berth::model::Colocation]| -> Vec<_> {
                c.iter().map(|c| (c.with.clone(), c.score.clone(), c.role.clone(), c.with_role.clone())).collect()
            };
            prop_assert_eq!(ids(&b.spec.colocations), ids(&again.spec.colocations));
            let os = |o: &[berth::model::Order]| -> Vec<_> {
                o.iter().map(|o| (o.first.clone(), o.first_action.clone(), o.then_action.clone(), o.kind.clone(), o.symmetrical)).collect()
            };
            prop_assert_eq!(os(&b.spec.orders), os(&again.spec.orders));
            prop_assert_eq!(cib::export_cib(&back.bundles), xml.clone());
        }
    }
}

/// The rollout strategy is berth's own meta attributes: exported into the CIB's
/// `<meta_attributes>` (Pacemaker ignores names it does not know) and read back the same.
#[test]
fn the_rollout_strategy_round_trips_through_the_cib() {
    use berth::model::rollout::{FAILURE_ACTION, MAX_UNAVAILABLE, MIN_READY, PARTITION, Strategy};
    let yaml = format!(
        "apiVersion: berth.io/v1alpha1
kind: Bundle
metadata:
  name: web
spec:
  docker:
    image: httpd
    replicas: 4
  metaAttributes:
    - {{name: {MAX_UNAVAILABLE}, value: \"2\"}}
    - {{name: {PARTITION}, value: \"1\"}}
    - {{name: {MIN_READY}, value: 5s}}
    - {{name: {FAILURE_ACTION}, value: rollback}}
"
    );
    let b = manifest::parse(&yaml).unwrap().bundles.remove(0);
    berth::model::validate::validate(&b).unwrap();
    let xml = cib::export_bundle(&b);
    for name in [MAX_UNAVAILABLE, PARTITION, MIN_READY, FAILURE_ACTION] {
        assert!(xml.contains(&format!("name=\"{name}\"")), "{xml}");
    }
    let back = cib::import(&xml).unwrap().bundles.remove(0);
    assert_eq!(Strategy::of(&back.spec), Strategy::of(&b.spec));
    assert_eq!(Strategy::of(&back.spec).max_unavailable, 2);
}

/// A bundle as OpenStack deployments write them (TripleO's galera): docker options with the
/// host's IPC namespace, privileged, a user, a log driver and environment; `masters`;
/// the primitive's clone meta attributes with their older names. It imports, validates,
/// promotes as many as `masters` says, and survives export and import again.
#[test]
fn an_openstack_style_bundle_imports_and_round_trips() {
    let xml = r#"<cib><configuration><resources>
  <bundle id="galera-bundle">
    <meta_attributes id="galera-bundle-meta_attributes">
      <nvpair id="galera-bundle-meta_attributes-promotable" name="promotable" value="true"/>
      <nvpair id="galera-bundle-meta_attributes-clone-max" name="clone-max" value="3"/>
    </meta_attributes>
    <docker image="cluster.common.tag/mariadb:pcmklatest" masters="3" network="host"
      options="--ipc=host --privileged=true --user=root --log-driver=journald -e KOLLA_CONFIG_STRATEGY=COPY_ALWAYS"
      replicas="3" run-command="/bin/bash /usr/local/bin/kolla_start"/>
    <network control-port="3123"/>
    <storage>
      <storage-mapping id="mysql-cfg-files" options="ro" source-dir="/var/lib/kolla/config_files/mysql.json" target-dir="/var/lib/kolla/config_files/config.json"/>
      <storage-mapping id="mysql-log" options="rw" source-dir="/var/log/containers/mysql" target-dir="/var/log/mysql"/>
    </storage>
    <primitive class="ocf" id="galera" provider="heartbeat" type="galera">
      <instance_attributes id="galera-instance_attributes">
        <nvpair id="galera-instance_attributes-enable_creation" name="enable_creation" value="true"/>
        <nvpair id="galera-instance_attributes-wsrep_cluster_address" name="wsrep_cluster_address" value="gcomm://a,b,c"/>
      </instance_attributes>
      <meta_attributes id="galera-meta_attributes">
        <nvpair id="galera-meta_attributes-container-attribute-target" name="container-attribute-target" value="host"/>
        <nvpair id="galera-meta_attributes-master-max" name="master-max" value="3"/>
        <nvpair id="galera-meta_attributes-ordered" name="ordered" value="true"/>
        <nvpair id="galera-meta_attributes-notify" name="notify" value="true"/>
      </meta_attributes>
      <operations>
        <op id="galera-promote-interval-0s" interval="0s" name="promote" on-fail="block" timeout="300s"/>
        <op id="galera-monitor-interval-10s" interval="10s" name="monitor" role="Master" timeout="30s"/>
      </operations>
    </primitive>
  </bundle>
</resources></configuration></cib>"#;
    let imported = cib::import(xml).unwrap();
    let b = &imported.bundles[0];
    berth::model::validate::validate(b).unwrap();
    assert_eq!(b.spec.promoted_max(), 3);
    assert_eq!(b.spec.replicas(), 3);
    let o = berth::model::options::parse(b.spec.container().1.options.as_deref().unwrap()).unwrap();
    assert_eq!(o.ipc.as_deref(), Some("host"));
    assert!(o.privileged);
    let needs = berth::model::policy::needs(b);
    assert!(needs.privileged && needs.host_namespaces.contains(&"ipc".to_string()));
    let again = cib::import(&cib::export_bundle(b))
        .unwrap()
        .bundles
        .remove(0);
    assert_eq!(&again, b);
}

/// Clone meta attributes name how many are promoted when the container element does not.
#[test]
fn promotion_comes_from_clone_meta_attributes_when_the_container_sets_none() {
    let with = |meta: &str| {
        let yaml = format!(
            "apiVersion: berth.io/v1alpha1\nkind: Bundle\nmetadata: {{name: db}}\nspec:\n  docker: {{image: x, replicas: 3}}\n  metaAttributes: [{meta}]\n"
        );
        let b = manifest::parse(&yaml).unwrap().bundles.remove(0);
        berth::model::validate::validate(&b).map(|_| b.spec.promoted_max())
    };
    assert_eq!(with("{name: promoted-max, value: \"2\"}").unwrap(), 2);
    assert_eq!(with("{name: master-max, value: \"1\"}").unwrap(), 1);
    assert_eq!(with("{name: promotable, value: \"true\"}").unwrap(), 1);
    assert_eq!(with("{name: clone-max, value: \"3\"}").unwrap(), 0);
    let e = with("{name: promoted-max, value: many}")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("spec.metaAttributes[0].value") && e.contains("not a count"),
        "{e}"
    );
}

/// A CIB's `rsc_location` constraints become the bundles' locations (a node and a score,
/// rules on `#uname` or a node attribute), are exported again as constraints, and what has
/// no equivalent is reported and skipped.
#[test]
fn location_constraints_import_and_export() {
    let xml = r##"<cib><configuration><resources>
  <bundle id="web"><docker image="httpd" replicas="2"/></bundle>
  <primitive id="vip" class="ocf" provider="heartbeat" type="IPaddr2"/>
</resources><constraints>
  <rsc_location id="web-prefers-n1" rsc="web" node="n1" score="100"/>
  <rsc_location id="web-not-zone-b" rsc="web">
    <rule id="r1" score="-INFINITY"><expression id="e1" attribute="zone" operation="eq" value="b"/></rule>
  </rsc_location>
  <rsc_location id="web-uname" rsc="web">
    <rule id="r2" score="50"><expression id="e2" attribute="#uname" operation="eq" value="n3"/></rule>
  </rsc_location>
  <rsc_location id="web-promoted" rsc="web" role="Promoted" node="n2" score="10"/>
  <rsc_location id="vip-n1" rsc="vip" node="n1" score="10"/>
  <rsc_colocation id="web-with-db" rsc="web" with-rsc="db" score="INFINITY"/>
</constraints></configuration></cib>"##;
    let imported = cib::import(xml).unwrap();
    let b = &imported.bundles[0];
    berth::model::validate::validate(b).unwrap();
    let locs: Vec<(Option<&str>, Option<&str>, &str)> = b
        .spec
        .locations
        .iter()
        .map(|l| (l.node.as_deref(), l.label.as_deref(), l.score.as_str()))
        .collect();
    assert_eq!(
        locs,
        [
            (Some("n1"), None, "100"),
            (None, Some("zone=b"), "-INFINITY"),
            (Some("n3"), None, "50")
        ]
    );
    let warnings = imported.warnings.join("\n");
    for says in [
        "web-promoted",
        "one role is not supported",
        "vip-n1",
        "not a bundle",
        "rsc_colocation",
    ] {
        assert!(warnings.contains(says), "{says}: {warnings}");
    }
    let exported = cib::export_cib(&imported.bundles);
    assert!(exported.contains("<rsc_location"), "{exported}");
    let again = cib::import(&exported).unwrap();
    assert_eq!(again.bundles[0].spec.locations, b.spec.locations);
    assert!(again.warnings.is_empty(), "{:?}", again.warnings);
}

/// A CIB's `rsc_colocation` and `rsc_order` constraints between bundles become the
/// dependent bundle's colocations and orders (ids, roles, actions, kinds kept), export again
/// as the same constraints, and what berth cannot honour, or what names a resource that is
/// not a bundle, is reported and skipped.
#[test]
fn colocation_and_order_constraints_import_and_export() {
    let xml = r##"<cib><configuration><resources>
  <bundle id="galera-bundle"><docker image="galera" replicas="3" masters="3"/></bundle>
  <bundle id="app"><docker image="app" replicas="2"/></bundle>
  <bundle id="cache"><docker image="memcached" replicas="1"/></bundle>
  <primitive id="ip-10" class="ocf" provider="heartbeat" type="IPaddr2"/>
</resources><constraints>
  <rsc_colocation id="app-with-galera" score="INFINITY" rsc="app" with-rsc="galera-bundle" with-rsc-role="Master"/>
  <rsc_order id="galera-then-app" first="galera-bundle" first-action="promote" then="app" then-action="start" kind="Mandatory"/>
  <rsc_order id="cache-then-app" first="cache" then="app" score="0" symmetrical="false"/>
  <rsc_colocation id="cache-apart" rsc="cache" with-rsc="app" score="-INFINITY"/>
  <rsc_colocation id="ip-with-app" rsc="ip-10" with-rsc="app" score="INFINITY"/>
  <rsc_order id="serial" first="cache" then="galera-bundle" kind="Serialize"/>
  <rsc_colocation id="set" score="INFINITY"><resource_set id="s1"><resource_ref id="app"/></resource_set></rsc_colocation>
  <rsc_ticket id="t" rsc="app" ticket="ticketA"/>
</constraints></configuration></cib>"##;
    let imported = cib::import(xml).unwrap();
    for b in &imported.bundles {
        berth::model::validate::validate(b).unwrap();
    }
    let by = |name: &str| imported.bundles.iter().find(|b| b.name() == name).unwrap();
    let app = by("app");
    assert_eq!(app.spec.colocations.len(), 1);
    let c = &app.spec.colocations[0];
    assert_eq!(
        (c.id.as_deref(), c.with.as_str(), c.score.as_str()),
        (Some("app-with-galera"), "galera-bundle", "INFINITY")
    );
    assert_eq!(c.with_role(), Some(berth::model::cluster::Role::Promoted));
    let orders: Vec<(&str, bool, bool, bool)> = app
        .spec
        .orders
        .iter()
        .map(|o| {
            (
                o.first.as_str(),
                o.after_promote(),
                o.mandatory(),
                o.symmetrical(),
            )
        })
        .collect();
    assert_eq!(
        orders,
        [
            ("galera-bundle", true, true, true),
            ("cache", false, false, false)
        ]
    );
    assert_eq!(by("cache").spec.colocations[0].score, "-INFINITY");
    assert!(by("galera-bundle").spec.orders.is_empty());
    let warnings = imported.warnings.join("\n");
    for says in [
        "ip-with-app\": \"ip-10\" is not a bundle",
        "serial\": kind: \"Serialize\": not supported",
        "\"set\": resource sets are not supported",
        "rsc_ticket",
    ] {
        assert!(warnings.contains(says), "{says}: {warnings}");
    }
    let exported = cib::export_cib(&imported.bundles);
    let again = cib::import(&exported).unwrap();
    assert!(again.warnings.is_empty(), "{:?}", again.warnings);
    for (a, b) in imported.bundles.iter().zip(&again.bundles) {
        assert_eq!(a.spec.colocations, b.spec.colocations, "{exported}");
        assert_eq!(a.spec.orders, b.spec.orders, "{exported}");
    }
    assert!(
        exported.contains(r#"<rsc_order id="galera-then-app" first="galera-bundle" first-action="promote" then="app" then-action="start" kind="Mandatory"/>"#),
        "{exported}"
    );
}
