//! The model's semantics on hand-built plans (see the crate docs for the contract).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use topo_lab::{Fault, FaultState, Lab, LabError, LinkRef, Proto, ReachMatrix};
use topo_model::testplan::PlanBuilder;
use topo_model::{all_pairs, forwarding_tables, Model, ModelLab, Origin};
use topo_plan::{Plan, RouteOrigin};

fn ip(s: &str) -> Ipv4Addr {
    s.parse().expect("test address")
}

fn lan(n: usize) -> Plan {
    let mut b = PlanBuilder::new("lan");
    for i in 1..=n {
        let name = format!("h{i}");
        b.host(&name).attach(&name, "lan", &format!("10.0.0.{}/24", i + 1));
    }
    b.build()
}

/// Three routers in a triangle, one host behind each. `ospf` selects OSPF over static routes.
fn triangle(ospf: bool) -> PlanBuilder {
    let mut b = PlanBuilder::new("tri");
    for i in 1..=3 {
        let (r, h, lan) = (format!("r{i}"), format!("h{i}"), format!("lan{i}"));
        b.router(&r).attach(&r, &lan, &format!("10.{i}.0.1/24"));
        b.host(&h).attach(&h, &lan, &format!("10.{i}.0.10/24"));
        b.route_full(&h, "default", &format!("10.{i}.0.1"), None, RouteOrigin::Gateway);
    }
    b.link("r1", "10.12.0.1/30", "r2", "10.12.0.2/30");
    b.link("r2", "10.23.0.1/30", "r3", "10.23.0.2/30");
    b.link("r1", "10.13.0.1/30", "r3", "10.13.0.2/30");
    if ospf {
        for i in 1..=3 {
            let r = format!("r{i}");
            b.ospf(&r).ospf_passive(&r, &format!("lan{i}"));
        }
    } else {
        b.route("r1", "10.2.0.0/24", "10.12.0.2").route("r1", "10.3.0.0/24", "10.13.0.2");
        b.route("r2", "10.1.0.0/24", "10.12.0.1").route("r2", "10.3.0.0/24", "10.23.0.2");
        b.route("r3", "10.1.0.0/24", "10.13.0.1").route("r3", "10.2.0.0/24", "10.23.0.1");
    }
    b
}

fn matrix(plan: &Plan, faults: &FaultState, proto: Proto) -> ReachMatrix {
    Model::new(plan, faults).reach(&all_pairs(plan, proto)).expect("reach")
}

fn reached(m: &ReachMatrix) -> BTreeSet<(String, String)> {
    m.pairs.iter().filter(|p| p.reached).map(|p| (p.from.clone(), p.to.clone())).collect()
}

fn all(plan: &Plan) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for a in &plan.nodes {
        for b in &plan.nodes {
            if a.name != b.name {
                out.insert((a.name.clone(), b.name.clone()));
            }
        }
    }
    out
}

fn lab_with(plan: &Plan, faults: &[Fault]) -> ModelLab {
    let mut lab = ModelLab::new(plan.clone());
    for f in faults {
        lab.apply(f).expect("fault applies");
    }
    lab
}

fn pair(a: &str, b: &str) -> (String, String) {
    (a.to_owned(), b.to_owned())
}

fn hop_names(p: &topo_lab::PathResult) -> Vec<String> {
    p.hops.iter().map(|h| h.node.clone().unwrap_or_default()).collect()
}

#[test]
fn lan_all_pairs_reachable_for_every_protocol() {
    let plan = lan(6);
    for proto in [Proto::Icmp, Proto::Udp(9), Proto::Tcp(80)] {
        let m = matrix(&plan, &FaultState::default(), proto);
        assert_eq!(m.pairs.len(), 30);
        assert_eq!(reached(&m), all(&plan), "{proto}");
        assert_eq!(m.get("h1", "h2").map(|p| p.to_addr), Some(ip("10.0.0.3")));
    }
}

#[test]
fn static_triangle_reaches_everything_and_paths_go_direct() {
    let plan = triangle(false).build();
    let m = matrix(&plan, &FaultState::default(), Proto::Icmp);
    assert_eq!(
        reached(&m),
        all(&plan),
        "unreached: {:?}",
        m.pairs.iter().filter(|p| !p.reached).collect::<Vec<_>>()
    );
    let model = Model::new(&plan, &FaultState::default());
    let p = model.path("h1", "h3").expect("path");
    assert!(p.delivered);
    assert_eq!(hop_names(&p), ["r1", "r3", "h3"]);
    assert_eq!(p.hops[0].addr, ip("10.1.0.1"), "ingress address of r1");
    assert_eq!(p.hops[1].addr, ip("10.13.0.2"), "ingress address of r3");
    assert_eq!(p.hops[2].addr, ip("10.3.0.10"));
    let w = model.walk("r1", ip("10.3.0.10")).expect("walk");
    assert_eq!(w.sent_src, Some(ip("10.13.0.1")), "source = outgoing interface address");
    assert_eq!(w.observed_src, w.sent_src);
}

#[test]
fn hosts_without_a_route_cannot_leave_their_lan() {
    let mut b = triangle(false);
    b.host("lonely").attach("lonely", "lan1", "10.1.0.99/24");
    let plan = b.build();
    let model = Model::new(&plan, &FaultState::default());
    let p = model.probe("lonely", "h3", Proto::Udp(9)).expect("probe");
    assert!(!p.reached);
    assert!(p.reason.as_deref().is_some_and(|r| r.contains("no route on lonely")), "{p:?}");
    assert!(model.probe("lonely", "h1", Proto::Icmp).expect("probe").reached);
}

#[test]
fn hosts_do_not_forward() {
    // h2 sits on two LANs but is a host: a route via it goes nowhere.
    let mut b = PlanBuilder::new("fw");
    b.host("a").attach("a", "l1", "10.0.1.2/24");
    b.host("h").attach("h", "l1", "10.0.1.3/24").attach("h", "l2", "10.0.2.3/24");
    b.host("c").attach("c", "l2", "10.0.2.2/24");
    b.route("a", "10.0.2.0/24", "10.0.1.3").route("c", "10.0.1.0/24", "10.0.2.3");
    let plan = b.build();
    let w = Model::new(&plan, &FaultState::default()).walk("a", ip("10.0.2.2")).expect("walk");
    assert!(!w.delivered);
    assert_eq!(w.dropped_at.as_deref(), Some("h"));
    assert!(w.reason.as_deref().is_some_and(|r| r.contains("does not forward")), "{w:?}");
}

#[test]
fn partition_drops_exactly_the_cross_group_pairs_with_an_implicit_rest_group() {
    let plan = lan(5);
    let groups = vec![vec!["h1".to_owned(), "h2".to_owned()], vec!["h3".to_owned()]];
    let lab = lab_with(&plan, &[Fault::Partition { groups }]);
    let group_of = |n: &str| match n {
        "h1" | "h2" => 0,
        "h3" => 1,
        _ => 2, // h4, h5: the implicit rest group
    };
    let expected: BTreeSet<_> = all(&plan).into_iter().filter(|(a, b)| group_of(a) == group_of(b)).collect();
    for proto in [Proto::Icmp, Proto::Udp(9)] {
        let m = lab.model().reach(&all_pairs(&plan, proto)).expect("reach");
        assert_eq!(reached(&m), expected, "{proto}");
    }
    let m = lab.model().reach(&all_pairs(&plan, Proto::Udp(9))).expect("reach");
    let p = m.get("h1", "h3").expect("pair");
    assert!(p.reason.as_deref().is_some_and(|r| r.contains("h3 drops traffic from h1")), "{p:?}");
    // Heal restores everything.
    let mut lab = lab;
    lab.apply(&Fault::Heal).expect("heal");
    let m = lab.reach(&all_pairs(&plan, Proto::Icmp)).expect("reach");
    assert_eq!(reached(&m), all(&plan));
}

#[test]
fn overlapping_partition_is_a_bridge() {
    let plan = lan(3);
    let groups = vec![vec!["h1".to_owned(), "h2".to_owned()], vec!["h1".to_owned(), "h3".to_owned()]];
    let lab = lab_with(&plan, &[Fault::Partition { groups }]);
    let m = lab.model().reach(&all_pairs(&plan, Proto::Icmp)).expect("reach");
    let expected: BTreeSet<_> =
        [pair("h1", "h2"), pair("h2", "h1"), pair("h1", "h3"), pair("h3", "h1")].into_iter().collect();
    assert_eq!(reached(&m), expected);
}

#[test]
fn one_way_drop_blocks_one_direction_for_udp_and_both_round_trips() {
    let plan = lan(3);
    let lab = lab_with(&plan, &[Fault::Drop { from: vec!["h1".into()], to: vec!["h2".into()] }]);
    let udp = lab.model().reach(&all_pairs(&plan, Proto::Udp(9))).expect("reach");
    assert!(!udp.get("h1", "h2").expect("pair").reached);
    assert!(udp.get("h2", "h1").expect("pair").reached);
    let icmp = lab.model().reach(&all_pairs(&plan, Proto::Icmp)).expect("reach");
    assert!(!icmp.get("h1", "h2").expect("pair").reached);
    let back = icmp.get("h2", "h1").expect("pair");
    assert!(!back.reached);
    assert!(back.reason.as_deref().is_some_and(|r| r.starts_with("reply:")), "{back:?}");
    // Everyone else is untouched.
    assert_eq!(reached(&icmp).len(), 4);
}

#[test]
fn drops_filter_delivery_not_forwarding() {
    // A partition between h1 and r3 must not stop h1's traffic routed *through* r3... in this
    // triangle r3 forwards h1's packets to h3.
    let plan = triangle(false).build();
    let lab = lab_with(&plan, &[Fault::Drop { from: vec!["h1".into()], to: vec!["r3".into()] }]);
    let m = lab.model().reach(&all_pairs(&plan, Proto::Icmp)).expect("reach");
    assert!(m.get("h1", "h3").expect("pair").reached);
    assert!(!m.get("h1", "r3").expect("pair").reached);
}

#[test]
fn link_down_removes_connected_and_static_routes() {
    let plan = triangle(false).build();
    let lab = lab_with(&plan, &[Fault::LinkDown { link: LinkRef::P2p { a: "r3".into(), b: "r1".into() } }]);
    let tables = forwarding_tables(&plan, lab.faults());
    let r1 = &tables["r1"];
    assert!(!r1.iter().any(|r| r.to.to_string() == "10.13.0.0/30"), "{r1:?}");
    assert!(!r1.iter().any(|r| r.to.to_string() == "10.3.0.0/24"), "static via the down link: {r1:?}");
    assert!(r1.iter().any(|r| r.to.to_string() == "10.12.0.0/30" && r.origin == Origin::Connected));
    let p = lab.model().probe("h1", "h3", Proto::Icmp).expect("probe");
    assert!(!p.reached);
    assert!(p.reason.as_deref().is_some_and(|r| r.contains("no route on r1")), "{p:?}");
    // Unrelated pairs still work.
    assert!(lab.model().probe("h1", "h2", Proto::Icmp).expect("probe").reached);
}

#[test]
fn link_cut_keeps_routes_but_loses_packets() {
    let plan = triangle(false).build();
    let lab = lab_with(&plan, &[Fault::LinkCut { link: LinkRef::P2p { a: "r1".into(), b: "r3".into() } }]);
    let r1 = &forwarding_tables(&plan, lab.faults())["r1"];
    assert!(r1.iter().any(|r| r.to.to_string() == "10.13.0.0/30"));
    assert!(r1.iter().any(|r| r.to.to_string() == "10.3.0.0/24"));
    let w = lab.model().walk("h1", ip("10.3.0.10")).expect("walk");
    assert!(!w.delivered);
    assert_eq!(w.dropped_at.as_deref(), Some("r1"));
    assert!(w.reason.as_deref().is_some_and(|r| r.contains("cut link r1-r3")), "{w:?}");
}

#[test]
fn lan_attachment_down_detaches_one_node() {
    let plan = lan(3);
    let lab = lab_with(
        &plan,
        &[Fault::LinkDown { link: LinkRef::Lan { node: "h2".into(), network: "lan".into() } }],
    );
    let m = lab.model().reach(&all_pairs(&plan, Proto::Icmp)).expect("reach");
    assert_eq!(reached(&m), [pair("h1", "h3"), pair("h3", "h1")].into_iter().collect());
    let lab = lab_with(
        &plan,
        &[Fault::LinkCut { link: LinkRef::Lan { node: "h2".into(), network: "lan".into() } }],
    );
    let m = lab.model().reach(&all_pairs(&plan, Proto::Icmp)).expect("reach");
    assert_eq!(reached(&m), [pair("h1", "h3"), pair("h3", "h1")].into_iter().collect());
}

#[test]
fn ospf_triangle_converges_and_reroutes_around_a_cut_link() {
    let plan = triangle(true).build();
    let model = Model::new(&plan, &FaultState::default());
    let m = model.reach(&all_pairs(&plan, Proto::Icmp)).expect("reach");
    assert_eq!(reached(&m), all(&plan), "{:?}", m.pairs.iter().filter(|p| !p.reached).collect::<Vec<_>>());
    let r1 = model.routes("r1").expect("routes");
    let to_lan3 = r1.iter().find(|r| r.to.to_string() == "10.3.0.0/24").expect("ospf route to lan3");
    assert_eq!((to_lan3.origin, to_lan3.metric, to_lan3.via), (Origin::Ospf, 20, Some(ip("10.13.0.2"))));
    assert_eq!(hop_names(&model.path("h1", "h3").expect("path")), ["r1", "r3", "h3"]);

    for fault in [
        Fault::LinkCut { link: LinkRef::P2p { a: "r1".into(), b: "r3".into() } },
        Fault::LinkDown { link: LinkRef::P2p { a: "r1".into(), b: "r3".into() } },
        Fault::Drop { from: vec!["r3".into()], to: vec!["r1".into()] },
    ] {
        let lab = lab_with(&plan, std::slice::from_ref(&fault));
        let p = lab.model().path("h1", "h3").expect("path");
        assert!(p.delivered, "{fault:?}: {p:?}");
        assert_eq!(hop_names(&p), ["r1", "r2", "r3", "h3"], "{fault:?}");
        assert_eq!(p.hops[1].addr, ip("10.12.0.2"));
    }
}

#[test]
fn ospf_costs_steer_paths_and_ecmp_picks_the_lowest_next_hop() {
    let mut b = triangle(true);
    b.ospf_cost("r1", "r3", 100);
    let plan = b.build();
    let model = Model::new(&plan, &FaultState::default());
    assert_eq!(hop_names(&model.path("h1", "h3").expect("path")), ["r1", "r2", "r3", "h3"]);
    // Reverse direction uses r3's own cost (10) on the direct link.
    assert_eq!(hop_names(&model.path("h3", "h1").expect("path")), ["r3", "r1", "h1"]);

    // r1 → lan3: direct costs 20 (10 + passive lan3 10); via r2 costs 30 with cost 20 toward r3... make it equal.
    let mut b = triangle(true);
    b.ospf_cost("r1", "r3", 20);
    let plan = b.build();
    let r1 = Model::new(&plan, &FaultState::default()).routes("r1").expect("routes");
    let to_lan3 = r1.iter().find(|r| r.to.to_string() == "10.3.0.0/24").expect("route");
    // Equal cost (20 + 10) via r3 directly (10.13.0.2) and via r2 (10.12.0.2): lowest wins.
    assert_eq!(to_lan3.via, Some(ip("10.12.0.2")));
}

#[test]
fn ospf_on_a_lan_and_stopped_router() {
    // Two routers on a backbone LAN, a third behind r2 on a link.
    let mut b = PlanBuilder::new("bb");
    b.router("r1").attach("r1", "core", "10.0.0.1/24").attach("r1", "e1", "10.1.0.1/24");
    b.router("r2").attach("r2", "core", "10.0.0.2/24");
    b.router("r3").attach("r3", "core", "10.0.0.3/24").attach("r3", "e3", "10.3.0.1/24");
    b.host("h1").attach("h1", "e1", "10.1.0.10/24");
    b.host("h3").attach("h3", "e3", "10.3.0.10/24");
    b.route_full("h1", "default", "10.1.0.1", None, RouteOrigin::Gateway);
    b.route_full("h3", "default", "10.3.0.1", None, RouteOrigin::Gateway);
    for r in ["r1", "r2", "r3"] {
        b.ospf(r);
    }
    let plan = b.build();
    let m = matrix(&plan, &FaultState::default(), Proto::Icmp);
    assert_eq!(reached(&m), all(&plan));
    // A partition between r1 and r3 on the LAN: no adjacency, and r2 does not forward
    // between them on the same LAN... it does: r1 → r2 → r3 over the LAN twice.
    let lab = lab_with(&plan, &[Fault::Drop { from: vec!["r1".into()], to: vec!["r3".into()] }]);
    let p = lab.model().path("h1", "h3").expect("path");
    assert!(p.delivered, "{p:?}");
    assert_eq!(hop_names(&p), ["r1", "r2", "r3", "h3"]);
    // Stop r2 too: r1 and r3 have no adjacency at all; h1 can't reach h3.
    let lab = lab_with(
        &plan,
        &[
            Fault::Drop { from: vec!["r1".into()], to: vec!["r3".into()] },
            Fault::NodeStop { node: "r2".into() },
        ],
    );
    let p = lab.model().probe("h1", "h3", Proto::Icmp).expect("probe");
    assert!(!p.reached, "{p:?}");
    let stopped = lab.model().reach(&all_pairs(&plan, Proto::Icmp)).expect("reach");
    assert!(stopped.pairs.iter().filter(|p| p.from == "r2" || p.to == "r2").all(|p| !p.reached));
}

#[test]
fn paused_and_killed_nodes_answer_icmp_but_not_sockets() {
    let plan = lan(3);
    for fault in [Fault::NodePause { node: "h2".into() }, Fault::NodeKill { node: "h2".into() }] {
        let lab = lab_with(&plan, std::slice::from_ref(&fault));
        let model = lab.model();
        assert!(model.probe("h1", "h2", Proto::Icmp).expect("probe").reached);
        let udp = model.probe("h1", "h2", Proto::Udp(9)).expect("probe");
        assert!(!udp.reached && udp.reason.as_deref().is_some_and(|r| r.contains("no responder")), "{udp:?}");
        assert!(!model.probe("h1", "h2", Proto::Tcp(80)).expect("probe").reached);
        assert!(model.probe("h2", "h1", Proto::Tcp(80)).expect("probe").reached, "probes from it work");
    }
    let mut lab = lab_with(&plan, &[Fault::NodeKill { node: "h2".into() }]);
    lab.apply(&Fault::NodeStart { node: "h2".into() }).expect("start");
    assert!(lab.model().probe("h1", "h2", Proto::Udp(9)).expect("probe").reached);
}

#[test]
fn paused_router_keeps_forwarding_with_its_routes_but_loses_adjacencies() {
    let plan = triangle(true).build();
    let lab = lab_with(&plan, &[Fault::NodePause { node: "r1".into() }]);
    let model = lab.model();
    // r1 still forwards h1 → h3 with the routes it had (one way: the reply has no route).
    assert!(model.probe("h1", "h3", Proto::Udp(9)).expect("probe").reached);
    let icmp = model.probe("h1", "h3", Proto::Icmp).expect("probe");
    assert!(icmp.reason.as_deref().is_some_and(|r| r.starts_with("reply: no route on r3")), "{icmp:?}");
    // r2 and r3 no longer learn lan1 from r1.
    let r2 = model.routes("r2").expect("routes");
    assert!(!r2.iter().any(|r| r.to.to_string() == "10.1.0.0/24"), "{r2:?}");
    assert!(!model.probe("h2", "h1", Proto::Icmp).expect("probe").reached);
}

#[test]
fn masquerade_rewrites_the_source_and_replies_come_back() {
    let mut b = PlanBuilder::new("nat");
    b.host("h").attach("h", "inside", "10.1.0.10/24");
    b.router("gw").attach("gw", "inside", "10.1.0.1/24");
    b.host("s");
    b.link("gw", "192.0.2.1/30", "s", "192.0.2.2/30");
    b.route_full("h", "default", "10.1.0.1", None, RouteOrigin::Gateway);
    let no_nat = b.build();
    b.masquerade("gw", "s");
    let nat = b.build();

    let m = Model::new(&no_nat, &FaultState::default());
    let p = m.probe("h", "s", Proto::Icmp).expect("probe");
    assert!(!p.reached, "s has no route back to the inside network");
    assert!(p.reason.as_deref().is_some_and(|r| r.starts_with("reply: no route on s")), "{p:?}");
    assert!(m.probe("h", "s", Proto::Udp(9)).expect("probe").reached, "one way works without NAT");
    let r = m.nat("h", "s").expect("nat");
    assert_eq!(r.observed_src, None);

    let m = Model::new(&nat, &FaultState::default());
    assert!(m.probe("h", "s", Proto::Icmp).expect("probe").reached);
    let r = m.nat("h", "s").expect("nat");
    assert_eq!(r.sent_src, ip("10.1.0.10"));
    assert_eq!(r.observed_src, Some(ip("192.0.2.1")));
    assert!(!r.nat_free());
    // Traffic the router originates is unchanged, so it is NAT-free.
    assert!(m.nat("gw", "s").expect("nat").nat_free());
    // A partition between h and s does not filter the masqueraded traffic (its source is
    // gw's address now), but one between gw and s does.
    let lab = lab_with(&nat, &[Fault::Drop { from: vec!["h".into()], to: vec!["s".into()] }]);
    assert!(lab.model().probe("h", "s", Proto::Icmp).expect("probe").reached);
    let lab = lab_with(&nat, &[Fault::Drop { from: vec!["gw".into()], to: vec!["s".into()] }]);
    assert!(!lab.model().probe("h", "s", Proto::Icmp).expect("probe").reached);
}

#[test]
fn routing_loops_end_with_ttl_expired() {
    let mut b = PlanBuilder::new("loop");
    b.router("r1").router("r2");
    b.link("r1", "10.0.0.1/30", "r2", "10.0.0.2/30");
    b.route("r1", "10.99.0.0/24", "10.0.0.2").route("r2", "10.99.0.0/24", "10.0.0.1");
    let plan = b.build();
    let w = Model::new(&plan, &FaultState::default()).walk("r1", ip("10.99.0.5")).expect("walk");
    assert!(!w.delivered);
    assert!(w.reason.as_deref().is_some_and(|r| r.contains("TTL expired")), "{w:?}");
    // 63 forwards (TTL 64 → 1) after the first send: 64 nodes saw the packet.
    assert_eq!(w.hops.len(), 64);
    assert_eq!(w.dropped_at.as_deref(), Some("r1"), "hop 64 (even hops are r1) drops it");
}

#[test]
fn full_loss_impairment_drops_one_direction() {
    let mut b = PlanBuilder::new("imp");
    b.host("a").host("b");
    b.link("a", "10.0.0.1/30", "b", "10.0.0.2/30");
    let plan = b.build();
    let full = topo_spec::Impairment { loss: Some(100.0), ..Default::default() };
    let half = topo_spec::Impairment { loss: Some(50.0), ..Default::default() };
    let lab = lab_with(
        &plan,
        &[Fault::Impair { a: "a".into(), b: "b".into(), from: Some("a".into()), impairment: full }],
    );
    let m = lab.model().reach(&all_pairs(&plan, Proto::Udp(9))).expect("reach");
    assert_eq!(reached(&m), [pair("b", "a")].into_iter().collect());
    let lab =
        lab_with(&plan, &[Fault::Impair { a: "a".into(), b: "b".into(), from: None, impairment: half }]);
    assert_eq!(reached(&lab.model().reach(&all_pairs(&plan, Proto::Icmp)).expect("reach")), all(&plan));
}

#[test]
fn model_lab_speaks_the_lab_trait() {
    let plan = lan(2);
    let mut lab = ModelLab::new(plan.clone());
    assert_eq!(lab.backend(), topo_lab::BackendKind::Model);
    assert!(lab.wait_converged(std::time::Duration::ZERO).is_ok());
    assert!(matches!(lab.exec("h1", &["true".into()]), Err(LabError::NotApplicable { .. })));
    assert!(matches!(lab.apply(&Fault::NodeStop { node: "nope".into() }), Err(LabError::UnknownNode(_))));
    lab.apply(&Fault::NodeStop { node: "h2".into() }).expect("stop");
    assert!(!lab.reach(&all_pairs(&plan, Proto::Icmp)).expect("reach").pairs.iter().any(|p| p.reached));
    lab.apply(&Fault::NodeStart { node: "h2".into() }).expect("start");
    assert!(lab.reach(&all_pairs(&plan, Proto::Icmp)).expect("reach").pairs.iter().all(|p| p.reached));
    let path = lab.path("h1", "h2").expect("path");
    assert_eq!(hop_names(&path), ["h2"]);
}

#[test]
fn memoized_matrix_agrees_with_hop_by_hop_walks() {
    // reach() takes the memoized path; walk() goes hop by hop. They must agree on every pair.
    let faults = [
        vec![],
        vec![Fault::LinkCut { link: LinkRef::P2p { a: "r1".into(), b: "r3".into() } }],
        vec![Fault::Partition { groups: vec![vec!["h1".into(), "r2".into()]] }],
        vec![Fault::NodeStop { node: "r2".into() }],
    ];
    for ospf in [false, true] {
        let plan = triangle(ospf).build();
        for fs in &faults {
            let lab = lab_with(&plan, fs);
            let m = lab.model().reach(&all_pairs(&plan, Proto::Udp(9))).expect("reach");
            for p in &m.pairs {
                let w = lab.model().walk(&p.from, p.to_addr).expect("walk");
                let walked = w.delivered_to.as_deref() == Some(p.to.as_str());
                assert_eq!(walked, p.reached, "ospf={ospf} {fs:?} {p:?} vs {w:?}");
                if !walked {
                    assert_eq!(w.reason, p.reason, "ospf={ospf} {fs:?}");
                }
            }
        }
    }
}

#[test]
fn compact_matrix_is_the_same_matrix() {
    // reach_compact() keeps indices and failure codes; rendered, it must be reach() exactly,
    // reasons included, for round-trip and one-way probes, big (threaded) and small requests.
    let faults = [
        vec![],
        vec![Fault::LinkCut { link: LinkRef::P2p { a: "r1".into(), b: "r3".into() } }],
        vec![Fault::Partition { groups: vec![vec!["h1".into(), "r2".into()]] }],
        vec![Fault::NodeStop { node: "r2".into() }, Fault::NodePause { node: "h3".into() }],
    ];
    let mut failures = 0;
    for ospf in [false, true] {
        let plan = triangle(ospf).build();
        for fs in &faults {
            let lab = lab_with(&plan, fs);
            for proto in [Proto::Icmp, Proto::Udp(9), Proto::Tcp(80)] {
                let req = all_pairs(&plan, proto);
                let full = lab.model().reach(&req).expect("reach");
                let compact = lab.model().reach_compact(&req).expect("reach_compact");
                assert_eq!(compact.to_matrix(), full, "ospf={ospf} {fs:?} {proto}");
                assert_eq!(compact.reached(), full.pairs.iter().filter(|p| p.reached).count());
                failures += full.pairs.iter().filter(|p| !p.reached).count();
            }
        }
    }
    assert!(failures > 50, "the faults must break pairs for the reasons to be compared");
    // Past the threading threshold (150 × 149 pairs), with failures in every block.
    let plan = lan(150);
    let lab = lab_with(&plan, &[Fault::Partition { groups: vec![vec!["h1".into(), "h77".into()]] }]);
    let req = all_pairs(&plan, Proto::Icmp);
    let (full, compact) =
        (lab.model().reach(&req).expect("reach"), lab.model().reach_compact(&req).expect("c"));
    assert_eq!(full.pairs.len(), 150 * 149);
    assert_eq!(compact.to_matrix(), full);
    // The point of the form: a few machine words per pair, no heap.
    assert!(std::mem::size_of::<topo_model::CompactPair>() <= 24);
    let first_fail = compact.pairs.iter().find(|p| !p.reached()).expect("a failure");
    assert_eq!(compact.from_name(first_fail), "h1");
    assert!(
        compact.reason(first_fail).is_some_and(|r| r.contains("partition")),
        "{:?}",
        compact.reason(first_fail)
    );
}

#[test]
fn memoized_matrix_agrees_with_walks_through_loops_and_hosts() {
    // The memo keeps rows for forwarding nodes only: packets that end at a host which does not
    // forward, and routing loops between routers, must still come out as the walks say.
    let mut b = PlanBuilder::new("memo");
    b.router("r1").router("r2").router("r3");
    b.link("r1", "10.12.0.1/30", "r2", "10.12.0.2/30");
    b.attach("r1", "lan1", "10.1.0.1/24").attach("r2", "lan2", "10.2.0.1/24").attach(
        "r3",
        "lan3",
        "10.3.0.1/24",
    );
    b.host("h1").attach("h1", "lan1", "10.1.0.10/24");
    b.host("h2").attach("h2", "lan2", "10.2.0.10/24");
    b.host("h3").attach("h3", "lan3", "10.3.0.10/24");
    // hx sits on lan1 and lan3 but does not forward; r3 routes lan1 and lan2 through it.
    b.host("hx").attach("hx", "lan1", "10.1.0.20/24").attach("hx", "lan3", "10.3.0.20/24");
    for (h, gw) in [("h1", "10.1.0.1"), ("h2", "10.2.0.1"), ("h3", "10.3.0.1")] {
        b.route_full(h, "default", gw, None, RouteOrigin::Gateway);
    }
    b.route("r1", "10.2.0.0/24", "10.12.0.2").route("r2", "10.1.0.0/24", "10.12.0.1");
    // lan3 loops between r1 and r2.
    b.route("r1", "10.3.0.0/24", "10.12.0.2").route("r2", "10.3.0.0/24", "10.12.0.1");
    b.route("r3", "10.1.0.0/24", "10.3.0.20").route("r3", "10.2.0.0/24", "10.3.0.20");
    let plan = b.build();
    let mut reasons = BTreeSet::new();
    for proto in [Proto::Udp(9), Proto::Icmp] {
        let model = Model::new(&plan, &FaultState::default());
        let m = model.reach(&all_pairs(&plan, proto)).expect("reach");
        for p in &m.pairs {
            let w = model.walk(&p.from, p.to_addr).expect("walk");
            let walked = w.delivered_to.as_deref() == Some(p.to.as_str());
            if !proto.round_trip() {
                assert_eq!(walked, p.reached, "{proto} {p:?} vs {w:?}");
                if !walked {
                    assert_eq!(w.reason, p.reason);
                }
            } else if !walked {
                assert!(!p.reached, "{p:?}");
            }
            if let Some(r) = &p.reason {
                reasons.insert(if r.contains("TTL expired") {
                    "ttl"
                } else if r.contains("does not forward") {
                    "host"
                } else {
                    "other"
                });
            }
        }
    }
    assert!(reasons.contains("ttl") && reasons.contains("host"), "both kinds of failure occur: {reasons:?}");
}
