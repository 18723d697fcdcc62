//! Partition drops as *generations* of nftables tables, so that applying, replacing and healing
//! a partition only ever ADDS to nftables.
//!
//! Why: on this kernel an nftables transaction itself takes microseconds, but once a transaction
//! has deleted or updated anything (an element, a rule, a chain's policy, a table), the objects
//! are freed by a per-namespace work item after an RCU grace period, and closing ANY netfilter
//! netlink socket in that namespace waits for that work (`nft_rcv_nl_event` flushes it):
//! ~8–16 ms per change. Adding tables, chains, sets, rules and elements, and flipping a table to
//! dormant, queue nothing (measured by `examples/nftcost.rs`).
//!
//! So each partition state of a namespace is its own table `inet topo-p<N>`: a base chain
//! `input` (hook input, priority -10) whose first rule accepts when the set `off` holds
//! `0.0.0.0`, then `ip saddr @d4 drop` / `ip6 saddr @d6 drop`. Replacing or healing a partition
//! adds the element to the old generation's `off` set (atomic with the creation of the new
//! generation, in the same transaction) and marks the old table dormant (its hook goes away).
//! Stale generations are deleted by name once a namespace holds more than [`KEEP_STALE`] of them,
//! in a second pass after every namespace's change is in force, or when the lab goes down.
//!
//! Which generation is current in which namespace is recorded in `<state>/chaos/partition.json`,
//! written before the transactions (write-ahead). When the kernel disagrees with it (a crash,
//! a lost file), the transaction fails as a whole (tables are created with NLM_F_EXCL, the
//! `off` element with NLM_F_EXCL) and [`recover`] rebuilds the namespace's generations from a
//! dump.

use std::collections::BTreeMap;
use std::ffi::{CStr, CString};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use nftnl::expr::{Immediate, Register};
use nftnl::nftnl_sys as sys;
use nftnl::{nft_expr, Batch, Chain, Hook, MsgType, Policy, ProtoFamily, Rule, Table};
use serde::{Deserialize, Serialize};

/// Table name prefix of partition generations (`inet topo-p<N>`).
pub const PREFIX: &str = "topo-p";
/// Stale generations a namespace may keep before they are deleted (each deletion round costs
/// one RCU grace period, ~8–16 ms, so it is amortised over this many changes).
pub const KEEP_STALE: usize = 8;
/// ... and the source addresses they may hold in all (kernel memory: ~60 bytes each; a
/// partition of a 500-node lab in two halves puts 250 in each namespace's generation).
pub const KEEP_STALE_SOURCES: usize = 1024;

/// The generation bookkeeping of a lab.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gens {
    /// Next generation number (numbers are unique per lab, never reused).
    pub next: u64,
    /// Per namespace.
    pub ns: BTreeMap<String, NsGens>,
}

/// The generation tables of one namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NsGens {
    /// The generation in force (its drops apply), if any.
    pub active: Option<u64>,
    /// How many source addresses it drops.
    #[serde(default)]
    pub active_sources: usize,
    /// Generations switched off, awaiting deletion.
    pub stale: Vec<u64>,
    /// How many source addresses they hold in all.
    #[serde(default)]
    pub stale_sources: usize,
}

fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("chaos").join("partition.json")
}

impl Gens {
    /// The recorded bookkeeping; `None` when there is none or it cannot be read.
    pub fn load(state_dir: &Path) -> Option<Gens> {
        let text = std::fs::read(path(state_dir)).ok()?;
        match serde_json::from_slice(&text) {
            Ok(g) => Some(g),
            Err(e) => {
                tracing::warn!(error = %e, "unreadable partition generation record; rebuilding from the kernel");
                None
            }
        }
    }

    /// Record the bookkeeping (write to a temporary file, then rename).
    pub fn save(&self, state_dir: &Path) -> io::Result<()> {
        let p = path(state_dir);
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = p.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(self).map_err(io::Error::other)?)?;
        std::fs::rename(&tmp, &p)
    }

    /// Plan the change of one namespace whose drop set becomes `drops`: a new generation when
    /// there are drops, the current one switched off, and the stale ones to delete when there
    /// are more than [`KEEP_STALE`]. Updates the bookkeeping as if the step succeeded.
    pub fn plan(&mut self, ns: &str, drops: &std::collections::BTreeSet<IpAddr>) -> Step {
        let entry = self.ns.entry(ns.to_owned()).or_default();
        let create = (!drops.is_empty()).then(|| {
            let g = self.next;
            self.next += 1;
            g
        });
        let retire = entry.active.take();
        if retire.is_some() {
            entry.stale.extend(retire);
            entry.stale_sources += entry.active_sources;
        }
        entry.active = create;
        entry.active_sources = if create.is_some() { drops.len() } else { 0 };
        let gc = if entry.stale.len() > KEEP_STALE || entry.stale_sources > KEEP_STALE_SOURCES {
            entry.stale_sources = 0;
            std::mem::take(&mut entry.stale)
        } else {
            Vec::new()
        };
        let (v4, v6) = split(drops);
        Step { create, retire, gc, v4, v6, rebuild: false }
    }
}

/// What one namespace's transaction does to its generations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Step {
    /// Create this generation with the drop sets below.
    pub create: Option<u64>,
    /// Switch this generation off (and make its table dormant).
    pub retire: Option<u64>,
    /// Delete these stale generations, after every namespace's change is in force.
    pub gc: Vec<u64>,
    pub v4: Vec<Ipv4Addr>,
    pub v6: Vec<Ipv6Addr>,
    /// The record cannot be trusted: rebuild from a dump ([`recover`]) instead.
    pub rebuild: bool,
}

pub fn split(drops: &std::collections::BTreeSet<IpAddr>) -> (Vec<Ipv4Addr>, Vec<Ipv6Addr>) {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for a in drops {
        match a {
            IpAddr::V4(a) => v4.push(*a),
            IpAddr::V6(a) => v6.push(*a),
        }
    }
    (v4, v6)
}

pub fn table_name(g: u64) -> CString {
    // A formatted number never contains NUL.
    CString::new(format!("{PREFIX}{g}")).unwrap_or_default()
}

/// The generation number of a table name, if it is one of ours.
pub fn parse_name(name: &str) -> Option<u64> {
    name.strip_prefix(PREFIX)?.parse().ok()
}

/// NEWTABLE with explicit netlink flags and table flags (nftnl's `Table` sets neither).
struct TableMsg<'a> {
    name: &'a CStr,
    table_flags: u32,
    nl_flags: u16,
}

// SAFETY: writes one small message (header, name, flags) into a buffer that nftnl sizes for the
// largest netlink message; the temporary nftnl table is freed before returning.
unsafe impl nftnl::NlMsg for TableMsg<'_> {
    unsafe fn write(&self, buf: *mut std::ffi::c_void, seq: u32, _msg_type: MsgType) {
        // SAFETY: `buf` has room for a full message (NlMsg contract); `t` is checked for NULL,
        // used only here and freed; libnftnl copies the name.
        unsafe {
            let t = sys::nftnl_table_alloc();
            if t.is_null() {
                std::process::abort();
            }
            sys::nftnl_table_set_str(t, sys::NFTNL_TABLE_NAME as u16, self.name.as_ptr());
            sys::nftnl_table_set_u32(t, sys::NFTNL_TABLE_FLAGS as u16, self.table_flags);
            let h = sys::nftnl_nlmsg_build_hdr(
                buf.cast(),
                libc::NFT_MSG_NEWTABLE as u16,
                libc::NFPROTO_INET as u16,
                self.nl_flags,
                seq,
            );
            sys::nftnl_table_nlmsg_build_payload(h, t);
            sys::nftnl_table_free(t);
        }
    }
}

/// `enum nft_table_flags` (linux/netfilter/nf_tables.h).
const NFT_TABLE_F_DORMANT: u32 = 0x1;

/// Declare a set's final size, so the kernel picks its fixed-size hash backend instead of a
/// resizable one (a generation's drop set never changes after creation).
fn sized<K>(set: &nftnl::set::Set<'_, K>, n: usize) {
    // SAFETY: `set` owns a live nftnl_set; setting a u32 attribute copies the value.
    unsafe {
        sys::nftnl_set_set_u32(set.as_ptr().as_ptr(), sys::NFTNL_SET_DESC_SIZE as u16, n as u32);
    }
}

const OFF_KEY: Ipv4Addr = Ipv4Addr::UNSPECIFIED;

/// Create generation `g` dropping `v4`/`v6` sources on input. Fails the whole transaction if a
/// table of that name exists (NLM_F_EXCL).
pub fn add_create(batch: &mut Batch, g: u64, v4: &[Ipv4Addr], v6: &[Ipv6Addr]) {
    let name = table_name(g);
    let table = Table::new(&name, ProtoFamily::Inet);
    batch.add(
        &TableMsg {
            name: &name,
            table_flags: 0,
            nl_flags: (libc::NLM_F_ACK | libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16,
        },
        MsgType::Add,
    );
    let mut input = Chain::new(c"input", &table);
    input.set_hook(Hook::In, -10);
    input.set_policy(Policy::Accept);
    batch.add(&input, MsgType::Add);
    let off = nftnl::set::Set::<Ipv4Addr>::new_named(c"off", 1, &table, ProtoFamily::Inet);
    sized(&off, 1);
    batch.add(&off, MsgType::Add);
    // Rule 1: switched off -> accept (this chain only; later hooks and tables still run).
    let mut r = Rule::new(&input);
    r.add_expr(&Immediate::new(OFF_KEY.octets(), Register::Reg1));
    r.add_expr(&nft_expr!(lookup & off));
    r.add_expr(&nft_expr!(verdict accept));
    batch.add(&r, MsgType::Add);
    if !v4.is_empty() {
        let mut set = nftnl::set::Set::<Ipv4Addr>::new_named(c"d4", 2, &table, ProtoFamily::Inet);
        sized(&set, v4.len());
        batch.add(&set, MsgType::Add);
        for a in v4 {
            set.add(a);
        }
        batch.add_iter(set.elems_iter(), MsgType::Add);
        let mut r = Rule::new(&input);
        r.add_expr(&nft_expr!(meta nfproto));
        r.add_expr(&nft_expr!(cmp == libc::NFPROTO_IPV4 as u8));
        r.add_expr(&nft_expr!(payload ipv4 saddr));
        r.add_expr(&nft_expr!(lookup & set));
        r.add_expr(&nft_expr!(counter));
        r.add_expr(&nft_expr!(verdict drop));
        batch.add(&r, MsgType::Add);
    }
    if !v6.is_empty() {
        let mut set = nftnl::set::Set::<Ipv6Addr>::new_named(c"d6", 3, &table, ProtoFamily::Inet);
        sized(&set, v6.len());
        batch.add(&set, MsgType::Add);
        for a in v6 {
            set.add(a);
        }
        batch.add_iter(set.elems_iter(), MsgType::Add);
        let mut r = Rule::new(&input);
        r.add_expr(&nft_expr!(meta nfproto));
        r.add_expr(&nft_expr!(cmp == libc::NFPROTO_IPV6 as u8));
        r.add_expr(&nft_expr!(payload ipv6 saddr));
        r.add_expr(&nft_expr!(lookup & set));
        r.add_expr(&nft_expr!(counter));
        r.add_expr(&nft_expr!(verdict drop));
        batch.add(&r, MsgType::Add);
    }
}

/// Switch generation `g` off: the `off` element (in force at the same commit as everything else
/// in the transaction; fails if it is already off), then the table goes dormant so its hook no
/// longer runs.
pub fn add_retire(batch: &mut Batch, g: u64) {
    let name = table_name(g);
    let table = Table::new(&name, ProtoFamily::Inet);
    let mut off = nftnl::set::Set::<Ipv4Addr>::new_named(c"off", 4, &table, ProtoFamily::Inet);
    off.add(&OFF_KEY);
    batch.add_iter(off.elems_iter(), MsgType::Add);
    batch.add(
        &TableMsg { name: &name, table_flags: NFT_TABLE_F_DORMANT, nl_flags: libc::NLM_F_ACK as u16 },
        MsgType::Add,
    );
}

/// Delete generation `g`'s table (and everything in it).
pub fn add_delete(batch: &mut Batch, g: u64) {
    let name = table_name(g);
    batch.add(&Table::new(&name, ProtoFamily::Inet), MsgType::Del);
}

/// The generation tables present in the calling thread's namespace (a GETTABLE dump).
pub fn list() -> io::Result<Vec<u64>> {
    Ok(crate::nft::inet_tables()?.iter().filter_map(|n| parse_name(n)).collect())
}

/// The slow path for a namespace whose kernel state disagrees with the record: delete every
/// generation table found, and create a fresh generation for `step`'s drops, in `batch`.
/// Returns the namespace's new bookkeeping.
pub fn recover(batch: &mut Batch, step: &Step, next: u64) -> io::Result<NsGens> {
    let found = list()?;
    for g in &found {
        add_delete(batch, *g);
    }
    let active = if step.v4.is_empty() && step.v6.is_empty() {
        None
    } else {
        let g = found.iter().copied().chain(step.create).chain([next]).max().unwrap_or(next) + 1;
        add_create(batch, g, &step.v4, &step.v6);
        Some(g)
    };
    let active_sources = if active.is_some() { step.v4.len() + step.v6.len() } else { 0 };
    Ok(NsGens { active, active_sources, stale: Vec::new(), stale_sources: 0 })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn plan_rotates_generations_and_bounds_stale_ones() {
        let mut g = Gens::default();
        let drops: BTreeSet<IpAddr> = ["10.0.0.1".parse().unwrap()].into();
        let s = g.plan("n", &drops);
        assert_eq!((s.create, s.retire, s.gc.len()), (Some(0), None, 0));
        let s = g.plan("n", &BTreeSet::new());
        assert_eq!((s.create, s.retire), (None, Some(0)));
        assert_eq!(g.ns["n"], NsGens { active: None, active_sources: 0, stale: vec![0], stale_sources: 1 });
        let (mut gcs, mut retired, mut collected) = (0, 1, 0);
        let none = BTreeSet::new();
        for i in 0..80 {
            // Partition, replace, heal, ...
            let s = g.plan("n", if i % 3 == 2 { &none } else { &drops });
            assert!(s.retire.is_none() || s.retire != s.create);
            retired += usize::from(s.retire.is_some());
            gcs += usize::from(!s.gc.is_empty());
            collected += s.gc.len();
            assert!(g.ns["n"].stale.len() <= KEEP_STALE, "{:?}", g.ns["n"]);
            assert_eq!(s.retire.is_some(), i % 3 != 0, "step {i}: {s:?}");
        }
        assert_eq!(gcs, retired / (KEEP_STALE + 1), "stale generations are collected in rounds");
        assert_eq!(collected + g.ns["n"].stale.len(), retired, "every retired generation is accounted for");
        // Big generations are collected sooner: by the sources they hold.
        let mut g = Gens::default();
        let big: BTreeSet<IpAddr> =
            (0..400u32).map(|i| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i))).collect();
        let rounds: Vec<usize> = (0..12).map(|_| g.plan("n", &big).gc.len()).collect();
        assert_eq!(rounds, [0, 0, 0, 3, 0, 0, 3, 0, 0, 3, 0, 0], "1024 sources: every third retirement");
        assert_eq!(parse_name(table_name(17).to_str().unwrap()), Some(17));
        assert_eq!(parse_name("topo"), None);
    }
}
