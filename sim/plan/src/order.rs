//! Start order: a topological order of `depends_on`, ties broken by file order.

use std::collections::BTreeSet;

/// `deps[i]` lists the nodes `i` depends on (indices; duplicates allowed). Returns the start
/// order and, if the graph has a cycle (the spec validator rejects those, so this is a safety
/// net), the nodes that could not be ordered; they are appended in file order so the caller
/// always gets a permutation and never loops.
pub fn start_order(deps: &[Vec<usize>]) -> (Vec<usize>, Vec<usize>) {
    let n = deps.len();
    let mut indegree = vec![0usize; n];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, ds) in deps.iter().enumerate() {
        let unique: BTreeSet<usize> = ds.iter().copied().filter(|&d| d < n).collect();
        for d in unique {
            indegree[i] += 1;
            dependents[d].push(i);
        }
    }
    // Kahn's algorithm with an ordered ready set: always start the earliest ready node.
    let mut ready: BTreeSet<usize> = (0..n).filter(|&i| indegree[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &j in &dependents[i] {
            indegree[j] -= 1;
            if indegree[j] == 0 {
                ready.insert(j);
            }
        }
    }
    let stuck: Vec<usize> = (0..n).filter(|&i| indegree[i] > 0).collect();
    order.extend(&stuck);
    (order, stuck)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_first_ties_in_file_order() {
        // 0 depends on 2; 1 free; 2 free; 3 depends on 0 and 1.
        let (order, stuck) = start_order(&[vec![2], vec![], vec![], vec![0, 1, 0]]);
        assert_eq!(order, [1, 2, 0, 3]);
        assert!(stuck.is_empty());
    }

    #[test]
    fn cycle_terminates_and_is_reported() {
        let (order, stuck) = start_order(&[vec![1], vec![0], vec![]]);
        assert_eq!(order, [2, 0, 1]);
        assert_eq!(stuck, [0, 1]);
    }
}
