//! Faults written as text, as on the command line and in scenario files:
//!
//! ```text
//! partition a,b c            groups of node selectors (Blockade semantics)
//! oneway a->b                a's traffic to b is dropped (also: drop a,b->c)
//! heal | join
//! link down|up|cut|restore A B        p2p link between nodes A and B
//! link down|up|cut|restore NODE NET   NODE's attachment to network NET
//! node kill|pause|resume|stop|start NODE
//! impair A B [delay=50ms] [jitter=5ms] [loss=2%] [duplicate=1%] [reorder=1%] [rate=10mbit] [dir=A->B]
//! impair clear [A B]
//! ```
//!
//! Node arguments are selectors ([`crate::select`]); where one node is needed the selector
//! must match exactly one.

use std::time::Duration;

use topo_plan::{Attachment, Plan};
use topo_spec::Impairment;

use crate::select::{select, select_list};
use crate::{Fault, LabError, LinkRef};

fn invalid(msg: impl Into<String>) -> LabError {
    LabError::Invalid(msg.into())
}

/// Parse one fault. Names are resolved against `plan`.
pub fn parse_fault(plan: &Plan, text: &str) -> Result<Fault, LabError> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let usage = || {
        invalid(format!(
            "cannot read fault {text:?}: expected `partition G1 G2..`, `oneway A->B`, `heal`, \
             `link down|up|cut|restore A B`, `node kill|pause|resume|stop|start N`, or `impair A B ...`"
        ))
    };
    match words.as_slice() {
        ["partition", groups @ ..] if !groups.is_empty() => {
            let groups = groups.iter().map(|g| select_list(plan, g)).collect::<Result<Vec<_>, _>>()?;
            Ok(Fault::Partition { groups })
        }
        ["oneway" | "drop", rest @ ..] if !rest.is_empty() => {
            let joined = rest.join("");
            let (from, to) =
                joined.split_once("->").ok_or_else(|| invalid(format!("{text:?}: expected A->B")))?;
            Ok(Fault::Drop { from: select_list(plan, from)?, to: select_list(plan, to)? })
        }
        ["heal" | "join"] => Ok(Fault::Heal),
        ["link", action, a, b] => {
            let link = link_ref(plan, a, b)?;
            Ok(match *action {
                "down" => Fault::LinkDown { link },
                "up" => Fault::LinkUp { link },
                "cut" => Fault::LinkCut { link },
                "restore" => Fault::LinkRestore { link },
                other => {
                    return Err(invalid(format!(
                        "unknown link action {other:?}: use down, up, cut or restore"
                    )))
                }
            })
        }
        ["node", action, n] => {
            let node = one(plan, n)?;
            Ok(match *action {
                "kill" => Fault::NodeKill { node },
                "pause" => Fault::NodePause { node },
                "resume" => Fault::NodeResume { node },
                "stop" => Fault::NodeStop { node },
                "start" => Fault::NodeStart { node },
                other => {
                    return Err(invalid(format!(
                        "unknown node action {other:?}: use kill, pause, resume, stop or start"
                    )))
                }
            })
        }
        ["impair", "clear"] => Ok(Fault::ImpairClear { link: None }),
        ["impair", "clear", a, b] => Ok(Fault::ImpairClear { link: Some((one(plan, a)?, one(plan, b)?)) }),
        ["impair", a, b, opts @ ..] => {
            let (a, b) = (one(plan, a)?, one(plan, b)?);
            let (impairment, from) = parse_impairment(plan, opts)?;
            if let Some(f) = &from {
                if *f != a && *f != b {
                    return Err(invalid(format!("direction {f}-> names neither end of the link {a} {b}")));
                }
            }
            Ok(Fault::Impair { a, b, from, impairment })
        }
        _ => Err(usage()),
    }
}

fn one(plan: &Plan, sel: &str) -> Result<String, LabError> {
    let mut v = select(plan, sel)?;
    if v.len() != 1 {
        return Err(invalid(format!(
            "{sel:?} matches {} nodes ({}); name exactly one",
            v.len(),
            v.join(", ")
        )));
    }
    Ok(v.remove(0))
}

/// `A B`: the p2p link between nodes A and B, or node A's attachment to network B.
fn link_ref(plan: &Plan, a: &str, b: &str) -> Result<LinkRef, LabError> {
    let a = one(plan, a)?;
    if plan.node(b).is_none() {
        let on_network = plan.node(&a).is_some_and(|n| {
            n.interfaces
                .iter()
                .any(|i| matches!(&i.attachment, Attachment::Network { network, .. } if network == b))
        });
        if on_network {
            return Ok(LinkRef::Lan { node: a, network: b.to_owned() });
        }
    }
    let b = one(plan, b)?;
    Ok(LinkRef::P2p { a, b })
}

fn parse_impairment(plan: &Plan, opts: &[&str]) -> Result<(Impairment, Option<String>), LabError> {
    let mut imp = Impairment::default();
    let mut from = None;
    let mut it = opts.iter();
    while let Some(opt) = it.next() {
        // Accept `key=value` and `--key value`.
        let (key, value) = match opt.strip_prefix("--") {
            Some(k) => match k.split_once('=') {
                Some(kv) => kv,
                None => (k, *it.next().ok_or_else(|| invalid(format!("--{k} needs a value")))?),
            },
            None => opt
                .split_once('=')
                .ok_or_else(|| invalid(format!("impairment option {opt:?}: use key=value")))?,
        };
        match key {
            "delay" => imp.delay = Some(duration(value)?),
            "jitter" => imp.jitter = Some(duration(value)?),
            "loss" => imp.loss = Some(percent(value)?),
            "duplicate" => imp.duplicate = Some(percent(value)?),
            "reorder" => imp.reorder = Some(percent(value)?),
            "rate" => imp.rate = Some(rate(value)?),
            "dir" => {
                let f = value.split_once("->").map_or(value, |(f, _)| f);
                from = Some(one(plan, f)?);
            }
            other => {
                return Err(invalid(format!(
                    "unknown impairment {other:?}: use delay, jitter, loss, duplicate, reorder, rate or dir"
                )))
            }
        }
    }
    Ok((imp, from))
}

fn duration(s: &str) -> Result<Duration, LabError> {
    let (num, unit) = split_unit(s);
    let v: f64 =
        num.parse().map_err(|_| invalid(format!("bad duration {s:?}: use e.g. 50ms, 1.5s, 200us")))?;
    let secs = match unit {
        "us" | "µs" => v / 1e6,
        "ms" | "" => v / 1e3,
        "s" => v,
        _ => return Err(invalid(format!("bad duration unit in {s:?}: use us, ms or s"))),
    };
    if !(0.0..=3600.0).contains(&secs) {
        return Err(invalid(format!("duration {s:?} out of range")));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn percent(s: &str) -> Result<f64, LabError> {
    let v: f64 =
        s.trim_end_matches('%').parse().map_err(|_| invalid(format!("bad percentage {s:?}: use e.g. 2%")))?;
    if !(0.0..=100.0).contains(&v) {
        return Err(invalid(format!("percentage {s:?} must be within 0..100")));
    }
    Ok(v)
}

/// Bits per second from `10mbit`, `512kbit`, `1gbit`, `1000bit` or `1000` (bit/s).
fn rate(s: &str) -> Result<u64, LabError> {
    let lower = s.to_ascii_lowercase();
    let (num, unit) = split_unit(&lower);
    let v: f64 = num.parse().map_err(|_| invalid(format!("bad rate {s:?}: use e.g. 10mbit")))?;
    let mult = match unit {
        "" | "bit" | "bps" => 1.0,
        "kbit" | "kbps" => 1e3,
        "mbit" | "mbps" => 1e6,
        "gbit" | "gbps" => 1e9,
        _ => return Err(invalid(format!("bad rate unit in {s:?}: use bit, kbit, mbit or gbit"))),
    };
    let bits = v * mult;
    if !(1.0..=1e12).contains(&bits) {
        return Err(invalid(format!("rate {s:?} out of range")));
    }
    Ok(bits.round() as u64)
}

fn split_unit(s: &str) -> (&str, &str) {
    let i = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    (&s[..i], &s[i..])
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use topo_plan::{Fabric, IfacePlan, LinkEndPlan, LinkPlan, Mac, NodePlan, Plan};
    use topo_spec::NodeKind;

    use super::*;

    fn node(name: &str, ifaces: Vec<IfacePlan>) -> NodePlan {
        NodePlan {
            name: name.into(),
            netns: String::new(),
            hostname: name.into(),
            kind: NodeKind::Host,
            groups: vec!["web".into()],
            labels: BTreeMap::new(),
            interfaces: ifaces,
            loopbacks: Vec::new(),
            routes: Vec::new(),
            sysctls: BTreeMap::new(),
            depends_on: Vec::new(),
            routing: None,
            masquerade: Vec::new(),
        }
    }

    fn iface(att: Attachment) -> IfacePlan {
        IfacePlan {
            name: "eth0".into(),
            mac: Mac([2, 0, 0, 0, 0, 1]),
            mtu: 1500,
            addresses: vec!["10.0.0.1/24".parse().expect("net")],
            addresses6: Vec::new(),
            dhcp: false,
            attachment: att,
        }
    }

    fn plan() -> Plan {
        let lan = || Attachment::Network { network: "lan".into(), bridge: "br".into(), port: "p".into() };
        let link = |p: &str| Attachment::Link { link: 0, peer_node: p.into(), peer_iface: "eth1".into() };
        let end = |n: &str| LinkEndPlan {
            node: n.into(),
            iface: "eth1".into(),
            address: "10.9.0.1/30".parse().expect("net"),
        };
        Plan {
            version: 1,
            lab: "t".into(),
            fabric: Fabric { netns: String::new(), bridges: Vec::new() },
            nodes: vec![
                node("a", vec![iface(lan()), iface(link("b"))]),
                node("b", vec![iface(lan()), iface(link("a"))]),
                node("c", vec![iface(lan())]),
            ],
            links: vec![LinkPlan {
                index: 0,
                a: end("a"),
                b: end("b"),
                subnet: "10.9.0.0/30".parse().expect("net"),
                mtu: 1500,
                impair_ab: Impairment::default(),
                impair_ba: Impairment::default(),
            }],
            hosts: Vec::new(),
            start_order: vec![0, 1, 2],
        }
    }

    #[test]
    fn parses_every_form() {
        let p = plan();
        let f = |s: &str| parse_fault(&p, s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(
            f("partition a,b c"),
            Fault::Partition { groups: vec![vec!["a".into(), "b".into()], vec!["c".into()]] }
        );
        assert_eq!(f("oneway a->b"), Fault::Drop { from: vec!["a".into()], to: vec!["b".into()] });
        assert_eq!(
            f("drop a, b -> c"),
            Fault::Drop { from: vec!["a".into(), "b".into()], to: vec!["c".into()] }
        );
        assert_eq!(
            f("partition web"),
            Fault::Partition { groups: vec![vec!["a".into(), "b".into(), "c".into()]] }
        );
        assert_eq!(f("heal"), Fault::Heal);
        assert_eq!(f("link cut a b"), Fault::LinkCut { link: LinkRef::P2p { a: "a".into(), b: "b".into() } });
        assert_eq!(
            f("link down c lan"),
            Fault::LinkDown { link: LinkRef::Lan { node: "c".into(), network: "lan".into() } }
        );
        assert_eq!(f("node stop c"), Fault::NodeStop { node: "c".into() });
        let Fault::Impair { from, impairment, .. } = f("impair a b delay=50ms loss=2% rate=10mbit dir=b->a")
        else {
            panic!("impair")
        };
        assert_eq!(from.as_deref(), Some("b"));
        assert_eq!(impairment.delay, Some(Duration::from_millis(50)));
        assert_eq!(impairment.loss, Some(2.0));
        assert_eq!(impairment.rate, Some(10_000_000));
        let Fault::Impair { impairment, .. } = f("impair a b --jitter 5ms") else { panic!("impair") };
        assert_eq!(impairment.jitter, Some(Duration::from_millis(5)));
        assert_eq!(f("impair clear"), Fault::ImpairClear { link: None });
    }

    #[test]
    fn rejects_nonsense_with_a_reason() {
        let p = plan();
        for bad in [
            "",
            "partition",
            "oneway a b",
            "link melt a b",
            "node stop web",
            "node stop zz",
            "impair a b loss=150%",
            "impair a b dir=c->a",
            "fly",
        ] {
            let e = parse_fault(&p, bad).expect_err(bad);
            assert!(!e.to_string().is_empty());
        }
    }
}
