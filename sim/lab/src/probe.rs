//! Result types of probes and assertions. Both backends produce these, so reports and
//! scenario assertions don't care which backend answered.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "proto", content = "port")]
pub enum Proto {
    /// ICMP echo: a round trip (request delivered and reply delivered).
    Icmp,
    /// One UDP datagram, observed at the receiver: one-way delivery.
    Udp(u16),
    /// TCP connect: a round trip (SYN and SYN-ACK).
    Tcp(u16),
}

impl Proto {
    /// Does success need the reply direction too?
    pub fn round_trip(self) -> bool {
        !matches!(self, Proto::Udp(_))
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Proto::Icmp => f.write_str("icmp"),
            Proto::Udp(p) => write!(f, "udp:{p}"),
            Proto::Tcp(p) => write!(f, "tcp:{p}"),
        }
    }
}

impl FromStr for Proto {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let port = |p: &str| p.parse::<u16>().map_err(|_| format!("bad port in {s:?}"));
        match s.split_once(':') {
            None if s == "icmp" => Ok(Proto::Icmp),
            None if s == "udp" => Ok(Proto::Udp(DEFAULT_PROBE_PORT)),
            None if s == "tcp" => Ok(Proto::Tcp(DEFAULT_PROBE_PORT)),
            Some(("udp", p)) => Ok(Proto::Udp(port(p)?)),
            Some(("tcp", p)) => Ok(Proto::Tcp(port(p)?)),
            _ => Err(format!("unknown protocol {s:?}: use icmp, udp[:PORT] or tcp[:PORT]")),
        }
    }
}

/// Port the topo responder listens on when none is given.
pub const DEFAULT_PROBE_PORT: u16 = 7946;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReachRequest {
    /// Source nodes (resolved names).
    pub from: Vec<String>,
    /// Destination nodes (resolved names). Pairs with `from == to` are skipped.
    pub to: Vec<String>,
    pub proto: Proto,
}

/// Outcome of one directed pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairOutcome {
    pub from: String,
    pub to: String,
    /// Address probed (the destination's primary address).
    pub to_addr: Ipv4Addr,
    pub reached: bool,
    /// Where and why it failed (model: exact reason; kernel: "timeout" and the like).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReachMatrix {
    pub proto: Proto,
    /// Sorted by (from, to).
    pub pairs: Vec<PairOutcome>,
}

impl ReachMatrix {
    pub fn get(&self, from: &str, to: &str) -> Option<&PairOutcome> {
        self.pairs.iter().find(|p| p.from == from && p.to == to)
    }

    /// Pairs whose `reached` differs from `expected`'s, as (from, to, expected, actual).
    pub fn mismatches(&self, expected: &ReachMatrix) -> Vec<(String, String, bool, bool)> {
        let mut out = Vec::new();
        for e in &expected.pairs {
            let actual = self.get(&e.from, &e.to).is_some_and(|p| p.reached);
            if actual != e.reached {
                out.push((e.from.clone(), e.to.clone(), e.reached, actual));
            }
        }
        out
    }
}

/// One hop of a path: the node (when known) and the address that answered / forwarded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hop {
    pub node: Option<String>,
    pub addr: Ipv4Addr,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathResult {
    pub from: String,
    pub to: String,
    /// Routers traversed, in order, then the destination when delivered.
    pub hops: Vec<Hop>,
    pub delivered: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatResult {
    pub from: String,
    pub to: String,
    /// The source address the sender used.
    pub sent_src: Ipv4Addr,
    /// The source address the receiver saw; `None` when nothing arrived.
    pub observed_src: Option<Ipv4Addr>,
    pub sent_port: Option<u16>,
    pub observed_port: Option<u16>,
}

impl NatResult {
    pub fn nat_free(&self) -> bool {
        self.observed_src == Some(self.sent_src)
            && (self.sent_port.is_none() || self.sent_port == self.observed_port)
    }
}
