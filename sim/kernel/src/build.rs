//! `up`: turn a plan into namespaces, bridges, veths, addresses, routes, sysctls, UTS namespaces
//! and `/etc/netns` files, rolling everything back on failure or Ctrl-C.
//!
//! Speed comes from doing little per node: one worker thread per core creates node namespaces in
//! turn (unshare, bind mount, sysctls, a netlink socket and the UTS namespace, all while it is
//! inside the new namespace), then every netlink request is written in order on per-namespace
//! sockets and the acknowledgements are awaited together. Interface indices are chosen by us, so
//! nothing has to be looked up: addresses and routes go out right behind the links they use.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};
use rtnetlink::packet_route::address::AddressMessage;
use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVeth, LinkMessage};
use rtnetlink::packet_route::route::RouteMessage;
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::{
    AddressMessageBuilder, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder,
};
use topo_plan::{Attachment, NodePlan, Plan};

use crate::netlink::{self, Conn, CHANGE, CREATE};
use crate::state::{JournalEntry, LabMeta, Phase, StateDir};
use crate::{interrupt, teardown, KernelError, Progress, SourceInfo, UpOpts, UpReport};

/// Index of `lo` in every namespace.
const LO_INDEX: u32 = 1;
/// Node interface `k` gets index `NODE_IFINDEX_BASE + k`; well above the fallback tunnel devices
/// some kernels create in every new namespace.
const NODE_IFINDEX_BASE: u32 = 1000;
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

/// What the namespace workers hand back for one node.
struct NodeNs {
    /// Keeps the namespace open (and gives veth creation a target fd).
    fd: OwnedFd,
    /// A netlink socket inside the namespace (taken by the connection that uses it).
    sock: Option<OwnedFd>,
    /// Sysctls that name interfaces, written once the interfaces exist.
    deferred: Vec<(String, String)>,
}

fn build(plan: &Plan, sd: &StateDir, opts: &UpOpts) -> Result<(), KernelError> {
    interrupt::check()?;
    netlink::raise_fd_limit();
    for d in [sd.uts_dir(), sd.nodes_dir(), sd.pids_dir()] {
        fs::create_dir_all(&d).map_err(|e| KernelError::io(format!("create {}", d.display()), e))?;
    }
    let mut journal = sd.journal()?;
    // Write-ahead: every namespace and UTS file is on record before the first is made.
    let mut entries = vec![JournalEntry::Netns { name: plan.fabric.netns.clone() }];
    for n in &plan.nodes {
        entries.push(JournalEntry::Netns { name: n.netns.clone() });
        entries.push(JournalEntry::Uts { path: sd.uts_path(&n.name) });
    }
    journal.record(&entries)?;

    let t = Instant::now();
    let lap = |what: &str| tracing::debug!(lab = %plan.lab, phase = what, ms = t.elapsed().as_secs_f64() * 1e3, "up");
    progress(opts, Progress::Phase { name: "namespaces", total: plan.nodes.len() as u64 + 1 });
    let fabric = topo_netns::Netns::create(&plan.fabric.netns)?;
    let fabric_sock = fabric
        .run(|| -> io::Result<OwnedFd> {
            // The fabric only bridges: no IPv6 on its ports means no DAD or router solicitations.
            for k in ["net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"] {
                let _ = topo_netns::write_sysctl(k, "1");
            }
            netlink::socket_here()
        })?
        .map_err(|e| KernelError::io(format!("netlink socket in {}", plan.fabric.netns), e))?;
    progress(opts, Progress::Advance(1));
    let mut nodes = create_node_namespaces(plan, sd, opts)?;
    lap("namespaces");
    interrupt::check()?;

    progress(opts, Progress::Phase { name: "links", total: (plan.nodes.len() + plan.links.len()) as u64 });
    // The /etc/netns files are independent of the links: write them on another thread meanwhile
    // (recorded in the journal first, like everything else).
    let etc: Vec<JournalEntry> = plan
        .nodes
        .iter()
        .map(|n| JournalEntry::Etc { path: Path::new(topo_netns::ETC_NETNS_DIR).join(&n.netns) })
        .collect();
    journal.record(&etc)?;
    let (wired, files) = std::thread::scope(|s| {
        let files = s.spawn(|| write_etc_files(plan));
        let wired = netlink::runtime()
            .and_then(|rt| rt.block_on(wire(plan, &plan.fabric.netns, fabric_sock, &mut nodes, opts)));
        (wired, files.join().unwrap_or_else(|_| Err(KernelError::Backend("file writer panicked".into()))))
    });
    wired?;
    files?;
    lap("netlink and files");
    progress(opts, Progress::Phase { name: "files", total: plan.nodes.len() as u64 });
    progress(opts, Progress::Advance(plan.nodes.len() as u64));
    interrupt::check()?;

    // Sysctls that name interfaces (user-given, e.g. net.ipv4.conf.eth0.*).
    if nodes.iter().any(|n| !n.deferred.is_empty()) {
        write_deferred_sysctls(plan, &nodes)?;
    }
    drop(nodes);

    progress(opts, Progress::Phase { name: "services", total: plan.start_order.len() as u64 });
    crate::hooks::start(plan, &sd.dir, opts)?;
    lap("services");
    interrupt::check()?;
    Ok(())
}

/// Create every node namespace (and its UTS namespace) on a few worker threads.
fn create_node_namespaces(plan: &Plan, sd: &StateDir, opts: &UpOpts) -> Result<Vec<NodeNs>, KernelError> {
    let n = plan.nodes.len();
    // TOPO_NS_WORKERS overrides the count (for measurements).
    let workers = std::env::var("TOPO_NS_WORKERS")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, std::num::NonZero::get).clamp(1, 4))
        .clamp(1, 64)
        .min(n.max(1));
    let abort = AtomicBool::new(false);
    let results: Vec<Result<Vec<(usize, NodeNs)>, KernelError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let abort = &abort;
                std::thread::Builder::new()
                    .name(format!("topo-ns-{w}"))
                    .spawn_scoped(s, move || {
                        let mut out = Vec::new();
                        for i in (w..n).step_by(workers) {
                            if abort.load(Ordering::Relaxed) {
                                break;
                            }
                            let node = &plan.nodes[i];
                            let r = interrupt::check()
                                .and_then(|()| create_node_ns(node, &sd.uts_path(&node.name)));
                            match r {
                                Ok(ns) => out.push((i, ns)),
                                Err(e) => {
                                    abort.store(true, Ordering::Relaxed);
                                    return Err(e);
                                }
                            }
                            progress(opts, Progress::Advance(1));
                        }
                        Ok(out)
                    })
                    .map_err(|e| KernelError::io("spawn a namespace worker", e))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.and_then(|h| {
                    h.join().unwrap_or_else(|_| Err(KernelError::Backend("namespace worker panicked".into())))
                })
            })
            .collect()
    });
    let mut slots: Vec<Option<NodeNs>> = (0..n).map(|_| None).collect();
    let mut first_err = None;
    for r in results {
        match r {
            Ok(v) => {
                for (i, ns) in v {
                    slots[i] = Some(ns);
                }
            }
            Err(e) => {
                if first_err.is_none() || matches!(first_err, Some(KernelError::Interrupted)) {
                    first_err = Some(e);
                }
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    slots
        .into_iter()
        .map(|s| s.ok_or_else(|| KernelError::Backend("a node namespace was not created".into())))
        .collect()
}

fn nix_io(e: nix::Error) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

/// Runs on a worker thread; leaves the thread inside the new namespaces (the thread is ours).
fn create_node_ns(node: &NodePlan, uts_path: &Path) -> Result<NodeNs, KernelError> {
    let name = node.netns.as_str();
    let sys = |op: &'static str, e: io::Error| {
        KernelError::Netns(topo_netns::NetnsError::Sys { name: name.to_owned(), op, source: e })
    };
    let path = topo_netns::path_of(name);
    match OpenOptions::new().write(true).create_new(true).open(&path) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(KernelError::Netns(topo_netns::NetnsError::Exists(name.to_owned())))
        }
        Err(e) => return Err(sys("create mount point", e)),
    }
    unshare(CloneFlags::CLONE_NEWNET).map_err(|e| sys("unshare", nix_io(e)))?;
    mount(Some("/proc/thread-self/ns/net"), &path, None::<&str>, MsFlags::MS_BIND, None::<&str>)
        .map_err(|e| sys("bind mount", nix_io(e)))?;
    let fd: OwnedFd = File::open("/proc/thread-self/ns/net").map_err(|e| sys("open", e))?.into();
    // Before any interface exists, so new interfaces inherit `default` (e.g. no IPv6, no DAD).
    let mut deferred = Vec::new();
    for (k, v) in &node.sysctls {
        match topo_netns::write_sysctl(k, v) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => deferred.push((k.clone(), v.clone())),
            Err(e) => return Err(KernelError::io(format!("sysctl {k}={v} in {name}"), e)),
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
    Ok(NodeNs { fd, sock: Some(sock), deferred })
}

fn node_ifindex(k: usize) -> u32 {
    NODE_IFINDEX_BASE + k as u32
}

/// All netlink work: bridges and veths from the fabric socket, then per-node links up,
/// addresses and routes, every namespace at once.
async fn wire(
    plan: &Plan,
    fabric_ns: &str,
    fabric_sock: OwnedFd,
    nodes: &mut [NodeNs],
    opts: &UpOpts,
) -> Result<(), KernelError> {
    let mut fabric = Conn::new(fabric_ns, fabric_sock)
        .map_err(|e| KernelError::io(format!("netlink in {fabric_ns}"), e))?;
    let bridge_index: HashMap<&str, u32> = plan
        .fabric
        .bridges
        .iter()
        .enumerate()
        .map(|(i, b)| (b.ifname.as_str(), BRIDGE_IFINDEX_BASE + i as u32))
        .collect();
    let mut futs = Vec::new();
    for (i, b) in plan.fabric.bridges.iter().enumerate() {
        let msg = LinkBridge::new(&b.ifname).mtu(b.mtu).index(BRIDGE_IFINDEX_BASE + i as u32).build();
        futs.push(fabric.send(
            format!("create bridge {}", b.ifname),
            RouteNetlinkMessage::NewLink(msg),
            CREATE,
        ));
    }
    // LAN attachments: the port stays in the fabric (enslaved, up), the peer is created
    // directly inside the node's namespace.
    let mut port_no = 0u32;
    for (ni, node) in plan.nodes.iter().enumerate() {
        for (k, iface) in node.interfaces.iter().enumerate() {
            let Attachment::Network { bridge, port, .. } = &iface.attachment else { continue };
            let br = *bridge_index.get(bridge.as_str()).ok_or_else(|| {
                KernelError::Invalid(format!("{}.{} names unknown bridge {bridge}", node.name, iface.name))
            })?;
            let peer = LinkMessageBuilder::<LinkUnspec>::new()
                .name(iface.name.clone())
                .address(iface.mac.0.to_vec())
                .mtu(iface.mtu)
                .index(node_ifindex(k))
                .setns_by_fd(nodes[ni].fd.as_raw_fd())
                .build();
            let msg = veth(port, iface.mtu, PORT_IFINDEX_BASE + port_no, None, peer).controller(br).build();
            port_no += 1;
            futs.push(fabric.send(
                format!("create veth {}:{} -> {port}@{bridge}", node.name, iface.name),
                RouteNetlinkMessage::NewLink(msg),
                CREATE,
            ));
        }
    }
    // Point-to-point links: both ends created directly in their node namespaces.
    let index_of = |node: &str| plan.node_index(node);
    for l in &plan.links {
        let (Some(ai), Some(bi)) = (index_of(&l.a.node), index_of(&l.b.node)) else {
            return Err(KernelError::Invalid(format!("link {} names an unknown node", l.index)));
        };
        let end = |ni: usize, ifname: &str| -> Result<(u32, Vec<u8>), KernelError> {
            let node = &plan.nodes[ni];
            let k = node.interfaces.iter().position(|i| i.name == ifname).ok_or_else(|| {
                KernelError::Invalid(format!("link {}: {} has no interface {ifname}", l.index, node.name))
            })?;
            Ok((node_ifindex(k), node.interfaces[k].mac.0.to_vec()))
        };
        let (a_idx, a_mac) = end(ai, &l.a.iface)?;
        let (b_idx, b_mac) = end(bi, &l.b.iface)?;
        let peer = LinkMessageBuilder::<LinkUnspec>::new()
            .name(l.b.iface.clone())
            .address(b_mac)
            .mtu(l.mtu)
            .index(b_idx)
            .setns_by_fd(nodes[bi].fd.as_raw_fd())
            .build();
        let msg = veth(&l.a.iface, l.mtu, a_idx, Some(nodes[ai].fd.as_raw_fd()), peer).address(a_mac).build();
        futs.push(fabric.send(
            format!("create link {}:{} <-> {}:{}", l.a.node, l.a.iface, l.b.node, l.b.iface),
            RouteNetlinkMessage::NewLink(msg),
            CREATE,
        ));
    }
    let errors = netlink::settle(futs).await;
    if let Some(e) = first_of(errors) {
        return Err(e);
    }
    progress(opts, Progress::Advance(plan.links.len() as u64));

    // Per node: lo up, addresses, routes — in that order on the node's own socket.
    let mut futs = Vec::new();
    // The connections must outlive the requests: dropping the last handle ends a connection.
    let mut conns = Vec::with_capacity(nodes.len());
    for (node, ns) in plan.nodes.iter().zip(nodes.iter_mut()) {
        let fd = ns.sock.take().ok_or_else(|| KernelError::Backend("netlink socket used twice".into()))?;
        let mut c = Conn::new(&node.netns, fd)
            .map_err(|e| KernelError::io(format!("netlink in {}", node.netns), e))?;
        for (what, msg, flags) in node_messages(node)? {
            futs.push(c.send(what, msg, flags));
        }
        conns.push(c);
    }
    let errors = netlink::settle(futs).await;
    drop(conns);
    if let Some(e) = first_of(errors) {
        return Err(e);
    }
    progress(opts, Progress::Advance(plan.nodes.len() as u64));
    Ok(())
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

/// A veth whose peer is `peer`; in namespace `netns` if given, else the socket's.
fn veth(
    name: &str,
    mtu: u32,
    index: u32,
    netns: Option<RawFd>,
    peer: LinkMessage,
) -> LinkMessageBuilder<LinkVeth> {
    let mut b = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
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

type Request = (String, RouteNetlinkMessage, u16);

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
        index_of.insert(iface.name.as_str(), node_ifindex(k));
        // The kernel refuses IFF_UP on a veth peer at creation (ENOTCONN), so node-side ends
        // come up here, right before their addresses.
        out.push((
            format!("set {} up", iface.name),
            RouteNetlinkMessage::SetLink(LinkUnspec::new_with_index(node_ifindex(k)).up().build()),
            CHANGE,
        ));
        for a in &iface.addresses {
            out.push((
                format!("add {a} to {}", iface.name),
                addr4(node_ifindex(k), a.addr(), a.prefix_len()),
                CREATE,
            ));
        }
        for a in &iface.addresses6 {
            out.push((
                format!("add {a} to {}", iface.name),
                addr6(node_ifindex(k), a.addr(), a.prefix_len()),
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
    Ok(out)
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
    std::thread::scope(|s| {
        s.spawn(|| -> Result<(), KernelError> {
            for (node, ns) in plan.nodes.iter().zip(nodes) {
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
/// nameserver outside the lab.
fn write_etc_files(plan: &Plan) -> Result<(), KernelError> {
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
    for n in &plan.nodes {
        let dir = Path::new(topo_netns::ETC_NETNS_DIR).join(&n.netns);
        let io_err = |what: &str, e| KernelError::io(format!("{what} {}", dir.display()), e);
        fs::create_dir_all(&dir).map_err(|e| io_err("create", e))?;
        fs::write(dir.join("hosts"), &hosts).map_err(|e| io_err("write hosts in", e))?;
        fs::write(dir.join("resolv.conf"), &resolv).map_err(|e| io_err("write resolv.conf in", e))?;
    }
    Ok(())
}
