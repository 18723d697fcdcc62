//! Where the kernel lab calls the other kernel-side crates: routing daemons (topo-daemons),
//! faults and impairments (topo-chaos), the probe responder (topo-probe).

use std::fmt::Write as _;
use std::path::Path;

use topo_plan::Plan;

use crate::{KernelError, UpOpts};

/// After the network is built: the file's masquerade rules, daemons in start order, the file's
/// static impairments, (when asked for) probe responders, then the wait for routing convergence.
pub(crate) fn start(plan: &Plan, state_dir: &Path, opts: &UpOpts) -> Result<(), KernelError> {
    let component = |component: &'static str| move |e: String| KernelError::Component { component, msg: e };
    // Source NAT before any daemon or probe sends: conntrack translates only new connections.
    topo_chaos::nat::apply(plan).map_err(|e| component("nat")(e.to_string()))?;
    for &i in &plan.start_order {
        let Some(node) = plan.nodes.get(i) else { continue };
        crate::interrupt::check()?;
        topo_daemons::start_node(plan, &node.name, state_dir)
            .map_err(|e| component("daemons")(e.to_string()))?;
        if let Some(p) = &opts.progress {
            p(&crate::Progress::Advance(1));
        }
    }
    if has_static_impairments(plan) {
        topo_chaos::apply_static_impairments(plan, state_dir)
            .map_err(|e| component("chaos")(e.to_string()))?;
    }
    if let Some(exe) = &opts.responder_exe {
        let ro = topo_probe::ResponderOpts::new(exe.clone());
        topo_probe::start_responders(plan, state_dir, &ro).map_err(|e| component("probe")(e.to_string()))?;
    }
    // A lab with routing is "up" once it has converged: every adjacency Full and every expected
    // route in each router's kernel table; otherwise up fails (and rolls back) naming what is
    // missing where.
    if topo_daemons::has_routing(plan) {
        topo_daemons::wait_converged_cancellable(
            plan,
            state_dir,
            topo_daemons::default_converge_timeout(plan),
            &crate::interrupt::requested,
        )
        .map_err(|e| match e {
            topo_daemons::DaemonError::Cancelled => KernelError::Interrupted,
            e => component("routing")(format!("not converged: {e}")),
        })?;
    }
    Ok(())
}

fn has_static_impairments(plan: &Plan) -> bool {
    plan.links.iter().any(|l| !l.impair_ab.is_none() || !l.impair_ba.is_none())
}

/// Did the chaos layer do anything in this lab (so `clear` has something to remove)?
fn chaos_used(plan: &Plan, state_dir: &Path) -> bool {
    has_static_impairments(plan) || state_dir.join("faults.json").exists() || state_dir.join("chaos").exists()
}

/// Before namespaces are deleted: stop what the other crates started. Returns every error.
pub(crate) fn stop(plan: &Plan, state_dir: &Path) -> Vec<String> {
    let mut errors = Vec::new();
    if plan.nodes.iter().any(|n| n.routing.is_some()) {
        if let Err(es) = topo_daemons::stop_lab(plan, state_dir) {
            errors.extend(es.into_iter().map(|e| format!("daemons: {e}")));
        }
    }
    // Tables and qdiscs die with the namespaces; only the chaos layer's processes need stopping,
    // and only in labs where it ran (clear visits every namespace otherwise).
    if chaos_used(plan, state_dir) {
        if let Err(es) = topo_chaos::clear(plan, state_dir) {
            errors.extend(es.into_iter().map(|e| format!("chaos: {e}")));
        }
    }
    if let Err(es) = topo_probe::stop_responders(state_dir) {
        errors.extend(es.into_iter().map(|e| format!("probe: {e}")));
    }
    errors
}

/// Name-based cleanup of whatever the other crates may have left for `lab`.
pub(crate) fn gc_lab(lab: &str) -> Vec<String> {
    topo_chaos::gc_lab(lab);
    topo_probe::gc_responders(lab);
    topo_daemons::gc_lab(lab).errors.into_iter().map(|e| format!("daemons: {e}")).collect()
}

/// Labs the other crates know residue of (e.g. FRR directories).
pub(crate) fn labs_with_residue() -> Vec<String> {
    topo_daemons::labs_with_residue()
}

/// Daemon health lines for `topo status`, by node.
pub(crate) fn health(plan: &Plan, state_dir: &Path) -> Vec<(String, String)> {
    if plan.nodes.iter().all(|n| n.routing.is_none()) {
        return Vec::new();
    }
    topo_daemons::health(plan, state_dir)
        .into_iter()
        .map(|h| {
            let daemons: Vec<String> = h
                .daemons
                .iter()
                .map(|d| match (d.alive, d.pid) {
                    (true, Some(pid)) => format!("{}:{pid}", d.daemon),
                    (true, None) => d.daemon.clone(),
                    (false, _) => format!("{}:dead", d.daemon),
                })
                .collect();
            let mut line = format!("{} ", daemons.join(" "));
            if let Some(full) = h.ospf_full {
                let _ = write!(line, "ospf {full}/{} full ", h.ospf_expected);
            }
            if let Some(bfd) = h.bfd_up {
                let _ = write!(line, "bfd {bfd} up ");
            }
            if h.problems.is_empty() {
                line.push_str("healthy");
            } else {
                line.push_str(&h.problems.join("; "));
            }
            (h.node, line)
        })
        .collect()
}
