//! A replica's own address on the host, added and removed through netlink as
//! ocf:heartbeat:IPaddr2 does: on `host-interface`, or else on the interface whose network
//! holds the address, with `host-netmask`. Loopback addresses need nothing: the whole of
//! 127.0.0.0/8 already routes to `lo`. An address the host itself has, or the network or
//! broadcast address of one of the interface's own networks, is refused.

use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};

use crate::model::container::Address;

/// Why an address could not be added or removed. Retried at the next reconcile.
#[derive(Debug, thiserror::Error)]
pub enum AddressError {
    #[error("netlink: {0}")]
    Socket(#[from] std::io::Error),
    #[error("netlink {op} {ip}: {source}")]
    Netlink {
        op: &'static str,
        ip: Ipv4Addr,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("{ip}: interface {name:?} not found")]
    NoInterface { ip: Ipv4Addr, name: String },
    #[error("{ip}: no interface's network holds it; set spec.network.hostInterface")]
    NoNetwork { ip: Ipv4Addr },
    #[error(
        "{ip}: already an address of this host that berth did not add; refusing to take it over"
    )]
    HostOwned { ip: Ipv4Addr },
    #[error(
        "{ip}: is the {what} address of {network}/{prefix}, a network of this host's interface; refusing it"
    )]
    NetworkOrBroadcast {
        ip: Ipv4Addr,
        what: &'static str,
        network: Ipv4Addr,
        prefix: u8,
    },
    #[error(
        "{ip}: not added: cannot record it in the state directory (a fence must be able to drop it): {reason}"
    )]
    NotRecorded {
        ip: Ipv4Addr,
        reason: std::io::Error,
    },
}

fn handle() -> Result<rtnetlink::Handle, AddressError> {
    let (conn, handle, _) = rtnetlink::new_connection()?;
    tokio::spawn(conn);
    Ok(handle)
}

fn v4(msg: &AddressMessage) -> Option<Ipv4Addr> {
    msg.attributes.iter().find_map(|a| match a {
        AddressAttribute::Address(IpAddr::V4(ip)) => Some(*ip),
        _ => None,
    })
}

fn contains(net: Ipv4Addr, prefix: u8, ip: Ipv4Addr) -> bool {
    if prefix == 0 {
        return true;
    }
    let mask = u32::MAX << (32 - u32::from(prefix.min(32)));
    u32::from(net) & mask == u32::from(ip) & mask
}

/// Why `ip` cannot be a replica's address on an interface that has `existing` (address,
/// prefix length): it is the network or broadcast address of one of those networks. (The
/// model refuses these against `host-netmask` at apply; only the host knows its interfaces'
/// own prefixes, `172.17.255.255` on docker0's /16, say.)
pub fn reserved_on(ip: Ipv4Addr, existing: &[(Ipv4Addr, u8)]) -> Option<AddressError> {
    existing.iter().find_map(|&(addr, prefix)| {
        if prefix >= 31 || !contains(addr, prefix, ip) {
            return None;
        }
        let mask = u32::MAX << (32 - u32::from(prefix));
        let network = u32::from(addr) & mask;
        let what = if u32::from(ip) == network {
            "network"
        } else if u32::from(ip) == network | !mask {
            "broadcast"
        } else {
            return None;
        };
        Some(AddressError::NetworkOrBroadcast {
            ip,
            what,
            network: Ipv4Addr::from(network),
            prefix,
        })
    })
}

/// The IPv4 addresses (with prefix lengths) on interface `index`, or on every interface.
async fn addresses_on(
    h: &rtnetlink::Handle,
    index: Option<u32>,
    ip: Ipv4Addr,
) -> Result<Vec<(Ipv4Addr, u8)>, AddressError> {
    let mut req = h.address().get();
    if let Some(i) = index {
        req = req.set_link_index_filter(i);
    }
    let mut msgs = req.execute();
    let mut out = Vec::new();
    while let Some(m) = msgs
        .try_next()
        .await
        .map_err(|source| AddressError::Netlink {
            op: "list addresses for",
            ip,
            source,
        })?
    {
        if let Some(a) = v4(&m) {
            out.push((a, m.header.prefix_len));
        }
    }
    Ok(out)
}

/// The interface index to put `a` on.
async fn interface(h: &rtnetlink::Handle, a: &Address) -> Result<u32, AddressError> {
    let nl = |source| AddressError::Netlink {
        op: "find interface for",
        ip: a.ip,
        source,
    };
    if let Some(name) = &a.interface {
        let mut links = h.link().get().match_name(name.clone()).execute();
        return match links.try_next().await {
            Ok(Some(l)) => Ok(l.header.index),
            Ok(None) | Err(rtnetlink::Error::NetlinkError(_)) => Err(AddressError::NoInterface {
                ip: a.ip,
                name: name.clone(),
            }),
            Err(e) => Err(nl(e)),
        };
    }
    let mut addrs = h.address().get().execute();
    while let Some(m) = addrs.try_next().await.map_err(nl)? {
        if let Some(ip) = v4(&m)
            && !ip.is_loopback()
            && contains(ip, m.header.prefix_len, a.ip)
        {
            return Ok(m.header.index);
        }
    }
    Err(AddressError::NoNetwork { ip: a.ip })
}

/// Adds the address unless it is there (or loopback). Returns the address it added, to be
/// announced once the replica's container has started ([`Added::announce`]), or `None`. An
/// address already on the interface is taken as the agent's only when `ours` (the agent
/// added it before, maybe before a restart); otherwise it belongs to the host, and is
/// refused: removing it later would break the host. `before_add` runs just before an
/// address is added (the agent records it there, so that a fence that strikes between the
/// add and the agent's next step still knows to drop it); when it fails, the address is not
/// added ([`AddressError::NotRecorded`]).
pub async fn ensure(
    a: &Address,
    ours: bool,
    before_add: impl FnOnce() -> std::io::Result<()>,
) -> Result<Option<Added>, AddressError> {
    let h = handle()?;
    if a.ip.is_loopback() {
        // Nothing to add (lo answers for all of 127.0.0.0/8), but an address the host put on
        // an interface itself, or a network or broadcast address there, is not a replica's.
        let host = addresses_on(&h, None, a.ip).await?;
        if host.iter().any(|&(ip, _)| ip == a.ip) {
            return Err(AddressError::HostOwned { ip: a.ip });
        }
        return reserved_on(a.ip, &host).map_or(Ok(None), Err);
    }
    let index = interface(&h, a).await?;
    if let Some(e) = reserved_on(a.ip, &addresses_on(&h, Some(index), a.ip).await?) {
        return Err(e);
    }
    let mut existing = h
        .address()
        .get()
        .set_link_index_filter(index)
        .set_address_filter(IpAddr::V4(a.ip))
        .execute();
    let nl = |op, source| AddressError::Netlink {
        op,
        ip: a.ip,
        source,
    };
    if existing
        .try_next()
        .await
        .map_err(|e| nl("list", e))?
        .is_some()
    {
        return if ours {
            Ok(None)
        } else {
            Err(AddressError::HostOwned { ip: a.ip })
        };
    }
    before_add().map_err(|reason| AddressError::NotRecorded { ip: a.ip, reason })?;
    h.address()
        .add(index, IpAddr::V4(a.ip), a.netmask)
        .execute()
        .await
        .map_err(|e| nl("add", e))?;
    tracing::debug!(ip = %a.ip, "address added");
    Ok(Some(Added { index, ip: a.ip }))
}

/// An address [`ensure`] added, not yet announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Added {
    index: u32,
    pub ip: Ipv4Addr,
}

impl Added {
    /// An address added on interface `index`.
    pub fn new(index: u32, ip: Ipv4Addr) -> Self {
        Added { index, ip }
    }

    /// Announces the address on the LAN with gratuitous ARP (see [`super::arp`]): the first
    /// at once, the rest in the background. A failure is logged: the address works, clients
    /// only find it later.
    ///
    /// Call it after the replica's container started, not when the address is added:
    /// clients that learn the new host too early send it connections that Docker's port
    /// mapping already forwards to a container whose network is not up yet; the host's ARP
    /// for the container then fails and is retried only a second later (the kernel's
    /// retrans_time), and every connection waits for that.
    pub async fn announce(self) {
        let Ok(h) = handle() else {
            tracing::warn!(ip = %self.ip, "no netlink: not announced");
            return;
        };
        announce(&h, self.index, self.ip).await;
        tracing::debug!(ip = %self.ip, "address announced");
    }
}

async fn announce(h: &rtnetlink::Handle, index: u32, ip: Ipv4Addr) {
    use rtnetlink::packet_route::link::LinkAttribute;
    let mut links = h.link().get().match_index(index).execute();
    let mac = match links.try_next().await {
        Ok(Some(l)) => l.attributes.iter().find_map(|a| match a {
            LinkAttribute::Address(m) if m.len() == 6 => <[u8; 6]>::try_from(m.as_slice()).ok(),
            _ => None,
        }),
        _ => None,
    };
    let Some(mac) = mac else {
        tracing::warn!(%ip, "no hardware address on the interface: not announced");
        return;
    };
    tokio::spawn(async move {
        for n in 0..super::arp::REPEAT {
            if n > 0 {
                tokio::time::sleep(super::arp::INTERVAL).await;
            }
            if let Err(e) = super::arp::announce(index, mac, ip) {
                tracing::warn!(%ip, "gratuitous ARP: {e}");
                return;
            }
        }
    });
}

/// Removes the address from whatever interface holds it (nothing for loopback).
pub async fn remove(ip: Ipv4Addr) -> Result<(), AddressError> {
    if ip.is_loopback() {
        return Ok(());
    }
    let h = handle()?;
    let nl = |op, source| AddressError::Netlink { op, ip, source };
    let mut addrs = h
        .address()
        .get()
        .set_address_filter(IpAddr::V4(ip))
        .execute();
    let mut found = Vec::new();
    while let Some(m) = addrs.try_next().await.map_err(|e| nl("list", e))? {
        if v4(&m) == Some(ip) {
            found.push(m);
        }
    }
    for m in found {
        h.address()
            .del(m)
            .execute()
            .await
            .map_err(|e| nl("delete", e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_containment() {
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert!(contains(ip("192.168.24.1"), 24, ip("192.168.24.114")));
        assert!(!contains(ip("192.168.25.1"), 24, ip("192.168.24.114")));
        assert!(contains(ip("10.0.0.1"), 0, ip("192.168.24.114")));
    }

    #[test]
    fn network_and_broadcast_of_the_interfaces_own_networks_are_refused() {
        let docker0 = [(Ipv4Addr::new(172, 17, 0, 1), 16)];
        let refused = |ip: [u8; 4], on: &[(Ipv4Addr, u8)]| {
            reserved_on(Ipv4Addr::from(ip), on).map(|e| e.to_string())
        };
        let b = refused([172, 17, 255, 255], &docker0).expect("broadcast");
        assert!(b.contains("broadcast address of 172.17.0.0/16"), "{b}");
        let n = refused([172, 17, 0, 0], &docker0).expect("network");
        assert!(n.contains("network address of 172.17.0.0/16"), "{n}");
        assert!(refused([172, 17, 0, 9], &docker0).is_none());
        assert!(refused([10, 0, 0, 255], &docker0).is_none());
        // A /32 or /31 has neither.
        assert!(refused([10, 0, 0, 0], &[(Ipv4Addr::new(10, 0, 0, 0), 32)]).is_none());
        assert!(refused([10, 0, 0, 1], &[(Ipv4Addr::new(10, 0, 0, 0), 31)]).is_none());
        let lo = [
            (Ipv4Addr::LOCALHOST, 8),
            (Ipv4Addr::new(127, 0, 175, 1), 24),
        ];
        assert!(refused([127, 255, 255, 255], &lo).is_some());
        assert!(refused([127, 0, 175, 255], &lo).is_some());
        assert!(refused([127, 0, 175, 10], &lo).is_none());
    }
}
