//! `crm_mon` inside a replica: the cluster as its agent sees it ([`Members`]), in Pacemaker's
//! XML (`--output-as=xml`, and the older `--as-xml`/`-X`) or as text. Agents read the XML
//! with XPath (`//nodes/node[@type='member' and @unclean='false']`, rabbitmq's
//! `//nodes//node[@online='true' and @standby='false']/@name`) and grep single lines of it
//! (galera and redis look for `resource.*id="<primitive>".*role="(Promoted|Master)".*
//! active="true".*orphaned="false".*failed="false"`), so elements and attributes follow
//! Pacemaker's schemas (`xml/api/nodes-2.29.rng`, `resources-2.28.rng`) in Pacemaker's order,
//! one element a line. Hosts are `member` nodes; the bundle's replicas are `remote` (guest)
//! nodes, as Pacemaker lists a bundle's.

use std::fmt::Write;

use crate::model::attributes::{Guest, Members};

/// The feature set and API version berth's output claims.
const API_VERSION: &str = "2.29";

/// XML attribute value escaping.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// The primitive's role word in one replica.
fn role(running: bool, promoted: bool, promotable: bool) -> &'static str {
    match (running, promoted, promotable) {
        (false, _, _) => "Stopped",
        (true, true, _) => "Promoted",
        (true, false, true) => "Unpromoted",
        (true, false, false) => "Started",
    }
}

/// The hosts left in maintenance: configured, but offline (no agent holds their
/// registration).
fn away(m: &Members) -> Vec<&String> {
    m.maintenance
        .iter()
        .filter(|h| !m.hosts.contains(h))
        .collect()
}

/// `crm_mon --output-as=xml` of `m`.
pub fn xml(m: &Members, request: &str) -> String {
    let b = esc(&m.bundle);
    let away = away(m);
    let mut x = String::new();
    let _ = writeln!(x, r#"<?xml version="1.0"?>"#);
    let _ = writeln!(
        x,
        r#"<pacemaker-result api-version="{API_VERSION}" request="{}">"#,
        esc(request)
    );
    let _ = writeln!(x, "  <summary>");
    let _ = writeln!(
        x,
        r#"    <nodes_configured number="{}"/>"#,
        m.hosts.len() + away.len() + m.replicas.len()
    );
    let _ = writeln!(
        x,
        r#"    <resources_configured number="{}" disabled="0" blocked="0"/>"#,
        m.replicas.len() * 2
    );
    let _ = writeln!(x, "  </summary>");
    let _ = writeln!(x, "  <nodes>");
    write_nodes(&mut x, m, &away);
    let _ = writeln!(x, "  </nodes>");
    let _ = writeln!(x, "  <resources>");
    let _ = writeln!(
        x,
        r#"    <bundle id="{b}" type="{}" image="{}" unique="false" maintenance="false" managed="true" failed="false">"#,
        esc(&m.engine),
        esc(&m.image),
    );
    for (i, g) in m.replicas.iter().enumerate() {
        write_replica(&mut x, m, i, g);
    }
    let _ = writeln!(x, "    </bundle>");
    let _ = writeln!(x, "  </resources>");
    let _ = writeln!(x, r#"  <status code="0" message="OK"/>"#);
    let _ = writeln!(x, "</pacemaker-result>");
    x
}

/// The hosts (online, then those away in maintenance) and the guest nodes, one per replica.
fn write_nodes(x: &mut String, m: &Members, away: &[&String]) {
    let b = esc(&m.bundle);
    let hosts = m
        .hosts
        .iter()
        .map(|h| (h, true))
        .chain(away.iter().map(|h| (*h, false)));
    for (i, (h, online)) in hosts.enumerate() {
        let here = m
            .replicas
            .iter()
            .filter(|g| g.running && g.host == *h)
            .count();
        let _ = writeln!(
            x,
            r#"    <node name="{}" id="{}" online="{online}" standby="{}" standby_onfail="false" maintenance="{}" pending="false" unclean="false" health="green" feature_set="{}" shutdown="false" expected_up="{online}" is_dc="false" resources_running="{}" type="member"/>"#,
            esc(h),
            i + 1,
            m.standby.contains(h),
            m.maintenance.contains(h),
            super::supervisor::CRM_FEATURE_SET,
            here * 2
        );
    }
    for (i, g) in m.replicas.iter().enumerate() {
        let _ = writeln!(
            x,
            r#"    <node name="{n}" id="{n}" online="{}" standby="false" standby_onfail="false" maintenance="false" pending="false" unclean="false" health="green" feature_set="{}" shutdown="false" expected_up="false" is_dc="false" resources_running="{}" type="remote" id_as_resource="{b}-{}-{i}"/>"#,
            g.running,
            super::supervisor::CRM_FEATURE_SET,
            usize::from(g.running),
            esc(&m.engine),
            n = esc(&g.name),
        );
    }
}

/// One replica of the bundle: its primitive on the guest node, its container and the guest
/// node's connection on its host.
fn write_replica(x: &mut String, m: &Members, i: usize, g: &Guest) {
    let b = esc(&m.bundle);
    let promotable = m.promotable;
    let _ = writeln!(x, r#"      <replica id="{i}">"#);
    let nodes = |x: &mut String, on: &str, id: &str| {
        let _ = writeln!(
            x,
            r#"          <node name="{}" id="{}" cached="true"/>"#,
            esc(on),
            esc(id)
        );
    };
    let running = usize::from(g.running);
    // The primitive, on the guest node.
    let _ = writeln!(
        x,
        r#"        <resource id="{}" resource_agent="{}" role="{}" active="{}" orphaned="false" blocked="false" maintenance="false" failed="false" managed="true" failure_ignored="false" nodes_running_on="{running}">"#,
        esc(&m.primitive),
        esc(&m.agent),
        role(g.running, g.promoted, promotable),
        g.running,
    );
    if g.running {
        nodes(x, &g.name, &g.name);
    }
    let _ = writeln!(x, "        </resource>");
    // The container and the guest node's connection, on the host.
    for (id, agent) in [
        (
            format!("{b}-{}-{i}", esc(&m.engine)),
            format!("ocf:heartbeat:{}", esc(&m.engine)),
        ),
        (esc(&g.name), "ocf:pacemaker:remote".to_string()),
    ] {
        let _ = writeln!(
            x,
            r#"        <resource id="{id}" resource_agent="{agent}" role="{}" active="{}" orphaned="false" blocked="false" maintenance="false" failed="false" managed="true" failure_ignored="false" nodes_running_on="{running}">"#,
            if g.running { "Started" } else { "Stopped" },
            g.running,
        );
        if g.running {
            let id = m
                .hosts
                .iter()
                .position(|h| *h == g.host)
                .map_or_else(|| g.host.clone(), |p| (p + 1).to_string());
            nodes(x, &g.host, &id);
        }
        let _ = writeln!(x, "        </resource>");
    }
    let _ = writeln!(x, "      </replica>");
}

/// `crm_mon -1` as text: the shape of Pacemaker's, for a person or a `grep`.
pub fn text(m: &Members) -> String {
    let promotable = m.promotable;
    let mut t = String::new();
    let _ = writeln!(t, "Cluster Summary:");
    let _ = writeln!(
        t,
        "  * {} nodes configured",
        m.hosts.len() + away(m).len() + m.replicas.len()
    );
    let _ = writeln!(t);
    let _ = writeln!(t, "Node List:");
    // As Pacemaker: a node in standby on a line of its own, not among the online ones.
    let (standby, online): (Vec<&String>, Vec<&String>) =
        m.hosts.iter().partition(|h| m.standby.contains(h));
    for h in standby {
        let _ = writeln!(t, "  * Node {h}: standby");
    }
    let online: Vec<&str> = online.iter().map(|h| h.as_str()).collect();
    let _ = writeln!(t, "  * Online: [ {} ]", online.join(" "));
    let away: Vec<&str> = away(m).into_iter().map(|h| h.as_str()).collect();
    if !away.is_empty() {
        let _ = writeln!(t, "  * OFFLINE: [ {} ]", away.join(" "));
    }
    let guests: Vec<String> = m
        .replicas
        .iter()
        .filter(|g| g.running)
        .map(|g| format!("{}@{}", g.name, g.host))
        .collect();
    if !guests.is_empty() {
        let _ = writeln!(t, "  * GuestOnline: [ {} ]", guests.join(" "));
    }
    let _ = writeln!(t);
    let _ = writeln!(t, "Full List of Resources:");
    let _ = writeln!(t, "  * Container bundle set: {} [{}]:", m.bundle, m.image);
    for g in &m.replicas {
        let r = role(g.running, g.promoted, promotable);
        let on = if g.running {
            format!(" {}", g.host)
        } else {
            String::new()
        };
        let _ = writeln!(t, "    * {}\t({}):\t {r}{on}", g.name, m.agent);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::attributes::Guest;

    fn galera() -> Members {
        Members {
            bundle: "galera-bundle".into(),
            engine: "podman".into(),
            image: "mariadb:10".into(),
            primitive: "galera".into(),
            agent: "ocf:heartbeat:galera".into(),
            promotable: true,
            hosts: vec![
                "controller-0".into(),
                "controller-1".into(),
                "controller-2".into(),
            ],
            replicas: (0..3)
                .map(|i| Guest {
                    name: format!("galera-bundle-{i}"),
                    host: format!("controller-{i}"),
                    running: i != 2,
                    promoted: i == 0,
                })
                .collect(),
            ..Members::default()
        }
    }

    #[test]
    fn hosts_in_standby_or_left_in_maintenance_show_as_pacemaker_shows_them() {
        let mut m = galera();
        m.standby = vec!["controller-1".into()];
        m.maintenance = vec!["controller-3".into()];
        let x = xml(&m, "crm_mon -1 --output-as=xml");
        // rabbitmq's XPath: //nodes//node[@online='true' and @standby='false']/@name
        let line = |name: &str| {
            x.lines()
                .find(|l| l.contains(&format!(r#"<node name="{name}""#)))
                .unwrap_or_else(|| panic!("{name} missing: {x}"))
                .to_string()
        };
        assert!(line("controller-0").contains(r#"online="true" standby="false""#));
        assert!(line("controller-1").contains(r#"online="true" standby="true""#));
        let away = line("controller-3");
        assert!(away.contains(r#"online="false""#), "{away}");
        assert!(away.contains(r#"maintenance="true""#), "{away}");
        assert!(x.contains(r#"<nodes_configured number="7"/>"#), "{x}");
        let t = text(&m);
        assert!(t.contains("* Node controller-1: standby"), "{t}");
        assert!(t.contains("* Online: [ controller-0 controller-2 ]"), "{t}");
        assert!(t.contains("* OFFLINE: [ controller-3 ]"), "{t}");
    }

    #[test]
    fn the_lines_agents_grep_are_there_in_pacemakers_order() {
        let x = xml(&galera(), "crm_mon -1 --output-as=xml");
        // galera's and redis's test for a promoted instance, one line.
        let promoted = regex::Regex::new(
            r#"resource.*id="galera".*role="(Promoted|Master)".*active="true".*orphaned="false".*failed="false""#,
        )
        .unwrap();
        assert_eq!(x.lines().filter(|l| promoted.is_match(l)).count(), 1, "{x}");
        // Three member hosts, none unclean; guest nodes online as they run.
        let members = x
            .lines()
            .filter(|l| l.contains(r#"type="member""#) && l.contains(r#"unclean="false""#))
            .count();
        assert_eq!(members, 3);
        assert!(x.contains(r#"<node name="galera-bundle-2" id="galera-bundle-2" online="false""#));
        assert!(x.contains(r#"id_as_resource="galera-bundle-podman-0""#));
        assert!(x.contains(r#"role="Unpromoted" active="true""#));
        assert!(x.contains(r#"role="Stopped" active="false""#));
    }

    #[test]
    fn the_xml_is_well_formed_and_escaped() {
        let mut m = galera();
        m.image = r#"a"<b>&'"#.into();
        m.promotable = false;
        let x = xml(&m, "crm_mon -1 --as-xml");
        let mut r = quick_xml::Reader::from_str(&x);
        let mut depth = 0i32;
        loop {
            match r.read_event() {
                Ok(quick_xml::events::Event::Start(_)) => depth += 1,
                Ok(quick_xml::events::Event::End(_)) => depth -= 1,
                Ok(quick_xml::events::Event::Eof) => break,
                Ok(_) => {}
                Err(e) => panic!("{e}: {x}"),
            }
        }
        assert_eq!(depth, 0);
        assert!(x.contains(r#"image="a&quot;&lt;b&gt;&amp;&apos;""#));
        assert!(!x.contains("Unpromoted"), "not promotable: Started");
    }

    #[test]
    fn the_text_lists_hosts_and_replicas() {
        let t = text(&galera());
        assert!(
            t.contains("Online: [ controller-0 controller-1 controller-2 ]"),
            "{t}"
        );
        assert!(t.contains("galera-bundle-0\t(ocf:heartbeat:galera):\t Promoted controller-0"));
        assert!(t.contains("galera-bundle-2\t(ocf:heartbeat:galera):\t Stopped"));
    }
}
