//! Test support (not part of the API): a hand-built OSPF triangle plan, and a lab builder that
//! realizes a plan with `ip` commands so the daemons can be tested without the kernel backend.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use ipnet::Ipv4Net;
use topo_plan::{
    Attachment, Fabric, IfacePlan, LinkEndPlan, LinkPlan, Mac, NodePlan, OspfIfacePlan, OspfPlan, Plan,
    RoutingPlan, PLAN_VERSION,
};
use topo_spec::{NodeKind, RoutingDaemon};

fn node(lab: &str, name: &str, kind: NodeKind) -> NodePlan {
    NodePlan {
        name: name.into(),
        netns: format!("topo-{lab}.{name}"),
        hostname: name.into(),
        kind,
        groups: vec![],
        labels: BTreeMap::new(),
        interfaces: vec![],
        loopbacks: vec![],
        routes: vec![],
        sysctls: BTreeMap::new(),
        depends_on: vec![],
        routing: None,
        masquerade: vec![],
    }
}

fn iface(name: &str, addr: &str, attachment: Attachment) -> IfacePlan {
    IfacePlan {
        name: name.into(),
        mac: Mac([2, 0, 0, 0, 0, 1]),
        mtu: 1500,
        addresses: vec![addr.parse().expect("valid literal")],
        addresses6: vec![],
        dhcp: false,
        attachment,
    }
}

/// The OSPF triangle: r1, r2, r3 on p2p links 10.0.{12,13,23}.0/30, loopbacks 10.255.0.N,
/// and a LAN 10.1.N.0/24 with one host (hN) behind each router (passive on the LAN).
pub fn triangle(lab: &str, fast: bool, bfd: bool) -> Plan {
    let mut nodes: Vec<NodePlan> = (1..=3).map(|i| node(lab, &format!("r{i}"), NodeKind::Router)).collect();
    let mut links = Vec::new();
    for (li, (a, b)) in [(1, 2), (1, 3), (2, 3)].into_iter().enumerate() {
        let subnet: Ipv4Net = format!("10.0.{a}{b}.0/30").parse().expect("valid literal");
        let (ia, ib) = (format!("eth-r{b}"), format!("eth-r{a}"));
        let aa = format!("10.0.{a}{b}.1/30");
        let ba = format!("10.0.{a}{b}.2/30");
        nodes[a - 1].interfaces.push(iface(
            &ia,
            &aa,
            Attachment::Link { link: li, peer_node: format!("r{b}"), peer_iface: ib.clone() },
        ));
        nodes[b - 1].interfaces.push(iface(
            &ib,
            &ba,
            Attachment::Link { link: li, peer_node: format!("r{a}"), peer_iface: ia.clone() },
        ));
        links.push(LinkPlan {
            index: li,
            a: LinkEndPlan { node: format!("r{a}"), iface: ia, address: aa.parse().expect("valid literal") },
            b: LinkEndPlan { node: format!("r{b}"), iface: ib, address: ba.parse().expect("valid literal") },
            subnet,
            mtu: 1500,
            impair_ab: topo_spec::Impairment::default(),
            impair_ba: topo_spec::Impairment::default(),
        });
    }
    let mut hosts = Vec::new();
    for i in 1..=3 {
        let lan = |who: &str| Attachment::Network {
            network: format!("lan{i}"),
            bridge: format!("br{i}"),
            port: format!("p{i}{who}"),
        };
        let r = &mut nodes[i - 1];
        r.interfaces.insert(0, iface("eth0", &format!("10.1.{i}.1/24"), lan("r")));
        r.loopbacks.push(format!("10.255.0.{i}/32").parse().expect("valid literal"));
        let mut h = node(lab, &format!("h{i}"), NodeKind::Host);
        h.interfaces.push(iface("eth0", &format!("10.1.{i}.10/24"), lan("h")));
        h.routes.push(topo_plan::RoutePlan {
            to: "0.0.0.0/0".parse().expect("valid literal"),
            via: format!("10.1.{i}.1").parse().expect("valid literal"),
            dev: "eth0".into(),
            metric: None,
            origin: topo_plan::RouteOrigin::Gateway,
        });
        hosts.push(h);
    }
    for r in &mut nodes {
        let mut ifs: Vec<OspfIfacePlan> = r
            .interfaces
            .iter()
            .map(|i| OspfIfacePlan {
                iface: i.name.clone(),
                area: Ipv4Addr::UNSPECIFIED,
                cost: 10,
                passive: i.name == "eth0",
                point_to_point: matches!(i.attachment, Attachment::Link { .. }),
            })
            .collect();
        ifs.push(OspfIfacePlan {
            iface: "lo".into(),
            area: Ipv4Addr::UNSPECIFIED,
            cost: 10,
            passive: true,
            point_to_point: false,
        });
        let o = OspfPlan {
            router_id: r.loopbacks[0].addr(),
            hello_interval: if fast { 1 } else { 10 },
            dead_interval: if fast { 3 } else { 40 },
            fast,
            bfd,
            bfd_interval_ms: 50,
            bfd_multiplier: 3,
            interfaces: ifs,
            redistribute_static: false,
        };
        r.sysctls.insert("net.ipv4.ip_forward".into(), "1".into());
        let configs = topo_plan::daemons::render_frr(r, &o);
        r.routing = Some(RoutingPlan { daemon: RoutingDaemon::Frr, ospf: Some(o), configs });
    }
    nodes.extend(hosts);
    Plan {
        version: PLAN_VERSION,
        lab: lab.into(),
        fabric: Fabric { netns: format!("topo-{lab}"), bridges: vec![] },
        start_order: (0..nodes.len()).collect(),
        nodes,
        links,
        hosts: vec![],
    }
}

/// A lab realized from a plan with `ip` commands (namespaces, veths, bridges, addresses,
/// routes, sysctls). Dropping it stops the daemons and deletes everything it created.
pub struct TestLab {
    pub plan: Plan,
    pub state_dir: PathBuf,
    namespaces: Vec<String>,
}

impl std::fmt::Debug for TestLab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestLab").field("lab", &self.plan.lab).finish_non_exhaustive()
    }
}

fn run(args: &[&str], stdin: Option<&str>) -> Result<(), String> {
    use std::io::Write as _;
    let mut cmd = Command::new(args[0]);
    cmd.args(&args[1..]);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("{args:?}: {e}"))?;
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin.unwrap_or("").as_bytes()).map_err(|e| format!("{args:?}: stdin: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("{args:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{args:?}: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr)))
    }
}

impl TestLab {
    /// Build the lab's kernel objects. State goes to `<tmp>/topo-daemons-test/<lab>/`.
    pub fn build(plan: Plan) -> Result<TestLab, String> {
        let state_dir = std::env::temp_dir().join("topo-daemons-test").join(&plan.lab);
        std::fs::create_dir_all(state_dir.join("pids")).map_err(|e| e.to_string())?;
        let mut lab = TestLab { plan, state_dir, namespaces: Vec::new() };
        lab.create()?;
        Ok(lab)
    }

    fn create(&mut self) -> Result<(), String> {
        let plan = self.plan.clone();
        let fabric = plan.fabric.netns.as_str();
        for ns in std::iter::once(fabric).chain(plan.nodes.iter().map(|n| n.netns.as_str())) {
            topo_netns::Netns::create(ns).map_err(|e| e.to_string())?;
            self.namespaces.push(ns.to_owned());
        }
        let mut bridges: Vec<String> = Vec::new();
        let mut fabric_batch = String::new();
        for n in &plan.nodes {
            for i in &n.interfaces {
                match &i.attachment {
                    Attachment::Network { bridge, port, .. } => {
                        if !bridges.contains(bridge) {
                            run(&["ip", "-n", fabric, "link", "add", bridge, "type", "bridge"], None)?;
                            let _ = writeln!(fabric_batch, "link set {bridge} up");
                            bridges.push(bridge.clone());
                        }
                        run(
                            &[
                                "ip", "link", "add", &i.name, "netns", &n.netns, "type", "veth", "peer",
                                "name", port, "netns", fabric,
                            ],
                            None,
                        )?;
                        let _ = writeln!(fabric_batch, "link set {port} master {bridge} up");
                    }
                    Attachment::Link { link, .. } => {
                        let l = &plan.links[*link];
                        if l.a.node != n.name {
                            continue;
                        }
                        let peer = plan.node(&l.b.node).ok_or("link peer missing")?;
                        run(
                            &[
                                "ip",
                                "link",
                                "add",
                                &l.a.iface,
                                "netns",
                                &n.netns,
                                "type",
                                "veth",
                                "peer",
                                "name",
                                &l.b.iface,
                                "netns",
                                &peer.netns,
                            ],
                            None,
                        )?;
                    }
                }
            }
        }
        run(&["ip", "-n", fabric, "-batch", "-"], Some(&fabric_batch))?;
        for n in &plan.nodes {
            let mut b = String::from("link set lo up\n");
            for i in &n.interfaces {
                for a in &i.addresses {
                    let _ = writeln!(b, "addr add {a} dev {}", i.name);
                }
                let _ = writeln!(b, "link set {} up", i.name);
            }
            for a in &n.loopbacks {
                let _ = writeln!(b, "addr add {a} dev lo");
            }
            for r in &n.routes {
                let _ = writeln!(b, "route add {} via {} dev {}", r.to, r.via, r.dev);
            }
            run(&["ip", "-n", &n.netns, "-batch", "-"], Some(&b))?;
            let ns = topo_netns::Netns::open(&n.netns).map_err(|e| e.to_string())?;
            for (k, v) in &n.sysctls {
                ns.run(|| topo_netns::write_sysctl(k, v))
                    .map_err(|e| e.to_string())?
                    .map_err(|e| format!("{}: {e}", n.name))?;
            }
        }
        Ok(())
    }

    pub fn netns(&self, node: &str) -> &str {
        &self.plan.node(node).expect("node in plan").netns
    }

    /// Run `sh -c cmd` inside a node; returns (success, stdout + stderr).
    pub fn sh(&self, node: &str, cmd: &str) -> (bool, String) {
        match Command::new("ip").args(["netns", "exec", self.netns(node), "sh", "-c", cmd]).output() {
            Ok(o) => (
                o.status.success(),
                format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)),
            ),
            Err(e) => (false, e.to_string()),
        }
    }

    /// Start the daemons of every routing node (concurrently; the test plans have no
    /// dependencies between routers).
    pub fn start_daemons(&self) -> Result<Vec<crate::StartedProcess>, crate::DaemonError> {
        let routers: Vec<&str> =
            self.plan.nodes.iter().filter(|n| n.routing.is_some()).map(|n| n.name.as_str()).collect();
        crate::start_nodes(&self.plan, &routers, &self.state_dir)
    }

    /// Next hop of the kernel route to `prefix` in `node`, if there is such a route.
    pub fn route(&self, node: &str, prefix: &str) -> Option<Option<Ipv4Addr>> {
        let want: Ipv4Net = prefix.parse().ok()?;
        crate::fib::read(self.netns(node)).ok()?.into_iter().find(|r| r.dest == want).map(|r| r.gateway)
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }
}

impl Drop for TestLab {
    fn drop(&mut self) {
        if let Err(errors) = crate::stop_lab(&self.plan, &self.state_dir) {
            for e in errors {
                eprintln!("testkit: stop_lab: {e}");
            }
        }
        for ns in &self.namespaces {
            if let Err(e) = topo_netns::delete(ns) {
                eprintln!("testkit: delete {ns}: {e}");
            }
        }
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}
