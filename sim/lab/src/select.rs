//! Node selectors used on the command line and in scenarios: exact names, glob patterns
//! (`elixir-cluster-*`), group/role names, and `label=value`.

use globset::Glob;
use topo_plan::Plan;

use crate::LabError;

/// Resolve one selector to node names, in plan order. A selector that matches nothing is an
/// error, so typos don't silently select an empty set.
pub fn select(plan: &Plan, selector: &str) -> Result<Vec<String>, LabError> {
    let selector = selector.trim();
    let matched: Vec<String> = if let Some((k, v)) = selector.split_once('=') {
        plan.nodes
            .iter()
            .filter(|n| n.labels.get(k).is_some_and(|x| x == v))
            .map(|n| n.name.clone())
            .collect()
    } else if selector.contains(['*', '?', '[']) {
        let glob = Glob::new(selector)
            .map_err(|e| LabError::Invalid(format!("bad pattern {selector:?}: {e}")))?
            .compile_matcher();
        plan.nodes.iter().filter(|n| glob.is_match(&n.name)).map(|n| n.name.clone()).collect()
    } else if plan.node(selector).is_some() {
        vec![selector.to_owned()]
    } else {
        plan.nodes.iter().filter(|n| n.groups.iter().any(|g| g == selector)).map(|n| n.name.clone()).collect()
    };
    if matched.is_empty() {
        return Err(LabError::UnknownNode(selector.to_owned()));
    }
    Ok(matched)
}

/// Resolve a comma-separated list of selectors (`a,b,web-*`), without duplicates.
pub fn select_list(plan: &Plan, list: &str) -> Result<Vec<String>, LabError> {
    let mut out: Vec<String> = Vec::new();
    for part in list.split(',').filter(|p| !p.trim().is_empty()) {
        for n in select(plan, part)? {
            if !out.contains(&n) {
                out.push(n);
            }
        }
    }
    if out.is_empty() {
        return Err(LabError::Invalid(format!("empty node list {list:?}")));
    }
    Ok(out)
}
