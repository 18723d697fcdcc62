//! Permanent neighbour entries for big LANs.
//!
//! The kernel's IPv4 neighbour (ARP) table has one size limit for the whole host: `gc_thresh3`
//! (default 1024) entries counted across every namespace, with garbage collection starting at
//! `gc_thresh2` (512). All-pairs probing on one LAN of n nodes needs n·(n−1) entries (each
//! source resolves each destination, each destination learns the source), so a LAN of more
//! than ~32 nodes overflows it: resolutions fail with "No buffer space" / "neighbour table
//! overflow" and pairs look unreachable although they are not.
//!
//! Permanent entries are not counted against those limits and are never collected. So when a
//! run would need more than [`DYNAMIC_BUDGET`] entries that are not already there, the engine
//! installs permanent ones first — in the namespaces of the nodes it probes, never the host's —
//! from the plan's addresses and MACs (over rtnetlink, in batches of 1000), and removes exactly
//! the ones it added when the run ends. Entries that already exist (permanent ones a lab set
//! up, or learned ones) are left as they are: adding uses `NLM_F_EXCL`, so no dump of the
//! table is needed (a dump walks the host-wide table, every namespace's entries, each time).

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, OwnedFd};

use topo_plan::{Attachment, NodePlan};

use crate::sys::{self, NsThread};
use crate::ProbeError;

/// Neighbour entries one run may leave to ARP before permanent ones are installed instead:
/// half of the default `gc_thresh2`, leaving room for everything else on the host.
pub const DYNAMIC_BUDGET: usize = 256;

const NUD_PERMANENT: u16 = 0x80;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
const NLMSG_ERROR: u16 = 2;
const MSG_LEN: usize = 48;
/// Messages per `sendto` (about 48 KiB).
const BATCH: usize = 1000;

/// One entry: on interface `iface` (index into the node's interfaces), `addr` is at `mac`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Entry {
    iface: u16,
    addr: u32,
    mac: [u8; 6],
}

/// The entries a run needs, per node (indices into the node list given to [`needed`]).
pub(crate) struct Needed {
    per_node: Vec<Vec<Entry>>,
    pub total: usize,
}

/// A node's interfaces on LAN networks: (network id, interface index, first address, MAC).
fn lan_ends(n: &NodePlan, nets: &mut Vec<String>) -> Vec<(usize, u16, Ipv4Addr, [u8; 6])> {
    let mut out = Vec::new();
    for (i, iface) in n.interfaces.iter().enumerate() {
        let Attachment::Network { network, .. } = &iface.attachment else { continue };
        let Some(addr) = iface.addresses.first() else { continue };
        let id = nets.iter().position(|x| x == network).unwrap_or_else(|| {
            nets.push(network.clone());
            nets.len() - 1
        });
        out.push((id, i as u16, addr.addr(), iface.mac.0));
    }
    out
}

/// Entries needed for probing `pairs` (source node, destination node, destination address):
/// for each pair whose destination address sits on a LAN the source is attached to, the
/// source's entry for the destination and the destination's entry for the source (the reply).
pub(crate) fn needed(nodes: &[&NodePlan], pairs: impl Iterator<Item = (usize, usize, Ipv4Addr)>) -> Needed {
    let mut nets = Vec::new();
    let ends: Vec<_> = nodes.iter().map(|n| lan_ends(n, &mut nets)).collect();
    let mut per_node: Vec<Vec<Entry>> = vec![Vec::new(); nodes.len()];
    for (s, d, addr) in pairs {
        let Some(&(net, d_if, _, d_mac)) = ends[d].iter().find(|e| e.2 == addr) else { continue };
        let Some(&(_, s_if, s_addr, s_mac)) = ends[s].iter().find(|e| e.0 == net) else { continue };
        per_node[s].push(Entry { iface: s_if, addr: u32::from(addr), mac: d_mac });
        per_node[d].push(Entry { iface: d_if, addr: u32::from(s_addr), mac: s_mac });
    }
    let mut total = 0;
    for v in &mut per_node {
        v.sort_unstable();
        v.dedup();
        total += v.len();
    }
    Needed { per_node, total }
}

/// A node's added entries as (interface index, address), with its rtnetlink socket.
type Added = (String, OwnedFd, Vec<(u32, u32)>);

/// Entries this run added, to be removed again with [`Installed::remove`].
pub(crate) struct Installed {
    nodes: Vec<Added>,
    pub added: usize,
}

struct NodeSock {
    name: String,
    fd: OwnedFd,
    /// Interface index (in the node's namespace) by position in the plan's interface list.
    ifindex: Vec<u32>,
    entries: Vec<Entry>,
}

/// Install permanent entries for `needed` (when it exceeds [`DYNAMIC_BUDGET`]). `ns_of[i]` is
/// the index of node `i`'s namespace in `nst`. Returns `None` when nothing was needed.
pub(crate) fn install(
    nst: &NsThread,
    nodes: &[&NodePlan],
    ns_of: &[usize],
    needed: Needed,
) -> Result<Option<Installed>, ProbeError> {
    if needed.total <= DYNAMIC_BUDGET {
        return Ok(None);
    }
    let work: Vec<usize> = (0..nodes.len()).filter(|i| !needed.per_node[*i].is_empty()).collect();
    let ifnames: Vec<Vec<String>> =
        work.iter().map(|&i| nodes[i].interfaces.iter().map(|f| f.name.clone()).collect()).collect();
    let ns: Vec<usize> = work.iter().map(|&i| ns_of[i]).collect();
    let pos_of: std::collections::HashMap<usize, usize> =
        ns.iter().enumerate().map(|(k, n)| (*n, k)).collect();
    let opened = nst
        .run_each(ns, move |n| {
            let k = pos_of.get(&n).copied().unwrap_or_default();
            let fd = sys::netlink_route_socket()?;
            // Interfaces the plan has but the namespace lacks get index 0 (entries skipped).
            let idx = ifnames[k].iter().map(|f| sys::ifindex(f).unwrap_or(0)).collect();
            Ok((fd, idx))
        })
        .map_err(|e| ProbeError::io("neighbour setup", e))?;
    let mut per_node = needed.per_node;
    let mut socks = Vec::with_capacity(work.len());
    for (&i, r) in work.iter().zip(opened) {
        let (fd, ifindex) =
            r.map_err(|e| ProbeError::io(format!("{}: open rtnetlink socket", nodes[i].name), e))?;
        socks.push(NodeSock {
            name: nodes[i].name.clone(),
            fd,
            ifindex,
            entries: std::mem::take(&mut per_node[i]),
        });
    }
    // Parallel over nodes: each socket talks to its own namespace's table.
    let results = parallel(socks, |ns| {
        let added =
            add_missing(&ns).map_err(|e| ProbeError::io(format!("{}: add neighbour entries", ns.name), e))?;
        Ok((ns.name, ns.fd, added))
    });
    let mut nodes_out = Vec::new();
    let mut added = 0;
    let mut first_err = None;
    for r in results {
        match r {
            Ok((name, fd, a)) => {
                added += a.len();
                nodes_out.push((name, fd, a));
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    let inst = Installed { nodes: nodes_out, added };
    if let Some(e) = first_err {
        // Leave nothing behind.
        inst.remove();
        return Err(e);
    }
    tracing::debug!(added, needed = needed.total, "installed permanent neighbour entries");
    Ok(Some(inst))
}

impl Installed {
    /// Delete the entries this run added. Errors are logged: a failure here never changes a
    /// probe result, and `topo down` removes the namespaces (and tables) anyway.
    pub(crate) fn remove(self) {
        let _ = parallel(self.nodes, |(name, fd, added)| {
            if let Err(e) = delete(fd.as_fd(), &added) {
                tracing::warn!(node = %name, "removing permanent neighbour entries: {e}");
            }
            Ok::<_, ProbeError>(())
        });
    }
}

/// Run `f` over `items` on one thread per core (at most 4), results in any order.
fn parallel<I: Send, T: Send>(items: Vec<I>, f: impl Fn(I) -> T + Sync) -> Vec<T> {
    let workers = std::thread::available_parallelism().map_or(1, std::num::NonZero::get).clamp(1, 4);
    let mut parts: Vec<Vec<I>> = (0..workers).map(|_| Vec::new()).collect();
    for (k, it) in items.into_iter().enumerate() {
        parts[k % workers].push(it);
    }
    let f = &f;
    std::thread::scope(|s| {
        let hs: Vec<_> =
            parts.into_iter().map(|p| s.spawn(move || p.into_iter().map(f).collect::<Vec<T>>())).collect();
        hs.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect()
    })
}

fn header(buf: &mut Vec<u8>, len: usize, ty: u16, flags: u16, seq: u32) {
    buf.extend_from_slice(&(len as u32).to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
}

fn ndmsg(buf: &mut Vec<u8>, ifindex: u32, state: u16) {
    buf.extend_from_slice(&[libc::AF_INET as u8, 0, 0, 0]);
    buf.extend_from_slice(&(ifindex as i32).to_ne_bytes());
    buf.extend_from_slice(&state.to_ne_bytes());
    buf.extend_from_slice(&[0, 0]);
}

/// Send a batch of requests (sequence numbers `first_seq..=last_seq`, the last one asking for an
/// ack) and wait for the ack. Returns the sequence numbers that failed with an errno in
/// `collect`; any other error fails the batch.
fn transact(
    fd: std::os::fd::BorrowedFd<'_>,
    buf: &[u8],
    last_seq: u32,
    collect: &[i32],
    ignore: &[i32],
) -> io::Result<Vec<u32>> {
    sys::nl_send(fd, buf)?;
    let mut rbuf = vec![0u8; 1 << 16];
    let mut hit = Vec::new();
    let mut failed = 0;
    let mut first: Option<io::Error> = None;
    loop {
        let n = sys::nl_recv(fd, &mut rbuf)?;
        let mut off = 0;
        while off + 16 <= n {
            let len = u32::from_ne_bytes([rbuf[off], rbuf[off + 1], rbuf[off + 2], rbuf[off + 3]]) as usize;
            let ty = u16::from_ne_bytes([rbuf[off + 4], rbuf[off + 5]]);
            if len < 16 || off + len > n {
                break;
            }
            if ty == NLMSG_ERROR && len >= 36 {
                let m = &rbuf[off + 16..off + len];
                let err = -i32::from_ne_bytes([m[0], m[1], m[2], m[3]]);
                let seq = u32::from_ne_bytes([m[12], m[13], m[14], m[15]]);
                if collect.contains(&err) {
                    hit.push(seq);
                } else if err != 0 && !ignore.contains(&err) {
                    failed += 1;
                    first.get_or_insert_with(|| io::Error::from_raw_os_error(err));
                }
                if seq == last_seq {
                    return match first {
                        Some(e) => Err(io::Error::new(e.kind(), format!("{failed} entries failed: {e}"))),
                        None => Ok(hit),
                    };
                }
            }
            off += (len + 3) & !3;
        }
    }
}

/// Add the node's entries that do not exist yet (`NLM_F_EXCL`: an existing entry, permanent or
/// learned, is left as it is and not removed later). Returns what was added.
fn add_missing(ns: &NodeSock) -> io::Result<Vec<(u32, u32)>> {
    let todo: Vec<(u32, u32, [u8; 6])> = ns
        .entries
        .iter()
        .filter_map(|e| {
            let idx = *ns.ifindex.get(usize::from(e.iface))?;
            (idx != 0).then_some((idx, e.addr, e.mac))
        })
        .collect();
    let mut added = Vec::with_capacity(todo.len());
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16;
    let mut seq = 1u32;
    for chunk in todo.chunks(BATCH) {
        let base = seq + 1;
        let mut buf = Vec::with_capacity(chunk.len() * MSG_LEN);
        for (k, &(idx, addr, mac)) in chunk.iter().enumerate() {
            seq += 1;
            let ack = if k + 1 == chunk.len() { libc::NLM_F_ACK as u16 } else { 0 };
            header(&mut buf, MSG_LEN, libc::RTM_NEWNEIGH, flags | ack, seq);
            ndmsg(&mut buf, idx, NUD_PERMANENT);
            buf.extend_from_slice(&8u16.to_ne_bytes());
            buf.extend_from_slice(&NDA_DST.to_ne_bytes());
            buf.extend_from_slice(&addr.to_be_bytes());
            buf.extend_from_slice(&10u16.to_ne_bytes());
            buf.extend_from_slice(&NDA_LLADDR.to_ne_bytes());
            buf.extend_from_slice(&mac);
            buf.extend_from_slice(&[0, 0]);
        }
        match transact(ns.fd.as_fd(), &buf, seq, &[libc::EEXIST], &[]) {
            Ok(existing) => {
                let mut existed = vec![false; chunk.len()];
                for s in existing {
                    if let Some(k) = s.checked_sub(base) {
                        if let Some(e) = existed.get_mut(k as usize) {
                            *e = true;
                        }
                    }
                }
                added.extend(chunk.iter().zip(existed).filter(|(_, e)| !e).map(|(&(i, a, _), _)| (i, a)));
            }
            Err(e) => {
                // Unknown which of this batch exist now: remove what we know we added.
                let _ = delete(ns.fd.as_fd(), &added);
                return Err(e);
            }
        }
    }
    Ok(added)
}

fn delete(fd: std::os::fd::BorrowedFd<'_>, entries: &[(u32, u32)]) -> io::Result<()> {
    let mut seq = 1u32 << 30;
    for chunk in entries.chunks(BATCH) {
        let mut buf = Vec::with_capacity(chunk.len() * 36);
        for (k, &(idx, addr)) in chunk.iter().enumerate() {
            seq += 1;
            let ack = if k + 1 == chunk.len() { libc::NLM_F_ACK as u16 } else { 0 };
            header(&mut buf, 36, libc::RTM_DELNEIGH, libc::NLM_F_REQUEST as u16 | ack, seq);
            ndmsg(&mut buf, idx, 0);
            buf.extend_from_slice(&8u16.to_ne_bytes());
            buf.extend_from_slice(&NDA_DST.to_ne_bytes());
            buf.extend_from_slice(&addr.to_be_bytes());
        }
        transact(fd, &buf, seq, &[], &[libc::ENOENT])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_message_layout() {
        let mut buf = Vec::new();
        header(&mut buf, MSG_LEN, libc::RTM_NEWNEIGH, 1, 7);
        ndmsg(&mut buf, 3, NUD_PERMANENT);
        assert_eq!(buf.len(), 28);
        assert_eq!(&buf[16..20], &[2, 0, 0, 0]);
        assert_eq!(i32::from_ne_bytes([buf[20], buf[21], buf[22], buf[23]]), 3);
        assert_eq!(u16::from_ne_bytes([buf[24], buf[25]]), NUD_PERMANENT);
    }
}
