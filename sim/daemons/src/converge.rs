//! Convergence: compare what the routers report (OSPF neighbors, BFD sessions, kernel routes)
//! with [`crate::expect`], poll until they match, and summarize daemon health for `topo status`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use topo_lab::FaultState;
use topo_plan::Plan;

use crate::expect::{expectations, RouterExpect, Want};
use crate::frr::{live_daemons, FrrPaths};
use crate::{fib, vty, DaemonError};

/// How long one vty query may take (a paused daemon never answers).
const VTY_TIMEOUT: Duration = Duration::from_millis(1500);
const POLL: Duration = Duration::from_millis(20);
/// At most this many missing routes are listed per router in an error.
const MAX_LISTED: usize = 8;

/// An OSPF neighbor as ospfd reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SeenNeighbor {
    router_id: Ipv4Addr,
    iface: String,
    /// `Full`, `2-Way`, `Init`, `ExStart`, ...
    state: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct SeenBfd {
    peer: Ipv4Addr,
    up: bool,
}

/// One look at a router.
struct Observation {
    neighbors: Result<Vec<SeenNeighbor>, String>,
    bfd: Option<Result<Vec<SeenBfd>, String>>,
    fib: Result<Vec<fib::FibRoute>, String>,
}

fn query(paths: &FrrPaths, daemon: &str, cmd: &str) -> Result<Value, String> {
    let sock = paths.vty_socket(daemon);
    let reply = vty::command(&sock, cmd, VTY_TIMEOUT).map_err(|e| {
        let running = live_daemons(paths).iter().any(|(d, _)| d == daemon);
        if running {
            format!("{daemon} does not answer on {} ({e})", sock.display())
        } else {
            format!("{daemon} is not running (see {})", paths.log_file(daemon).display())
        }
    })?;
    if reply.status != 0 {
        return Err(format!("{daemon}: `{cmd}` failed: {}", reply.text.trim()));
    }
    serde_json::from_str(&reply.text).map_err(|e| format!("{daemon}: `{cmd}` returned invalid JSON: {e}"))
}

/// `show ip ospf neighbor json`: `{"neighbors": {"<router-id>": [{"converged"|"state": ..,
/// "ifaceName": "<iface>:<local address>"}, ..]}}`.
fn parse_neighbors(v: &Value) -> Vec<SeenNeighbor> {
    let mut out = Vec::new();
    let Some(map) = v.get("neighbors").and_then(Value::as_object) else { return out };
    for (rid, list) in map {
        let Ok(router_id) = rid.parse::<Ipv4Addr>() else { continue };
        for n in list.as_array().into_iter().flatten() {
            let state = n
                .get("converged")
                .or_else(|| n.get("nbrState"))
                .or_else(|| n.get("state"))
                .and_then(Value::as_str)
                .unwrap_or("?");
            let state = state.split('/').next().unwrap_or(state).to_owned();
            let iface = n.get("ifaceName").and_then(Value::as_str).unwrap_or("");
            let iface = iface.split(':').next().unwrap_or(iface).to_owned();
            out.push(SeenNeighbor { router_id, iface, state });
        }
    }
    out
}

/// `show bfd peers json`: `[{"peer": "<address>", "status": "up", ..}, ..]`.
fn parse_bfd(v: &Value) -> Vec<SeenBfd> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let peer = p.get("peer")?.as_str()?.parse().ok()?;
            let up = p.get("status").and_then(Value::as_str) == Some("up");
            Some(SeenBfd { peer, up })
        })
        .collect()
}

fn observe(paths: &FrrPaths, r: &RouterExpect) -> Observation {
    let neighbors = query(paths, "ospfd", "show ip ospf neighbor json").map(|v| parse_neighbors(&v));
    let bfd = r
        .neighbors
        .iter()
        .any(|n| n.bfd)
        .then(|| query(paths, "bfdd", "show bfd peers json").map(|v| parse_bfd(&v)));
    let fib = fib::read(&r.netns).map_err(|e| e.to_string());
    Observation { neighbors, bfd, fib }
}

fn name_of(names: &BTreeMap<Ipv4Addr, String>, rid: Ipv4Addr) -> String {
    names.get(&rid).map_or_else(|| rid.to_string(), |n| format!("{n} ({rid})"))
}

/// What keeps router `r` from being converged, in words.
fn problems(r: &RouterExpect, obs: &Observation, names: &BTreeMap<Ipv4Addr, String>) -> Vec<String> {
    let mut out = Vec::new();
    match &obs.neighbors {
        Err(e) => out.push(e.clone()),
        Ok(seen) => {
            for nb in &r.neighbors {
                let state = seen
                    .iter()
                    .find(|s| s.router_id == nb.router_id && s.iface == nb.iface)
                    .map(|s| s.state.as_str());
                let who = format!("{} on {}", name_of(names, nb.router_id), nb.iface);
                match (&nb.want, state) {
                    (Want::Full, Some("Full")) | (Want::Any, _) | (Want::Absent(_), None) => {}
                    // Two DROthers on a LAN stay 2-Way by design.
                    (Want::Full, Some("2-Way")) if !nb.point_to_point => {}
                    (Want::Full, Some(s)) => out.push(format!("adjacency with {who} is {s}, not Full")),
                    (Want::Full, None) => out.push(format!("no OSPF neighbor {who}")),
                    (Want::Absent(why), Some(s)) => {
                        if s == "Full" {
                            out.push(format!("still Full with {who} although {why}"));
                        }
                    }
                }
            }
        }
    }
    if let Some(bfd) = &obs.bfd {
        match bfd {
            Err(e) => out.push(e.clone()),
            Ok(peers) => {
                for nb in r.neighbors.iter().filter(|n| n.bfd) {
                    let up = peers.iter().any(|p| p.up && nb.peer_addrs.contains(&p.peer));
                    if !up {
                        let addrs: Vec<String> = nb.peer_addrs.iter().map(ToString::to_string).collect();
                        out.push(format!(
                            "BFD session with {} ({}) on {} is not up",
                            nb.peer,
                            addrs.join(", "),
                            nb.iface
                        ));
                    }
                }
            }
        }
    }
    match &obs.fib {
        Err(e) => out.push(format!("cannot read its routing table: {e}")),
        Ok(fib) => {
            let table: BTreeMap<ipnet::Ipv4Net, &fib::FibRoute> = fib.iter().map(|f| (f.dest, f)).collect();
            let allowed = r.allowed_gateways();
            let mut missing = Vec::new();
            for want in &r.routes {
                match table.get(&want.prefix) {
                    None => missing.push(format!("{} (from {})", want.prefix, want.from.join(", "))),
                    Some(_) if r.own_static.contains(&want.prefix) => {}
                    Some(f) => match f.gateway {
                        Some(g) => match &want.via {
                            Some(via) if !via.contains(&g) => {
                                let list: Vec<String> = via.iter().map(ToString::to_string).collect();
                                out.push(format!(
                                    "route to {} goes via {g} on {}, not the shortest path (via {})",
                                    want.prefix,
                                    f.iface,
                                    list.join(" or ")
                                ));
                            }
                            None if !allowed.contains(&g) => out.push(format!(
                                "route to {} goes via {g} on {}, which is not a live OSPF neighbor",
                                want.prefix, f.iface
                            )),
                            _ => {}
                        },
                        None => out.push(format!(
                            "route to {} is directly on {} instead of via an OSPF neighbor",
                            want.prefix, f.iface
                        )),
                    },
                }
            }
            if !missing.is_empty() {
                let n = missing.len();
                let mut s = format!("missing route{} to ", if n == 1 { "" } else { "s" });
                s.push_str(&missing.iter().take(MAX_LISTED).cloned().collect::<Vec<_>>().join(", "));
                if n > MAX_LISTED {
                    let _ = write!(s, " and {} more", n - MAX_LISTED);
                }
                out.push(s);
            }
        }
    }
    out
}

fn router_names(plan: &Plan) -> BTreeMap<Ipv4Addr, String> {
    plan.nodes
        .iter()
        .filter_map(|n| Some((n.routing.as_ref()?.ospf.as_ref()?.router_id, n.name.clone())))
        .collect()
}

/// Poll until every checked router matches its expectation, or fail after `timeout`.
pub(crate) fn wait(
    plan: &Plan,
    faults: &FaultState,
    timeout: Duration,
    cancelled: &dyn Fn() -> bool,
) -> Result<(), DaemonError> {
    let exp: Vec<RouterExpect> = expectations(plan, faults).into_iter().filter(|r| r.checked).collect();
    if exp.is_empty() {
        return Ok(());
    }
    let names = router_names(plan);
    let paths: Vec<FrrPaths> = exp
        .iter()
        .map(|r| FrrPaths::new(plan, plan.node(&r.node).expect("expectations come from the plan")))
        .collect();
    let start = Instant::now();
    let deadline = start + timeout;
    loop {
        if cancelled() {
            return Err(DaemonError::Cancelled);
        }
        let mut report: Vec<(String, Vec<String>)> = Vec::new();
        for (r, p) in exp.iter().zip(&paths) {
            let found = problems(r, &observe(p, r), &names);
            if !found.is_empty() {
                report.push((r.node.clone(), found));
                // Later routers are checked once this one is fine; the final report checks all.
                if Instant::now() < deadline {
                    break;
                }
            }
        }
        if report.is_empty() {
            tracing::debug!(elapsed_ms = start.elapsed().as_millis(), "routing converged");
            return Ok(());
        }
        if Instant::now() >= deadline {
            let mut detail = String::new();
            for (node, found) in &report {
                for f in found {
                    let _ = writeln!(detail, "  {node}: {f}");
                }
            }
            if let Some(hint) = slow_timer_hint(plan) {
                let _ = writeln!(detail, "  hint: {hint}");
            }
            return Err(DaemonError::NotConverged { timeout, detail: detail.trim_end().to_owned() });
        }
        thread::sleep(POLL);
    }
}

fn slow_timer_hint(plan: &Plan) -> Option<String> {
    let slow = plan
        .nodes
        .iter()
        .filter_map(|n| n.routing.as_ref()?.ospf.as_ref())
        .find(|o| o.dead_interval >= 10 || !o.fast)?;
    Some(format!(
        "OSPF uses hello {} s / dead {} s{}: adjacencies (and DR election on LANs) can take up to a \
         dead interval; `fast: true` with hello 1 / dead 3 converges in about a second",
        slow.hello_interval,
        slow.dead_interval,
        if slow.fast { "" } else { " without fast SPF/LSA timers" }
    ))
}

/// Daemon health of one router, for `topo status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DaemonHealth {
    pub node: String,
    /// `vtysh -N <pathspace>` reaches its daemons.
    pub pathspace: String,
    pub daemons: Vec<DaemonStatus>,
    /// Full (or LAN 2-Way) adjacencies with expected neighbors; `None` if ospfd did not answer.
    pub ospf_full: Option<usize>,
    pub ospf_expected: usize,
    /// BFD sessions up; `None` without BFD or if bfdd did not answer.
    pub bfd_up: Option<usize>,
    /// Everything that keeps this router from being converged (empty = healthy).
    pub problems: Vec<String>,
}

impl DaemonHealth {
    /// One line for `topo status`, e.g. `frr: zebra 812, ospfd 815 up; OSPF 2/2 Full; BFD 2 up`.
    pub fn summary(&self) -> String {
        let daemons: Vec<String> = self
            .daemons
            .iter()
            .map(|d| match (d.pid, d.alive) {
                (Some(pid), true) => format!("{} {pid}", d.daemon),
                _ => format!("{} DOWN", d.daemon),
            })
            .collect();
        let mut s = format!("frr (vtysh -N {}): {}", self.pathspace, daemons.join(", "));
        match self.ospf_full {
            Some(full) => {
                let _ = write!(s, "; OSPF {full}/{} Full", self.ospf_expected);
            }
            None => s.push_str("; OSPF ?"),
        }
        if let Some(up) = self.bfd_up {
            let _ = write!(s, "; BFD {up} up");
        }
        if !self.problems.is_empty() {
            let _ = write!(s, "; {}", self.problems.join("; "));
        }
        s
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DaemonStatus {
    pub daemon: String,
    pub pid: Option<i32>,
    pub alive: bool,
}

/// Health of every router with routing daemons (faults from `<state_dir>/faults.json` shape
/// what is expected). Never fails: unreadable things become problems.
pub fn health(plan: &Plan, state_dir: &Path) -> Vec<DaemonHealth> {
    let (faults, fault_problem) = match crate::read_faults(state_dir) {
        Ok(f) => (f, None),
        Err(e) => (FaultState::default(), Some(e.to_string())),
    };
    let names = router_names(plan);
    let exp = expectations(plan, &faults);
    let mut out = Vec::new();
    for n in &plan.nodes {
        let Some(routing) = &n.routing else { continue };
        if routing.configs.is_empty() {
            continue;
        }
        let paths = FrrPaths::new(plan, n);
        let live = live_daemons(&paths);
        let daemons: Vec<DaemonStatus> = routing
            .configs
            .keys()
            .filter_map(|f| f.strip_suffix(".conf"))
            .map(|d| {
                let pid = std::fs::read_to_string(paths.pid_file(d)).ok().and_then(|s| s.trim().parse().ok());
                DaemonStatus { daemon: d.to_owned(), pid, alive: live.iter().any(|(ld, _)| ld == d) }
            })
            .collect();
        let mut h = DaemonHealth {
            node: n.name.clone(),
            pathspace: paths.pathspace.clone(),
            daemons,
            ospf_full: None,
            ospf_expected: 0,
            bfd_up: None,
            problems: fault_problem.iter().cloned().collect(),
        };
        for d in h.daemons.iter().filter(|d| !d.alive) {
            h.problems.push(format!("{} is not running", d.daemon));
        }
        if let Some(r) = exp.iter().find(|r| r.node == n.name) {
            h.ospf_expected = r.neighbors.iter().filter(|nb| nb.want == Want::Full).count();
            if r.checked {
                let obs = observe(&paths, r);
                if let Ok(seen) = &obs.neighbors {
                    let good: BTreeSet<(Ipv4Addr, &str)> = seen
                        .iter()
                        .filter(|s| s.state == "Full" || s.state == "2-Way")
                        .map(|s| (s.router_id, s.iface.as_str()))
                        .collect();
                    h.ospf_full = Some(
                        r.neighbors
                            .iter()
                            .filter(|nb| nb.want == Want::Full)
                            .filter(|nb| good.contains(&(nb.router_id, nb.iface.as_str())))
                            .count(),
                    );
                }
                if let Some(Ok(peers)) = &obs.bfd {
                    h.bfd_up = Some(peers.iter().filter(|p| p.up).count());
                }
                for p in problems(r, &obs, &names) {
                    if !h.problems.contains(&p) {
                        h.problems.push(p);
                    }
                }
            }
        }
        out.push(h);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::triangle;

    fn obs(neighbors: Vec<SeenNeighbor>, fib: Vec<fib::FibRoute>) -> Observation {
        Observation { neighbors: Ok(neighbors), bfd: None, fib: Ok(fib) }
    }

    fn full(rid: &str, iface: &str) -> SeenNeighbor {
        SeenNeighbor { router_id: rid.parse().unwrap(), iface: iface.into(), state: "Full".into() }
    }

    fn route(p: &str, gw: &str, iface: &str) -> fib::FibRoute {
        fib::FibRoute { dest: p.parse().unwrap(), gateway: Some(gw.parse().unwrap()), iface: iface.into() }
    }

    #[test]
    fn parses_frr_neighbor_json() {
        let v: Value = serde_json::from_str(
            r#"{"neighbors":{"10.255.0.2":[{"state":"Full\/-","converged":"Full","ifaceName":"dxa:10.1.0.1"}],
                "10.255.0.3":[{"state":"2-Way\/DROther","ifaceName":"eth0:10.1.1.1"}]}}"#,
        )
        .unwrap();
        let n = parse_neighbors(&v);
        assert_eq!(n[0], full("10.255.0.2", "dxa"));
        assert_eq!(n[1].state, "2-Way");
        assert_eq!(parse_neighbors(&serde_json::json!({})), []);
    }

    #[test]
    fn reports_missing_neighbors_routes_and_stale_next_hops() {
        let plan = triangle("t", true, false);
        let exp = expectations(&plan, &FaultState::default());
        let names = router_names(&plan);
        let r1 = &exp[0];
        let all_routes = vec![
            route("10.0.23.0/30", "10.0.12.2", "eth-r2"),
            route("10.1.2.0/24", "10.0.12.2", "eth-r2"),
            route("10.1.3.0/24", "10.0.13.2", "eth-r3"),
            route("10.255.0.2/32", "10.0.12.2", "eth-r2"),
            route("10.255.0.3/32", "10.0.13.2", "eth-r3"),
        ];
        let good = obs(vec![full("10.255.0.2", "eth-r2"), full("10.255.0.3", "eth-r3")], all_routes.clone());
        assert_eq!(problems(r1, &good, &names), Vec::<String>::new());

        let p = problems(r1, &obs(vec![full("10.255.0.2", "eth-r2")], all_routes[..4].to_vec()), &names);
        assert_eq!(
            p,
            ["no OSPF neighbor r3 (10.255.0.3) on eth-r3", "missing route to 10.255.0.3/32 (from r3)",]
        );

        // After the r1-r2 link is cut, a route still pointing at r2 is stale.
        let mut f = FaultState::default();
        f.links_cut.insert(topo_lab::LinkRef::P2p { a: "r1".into(), b: "r2".into() });
        let exp = expectations(&plan, &f);
        let p = problems(&exp[0], &good, &names);
        assert!(
            p[0].starts_with("still Full with r2 (10.255.0.2) on eth-r2 although the link is cut"),
            "{p:?}"
        );
        assert!(
            p.iter().any(|s| s.contains(
                "route to 10.255.0.2/32 goes via 10.0.12.2 on eth-r2, not the shortest path (via 10.0.13.2)"
            )),
            "{p:?}"
        );
    }

    #[test]
    fn cancellation_stops_the_wait_at_once() {
        let plan = triangle("t", true, false);
        let t0 = std::time::Instant::now();
        let r = wait(&plan, &FaultState::default(), Duration::from_secs(30), &|| true);
        assert!(matches!(r, Err(DaemonError::Cancelled)), "{r:?}");
        assert!(t0.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn parses_bfd_peers() {
        let v: Value = serde_json::from_str(
            r#"[{"multihop":false,"peer":"10.0.12.2","local":"10.0.12.1","status":"up"},
                {"peer":"10.0.13.2","status":"down"}]"#,
        )
        .unwrap();
        assert_eq!(
            parse_bfd(&v),
            [
                SeenBfd { peer: "10.0.12.2".parse().unwrap(), up: true },
                SeenBfd { peer: "10.0.13.2".parse().unwrap(), up: false }
            ]
        );
    }
}
