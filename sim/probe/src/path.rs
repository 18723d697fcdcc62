//! Hop paths: ICMP echo requests with increasing TTL from a raw socket in the source; routers
//! answer with time-exceeded (their address names the hop), the destination with an echo reply.

use std::collections::BTreeMap;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Instant;

use topo_lab::{Hop, PathResult};
use topo_plan::Plan;

use crate::sys::{self, Icmp};
use crate::{node, ns_thread_for, owner_of, primary, runtime, token, ProbeError, ProbeOpts};

/// Longest path probed.
pub const MAX_HOPS: u8 = 30;

/// The hop list from `from` to `to`'s primary address. Hops that never answered within the
/// deadline are reported with address `0.0.0.0` and no node.
pub fn path(plan: &Plan, from: &str, to: &str, opts: &ProbeOpts) -> Result<PathResult, ProbeError> {
    let dst = primary(node(plan, to)?)?;
    node(plan, from)?;
    let nst = ns_thread_for(plan, &[from])?;
    let fd =
        nst.run(0, sys::raw_icmp_socket).map_err(|e| ProbeError::io(format!("{from}: ICMP socket"), e))?;
    let tok = token();
    let id = tok as u16;
    let rt = runtime()?;
    let (answers, delivered_at, unreachable) = rt.block_on(probe(fd, dst, tok, id, opts))?;
    let last = delivered_at
        .or(unreachable.as_ref().map(|u| u.0))
        .unwrap_or_else(|| answers.keys().next_back().copied().unwrap_or(0));
    let mut hops = Vec::new();
    for ttl in 1..=last {
        let hop = match answers.get(&ttl) {
            Some(addr) => Hop { node: owner_of(plan, *addr), addr: *addr },
            None if Some(ttl) == delivered_at => Hop { node: Some(to.to_owned()), addr: dst },
            None => Hop { node: None, addr: Ipv4Addr::UNSPECIFIED },
        };
        hops.push(hop);
    }
    if let Some(d) = delivered_at {
        if let Some(h) = hops.get_mut(usize::from(d) - 1) {
            *h = Hop { node: Some(to.to_owned()), addr: dst };
        }
    }
    let reason = match (&delivered_at, unreachable) {
        (Some(_), _) => None,
        (None, Some((_, text))) => Some(text),
        (None, None) => Some(format!("no echo reply from {dst} within {MAX_HOPS} hops")),
    };
    Ok(PathResult {
        from: from.to_owned(),
        to: to.to_owned(),
        hops,
        delivered: delivered_at.is_some(),
        reason,
    })
}

type Answers = (BTreeMap<u8, Ipv4Addr>, Option<u8>, Option<(u8, String)>);

async fn probe(
    fd: OwnedFd,
    dst: Ipv4Addr,
    tok: u32,
    id: u16,
    opts: &ProbeOpts,
) -> Result<Answers, ProbeError> {
    let afd = sys::async_fd(fd).map_err(|e| ProbeError::io("register ICMP socket", e))?;
    let mut answers: BTreeMap<u8, Ipv4Addr> = BTreeMap::new();
    let mut delivered: Option<u8> = None;
    let mut unreachable: Option<(u8, String)> = None;
    let start = Instant::now();
    let mut pkt = Vec::new();
    let mut buf = vec![0u8; 2048];
    let mut round = 0u32;
    loop {
        round += 1;
        let limit = delivered.or(unreachable.as_ref().map(|u| u.0)).unwrap_or(MAX_HOPS);
        let missing: Vec<u8> =
            (1..=limit).filter(|t| !answers.contains_key(t) && Some(*t) != delivered).collect();
        if missing.is_empty() && (delivered.is_some() || unreachable.is_some()) {
            break;
        }
        for &ttl in &missing {
            let mut payload = tok.to_be_bytes().to_vec();
            payload.extend_from_slice(&round.to_be_bytes());
            sys::build_echo(&mut pkt, id, u16::from(ttl), &payload);
            sys::set_ttl(afd.get_ref().as_fd(), ttl).map_err(|e| ProbeError::io("set TTL", e))?;
            if let Err(e) = sys::send_to(afd.get_ref().as_fd(), &pkt, dst) {
                if unreachable.is_none() && e.kind() != io::ErrorKind::WouldBlock {
                    unreachable = Some((1, format!("send: {e}")));
                }
            }
        }
        let wait = opts.attempt_timeout * (1u32 << round.saturating_sub(1).min(3));
        let until = tokio::time::Instant::now() + wait;
        loop {
            let Ok(ready) = tokio::time::timeout_at(until, afd.readable()).await else { break };
            let Ok(mut guard) = ready else { break };
            loop {
                match sys::recv(afd.get_ref().as_fd(), &mut buf) {
                    Ok(len) => match sys::parse_icmp(&buf[..len]) {
                        Some(Icmp::EchoReply { id: rid, seq, payload, .. })
                            if rid == id && payload.get(..4) == Some(&tok.to_be_bytes()[..]) =>
                        {
                            let ttl = seq as u8;
                            delivered = Some(delivered.map_or(ttl, |d| d.min(ttl)));
                        }
                        Some(Icmp::Error { from, kind, code, orig_dst, id: rid, seq, .. })
                            if rid == id && orig_dst == dst =>
                        {
                            let ttl = seq as u8;
                            if kind == 11 {
                                answers.insert(ttl, from);
                            } else if unreachable.as_ref().is_none_or(|u| ttl < u.0) {
                                answers.insert(ttl, from);
                                unreachable = Some((
                                    ttl,
                                    format!("{} (from {from})", sys::icmp_error_text(kind, code)),
                                ));
                            }
                        }
                        _ => {}
                    },
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        guard.clear_ready();
                        break;
                    }
                    Err(e) => return Err(ProbeError::io("receive ICMP", e)),
                }
            }
            let limit = delivered.unwrap_or(MAX_HOPS);
            if delivered.is_some() && (1..limit).all(|t| answers.contains_key(&t)) {
                break;
            }
        }
        if start.elapsed() >= opts.deadline {
            break;
        }
    }
    // Answers beyond the delivery TTL are echo replies counted twice; drop them.
    if let Some(d) = delivered {
        answers.retain(|t, _| *t < d);
    }
    Ok((answers, delivered, unreachable))
}
