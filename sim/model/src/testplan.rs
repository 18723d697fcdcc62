//! A small builder of [`Plan`]s by hand, for tests and benchmarks that must not depend on the
//! topology parser and compiler (and for random topologies in property tests).
//!
//! Interfaces are named `eth0`, `eth1`, ... in attachment order, like the plan does.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use topo_plan::{
    Attachment, BridgePlan, Fabric, HostEntry, IfacePlan, LinkEndPlan, LinkPlan, Mac, NodePlan,
    OspfIfacePlan, OspfPlan, Plan, RouteOrigin, RoutePlan, RoutingPlan, PLAN_VERSION,
};
use topo_spec::{Impairment, NodeKind, RoutingDaemon};

/// Default OSPF interface cost.
pub const DEFAULT_COST: u32 = 10;

#[derive(Debug, Clone)]
pub struct PlanBuilder {
    plan: Plan,
}

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap_or_else(|e| panic!("bad prefix {s:?} in a test plan: {e}"))
}

impl PlanBuilder {
    pub fn new(lab: &str) -> Self {
        PlanBuilder {
            plan: Plan {
                version: PLAN_VERSION,
                lab: lab.to_owned(),
                fabric: Fabric { netns: format!("topo-{lab}"), bridges: Vec::new() },
                nodes: Vec::new(),
                links: Vec::new(),
                hosts: Vec::new(),
                start_order: Vec::new(),
            },
        }
    }

    fn add(&mut self, name: &str, kind: NodeKind) -> &mut Self {
        let mut sysctls = BTreeMap::new();
        if kind == NodeKind::Router {
            sysctls.insert("net.ipv4.ip_forward".to_owned(), "1".to_owned());
        }
        self.plan.nodes.push(NodePlan {
            name: name.to_owned(),
            netns: format!("topo-{}.{name}", self.plan.lab),
            hostname: name.to_owned(),
            kind,
            groups: Vec::new(),
            labels: BTreeMap::new(),
            interfaces: Vec::new(),
            loopbacks: Vec::new(),
            routes: Vec::new(),
            sysctls,
            depends_on: Vec::new(),
            routing: None,
            masquerade: Vec::new(),
        });
        self
    }

    pub fn host(&mut self, name: &str) -> &mut Self {
        self.add(name, NodeKind::Host)
    }

    /// A router: forwarding on.
    pub fn router(&mut self, name: &str) -> &mut Self {
        self.add(name, NodeKind::Router)
    }

    fn node_mut(&mut self, name: &str) -> &mut NodePlan {
        self.plan
            .nodes
            .iter_mut()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("test plan: unknown node {name}"))
    }

    fn mac(&self) -> Mac {
        let k = self.plan.nodes.iter().map(|n| n.interfaces.len()).sum::<usize>() as u32;
        let b = k.to_be_bytes();
        Mac([0x02, 0, b[0], b[1], b[2], b[3]])
    }

    /// Attach `node` to LAN `network` with `addr` (`10.0.0.1/24`). Creates the network.
    pub fn attach(&mut self, node: &str, network: &str, addr: &str) -> &mut Self {
        let a = net(addr);
        if !self.plan.fabric.bridges.iter().any(|b| b.network == network) {
            self.plan.fabric.bridges.push(BridgePlan {
                network: network.to_owned(),
                ifname: format!("br-{network}"),
                mtu: 1500,
                subnet: a.trunc(),
                subnet6: None,
                gateway: None,
                gateway_node: None,
            });
        }
        let mac = self.mac();
        let n = self.node_mut(node);
        let name = format!("eth{}", n.interfaces.len());
        let port = format!("{node}-{name}");
        n.interfaces.push(IfacePlan {
            name,
            mac,
            mtu: 1500,
            addresses: vec![a],
            addresses6: Vec::new(),
            dhcp: false,
            attachment: Attachment::Network {
                network: network.to_owned(),
                bridge: format!("br-{network}"),
                port,
            },
        });
        self
    }

    /// A point-to-point link `a` (`a_addr`) — `b` (`b_addr`), both `x.x.x.x/len`.
    pub fn link(&mut self, a: &str, a_addr: &str, b: &str, b_addr: &str) -> &mut Self {
        let (aa, ba) = (net(a_addr), net(b_addr));
        let index = self.plan.links.len();
        let a_if = format!("eth{}", self.node_mut(a).interfaces.len());
        let b_if = format!("eth{}", self.node_mut(b).interfaces.len());
        for (node, iface, addr, peer, peer_if) in [(a, &a_if, aa, b, &b_if), (b, &b_if, ba, a, &a_if)] {
            let mac = self.mac();
            self.node_mut(node).interfaces.push(IfacePlan {
                name: iface.clone(),
                mac,
                mtu: 1500,
                addresses: vec![addr],
                addresses6: Vec::new(),
                dhcp: false,
                attachment: Attachment::Link {
                    link: index,
                    peer_node: peer.to_owned(),
                    peer_iface: peer_if.clone(),
                },
            });
        }
        self.plan.links.push(LinkPlan {
            index,
            a: LinkEndPlan { node: a.to_owned(), iface: a_if, address: aa },
            b: LinkEndPlan { node: b.to_owned(), iface: b_if, address: ba },
            subnet: aa.trunc(),
            mtu: 1500,
            impair_ab: Impairment::default(),
            impair_ba: Impairment::default(),
        });
        self
    }

    pub fn loopback(&mut self, node: &str, addr: &str) -> &mut Self {
        let a = net(addr);
        self.node_mut(node).loopbacks.push(a);
        self
    }

    fn dev_for(n: &NodePlan, via: Ipv4Addr) -> String {
        n.interfaces
            .iter()
            .find(|i| i.addresses.iter().any(|a| a.contains(&via)))
            .map_or_else(|| "eth0".to_owned(), |i| i.name.clone())
    }

    /// A static route; the device is the interface whose subnet holds `via`.
    pub fn route(&mut self, node: &str, to: &str, via: &str) -> &mut Self {
        self.route_full(node, to, via, None, RouteOrigin::Static)
    }

    pub fn route_full(
        &mut self,
        node: &str,
        to: &str,
        via: &str,
        metric: Option<u32>,
        origin: RouteOrigin,
    ) -> &mut Self {
        let to = if to == "default" { net("0.0.0.0/0") } else { net(to) };
        let via: Ipv4Addr = via.parse().unwrap_or_else(|e| panic!("bad address {via:?}: {e}"));
        let n = self.node_mut(node);
        let dev = Self::dev_for(n, via);
        n.routes.push(RoutePlan { to, via, dev, metric, origin });
        self
    }

    /// Run OSPF on every interface of `node` (and `lo` when it has loopbacks), area 0,
    /// cost [`DEFAULT_COST`].
    pub fn ospf(&mut self, node: &str) -> &mut Self {
        let n = self.node_mut(node);
        let mut interfaces: Vec<OspfIfacePlan> = n
            .interfaces
            .iter()
            .map(|i| OspfIfacePlan {
                iface: i.name.clone(),
                area: Ipv4Addr::UNSPECIFIED,
                cost: DEFAULT_COST,
                passive: false,
                point_to_point: matches!(i.attachment, Attachment::Link { .. }),
            })
            .collect();
        if !n.loopbacks.is_empty() {
            interfaces.push(OspfIfacePlan {
                iface: "lo".to_owned(),
                area: Ipv4Addr::UNSPECIFIED,
                cost: DEFAULT_COST,
                passive: true,
                point_to_point: false,
            });
        }
        let router_id = n.loopbacks.first().map(Ipv4Net::addr).or_else(|| n.primary_address());
        n.routing = Some(RoutingPlan {
            daemon: RoutingDaemon::Frr,
            ospf: Some(OspfPlan {
                router_id: router_id.unwrap_or(Ipv4Addr::UNSPECIFIED),
                hello_interval: 1,
                dead_interval: 4,
                fast: true,
                bfd: false,
                bfd_interval_ms: 100,
                bfd_multiplier: 3,
                interfaces,
                redistribute_static: false,
            }),
            configs: BTreeMap::new(),
        });
        self
    }

    fn ospf_iface_mut(&mut self, node: &str, iface: &str) -> &mut OspfIfacePlan {
        self.node_mut(node)
            .routing
            .as_mut()
            .and_then(|r| r.ospf.as_mut())
            .and_then(|o| o.interfaces.iter_mut().find(|i| i.iface == iface))
            .unwrap_or_else(|| panic!("test plan: {node} runs no OSPF on {iface}"))
    }

    /// The interface of `node` facing `peer_or_network` (a peer node of a link, or a network).
    pub fn iface_toward(&self, node: &str, peer_or_network: &str) -> String {
        let n = self.plan.node(node).unwrap_or_else(|| panic!("test plan: unknown node {node}"));
        n.interfaces
            .iter()
            .find(|i| match &i.attachment {
                Attachment::Network { network, .. } => network == peer_or_network,
                Attachment::Link { peer_node, .. } => peer_node == peer_or_network,
            })
            .map_or_else(
                || panic!("test plan: {node} has no interface toward {peer_or_network}"),
                |i| i.name.clone(),
            )
    }

    pub fn ospf_cost(&mut self, node: &str, toward: &str, cost: u32) -> &mut Self {
        let i = self.iface_toward(node, toward);
        self.ospf_iface_mut(node, &i).cost = cost;
        self
    }

    pub fn ospf_passive(&mut self, node: &str, toward: &str) -> &mut Self {
        let i = self.iface_toward(node, toward);
        self.ospf_iface_mut(node, &i).passive = true;
        self
    }

    /// Masquerade traffic leaving `node` toward `toward` (a peer node or a network).
    pub fn masquerade(&mut self, node: &str, toward: &str) -> &mut Self {
        let i = self.iface_toward(node, toward);
        self.node_mut(node).masquerade.push(i);
        self
    }

    pub fn impair(&mut self, a: &str, b: &str, ab: Impairment, ba: Impairment) -> &mut Self {
        for l in &mut self.plan.links {
            if l.a.node == a && l.b.node == b {
                l.impair_ab = ab;
                l.impair_ba = ba;
            } else if l.a.node == b && l.b.node == a {
                l.impair_ab = ba;
                l.impair_ba = ab;
            }
        }
        self
    }

    pub fn build(&self) -> Plan {
        let mut plan = self.plan.clone();
        plan.hosts = plan
            .nodes
            .iter()
            .filter_map(|n| Some(HostEntry { name: n.name.clone(), address: n.primary_address()? }))
            .collect();
        plan.hosts.sort_by(|a, b| a.name.cmp(&b.name));
        plan.start_order = (0..plan.nodes.len()).collect();
        plan
    }
}
