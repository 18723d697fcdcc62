//! The per-namespace nftables rules of the chaos layer, built with nftnl and sent with mnl as
//! ONE netlink batch (one transaction) per change, so a namespace never sees a half-applied
//! fault. The batch carries only the difference ([`build_fast`]: deleting costs the kernel an
//! RCU grace period, adding does not), with a full flush-and-refill ([`build_full`]) as the
//! fallback when the kernel does not hold the old rules.
//!
//! Tables (both named `topo`):
//! - `inet topo`: chain `input` (hook input, priority -10) drops packets whose source address is
//!   in the set `drop4`/`drop6` (partitions and one-way drops); chain `prerouting` (hook
//!   prerouting, priority -150) hands packets arriving on an impaired interface to an NFQUEUE
//!   (the userspace delayer) through the xt `NFQUEUE` target with bypass, via nft_compat,
//!   because this kernel lacks the native nft `queue` statement.
//! - `netdev topo`: one ingress chain per device for silent link cuts (drop everything,
//!   including ARP) and random loss (`numgen random mod 10000 < N drop`).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{CStr, CString};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
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

/// `flush set`: a DELSETELEM message that names the set but no element.
struct FlushSet<'a, K>(&'a nftnl::set::Set<'a, K>);

// SAFETY: writes one small message (header plus table and set name) into a buffer that nftnl
// sizes for the largest netlink message.
unsafe impl<K> nftnl::NlMsg for FlushSet<'_, K> {
    unsafe fn write(&self, buf: *mut std::ffi::c_void, seq: u32, _msg_type: MsgType) {
        // SAFETY: `buf` has room for a full message (NlMsg contract); the set pointer is live.
        unsafe {
            let header = sys::nftnl_nlmsg_build_hdr(
                buf.cast(),
                libc::NFT_MSG_DELSETELEM as u16,
                self.0.get_family() as u16,
                libc::NLM_F_ACK as u16,
                seq,
            );
            sys::nftnl_set_elems_nlmsg_build_payload(header, self.0.as_ptr().as_ptr());
        }
    }
}

/// The batch that removes the chaos tables entirely (at `clear`). Deleting a table costs an
/// RCU grace period in the kernel (~10 ms), so [`build_full`] and [`build_fast`] never do it.
pub fn remove_batch() -> FinalizedBatch {
    let mut batch = Batch::new();
    for fam in [ProtoFamily::Inet, ProtoFamily::NetDev] {
        let t = Table::new(TABLE, fam);
        // Adding an existing table is a no-op, so add+delete removes it whether or not it
        // existed, without failing the transaction.
        batch.add(&t, MsgType::Add);
        batch.add(&t, MsgType::Del);
    }
    batch.finalize()
}

/// The robust transaction that takes this namespace to `new` whatever its chaos tables hold.
///
/// Tables, base chains and sets are created on first use and then kept: every object is
/// "added" (a no-op when it exists), its rules and set elements are flushed, and the new ones
/// added — all in one batch, so the change is atomic, and nothing is deleted, which keeps hook
/// unregistration (and its RCU grace period) out of the fast path. Netdev chains of devices
/// that no longer need one stay, empty, with policy accept.
pub fn build_full(old: &NsRules, new: &NsRules) -> io::Result<FinalizedBatch> {
    let mut batch = Batch::new();
    let inet = Table::new(TABLE, ProtoFamily::Inet);
    let netdev = Table::new(TABLE, ProtoFamily::NetDev);

    let v4: Vec<Ipv4Addr> = new
        .drop_from
        .iter()
        .filter_map(|a| match a {
            IpAddr::V4(a) => Some(*a),
            IpAddr::V6(_) => None,
        })
        .collect();
    let v6: Vec<Ipv6Addr> = new
        .drop_from
        .iter()
        .filter_map(|a| match a {
            IpAddr::V6(a) => Some(*a),
            IpAddr::V4(_) => None,
        })
        .collect();

    let inet_used = [old, new].iter().any(|r| !r.drop_from.is_empty() || !r.queues.is_empty());
    if inet_used {
        batch.add(&inet, MsgType::Add);
        let mut input = Chain::new(c"input", &inet);
        input.set_hook(Hook::In, -10);
        input.set_policy(Policy::Accept);
        batch.add(&input, MsgType::Add);
        let mut pre = Chain::new(c"prerouting", &inet);
        pre.set_hook(Hook::PreRouting, -150);
        pre.set_policy(Policy::Accept);
        batch.add(&pre, MsgType::Add);
        let mut set4 = nftnl::set::Set::<Ipv4Addr>::new_named(c"drop4", 1, &inet, ProtoFamily::Inet);
        let mut set6 = nftnl::set::Set::<Ipv6Addr>::new_named(c"drop6", 2, &inet, ProtoFamily::Inet);
        batch.add(&set4, MsgType::Add);
        batch.add(&set6, MsgType::Add);
        // Flush: rules of both chains (a rule message without handle) and both sets.
        batch.add(&Rule::new(&input), MsgType::Del);
        batch.add(&Rule::new(&pre), MsgType::Del);
        batch.add(&FlushSet(&set4), MsgType::Del);
        batch.add(&FlushSet(&set6), MsgType::Del);
        for a in &v4 {
            set4.add(a);
        }
        for a in &v6 {
            set6.add(a);
        }
        batch.add_iter(set4.elems_iter(), MsgType::Add);
        batch.add_iter(set6.elems_iter(), MsgType::Add);
        if !v4.is_empty() {
            let mut r = Rule::new(&input);
            r.add_expr(&nft_expr!(meta nfproto));
            r.add_expr(&nft_expr!(cmp == libc::NFPROTO_IPV4 as u8));
            r.add_expr(&nft_expr!(payload ipv4 saddr));
            r.add_expr(&nft_expr!(lookup & set4));
            r.add_expr(&nft_expr!(counter));
            r.add_expr(&nft_expr!(verdict drop));
            batch.add(&r, MsgType::Add);
        }
        if !v6.is_empty() {
            let mut r = Rule::new(&input);
            r.add_expr(&nft_expr!(meta nfproto));
            r.add_expr(&nft_expr!(cmp == libc::NFPROTO_IPV6 as u8));
            r.add_expr(&nft_expr!(payload ipv6 saddr));
            r.add_expr(&nft_expr!(lookup & set6));
            r.add_expr(&nft_expr!(counter));
            r.add_expr(&nft_expr!(verdict drop));
            batch.add(&r, MsgType::Add);
        }
        for (dev, q) in &new.queues {
            let mut r = Rule::new(&pre);
            r.add_expr(&nft_expr!(meta iifname));
            r.add_expr(&nft_expr!(cmp == nftnl::expr::InterfaceName::Exact(cstring(dev)?)));
            r.add_expr(&nfqueue_target(*q));
            batch.add(&r, MsgType::Add);
        }
    }

    let devs: BTreeSet<&String> = old.ingress.keys().chain(new.ingress.keys()).collect();
    if !devs.is_empty() {
        batch.add(&netdev, MsgType::Add);
        for dev in devs {
            let cname = cstring(&format!("in-{dev}"))?;
            let mut chain = Chain::new(&cname, &netdev);
            // nftnl's Hook has no netdev variants; NF_NETDEV_INGRESS is 0, the same number as
            // NF_INET_PRE_ROUTING.
            chain.set_hook(Hook::PreRouting, -500);
            chain.set_device(cstring(dev)?);
            chain.set_policy(Policy::Accept);
            batch.add(&chain, MsgType::Add);
            batch.add(&Rule::new(&chain), MsgType::Del);
            let Some(rule) = new.ingress.get(dev) else { continue };
            let mut r = Rule::new(&chain);
            match rule {
                DevRule::Cut => {}
                DevRule::Loss { per_10000 } => {
                    for e in numgen_lt(10_000, *per_10000) {
                        r.add_expr(&e);
                    }
                }
            }
            r.add_expr(&nft_expr!(counter));
            r.add_expr(&nft_expr!(verdict drop));
            batch.add(&r, MsgType::Add);
        }
    }
    Ok(batch.finalize())
}

fn addrs4(r: &NsRules) -> BTreeSet<Ipv4Addr> {
    r.drop_from
        .iter()
        .filter_map(|a| match a {
            IpAddr::V4(a) => Some(*a),
            IpAddr::V6(_) => None,
        })
        .collect()
}

fn addrs6(r: &NsRules) -> BTreeSet<Ipv6Addr> {
    r.drop_from
        .iter()
        .filter_map(|a| match a {
            IpAddr::V6(a) => Some(*a),
            IpAddr::V4(_) => None,
        })
        .collect()
}

fn drop_rule<'a>(
    chain: &'a Chain<'a>,
    v6: bool,
    set4: &nftnl::set::Set<'_, Ipv4Addr>,
    set6: &nftnl::set::Set<'_, Ipv6Addr>,
) -> Rule<'a> {
    let mut r = Rule::new(chain);
    r.add_expr(&nft_expr!(meta nfproto));
    if v6 {
        r.add_expr(&nft_expr!(cmp == libc::NFPROTO_IPV6 as u8));
        r.add_expr(&nft_expr!(payload ipv6 saddr));
        r.add_expr(&nft_expr!(lookup set6));
    } else {
        r.add_expr(&nft_expr!(cmp == libc::NFPROTO_IPV4 as u8));
        r.add_expr(&nft_expr!(payload ipv4 saddr));
        r.add_expr(&nft_expr!(lookup set4));
    }
    r.add_expr(&nft_expr!(counter));
    r.add_expr(&nft_expr!(verdict drop));
    r
}

/// Does this namespace have the chaos `inet` table? (A GETTABLE dump, run inside it.)
pub fn inet_table_exists() -> io::Result<bool> {
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
    let mut found = false;
    sock.dump(&mut m, |_, payload| {
        if payload.len() >= 4 && payload[0] == libc::NFPROTO_INET as u8 {
            for (ty, v) in crate::nl::attrs(&payload[4..]) {
                if ty == NFTA_TABLE_NAME && v.strip_suffix(&[0]).unwrap_or(v) == TABLE.to_bytes() {
                    found = true;
                }
            }
        }
    })?;
    Ok(found)
}

/// The fast transaction: only the difference between `old` and `new`, assuming the kernel
/// holds exactly `old` (`table_exists` tells whether the chaos `inet` table is there at all).
/// Adding set elements and rules is cheap; deleting them costs the kernel an RCU grace period
/// per transaction, so only what changed is deleted. Fails (and [`apply`] falls back to
/// [`build_full`]) when the kernel does not hold `old`, e.g. after a crash.
pub fn build_fast(old: &NsRules, new: &NsRules, table_exists: bool) -> io::Result<FinalizedBatch> {
    let mut batch = Batch::new();
    let inet = Table::new(TABLE, ProtoFamily::Inet);
    let netdev = Table::new(TABLE, ProtoFamily::NetDev);
    let inet_used = [old, new].iter().any(|r| !r.drop_from.is_empty() || !r.queues.is_empty());
    if inet_used || table_exists {
        let mut input = Chain::new(c"input", &inet);
        input.set_hook(Hook::In, -10);
        input.set_policy(Policy::Accept);
        let mut pre = Chain::new(c"prerouting", &inet);
        pre.set_hook(Hook::PreRouting, -150);
        pre.set_policy(Policy::Accept);
        let mut set4 = nftnl::set::Set::<Ipv4Addr>::new_named(c"drop4", 1, &inet, ProtoFamily::Inet);
        let mut set6 = nftnl::set::Set::<Ipv6Addr>::new_named(c"drop6", 2, &inet, ProtoFamily::Inet);
        let (o4, n4, o6, n6) = (addrs4(old), addrs4(new), addrs6(old), addrs6(new));
        let mut gone4 = nftnl::set::Set::<Ipv4Addr>::new_named(c"drop4", 1, &inet, ProtoFamily::Inet);
        let mut gone6 = nftnl::set::Set::<Ipv6Addr>::new_named(c"drop6", 2, &inet, ProtoFamily::Inet);
        if table_exists {
            for a in o4.difference(&n4) {
                gone4.add(a);
            }
            for a in o6.difference(&n6) {
                gone6.add(a);
            }
            for a in n4.difference(&o4) {
                set4.add(a);
            }
            for a in n6.difference(&o6) {
                set6.add(a);
            }
        } else {
            for a in &n4 {
                set4.add(a);
            }
            for a in &n6 {
                set6.add(a);
            }
        }
        if !table_exists {
            // Create everything once: the drop rules stay for good (an empty set matches nothing).
            batch.add(&inet, MsgType::Add);
            batch.add(&input, MsgType::Add);
            batch.add(&pre, MsgType::Add);
            batch.add(&set4, MsgType::Add);
            batch.add(&set6, MsgType::Add);
            batch.add(&drop_rule(&input, false, &set4, &set6), MsgType::Add);
            batch.add(&drop_rule(&input, true, &set4, &set6), MsgType::Add);
        }
        batch.add_iter(gone4.elems_iter(), MsgType::Del);
        batch.add_iter(gone6.elems_iter(), MsgType::Del);
        batch.add_iter(set4.elems_iter(), MsgType::Add);
        batch.add_iter(set6.elems_iter(), MsgType::Add);
        if old.queues != new.queues || !table_exists {
            if table_exists {
                batch.add(&Rule::new(&pre), MsgType::Del);
            }
            for (dev, q) in &new.queues {
                let mut r = Rule::new(&pre);
                r.add_expr(&nft_expr!(meta iifname));
                r.add_expr(&nft_expr!(cmp == nftnl::expr::InterfaceName::Exact(cstring(dev)?)));
                r.add_expr(&nfqueue_target(*q));
                batch.add(&r, MsgType::Add);
            }
        }
    }
    let devs: BTreeSet<&String> = old
        .ingress
        .keys()
        .chain(new.ingress.keys())
        .filter(|d| old.ingress.get(*d) != new.ingress.get(*d))
        .collect();
    if !devs.is_empty() {
        batch.add(&netdev, MsgType::Add);
        for dev in devs {
            let cname = cstring(&format!("in-{dev}"))?;
            let mut chain = Chain::new(&cname, &netdev);
            chain.set_hook(Hook::PreRouting, -500);
            chain.set_device(cstring(dev)?);
            chain.set_policy(Policy::Accept);
            batch.add(&chain, MsgType::Add);
            if old.ingress.contains_key(dev) {
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
    }
    Ok(batch.finalize())
}

/// Send a finalized batch over a netfilter netlink socket opened in the calling thread's
/// namespace and check every acknowledgement.
pub fn send(batch: &FinalizedBatch) -> io::Result<()> {
    let socket = mnl::Socket::new(mnl::Bus::Netfilter)?;
    let portid = socket.portid();
    socket.send_all(batch)?;
    let mut buffer = vec![0; nftnl::nft_nlmsg_maxsize() as usize];
    let mut expected = batch.sequence_numbers();
    let mut first_err: Option<io::Error> = None;
    while !expected.is_empty() {
        for message in socket.recv(&mut buffer[..])? {
            let message = message?;
            let Some(seq) = expected.next() else { break };
            if let Err(e) = mnl::cb_run(message, seq, portid) {
                // The kernel aborts the whole transaction on the first error; keep reading acks
                // only to report the first one.
                first_err.get_or_insert(e);
            }
        }
        if first_err.is_some() {
            break;
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Take this namespace's chaos rules from `old` to `new` (run inside the namespace): the fast
/// difference transaction, or, if the kernel did not hold `old`, the full one.
pub fn apply(old: &NsRules, new: &NsRules) -> io::Result<()> {
    let exists = inet_table_exists()?;
    match send(&build_fast(old, new, exists)?) {
        Ok(()) => Ok(()),
        Err(e) => {
            tracing::debug!(error = %e, "incremental nftables update failed, rebuilding the chaos tables");
            send(&build_full(old, new)?)
        }
    }
}

/// Remove the chaos tables from this namespace (run inside the namespace).
pub fn remove() -> io::Result<()> {
    send(&remove_batch())
}
