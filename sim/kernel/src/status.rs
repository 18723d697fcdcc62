//! `status`: what the kernel says about a lab's nodes (interfaces, addresses, link state,
//! processes), next to the fault state and daemon health.

use std::collections::{BTreeMap, HashMap};
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;

use nix::sched::CloneFlags;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkMessage, State};
use rtnetlink::packet_route::RouteNetlinkMessage;

use crate::netlink::{self, Conn};
use crate::state::StateDir;
use crate::{hooks, IfaceStatus, KernelError, LabStatus, NodeStatus};

pub fn status(lab: &str) -> Result<LabStatus, KernelError> {
    let sd = StateDir::new(lab);
    if !sd.exists() {
        return Err(KernelError::NotUp(lab.to_owned()));
    }
    let meta = sd.read_meta()?;
    let plan = sd.read_plan()?;
    let faults = sd.read_faults()?;
    let phase =
        serde_json::to_value(meta.phase).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();

    // Open every node namespace that exists; one thread enters each in turn for a socket.
    let mut opened: Vec<Option<topo_netns::Netns>> = Vec::new();
    for n in &plan.nodes {
        opened.push(topo_netns::Netns::open(&n.netns).ok());
    }
    let socks: Vec<Option<OwnedFd>> = std::thread::scope(|s| {
        s.spawn(|| {
            opened
                .iter()
                .map(|ns| {
                    let ns = ns.as_ref()?;
                    nix::sched::setns(ns.fd(), CloneFlags::CLONE_NEWNET).ok()?;
                    netlink::socket_here().ok()
                })
                .collect()
        })
        .join()
        .unwrap_or_default()
    });
    let rt = netlink::runtime()?;
    let dumps: Vec<Option<(Vec<LinkMessage>, Vec<AddressMessage>)>> = rt.block_on(async {
        let mut futs = Vec::new();
        for (node, sock) in plan.nodes.iter().zip(socks) {
            let Some(sock) = sock else {
                futs.push(None);
                continue;
            };
            let Ok(mut c) = Conn::new(&node.netns, sock) else {
                futs.push(None);
                continue;
            };
            // One dump at a time per socket (a second one gets EBUSY); the connection lives as
            // long as its handle, so it moves into the future.
            futs.push(Some(async move {
                let links = c.dump(RouteNetlinkMessage::GetLink(LinkMessage::default())).await;
                let addrs = c.dump(RouteNetlinkMessage::GetAddress(AddressMessage::default())).await;
                (links, addrs)
            }));
        }
        let mut out = Vec::new();
        for f in futs {
            out.push(match f {
                None => None,
                Some(f) => match f.await {
                    (Ok(l), Ok(a)) => {
                        let links = l.into_iter().filter_map(|m| match m {
                            RouteNetlinkMessage::NewLink(l) => Some(l),
                            _ => None,
                        });
                        let addrs = a.into_iter().filter_map(|m| match m {
                            RouteNetlinkMessage::NewAddress(a) => Some(a),
                            _ => None,
                        });
                        Some((links.collect(), addrs.collect()))
                    }
                    (l, a) => {
                        tracing::debug!(links = ?l.err(), addrs = ?a.err(), "status dump failed");
                        None
                    }
                },
            });
        }
        out
    });
    drop(rt);

    // Process counts: one pass over /proc.
    let inode_of: HashMap<u64, usize> =
        opened.iter().enumerate().filter_map(|(i, ns)| Some((ns.as_ref()?.inode().ok()?, i))).collect();
    let mut procs = vec![0usize; plan.nodes.len()];
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
            if let Ok(md) = std::fs::metadata(format!("/proc/{pid}/ns/net")) {
                if let Some(&i) = inode_of.get(&md.ino()) {
                    procs[i] += 1;
                }
            }
        }
    }
    let mut health: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (node, line) in hooks::health(&plan, &sd.dir) {
        health.entry(node).or_default().push(line);
    }

    let nodes = plan
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| NodeStatus {
            name: n.name.clone(),
            netns: n.netns.clone(),
            present: opened[i].is_some(),
            interfaces: dumps[i].as_ref().map(|(l, a)| interfaces(l, a)).unwrap_or_default(),
            processes: procs[i],
            daemons: health.remove(&n.name).unwrap_or_default(),
        })
        .collect();
    // Keep the namespaces open until here so inodes stayed valid.
    drop(opened);
    Ok(LabStatus { lab: lab.to_owned(), phase, source: meta.source_path, nodes, faults })
}

fn interfaces(links: &[LinkMessage], addrs: &[AddressMessage]) -> Vec<IfaceStatus> {
    let mut out: Vec<(u32, IfaceStatus)> = links
        .iter()
        .map(|l| {
            let mut st = IfaceStatus {
                name: String::new(),
                mac: String::new(),
                mtu: 0,
                oper: "unknown".into(),
                admin_up: l.header.flags.contains(LinkFlags::Up),
                addresses: Vec::new(),
            };
            for a in &l.attributes {
                match a {
                    LinkAttribute::IfName(n) => st.name.clone_from(n),
                    LinkAttribute::Address(m) if m.len() == 6 => {
                        st.mac = m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
                    }
                    LinkAttribute::Mtu(m) => st.mtu = *m,
                    LinkAttribute::OperState(s) => st.oper = oper_name(*s).into(),
                    _ => {}
                }
            }
            (l.header.index, st)
        })
        .collect();
    for a in addrs {
        let ip = a.attributes.iter().find_map(|x| match x {
            AddressAttribute::Local(ip) => Some(*ip),
            _ => None,
        });
        let ip = ip.or_else(|| {
            a.attributes.iter().find_map(|x| match x {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            })
        });
        if let (Some(ip), Some((_, st))) = (ip, out.iter_mut().find(|(i, _)| *i == a.header.index)) {
            st.addresses.push(format!("{ip}/{}", a.header.prefix_len));
        }
    }
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, s)| s).collect()
}

fn oper_name(s: State) -> &'static str {
    match s {
        State::Up => "up",
        State::Down => "down",
        State::LowerLayerDown => "lowerlayerdown",
        State::Dormant => "dormant",
        State::NotPresent => "notpresent",
        State::Testing => "testing",
        _ => "unknown",
    }
}
