//! Where the kernel lab calls the other kernel-side crates (daemons, chaos, probe). Each hook
//! is wired once the crate provides the function; until then it does nothing.

use std::path::Path;

use topo_plan::Plan;

use crate::KernelError;

/// After the network is built: daemons in start order, static impairments, probe responders.
#[allow(clippy::unnecessary_wraps)] // errors come with the hooks
pub(crate) fn start(plan: &Plan, state_dir: &Path) -> Result<(), KernelError> {
    for &i in &plan.start_order {
        let Some(node) = plan.nodes.get(i) else { continue };
        // HOOK(topo-daemons): topo_daemons::start_node(plan, &node.name, state_dir)
        let _ = (node, state_dir);
    }
    // HOOK(topo-chaos): topo_chaos::apply_static_impairments(plan, state_dir)
    // HOOK(topo-probe): topo_probe::start_responders(plan, state_dir)
    Ok(())
}

/// Before namespaces are deleted: stop what the other crates started. Returns every error.
pub(crate) fn stop(plan: &Plan, state_dir: &Path) -> Vec<String> {
    let _ = (plan, state_dir);
    // HOOK(topo-daemons): topo_daemons::stop_lab(plan, state_dir)
    // HOOK(topo-chaos): topo_chaos::clear(plan, state_dir)
    // HOOK(topo-probe): topo_probe::stop_responders(plan, state_dir)
    Vec::new()
}

/// Name-based cleanup of whatever the other crates may have left for `lab`.
pub(crate) fn gc_lab(lab: &str) -> Vec<String> {
    let _ = lab;
    // HOOK: topo_daemons::gc_lab(lab), topo_chaos::gc_lab(lab), topo_probe::gc_lab(lab)
    Vec::new()
}

/// Daemon health lines for `topo status`.
pub(crate) fn health(plan: &Plan, state_dir: &Path) -> Vec<(String, String)> {
    let _ = (plan, state_dir);
    // HOOK(topo-daemons): topo_daemons::health(plan, state_dir)
    Vec::new()
}
