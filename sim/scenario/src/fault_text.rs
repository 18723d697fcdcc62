//! Faults written as on the command line (`link cut r1 r2`, `node stop r2`, `partition a,b c`,
//! `oneway a->b`, `heal`), used by `converge: {fault: ...}`, and short descriptions of faults
//! for reports.
//!
//! TODO(topo-lab fault_text): when `topo_lab::fault_text::parse_fault(plan, text)` lands, parse
//! through it so the CLI and scenarios accept exactly the same text; this covers the forms the
//! scenario docs list.

use topo_lab::select::select_list;
use topo_lab::{Fault, LinkRef};
use topo_plan::Plan;

pub fn parse(plan: &Plan, text: &str) -> Result<Fault, String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let sel = |s: &str| select_list(plan, s).map_err(|e| e.to_string());
    let one = |s: &str| -> Result<String, String> {
        let v = sel(s)?;
        if v.len() == 1 {
            Ok(v[0].clone())
        } else {
            Err(format!("`{s}` selects {} nodes; name one", v.len()))
        }
    };
    match words.as_slice() {
        ["heal"] => Ok(Fault::Heal),
        ["link", action, a, b] => {
            let a = one(a)?;
            let link = if plan.fabric.bridges.iter().any(|br| br.network == *b) {
                LinkRef::Lan { node: a, network: (*b).to_owned() }
            } else {
                LinkRef::P2p { a, b: one(b)? }
            };
            match *action {
                "down" => Ok(Fault::LinkDown { link }),
                "up" => Ok(Fault::LinkUp { link }),
                "cut" => Ok(Fault::LinkCut { link }),
                "restore" => Ok(Fault::LinkRestore { link }),
                other => Err(format!("unknown link action `{other}`: use down, up, cut or restore")),
            }
        }
        ["node", action, n] => {
            let node = one(n)?;
            match *action {
                "kill" => Ok(Fault::NodeKill { node }),
                "pause" => Ok(Fault::NodePause { node }),
                "resume" => Ok(Fault::NodeResume { node }),
                "stop" => Ok(Fault::NodeStop { node }),
                "start" => Ok(Fault::NodeStart { node }),
                other => Err(format!("unknown node action `{other}`: use kill, pause, resume, stop or start")),
            }
        }
        ["partition", groups @ ..] if !groups.is_empty() => {
            Ok(Fault::Partition { groups: groups.iter().map(|g| sel(g)).collect::<Result<_, _>>()? })
        }
        ["oneway", dir] | ["partition", "--oneway", dir] => {
            let (a, b) = dir.split_once("->").ok_or_else(|| format!("`{dir}` is not a direction `a->b`"))?;
            Ok(Fault::Drop { from: sel(a)?, to: sel(b)? })
        }
        _ => Err(format!(
            "cannot read the fault `{text}`: use `link down|up|cut|restore A B`, `node kill|pause|resume|stop|start N`, `partition A,B C`, `oneway A->B` or `heal`"
        )),
    }
}

fn link_text(l: &LinkRef) -> String {
    match l {
        LinkRef::P2p { a, b } => format!("{a} {b}"),
        LinkRef::Lan { node, network } => format!("{node} {network}"),
    }
}

/// The fault in command-line form.
pub fn describe(f: &Fault) -> String {
    match f {
        Fault::Partition { groups } => {
            format!("partition {}", groups.iter().map(|g| g.join(",")).collect::<Vec<_>>().join(" "))
        }
        Fault::Drop { from, to } => format!("oneway {}->{}", from.join(","), to.join(",")),
        Fault::Heal => "heal".into(),
        Fault::LinkDown { link } => format!("link down {}", link_text(link)),
        Fault::LinkUp { link } => format!("link up {}", link_text(link)),
        Fault::LinkCut { link } => format!("link cut {}", link_text(link)),
        Fault::LinkRestore { link } => format!("link restore {}", link_text(link)),
        Fault::NodeKill { node } => format!("node kill {node}"),
        Fault::NodePause { node } => format!("node pause {node}"),
        Fault::NodeResume { node } => format!("node resume {node}"),
        Fault::NodeStop { node } => format!("node stop {node}"),
        Fault::NodeStart { node } => format!("node start {node}"),
        Fault::Impair { a, b, from, .. } => match from {
            Some(f) if f == a => format!("impair {a}->{b}"),
            Some(_) => format!("impair {b}->{a}"),
            None => format!("impair {a} {b}"),
        },
        Fault::ImpairClear { link: Some((a, b)) } => format!("impair --clear {a} {b}"),
        Fault::ImpairClear { link: None } => "impair --clear".into(),
    }
}
