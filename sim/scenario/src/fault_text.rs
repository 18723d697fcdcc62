//! Faults written as on the command line (`link cut r1 r2`, `node stop r2`, `partition a,b c`,
//! `oneway a->b`, `heal`, `impair a b delay=50ms`), used by `converge: {fault: ...}`, and short
//! descriptions of faults for reports. Parsing is topo-lab's, so the CLI and scenarios accept
//! exactly the same text.

use topo_lab::{Fault, LinkRef};
use topo_plan::Plan;

/// Parse one fault; names are resolved against `plan`.
pub fn parse(plan: &Plan, text: &str) -> Result<Fault, String> {
    topo_lab::fault_text::parse_fault(plan, text).map_err(|e| e.to_string())
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
