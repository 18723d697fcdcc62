//! From the YAML tree to the IR: key checking, templates (defaults, groups, counters) and
//! typed values. Problems are collected, never fatal, so one run reports all of them; the
//! partially built topology still goes through [`crate::validate`].

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::diag::Diagnostic;
use crate::expand::{self, Range};
use crate::ir::{
    AddrSpec, Impairment, Interface, Link, LinkEnd, Network, Node, NodeKind, Ospf, OspfIface, Pools, Routing,
    RoutingDaemon, Span, StaticRoute, Topology,
};
use crate::tree::{Map, Scalar, Y};
use crate::values;

/// Longest lab name: kernel object names (bridges, veth peers) are derived from it.
pub const MAX_LAB_NAME: usize = 20;
/// Longest node (and network, group) name: a DNS label, which is also a valid hostname.
pub const MAX_NAME: usize = 63;

pub const TOP_KEYS: &[&str] = &["name", "pools", "defaults", "groups", "networks", "nodes", "links"];
pub const TOP_LATER: &[&str] =
    &["tunnels", "wireguard", "gre", "vrrp", "services", "dhcp", "dns", "postgres", "bgp", "include"];
pub const POOL_KEYS: &[&str] = &["p2p", "p2p_prefix"];
pub const NETWORK_KEYS: &[&str] = &["subnet", "subnet6", "gateway", "mtu"];
pub const NETWORK_LATER: &[&str] = &["dhcp", "dns", "vrrp", "vlan"];
pub const NODE_KEYS: &[&str] = &[
    "kind",
    "group",
    "groups",
    "interfaces",
    "loopback",
    "routes",
    "sysctls",
    "depends_on",
    "labels",
    "routing",
    "masquerade",
];
pub const NODE_LATER: &[&str] = &[
    "vrrp",
    "wireguard",
    "gre",
    "tunnels",
    "bgp",
    "services",
    "dhcp",
    "dns",
    "postgres",
    "image",
    "command",
];
pub const IFACE_KEYS: &[&str] = &["network", "address", "name", "address6", "mtu"];
pub const IFACE_LATER: &[&str] = &["vrrp", "vlan", "dhcp"];
pub const ROUTE_KEYS: &[&str] = &["to", "via", "metric"];
pub const ROUTING_KEYS: &[&str] = &["daemon", "ospf"];
pub const ROUTING_LATER: &[&str] = &["bgp", "rip", "isis", "ospf6", "bfd"];
pub const OSPF_KEYS: &[&str] = &[
    "router_id",
    "area",
    "hello_interval",
    "dead_interval",
    "fast",
    "bfd",
    "bfd_interval",
    "bfd_multiplier",
    "redistribute_static",
    "interfaces",
];
pub const OSPF_IFACE_KEYS: &[&str] = &["cost", "passive", "area"];
pub const LINK_KEYS: &[&str] = &["endpoints", "subnet", "mtu", "impair"];
pub const LINK_LATER: &[&str] = &["wireguard", "gre", "tunnel", "vlan"];
pub const END_KEYS: &[&str] = &["node", "name", "address"];
pub const IMPAIR_KEYS: &[&str] = &["delay", "jitter", "loss", "duplicate", "reorder", "rate"];
pub const IMPAIR_LATER: &[&str] = &["corrupt", "slot", "limit"];

/// Spans and raw references the IR does not keep but validation needs.
#[derive(Debug, Default, Clone)]
pub struct NodeExtra {
    pub kind_span: Option<Span>,
    pub iface_name_spans: Vec<Option<Span>>,
    /// Span of each interface's `address6`, aligned with `Node::interfaces`.
    pub address6_spans: Vec<Option<Span>>,
    pub loopback_spans: Vec<Span>,
    pub via_spans: Vec<Span>,
    /// `depends_on` entries as written (names or `*` patterns), and whether the entry was
    /// inherited from `defaults` or a group (then it never applies to the node itself).
    pub depends: Vec<(String, Span, bool)>,
    pub masquerade_spans: Vec<Span>,
}

#[derive(Debug, Default, Clone)]
pub struct LinkExtra {
    pub subnet_span: Option<Span>,
    pub name_spans: [Option<Span>; 2],
    pub address_spans: [Option<Span>; 2],
}

pub struct Parsed {
    pub topology: Topology,
    pub nodes: Vec<NodeExtra>,
    pub links: Vec<LinkExtra>,
    pub diags: Vec<Diagnostic>,
}

struct Cx {
    diags: Vec<Diagnostic>,
}

pub fn parse(root: &Map) -> Parsed {
    let mut cx = Cx { diags: Vec::new() };
    cx.check_keys(root, "the top level", TOP_KEYS, TOP_LATER);

    let (name, name_span) = match root.entries.iter().find(|(k, _)| k.s == "name") {
        Some((k, v)) => match cx.scalar(v, "name") {
            Some(s) => {
                if let Some(problem) = values::dns_label_problem(&s.s, MAX_LAB_NAME) {
                    cx.push(
                        Diagnostic::new("topo::invalid-name", s.span, format!("invalid lab name `{}`", s.s))
                            .label(problem)
                            .help(format!(
                                "lab names are DNS labels of at most {MAX_LAB_NAME} characters (kernel object names are derived from them)"
                            )),
                    );
                }
                (s.s.clone(), s.span)
            }
            None => {
                cx.push(Diagnostic::new("topo::missing-key", k.span, "`name` has no value").label("empty"));
                ("lab".to_owned(), k.span)
            }
        },
        None => {
            cx.push(
                Diagnostic::new("topo::missing-key", root.span, "the topology has no `name`")
                    .label("top level starts here")
                    .help("add `name: mylab` (a DNS label of at most 20 characters)"),
            );
            ("lab".to_owned(), root.span)
        }
    };

    let pools = cx.pools(root.get("pools"), root.span);
    let networks = match root.get("networks") {
        Some(y) => cx.networks(y),
        None => Vec::new(),
    };
    let net_index: HashMap<&str, usize> =
        networks.iter().enumerate().map(|(i, n)| (n.name.as_str(), i)).collect();

    let groups = cx.groups(root.get("groups"));
    let defaults = match root.get("defaults") {
        Some(y) => cx.map_of(y, "defaults").map(|m| {
            cx.template_keys(m, "defaults");
            m.clone()
        }),
        None => None,
    };

    let mut nodes = Vec::new();
    let mut node_extras = Vec::new();
    if let Some(y) = root.get("nodes") {
        if let Some(m) = cx.map_of(y, "nodes") {
            for (key, value) in &m.entries {
                cx.node_entry(
                    key,
                    value,
                    defaults.as_ref(),
                    &groups,
                    &networks,
                    &net_index,
                    &mut nodes,
                    &mut node_extras,
                );
            }
        }
    }

    let mut links = Vec::new();
    let mut link_extras = Vec::new();
    if let Some(y) = root.get("links") {
        for item in cx.seq_of(y, "links") {
            cx.link_entry(item, &mut links, &mut link_extras);
        }
    }

    Parsed {
        topology: Topology { name, name_span, pools, networks, nodes, links },
        nodes: node_extras,
        links: link_extras,
        diags: cx.diags,
    }
}

impl Cx {
    fn push(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    /// Unknown keys are errors listing the allowed ones; keys of features that come later get
    /// their own "not supported yet" error so they are not mistaken for typos.
    fn check_keys(&mut self, m: &Map, what: &str, allowed: &[&str], later: &[&str]) {
        for (k, _) in &m.entries {
            if allowed.contains(&k.s.as_str()) {
                continue;
            }
            if later.contains(&k.s.as_str()) {
                self.push(
                    Diagnostic::new(
                        "topo::unsupported",
                        k.span,
                        format!("`{}` in {what} is not supported yet in topology format v1", k.s),
                    )
                    .label("not supported yet")
                    .help("remove it for now; this feature is planned for a later version of topo"),
                );
                continue;
            }
            let mut help = format!("allowed keys in {what}: {}", allowed.join(", "));
            if let Some(s) = values::suggest(&k.s, allowed.iter().copied()) {
                help = format!("did you mean `{s}`? {help}");
            } else if k.s == "ospf" {
                help = format!("OSPF settings go under `routing: {{ospf: ...}}`; {help}");
            }
            self.push(
                Diagnostic::new("topo::unknown-key", k.span, format!("unknown key `{}` in {what}", k.s))
                    .label("unknown key")
                    .help(help),
            );
        }
    }

    fn type_error(&mut self, y: &Y, what: &str, expected: &str) {
        self.push(
            Diagnostic::new(
                "topo::type",
                y.span(),
                format!("`{what}` must be {expected}, found {}", y.kind_name()),
            )
            .label(format!("expected {expected}")),
        );
    }

    /// A mapping; null means "empty" (no error).
    fn map_of<'y>(&mut self, y: &'y Y, what: &str) -> Option<&'y Map> {
        match y {
            Y::Map(m) => Some(m),
            y if y.is_null() => None,
            y => {
                self.type_error(y, what, "a mapping");
                None
            }
        }
    }

    fn seq_of<'y>(&mut self, y: &'y Y, what: &str) -> &'y [Y] {
        match y {
            Y::Seq(items, _) => items,
            y if y.is_null() => &[],
            y => {
                self.type_error(y, what, "a list");
                &[]
            }
        }
    }

    /// A non-null scalar; null gives `None` silently (an optional field left empty).
    fn scalar<'y>(&mut self, y: &'y Y, what: &str) -> Option<&'y Scalar> {
        match y {
            Y::Scalar(s) if s.is_null() => None,
            Y::Scalar(s) => Some(s),
            y => {
                self.type_error(y, what, "a single value");
                None
            }
        }
    }

    fn typed<T>(&mut self, y: &Y, what: &str, parse: impl FnOnce(&str) -> Result<T, String>) -> Option<T> {
        let s = self.scalar(y, what)?;
        match parse(&s.s) {
            Ok(v) => Some(v),
            Err(form) => {
                self.push(
                    Diagnostic::new("topo::invalid-value", s.span, format!("invalid `{what}`: `{}`", s.s))
                        .label(format!("expected {form}")),
                );
                None
            }
        }
    }

    fn name_check(&mut self, s: &Scalar, what: &str) {
        if let Some(problem) = values::dns_label_problem(&s.s, MAX_NAME) {
            self.push(
                Diagnostic::new("topo::invalid-name", s.span, format!("invalid {what} name `{}`", s.s))
                    .label(problem)
                    .help(format!(
                        "{what} names are DNS labels: lowercase letters, digits and `-`, at most {MAX_NAME} characters"
                    )),
            );
        }
    }

    fn pools(&mut self, y: Option<&Y>, root_span: Span) -> Pools {
        let mut pools = Pools {
            p2p: Ipv4Net::new(Ipv4Addr::new(10, 255, 0, 0), 16).expect("valid"),
            p2p_span: root_span,
            p2p_prefix: 31,
        };
        let Some(m) = y.and_then(|y| self.map_of(y, "pools")) else { return pools };
        pools.p2p_span = m.span;
        self.check_keys(m, "`pools`", POOL_KEYS, &[]);
        let mut prefix_span = None;
        if let Some(v) = m.get("p2p_prefix") {
            prefix_span = Some(v.span());
            if let Some(p) = self.typed(v, "p2p_prefix", |s| match s.trim() {
                "31" => Ok(31),
                "30" => Ok(30),
                _ => Err("31 or 30".to_owned()),
            }) {
                pools.p2p_prefix = p;
            }
        }
        if let Some(v) = m.get("p2p") {
            pools.p2p_span = v.span();
            if let Some(net) = self.typed(v, "p2p", values::subnet4) {
                pools.p2p = net;
            }
        }
        if pools.p2p.prefix_len() > pools.p2p_prefix {
            self.push(
                Diagnostic::new(
                    "topo::invalid-value",
                    pools.p2p_span,
                    format!(
                        "the p2p pool {} is smaller than one /{} link subnet",
                        pools.p2p, pools.p2p_prefix
                    ),
                )
                .label("pool too small")
                .related(prefix_span.unwrap_or(pools.p2p_span), "link subnet size")
                .help("use a larger pool such as 10.255.0.0/16"),
            );
        }
        pools
    }

    fn networks(&mut self, y: &Y) -> Vec<Network> {
        let Some(m) = self.map_of(y, "networks") else { return Vec::new() };
        let mut out = Vec::new();
        for (k, v) in &m.entries {
            self.name_check(k, "network");
            let Some(nm) = self.map_of(v, "network") else {
                self.push(
                    Diagnostic::new(
                        "topo::missing-key",
                        k.span,
                        format!("network `{}` has no `subnet`", k.s),
                    )
                    .label("no subnet")
                    .help("networks need at least `subnet: 10.0.1.0/24`"),
                );
                continue;
            };
            self.check_keys(nm, "a network", NETWORK_KEYS, NETWORK_LATER);
            let subnet = match nm.get("subnet") {
                Some(sv) => self.typed(sv, "subnet", values::subnet4).map(|n| (n, sv.span())),
                None => {
                    self.push(
                        Diagnostic::new(
                            "topo::missing-key",
                            k.span,
                            format!("network `{}` has no `subnet`", k.s),
                        )
                        .label("no subnet")
                        .help("add `subnet: 10.0.1.0/24`"),
                    );
                    None
                }
            };
            let Some((subnet, subnet_span)) = subnet else { continue };
            if subnet.prefix_len() > 30 {
                self.push(
                    Diagnostic::new("topo::invalid-value", subnet_span, format!("subnet {subnet} is too small for a network"))
                        .label("at most /30")
                        .help("a network needs room for its gateway and hosts; use /30 or larger (or a link for two nodes)"),
                );
                continue;
            }
            let subnet6 = nm.get("subnet6").and_then(|v| self.typed(v, "subnet6", values::subnet6));
            let mtu = nm
                .get("mtu")
                .and_then(|v| self.typed(v, "mtu", |s| values::uint(s, 68, 65535)))
                .map(|v| v as u32);
            let first_host = Ipv4Addr::from(u32::from(subnet.network()) + 1);
            let (gateway, gateway_span) = match nm.get("gateway") {
                Some(gv) => match self.scalar(gv, "gateway") {
                    Some(s) if s.s == "none" => (None, s.span),
                    Some(s) => match values::ipv4(&s.s) {
                        Ok(a) => {
                            if !subnet.contains(&a) {
                                self.push(
                                    Diagnostic::new(
                                        "topo::address-outside-subnet",
                                        s.span,
                                        format!("gateway {a} is not inside subnet {subnet}"),
                                    )
                                    .label("outside the subnet")
                                    .related(subnet_span, "subnet defined here")
                                    .help(format!("use an address in {subnet}, e.g. {first_host}")),
                                );
                            } else if a == subnet.network() || a == subnet.broadcast() {
                                self.push(reserved_address(s.span, a, subnet, Some(subnet_span)));
                            }
                            (Some(a), s.span)
                        }
                        Err(form) => {
                            self.push(
                                Diagnostic::new(
                                    "topo::invalid-value",
                                    s.span,
                                    format!("invalid `gateway`: `{}`", s.s),
                                )
                                .label(format!("expected {form} or `none`")),
                            );
                            (Some(first_host), s.span)
                        }
                    },
                    None => (Some(first_host), subnet_span),
                },
                None => (Some(first_host), subnet_span),
            };
            out.push(Network {
                name: k.s.clone(),
                span: k.span,
                subnet,
                subnet_span,
                subnet6,
                gateway,
                gateway_span,
                mtu,
            });
        }
        out
    }

    fn groups(&mut self, y: Option<&Y>) -> HashMap<String, (Span, Map)> {
        let mut out = HashMap::new();
        let Some(m) = y.and_then(|y| self.map_of(y, "groups")) else { return out };
        for (k, v) in &m.entries {
            self.name_check(k, "group");
            let gm = match v {
                Y::Map(gm) => gm.clone(),
                v if v.is_null() => Map { entries: Vec::new(), span: k.span },
                v => {
                    self.type_error(v, "group", "a mapping of node settings");
                    continue;
                }
            };
            self.template_keys(&gm, "a group");
            out.insert(k.s.clone(), (k.span, gm));
        }
        out
    }

    /// Templates take node keys, but cannot pull in groups themselves.
    fn template_keys(&mut self, m: &Map, what: &str) {
        for (k, _) in &m.entries {
            if k.s == "group" || k.s == "groups" {
                self.push(
                    Diagnostic::new(
                        "topo::invalid-value",
                        k.span,
                        format!("`{}` cannot be used in {what}", k.s),
                    )
                    .label("not allowed here")
                    .help("groups do not nest; list all groups on the node: `groups: [a, b]`"),
                );
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn node_entry(
        &mut self,
        key: &Scalar,
        value: &Y,
        defaults: Option<&Map>,
        groups: &HashMap<String, (Span, Map)>,
        networks: &[Network],
        net_index: &HashMap<&str, usize>,
        nodes: &mut Vec<Node>,
        extras: &mut Vec<NodeExtra>,
    ) {
        let empty = Map { entries: Vec::new(), span: key.span };
        let own = match value {
            Y::Map(m) => m,
            v if v.is_null() => &empty,
            v => {
                self.type_error(v, "node", "a mapping of node settings");
                return;
            }
        };
        // Group names come from the node's own mapping only.
        let mut group_names: Vec<&Scalar> = Vec::new();
        let group_key = own.entries.iter().find(|(k, _)| k.s == "group");
        let groups_key = own.entries.iter().find(|(k, _)| k.s == "groups");
        if let (Some((k1, _)), Some((k2, _))) = (group_key, groups_key) {
            self.push(
                Diagnostic::new("topo::invalid-value", k2.span, "use either `group` or `groups`, not both")
                    .label("second group list")
                    .related(k1.span, "`group` given here")
                    .help("write `groups: [a, b]`"),
            );
        }
        if let Some((_, v)) = group_key {
            group_names.extend(self.scalar(v, "group"));
        }
        if let Some((_, v)) = groups_key {
            for item in self.seq_of(v, "groups") {
                group_names.extend(self.scalar(item, "groups"));
            }
        }
        let mut merged = defaults.cloned().unwrap_or(Map { entries: Vec::new(), span: key.span });
        let mut applied = Vec::new();
        for g in &group_names {
            match groups.get(&g.s) {
                Some((_, gm)) => {
                    expand::merge_into(&mut merged, gm.entries.iter());
                    applied.push(g.s.clone());
                }
                None => {
                    let mut d = Diagnostic::new(
                        "topo::unknown-reference",
                        g.span,
                        format!("unknown group `{}`", g.s),
                    )
                    .label("no such group");
                    let names: Vec<&str> = groups.keys().map(String::as_str).collect();
                    d = d.help(match values::suggest(&g.s, names.iter().copied()) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None if names.is_empty() => "define it under `groups:`".to_owned(),
                        None => {
                            let mut names = names;
                            names.sort_unstable();
                            format!("defined groups: {}", names.join(", "))
                        }
                    });
                    self.push(d);
                }
            }
        }
        expand::merge_into(
            &mut merged,
            own.entries.iter().filter(|(k, _)| k.s != "group" && k.s != "groups"),
        );
        merged.span = key.span;

        let range = match expand::parse_range(&key.s) {
            Ok(r) => r,
            Err(msg) => {
                self.push(
                    Diagnostic::new(
                        "topo::counter",
                        key.span,
                        format!("invalid counter in node name `{}`", key.s),
                    )
                    .label(msg)
                    .help("a counter range looks like `web-{1..5}`"),
                );
                return;
            }
        };
        let instances: Vec<(String, Option<i64>)> = match &range {
            Some(r) => r.values().map(|n| (r.name(n), Some(n))).collect(),
            None => vec![(key.s.clone(), None)],
        };
        // Where the node's own `depends_on` entries are, to tell them from inherited ones.
        let own_deps: Vec<usize> = match own.get("depends_on") {
            Some(Y::Seq(items, _)) => items.iter().map(|i| i.span().offset).collect(),
            _ => Vec::new(),
        };
        let last = instances.len().saturating_sub(1);
        let mut merged = Some(merged);
        for (i, (name, n)) in instances.into_iter().enumerate() {
            // Each instance gets its own copy to substitute into; the last takes the original.
            let base = if i == last { merged.take() } else { merged.clone() };
            let mut y = Y::Map(base.unwrap_or(Map { entries: Vec::new(), span: key.span }));
            expand::substitute_tree(&mut y, n, &mut self.diags);
            let Y::Map(m) = y else { unreachable!("substitution keeps the shape") };
            let name_scalar = Scalar { s: name, span: key.span, plain: true };
            self.name_check(&name_scalar, "node");
            let (node, extra) =
                self.node(&name_scalar, n, applied.clone(), &m, &own_deps, networks, net_index);
            nodes.push(node);
            extras.push(extra);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn node(
        &mut self,
        name: &Scalar,
        counter: Option<i64>,
        groups: Vec<String>,
        m: &Map,
        own_deps: &[usize],
        networks: &[Network],
        net_index: &HashMap<&str, usize>,
    ) -> (Node, NodeExtra) {
        self.check_keys(m, "a node", NODE_KEYS, NODE_LATER);
        let mut extra = NodeExtra::default();
        let mut node = Node {
            name: name.s.clone(),
            span: name.span,
            kind: NodeKind::Host,
            groups,
            counter,
            interfaces: Vec::new(),
            loopbacks: Vec::new(),
            routes: Vec::new(),
            sysctls: BTreeMap::new(),
            depends_on: Vec::new(),
            labels: BTreeMap::new(),
            routing: None,
            masquerade: Vec::new(),
        };
        for (k, v) in &m.entries {
            match k.s.as_str() {
                "kind" => {
                    extra.kind_span = Some(v.span());
                    if let Some(kind) = self.typed(v, "kind", |s| match s {
                        "host" => Ok(NodeKind::Host),
                        "router" => Ok(NodeKind::Router),
                        _ => Err("`host` or `router`".to_owned()),
                    }) {
                        node.kind = kind;
                    }
                }
                "interfaces" => {
                    for item in self.seq_of(v, "interfaces") {
                        if let Some((iface, name_span, address6_span)) =
                            self.interface(item, networks, net_index)
                        {
                            extra.address6_spans.push(address6_span);
                            node.interfaces.push(iface);
                            extra.iface_name_spans.push(name_span);
                        }
                    }
                }
                "loopback" => {
                    for item in self.seq_of(v, "loopback") {
                        if let Some(net) = self.typed(item, "loopback", values::addr_or_net4) {
                            node.loopbacks.push(net);
                            extra.loopback_spans.push(item.span());
                        }
                    }
                }
                "routes" => {
                    for item in self.seq_of(v, "routes") {
                        if let Some((route, via_span)) = self.route(item) {
                            node.routes.push(route);
                            extra.via_spans.push(via_span);
                        }
                    }
                }
                "sysctls" => {
                    if let Some(sm) = self.map_of(v, "sysctls") {
                        for (sk, sv) in &sm.entries {
                            let valid = !sk.s.is_empty()
                                && sk.s.split('.').all(|seg| {
                                    !seg.is_empty()
                                        && seg
                                            .chars()
                                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                                });
                            if !valid {
                                self.push(
                                    Diagnostic::new(
                                        "topo::invalid-value",
                                        sk.span,
                                        format!("invalid sysctl key `{}`", sk.s),
                                    )
                                    .label("expected a dotted /proc/sys path")
                                    .help("write sysctls like `net.ipv4.ip_forward: 1`"),
                                );
                                continue;
                            }
                            if let Some(val) = self.scalar(sv, "sysctl value") {
                                node.sysctls.insert(sk.s.clone(), val.s.clone());
                            }
                        }
                    }
                }
                "depends_on" => {
                    for item in self.seq_of(v, "depends_on") {
                        if let Some(s) = self.scalar(item, "depends_on") {
                            extra.depends.push((s.s.clone(), s.span, !own_deps.contains(&s.span.offset)));
                        }
                    }
                }
                "labels" => {
                    if let Some(lm) = self.map_of(v, "labels") {
                        for (lk, lv) in &lm.entries {
                            if lk.s.is_empty()
                                || !lk
                                    .s
                                    .chars()
                                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
                            {
                                self.push(
                                    Diagnostic::new(
                                        "topo::invalid-value",
                                        lk.span,
                                        format!("invalid label key `{}`", lk.s),
                                    )
                                    .label("use letters, digits, `-`, `_`, `.`, `/`"),
                                );
                                continue;
                            }
                            if let Some(val) = self.scalar(lv, "label value") {
                                node.labels.insert(lk.s.clone(), val.s.clone());
                            } else if lv.is_null() {
                                node.labels.insert(lk.s.clone(), String::new());
                            }
                        }
                    }
                }
                "routing" => node.routing = self.routing(k, v),
                "masquerade" => {
                    for item in self.seq_of(v, "masquerade") {
                        if let Some(s) = self.scalar(item, "masquerade") {
                            node.masquerade.push(s.s.clone());
                            extra.masquerade_spans.push(s.span);
                        }
                    }
                }
                _ => {}
            }
        }
        (node, extra)
    }

    fn interface(
        &mut self,
        item: &Y,
        networks: &[Network],
        net_index: &HashMap<&str, usize>,
    ) -> Option<(Interface, Option<Span>, Option<Span>)> {
        let (net_scalar, m) = match item {
            Y::Scalar(s) if !s.is_null() => (s.clone(), None),
            Y::Map(m) => {
                self.check_keys(m, "an interface", IFACE_KEYS, IFACE_LATER);
                let Some(nv) = m.get("network") else {
                    self.push(
                        Diagnostic::new("topo::missing-key", m.span, "interface has no `network`")
                            .label("which network?")
                            .help("add `network: <name>` (links between two nodes go under `links:`)"),
                    );
                    return None;
                };
                (self.scalar(nv, "network")?.clone(), Some(m))
            }
            other => {
                self.type_error(other, "interfaces item", "a network name or a mapping");
                return None;
            }
        };
        let network = net_index.get(net_scalar.s.as_str()).map(|&i| &networks[i]);
        if network.is_none() {
            let mut d = Diagnostic::new(
                "topo::unknown-reference",
                net_scalar.span,
                format!("unknown network `{}`", net_scalar.s),
            )
            .label("no such network");
            d = d.help(match values::suggest(&net_scalar.s, networks.iter().map(|n| n.name.as_str())) {
                Some(s) => format!("did you mean `{s}`?"),
                None if networks.is_empty() => "define it under `networks:`".to_owned(),
                None => format!(
                    "defined networks: {}",
                    networks.iter().map(|n| n.name.as_str()).collect::<Vec<_>>().join(", ")
                ),
            });
            self.push(d);
        }
        let mut iface = Interface {
            name: None,
            network: net_scalar.s.clone(),
            span: net_scalar.span,
            address: AddrSpec::Auto,
            address_span: net_scalar.span,
            address6: None,
            mtu: None,
        };
        let mut name_span = None;
        let mut address6_span = None;
        let Some(m) = m else { return Some((iface, None, None)) };
        if let Some(v) = m.get("name") {
            if let Some(s) = self.scalar(v, "name") {
                iface.name = Some(s.s.clone());
                name_span = Some(s.span);
            }
        }
        if let Some(v) = m.get("mtu") {
            iface.mtu = self.typed(v, "mtu", |s| values::uint(s, 68, 65535)).map(|v| v as u32);
        }
        if let Some(v) = m.get("address") {
            if let Some(s) = self.scalar(v, "address") {
                iface.address_span = s.span;
                match s.s.as_str() {
                    "auto" => {}
                    "dhcp" => iface.address = AddrSpec::Dhcp,
                    text => {
                        let (addr_text, len) = match text.split_once('/') {
                            Some((a, l)) => (a, Some(l)),
                            None => (text, None),
                        };
                        match values::ipv4(addr_text) {
                            Ok(a) => iface.address = AddrSpec::Static(a),
                            Err(form) => self.push(
                                Diagnostic::new(
                                    "topo::invalid-value",
                                    s.span,
                                    format!("invalid `address`: `{text}`"),
                                )
                                .label(format!("expected `auto`, `dhcp` or {form}")),
                            ),
                        }
                        if let (Some(len), Some(net)) = (len, network) {
                            if len.trim().parse::<u8>().ok() != Some(net.subnet.prefix_len()) {
                                self.push(
                                    Diagnostic::new(
                                        "topo::invalid-value",
                                        s.span,
                                        format!("prefix length /{len} differs from network `{}` ({})", net.name, net.subnet),
                                    )
                                    .label("wrong prefix length")
                                    .related(net.subnet_span, "the network's subnet")
                                    .help(format!("write the address alone (`{addr_text}`); it takes the network's prefix")),
                                );
                            }
                        }
                    }
                }
            }
        }
        if let Some(v) = m.get("address6") {
            if let Some(s) = self.scalar(v, "address6") {
                let text = s.s.split_once('/').map_or(s.s.as_str(), |(a, _)| a);
                match values::ipv6(text) {
                    Ok(a) => {
                        iface.address6 = Some(a);
                        address6_span = Some(s.span);
                        match network.map(|n| (n, n.subnet6)) {
                            Some((n, None)) => self.push(
                                Diagnostic::new(
                                    "topo::invalid-value",
                                    s.span,
                                    format!("network `{}` has no IPv6 subnet", n.name),
                                )
                                .label("no `subnet6` on this network")
                                .related(n.span, "network defined here")
                                .help("add `subnet6: fd00:1::/64` to the network"),
                            ),
                            Some((n, Some(net6))) if !net6.contains(&a) => self.push(
                                Diagnostic::new(
                                    "topo::address-outside-subnet",
                                    s.span,
                                    format!("{a} is not inside {net6} of network `{}`", n.name),
                                )
                                .label("outside the subnet")
                                .related(n.span, "network defined here"),
                            ),
                            _ => {}
                        }
                    }
                    Err(form) => self.push(
                        Diagnostic::new(
                            "topo::invalid-value",
                            s.span,
                            format!("invalid `address6`: `{}`", s.s),
                        )
                        .label(format!("expected {form}")),
                    ),
                }
            }
        }
        Some((iface, name_span, address6_span))
    }

    fn route(&mut self, item: &Y) -> Option<(StaticRoute, Span)> {
        let Y::Map(m) = item else {
            self.type_error(item, "routes item", "a mapping like `{to: default, via: 10.0.0.1}`");
            return None;
        };
        self.check_keys(m, "a route", ROUTE_KEYS, &[]);
        let missing = |cx: &mut Self, key: &str| {
            cx.push(
                Diagnostic::new("topo::missing-key", m.span, format!("route has no `{key}`"))
                    .label(format!("`{key}` missing"))
                    .help("a route looks like `{to: 10.0.2.0/24, via: 10.0.1.1}` (`to: default` for the default route)"),
            );
        };
        let to = match m.get("to") {
            Some(v) => self.typed(v, "to", |s| {
                if s == "default" {
                    Ok(Ipv4Net::default())
                } else if s.contains('/') {
                    values::subnet4(s).map_err(|e| format!("`default`, {e}"))
                } else {
                    values::ipv4(s).map(Ipv4Net::from).map_err(|e| format!("`default`, a subnet or {e}"))
                }
            }),
            None => {
                missing(self, "to");
                None
            }
        };
        let via = match m.get("via") {
            Some(v) => self.typed(v, "via", values::ipv4).map(|a| (a, v.span())),
            None => {
                missing(self, "via");
                None
            }
        };
        let metric = m
            .get("metric")
            .and_then(|v| self.typed(v, "metric", |s| values::uint(s, 0, u64::from(u32::MAX))));
        let span = m.get("to").map_or(m.span, Y::span);
        let (to, (via, via_span)) = (to?, via?);
        Some((StaticRoute { to, via, metric: metric.map(|v| v as u32), span }, via_span))
    }

    fn routing(&mut self, key: &Scalar, v: &Y) -> Option<Routing> {
        let m = self.map_of(v, "routing")?;
        self.check_keys(m, "`routing`", ROUTING_KEYS, ROUTING_LATER);
        let mut routing = Routing { daemon: RoutingDaemon::Frr, span: key.span, ospf: None };
        if let Some(dv) = m.get("daemon") {
            if let Some(s) = self.scalar(dv, "daemon") {
                match s.s.as_str() {
                    "frr" => {}
                    "bird" => self.push(
                        Diagnostic::new(
                            "topo::unsupported",
                            s.span,
                            "routing daemon `bird` is not supported yet in topology format v1",
                        )
                        .label("not supported yet")
                        .help("use `daemon: frr` (the default)"),
                    ),
                    other => self.push(
                        Diagnostic::new(
                            "topo::invalid-value",
                            s.span,
                            format!("unknown routing daemon `{other}`"),
                        )
                        .label("expected `frr`")
                        .help("`frr` is supported; `bird` comes later"),
                    ),
                }
            }
        }
        if let Some(ov) = m.get("ospf") {
            routing.ospf = Some(self.ospf(ov));
        }
        Some(routing)
    }

    fn ospf(&mut self, v: &Y) -> Ospf {
        let mut ospf = Ospf {
            router_id: None,
            area: Ipv4Addr::UNSPECIFIED,
            hello_interval: 10,
            dead_interval: 40,
            fast: false,
            bfd: false,
            bfd_interval_ms: 300,
            bfd_multiplier: 3,
            interfaces: BTreeMap::new(),
            redistribute_static: false,
        };
        let Some(m) = self.map_of(v, "ospf") else { return ospf };
        self.check_keys(m, "`ospf`", OSPF_KEYS, &[]);
        let area = |s: &str| -> Result<Ipv4Addr, String> {
            s.parse::<u32>()
                .map(Ipv4Addr::from)
                .or_else(|_| s.parse::<Ipv4Addr>())
                .map_err(|_| "an area number (`0`) or dotted area (`0.0.0.1`)".to_owned())
        };
        let mut dead = None;
        for (k, v) in &m.entries {
            match k.s.as_str() {
                "router_id" => ospf.router_id = self.typed(v, "router_id", values::ipv4),
                "area" => ospf.area = self.typed(v, "area", area).unwrap_or(ospf.area),
                "hello_interval" => {
                    ospf.hello_interval = self
                        .typed(v, "hello_interval", |s| values::uint(s, 1, 65535))
                        .map_or(ospf.hello_interval, |v| v as u32);
                }
                "dead_interval" => {
                    dead = self
                        .typed(v, "dead_interval", |s| values::uint(s, 1, 65535))
                        .map(|d| (d as u32, v.span()));
                }
                "fast" => ospf.fast = self.typed(v, "fast", values::boolean).unwrap_or(false),
                "bfd" => ospf.bfd = self.typed(v, "bfd", values::boolean).unwrap_or(false),
                "redistribute_static" => {
                    ospf.redistribute_static =
                        self.typed(v, "redistribute_static", values::boolean).unwrap_or(false);
                }
                "bfd_interval" => {
                    if let Some(d) = self.typed(v, "bfd_interval", |s| {
                        let d = values::duration(s)?;
                        let ms = d.as_millis();
                        if d.subsec_micros() % 1000 != 0 || !(10..=60_000).contains(&ms) {
                            return Err("whole milliseconds between `10ms` and `60s`".to_owned());
                        }
                        Ok(ms as u32)
                    }) {
                        ospf.bfd_interval_ms = d;
                    }
                }
                "bfd_multiplier" => {
                    ospf.bfd_multiplier =
                        self.typed(v, "bfd_multiplier", |s| values::uint(s, 2, 255)).map_or(3, |v| v as u32);
                }
                "interfaces" => {
                    if let Some(im) = self.map_of(v, "ospf interfaces") {
                        for (ik, iv) in &im.entries {
                            let mut oi = OspfIface { span: ik.span, ..OspfIface::default() };
                            if let Some(om) = self.map_of(iv, "ospf interface") {
                                self.check_keys(om, "an OSPF interface", OSPF_IFACE_KEYS, &[]);
                                if let Some(cv) = om.get("cost") {
                                    oi.cost = self
                                        .typed(cv, "cost", |s| values::uint(s, 1, 65535))
                                        .map(|v| v as u32);
                                }
                                if let Some(pv) = om.get("passive") {
                                    oi.passive = self.typed(pv, "passive", values::boolean).unwrap_or(false);
                                }
                                if let Some(av) = om.get("area") {
                                    oi.area = self.typed(av, "area", area);
                                }
                            }
                            ospf.interfaces.insert(ik.s.clone(), oi);
                        }
                    }
                }
                _ => {}
            }
        }
        match dead {
            Some((d, span)) => {
                if d <= ospf.hello_interval {
                    self.push(
                        Diagnostic::new(
                            "topo::invalid-value",
                            span,
                            format!(
                                "dead_interval ({d}s) must be longer than hello_interval ({}s)",
                                ospf.hello_interval
                            ),
                        )
                        .label("too short")
                        .help("the usual choice is 4 x hello_interval (FRR needs dead > hello)"),
                    );
                }
                ospf.dead_interval = d;
            }
            None => ospf.dead_interval = ospf.hello_interval.saturating_mul(4),
        }
        ospf
    }

    fn link_entry(&mut self, item: &Y, links: &mut Vec<Link>, extras: &mut Vec<LinkExtra>) {
        let Y::Map(m) = item else {
            self.type_error(item, "links item", "a mapping like `{endpoints: [a, b]}`");
            return;
        };
        self.check_keys(m, "a link", LINK_KEYS, LINK_LATER);
        let Some((ek, ev)) = m.entries.iter().find(|(k, _)| k.s == "endpoints") else {
            self.push(
                Diagnostic::new("topo::missing-key", m.span, "link has no `endpoints`")
                    .label("which nodes?")
                    .help("write `endpoints: [r1, r2]`"),
            );
            return;
        };
        let ends = self.seq_of(ev, "endpoints");
        if ends.len() != 2 {
            self.push(
                Diagnostic::new(
                    "topo::invalid-value",
                    ev.span(),
                    format!("a link joins exactly two nodes, found {}", ends.len()),
                )
                .label("expected two endpoints")
                .help("for more than two nodes, use a network"),
            );
            return;
        }
        // Counter ranges in endpoint node names expand the link (zipped when both ends count).
        let mut ranges: Vec<(usize, Range, Span)> = Vec::new();
        for (i, e) in ends.iter().enumerate() {
            let node_scalar = match e {
                Y::Scalar(s) => Some(s),
                Y::Map(em) => match em.get("node") {
                    Some(Y::Scalar(s)) => Some(s),
                    _ => None,
                },
                Y::Seq(..) => None,
            };
            if let Some(s) = node_scalar {
                let node_part = s.s.split_once(':').map_or(s.s.as_str(), |(n, _)| n);
                match expand::parse_range(node_part) {
                    Ok(Some(r)) => ranges.push((i, r, s.span)),
                    Ok(None) => {}
                    Err(msg) => {
                        self.push(
                            Diagnostic::new(
                                "topo::counter",
                                s.span,
                                format!("invalid counter in endpoint `{}`", s.s),
                            )
                            .label(msg),
                        );
                        return;
                    }
                }
            }
        }
        if let [(_, r1, _), (_, r2, s2)] = ranges.as_slice() {
            if r1.len() != r2.len() {
                self.push(
                    Diagnostic::new("topo::counter", *s2, "both endpoint ranges of a link must have the same length")
                        .label(format!("{} items here, {} on the other end", r2.len(), r1.len()))
                        .help("ranges on both ends are paired in order: `[a-{1..3}, b-{1..3}]` gives a-1 -- b-1, ..."),
                );
                return;
            }
        }
        let instances: Vec<Option<i64>> = match ranges.first() {
            Some((_, r, _)) => (0..r.len()).map(|i| Some(r.start + i)).collect(),
            None => vec![None],
        };
        for (idx, n) in instances.into_iter().enumerate() {
            let mut y = Y::Map(m.clone());
            // Rewrite each end's `{a..b}` to this instance's value before the `{n}` substitution.
            if let Y::Map(lm) = &mut y {
                if let Some((_, Y::Seq(items, _))) = lm.entries.iter_mut().find(|(k, _)| k.s == "endpoints") {
                    for (i, r, _) in &ranges {
                        let value = r.start + idx as i64;
                        let fix = |s: &mut Scalar| {
                            if let Some(pos) = s.s.find('{') {
                                if let Some(close) = s.s[pos..].find('}') {
                                    s.s.replace_range(pos..=pos + close, &value.to_string());
                                }
                            }
                        };
                        match &mut items[*i] {
                            Y::Scalar(s) => fix(s),
                            Y::Map(em) => {
                                if let Some((_, Y::Scalar(s))) =
                                    em.entries.iter_mut().find(|(k, _)| k.s == "node")
                                {
                                    fix(s);
                                }
                            }
                            Y::Seq(..) => {}
                        }
                    }
                }
            }
            expand::substitute_tree(&mut y, n, &mut self.diags);
            let Y::Map(lm) = y else { unreachable!("substitution keeps the shape") };
            if let Some((link, extra)) = self.link(ek.span, &lm) {
                links.push(link);
                extras.push(extra);
            }
        }
    }

    fn link(&mut self, span: Span, m: &Map) -> Option<(Link, LinkExtra)> {
        let Some(Y::Seq(ends, _)) = m.get("endpoints") else { return None };
        let mut extra = LinkExtra::default();
        let mut parsed = Vec::with_capacity(2);
        for (i, e) in ends.iter().enumerate() {
            let end = match e {
                Y::Scalar(s) if !s.is_null() => {
                    let (node, name) = match s.s.split_once(':') {
                        Some((n, i)) => (n, Some(i.to_owned())),
                        None => (s.s.as_str(), None),
                    };
                    if name.is_some() {
                        extra.name_spans[i] = Some(s.span);
                    }
                    LinkEnd { node: node.to_owned(), span: s.span, name, address: None }
                }
                Y::Map(em) => {
                    self.check_keys(em, "a link endpoint", END_KEYS, &[]);
                    let Some(ns) = em.get("node").and_then(|v| self.scalar(v, "node")) else {
                        self.push(
                            Diagnostic::new("topo::missing-key", em.span, "link endpoint has no `node`")
                                .label("which node?")
                                .help("write `{node: r1, name: eth9, address: 10.0.0.1}`"),
                        );
                        return None;
                    };
                    let mut end = LinkEnd { node: ns.s.clone(), span: ns.span, name: None, address: None };
                    if let Some(nv) = em.get("name") {
                        if let Some(s) = self.scalar(nv, "name") {
                            end.name = Some(s.s.clone());
                            extra.name_spans[i] = Some(s.span);
                        }
                    }
                    if let Some(av) = em.get("address") {
                        end.address = self
                            .typed(av, "address", |s| values::ipv4(s.split_once('/').map_or(s, |(a, _)| a)));
                        extra.address_spans[i] = Some(av.span());
                    }
                    end
                }
                other => {
                    self.type_error(other, "endpoint", "a node name or `{node, name, address}`");
                    return None;
                }
            };
            parsed.push(end);
        }
        let b = parsed.pop()?;
        let a = parsed.pop()?;
        let mut link = Link {
            span,
            a,
            b,
            subnet: None,
            mtu: None,
            impair_ab: Impairment::default(),
            impair_ba: Impairment::default(),
        };
        if let Some(v) = m.get("subnet") {
            extra.subnet_span = Some(v.span());
            link.subnet = self.typed(v, "subnet", values::subnet4);
        }
        if let Some(v) = m.get("mtu") {
            link.mtu = self.typed(v, "mtu", |s| values::uint(s, 68, 65535)).map(|v| v as u32);
        }
        if let Some(v) = m.get("impair") {
            if let Some(im) = self.map_of(v, "impair") {
                let directional = im.entries.iter().any(|(k, _)| k.s.contains("->"));
                if directional {
                    for (k, dv) in &im.entries {
                        let dir = match k.s.split_once("->") {
                            Some(("a", "b")) => Some(true),
                            Some(("b", "a")) => Some(false),
                            Some((x, y)) if x.trim() == link.a.node && y.trim() == link.b.node => Some(true),
                            Some((x, y)) if x.trim() == link.b.node && y.trim() == link.a.node => Some(false),
                            _ => None,
                        };
                        let Some(ab) = dir else {
                            self.push(
                                Diagnostic::new("topo::invalid-value", k.span, format!("`{}` is not a direction of this link", k.s))
                                    .label("unknown direction")
                                    .help(format!(
                                        "write `a->b` / `b->a` or `{0}->{1}` / `{1}->{0}`, or give one impairment for both directions",
                                        link.a.node, link.b.node
                                    )),
                            );
                            continue;
                        };
                        let imp = self.impairment(dv);
                        if ab {
                            link.impair_ab = imp;
                        } else {
                            link.impair_ba = imp;
                        }
                    }
                } else {
                    let imp = self.impairment(v);
                    link.impair_ab = imp;
                    link.impair_ba = imp;
                }
            }
        }
        Some((link, extra))
    }

    fn impairment(&mut self, v: &Y) -> Impairment {
        let mut imp = Impairment::default();
        let Some(m) = self.map_of(v, "impairment") else { return imp };
        self.check_keys(m, "an impairment", IMPAIR_KEYS, IMPAIR_LATER);
        let range = |cx: &mut Self, span: Span, what: &str, msg: String, label: &str| {
            cx.push(
                Diagnostic::new("topo::impairment-range", span, format!("`{what}` is out of range: {msg}"))
                    .label(label.to_owned()),
            );
        };
        let mut jitter_span = None;
        let mut reorder_span = None;
        // A bad `delay` is reported on its own; don't also complain that it is missing.
        let delay_given = m.get("delay").is_some();
        for (k, v) in &m.entries {
            match k.s.as_str() {
                "delay" => {
                    imp.delay = self.typed(v, "delay", values::duration);
                    if imp.delay.is_some_and(|d| d.as_secs() > 60) {
                        range(self, v.span(), "delay", "at most 60s".to_owned(), "too long");
                        imp.delay = None;
                    }
                }
                "jitter" => {
                    imp.jitter = self.typed(v, "jitter", values::duration);
                    jitter_span = Some(v.span());
                }
                "loss" | "duplicate" | "reorder" => {
                    let Some(p) = self.typed(v, &k.s, values::percent) else { continue };
                    if !(0.0..=100.0).contains(&p) {
                        range(
                            self,
                            v.span(),
                            &k.s,
                            format!("{p}% is not between 0% and 100%"),
                            "expected 0% to 100%",
                        );
                        continue;
                    }
                    match k.s.as_str() {
                        "loss" => imp.loss = Some(p),
                        "duplicate" => imp.duplicate = Some(p),
                        _ => {
                            imp.reorder = Some(p);
                            reorder_span = Some(v.span());
                        }
                    }
                }
                "rate" => {
                    imp.rate = self.typed(v, "rate", values::rate);
                    if imp.rate.is_some_and(|r| r < 1000) {
                        range(self, v.span(), "rate", "the lowest rate is 1kbit".to_owned(), "too low");
                        imp.rate = None;
                    }
                }
                _ => {}
            }
        }
        if let (Some(j), Some(span)) = (imp.jitter, jitter_span) {
            match imp.delay {
                None if delay_given => {}
                None => range(
                    self,
                    span,
                    "jitter",
                    "jitter varies the delay, so it needs `delay`".to_owned(),
                    "no delay to vary",
                ),
                Some(d) if j > d => range(
                    self,
                    span,
                    "jitter",
                    format!("jitter ({j:?}) is larger than delay ({d:?})"),
                    "at most the delay",
                ),
                _ => {}
            }
        }
        if let (Some(_), Some(span), false) = (imp.reorder, reorder_span, delay_given) {
            range(
                self,
                span,
                "reorder",
                "reordering sends some packets early, so it needs `delay`".to_owned(),
                "no delay",
            );
        }
        imp
    }
}

pub fn reserved_address(span: Span, a: Ipv4Addr, subnet: Ipv4Net, related: Option<Span>) -> Diagnostic {
    let which = if a == subnet.network() { "network" } else { "broadcast" };
    let mut d =
        Diagnostic::new("topo::reserved-address", span, format!("{a} is the {which} address of {subnet}"))
            .label(format!("{which} address"))
            .help(format!(
                "use a host address between {} and {}",
                Ipv4Addr::from(u32::from(subnet.network()) + 1),
                Ipv4Addr::from(u32::from(subnet.broadcast()) - 1)
            ));
    if let Some(r) = related {
        d = d.related(r, "subnet defined here");
    }
    d
}
