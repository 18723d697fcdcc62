//! rtnetlink operations the chaos layer needs: set a link up or down, and put a node's planned
//! addresses and routes back after its interfaces come up again (the kernel flushes IPv4 routes
//! and IPv6 addresses of a device that goes administratively down).

use std::ffi::CString;
use std::io;
use std::net::IpAddr;

use topo_plan::NodePlan;

use crate::nl::{Msg, Socket, NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST};

const RTM_NEWLINK: u16 = 16;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;
const IFLA_IFNAME: u16 = 3;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PRIORITY: u16 = 6;
const IFF_UP: u32 = 1;

pub fn open() -> io::Result<Socket> {
    Socket::open(libc::NETLINK_ROUTE)
}

/// Index of an interface in the calling thread's namespace.
pub fn ifindex(name: &str) -> io::Result<u32> {
    let c = CString::new(name).map_err(io::Error::other)?;
    // SAFETY: if_nametoindex reads a NUL-terminated string that outlives the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(io::Error::new(io::ErrorKind::NotFound, format!("no interface {name}")));
    }
    Ok(idx)
}

/// Set an interface administratively up or down (by name).
pub fn set_link_up(sock: &mut Socket, name: &str, up: bool) -> io::Result<()> {
    let mut hdr = [0u8; 16];
    // ifinfomsg: family(1) pad(1) type(2) index(4) flags(4) change(4)
    let flags: u32 = if up { IFF_UP } else { 0 };
    hdr[8..12].copy_from_slice(&flags.to_ne_bytes());
    hdr[12..16].copy_from_slice(&IFF_UP.to_ne_bytes());
    let mut m = Msg::new(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, &hdr);
    m.attr_str(IFLA_IFNAME, name);
    sock.request(&mut m).map_err(|e| io::Error::new(e.kind(), format!("set {name} {}: {e}", updown(up))))
}

fn updown(up: bool) -> &'static str {
    if up {
        "up"
    } else {
        "down"
    }
}

fn addr_replace(sock: &mut Socket, ifindex: u32, addr: IpAddr, prefix: u8) -> io::Result<()> {
    let (family, bytes): (u8, Vec<u8>) = match addr {
        IpAddr::V4(a) => (libc::AF_INET as u8, a.octets().to_vec()),
        IpAddr::V6(a) => (libc::AF_INET6 as u8, a.octets().to_vec()),
    };
    // ifaddrmsg: family prefixlen flags scope index(4)
    let mut hdr = [0u8; 8];
    hdr[0] = family;
    hdr[1] = prefix;
    if matches!(addr, IpAddr::V6(_)) {
        hdr[2] = 0x80; // IFA_F_PERMANENT; DAD is governed by the node's sysctls
    }
    hdr[4..8].copy_from_slice(&ifindex.to_ne_bytes());
    let mut m = Msg::new(RTM_NEWADDR, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE, &hdr);
    m.attr(IFA_LOCAL, &bytes).attr(IFA_ADDRESS, &bytes);
    sock.request(&mut m)
}

/// Put back the node's planned addresses on `iface` and every planned route through it.
/// Run inside the node's namespace, after the interface is up.
pub fn restore_iface(sock: &mut Socket, node: &NodePlan, iface: &str) -> io::Result<()> {
    let Some(plan_if) = node.iface(iface) else { return Ok(()) };
    let idx = ifindex(iface)?;
    for a in &plan_if.addresses {
        addr_replace(sock, idx, IpAddr::V4(a.addr()), a.prefix_len())
            .map_err(|e| io::Error::new(e.kind(), format!("address {a} on {iface}: {e}")))?;
    }
    for a in &plan_if.addresses6 {
        addr_replace(sock, idx, IpAddr::V6(a.addr()), a.prefix_len())
            .map_err(|e| io::Error::new(e.kind(), format!("address {a} on {iface}: {e}")))?;
    }
    for r in node.routes.iter().filter(|r| r.dev == iface) {
        let mut hdr = [0u8; 12];
        // rtmsg: family dst_len src_len tos table protocol scope type flags(4)
        hdr[0] = libc::AF_INET as u8;
        hdr[1] = r.to.prefix_len();
        hdr[4] = libc::RT_TABLE_MAIN;
        hdr[5] = libc::RTPROT_BOOT;
        hdr[6] = libc::RT_SCOPE_UNIVERSE;
        hdr[7] = libc::RTN_UNICAST;
        let mut m = Msg::new(RTM_NEWROUTE, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE, &hdr);
        m.attr(RTA_DST, &r.to.network().octets()).attr(RTA_GATEWAY, &r.via.octets()).attr_u32(RTA_OIF, idx);
        if let Some(metric) = r.metric {
            m.attr_u32(RTA_PRIORITY, metric);
        }
        sock.request(&mut m)
            .map_err(|e| io::Error::new(e.kind(), format!("route {} via {}: {e}", r.to, r.via)))?;
    }
    Ok(())
}
