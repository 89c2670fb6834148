//! Validation of `<network>`: addresses, netmask, interface, port mappings.

use super::*;

pub(super) fn check_network(c: &mut Check, net: &crate::model::NetworkSpec, replicas: u32) {
    let mask = net
        .host_netmask
        .unwrap_or(crate::model::DEFAULT_HOST_NETMASK);
    if net.host_netmask.is_some_and(|m| !(1..=32).contains(&m)) {
        c.fail("spec.network.hostNetmask", format!("{mask}: must be 1-32"));
    }
    if let Some(start) = &net.ip_range_start {
        match start.parse::<Ipv4Addr>() {
            Err(_) => c.fail(
                "spec.network.ipRangeStart",
                format!("{start:?}: not an IPv4 address"),
            ),
            Ok(ip) => check_range(c, ip, mask, replicas),
        }
    }
    if let Some(ifname) = &net.host_interface
        && (ifname.is_empty()
            || ifname.len() > 15
            || ifname.contains(|ch: char| ch == '/' || ch.is_whitespace()))
    {
        c.fail(
            "spec.network.hostInterface",
            format!("{ifname:?}: not an interface name (1-15 characters, no '/' or spaces)"),
        );
    }
    if net.control_port == Some(0) {
        c.fail("spec.network.controlPort", "0: must be 1-65535");
    }
    let mut taken: Vec<(u16, u16, usize)> = Vec::new();
    for (i, pm) in net.port_mappings.iter().enumerate() {
        let p = format!("spec.network.portMappings[{i}]");
        let ports = match (&pm.port, &pm.range) {
            (Some(_), Some(_)) => {
                c.fail(
                    format!("{p}.range"),
                    "port and range are both set: choose one",
                );
                None
            }
            (None, None) => {
                c.fail(format!("{p}.port"), "one of port or range is required");
                None
            }
            (Some(0), None) => {
                c.fail(format!("{p}.port"), "0: must be 1-65535");
                None
            }
            (Some(port), None) => Some((*port, *port)),
            (None, Some(r)) => match parse_range(r) {
                Ok(ports) => Some(ports),
                Err(why) => {
                    c.fail(format!("{p}.range"), format!("{r}: {why}"));
                    None
                }
            },
        };
        if pm.internal_port == Some(0) {
            c.fail(format!("{p}.internalPort"), "0: must be 1-65535");
        }
        if pm.internal_port.is_some() && pm.range.is_some() {
            c.fail(
                format!("{p}.internalPort"),
                "not allowed with range (a range maps every port to itself)",
            );
        }
        if let Some((lo, hi)) = ports {
            if let Some((_, _, j)) = taken.iter().find(|(a, b, _)| lo <= *b && *a <= hi) {
                c.fail(
                    p.clone(),
                    format!("ports {lo}-{hi} overlap portMappings[{j}]"),
                );
            }
            taken.push((lo, hi, i));
        }
    }
}

/// Replica i owns `start + i`; the last one must not run past 255.255.255.255 and, for a
/// netmask below 32, must stay inside `start`'s network without reaching its broadcast
/// address. With /32 every address is a network of its own (as IPaddr2 adds it), so only the
/// overflow applies.
pub(super) fn check_range(c: &mut Check, start: Ipv4Addr, mask: u8, replicas: u32) {
    let p = "spec.network.ipRangeStart";
    let first = u32::from(start);
    let Some(last) = first.checked_add(replicas.max(1) - 1) else {
        c.fail(
            p,
            format!("{start}: {replicas} replicas run past 255.255.255.255"),
        );
        return;
    };
    for a in [first, last] {
        if let Some(why) = unusable(Ipv4Addr::from(a)) {
            c.fail(
                p,
                format!("{start}: replica address {} is {why}", Ipv4Addr::from(a)),
            );
            return;
        }
    }
    if let Some((ip, what)) = in_loopback_reserved(first, last) {
        c.fail(p, format!("{start}: the range includes {ip}, {what}"));
        return;
    }
    if (1..32).contains(&mask) {
        check_inside_network(c, start, mask, last);
    }
}

/// Why no replica may own `ip` (a replica address is added to a host interface and removed
/// again when the replica leaves), if it may not.
fn unusable(ip: Ipv4Addr) -> Option<&'static str> {
    if ip.is_unspecified() {
        Some("the unspecified address")
    } else if ip.is_link_local() {
        Some("a link-local address (169.254.0.0/16)")
    } else if ip.is_multicast() {
        Some("a multicast address")
    } else if ip.is_broadcast() {
        Some("the broadcast address")
    } else if u32::from(ip) >> 28 == 0xf {
        Some("a reserved address (240.0.0.0/4)")
    } else if ip.octets()[0] == 0 {
        Some("in 0.0.0.0/8 (this network)")
    } else {
        None
    }
}

/// The loopback network is 127.0.0.0/8 on every host, whatever hostNetmask says: its
/// network, broadcast and own address are known here (a real interface's are checked by the
/// node agent, which knows its prefix). The first of them in `first..=last`, and what it is.
fn in_loopback_reserved(first: u32, last: u32) -> Option<(Ipv4Addr, &'static str)> {
    [
        (
            Ipv4Addr::new(127, 0, 0, 0),
            "the network address of the loopback network 127.0.0.0/8",
        ),
        (Ipv4Addr::LOCALHOST, "the loopback interface's own address"),
        (
            Ipv4Addr::new(127, 255, 255, 255),
            "the broadcast address of the loopback network 127.0.0.0/8",
        ),
    ]
    .into_iter()
    .find(|(ip, _)| (first..=last).contains(&u32::from(*ip)))
}

/// With a netmask below 32, the range stays inside `start`'s network and (below 31) owns
/// neither its network nor its broadcast address.
fn check_inside_network(c: &mut Check, start: Ipv4Addr, mask: u8, last: u32) {
    let p = "spec.network.ipRangeStart";
    let first = u32::from(start);
    let netmask = u32::MAX << (32 - mask);
    let network = first & netmask;
    let broadcast = network | !netmask;
    if mask < 31 && first == network {
        c.fail(
            p,
            format!("{start}: is the network address of {start}/{mask}"),
        );
    }
    if mask < 31 && last == broadcast {
        c.fail(
            p,
            format!(
                "{start}: the last replica's address {} is the broadcast address of {}/{mask}",
                Ipv4Addr::from(last),
                Ipv4Addr::from(network)
            ),
        );
    } else if last & netmask != network {
        c.fail(
            p,
            format!(
                "{start}: the last replica's address {} is outside {}/{mask}",
                Ipv4Addr::from(last),
                Ipv4Addr::from(network)
            ),
        );
    }
}

/// The most replicas one bundle may have: every replica is a row of the bundle's status
/// (one etcd value), and a bundle is placed and written as one unit.
pub const MAX_REPLICAS: u32 = 1000;

/// Parses `first-last`, 1-65535, first <= last.
pub fn parse_range(r: &str) -> Result<(u16, u16), RangeError> {
    let (a, b) = r.split_once('-').ok_or(RangeError::NotARange)?;
    let port = |s: &str| -> Result<u16, RangeError> {
        match s.trim().parse::<u32>() {
            Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
            Ok(n) => Err(RangeError::OutOfRange(n)),
            Err(_) => Err(RangeError::NotAPort(s.to_string())),
        }
    };
    let (a, b) = (port(a)?, port(b)?);
    if a > b {
        return Err(RangeError::Reversed);
    }
    Ok((a, b))
}

/// Why a port range (`first-last`) is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("not first-last")]
    NotARange,
    #[error("port {0} is outside 1-65535")]
    OutOfRange(u32),
    #[error("{0:?} is not a port number")]
    NotAPort(String),
    #[error("first port is above last")]
    Reversed,
}
