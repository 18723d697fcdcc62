//! Delete conntrack entries over ctnetlink (what `conntrack -D -s ADDR` does), so flows that
//! were established before a partition don't survive through state that outlives the rules
//! (NAT bindings, `ct state established` accepts in users' own rulesets).

use std::collections::BTreeSet;
use std::io;
use std::net::IpAddr;

use crate::nl::{attrs, Msg, Socket, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST};

const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_ZONE: u16 = 18;
const CTA_TUPLE_IP: u16 = 1;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;

fn tuple_addrs(tuple: &[u8]) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for (ty, v) in attrs(tuple) {
        if ty != CTA_TUPLE_IP {
            continue;
        }
        for (ty, a) in attrs(v) {
            match (ty, a.len()) {
                (CTA_IP_V4_SRC | CTA_IP_V4_DST, 4) => {
                    out.push(IpAddr::from([a[0], a[1], a[2], a[3]]));
                }
                (CTA_IP_V6_SRC | CTA_IP_V6_DST, 16) => {
                    let mut b = [0u8; 16];
                    b.copy_from_slice(a);
                    out.push(IpAddr::from(b));
                }
                _ => {}
            }
        }
    }
    out
}

/// Delete every entry of the calling thread's namespace whose original or reply tuple involves
/// one of `addrs`. Returns how many were deleted. A kernel without conntrack loaded in this
/// namespace simply has nothing to delete.
pub fn delete_involving(addrs: &BTreeSet<IpAddr>) -> io::Result<usize> {
    if addrs.is_empty() {
        return Ok(0);
    }
    // The conntrack table is one global hash that every dump walks in full, whatever the
    // namespace: skip the dump when this namespace tracks nothing (or has no conntrack at all).
    match topo_netns::read_sysctl("net.netfilter.nf_conntrack_count") {
        Ok(n) if n.trim() == "0" => return Ok(0),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        _ => {}
    }
    let mut sock = Socket::open(libc::NETLINK_NETFILTER)?;
    let mut doomed: Vec<(Vec<u8>, Option<Vec<u8>>, u8)> = Vec::new();
    for family in [libc::AF_INET as u8, libc::AF_INET6 as u8] {
        // nfgenmsg: family, version, res_id (BE)
        let hdr = [family, 0, 0, 0];
        let mut m =
            Msg::new((NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET, NLM_F_REQUEST | NLM_F_DUMP, &hdr);
        let res = sock.dump(&mut m, |_, payload| {
            if payload.len() < 4 {
                return;
            }
            let mut orig = None;
            let mut zone = None;
            let mut hit = false;
            for (ty, v) in attrs(&payload[4..]) {
                match ty {
                    CTA_TUPLE_ORIG => {
                        hit |= tuple_addrs(v).iter().any(|a| addrs.contains(a));
                        orig = Some(v.to_vec());
                    }
                    CTA_TUPLE_REPLY => hit |= tuple_addrs(v).iter().any(|a| addrs.contains(a)),
                    CTA_ZONE => zone = Some(v.to_vec()),
                    _ => {}
                }
            }
            if let (true, Some(o)) = (hit, orig) {
                doomed.push((o, zone, family));
            }
        });
        match res {
            Ok(()) => {}
            // No conntrack in this kernel or namespace: nothing to flush.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENOENT | libc::EOPNOTSUPP | libc::EPROTONOSUPPORT)
                ) => {}
            Err(e) => return Err(e),
        }
    }
    let mut n = 0;
    for (orig, zone, family) in doomed {
        let hdr = [family, 0, 0, 0];
        let mut m =
            Msg::new((NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE, NLM_F_REQUEST | NLM_F_ACK, &hdr);
        m.begin_nest(CTA_TUPLE_ORIG);
        // The dumped tuple's nested attributes are sent back as they came.
        append_raw(&mut m, &orig);
        m.end_nest();
        if let Some(z) = zone {
            m.attr(CTA_ZONE, &z);
        }
        match sock.request(&mut m) {
            Ok(()) => n += 1,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {} // expired meanwhile
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn append_raw(m: &mut Msg, nested: &[u8]) {
    for (ty, v) in attrs(nested) {
        // Inner attributes of a tuple are themselves nested (IP, PROTO); keep the flag.
        if matches!(ty, 1 | 2) && !v.is_empty() {
            m.begin_nest(ty);
            for (ity, iv) in attrs(v) {
                m.attr(ity, iv);
            }
            m.end_nest();
        } else {
            m.attr(ty, v);
        }
    }
}
