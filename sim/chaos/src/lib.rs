//! `topo-chaos`: enforce a [`FaultState`] in the kernel.
//!
//! The state is turned into a [`Desired`] description (per-namespace nftables rules, interfaces
//! that must be down, root qdiscs, userspace delayers); [`enforce`] computes it for the old and
//! the new state and changes only what differs: a namespace whose rules change gets one atomic
//! nftables batch; namespaces are handled in parallel by a small pool of threads that `setns`
//! into them. Semantics are documented in docs/chaos.md.

// The kernel-side crates are the only ones allowed `unsafe` (each block has a SAFETY note).
#![allow(unsafe_code)]

pub mod conntrack;
pub mod delayer;
pub mod gens;
pub mod impair;
pub mod nat;
pub mod nft;
pub mod nl;
pub mod rtnl;

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Mutex;

use topo_lab::{FaultState, LinkRef};
use topo_plan::{Attachment, NodePlan, Plan};
use topo_spec::Impairment;

pub use delayer::DelayerSpec;
pub use impair::Qdisc;
pub use nft::{DevRule, NsRules};

#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    #[error(transparent)]
    Netns(#[from] topo_netns::NetnsError),
    #[error("{netns}: {what}: {source}")]
    Kernel { netns: String, what: String, source: io::Error },
    #[error("{0}")]
    Tc(String),
    #[error("impairment delayer: {0}")]
    Delayer(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{} errors: {}", .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Many(Vec<ChaosError>),
}

impl ChaosError {
    fn kernel(netns: &str, what: impl Into<String>, source: io::Error) -> Self {
        ChaosError::Kernel { netns: netns.to_owned(), what: what.into(), source }
    }
}

/// Signals for node faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeSignal {
    /// SIGKILL: a crashed host (links stay up).
    Kill,
    /// SIGSTOP: a frozen host.
    Pause,
    /// SIGCONT.
    Resume,
}

/// What the kernel should look like for one fault state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Desired {
    /// nftables rules by namespace (namespaces without rules are absent).
    pub nft: BTreeMap<String, NsRules>,
    /// (netns, interface) pairs that must be administratively down.
    pub down: BTreeSet<(String, String)>,
    /// Root qdiscs by (netns, interface).
    pub qdiscs: BTreeMap<(String, String), Qdisc>,
    /// Userspace delayers by (netns, queue number).
    pub delayers: BTreeMap<(String, u16), DelayerSpec>,
}

/// Every address of a node that partitions match on: interface and loopback IPv4 addresses and
/// interface IPv6 addresses. DHCP-assigned addresses are not in the plan and are not matched.
pub fn node_addrs(n: &NodePlan) -> BTreeSet<IpAddr> {
    let mut out: BTreeSet<IpAddr> = n.addresses().map(IpAddr::V4).collect();
    for i in &n.interfaces {
        out.extend(i.addresses6.iter().map(|a| IpAddr::V6(a.addr())));
    }
    out
}

/// The (netns, interface) ends of a link reference: both veth ends of every p2p link between
/// the two nodes, or the node's interface on a network and its bridge port in the fabric.
pub fn link_ends(plan: &Plan, link: &LinkRef) -> Vec<(String, String)> {
    let mut out = Vec::new();
    match link {
        LinkRef::P2p { a, b } => {
            for l in &plan.links {
                if (l.a.node == *a && l.b.node == *b) || (l.a.node == *b && l.b.node == *a) {
                    for end in [&l.a, &l.b] {
                        if let Some(n) = plan.node(&end.node) {
                            out.push((n.netns.clone(), end.iface.clone()));
                        }
                    }
                }
            }
        }
        LinkRef::Lan { node, network } => {
            if let Some(n) = plan.node(node) {
                for i in &n.interfaces {
                    if let Attachment::Network { network: net, port, .. } = &i.attachment {
                        if net == network {
                            out.push((n.netns.clone(), i.name.clone()));
                            out.push((plan.fabric.netns.clone(), port.clone()));
                        }
                    }
                }
            }
        }
    }
    out
}

/// NFQUEUE number of a link direction (unique within a lab).
fn queue_of(link_index: usize, from_a: bool) -> u16 {
    (1000 + 2 * link_index + usize::from(!from_a)).min(u16::MAX as usize) as u16
}

fn ppm(pct: Option<f64>) -> u32 {
    pct.map_or(0, |p| (p.clamp(0.0, 100.0) * 10_000.0).round() as u32)
}

/// The impairment in force on each direction of each link: the runtime one if set, else the
/// topology file's.
fn effective_impairment(state: &FaultState, from: &str, to: &str, file: &Impairment) -> Impairment {
    state.impairments.get(&(from.to_owned(), to.to_owned())).copied().unwrap_or(*file)
}

/// Compute what the kernel should look like. `netem` selects the impairment back end.
pub fn desired(plan: &Plan, state: &FaultState, netem: bool) -> Desired {
    let mut d = Desired::default();
    let by_name: BTreeMap<&str, &NodePlan> = plan.nodes.iter().map(|n| (n.name.as_str(), n)).collect();

    // Partitions and grudges: drop `from`'s sources on delivery to `to`. A partition of a large
    // lab has thousands of pairs: index nodes by hash, compute each node's addresses once, and
    // fill each receiver's set in one go.
    let index: std::collections::HashMap<&str, usize> =
        plan.nodes.iter().enumerate().map(|(i, n)| (n.name.as_str(), i)).collect();
    let mut senders: Vec<Vec<usize>> = vec![Vec::new(); plan.nodes.len()];
    // Pairs come sorted by sender: look each sender up once.
    let mut last: Option<(&str, Option<usize>)> = None;
    for (from, to) in &state.drops {
        let f = match last {
            Some((name, i)) if name == from.as_str() => i,
            _ => {
                let i = index.get(from.as_str()).copied();
                last = Some((from.as_str(), i));
                i
            }
        };
        if let (Some(f), Some(&t)) = (f, index.get(to.as_str())) {
            senders[t].push(f);
        }
    }
    let mut addrs: Vec<Option<Vec<IpAddr>>> = vec![None; plan.nodes.len()];
    for (t, froms) in senders.iter().enumerate().filter(|(_, f)| !f.is_empty()) {
        let mut all: Vec<IpAddr> = Vec::new();
        for &f in froms {
            all.extend(
                addrs[f].get_or_insert_with(|| node_addrs(&plan.nodes[f]).into_iter().collect()).iter(),
            );
        }
        // Sorted input lets the set be built in bulk.
        all.sort_unstable();
        all.dedup();
        d.nft.entry(plan.nodes[t].netns.clone()).or_default().drop_from = all.into_iter().collect();
    }

    // Impairments per direction.
    for l in &plan.links {
        for (s, r, file, from_a) in [(&l.a, &l.b, &l.impair_ab, true), (&l.b, &l.a, &l.impair_ba, false)] {
            let imp = effective_impairment(state, &s.node, &r.node, file);
            if imp.is_none() {
                continue;
            }
            let (Some(sn), Some(rn)) = (by_name.get(s.node.as_str()), by_name.get(r.node.as_str())) else {
                continue;
            };
            if netem {
                d.qdiscs.insert((sn.netns.clone(), s.iface.clone()), Qdisc::Netem(imp));
                continue;
            }
            if let Some(loss) = imp.loss.filter(|l| *l > 0.0) {
                let per_10000 = (loss.clamp(0.0, 100.0) * 100.0).round() as u32;
                d.nft
                    .entry(rn.netns.clone())
                    .or_default()
                    .ingress
                    .insert(r.iface.clone(), DevRule::Loss { per_10000 });
            }
            if let Some(rate) = imp.rate {
                d.qdiscs.insert((sn.netns.clone(), s.iface.clone()), Qdisc::Tbf(rate));
            }
            let spec = DelayerSpec {
                delay_us: imp.delay.map_or(0, |x| x.as_micros() as u64),
                jitter_us: imp.jitter.map_or(0, |x| x.as_micros() as u64),
                duplicate_ppm: ppm(imp.duplicate),
                reorder_ppm: ppm(imp.reorder),
            };
            if spec.delay_us > 0 || spec.jitter_us > 0 || spec.duplicate_ppm > 0 {
                let q = queue_of(l.index, from_a);
                d.nft.entry(rn.netns.clone()).or_default().queues.insert(r.iface.clone(), q);
                d.delayers.insert((rn.netns.clone(), q), spec);
            }
        }
    }

    // Silent cuts: drop everything arriving on both ends (overrides loss on that device).
    for link in &state.links_cut {
        for (ns, dev) in link_ends(plan, link) {
            d.nft.entry(ns).or_default().ingress.insert(dev, DevRule::Cut);
        }
    }

    // Carrier loss and stopped nodes.
    for link in &state.links_down {
        d.down.extend(link_ends(plan, link));
    }
    for n in &state.nodes_stopped {
        if let Some(np) = by_name.get(n.as_str()) {
            for i in &np.interfaces {
                d.down.insert((np.netns.clone(), i.name.clone()));
            }
        }
    }
    d
}

/// Which impairment back end this lab uses (probed once per process).
pub fn netem_for(plan: &Plan) -> bool {
    match plan.nodes.first() {
        Some(n) => impair::netem_available(&n.netns),
        None => false,
    }
}

/// Work for one namespace.
#[derive(Debug, Default)]
struct NsWork {
    /// The namespace's drop set changed: its new value (the generation step is planned later,
    /// from the recorded generations).
    drops: Option<BTreeSet<IpAddr>>,
    gen: Option<gens::Step>,
    /// Impairment rules changed: (old, new).
    impair: Option<(NsRules, NsRules)>,
    flush_from: BTreeSet<IpAddr>,
    down: Vec<String>,
    up: Vec<String>,
    qdiscs: Vec<(String, Option<Qdisc>)>,
    /// The node whose planned addresses and routes to restore on `up` interfaces.
    node: Option<String>,
}

impl NsWork {
    /// Only nftables and conntrack work: microseconds of CPU, no waiting.
    fn is_light(&self) -> bool {
        self.down.is_empty() && self.up.is_empty() && self.qdiscs.is_empty()
    }
}

fn diff(plan: &Plan, old: &Desired, new: &Desired) -> BTreeMap<String, NsWork> {
    let mut work: BTreeMap<String, NsWork> = BTreeMap::new();
    let empty = NsRules::default();
    let spaces: BTreeSet<&String> = old.nft.keys().chain(new.nft.keys()).collect();
    for ns in spaces {
        let o = old.nft.get(ns).unwrap_or(&empty);
        let n = new.nft.get(ns).unwrap_or(&empty);
        if o.drop_from != n.drop_from {
            let w = work.entry(ns.clone()).or_default();
            w.drops = Some(n.drop_from.clone());
            w.flush_from = n.drop_from.difference(&o.drop_from).copied().collect();
        }
        if o.ingress != n.ingress || o.queues != n.queues {
            let strip = |r: &NsRules| NsRules { drop_from: BTreeSet::new(), ..r.clone() };
            work.entry(ns.clone()).or_default().impair = Some((strip(o), strip(n)));
        }
    }
    for (ns, dev) in new.down.difference(&old.down) {
        work.entry(ns.clone()).or_default().down.push(dev.clone());
    }
    for (ns, dev) in old.down.difference(&new.down) {
        work.entry(ns.clone()).or_default().up.push(dev.clone());
    }
    let keys: BTreeSet<&(String, String)> = old.qdiscs.keys().chain(new.qdiscs.keys()).collect();
    for k in keys {
        let (o, n) = (old.qdiscs.get(k), new.qdiscs.get(k));
        if o != n {
            work.entry(k.0.clone()).or_default().qdiscs.push((k.1.clone(), n.copied()));
        }
    }
    let by_ns: BTreeMap<&str, &str> =
        plan.nodes.iter().map(|n| (n.netns.as_str(), n.name.as_str())).collect();
    for (ns, w) in &mut work {
        w.node = by_ns.get(ns.as_str()).map(|n| (*n).to_owned());
    }
    work
}

/// How many threads to use for `n` namespaces: the nftables work is a few microseconds of CPU
/// per namespace, so one thread per core hopping from namespace to namespace beats a thread per
/// namespace; work that waits (spawning `tc`, link changes) gets more. `TOPO_CHAOS_THREADS`
/// overrides (for measurements).
fn workers_for(n: usize, light: bool) -> usize {
    if let Some(t) = std::env::var("TOPO_CHAOS_THREADS").ok().and_then(|s| s.parse::<usize>().ok()) {
        return t.clamp(1, n.max(1));
    }
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    let want = if light { cores.clamp(2, 8) } else { 32 };
    want.min(n.max(1))
}

/// Run `f` inside each namespace of `items`, on `workers` threads that `setns` from namespace
/// to namespace (a thread stays in the last one; the threads end here). Returns every error.
fn parallel<T: Sync>(
    items: &[(String, T)],
    workers: usize,
    f: impl Fn(&str, &T) -> Result<(), ChaosError> + Sync,
) -> Vec<ChaosError> {
    if items.is_empty() {
        return Vec::new();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let errors = Mutex::new(Vec::new());
    let run = || loop {
        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let Some((ns, item)) = items.get(i) else { break };
        let res = topo_netns::Netns::open(ns).map_err(ChaosError::from).and_then(|h| {
            nix::sched::setns(h.fd().as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| ChaosError::kernel(ns, "setns", io::Error::from_raw_os_error(e as i32)))?;
            f(ns, item)
        });
        if let Err(e) = res {
            errors.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(e);
        }
    };
    std::thread::scope(|s| {
        for _ in 0..workers.clamp(1, items.len()) {
            s.spawn(run);
        }
    });
    errors.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn into_result(mut errs: Vec<ChaosError>) -> Result<(), ChaosError> {
    match errs.len() {
        0 => Ok(()),
        1 => Err(errs.remove(0)),
        _ => Err(ChaosError::Many(errs)),
    }
}

/// The one nftables transaction of a namespace: its partition generation step and its
/// impairment difference. If the kernel does not hold what the records say, the transaction
/// fails as a whole and a robust one replaces it (generations rebuilt from a dump, impairment
/// rules flushed and refilled); the namespace's corrected generation record is returned then.
fn nft_change(w: &NsWork, next_gen: u64) -> io::Result<Option<gens::NsGens>> {
    let fast = || -> io::Result<()> {
        let mut batch = nft::batch();
        if let Some(step) = &w.gen {
            if let Some(g) = step.create {
                gens::add_create(&mut batch, g, &step.v4, &step.v6);
            }
            if let Some(g) = step.retire {
                gens::add_retire(&mut batch, g);
            }
        }
        if let Some((o, n)) = &w.impair {
            let exists = o.queues != n.queues && nft::inet_table_exists()?;
            nft::add_impair_fast(&mut batch, o, n, exists)?;
        }
        nft::send(&batch.finalize())
    };
    let res = if w.gen.as_ref().is_some_and(|s| s.rebuild) {
        Err(io::Error::other("no record of the partition generations"))
    } else {
        fast()
    };
    match res {
        Ok(()) => Ok(None),
        Err(e) => {
            tracing::debug!(error = %e, "incremental nftables update failed, rebuilding the chaos tables");
            let mut batch = nft::batch();
            let mut fixed = None;
            if let Some(step) = &w.gen {
                fixed = Some(gens::recover(&mut batch, step, next_gen)?);
            }
            if let Some((o, n)) = &w.impair {
                nft::add_impair_full(&mut batch, o, n)?;
            }
            nft::send(&batch.finalize())?;
            Ok(fixed)
        }
    }
}

/// Make the kernel go from `old` to `new`, touching only what changes.
fn apply_diff(plan: &Plan, state_dir: &Path, old: &Desired, new: &Desired) -> Result<(), ChaosError> {
    let mut errors = Vec::new();

    // Delayers first, so a queue rule never points at a missing listener for longer than needed
    // (with bypass that would only mean undelayed traffic). Restart dead ones too.
    for (k, spec) in &old.delayers {
        if new.delayers.get(k) != Some(spec) {
            impair::stop_delayer(state_dir, &k.0, k.1);
        }
    }
    for ((ns, q), spec) in &new.delayers {
        let unchanged = old.delayers.get(&(ns.clone(), *q)) == Some(spec);
        if unchanged && impair::running_delayer(state_dir, ns, *q).is_some() {
            continue;
        }
        if let Err(e) = impair::start_delayer(state_dir, ns, *q, spec) {
            errors.push(e);
        }
    }

    let mut work: Vec<(String, NsWork)> = diff(plan, old, new).into_iter().collect();
    // Plan the partition generations and record them before touching the kernel (write-ahead:
    // after a crash the record names generations the kernel may lack, which the next change
    // detects and repairs; never the other way round).
    let mut gens = None;
    if work.iter().any(|(_, w)| w.drops.is_some()) {
        // Without a record, the kernel may only be trusted to hold no generation in force when
        // the old state drops nothing; otherwise every namespace is rebuilt from a dump.
        let (mut g, trusted) = match gens::Gens::load(state_dir) {
            Some(g) => (g, true),
            None => (gens::Gens::default(), old.nft.values().all(|r| r.drop_from.is_empty())),
        };
        for (ns, w) in &mut work {
            if let Some(drops) = &w.drops {
                let mut step = g.plan(ns, drops);
                step.rebuild = !trusted;
                w.gen = Some(step);
            }
        }
        g.save(state_dir).map_err(|e| ChaosError::Invalid(format!("record partition generations: {e}")))?;
        gens = Some(g);
    }
    let next_gen = gens.as_ref().map_or(0, |g| g.next);
    let fixed: Mutex<Vec<(String, gens::NsGens)>> = Mutex::new(Vec::new());

    // Phase 1: rules, links down and up, qdiscs.
    let light = work.iter().all(|(_, w)| w.is_light());
    errors.extend(parallel(&work, workers_for(work.len(), light), |ns, w| {
        if w.gen.is_some() || w.impair.is_some() {
            let f = nft_change(w, next_gen).map_err(|e| ChaosError::kernel(ns, "nftables batch", e))?;
            if let Some(f) = f {
                fixed.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((ns.to_owned(), f));
            }
            if !w.flush_from.is_empty() {
                let n = conntrack::delete_involving(&w.flush_from)
                    .map_err(|e| ChaosError::kernel(ns, "conntrack delete", e))?;
                tracing::debug!(netns = ns, deleted = n, "conntrack entries cut");
            }
        }
        if !w.down.is_empty() || !w.up.is_empty() {
            let mut sock = rtnl::open().map_err(|e| ChaosError::kernel(ns, "rtnetlink", e))?;
            for dev in &w.down {
                rtnl::set_link_up(&mut sock, dev, false).map_err(|e| ChaosError::kernel(ns, "link", e))?;
            }
            for dev in &w.up {
                rtnl::set_link_up(&mut sock, dev, true).map_err(|e| ChaosError::kernel(ns, "link", e))?;
            }
        }
        for (dev, q) in &w.qdiscs {
            impair::set_qdisc(ns, dev, q.as_ref()).map_err(ChaosError::Tc)?;
        }
        Ok(())
    }));

    if let Some(mut g) = gens {
        let fixed = fixed.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Namespaces rebuilt from a dump have no stale generations left to delete.
        let rebuilt: BTreeSet<String> = fixed.iter().map(|(ns, _)| ns.clone()).collect();
        if !fixed.is_empty() {
            for (ns, f) in fixed {
                g.next = g.next.max(f.active.map_or(0, |a| a + 1));
                g.ns.insert(ns, f);
            }
            if let Err(e) = g.save(state_dir) {
                errors.push(ChaosError::Invalid(format!("record partition generations: {e}")));
            }
        }
        // Off the critical path, once every namespace's change is in force: delete stale
        // generations where there are too many. Each namespace's socket close waits for an RCU
        // grace period; keeping the sockets open until all are sent lets the waits overlap.
        // A failure here does not undo the change: it is logged, and the tables that could not
        // be deleted go with the namespace at `down`.
        let gc: Vec<(String, Vec<u64>)> = work
            .iter()
            .filter(|(ns, _)| !rebuilt.contains(ns))
            .filter_map(|(ns, w)| {
                w.gen.as_ref().filter(|s| !s.gc.is_empty()).map(|s| (ns.clone(), s.gc.clone()))
            })
            .collect();
        let open = Mutex::new(Vec::new());
        let gc_errors = parallel(&gc, workers_for(gc.len(), true), |ns, stale| {
            let delete = |which: &[u64]| {
                let mut batch = nft::batch();
                for s in which {
                    gens::add_delete(&mut batch, *s);
                }
                nft::send_keep(&batch.finalize())
            };
            // If one of them is gone already, the batch fails as a whole: retry with those
            // that exist.
            let sock = delete(stale)
                .or_else(|_| {
                    let present: BTreeSet<u64> = gens::list()?.into_iter().collect();
                    delete(&stale.iter().copied().filter(|g| present.contains(g)).collect::<Vec<_>>())
                })
                .map_err(|e| ChaosError::kernel(ns, "delete stale partition generations", e))?;
            open.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(sock);
            Ok(())
        });
        for e in gc_errors {
            tracing::warn!(error = %e, "stale partition generations left in place");
        }
        drop(open);
    }

    // Phase 2, once every end is up: put back addresses and routes the kernel flushed.
    let restores: Vec<(String, (String, Vec<String>))> = work
        .iter()
        .filter_map(|(ns, w)| Some((ns.clone(), (w.node.clone()?, w.up.clone()))))
        .filter(|(_, (_, up))| !up.is_empty())
        .collect();
    errors.extend(parallel(&restores, workers_for(restores.len(), false), |ns, (node, ups)| {
        let Some(np) = plan.node(node) else { return Ok(()) };
        let mut sock = rtnl::open().map_err(|e| ChaosError::kernel(ns, "rtnetlink", e))?;
        for dev in ups {
            rtnl::restore_iface(&mut sock, np, dev).map_err(|e| ChaosError::kernel(ns, "restore", e))?;
        }
        Ok(())
    }));
    into_result(errors)
}

/// Make the kernel match `new`, given that it matched `old`: rules, links, qdiscs, delayers,
/// and paused nodes (SIGSTOP for newly paused, SIGCONT for resumed ones).
pub fn enforce(plan: &Plan, state_dir: &Path, old: &FaultState, new: &FaultState) -> Result<(), ChaosError> {
    // Probing for netem runs `tc`: only worth it when some impairment is involved.
    let impaired = |s: &FaultState| s.impairments.values().any(|i| !i.is_none());
    let file_impaired = plan.links.iter().any(|l| !l.impair_ab.is_none() || !l.impair_ba.is_none());
    let netem = (file_impaired || impaired(old) || impaired(new)) && netem_for(plan);
    let mut errors = Vec::new();
    // Both states at once: for a partition of a large lab each is a fraction of a millisecond.
    let (want_old, want_new) = std::thread::scope(|s| {
        let o = s.spawn(|| desired(plan, old, netem));
        let n = desired(plan, new, netem);
        (o.join().unwrap_or_else(|_| desired(plan, old, netem)), n)
    });
    if let Err(e) = apply_diff(plan, state_dir, &want_old, &want_new) {
        errors.push(e);
    }
    for n in new.nodes_paused.difference(&old.nodes_paused) {
        if let Err(e) = node_signal(plan, n, NodeSignal::Pause) {
            errors.push(e);
        }
    }
    for n in old.nodes_paused.difference(&new.nodes_paused) {
        if let Err(e) = node_signal(plan, n, NodeSignal::Resume) {
            errors.push(e);
        }
    }
    into_result(errors)
}

/// What a backend does for one fault, given the state before and after
/// [`FaultState::apply`]: [`enforce`] the new state, and for `NodeKill` (an event, not state)
/// SIGKILL the node's processes.
pub fn apply_fault(
    plan: &Plan,
    state_dir: &Path,
    old: &FaultState,
    new: &FaultState,
    fault: &topo_lab::Fault,
) -> Result<(), ChaosError> {
    enforce(plan, state_dir, old, new)?;
    if let topo_lab::Fault::NodeKill { node } = fault {
        node_signal(plan, node, NodeSignal::Kill)?;
    }
    Ok(())
}

/// Apply the topology file's impairments (`LinkPlan.impair_ab/ba`) on a fresh lab.
pub fn apply_static_impairments(plan: &Plan, state_dir: &Path) -> Result<(), ChaosError> {
    let netem = netem_for(plan);
    apply_diff(plan, state_dir, &Desired::default(), &desired(plan, &FaultState::default(), netem))
}

/// Signal every process inside a node (kill, pause, resume). topo's delayer running there is
/// spared: it emulates the wire, not the host. Everything else (daemons, users' programs, probe
/// responders) gets the signal, as on a real host. Returns the pids signalled.
pub fn node_signal(plan: &Plan, node: &str, sig: NodeSignal) -> Result<Vec<i32>, ChaosError> {
    let n = plan.node(node).ok_or_else(|| ChaosError::Invalid(format!("unknown node {node}")))?;
    let ns = topo_netns::Netns::open(&n.netns)?;
    let inode = ns.inode().map_err(|e| ChaosError::kernel(&n.netns, "inode", e))?;
    let signal = match sig {
        NodeSignal::Kill => nix::sys::signal::Signal::SIGKILL,
        NodeSignal::Pause => nix::sys::signal::Signal::SIGSTOP,
        NodeSignal::Resume => nix::sys::signal::Signal::SIGCONT,
    };
    let me = std::process::id() as i32;
    let mut done = Vec::new();
    for pid in topo_netns::pids_in_netns(inode) {
        if pid == me || impair::is_delayer(pid) {
            continue;
        }
        match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal) {
            Ok(()) => done.push(pid),
            Err(nix::Error::ESRCH) => {}
            Err(e) => {
                return Err(ChaosError::kernel(
                    &n.netns,
                    format!("signal pid {pid}"),
                    io::Error::from_raw_os_error(e as i32),
                ))
            }
        }
    }
    Ok(done)
}

/// Remove the chaos layer's userspace and firewall state from a lab (at down): kill the delayers
/// and delete the nftables tables in every namespace, without knowing the previous fault state.
/// Links, qdiscs and addresses go away with the namespaces; to undo faults in a lab that stays
/// up, call [`enforce`] from the journaled state to the empty one. Collects all errors.
pub fn clear(plan: &Plan, state_dir: &Path) -> Result<(), Vec<ChaosError>> {
    let mut errors = Vec::new();
    impair::stop_all_delayers(state_dir);
    let mut spaces: Vec<(String, ())> = plan.nodes.iter().map(|n| (n.netns.clone(), ())).collect();
    spaces.push((plan.fabric.netns.clone(), ()));
    spaces.retain(|(ns, ())| topo_netns::exists(ns));
    // Deleting costs each namespace an RCU grace period when its socket closes: close them all
    // at the end so the waits overlap.
    let open = Mutex::new(Vec::new());
    errors.extend(parallel(&spaces, workers_for(spaces.len(), true), |ns, ()| {
        let sock = nft::remove().map_err(|e| ChaosError::kernel(ns, "remove nftables tables", e))?;
        open.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(sock);
        Ok(())
    }));
    drop(open);
    // The generation record describes tables that are gone now.
    match std::fs::remove_file(state_dir.join("chaos").join("partition.json")) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            errors.push(ChaosError::Invalid(format!("remove the partition generation record: {e}")));
        }
        _ => {}
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Clean up after a lab from names only (no plan, no state dir): kill delayers running in any
/// of its namespaces. The nftables tables and qdiscs die with the namespaces.
pub fn gc_lab(lab: &str) {
    let prefix_node = format!("topo-{lab}.");
    let fabric = format!("topo-{lab}");
    let Ok(names) = topo_netns::list() else { return };
    for name in names.iter().filter(|n| n.starts_with(&prefix_node) || **n == fabric) {
        if let Ok(ns) = topo_netns::Netns::open(name) {
            if let Ok(inode) = ns.inode() {
                impair::kill_delayers_in(inode);
            }
        }
    }
}

/// A random partition into 2 or 3 non-empty groups (fewer for tiny labs), reproducible from
/// `seed` (ChaCha8): the same plan and seed always give the same groups, in plan order.
pub fn random_partition(plan: &Plan, seed: u64) -> Vec<Vec<String>> {
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut names: Vec<String> = plan.nodes.iter().map(|n| n.name.clone()).collect();
    if names.len() < 2 {
        return vec![names];
    }
    names.shuffle(&mut rng);
    let k = rng.gen_range(2..=3usize.min(names.len()));
    let mut cuts: Vec<usize> = (1..names.len()).collect();
    cuts.shuffle(&mut rng);
    let mut cuts: Vec<usize> = cuts.into_iter().take(k - 1).collect();
    cuts.sort_unstable();
    let mut groups = Vec::new();
    let mut start = 0;
    for c in cuts.into_iter().chain([names.len()]) {
        let mut g = names[start..c].to_vec();
        g.sort_by_key(|n| plan.node_index(n));
        groups.push(g);
        start = c;
    }
    groups
}

/// Run the delayer if `args` asks for it (`__delayer ...`); used by the `topo` binary.
pub fn delayer_main(args: &[String]) -> i32 {
    delayer::main(args)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::many_single_char_names)]
mod tests {
    use super::*;
    use topo_lab::Fault;

    fn plan() -> Plan {
        let yaml = "name: unit
networks:
  lan: {subnet: 10.9.0.0/24}
nodes:
  h1: {interfaces: [lan]}
  h2: {interfaces: [lan]}
  h3: {interfaces: [lan]}
  h4: {interfaces: [lan]}
  a: {}
  b: {}
links:
  - endpoints:
      - {node: a, address: 10.88.0.0}
      - {node: b, address: 10.88.0.1}
    subnet: 10.88.0.0/31
    impair:
      a->b: {delay: 20ms, loss: 5%}
";
        topo_plan::plan_str("unit.yaml", yaml).expect("valid topology")
    }

    fn state(plan: &Plan, faults: &[Fault]) -> FaultState {
        let mut s = FaultState::default();
        for f in faults {
            s.apply(plan, f).expect("valid fault");
        }
        s
    }

    #[test]
    fn random_partition_is_reproducible_and_complete() {
        let p = plan();
        for seed in 0..50 {
            let g = random_partition(&p, seed);
            assert_eq!(g, random_partition(&p, seed), "seed {seed}");
            assert!((2..=3).contains(&g.len()), "{g:?}");
            let mut all: Vec<&String> = g.iter().flatten().collect();
            all.sort();
            all.dedup();
            assert_eq!(all.len(), p.nodes.len(), "every node in exactly one group: {g:?}");
            assert!(g.iter().all(|x| !x.is_empty()));
        }
        let distinct: BTreeSet<Vec<Vec<String>>> = (0..20).map(|s| random_partition(&p, s)).collect();
        assert!(distinct.len() > 5, "seeds must matter");
    }

    #[test]
    fn partition_drops_land_at_the_receiver() {
        let p = plan();
        let s = state(&p, &[Fault::Partition { groups: vec![vec!["h1".into(), "h2".into()]] }]);
        let d = desired(&p, &s, false);
        let h1 = p.node("h1").unwrap();
        let h3 = p.node("h3").unwrap();
        // h1 drops everything from the rest group, including both addresses of a and b's link.
        let at_h1 = &d.nft[&h1.netns].drop_from;
        assert!(at_h1.contains(&IpAddr::V4(h3.primary_address().unwrap())));
        assert!(at_h1.contains(&"10.88.0.0".parse().unwrap()));
        assert!(!at_h1.contains(&IpAddr::V4(p.node("h2").unwrap().primary_address().unwrap())));
        // One-way: only the receiver gets a rule.
        let s = state(&p, &[Fault::Drop { from: vec!["h1".into()], to: vec!["h2".into()] }]);
        let d = desired(&p, &s, false);
        assert!(d.nft.contains_key(&p.node("h2").unwrap().netns));
        assert!(!d.nft.contains_key(&h1.netns));
    }

    #[test]
    fn impairments_map_to_the_right_side() {
        let p = plan();
        let (a, b) = (p.node("a").unwrap(), p.node("b").unwrap());
        let l = &p.links[0];
        // File impairment a->b without netem: loss at b's ingress, delayer in b, nothing on a.
        let d = desired(&p, &FaultState::default(), false);
        assert_eq!(d.nft[&b.netns].ingress[&l.b.iface], DevRule::Loss { per_10000: 500 });
        assert_eq!(d.delayers.len(), 1);
        assert!(d.delayers.contains_key(&(b.netns.clone(), queue_of(0, true))));
        assert!(!d.nft.contains_key(&a.netns));
        // With netem: one qdisc on a's egress.
        let d = desired(&p, &FaultState::default(), true);
        assert!(matches!(d.qdiscs.get(&(a.netns.clone(), l.a.iface.clone())), Some(Qdisc::Netem(_))));
        assert!(d.nft.is_empty() && d.delayers.is_empty());
        // A runtime rate b->a replaces nothing on a->b and shapes b's egress.
        let s = state(
            &p,
            &[Fault::Impair {
                a: "a".into(),
                b: "b".into(),
                from: Some("b".into()),
                impairment: Impairment { rate: Some(1_000_000), ..Impairment::default() },
            }],
        );
        let d = desired(&p, &s, false);
        assert_eq!(d.qdiscs.get(&(b.netns.clone(), l.b.iface.clone())), Some(&Qdisc::Tbf(1_000_000)));
        // A cut overrides loss on the same device and covers both ends.
        let s = state(&p, &[Fault::LinkCut { link: LinkRef::P2p { a: "b".into(), b: "a".into() } }]);
        let d = desired(&p, &s, false);
        assert_eq!(d.nft[&b.netns].ingress[&l.b.iface], DevRule::Cut);
        assert_eq!(d.nft[&a.netns].ingress[&l.a.iface], DevRule::Cut);
    }

    #[test]
    fn stopped_node_and_lan_link_down() {
        let p = plan();
        let s = state(
            &p,
            &[
                Fault::NodeStop { node: "a".into() },
                Fault::LinkDown { link: LinkRef::Lan { node: "h1".into(), network: "lan".into() } },
            ],
        );
        let d = desired(&p, &s, false);
        let h1 = p.node("h1").unwrap();
        assert!(d.down.contains(&(p.node("a").unwrap().netns.clone(), p.links[0].a.iface.clone())));
        assert!(d.down.contains(&(h1.netns.clone(), h1.interfaces[0].name.clone())));
        let port = match &h1.interfaces[0].attachment {
            Attachment::Network { port, .. } => port.clone(),
            Attachment::Link { .. } => unreachable!(),
        };
        assert!(d.down.contains(&(p.fabric.netns.clone(), port)));
        assert_eq!(d.down.len(), 3);
    }
}
