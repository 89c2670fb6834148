//! Replica addresses through netlink, inside a network namespace this test makes (so the
//! host's own interfaces are never touched): one end of a veth pair holds 10.200.0.1/24, and the
//! agent's address code adds and removes replica addresses as IPaddr2 would.

use std::os::fd::AsRawFd;
use std::process::Command;

use berth::model::container::Address;
use berth::node::address;

fn ip(args: &[&str]) -> String {
    let o = Command::new("ip")
        .args(args)
        .output()
        .expect("iproute2 (scripts/setup.sh)");
    assert!(
        o.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Runs `f` on a thread that has entered the namespace (setns changes only that thread).
fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap();
        // SAFETY: setns on an open namespace file descriptor; it affects this thread only.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .unwrap()
}

#[test]
fn replica_addresses_are_added_to_the_holding_interface_and_removed() {
    let name = format!("berth-addr-{}", std::process::id());
    ip(&["netns", "add", &name]);
    let ns = Netns(name);
    let exec = |args: &[&str]| {
        let mut full = vec!["netns", "exec", &ns.0, "ip"];
        full.extend_from_slice(args);
        ip(&full)
    };
    exec(&["link", "add", "d0", "type", "veth", "peer", "name", "d1"]);
    exec(&["link", "set", "d0", "up"]);
    exec(&["link", "set", "d1", "up"]);
    exec(&["addr", "add", "10.200.0.1/24", "dev", "d0"]);

    let by_network = Address {
        ip: "10.200.0.5".parse().unwrap(),
        netmask: 24,
        interface: None,
    };
    let named = Address {
        ip: "10.200.0.6".parse().unwrap(),
        netmask: 24,
        interface: Some("d0".into()),
    };
    let missing = Address {
        ip: "10.200.0.7".parse().unwrap(),
        netmask: 24,
        interface: Some("nope0".into()),
    };
    let host_own = Address {
        ip: "10.200.0.1".parse().unwrap(),
        netmask: 24,
        interface: Some("d0".into()),
    };
    let (a, again, b, err, refused) = in_netns(&ns.0, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            (
                address::ensure(&by_network, false, || Ok(()))
                    .await
                    .unwrap()
                    .is_some(),
                address::ensure(&by_network, true, || Ok(()))
                    .await
                    .unwrap()
                    .is_some(),
                address::ensure(&named, false, || Ok(()))
                    .await
                    .unwrap()
                    .is_some(),
                address::ensure(&missing, false, || Ok(()))
                    .await
                    .unwrap_err()
                    .to_string(),
                address::ensure(&host_own, false, || Ok(()))
                    .await
                    .unwrap_err()
                    .to_string(),
            )
        })
    });
    assert!(a && b, "both addresses added");
    assert!(
        !again,
        "adding an address the agent added before is a no-op"
    );
    assert!(err.contains("interface \"nope0\" not found"), "{err}");
    assert!(
        refused.contains("10.200.0.1: already an address of this host"),
        "the interface's own address is refused: {refused}"
    );
    let shown = exec(&["-4", "addr", "show", "dev", "d0"]);
    assert!(
        shown.contains("10.200.0.5/24") && shown.contains("10.200.0.6/24"),
        "{shown}"
    );

    in_netns(&ns.0, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            address::remove("10.200.0.5".parse().unwrap())
                .await
                .unwrap();
            address::remove("10.200.0.6".parse().unwrap())
                .await
                .unwrap();
        })
    });
    let shown = exec(&["-4", "addr", "show", "dev", "d0"]);
    assert!(
        !shown.contains("10.200.0.5") && !shown.contains("10.200.0.6"),
        "{shown}"
    );
    assert!(
        shown.contains("10.200.0.1/24"),
        "the interface's own address stays"
    );
}

#[test]
fn loopback_addresses_need_nothing() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let lo = Address {
        ip: "127.0.2.112".parse().unwrap(),
        netmask: 24,
        interface: Some("lo".into()),
    };
    assert!(
        rt.block_on(address::ensure(&lo, false, || Ok(())))
            .unwrap()
            .is_none()
    );
}
