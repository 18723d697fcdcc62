//! The per-namespace nftables rules of the chaos layer, built with nftnl and sent as ONE
//! netlink batch (one transaction) per namespace and change, so a namespace never sees a
//! half-applied fault.
//!
//! Tables:
//! - `inet topo-p<N>`: partition drops, one table per generation (see [`crate::gens`]).
//! - `inet topo`: chain `prerouting` (hook prerouting, priority -150) hands packets arriving on
//!   an impaired interface to an NFQUEUE (the userspace delayer) through the xt `NFQUEUE` target
//!   with bypass, via nft_compat, because this kernel lacks the native nft `queue` statement.
//! - `netdev topo`: one ingress chain per device for silent link cuts (drop everything,
//!   including ARP) and random loss (`numgen random mod 10000 < N drop`).
//!
//! Impairment changes carry only the difference ([`add_impair_fast`]), with a flush-and-refill
//! ([`add_impair_full`]) as the fallback when the kernel does not hold the old rules.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{CStr, CString};
use std::io;
use std::net::IpAddr;
use std::ptr;

use nftnl::expr::Expression;
use nftnl::nftnl_sys as sys;
use nftnl::{nft_expr, Batch, Chain, FinalizedBatch, Hook, MsgType, Policy, ProtoFamily, Rule, Table};

/// Everything the chaos layer wants in one namespace's nftables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NsRules {
    /// Source addresses dropped on local delivery (input hook).
    pub drop_from: BTreeSet<IpAddr>,
    /// Per-device ingress rule.
    pub ingress: BTreeMap<String, DevRule>,
    /// Per-device NFQUEUE number for the delayer.
    pub queues: BTreeMap<String, u16>,
}

impl NsRules {
    pub fn is_empty(&self) -> bool {
        self.drop_from.is_empty() && self.ingress.is_empty() && self.queues.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DevRule {
    /// Drop every frame arriving on the device (carrier stays up).
    Cut,
    /// Drop a random share of arriving frames, in units of 1/10000.
    Loss { per_10000: u32 },
}

pub const TABLE: &CStr = c"topo";

/// An expression nftnl has no wrapper for, built through libnftnl directly.
struct RawExpr {
    name: &'static CStr,
    u32s: Vec<(u32, u32)>,
    data: Vec<(u32, Vec<u8>)>,
    /// Data attributes libnftnl takes ownership of (it frees them): passed as malloc'd copies.
    owned: Vec<(u32, Vec<u8>)>,
    strs: Vec<(u32, CString)>,
}

impl RawExpr {
    fn new(name: &'static CStr) -> RawExpr {
        RawExpr { name, u32s: Vec::new(), data: Vec::new(), owned: Vec::new(), strs: Vec::new() }
    }
}

impl Expression for RawExpr {
    fn to_expr(&self, _rule: &Rule) -> ptr::NonNull<sys::nftnl_expr> {
        // SAFETY: nftnl_expr_alloc returns a fresh expression or NULL (checked). Every setter gets
        // pointers to buffers that outlive the call; libnftnl copies u32/str/cmp data, and takes
        // ownership of the malloc'd buffers passed for `owned` attributes (target info).
        unsafe {
            let e = sys::nftnl_expr_alloc(self.name.as_ptr());
            let Some(e) = ptr::NonNull::new(e) else {
                // Out of memory inside libnftnl; nftnl's own wrappers abort the same way.
                std::process::abort();
            };
            for (k, v) in &self.u32s {
                sys::nftnl_expr_set_u32(e.as_ptr(), *k as u16, *v);
            }
            for (k, v) in &self.strs {
                sys::nftnl_expr_set_str(e.as_ptr(), *k as u16, v.as_ptr());
            }
            for (k, v) in &self.data {
                sys::nftnl_expr_set(e.as_ptr(), *k as u16, v.as_ptr().cast(), v.len() as u32);
            }
            for (k, v) in &self.owned {
                let p = libc::malloc(v.len().max(1));
                if p.is_null() {
                    std::process::abort();
                }
                ptr::copy_nonoverlapping(v.as_ptr(), p.cast::<u8>(), v.len());
                sys::nftnl_expr_set(e.as_ptr(), *k as u16, p, v.len() as u32);
            }
            e
        }
    }
}

const REG1: u32 = libc::NFT_REG_1 as u32;

/// `numgen random mod m` into reg 1, converted to network byte order so `cmp lt` (a memcmp in
/// the kernel) compares numbers.
fn numgen_lt(modulus: u32, below: u32) -> [RawExpr; 3] {
    let mut ng = RawExpr::new(c"numgen");
    ng.u32s = vec![
        (sys::NFTNL_EXPR_NG_DREG, REG1),
        (sys::NFTNL_EXPR_NG_MODULUS, modulus),
        (sys::NFTNL_EXPR_NG_TYPE, libc::NFT_NG_RANDOM as u32),
        (sys::NFTNL_EXPR_NG_OFFSET, 0),
    ];
    let mut bo = RawExpr::new(c"byteorder");
    bo.u32s = vec![
        (sys::NFTNL_EXPR_BYTEORDER_SREG, REG1),
        (sys::NFTNL_EXPR_BYTEORDER_DREG, REG1),
        (sys::NFTNL_EXPR_BYTEORDER_OP, libc::NFT_BYTEORDER_HTON as u32),
        (sys::NFTNL_EXPR_BYTEORDER_LEN, 4),
        (sys::NFTNL_EXPR_BYTEORDER_SIZE, 4),
    ];
    let mut cmp = RawExpr::new(c"cmp");
    cmp.u32s = vec![(sys::NFTNL_EXPR_CMP_SREG, REG1), (sys::NFTNL_EXPR_CMP_OP, libc::NFT_CMP_LT as u32)];
    cmp.data = vec![(sys::NFTNL_EXPR_CMP_DATA, below.to_be_bytes().to_vec())];
    [ng, bo, cmp]
}

/// The xt `NFQUEUE` target, revision 3 (`--queue-num N --queue-bypass`), through nft_compat.
fn nfqueue_target(queue: u16) -> RawExpr {
    // struct xt_NFQ_info_v3 { __u16 queuenum; __u16 queues_total; __u16 flags; }
    const NFQ_FLAG_BYPASS: u16 = 0x01;
    let mut info = Vec::with_capacity(6);
    info.extend_from_slice(&queue.to_ne_bytes());
    info.extend_from_slice(&1u16.to_ne_bytes());
    info.extend_from_slice(&NFQ_FLAG_BYPASS.to_ne_bytes());
    let mut t = RawExpr::new(c"target");
    t.strs = vec![(sys::NFTNL_EXPR_TG_NAME, c"NFQUEUE".to_owned())];
    t.u32s = vec![(sys::NFTNL_EXPR_TG_REV, 3)];
    t.owned = vec![(sys::NFTNL_EXPR_TG_INFO, info)];
    t
}

fn cstring(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("NUL in name {s:?}")))
}

/// Add the robust impairment changes to `batch`: whatever the chaos tables hold, they end up
/// matching `new` (queue rules in `inet topo`, per-device ingress chains in `netdev topo`).
///
/// Tables and base chains are created on first use and then kept: every object is "added" (a
/// no-op when it exists), its rules flushed and the new ones added, all in the caller's one
/// transaction. Netdev chains of devices that no longer need one stay, empty, with policy
/// accept. Used when the kernel does not hold what the old state says.
pub fn add_impair_full(batch: &mut Batch, old: &NsRules, new: &NsRules) -> io::Result<()> {
    let inet = Table::new(TABLE, ProtoFamily::Inet);
    let netdev = Table::new(TABLE, ProtoFamily::NetDev);
    if [old, new].iter().any(|r| !r.queues.is_empty()) {
        batch.add(&inet, MsgType::Add);
        let pre = prerouting(&inet);
        batch.add(&pre, MsgType::Add);
        batch.add(&Rule::new(&pre), MsgType::Del);
        add_queue_rules(batch, &pre, new)?;
    }
    let devs: BTreeSet<&String> = old.ingress.keys().chain(new.ingress.keys()).collect();
    add_ingress(batch, &netdev, devs, old, new, true)
}

fn prerouting(inet: &Table) -> Chain<'_> {
    let mut pre = Chain::new(c"prerouting", inet);
    pre.set_hook(Hook::PreRouting, -150);
    pre.set_policy(Policy::Accept);
    pre
}

fn add_queue_rules(batch: &mut Batch, pre: &Chain<'_>, new: &NsRules) -> io::Result<()> {
    for (dev, q) in &new.queues {
        let mut r = Rule::new(pre);
        r.add_expr(&nft_expr!(meta iifname));
        r.add_expr(&nft_expr!(cmp == nftnl::expr::InterfaceName::Exact(cstring(dev)?)));
        r.add_expr(&nfqueue_target(*q));
        batch.add(&r, MsgType::Add);
    }
    Ok(())
}

/// One ingress chain per device of `devs`: (re)declared, flushed when `flush` or when it held a
/// rule, and given `new`'s rule.
fn add_ingress(
    batch: &mut Batch,
    netdev: &Table,
    devs: BTreeSet<&String>,
    old: &NsRules,
    new: &NsRules,
    flush: bool,
) -> io::Result<()> {
    if devs.is_empty() {
        return Ok(());
    }
    batch.add(netdev, MsgType::Add);
    for dev in devs {
        let cname = cstring(&format!("in-{dev}"))?;
        let mut chain = Chain::new(&cname, netdev);
        // nftnl's Hook has no netdev variants; NF_NETDEV_INGRESS is 0, the same number as
        // NF_INET_PRE_ROUTING.
        chain.set_hook(Hook::PreRouting, -500);
        chain.set_device(cstring(dev)?);
        chain.set_policy(Policy::Accept);
        batch.add(&chain, MsgType::Add);
        if flush || old.ingress.contains_key(dev) {
            batch.add(&Rule::new(&chain), MsgType::Del);
        }
        let Some(rule) = new.ingress.get(dev) else { continue };
        let mut r = Rule::new(&chain);
        if let DevRule::Loss { per_10000 } = rule {
            for e in numgen_lt(10_000, *per_10000) {
                r.add_expr(&e);
            }
        }
        r.add_expr(&nft_expr!(counter));
        r.add_expr(&nft_expr!(verdict drop));
        batch.add(&r, MsgType::Add);
    }
    Ok(())
}

/// The names of the `inet` tables in the calling thread's namespace (a GETTABLE dump).
pub fn inet_tables() -> io::Result<Vec<String>> {
    const NFNL_SUBSYS_NFTABLES: u16 = 10;
    const NFT_MSG_GETTABLE: u16 = 1;
    const NFTA_TABLE_NAME: u16 = 1;
    let mut sock = crate::nl::Socket::open(libc::NETLINK_NETFILTER)?;
    let hdr = [libc::NFPROTO_INET as u8, 0, 0, 0];
    let mut m = crate::nl::Msg::new(
        (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETTABLE,
        crate::nl::NLM_F_REQUEST | crate::nl::NLM_F_DUMP,
        &hdr,
    );
    let mut names = Vec::new();
    sock.dump(&mut m, |_, payload| {
        if payload.len() >= 4 && payload[0] == libc::NFPROTO_INET as u8 {
            for (ty, v) in crate::nl::attrs(&payload[4..]) {
                if ty == NFTA_TABLE_NAME {
                    names.push(String::from_utf8_lossy(v.strip_suffix(&[0]).unwrap_or(v)).into_owned());
                }
            }
        }
    })?;
    Ok(names)
}

/// Does this namespace have the chaos `inet topo` table? (A GETTABLE dump, run inside it.)
pub fn inet_table_exists() -> io::Result<bool> {
    let want = TABLE.to_string_lossy();
    Ok(inet_tables()?.iter().any(|n| *n == want))
}

/// Add the impairment difference between `old` and `new` to `batch`, assuming the kernel holds
/// exactly `old` (`table_exists`: whether the `inet topo` table is there at all; only looked at
/// when the queue rules change). Only changed devices are touched; queue rules are rewritten
/// when they change. Fails at commit (and the caller falls back to [`add_impair_full`]) when
/// the kernel does not hold `old`.
pub fn add_impair_fast(
    batch: &mut Batch,
    old: &NsRules,
    new: &NsRules,
    table_exists: bool,
) -> io::Result<()> {
    let inet = Table::new(TABLE, ProtoFamily::Inet);
    let netdev = Table::new(TABLE, ProtoFamily::NetDev);
    if old.queues != new.queues {
        let pre = prerouting(&inet);
        if table_exists {
            batch.add(&Rule::new(&pre), MsgType::Del);
        } else {
            batch.add(&inet, MsgType::Add);
            batch.add(&pre, MsgType::Add);
        }
        add_queue_rules(batch, &pre, new)?;
    }
    let devs: BTreeSet<&String> = old
        .ingress
        .keys()
        .chain(new.ingress.keys())
        .filter(|d| old.ingress.get(*d) != new.ingress.get(*d))
        .collect();
    add_ingress(batch, &netdev, devs, old, new, false)
}

/// A new batch with small pages: nftnl's default (128 KiB plus 68 KiB of overrun) is a fresh
/// mmap per batch; [`send_keep`] sends all pages as one message anyway.
pub fn batch() -> Batch {
    Batch::with_page_size(16 << 10)
}

/// Send a finalized batch over a netfilter netlink socket opened in the calling thread's
/// namespace, check every acknowledgement, and close the socket.
pub fn send(batch: &FinalizedBatch) -> io::Result<()> {
    send_keep(batch).map(drop)
}

/// [`send`], returning the still open socket. Closing a netfilter socket waits for the
/// namespace's pending nftables destruction work (an RCU grace period after any transaction
/// that deleted something), so callers that delete in many namespaces close all sockets at the
/// end, letting those waits overlap.
pub fn send_keep(batch: &FinalizedBatch) -> io::Result<crate::nl::Socket> {
    let sock = crate::nl::Socket::open(libc::NETLINK_NETFILTER)?;
    let mut data = Vec::new();
    for page in batch {
        data.extend_from_slice(page);
    }
    sock.send(&data)?;
    // The kernel runs the whole transaction, commit included, inside sendmsg: every answer is
    // queued by now. Read them all; the batch's last message (its end) is acknowledged only
    // when the transaction committed.
    let last = batch.sequence_numbers().end.wrapping_sub(1);
    thread_local! {
        // Reused: zeroing a fresh 64 KiB buffer per namespace is measurable at this scale.
        static BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; 1 << 16]);
    }
    let mut committed = false;
    let mut first_err = None;
    let mut block = false;
    BUF.with_borrow_mut(|buf| -> io::Result<()> {
        while !committed && first_err.is_none() {
            let n = if block {
                sock.recv(buf)?
            } else if let Some(n) = sock.recv_nowait(buf)? {
                n
            } else {
                // Not expected (see above); fall back to waiting.
                block = true;
                continue;
            };
            for m in crate::nl::messages(&buf[..n]) {
                if m.ty != crate::nl::NLMSG_ERROR {
                    continue;
                }
                match crate::nl::ack_result(m.payload) {
                    Ok(()) => committed |= m.seq == last,
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                }
            }
        }
        Ok(())
    })?;
    if let Some(e) = first_err {
        return Err(e);
    }
    Ok(sock)
}

/// Remove the chaos tables from this namespace (run inside the namespace): `inet topo`,
/// `netdev topo` and every partition generation. Returns the open socket (see [`send_keep`]).
pub fn remove() -> io::Result<crate::nl::Socket> {
    let mut batch = batch();
    for fam in [ProtoFamily::Inet, ProtoFamily::NetDev] {
        let t = Table::new(TABLE, fam);
        // Adding an existing table is a no-op, so add+delete removes it whether or not it
        // existed, without failing the transaction.
        batch.add(&t, MsgType::Add);
        batch.add(&t, MsgType::Del);
    }
    for g in crate::gens::list()? {
        crate::gens::add_delete(&mut batch, g);
    }
    send_keep(&batch.finalize())
}
