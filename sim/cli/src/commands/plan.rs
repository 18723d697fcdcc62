//! `topo plan FILE [--node N] [--json]`: show what `topo up` would build, without building it.
//!
//! Tables (nodes, networks, interfaces, routes, links) on stdout; `--json` prints the plan as
//! JSON instead (the exact `Plan` the backends consume, or one node's part with `--node`).
//! Diagnostics go to stderr with exit code 3.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::path::Path;

use tabled::builder::Builder;
use tabled::settings::Style;
use topo_plan::{Attachment, NodePlan, Plan};
use topo_spec::Impairment;

use crate::exit_code;

pub fn run(file: &Path, node: Option<&str>, json: bool) -> i32 {
    let plan = match topo_plan::plan_file(file) {
        Ok(p) => p,
        Err(diags) => {
            let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            eprint!("{}", topo_spec::render(&diags, color));
            return exit_code::INVALID_INPUT;
        }
    };
    let selected = match node {
        Some(name) => {
            let Some(n) = plan.node(name) else {
                let known: Vec<&str> = plan.nodes.iter().take(10).map(|n| n.name.as_str()).collect();
                let more = if plan.nodes.len() > 10 { ", ..." } else { "" };
                eprintln!(
                    "error: lab {} has no node named {name:?} (nodes: {}{more})",
                    plan.lab,
                    known.join(", ")
                );
                return exit_code::USAGE;
            };
            Some(n)
        }
        None => None,
    };
    let out = if json {
        let text = match selected {
            Some(n) => serde_json::to_string_pretty(n),
            None => Ok(plan.to_json()),
        };
        match text {
            Ok(t) => t + "\n",
            Err(e) => {
                eprintln!("error: cannot serialize the plan: {e}");
                return exit_code::LAB_ERROR;
            }
        }
    } else {
        render_tables(&plan, selected)
    };
    // A closed pipe (e.g. `| head`) is not an error worth reporting.
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
    exit_code::OK
}

fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    if rows.is_empty() {
        return "(none)".into();
    }
    let mut b = Builder::with_capacity(rows.len() + 1, header.len());
    b.push_record(header.iter().copied());
    for r in rows {
        b.push_record(r);
    }
    let mut t = b.build();
    t.with(Style::psql());
    t.to_string()
}

fn or_dash(s: String) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s
    }
}

/// All tables for the plan, or only the parts that concern one node.
pub fn render_tables(plan: &Plan, only: Option<&NodePlan>) -> String {
    let nodes: Vec<&NodePlan> = match only {
        Some(n) => vec![n],
        None => plan.nodes.iter().collect(),
    };
    let mut out = String::new();
    let count = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    let _ = writeln!(
        out,
        "lab {}: {}, {}, {} (fabric namespace {})\n",
        plan.lab,
        count(plan.nodes.len(), "node"),
        count(plan.fabric.bridges.len(), "network"),
        count(plan.links.len(), "link"),
        plan.fabric.netns
    );

    out.push_str("NODES\n");
    let rows = nodes
        .iter()
        .map(|n| {
            vec![
                n.name.clone(),
                format!("{:?}", n.kind).to_lowercase(),
                n.netns.clone(),
                n.primary_address().map_or_else(|| "-".into(), |a| a.to_string()),
                n.interfaces.len().to_string(),
                n.routing.as_ref().map_or_else(
                    || "-".into(),
                    |r| {
                        let proto = if r.ospf.is_some() { "ospf" } else { "none" };
                        format!("{proto} ({:?})", r.daemon).to_lowercase()
                    },
                ),
                or_dash(n.depends_on.join(",")),
            ]
        })
        .collect();
    out.push_str(&table(&["node", "kind", "netns", "address", "ifaces", "routing", "depends on"], rows));
    out.push_str("\n\n");

    if only.is_none() {
        out.push_str("NETWORKS\n");
        let rows = plan
            .fabric
            .bridges
            .iter()
            .map(|b| {
                vec![
                    b.network.clone(),
                    b.ifname.clone(),
                    b.subnet.to_string(),
                    b.subnet6.map_or_else(|| "-".into(), |s| s.to_string()),
                    b.gateway.map_or_else(|| "-".into(), |g| g.to_string()),
                    b.gateway_node.clone().unwrap_or_else(|| "-".into()),
                    b.mtu.to_string(),
                ]
            })
            .collect();
        out.push_str(&table(&["network", "bridge", "subnet", "subnet6", "gateway", "held by", "mtu"], rows));
        out.push_str("\n\n");
    }

    out.push_str("INTERFACES\n");
    let mut rows = Vec::new();
    for n in &nodes {
        for i in &n.interfaces {
            let mut addrs: Vec<String> = i.addresses.iter().map(ToString::to_string).collect();
            addrs.extend(i.addresses6.iter().map(ToString::to_string));
            if i.dhcp {
                addrs.push("dhcp".into());
            }
            let attached = match &i.attachment {
                Attachment::Network { network, bridge, port } => format!("{network} ({bridge} via {port})"),
                Attachment::Link { link, peer_node, peer_iface } => {
                    format!("link {link} to {peer_node}/{peer_iface}")
                }
            };
            rows.push(vec![
                n.name.clone(),
                i.name.clone(),
                i.mac.to_string(),
                i.mtu.to_string(),
                or_dash(addrs.join(" ")),
                attached,
            ]);
        }
        if !n.loopbacks.is_empty() {
            let lo: Vec<String> = n.loopbacks.iter().map(ToString::to_string).collect();
            rows.push(vec![n.name.clone(), "lo".into(), "-".into(), "-".into(), lo.join(" "), "-".into()]);
        }
    }
    out.push_str(&table(&["node", "iface", "mac", "mtu", "addresses", "attached to"], rows));
    out.push_str("\n\n");

    out.push_str("ROUTES (connected routes not shown)\n");
    let mut rows = Vec::new();
    for n in &nodes {
        for r in &n.routes {
            rows.push(vec![
                n.name.clone(),
                r.to.to_string(),
                r.via.to_string(),
                r.dev.clone(),
                r.metric.map_or_else(|| "-".into(), |m| m.to_string()),
                format!("{:?}", r.origin).to_lowercase(),
            ]);
        }
    }
    out.push_str(&table(&["node", "to", "via", "dev", "metric", "origin"], rows));
    out.push_str("\n\n");

    let links: Vec<_> =
        plan.links.iter().filter(|l| only.is_none_or(|n| l.a.node == n.name || l.b.node == n.name)).collect();
    out.push_str("LINKS\n");
    let rows = links
        .iter()
        .map(|l| {
            vec![
                l.index.to_string(),
                format!("{}/{} {}", l.a.node, l.a.iface, l.a.address.addr()),
                format!("{}/{} {}", l.b.node, l.b.iface, l.b.address.addr()),
                l.subnet.to_string(),
                l.mtu.to_string(),
                impairment(&l.impair_ab),
                impairment(&l.impair_ba),
            ]
        })
        .collect();
    out.push_str(&table(&["#", "a", "b", "subnet", "mtu", "impair a->b", "impair b->a"], rows));
    out.push('\n');

    if let Some(n) = only {
        out.push_str("\nSYSCTLS\n");
        let rows = n.sysctls.iter().map(|(k, v)| vec![k.clone(), v.clone()]).collect();
        out.push_str(&table(&["key", "value"], rows));
        out.push('\n');
        if !n.masquerade.is_empty() {
            let _ = writeln!(out, "\nmasquerade out of: {}", n.masquerade.join(", "));
        }
        if let Some(o) = n.routing.as_ref().and_then(|r| r.ospf.as_ref()) {
            let _ = writeln!(
                out,
                "\nOSPF router-id {} hello {}s dead {}s{}{}",
                o.router_id,
                o.hello_interval,
                o.dead_interval,
                if o.fast { " fast" } else { "" },
                if o.bfd { " bfd" } else { "" }
            );
            let rows = o
                .interfaces
                .iter()
                .map(|i| {
                    vec![
                        i.iface.clone(),
                        i.area.to_string(),
                        i.cost.to_string(),
                        if i.point_to_point { "point-to-point" } else { "broadcast" }.into(),
                        if i.passive { "yes" } else { "no" }.into(),
                    ]
                })
                .collect();
            out.push_str(&table(&["iface", "area", "cost", "network", "passive"], rows));
            out.push('\n');
        }
    }
    out
}

fn impairment(i: &Impairment) -> String {
    let mut parts = Vec::new();
    if let Some(d) = i.delay {
        parts.push(format!("delay {}", humanize(d)));
    }
    if let Some(j) = i.jitter {
        parts.push(format!("jitter {}", humanize(j)));
    }
    for (name, v) in [("loss", i.loss), ("duplicate", i.duplicate), ("reorder", i.reorder)] {
        if let Some(v) = v {
            parts.push(format!("{name} {v}%"));
        }
    }
    if let Some(r) = i.rate {
        parts.push(format!("rate {}", rate(r)));
    }
    or_dash(parts.join(", "))
}

fn humanize(d: std::time::Duration) -> String {
    let us = d.as_micros();
    if us % 1000 == 0 {
        format!("{}ms", us / 1000)
    } else {
        format!("{us}us")
    }
}

fn rate(bps: u64) -> String {
    match bps {
        b if b >= 1_000_000_000 && b % 1_000_000_000 == 0 => format!("{}gbit", b / 1_000_000_000),
        b if b >= 1_000_000 && b % 1_000_000 == 0 => format!("{}mbit", b / 1_000_000),
        b if b >= 1_000 && b % 1_000 == 0 => format!("{}kbit", b / 1_000),
        b => format!("{b}bit"),
    }
}
