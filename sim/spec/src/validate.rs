//! Cross-reference checks on the expanded topology: names, references, address plan,
//! dependency cycles. Everything is linear or `n log n` in the size of the lab (hash maps,
//! sorted sweeps) so that thousands of nodes validate in milliseconds.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::Ipv4Net;

use crate::diag::Diagnostic;
use crate::ir::{AddrSpec, NodeKind, Span, Topology};
use crate::parse::{reserved_address, LinkExtra, NodeExtra};
use crate::values;

pub fn validate(t: &mut Topology, nodes_x: &[NodeExtra], links_x: &[LinkExtra], diags: &mut Vec<Diagnostic>) {
    let node_index = duplicate_nodes(t, diags);
    links(t, &node_index, links_x, diags);
    overlaps(t, links_x, diags);
    addresses(t, nodes_x, links_x, diags);
    interface_names(t, nodes_x, links_x, diags);
    attachments(t, nodes_x, diags);
    routes(t, nodes_x, diags);
    depends(t, &node_index, nodes_x, diags);
}

fn duplicate_nodes(t: &Topology, diags: &mut Vec<Diagnostic>) -> HashMap<String, usize> {
    let mut index: HashMap<String, usize> = HashMap::with_capacity(t.nodes.len());
    for (i, n) in t.nodes.iter().enumerate() {
        if let Some(&first) = index.get(&n.name) {
            let first_span = t.nodes[first].span;
            diags.push(
                Diagnostic::new(
                    "topo::duplicate-name",
                    n.span,
                    format!("node `{}` is defined twice", n.name),
                )
                .label(if n.counter.is_some() {
                    "second definition (from this counter)"
                } else {
                    "second definition"
                })
                .related(first_span, "first defined here")
                .help("node names must be unique after counter expansion; rename one or narrow the range"),
            );
        } else {
            index.insert(n.name.clone(), i);
        }
    }
    index
}

fn unknown_node(name: &str, span: Span, index: &HashMap<String, usize>) -> Diagnostic {
    let mut d = Diagnostic::new("topo::unknown-reference", span, format!("unknown node `{name}`"))
        .label("no such node");
    if let Some(s) = values::suggest(name, index.keys().map(String::as_str)) {
        d = d.help(format!("did you mean `{s}`?"));
    } else {
        d = d.help("define it under `nodes:`");
    }
    d
}

fn links(t: &Topology, index: &HashMap<String, usize>, xs: &[LinkExtra], diags: &mut Vec<Diagnostic>) {
    for (l, x) in t.links.iter().zip(xs) {
        for end in [&l.a, &l.b] {
            if !index.contains_key(&end.node) {
                diags.push(unknown_node(&end.node, end.span, index));
            }
        }
        if l.a.node == l.b.node {
            diags.push(
                Diagnostic::new(
                    "topo::invalid-value",
                    l.b.span,
                    format!("link connects `{}` to itself", l.a.node),
                )
                .label("same node on both ends")
                .related(l.a.span, "first end")
                .help("a link joins two different nodes; use `loopback` for addresses on the node itself"),
            );
        }
        let addrs = [(l.a.address, x.address_spans[0]), (l.b.address, x.address_spans[1])];
        match (l.subnet, x.subnet_span) {
            (None, _) => {
                for (a, span) in addrs {
                    if let (Some(a), Some(span)) = (a, span) {
                        diags.push(
                            Diagnostic::new("topo::missing-key", span, format!("static address {a} on a link without `subnet`"))
                                .label("no subnet to take the prefix from")
                                .help("give the link `subnet: 10.254.0.0/31` (or drop the address to allocate from the p2p pool)"),
                        );
                    }
                }
            }
            (Some(net), subnet_span) => {
                let subnet_span = subnet_span.unwrap_or(l.span);
                if net.prefix_len() > 31 {
                    diags.push(
                        Diagnostic::new(
                            "topo::invalid-value",
                            subnet_span,
                            format!("link subnet {net} has room for one address"),
                        )
                        .label("too small")
                        .help("a link needs /31 or larger"),
                    );
                    continue;
                }
                for (a, span) in addrs {
                    let (Some(a), Some(span)) = (a, span) else { continue };
                    if !net.contains(&a) {
                        diags.push(outside(span, a, net, subnet_span));
                    } else if net.prefix_len() < 31 && (a == net.network() || a == net.broadcast()) {
                        diags.push(reserved_address(span, a, net, Some(subnet_span)));
                    }
                }
            }
        }
    }
}

fn outside(span: Span, a: Ipv4Addr, net: Ipv4Net, net_span: Span) -> Diagnostic {
    Diagnostic::new("topo::address-outside-subnet", span, format!("{a} is not inside subnet {net}"))
        .label("outside the subnet")
        .related(net_span, "subnet defined here")
        .help(format!("use an address in {net} ({} - {})", net.network(), net.broadcast()))
}

/// Overlapping subnets among networks, static link subnets and the p2p pool: sort by start
/// and sweep, comparing each range with the one reaching furthest so far.
fn overlaps(t: &Topology, xs: &[LinkExtra], diags: &mut Vec<Diagnostic>) {
    let mut ranges: Vec<(u128, u128, Span, String)> =
        Vec::with_capacity(t.networks.len() + t.links.len() + 1);
    let describe =
        |net: Ipv4Net| (u128::from(u32::from(net.network())), u128::from(u32::from(net.broadcast())));
    let (s, e) = describe(t.pools.p2p);
    ranges.push((s, e, t.pools.p2p_span, format!("the p2p pool {}", t.pools.p2p)));
    for n in &t.networks {
        let (s, e) = describe(n.subnet);
        ranges.push((s, e, n.subnet_span, format!("network `{}` ({})", n.name, n.subnet)));
    }
    for (l, x) in t.links.iter().zip(xs) {
        if let Some(net) = l.subnet {
            let (s, e) = describe(net);
            ranges.push((
                s,
                e,
                x.subnet_span.unwrap_or(l.span),
                format!("link {} -- {} ({net})", l.a.node, l.b.node),
            ));
        }
    }
    sweep(ranges, diags);
    let v6: Vec<(u128, u128, Span, String)> = t
        .networks
        .iter()
        .filter_map(|n| {
            let net = n.subnet6?;
            Some((
                u128::from(net.network()),
                u128::from(net.broadcast()),
                n.span,
                format!("network `{}` ({net})", n.name),
            ))
        })
        .collect();
    sweep(v6, diags);
}

/// Report overlapping ranges: sort by start and sweep, comparing each range with the one
/// reaching furthest so far.
fn sweep(mut ranges: Vec<(u128, u128, Span, String)>, diags: &mut Vec<Diagnostic>) {
    ranges.sort_by_key(|r| (r.0, std::cmp::Reverse(r.1), r.2.offset));
    let mut reach: Option<usize> = None;
    for i in 0..ranges.len() {
        if let Some(j) = reach {
            if ranges[i].0 <= ranges[j].1 {
                let (a, b) = (&ranges[j], &ranges[i]);
                // Report at the later position in the file, pointing back at the earlier one.
                let (first, second) = if a.2.offset <= b.2.offset { (a, b) } else { (b, a) };
                diags.push(
                    Diagnostic::new(
                        "topo::subnet-overlap",
                        second.2,
                        format!("{} overlaps {}", second.3, first.3),
                    )
                    .label("overlapping subnet")
                    .related(first.2, "overlaps this one")
                    .help("every network, static link subnet and the p2p pool need disjoint address ranges"),
                );
            }
            if ranges[i].1 > ranges[j].1 {
                reach = Some(i);
            }
        } else {
            reach = Some(i);
        }
    }
}

fn addresses(t: &Topology, nodes_x: &[NodeExtra], links_x: &[LinkExtra], diags: &mut Vec<Diagnostic>) {
    let nets: HashMap<&str, usize> =
        t.networks.iter().enumerate().map(|(i, n)| (n.name.as_str(), i)).collect();
    let mut seen: HashMap<Ipv4Addr, Span> = HashMap::new();
    let mut seen6: HashMap<Ipv6Addr, Span> = HashMap::new();
    let mut claim = |a: Ipv4Addr, span: Span, diags: &mut Vec<Diagnostic>| {
        if let Some(first) = seen.get(&a) {
            diags.push(
                Diagnostic::new("topo::duplicate-address", span, format!("address {a} is used twice"))
                    .label("second use")
                    .related(*first, "first used here")
                    .help("static addresses must be unique in the lab; use `auto` to let topo allocate"),
            );
        } else {
            seen.insert(a, span);
        }
    };
    for (n, x) in t.nodes.iter().zip(nodes_x) {
        for iface in &n.interfaces {
            let AddrSpec::Static(a) = iface.address else { continue };
            let Some(&ni) = nets.get(iface.network.as_str()) else { continue };
            let net = &t.networks[ni];
            let span = iface.address_span;
            if !net.subnet.contains(&a) {
                diags.push(outside(span, a, net.subnet, net.subnet_span));
                continue;
            }
            if a == net.subnet.network() || a == net.subnet.broadcast() {
                diags.push(reserved_address(span, a, net.subnet, Some(net.subnet_span)));
                continue;
            }
            if net.gateway == Some(a) && n.kind != NodeKind::Router {
                diags.push(
                    Diagnostic::new(
                        "topo::gateway-address",
                        span,
                        format!("{a} is the gateway of network `{}`, reserved for a router", net.name),
                    )
                    .label("reserved gateway address")
                    .related(net.gateway_span, "gateway of this network")
                    .help(
                        "pick another address; only a router (`kind: router`) may hold the gateway address",
                    ),
                );
                continue;
            }
            claim(a, span, diags);
        }
        for (iface, span) in n.interfaces.iter().zip(&x.address6_spans) {
            if let (Some(a), Some(span)) = (iface.address6, span) {
                if let Some(first) = seen6.get(&a) {
                    diags.push(
                        Diagnostic::new(
                            "topo::duplicate-address",
                            *span,
                            format!("address {a} is used twice"),
                        )
                        .label("second use")
                        .related(*first, "first used here")
                        .help("static addresses must be unique in the lab"),
                    );
                } else {
                    seen6.insert(a, *span);
                }
            }
        }
        for (lo, span) in n.loopbacks.iter().zip(&x.loopback_spans) {
            claim(lo.addr(), *span, diags);
        }
    }
    for (l, x) in t.links.iter().zip(links_x) {
        if l.subnet.is_none() {
            continue;
        }
        for (end, span) in [(&l.a, x.address_spans[0]), (&l.b, x.address_spans[1])] {
            if let (Some(a), Some(span)) = (end.address, span) {
                if l.subnet.is_some_and(|net| net.contains(&a)) {
                    claim(a, span, diags);
                }
            }
        }
    }
}

fn interface_names(t: &Topology, nodes_x: &[NodeExtra], links_x: &[LinkExtra], diags: &mut Vec<Diagnostic>) {
    // Per node: (name, span) of every explicitly named interface.
    let mut names: Vec<Vec<(&str, Span)>> = vec![Vec::new(); t.nodes.len()];
    let index: HashMap<&str, usize> = t.nodes.iter().enumerate().map(|(i, n)| (n.name.as_str(), i)).collect();
    for (i, (n, x)) in t.nodes.iter().zip(nodes_x).enumerate() {
        for (iface, span) in n.interfaces.iter().zip(&x.iface_name_spans) {
            if let (Some(name), Some(span)) = (&iface.name, span) {
                names[i].push((name.as_str(), *span));
            }
        }
    }
    for (l, x) in t.links.iter().zip(links_x) {
        for (end, span) in [(&l.a, x.name_spans[0]), (&l.b, x.name_spans[1])] {
            if let (Some(name), Some(span), Some(&i)) = (&end.name, span, index.get(end.node.as_str())) {
                names[i].push((name.as_str(), span));
            }
        }
    }
    for (i, list) in names.iter().enumerate() {
        let mut seen: HashMap<&str, Span> = HashMap::new();
        for &(name, span) in list {
            if let Some(problem) = values::ifname_problem(name) {
                diags.push(
                    Diagnostic::new("topo::interface-name", span, format!("invalid interface name `{name}`"))
                        .label(problem)
                        .help("Linux interface names have at most 15 characters: letters, digits, `-`, `_`, `.`"),
                );
                continue;
            }
            if let Some(first) = seen.get(name) {
                diags.push(
                    Diagnostic::new(
                        "topo::duplicate-interface",
                        span,
                        format!("node `{}` has two interfaces named `{name}`", t.nodes[i].name),
                    )
                    .label("second interface with this name")
                    .related(*first, "first one")
                    .help("interface names must be unique within a node"),
                );
            } else {
                seen.insert(name, span);
            }
        }
    }
}

/// Names a node can use for its attachments (its networks and the peers of its links), with
/// how many attachments answer to each name.
fn attachment_names(t: &Topology) -> Vec<HashMap<&str, u32>> {
    let index: HashMap<&str, usize> = t.nodes.iter().enumerate().map(|(i, n)| (n.name.as_str(), i)).collect();
    let mut out: Vec<HashMap<&str, u32>> = t
        .nodes
        .iter()
        .map(|n| {
            let mut m = HashMap::new();
            for i in &n.interfaces {
                *m.entry(i.network.as_str()).or_insert(0) += 1;
            }
            m
        })
        .collect();
    for l in &t.links {
        if let Some(&i) = index.get(l.a.node.as_str()) {
            *out[i].entry(l.b.node.as_str()).or_insert(0) += 1;
        }
        if let Some(&i) = index.get(l.b.node.as_str()) {
            *out[i].entry(l.a.node.as_str()).or_insert(0) += 1;
        }
    }
    out
}

fn ambiguous(node: &str, what: &str, name: &str, span: Span) -> Diagnostic {
    Diagnostic::new(
        "topo::ambiguous-attachment",
        span,
        format!("{what} names `{name}`, which matches more than one attachment of `{node}`"),
    )
    .label("ambiguous attachment")
    .help(
        "attachments are named by network, or by the peer node of a link; a node attached twice to the same \
         network or linked twice to the same peer (or to a node named like one of its networks) cannot be told apart",
    )
}

fn attachments(t: &Topology, nodes_x: &[NodeExtra], diags: &mut Vec<Diagnostic>) {
    let names = attachment_names(t);
    let unknown = |node: &str, what: &str, name: &str, span: Span, have: &HashMap<&str, u32>| {
        let mut list: Vec<&str> = have.keys().copied().collect();
        list.sort_unstable();
        let help = match values::suggest(name, list.iter().copied()) {
            Some(s) => format!("did you mean `{s}`?"),
            None if list.is_empty() => format!("node `{node}` has no interfaces or links"),
            None => format!(
                "attachments of `{node}`: {} (network names, or the peer node of a link)",
                list.join(", ")
            ),
        };
        Diagnostic::new(
            "topo::unknown-attachment",
            span,
            format!("{what} names `{name}`, which `{node}` is not attached to"),
        )
        .label("not an attachment of this node")
        .help(help)
    };
    for ((n, x), have) in t.nodes.iter().zip(nodes_x).zip(&names) {
        if let Some(r) = &n.routing {
            if n.kind != NodeKind::Router {
                let mut d = Diagnostic::new(
                    "topo::routing-on-host",
                    r.span,
                    format!("`{}` runs routing but is a host", n.name),
                )
                .label("routing needs a router")
                .help("add `kind: router` to the node (routers forward packets; hosts don't)");
                if let Some(ks) = x.kind_span {
                    d = d.related(ks, "kind set here");
                }
                diags.push(d);
            }
            if let Some(ospf) = &r.ospf {
                for (name, oi) in &ospf.interfaces {
                    match have.get(name.as_str()) {
                        None => diags.push(unknown(&n.name, "OSPF interface", name, oi.span, have)),
                        Some(&c) if c > 1 => diags.push(ambiguous(&n.name, "OSPF interface", name, oi.span)),
                        Some(_) => {}
                    }
                }
            }
        }
        for (name, span) in n.masquerade.iter().zip(&x.masquerade_spans) {
            match have.get(name.as_str()) {
                None => diags.push(unknown(&n.name, "masquerade", name, *span, have)),
                Some(&c) if c > 1 => diags.push(ambiguous(&n.name, "masquerade", name, *span)),
                Some(_) => {}
            }
        }
    }
}

fn routes(t: &Topology, nodes_x: &[NodeExtra], diags: &mut Vec<Diagnostic>) {
    let nets: HashMap<&str, usize> =
        t.networks.iter().enumerate().map(|(i, n)| (n.name.as_str(), i)).collect();
    let index: HashMap<&str, usize> = t.nodes.iter().enumerate().map(|(i, n)| (n.name.as_str(), i)).collect();
    // Connected subnets of each node: its networks, its static link subnets, and the p2p pool
    // when it has a link whose subnet the plan allocates.
    let mut connected: Vec<Vec<Ipv4Net>> = t
        .nodes
        .iter()
        .map(|n| {
            n.interfaces
                .iter()
                .filter_map(|i| nets.get(i.network.as_str()).map(|&ni| t.networks[ni].subnet))
                .collect()
        })
        .collect();
    for l in &t.links {
        let net = l.subnet.unwrap_or(t.pools.p2p);
        for end in [&l.a, &l.b] {
            if let Some(&i) = index.get(end.node.as_str()) {
                connected[i].push(net);
            }
        }
    }
    for ((n, x), conn) in t.nodes.iter().zip(nodes_x).zip(&connected) {
        for (r, via_span) in n.routes.iter().zip(&x.via_spans) {
            if conn.iter().any(|net| net.contains(&r.via)) {
                continue;
            }
            let mut list: Vec<String> = conn.iter().map(ToString::to_string).collect();
            list.dedup();
            diags.push(
                Diagnostic::new(
                    "topo::unreachable-gateway",
                    *via_span,
                    format!("route via {} is not on a subnet `{}` is connected to", r.via, n.name),
                )
                .label("next hop not directly reachable")
                .help(if list.is_empty() {
                    format!("`{}` has no interfaces; attach it to a network or link first", n.name)
                } else {
                    format!("the next hop must be a neighbour on one of: {}", list.join(", "))
                }),
            );
        }
    }
}

/// Glob match with `*` only (e.g. `web-*`).
fn glob(pattern: &str, s: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == s;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !s.starts_with(first) || !s[first.len()..].ends_with(last) || s.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &s[first.len()..s.len() - last.len()];
    for p in &parts[1..parts.len() - 1] {
        match rest.find(p) {
            Some(i) => rest = &rest[i + p.len()..],
            None => return false,
        }
    }
    true
}

fn depends(
    t: &mut Topology,
    index: &HashMap<String, usize>,
    nodes_x: &[NodeExtra],
    diags: &mut Vec<Diagnostic>,
) {
    let count = t.nodes.len();
    // edges[i] = (dependency index, span of the entry that asked for it)
    let mut edges: Vec<Vec<(usize, Span)>> = vec![Vec::new(); count];
    for (i, x) in nodes_x.iter().enumerate().take(count) {
        for (dep, span, inherited) in &x.depends {
            if dep.contains('*') {
                let before = edges[i].len();
                let mut matched_self = false;
                for (j, other) in t.nodes.iter().enumerate() {
                    if glob(dep, &other.name) && index.get(&other.name) == Some(&j) {
                        if j == i {
                            matched_self = true;
                        } else {
                            edges[i].push((j, *span));
                        }
                    }
                }
                // An inherited pattern may match only the node itself (e.g. `db*` from
                // `defaults`, seen from `db`); the node's own patterns must match another node.
                if edges[i].len() == before && !(*inherited && matched_self) {
                    diags.push(
                        Diagnostic::new(
                            "topo::unknown-reference",
                            *span,
                            format!("`{dep}` matches no other node"),
                        )
                        .label("pattern matches nothing")
                        .help("`*` matches any characters; check the node names"),
                    );
                }
                continue;
            }
            match index.get(dep) {
                // `depends_on: [db]` in `defaults` does not make `db` wait for itself.
                Some(&j) if j == i && *inherited => {}
                Some(&j) if j == i => diags.push(
                    Diagnostic::new("topo::dependency-cycle", *span, format!("`{dep}` depends on itself"))
                        .label("self dependency")
                        .help("remove it"),
                ),
                Some(&j) => edges[i].push((j, *span)),
                None => diags.push(unknown_node(dep, *span, index)),
            }
        }
        let mut seen = HashSet::new();
        edges[i].retain(|(j, _)| seen.insert(*j));
    }
    for (i, e) in edges.iter().enumerate() {
        t.nodes[i].depends_on = e.iter().map(|(j, _)| t.nodes[*j].name.clone()).collect();
    }
    // Iterative DFS; a grey successor closes a cycle, reported once per strongly tied group.
    let mut color = vec![0u8; count];
    let mut in_reported = vec![false; count];
    for start in 0..count {
        if color[start] != 0 {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        color[start] = 1;
        while let Some(&mut (v, ref mut next)) = stack.last_mut() {
            if let Some(&(w, span)) = edges[v].get(*next) {
                *next += 1;
                match color[w] {
                    0 => {
                        color[w] = 1;
                        stack.push((w, 0));
                    }
                    1 => {
                        let pos = stack.iter().position(|(u, _)| *u == w).unwrap_or(0);
                        let cycle: Vec<usize> = stack[pos..].iter().map(|(u, _)| *u).collect();
                        if cycle.iter().any(|&u| in_reported[u]) {
                            continue;
                        }
                        for &u in &cycle {
                            in_reported[u] = true;
                        }
                        let mut path: Vec<&str> = cycle.iter().map(|&u| t.nodes[u].name.as_str()).collect();
                        path.push(&t.nodes[w].name);
                        let mut d = Diagnostic::new(
                            "topo::dependency-cycle",
                            span,
                            format!("depends_on forms a cycle: {}", path.join(" -> ")),
                        )
                        .label("this dependency closes the cycle")
                        .help("start order needs an acyclic depends_on; remove one of these dependencies");
                        for win in cycle.windows(2) {
                            if let Some(&(_, s)) = edges[win[0]].iter().find(|(j, _)| *j == win[1]) {
                                d = d.related(
                                    s,
                                    format!("{} depends on {}", t.nodes[win[0]].name, t.nodes[win[1]].name),
                                );
                            }
                        }
                        diags.push(d);
                    }
                    _ => {}
                }
            } else {
                color[v] = 2;
                stack.pop();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn globs() {
        assert!(glob("web-*", "web-1"));
        assert!(glob("*-db", "main-db"));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxc"));
        assert!(!glob("web-*", "db"));
        assert!(glob("exact", "exact"));
        assert!(!glob("ab*ba", "aba"));
    }
}
