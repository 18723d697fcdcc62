//! Small labs for this crate's tests and benchmark, built with `ip -batch` from a hand-made
//! [`Plan`] (independent of the plan compiler and of `topo up`). Namespaces are named
//! `tpr-<lab>.<node>` (fabric `tpr-<lab>`) and removed on drop, also when a test fails.
//! Not a public API.

// Scripts for `ip -batch` read best as formatted lines pushed in order.
#![allow(clippy::format_push_string, clippy::format_collect)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::process::{Command, Output, Stdio};

use ipnet::Ipv4Net;
use topo_plan::{
    Attachment, BridgePlan, Fabric, IfacePlan, LinkEndPlan, LinkPlan, Mac, NodePlan, Plan, RouteOrigin,
    RoutePlan, PLAN_VERSION,
};
use topo_spec::NodeKind;

/// A running test lab; dropping it deletes its namespaces.
pub struct TestLab {
    pub plan: Plan,
    namespaces: Vec<String>,
}

#[derive(Clone)]
enum Att {
    Lan,
    P2p { peer: String, peer_if: String },
}

struct If {
    name: String,
    addr: Ipv4Net,
    att: Att,
}

struct NodeSpec {
    name: String,
    router: bool,
    ifaces: Vec<If>,
    routes: Vec<(Ipv4Net, Ipv4Addr, String)>,
    masquerade: Vec<String>,
}

fn net(s: &str) -> Ipv4Net {
    s.parse().expect("literal network")
}

fn host(name: &str) -> NodeSpec {
    NodeSpec {
        name: name.into(),
        router: false,
        ifaces: Vec::new(),
        routes: Vec::new(),
        masquerade: Vec::new(),
    }
}

fn router(name: &str) -> NodeSpec {
    NodeSpec { router: true, ..host(name) }
}

fn p2p(name: &str, addr: &str, peer: &str, peer_if: &str) -> If {
    If { name: name.into(), addr: net(addr), att: Att::P2p { peer: peer.into(), peer_if: peer_if.into() } }
}

fn route(dst: &str, via: &str, dev: &str) -> (Ipv4Net, Ipv4Addr, String) {
    (net(dst), via.parse().expect("literal address"), dev.into())
}

impl TestLab {
    /// `n` hosts `h1..hn` on one LAN (10.0.0.0/16). With `static_neigh`, every host gets a
    /// permanent neighbour entry for every other one: the kernel's neighbour table is global
    /// (gc_thresh3 = 1024 entries for all namespaces together), so all-pairs traffic on a
    /// LAN of more than ~32 hosts cannot resolve addresses dynamically within seconds.
    pub fn lan(lab: &str, n: usize, static_neigh: bool) -> io::Result<TestLab> {
        let nodes = (1..=n)
            .map(|i| {
                let mut h = host(&format!("h{i}"));
                let a = Ipv4Addr::new(10, 0, (i / 250) as u8, (i % 250) as u8 + 1);
                h.ifaces.push(If {
                    name: "eth0".into(),
                    addr: Ipv4Net::new(a, 16).expect("prefix"),
                    att: Att::Lan,
                });
                h
            })
            .collect();
        build(lab, nodes, static_neigh)
    }

    /// `a - r1 - ... - rk - b` over point-to-point links `10.9.<i>.0/24`, static routes both ways.
    pub fn chain(lab: &str, routers: usize) -> io::Result<TestLab> {
        let names: Vec<String> = std::iter::once("a".to_owned())
            .chain((1..=routers).map(|i| format!("r{i}")))
            .chain(std::iter::once("b".to_owned()))
            .collect();
        let last = names.len() - 1;
        let mut nodes: Vec<NodeSpec> = names
            .iter()
            .enumerate()
            .map(|(i, n)| if i == 0 || i == last { host(n) } else { router(n) })
            .collect();
        // Link i joins names[i] (.1, eth1 / "right") and names[i+1] (.2, eth0 / "left").
        for i in 0..last {
            let (l, r) = (names[i].clone(), names[i + 1].clone());
            nodes[i].ifaces.push(p2p("right", &format!("10.9.{i}.1/24"), &r, "left"));
            nodes[i + 1].ifaces.push(p2p("left", &format!("10.9.{i}.2/24"), &l, "right"));
        }
        for (i, node) in nodes.iter_mut().enumerate() {
            for j in 0..last {
                let dst = format!("10.9.{j}.0/24");
                if j + 1 < i {
                    // Subnet on the left: via the left neighbour's right address.
                    node.routes.push(route(&dst, &format!("10.9.{}.1", i - 1), "left"));
                } else if j > i {
                    node.routes.push(route(&dst, &format!("10.9.{i}.2"), "right"));
                }
            }
        }
        build(lab, nodes, false)
    }

    /// `a (10.1.0.2) - r - b (10.2.0.2)`; with `masquerade`, r source-NATs what leaves towards b.
    pub fn nat(lab: &str, masquerade: bool) -> io::Result<TestLab> {
        let mut a = host("a");
        a.ifaces.push(p2p("eth0", "10.1.0.2/24", "r", "ra"));
        a.routes.push(route("10.2.0.0/24", "10.1.0.1", "eth0"));
        let mut b = host("b");
        b.ifaces.push(p2p("eth0", "10.2.0.2/24", "r", "rb"));
        b.routes.push(route("10.1.0.0/24", "10.2.0.1", "eth0"));
        let mut r = router("r");
        r.ifaces.push(p2p("ra", "10.1.0.1/24", "a", "eth0"));
        r.ifaces.push(p2p("rb", "10.2.0.1/24", "b", "eth0"));
        if masquerade {
            r.masquerade.push("rb".into());
        }
        build(lab, vec![a, r, b], false)
    }

    /// Give every LAN member a permanent neighbour entry for every other member of its network
    /// (what `lan(.., true)` does at build time).
    pub fn install_static_neighbours(&self) -> io::Result<()> {
        let members: Vec<(&str, Ipv4Addr, Mac)> = self
            .plan
            .nodes
            .iter()
            .flat_map(|n| n.interfaces.iter())
            .filter_map(|i| match &i.attachment {
                Attachment::Network { network, .. } => {
                    i.addresses.first().map(|a| (network.as_str(), a.addr(), i.mac))
                }
                Attachment::Link { .. } => None,
            })
            .collect();
        for n in &self.plan.nodes {
            let mut sc = String::new();
            for i in &n.interfaces {
                let Attachment::Network { network, .. } = &i.attachment else { continue };
                for (net, addr, mac) in &members {
                    if net == network && !i.addresses.iter().any(|a| a.addr() == *addr) {
                        sc.push_str(&format!(
                            "neigh replace {addr} lladdr {mac} dev {} nud permanent\n",
                            i.name
                        ));
                    }
                }
            }
            if !sc.is_empty() {
                ip_batch(Some(&n.netns), &sc)?;
            }
        }
        Ok(())
    }

    pub fn ns(&self, node: &str) -> &str {
        &self.plan.node(node).expect("test lab node").netns
    }

    /// Run `sh -c script` inside a node.
    pub fn sh(&self, node: &str, script: &str) -> io::Result<Output> {
        Command::new("ip").args(["netns", "exec", self.ns(node), "sh", "-c", script]).output()
    }
}

impl Drop for TestLab {
    fn drop(&mut self) {
        let script: String = self.namespaces.iter().map(|n| format!("netns del {n}\n")).collect();
        if let Err(e) = ip_batch(None, &script) {
            eprintln!("testlab {}: cleanup: {e}", self.plan.lab);
            for n in &self.namespaces {
                let _ = topo_netns::delete(n);
            }
        }
    }
}

fn ip_batch(ns: Option<&str>, script: &str) -> io::Result<()> {
    let mut cmd = Command::new("ip");
    if let Some(ns) = ns {
        cmd.args(["-n", ns]);
    }
    cmd.args(["-batch", "-"]).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    child.stdin.take().ok_or_else(|| io::Error::other("no stdin"))?.write_all(script.as_bytes())?;
    let out = child.wait_with_output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "ip{} -batch failed: {}",
            ns.map(|n| format!(" -n {n}")).unwrap_or_default(),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

fn build(lab: &str, specs: Vec<NodeSpec>, static_neigh: bool) -> io::Result<TestLab> {
    let fabric = format!("tpr-{lab}");
    let nsname = |n: &str| format!("tpr-{lab}.{n}");
    let mut lab_out = TestLab { plan: empty_plan(lab, &fabric), namespaces: vec![fabric.clone()] };
    let mut root = format!("netns add {fabric}\n");
    for s in &specs {
        root.push_str(&format!("netns add {}\n", nsname(&s.name)));
        lab_out.namespaces.push(nsname(&s.name));
    }
    let mut mac_of: BTreeMap<(String, String), Mac> = BTreeMap::new();
    for (ni, s) in specs.iter().enumerate() {
        for (ii, i) in s.ifaces.iter().enumerate() {
            mac_of.insert(
                (s.name.clone(), i.name.clone()),
                Mac([2, 0x70, (ni >> 8) as u8, ni as u8, ii as u8, 1]),
            );
        }
    }
    let mut fabric_script = String::from("link add br0 type bridge\nlink set br0 up\n");
    let mut port = 0usize;
    let mut done_links: BTreeSet<(String, String)> = BTreeSet::new();
    let mut links: Vec<LinkPlan> = Vec::new();
    let mut lan_members: Vec<(Ipv4Addr, Mac)> = Vec::new();
    for s in &specs {
        let mut ifaces = Vec::new();
        for i in &s.ifaces {
            let mac = mac_of[&(s.name.clone(), i.name.clone())];
            let attachment = match &i.att {
                Att::Lan => {
                    port += 1;
                    let p = format!("p{port}");
                    root.push_str(&format!(
                        "link add {} address {mac} netns {} type veth peer name {p} netns {fabric}\n",
                        i.name,
                        nsname(&s.name)
                    ));
                    fabric_script.push_str(&format!("link set {p} master br0\nlink set {p} up\n"));
                    lan_members.push((i.addr.addr(), mac));
                    Attachment::Network { network: "lan".into(), bridge: "br0".into(), port: p }
                }
                Att::P2p { peer, peer_if } => {
                    let key = if s.name < *peer {
                        (format!("{}/{}", s.name, i.name), format!("{peer}/{peer_if}"))
                    } else {
                        (format!("{peer}/{peer_if}"), format!("{}/{}", s.name, i.name))
                    };
                    let index = if done_links.insert(key) {
                        let pmac = mac_of[&(peer.clone(), peer_if.clone())];
                        root.push_str(&format!(
                            "link add {} address {mac} netns {} type veth peer name {peer_if} address {pmac} netns {}\n",
                            i.name,
                            nsname(&s.name),
                            nsname(peer)
                        ));
                        let peer_addr = specs
                            .iter()
                            .find(|x| x.name == *peer)
                            .and_then(|x| x.ifaces.iter().find(|y| y.name == *peer_if))
                            .map_or(i.addr, |y| y.addr);
                        links.push(LinkPlan {
                            index: links.len(),
                            a: LinkEndPlan { node: s.name.clone(), iface: i.name.clone(), address: i.addr },
                            b: LinkEndPlan { node: peer.clone(), iface: peer_if.clone(), address: peer_addr },
                            subnet: i.addr.trunc(),
                            mtu: 1500,
                            impair_ab: topo_spec::Impairment::default(),
                            impair_ba: topo_spec::Impairment::default(),
                        });
                        links.len() - 1
                    } else {
                        links
                            .iter()
                            .position(|l| l.b.node == s.name && l.b.iface == i.name)
                            .unwrap_or_default()
                    };
                    Attachment::Link { link: index, peer_node: peer.clone(), peer_iface: peer_if.clone() }
                }
            };
            ifaces.push(IfacePlan {
                name: i.name.clone(),
                mac,
                mtu: 1500,
                addresses: vec![i.addr],
                addresses6: Vec::new(),
                dhcp: false,
                attachment,
            });
        }
        lab_out.plan.nodes.push(NodePlan {
            name: s.name.clone(),
            netns: nsname(&s.name),
            hostname: s.name.clone(),
            kind: if s.router { NodeKind::Router } else { NodeKind::Host },
            groups: Vec::new(),
            labels: BTreeMap::new(),
            interfaces: ifaces,
            loopbacks: Vec::new(),
            routes: s
                .routes
                .iter()
                .map(|(to, via, dev)| RoutePlan {
                    to: *to,
                    via: *via,
                    dev: dev.clone(),
                    metric: None,
                    origin: RouteOrigin::Static,
                })
                .collect(),
            sysctls: if s.router {
                BTreeMap::from([("net.ipv4.ip_forward".to_owned(), "1".to_owned())])
            } else {
                BTreeMap::new()
            },
            depends_on: Vec::new(),
            routing: None,
            masquerade: s.masquerade.clone(),
        });
    }
    lab_out.plan.links = links;
    lab_out.plan.start_order = (0..specs.len()).collect();
    ip_batch(None, &root)?;
    ip_batch(Some(&fabric), &fabric_script)?;
    for n in &lab_out.plan.nodes {
        let mut sc = String::from("link set lo up\n");
        for i in &n.interfaces {
            for a in &i.addresses {
                sc.push_str(&format!("addr add {a} dev {}\n", i.name));
            }
            sc.push_str(&format!("link set {} up\n", i.name));
            if static_neigh && matches!(i.attachment, Attachment::Network { .. }) {
                for (addr, mac) in &lan_members {
                    if !i.addresses.iter().any(|a| a.addr() == *addr) {
                        sc.push_str(&format!(
                            "neigh replace {addr} lladdr {mac} dev {} nud permanent\n",
                            i.name
                        ));
                    }
                }
            }
        }
        for r in &n.routes {
            sc.push_str(&format!("route add {} via {} dev {}\n", r.to, r.via, r.dev));
        }
        ip_batch(Some(&n.netns), &sc)?;
        if !n.sysctls.is_empty() {
            let ns = topo_netns::Netns::open(&n.netns).map_err(io::Error::other)?;
            let kv: Vec<(String, String)> = n.sysctls.clone().into_iter().collect();
            ns.run(move || kv.iter().try_for_each(|(k, v)| topo_netns::write_sysctl(k, v)))
                .map_err(io::Error::other)??;
        }
        for m in &n.masquerade {
            let rules = format!(
                "table ip tpr {{\n chain post {{\n type nat hook postrouting priority 100;\n oifname \"{m}\" masquerade\n }}\n}}\n"
            );
            let mut child = Command::new("ip")
                .args(["netns", "exec", &n.netns, "nft", "-f", "-"])
                .stdin(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()?;
            child.stdin.take().ok_or_else(|| io::Error::other("no stdin"))?.write_all(rules.as_bytes())?;
            let out = child.wait_with_output()?;
            if !out.status.success() {
                return Err(io::Error::other(format!(
                    "nft masquerade: {}",
                    String::from_utf8_lossy(&out.stderr)
                )));
            }
        }
    }
    Ok(lab_out)
}

fn empty_plan(lab: &str, fabric: &str) -> Plan {
    Plan {
        version: PLAN_VERSION,
        lab: lab.to_owned(),
        fabric: Fabric {
            netns: fabric.to_owned(),
            bridges: vec![BridgePlan {
                network: "lan".into(),
                ifname: "br0".into(),
                mtu: 1500,
                subnet: net("10.0.0.0/16"),
                subnet6: None,
                gateway: None,
                gateway_node: None,
            }],
        },
        nodes: Vec::new(),
        links: Vec::new(),
        hosts: Vec::new(),
        start_order: Vec::new(),
    }
}
