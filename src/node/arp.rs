//! Gratuitous ARP: when a replica's address comes up on this host, tell the LAN at once, as
//! ocf:heartbeat:IPaddr2 does with send_arp (5 announcements, 200 ms apart), so that clients
//! whose neighbour cache still points at the host the replica left (dead, or cut off) reach
//! this one now rather than after their cache entry expires.

use std::net::Ipv4Addr;
use std::time::Duration;

/// How many announcements, and how far apart (IPaddr2's ARP_REPEAT and ARP_INTERVAL_MS).
pub const REPEAT: u32 = 5;
pub const INTERVAL: Duration = Duration::from_millis(200);

const ETH_P_ARP: u16 = 0x0806;

/// The Ethernet frame of a gratuitous ARP request for `ip` from `mac`: broadcast, sender and
/// target protocol address both `ip` (RFC 5227's announcement).
pub fn frame(mac: [u8; 6], ip: Ipv4Addr) -> [u8; 42] {
    let mut f = [0u8; 42];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    // Ethernet, IPv4, 6-byte and 4-byte addresses, request.
    f[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&ip.octets());
    // Target hardware address zero, target protocol address the announced one.
    f[38..42].copy_from_slice(&ip.octets());
    f
}

/// Sends one gratuitous ARP for `ip` out of interface `index` (of the agent's network
/// namespace), whose hardware address is `mac`.
pub fn announce(index: u32, mac: [u8; 6], ip: Ipv4Addr) -> std::io::Result<()> {
    let f = frame(mac, ip);
    // SAFETY: plain socket calls with a zeroed, fully initialised sockaddr_ll whose size is
    // passed along; the descriptor is closed on every path.
    unsafe {
        let fd = libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            i32::from(ETH_P_ARP.to_be()),
        );
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut to: libc::sockaddr_ll = std::mem::zeroed();
        to.sll_family = libc::AF_PACKET as u16;
        to.sll_protocol = ETH_P_ARP.to_be();
        to.sll_ifindex = index as i32;
        to.sll_halen = 6;
        to.sll_addr[..6].copy_from_slice(&[0xff; 6]);
        let sent = libc::sendto(
            fd,
            f.as_ptr().cast(),
            f.len(),
            0,
            (&raw const to).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        );
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if sent < 0 {
            return Err(err);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_frame_is_an_rfc5227_announcement() {
        let mac = [2, 0, 0, 0, 0, 7];
        let f = frame(mac, Ipv4Addr::new(10, 231, 1, 100));
        assert_eq!(&f[0..6], &[0xff; 6]);
        assert_eq!(&f[6..12], &mac);
        assert_eq!(&f[12..14], &[8, 6]);
        assert_eq!(&f[20..22], &[0, 1], "a request");
        assert_eq!(&f[22..28], &mac, "sender hardware address");
        assert_eq!(&f[28..32], &[10, 231, 1, 100], "sender protocol address");
        assert_eq!(&f[32..38], &[0; 6], "target hardware address");
        assert_eq!(&f[38..42], &[10, 231, 1, 100], "target protocol address");
    }
}
