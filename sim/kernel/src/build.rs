//! `up`: turn a plan into namespaces, bridges, veths, addresses, routes, sysctls, UTS namespaces
//! and `/etc/netns` files, rolling everything back on failure or Ctrl-C.
//!
//! Speed comes from doing little per node: creator threads (one per core but one) make node
//! namespaces in turn (unshare, bind mount, sysctls, a netlink socket and the UTS namespace, all
//! while inside the new namespace) and hand each to one wiring thread, which writes its netlink
//! requests in order on the fabric's and the node's sockets and awaits the acknowledgements
//! together. Interface indices are chosen by us, so nothing has to be looked up: addresses and
//! routes go out right behind the links they use.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::{self, OpenOptions};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};
use rtnetlink::packet_route::address::AddressMessage;
use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkMessage};
use rtnetlink::packet_route::route::RouteMessage;
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::{
    AddressMessageBuilder, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder,
};
use topo_plan::{Attachment, NodePlan, Plan};

use crate::netlink::{self, Request, SyncConn, CHANGE, CREATE};
use crate::state::{JournalEntry, LabMeta, Phase, StateDir};
use crate::{interrupt, teardown, KernelError, Progress, SourceInfo, UpOpts, UpReport};

/// Index of `lo` in every namespace.
const LO_INDEX: u32 = 1;
/// Node interface `k` on a LAN gets index `NODE_IFINDEX_BASE + k`; well above the fallback
/// tunnel devices some kernels create in every new namespace.
const NODE_IFINDEX_BASE: u32 = 1000;
/// The ends of point-to-point link `l` get `P2P_IFINDEX_BASE + 2l` and `+ 2l + 1`: never the
/// same index at both ends. The kernel's link-watch work treats a veth whose index equals its
/// peer's as a non-urgent device and switches its carrier on up to a second late, during which
/// the link drops every frame.
const P2P_IFINDEX_BASE: u32 = 500_000;
/// Bridge `i` of the fabric gets index `BRIDGE_IFINDEX_BASE + i`.
const BRIDGE_IFINDEX_BASE: u32 = 1000;
/// Fabric-side veth port `j` gets index `PORT_IFINDEX_BASE + j`.
const PORT_IFINDEX_BASE: u32 = 1_000_000;

/// Build the lab described by `plan`. Rolls back on any failure or Ctrl-C.
pub fn up(plan: &Plan, source: &SourceInfo, opts: &UpOpts) -> Result<UpReport, KernelError> {
    let start = Instant::now();
    check_plan(plan)?;
    let sd = StateDir::new(&plan.lab);
    let _lock = sd.lock(opts.lock_wait, true)?;
    let hash = source.hash();
    let report = |unchanged| UpReport {
        lab: plan.lab.clone(),
        nodes: plan.nodes.len(),
        links: plan.links.len(),
        networks: plan.fabric.bridges.len(),
        unchanged,
        elapsed: start.elapsed(),
        peak_rss_kib: crate::peak_rss_kib(),
    };
    match sd.read_meta() {
        Ok(meta) if meta.phase == Phase::Up && meta.source_hash == hash => return Ok(report(true)),
        Ok(meta) if meta.phase == Phase::Up => {
            return Err(KernelError::Changed { lab: plan.lab.clone(), old: meta.source_hash, new: hash })
        }
        Ok(meta) => {
            return Err(KernelError::State {
                lab: plan.lab.clone(),
                msg: format!("an earlier `up` or `down` stopped half-way (phase {:?})", meta.phase),
            })
        }
        Err(KernelError::NotUp(_)) => {}
        Err(e) => return Err(e),
    }
    // Residue of an earlier lab of this name (state dir lost): building over it would fail half-way.
    let leftovers = teardown::lab_netns_by_name(&plan.lab);
    if !leftovers.is_empty() {
        // The lock file this call made is not the lab's to keep (held, so removing it is safe).
        let _ = fs::remove_file(sd.lock_path());
        return Err(KernelError::State {
            lab: plan.lab.clone(),
            msg: format!(
                "{} namespace(s) of an earlier lab of this name exist (e.g. {})",
                leftovers.len(),
                leftovers[0]
            ),
        });
    }
    let meta = LabMeta {
        lab: plan.lab.clone(),
        phase: Phase::Building,
        source_hash: hash,
        source_path: source.path.as_deref().and_then(|p| p.canonicalize().ok()),
        created: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        plan_version: plan.version,
    };
    let built = (|| {
        sd.create()?;
        sd.write_meta(&meta)?;
        sd.write_plan(plan)?;
        crate::state::write_atomic(&sd.source_path(), source.text.as_bytes())?;
        build(plan, &sd, opts)
    })();
    match built {
        Ok(()) => {
            let meta = LabMeta { phase: Phase::Up, ..meta };
            if let Err(e) = sd.write_meta(&meta) {
                return Err(rollback(&sd, plan, e, opts));
            }
            Ok(report(false))
        }
        Err(e) => Err(rollback(&sd, plan, e, opts)),
    }
}

fn rollback(sd: &StateDir, plan: &Plan, original: KernelError, opts: &UpOpts) -> KernelError {
    tracing::warn!(lab = %plan.lab, error = %original, "up failed; rolling back");
    progress(opts, Progress::Phase { name: "rollback", total: 0 });
    let mut report = crate::DownReport { lab: plan.lab.clone(), ..Default::default() };
    let errors = teardown::teardown(sd, Some(plan), &mut report);
    KernelError::RolledBack { original: Box::new(original), rollback: errors }
}

fn progress(opts: &UpOpts, p: Progress) {
    if let Some(f) = &opts.progress {
        f(&p);
    }
}

/// Names the plan gives must be this lab's, so teardown by name finds everything.
fn check_plan(plan: &Plan) -> Result<(), KernelError> {
    crate::validate_lab_name(&plan.lab)?;
    let fabric = teardown::fabric_netns(&plan.lab);
    if plan.fabric.netns != fabric {
        return Err(KernelError::Invalid(format!(
            "plan names the fabric namespace {:?}, expected {fabric:?}",
            plan.fabric.netns
        )));
    }
    let prefix = teardown::node_netns_prefix(&plan.lab);
    let mut seen = std::collections::HashSet::new();
    for n in &plan.nodes {
        if !n.netns.starts_with(&prefix) || n.netns.len() == prefix.len() || n.netns.contains('/') {
            return Err(KernelError::Invalid(format!(
                "node {} has namespace {:?}, expected {prefix}<node>",
                n.name, n.netns
            )));
        }
        if !seen.insert(n.netns.as_str()) {
            return Err(KernelError::Invalid(format!("two nodes share the namespace {}", n.netns)));
        }
        if n.name.contains('/') || n.name.is_empty() {
            return Err(KernelError::Invalid(format!("bad node name {:?}", n.name)));
        }
    }
    Ok(())
}

/// A node whose configuration waits for its point-to-point links (made once every node exists).
struct NodeNs {
    index: usize,
    /// Keeps the namespace open (and gives veth creation a target fd).
    fd: OwnedFd,
    /// A netlink socket inside the namespace.
    sock: OwnedFd,
    /// Sysctls that name interfaces, written once the interfaces exist.
    deferred: Vec<(String, String)>,
}

fn build(plan: &Plan, sd: &StateDir, opts: &UpOpts) -> Result<(), KernelError> {
    interrupt::check()?;
    netlink::raise_fd_limit();
    for d in [sd.uts_dir(), sd.nodes_dir(), sd.pids_dir(), sd.etc_dir()] {
        fs::create_dir_all(&d).map_err(|e| KernelError::io(format!("create {}", d.display()), e))?;
    }
    let mut journal = sd.journal()?;
    // Write-ahead: every namespace, UTS file and /etc/netns entry is on record before the first
    // is made.
    let mut entries = vec![
        JournalEntry::Netns { name: plan.fabric.netns.clone() },
        JournalEntry::Uts { path: sd.uts_dir() },
    ];
    for n in &plan.nodes {
        entries.push(JournalEntry::Netns { name: n.netns.clone() });
        entries.push(JournalEntry::Uts { path: sd.uts_path(&n.name) });
    }
    for ns in std::iter::once(&plan.fabric.netns).chain(plan.nodes.iter().map(|n| &n.netns)) {
        entries.push(JournalEntry::Etc { path: Path::new(topo_netns::ETC_NETNS_DIR).join(ns) });
    }
    journal.record(&entries)?;

    let t = Instant::now();
    let lap = |what: &str| tracing::debug!(lab = %plan.lab, phase = what, ms = t.elapsed().as_secs_f64() * 1e3, "up");
    progress(opts, Progress::Phase { name: "namespaces", total: plan.nodes.len() as u64 + 1 });
    // Mount points: the fabric's first, then every node's as a hard link of it (no disk inode
    // per node), all before the fabric's is mounted (see topo_netns::make_mount_point).
    topo_netns::ensure_netns_dir()
        .map_err(|e| KernelError::io(format!("prepare {}", topo_netns::NETNS_DIR), e))?;
    let anchor = topo_netns::path_of(&plan.fabric.netns);
    topo_netns::make_mount_point(&anchor, None).map_err(|e| mount_point_error(&plan.fabric.netns, e))?;
    for (i, n) in plan.nodes.iter().enumerate() {
        if i % 64 == 0 {
            interrupt::check()?;
        }
        topo_netns::make_mount_point(&topo_netns::path_of(&n.netns), Some(&anchor))
            .map_err(|e| mount_point_error(&n.netns, e))?;
    }
    // UTS namespace files on a tmpfs of the lab's own: no disk inodes, and one unmount takes
    // them all away.
    mount_uts_tmpfs(sd)?;
    lap("mount points");
    let creators = creator_count(plan.nodes.len());
    let mut keys: Vec<&str> = plan.nodes.iter().flat_map(|n| n.sysctls.keys().map(String::as_str)).collect();
    keys.sort_unstable();
    keys.dedup();
    let (mut fabric_socks, fresh) = create_fabric_ns(&plan.fabric.netns, &anchor, 2, &keys)?;
    let shared = Shared { gate: std::sync::Mutex::new(()), fresh };
    let mut fabric = SyncConn::new(
        &plan.fabric.netns,
        fabric_socks.pop().ok_or_else(|| KernelError::Backend("no fabric socket".into()))?,
    );
    let bridges: Vec<Request> = plan
        .fabric
        .bridges
        .iter()
        .enumerate()
        .map(|(i, b)| {
            // Without multicast snooping: the bridge floods multicast, as it does anyway while no
            // IGMP querier is present, and every port added does not re-enable multicast timers
            // on every other port (quadratic in the ports of a LAN).
            let msg = LinkBridge::new(&b.ifname)
                .mtu(b.mtu)
                .index(BRIDGE_IFINDEX_BASE + i as u32)
                .mcast_snooping(false)
                .build();
            (format!("create bridge {}", b.ifname), RouteNetlinkMessage::NewLink(msg), CREATE)
        })
        .collect();
    fail_on(fabric.run(&bridges))?;
    progress(opts, Progress::Advance(1));
    lap("fabric");
    interrupt::check()?;

    // Node namespaces, each wired as soon as it exists (its LAN ports from a fabric socket of
    // the wiring thread, then its own configuration); the /etc/netns files meanwhile on another
    // thread.
    let wire_sock = fabric_socks.pop().ok_or_else(|| KernelError::Backend("no fabric socket".into()))?;
    let (nodes, files) = std::thread::scope(|s| {
        let files = s.spawn(|| write_etc_files(plan, sd));
        let nodes = build_nodes(plan, sd, wire_sock, creators, &shared, opts);
        (nodes, files.join().unwrap_or_else(|_| Err(KernelError::Backend("file writer panicked".into()))))
    });
    let nodes = nodes?;
    files?;
    lap("nodes and files");
    interrupt::check()?;
    // Every LAN port's carrier, switched on when its node end came up (see `sync_link`).
    let ports: Vec<Request> = plan
        .nodes
        .iter()
        .flat_map(|n| n.interfaces.iter())
        .filter_map(|i| match &i.attachment {
            Attachment::Network { port, .. } => Some(port.as_str()),
            Attachment::Link { .. } => None,
        })
        .enumerate()
        .map(|(j, port)| sync_link(port, PORT_IFINDEX_BASE + j as u32))
        .collect();
    fail_on(fabric.run(&ports))?;

    // Point-to-point links (both ends need their namespaces), then the nodes that have them.
    if !plan.links.is_empty() {
        progress(opts, Progress::Phase { name: "links", total: plan.links.len() as u64 });
        fail_on(fabric.run(&p2p_messages(plan, &nodes)?))?;
        for ns in &nodes {
            let node = &plan.nodes[ns.index];
            let sock = ns.sock.try_clone().map_err(|e| KernelError::io("dup a netlink socket", e))?;
            fail_on(SyncConn::new(&node.netns, sock).run(&node_messages(node)?))?;
        }
        write_deferred_sysctls(plan, &nodes)?;
        progress(opts, Progress::Advance(plan.links.len() as u64));
        lap("links");
    }
    wait_until_forwarding(plan, &mut fabric, &nodes)?;
    drop(nodes);
    lap("links ready");
    interrupt::check()?;

    progress(opts, Progress::Phase { name: "services", total: plan.start_order.len() as u64 });
    crate::hooks::start(plan, &sd.dir, opts)?;
    lap("services");
    interrupt::check()?;
    Ok(())
}

/// How long `up` waits for its links to carry traffic before it gives up on them.
const LINKS_READY_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

/// Return once every LAN port forwards and every point-to-point end is operationally up.
///
/// A veth's carrier, and with it the bridge port's forwarding state and the device's queueing,
/// is switched on by the kernel's link-watch work after the request that set the link up has
/// returned; a frame sent before is dropped, and the first ARP request of a ping then waits a
/// second for its retry (seen as a snapshot step in which one node reached nobody). `up` asks
/// for every link once it is up (see [`sync_link`]), which applies the change at once; this
/// checks the outcome (one dump of the fabric, one per node with point-to-point links, whose
/// far ends may come up after that request) and polls until it holds.
fn wait_until_forwarding(
    plan: &Plan,
    fabric: &mut SyncConn,
    p2p_nodes: &[NodeNs],
) -> Result<(), KernelError> {
    use rtnetlink::packet_route::link::{
        BridgePortState, InfoBridgePort, InfoPortData, LinkAttribute as A, LinkInfo, State,
    };
    let deadline = Instant::now() + LINKS_READY_WITHIN;
    let mut node_conns = p2p_nodes
        .iter()
        .map(|ns| {
            let node = &plan.nodes[ns.index];
            let sock = ns.sock.try_clone().map_err(|e| KernelError::io("dup a netlink socket", e))?;
            Ok((node, SyncConn::new(&node.netns, sock)))
        })
        .collect::<Result<Vec<_>, KernelError>>()?;
    let name_of = |l: &LinkMessage| {
        l.attributes
            .iter()
            .find_map(|a| if let A::IfName(n) = a { Some(n.clone()) } else { None })
            .unwrap_or_default()
    };
    let mut pause = std::time::Duration::from_millis(1);
    loop {
        let mut waiting: Vec<String> = Vec::new();
        for l in fabric.dump_links()? {
            let port_state = l.attributes.iter().find_map(|a| match a {
                A::LinkInfo(infos) => infos.iter().find_map(|i| match i {
                    LinkInfo::PortData(InfoPortData::BridgePort(p)) => p.iter().find_map(|x| match x {
                        InfoBridgePort::State(s) => Some(*s),
                        _ => None,
                    }),
                    _ => None,
                }),
                _ => None,
            });
            if port_state.is_some_and(|s| s != BridgePortState::Forwarding) {
                waiting.push(format!("{}:{}", plan.fabric.netns, name_of(&l)));
            }
        }
        for (node, conn) in &mut node_conns {
            for l in conn.dump_links()? {
                let ours = l.header.index >= NODE_IFINDEX_BASE;
                let up = l.attributes.iter().any(|a| matches!(a, A::OperState(State::Up)));
                if ours && !up {
                    waiting.push(format!("{}:{}", node.name, name_of(&l)));
                }
            }
        }
        if waiting.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            // Not fatal: the lab is built; a link the kernel will not bring up is for the user
            // to see (`topo status` shows it), not a reason to tear everything down.
            tracing::warn!(
                lab = %plan.lab,
                links = %waiting.join(" "),
                "links not forwarding {} s after they were set up",
                LINKS_READY_WITHIN.as_secs()
            );
            return Ok(());
        }
        interrupt::check()?;
        std::thread::sleep(pause);
        pause = (pause * 2).min(std::time::Duration::from_millis(20));
    }
}

/// Threads that create node namespaces: one per core but one (the wiring thread has that), at
/// least one (TOPO_NS_WORKERS overrides).
fn creator_count(nodes: usize) -> usize {
    std::env::var("TOPO_NS_WORKERS")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map_or(2, std::num::NonZero::get)
                .saturating_sub(1)
                .clamp(1, 8)
        })
        .clamp(1, 64)
        .min(nodes.max(1))
}

/// Create every node namespace on `creators` threads and wire each on one more thread as soon
/// as it exists. Wiring is netlink work under the kernel's RTNL lock, which serializes it
/// anyway: on one thread it never spins on the lock against itself, while namespace creation
/// (mostly outside RTNL) keeps the other cores busy. Measured on 2 cores against every worker
/// doing both: the same at N=100 and 10–20 % faster at N=500 and 1000 (docs/benchmarks.md).
/// Nodes with point-to-point links come back with their LAN veths only (their links come
/// later).
fn build_nodes(
    plan: &Plan,
    sd: &StateDir,
    wire_sock: OwnedFd,
    creators: usize,
    shared: &Shared,
    opts: &UpOpts,
) -> Result<Vec<NodeNs>, KernelError> {
    let n = plan.nodes.len();
    let bridge_index: HashMap<&str, u32> = plan
        .fabric
        .bridges
        .iter()
        .enumerate()
        .map(|(i, b)| (b.ifname.as_str(), BRIDGE_IFINDEX_BASE + i as u32))
        .collect();
    // Fabric port indices, numbered over all nodes in plan order (nodes are wired in any order).
    let mut port_start = Vec::with_capacity(n);
    let mut ports = 0u32;
    for node in &plan.nodes {
        port_start.push(ports);
        ports += node.interfaces.iter().filter(|i| matches!(i.attachment, Attachment::Network { .. })).count()
            as u32;
    }
    let abort = AtomicBool::new(false);
    let (tx, rx) = std::sync::mpsc::channel::<NodeNs>();
    let (created, wired) = std::thread::scope(|s| {
        let (abort, bridge_index, port_start) = (&abort, &bridge_index, &port_start);
        let wirer = std::thread::Builder::new()
            .name("topo-wire".into())
            .spawn_scoped(s, move || -> Result<Vec<NodeNs>, KernelError> {
                let mut fabric = SyncConn::new(&plan.fabric.netns, wire_sock);
                let mut later = Vec::new();
                // Ends when every creator has dropped its sender; on an error the namespaces
                // still in the channel are dropped here and removed by the rollback.
                for ns in rx {
                    if abort.load(Ordering::Relaxed) {
                        break; // a creator failed: the rollback removes what exists
                    }
                    let port_no = port_start[ns.index];
                    match wire_node(plan, ns, &mut fabric, bridge_index, port_no, shared) {
                        Ok(Some(ns)) => later.push(ns),
                        Ok(None) => {}
                        Err(e) => {
                            abort.store(true, Ordering::Relaxed);
                            return Err(e);
                        }
                    }
                    progress(opts, Progress::Advance(1));
                }
                Ok(later)
            })
            .map_err(|e| KernelError::io("spawn the wiring thread", e));
        let handles: Vec<_> = (0..creators)
            .map(|w| {
                let tx = tx.clone();
                std::thread::Builder::new()
                    .name(format!("topo-ns-{w}"))
                    .spawn_scoped(s, move || -> Result<(), KernelError> {
                        for i in (w..n).step_by(creators) {
                            if abort.load(Ordering::Relaxed) {
                                break;
                            }
                            let node = &plan.nodes[i];
                            let made = interrupt::check()
                                .and_then(|()| create_node_ns(node, &sd.uts_path(&node.name), shared));
                            let (fd, sock, deferred) =
                                made.inspect_err(|_| abort.store(true, Ordering::Relaxed))?;
                            if tx.send(NodeNs { index: i, fd, sock, deferred }).is_err() {
                                break; // the wiring thread stopped on an error
                            }
                        }
                        Ok(())
                    })
                    .map_err(|e| KernelError::io("spawn a namespace worker", e))
            })
            .collect();
        drop(tx);
        let joined = |r: Result<std::thread::Result<Result<(), KernelError>>, KernelError>| {
            r.and_then(|h| {
                h.unwrap_or_else(|_| Err(KernelError::Backend("namespace worker panicked".into())))
            })
        };
        let created: Vec<Result<(), KernelError>> =
            handles.into_iter().map(|h| joined(h.map(std::thread::ScopedJoinHandle::join))).collect();
        let wired = wirer.and_then(|h| {
            h.join().unwrap_or_else(|_| Err(KernelError::Backend("wiring thread panicked".into())))
        });
        (created, wired)
    });
    // The first real error wins over the Interrupted the others may have seen.
    let mut errors: Vec<KernelError> = created.into_iter().filter_map(Result::err).collect();
    let mut later = match wired {
        Ok(later) => later,
        Err(e) => {
            errors.push(e);
            Vec::new()
        }
    };
    if !errors.is_empty() {
        let first = errors.iter().position(|e| !matches!(e, KernelError::Interrupted)).unwrap_or(0);
        return Err(errors.swap_remove(first));
    }
    later.sort_by_key(|ns| ns.index);
    Ok(later)
}

/// A node's LAN attachments (veths created from the fabric with the node end directly inside
/// the node), then lo, links up, addresses, routes and interface sysctls. A node with
/// point-to-point links gets its LAN veths only and is handed back. Runs on the wiring thread,
/// which enters the node's namespace only for interface sysctls.
fn wire_node(
    plan: &Plan,
    ns: NodeNs,
    fabric: &mut SyncConn,
    bridge_index: &HashMap<&str, u32>,
    mut port_no: u32,
    shared: &Shared,
) -> Result<Option<NodeNs>, KernelError> {
    let node = &plan.nodes[ns.index];
    let mut lan = Vec::new();
    for (k, iface) in node.interfaces.iter().enumerate() {
        let Attachment::Network { bridge, port, .. } = &iface.attachment else { continue };
        let br = *bridge_index.get(bridge.as_str()).ok_or_else(|| {
            KernelError::Invalid(format!("{}.{} names unknown bridge {bridge}", node.name, iface.name))
        })?;
        let peer = single_queue(LinkMessageBuilder::<LinkUnspec>::new())
            .name(iface.name.clone())
            .address(iface.mac.0.to_vec())
            .mtu(iface.mtu)
            .index(node_ifindex(node, k))
            .setns_by_fd(ns.fd.as_raw_fd())
            .build();
        let msg = veth(port, iface.mtu, PORT_IFINDEX_BASE + port_no, None, peer).controller(br).build();
        port_no += 1;
        lan.push((
            format!("create veth {}:{} -> {port}@{bridge}", node.name, iface.name),
            RouteNetlinkMessage::NewLink(msg),
            CREATE,
        ));
    }
    let later = node.interfaces.iter().any(|i| matches!(i.attachment, Attachment::Link { .. }));
    let msgs = if later { Vec::new() } else { node_messages(node)? };
    let _gate = shared.gate();
    fail_on(fabric.run(&lan))?;
    if later {
        return Ok(Some(ns));
    }
    let NodeNs { fd, sock, deferred, .. } = ns;
    fail_on(SyncConn::new(&node.netns, sock).run(&msgs))?;
    if !deferred.is_empty() {
        nix::sched::setns(&fd, CloneFlags::CLONE_NEWNET)
            .map_err(|e| KernelError::io(format!("enter {}", node.netns), nix_io(e)))?;
    }
    for (k, v) in &deferred {
        topo_netns::write_sysctl(k, v)
            .map_err(|e| KernelError::io(format!("sysctl {k}={v} in {}", node.name), e))?;
    }
    Ok(None)
}

/// Point-to-point links: veths whose two ends are created directly in their node namespaces.
fn p2p_messages(plan: &Plan, nodes: &[NodeNs]) -> Result<Vec<Request>, KernelError> {
    let fd_of = |ni: usize| nodes.iter().find(|ns| ns.index == ni).map(|ns| ns.fd.as_raw_fd());
    let mut out = Vec::new();
    for l in &plan.links {
        let (Some(ai), Some(bi)) = (plan.node_index(&l.a.node), plan.node_index(&l.b.node)) else {
            return Err(KernelError::Invalid(format!("link {} names an unknown node", l.index)));
        };
        let (Some(a_fd), Some(b_fd)) = (fd_of(ai), fd_of(bi)) else {
            return Err(KernelError::Backend(format!("link {}: a node namespace is not open", l.index)));
        };
        let end = |ni: usize, ifname: &str| -> Result<(u32, Vec<u8>), KernelError> {
            let node = &plan.nodes[ni];
            let k = node.interfaces.iter().position(|i| i.name == ifname).ok_or_else(|| {
                KernelError::Invalid(format!("link {}: {} has no interface {ifname}", l.index, node.name))
            })?;
            Ok((node_ifindex(node, k), node.interfaces[k].mac.0.to_vec()))
        };
        let (a_idx, a_mac) = end(ai, &l.a.iface)?;
        let (b_idx, b_mac) = end(bi, &l.b.iface)?;
        let peer = single_queue(LinkMessageBuilder::<LinkUnspec>::new())
            .name(l.b.iface.clone())
            .address(b_mac)
            .mtu(l.mtu)
            .index(b_idx)
            .setns_by_fd(b_fd)
            .build();
        let msg = veth(&l.a.iface, l.mtu, a_idx, Some(a_fd), peer).address(a_mac).build();
        out.push((
            format!("create link {}:{} <-> {}:{}", l.a.node, l.a.iface, l.b.node, l.b.iface),
            RouteNetlinkMessage::NewLink(msg),
            CREATE,
        ));
    }
    Ok(out)
}

fn fail_on(errors: Vec<KernelError>) -> Result<(), KernelError> {
    first_of(errors).map_or(Ok(()), Err)
}

fn nix_io(e: nix::Error) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

fn mount_point_error(name: &str, e: io::Error) -> KernelError {
    if e.kind() == io::ErrorKind::AlreadyExists {
        KernelError::Netns(topo_netns::NetnsError::Exists(name.to_owned()))
    } else {
        KernelError::Netns(topo_netns::NetnsError::Sys {
            name: name.to_owned(),
            op: "create mount point",
            source: e,
        })
    }
}

/// A small tmpfs on the lab's `uts/` directory (recorded in the journal before).
fn mount_uts_tmpfs(sd: &StateDir) -> Result<(), KernelError> {
    let dir = sd.uts_dir();
    mount(
        Some("topo-uts"),
        &dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=0755,size=64k"),
    )
    .map_err(|e| KernelError::io(format!("mount a tmpfs on {}", dir.display()), nix_io(e)))
}

/// The fabric namespace, on its (anchor) mount point: no IPv6 on its ports (no DAD or router
/// solicitations; it only bridges), and a netlink socket inside it.
///
/// Before changing anything it reads the plan's sysctl keys: a fresh namespace's values, which
/// every node namespace starts with too, unless new namespaces inherit from the one that creates
/// them (`net.core.devconf_inherit_init_net` = 3; the creator threads make each node from inside the
/// previous one), in which case nothing is taken as given.
fn create_fabric_ns(
    name: &str,
    path: &Path,
    sockets: usize,
    keys: &[&str],
) -> Result<(Vec<OwnedFd>, HashMap<String, String>), KernelError> {
    let sys = |op: &'static str, e: io::Error| {
        KernelError::Netns(topo_netns::NetnsError::Sys { name: name.to_owned(), op, source: e })
    };
    // Only the initial namespace has this sysctl; unknown means nothing is taken as given.
    let inherit = topo_netns::read_sysctl("net.core.devconf_inherit_init_net").ok();
    let inherit = inherit.as_deref();
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("topo-fabric".into())
            .spawn_scoped(s, || {
                topo_netns::unshare_net_onto(path).map_err(|e| sys("unshare and bind mount", e))?;
                let mut fresh = HashMap::new();
                if inherit.is_some_and(|v| v != "3") {
                    for k in keys {
                        if let Ok(v) = topo_netns::read_sysctl(k) {
                            fresh.insert((*k).to_owned(), v);
                        }
                    }
                }
                for k in ["net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"] {
                    let _ = topo_netns::write_sysctl(k, "1");
                }
                // Where the host has br_netfilter loaded (Docker hosts do), every bridged frame
                // would also run the fabric's IP netfilter hooks and conntrack. The lab's bridges
                // are plain switches (faults live in the node namespaces), so skip that work.
                // The keys exist only while the module is loaded, and are per namespace.
                for k in [
                    "net.bridge.bridge-nf-call-iptables",
                    "net.bridge.bridge-nf-call-ip6tables",
                    "net.bridge.bridge-nf-call-arptables",
                ] {
                    let _ = topo_netns::write_sysctl(k, "0");
                }
                let socks = (0..sockets)
                    .map(|_| netlink::socket_here().map_err(|e| sys("netlink socket", e)))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((socks, fresh))
            })
            .map_err(|e| sys("spawn thread", e))?
            .join()
            .unwrap_or_else(|_| Err(KernelError::Backend("fabric namespace thread panicked".into())))
    })
}

/// Runs on a creator thread; leaves the thread inside the new namespaces (the thread is ours).
/// Returns the namespace's fd, a netlink socket inside it, and the sysctls that must wait for
/// interfaces.
fn create_node_ns(node: &NodePlan, uts_path: &Path, shared: &Shared) -> Result<NodeSetup, KernelError> {
    let name = node.netns.as_str();
    let sys = |op: &'static str, e: io::Error| {
        KernelError::Netns(topo_netns::NetnsError::Sys { name: name.to_owned(), op, source: e })
    };
    let path = topo_netns::path_of(name);
    let fd = topo_netns::unshare_net_onto(&path).map_err(|e| sys("unshare and bind mount", e))?;
    // Before any interface exists, so new interfaces inherit `default` (e.g. no IPv6, no DAD).
    // Values a new namespace has anyway are not written.
    let mut deferred = Vec::new();
    let todo: Vec<_> = node.sysctls.iter().filter(|(k, v)| !shared.is_fresh(k, v)).collect();
    if !todo.is_empty() {
        let results = {
            let _gate = shared.gate();
            topo_netns::write_sysctls(todo.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        };
        for ((k, v), r) in todo.into_iter().zip(results) {
            match r {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => deferred.push((k.clone(), v.clone())),
                Err(e) => return Err(KernelError::io(format!("sysctl {k}={v} in {name}"), e)),
            }
        }
    }
    let sock = netlink::socket_here().map_err(|e| sys("netlink socket", e))?;
    // The node's UTS namespace, so `hostname` inside prints the node's name.
    let uts_err =
        |op: &str, e: io::Error| KernelError::io(format!("UTS namespace of {}: {op}", node.name), e);
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(uts_path)
        .map_err(|e| uts_err("create file", e))?;
    unshare(CloneFlags::CLONE_NEWUTS).map_err(|e| uts_err("unshare", nix_io(e)))?;
    nix::unistd::sethostname(&node.hostname).map_err(|e| uts_err("sethostname", nix_io(e)))?;
    mount(Some("/proc/thread-self/ns/uts"), uts_path, None::<&str>, MsFlags::MS_BIND, None::<&str>)
        .map_err(|e| uts_err("bind mount", nix_io(e)))?;
    Ok((fd, sock, deferred))
}

type NodeSetup = (OwnedFd, OwnedFd, Vec<(String, String)>);

/// What the creator and wiring threads share.
struct Shared {
    /// Held around everything that takes the kernel's RTNL lock on our threads (netlink
    /// requests, sysctl writes). Some sysctl handlers only try the lock and restart the system
    /// call when it is taken, so a thread writing sysctls while another creates links spins and
    /// steals the CPU the lock holder needs: measured, 2 and 4 unguarded workers took 2x and 4x
    /// as long as one. Namespace creation itself runs outside the gate, in parallel.
    gate: std::sync::Mutex<()>,
    /// Sysctl values a new namespace starts with (read in the fabric before it changes any).
    fresh: HashMap<String, String>,
}

impl Shared {
    fn gate(&self) -> std::sync::MutexGuard<'_, ()> {
        self.gate.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn is_fresh(&self, key: &str, value: &str) -> bool {
        self.fresh.get(key).is_some_and(|v| v == value.trim())
    }
}

/// The index topo gives interface `k` of `node` (see [`NODE_IFINDEX_BASE`], [`P2P_IFINDEX_BASE`]).
fn node_ifindex(node: &NodePlan, k: usize) -> u32 {
    let iface = &node.interfaces[k];
    match &iface.attachment {
        Attachment::Link { link, peer_node, peer_iface } => {
            // Which end this is: the greater (node, interface) name pair takes the odd index.
            let odd = (node.name.as_str(), iface.name.as_str()) > (peer_node.as_str(), peer_iface.as_str());
            P2P_IFINDEX_BASE + 2 * *link as u32 + u32::from(odd)
        }
        Attachment::Network { .. } => NODE_IFINDEX_BASE + k as u32,
    }
}

fn first_of(errors: Vec<KernelError>) -> Option<KernelError> {
    let n = errors.len();
    let mut it = errors.into_iter();
    let first = it.next()?;
    if n == 1 {
        return Some(first);
    }
    Some(KernelError::Backend(format!("{first} (and {} more netlink error(s))", n - 1)))
}

/// One TX and one RX queue per veth end. Unasked, the kernel gives a veth one queue per
/// possible CPU, registers sysfs entries for each, then cuts the count back to one: work under
/// the RTNL lock that grows with the machine's size.
fn single_queue<T>(b: LinkMessageBuilder<T>) -> LinkMessageBuilder<T> {
    b.append_extra_attribute(LinkAttribute::NumTxQueues(1))
        .append_extra_attribute(LinkAttribute::NumRxQueues(1))
}

/// A veth whose peer is `peer`; in namespace `netns` if given, else the socket's.
fn veth(
    name: &str,
    mtu: u32,
    index: u32,
    netns: Option<RawFd>,
    peer: LinkMessage,
) -> LinkMessageBuilder<LinkVeth> {
    let mut b = single_queue(LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth))
        .name(name.to_owned())
        .mtu(mtu)
        .index(index)
        .up()
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)));
    if let Some(fd) = netns {
        b = b.setns_by_fd(fd);
    }
    b
}

/// The requests that configure one node inside its namespace.
fn node_messages(node: &NodePlan) -> Result<Vec<Request>, KernelError> {
    let mut out: Vec<Request> = Vec::new();
    out.push((
        "set lo up".into(),
        RouteNetlinkMessage::SetLink(LinkUnspec::new_with_index(LO_INDEX).up().build()),
        CHANGE,
    ));
    let mut index_of: HashMap<&str, u32> = HashMap::new();
    index_of.insert("lo", LO_INDEX);
    for (k, iface) in node.interfaces.iter().enumerate() {
        index_of.insert(iface.name.as_str(), node_ifindex(node, k));
        // The kernel refuses IFF_UP on a veth peer at creation (ENOTCONN), so node-side ends
        // come up here, right before their addresses.
        out.push((
            format!("set {} up", iface.name),
            RouteNetlinkMessage::SetLink(LinkUnspec::new_with_index(node_ifindex(node, k)).up().build()),
            CHANGE,
        ));
        for a in &iface.addresses {
            out.push((
                format!("add {a} to {}", iface.name),
                addr4(node_ifindex(node, k), a.addr(), a.prefix_len()),
                CREATE,
            ));
        }
        for a in &iface.addresses6 {
            out.push((
                format!("add {a} to {}", iface.name),
                addr6(node_ifindex(node, k), a.addr(), a.prefix_len()),
                CREATE,
            ));
        }
    }
    for a in &node.loopbacks {
        out.push((format!("add {a} to lo"), addr4(LO_INDEX, a.addr(), a.prefix_len()), CREATE));
    }
    for r in &node.routes {
        let dev = *index_of.get(r.dev.as_str()).ok_or_else(|| {
            KernelError::Invalid(format!("route to {} on {}: no interface {}", r.to, node.name, r.dev))
        })?;
        let to = r.to.trunc();
        let mut b = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(to.addr(), to.prefix_len())
            .gateway(r.via)
            .output_interface(dev);
        if let Some(m) = r.metric {
            b = b.priority(m);
        }
        let msg: RouteMessage = b.build();
        out.push((
            format!("add route {} via {} dev {}", r.to, r.via, r.dev),
            RouteNetlinkMessage::NewRoute(msg),
            CREATE,
        ));
    }
    out.extend(
        node.interfaces.iter().enumerate().map(|(k, iface)| sync_link(&iface.name, node_ifindex(node, k))),
    );
    Ok(out)
}

/// A request that makes the kernel apply a link's pending carrier change now. Setting a veth up
/// switches its carrier (and its peer's) on only in the kernel's link-watch work, which runs
/// later; until then the device drops what it sends (and a bridge port does not forward). A
/// get of the single link runs that work for it synchronously.
fn sync_link(name: &str, index: u32) -> Request {
    (
        format!("sync the carrier of {name}"),
        RouteNetlinkMessage::GetLink(LinkUnspec::new_with_index(index).build()),
        rtnetlink::packet_core::NLM_F_REQUEST,
    )
}

fn addr4(index: u32, ip: Ipv4Addr, prefix: u8) -> RouteNetlinkMessage {
    let m: AddressMessage = AddressMessageBuilder::<Ipv4Addr>::new().index(index).address(ip, prefix).build();
    RouteNetlinkMessage::NewAddress(m)
}

fn addr6(index: u32, ip: Ipv6Addr, prefix: u8) -> RouteNetlinkMessage {
    let m: AddressMessage = AddressMessageBuilder::<Ipv6Addr>::new().index(index).address(ip, prefix).build();
    RouteNetlinkMessage::NewAddress(m)
}

fn write_deferred_sysctls(plan: &Plan, nodes: &[NodeNs]) -> Result<(), KernelError> {
    if nodes.iter().all(|n| n.deferred.is_empty()) {
        return Ok(());
    }
    std::thread::scope(|s| {
        s.spawn(|| -> Result<(), KernelError> {
            for ns in nodes {
                let node = &plan.nodes[ns.index];
                if ns.deferred.is_empty() {
                    continue;
                }
                nix::sched::setns(&ns.fd, CloneFlags::CLONE_NEWNET)
                    .map_err(|e| KernelError::io(format!("enter {}", node.netns), nix_io(e)))?;
                for (k, v) in &ns.deferred {
                    topo_netns::write_sysctl(k, v)
                        .map_err(|e| KernelError::io(format!("sysctl {k}={v} in {}", node.name), e))?;
                }
            }
            Ok(())
        })
        .join()
        .unwrap_or_else(|_| Err(KernelError::Backend("sysctl thread panicked".into())))
    })
}

/// `/etc/netns/<netns>/{hosts,resolv.conf}`: every node resolves every other by name; no
/// nameserver outside the lab. Every node's files are the same, so they are written once, in
/// the state directory (`etc/`), and `/etc/netns/<netns>` is a symbolic link to that directory
/// (`ip netns exec` and `topo exec` follow it). The links are hard links of one symbolic link,
/// `/etc/netns/topo-<lab>` (the fabric's name): no inode per node on the disk filesystem.
fn write_etc_files(plan: &Plan, sd: &StateDir) -> Result<(), KernelError> {
    let mut hosts = String::from("# written by topo for lab ");
    hosts.push_str(&plan.lab);
    hosts.push_str("\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    for h in &plan.hosts {
        let _ = writeln!(hosts, "{}\t{} {}.{}", h.address, h.name, h.name, plan.lab);
    }
    let resolv = format!(
        "# written by topo: names come from /etc/hosts; no nameserver outside the lab\nsearch {}\noptions ndots:1 timeout:1 attempts:1\n",
        plan.lab
    );
    let target = sd.etc_dir();
    let io_err = |what: &str, p: &Path, e| KernelError::io(format!("{what} {}", p.display()), e);
    fs::write(target.join("hosts"), &hosts).map_err(|e| io_err("write", &target.join("hosts"), e))?;
    fs::write(target.join("resolv.conf"), &resolv)
        .map_err(|e| io_err("write", &target.join("resolv.conf"), e))?;
    let etc_netns = Path::new(topo_netns::ETC_NETNS_DIR);
    fs::create_dir_all(etc_netns).map_err(|e| io_err("create", etc_netns, e))?;
    let anchor = etc_netns.join(&plan.fabric.netns);
    // An entry of this lab's name that exists now is residue of an earlier run (the lab is
    // locked and has no namespaces): replace it.
    let replace = |p: &Path, make: &dyn Fn() -> io::Result<()>| -> Result<(), KernelError> {
        match make() {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let gone = if p.symlink_metadata().is_ok_and(|m| m.is_dir()) {
                    fs::remove_dir_all(p)
                } else {
                    fs::remove_file(p)
                };
                gone.and_then(|()| make()).map_err(|e| io_err("replace", p, e))
            }
            r => r.map_err(|e| io_err("create", p, e)),
        }
    };
    replace(&anchor, &|| std::os::unix::fs::symlink(&target, &anchor))?;
    for n in &plan.nodes {
        let link = etc_netns.join(&n.netns);
        replace(&link, &|| {
            match nix::unistd::linkat(None, &anchor, None, &link, nix::fcntl::AtFlags::empty()) {
                Ok(()) => Ok(()),
                Err(nix::Error::EEXIST) => Err(io::Error::from(io::ErrorKind::AlreadyExists)),
                // No hard links here: a symbolic link of its own.
                Err(_) => std::os::unix::fs::symlink(&target, &link),
            }
        })?;
    }
    Ok(())
}
