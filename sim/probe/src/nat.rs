//! NAT check: one UDP flow from `from` to `to`; the destination reports the source it saw.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::Instant;

use topo_lab::probe::DEFAULT_PROBE_PORT;
use topo_lab::NatResult;
use topo_plan::Plan;

use crate::reach::parse_responder_echo;
use crate::{node, ns_thread_for, primary, runtime, token, ProbeError, ProbeOpts};

/// Send UDP datagrams from `from` to `to`'s primary address on topo's probe port and compare the
/// source the sender used (the kernel's choice, read back from a connected socket) with the
/// source topo's listener in `to` observed. With a topo responder already on the port, its
/// echo carries the observation instead.
pub fn nat(plan: &Plan, from: &str, to: &str, opts: &ProbeOpts) -> Result<NatResult, ProbeError> {
    let port = DEFAULT_PROBE_PORT;
    let dst = primary(node(plan, to)?)?;
    node(plan, from)?;
    if from == to {
        return Err(ProbeError::Invalid(format!("nat check needs two different nodes, got {from} twice")));
    }
    let nst = ns_thread_for(plan, &[from, to])?;
    let sender = nst
        .run(0, move || -> io::Result<UdpSocket> {
            let s = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))?;
            s.connect(SocketAddrV4::new(dst, port))?;
            s.set_nonblocking(true)?;
            Ok(s)
        })
        .map_err(|e| ProbeError::io(format!("{from}: UDP socket towards {dst}:{port}"), e))?;
    let sent = match sender.local_addr() {
        Ok(SocketAddr::V4(a)) => a,
        Ok(SocketAddr::V6(_)) => return Err(ProbeError::Invalid("IPv6 source".into())),
        Err(e) => return Err(ProbeError::io("read local address", e)),
    };
    let listener = nst
        .run(1, move || -> io::Result<Option<UdpSocket>> {
            match UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)) {
                Ok(s) => {
                    s.set_nonblocking(true)?;
                    Ok(Some(s))
                }
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => Ok(None),
                Err(e) => Err(e),
            }
        })
        .map_err(|e| ProbeError::io(format!("{to}: listen on UDP port {port}"), e))?;
    let tok = token();
    let rt = runtime()?;
    let observed = rt.block_on(async move {
        let sender =
            tokio::net::UdpSocket::from_std(sender).map_err(|e| ProbeError::io("register UDP socket", e))?;
        let listener = match listener {
            Some(l) => Some(
                tokio::net::UdpSocket::from_std(l).map_err(|e| ProbeError::io("register UDP listener", e))?,
            ),
            None => None,
        };
        let start = Instant::now();
        let mut attempt = 0u32;
        let mut buf = vec![0u8; 2048];
        let mut buf2 = vec![0u8; 2048];
        loop {
            attempt += 1;
            let tag = tag(tok, attempt);
            if let Err(e) = sender.send(&tag).await {
                tracing::debug!(%e, "nat probe send failed");
            }
            let wait = opts.attempt_timeout * (1u32 << attempt.saturating_sub(1).min(3));
            let until = tokio::time::Instant::now() + wait;
            let got = tokio::time::timeout_at(until, async {
                loop {
                    tokio::select! {
                        r = async { match &listener { Some(l) => l.recv_from(&mut buf).await, None => std::future::pending().await } } => {
                            if let Ok((len, SocketAddr::V4(from))) = r {
                                if buf[..len].get(..8) == Some(&tag[..8]) {
                                    return Some(from);
                                }
                            }
                        }
                        r = sender.recv(&mut buf2) => {
                            if let Ok(len) = r {
                                if let Some((obs, rest)) = parse_responder_echo(&buf2[..len]) {
                                    if rest.get(..8) == Some(&tag[..8]) {
                                        return Some(obs);
                                    }
                                }
                            }
                        }
                    }
                }
            })
            .await;
            if let Ok(Some(obs)) = got {
                return Ok::<_, ProbeError>(Some(obs));
            }
            if start.elapsed() >= opts.deadline {
                return Ok(None);
            }
        }
    })?;
    Ok(NatResult {
        from: from.to_owned(),
        to: to.to_owned(),
        sent_src: *sent.ip(),
        observed_src: observed.map(|o| *o.ip()),
        sent_port: Some(sent.port()),
        observed_port: observed.map(|o| o.port()),
    })
}

fn tag(tok: u32, attempt: u32) -> [u8; 12] {
    let mut b = [0u8; 12];
    b[..4].copy_from_slice(b"TNAT");
    b[4..8].copy_from_slice(&tok.to_be_bytes());
    b[8..].copy_from_slice(&attempt.to_be_bytes());
    b
}
