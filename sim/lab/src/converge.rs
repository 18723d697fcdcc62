//! Convergence measurement as data: what to measure ([`ConvergeRequest`]) and what was seen
//! ([`ConvergeReport`]). The kernel backend fills the report from live probe streams; scenarios
//! assert on it. All times are milliseconds relative to the moment the fault was injected
//! (negative = before), on one monotonic clock.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::probe::Proto;

/// One directed probe stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    pub from: String,
    pub to: String,
}

impl std::fmt::Display for Flow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}->{}", self.from, self.to)
    }
}

impl std::str::FromStr for Flow {
    type Err = String;
    /// `a->b` (spaces allowed around the arrow).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, b) = s.split_once("->").ok_or_else(|| format!("bad flow {s:?}: write FROM->TO"))?;
        let (a, b) = (a.trim(), b.trim());
        if a.is_empty() || b.is_empty() || a == b {
            return Err(format!("bad flow {s:?}: write FROM->TO with two different nodes"));
        }
        Ok(Flow { from: a.to_owned(), to: b.to_owned() })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConvergeRequest {
    pub flows: Vec<Flow>,
    /// Probe protocol of the streams (ICMP echo: a probe is lost unless its reply comes back).
    pub proto: Proto,
    /// Time between two probes of one flow (default 1 ms = 1 kHz).
    pub interval: Duration,
    /// Give up waiting for stability this long after the injection.
    pub timeout: Duration,
    /// K: this many consecutive successes after the last loss mean "stable".
    pub stable: u32,
    /// A flow that loses nothing for this long after the injection is reported unaffected.
    pub quiet: Duration,
    /// A probe without reply after this long is lost.
    pub loss_timeout: Duration,
    /// Also watch IPv4 route changes in these nodes (empty: the flow ends and every router).
    pub watch: Vec<String>,
}

impl ConvergeRequest {
    pub fn new(flows: Vec<Flow>) -> Self {
        ConvergeRequest {
            flows,
            proto: Proto::Icmp,
            interval: Duration::from_millis(1),
            timeout: Duration::from_secs(30),
            stable: 50,
            quiet: Duration::from_secs(2),
            loss_timeout: Duration::from_millis(500),
            watch: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowReport {
    pub from: String,
    pub to: String,
    /// Probes sent after the injection (up to the end of the measurement).
    pub sent: u64,
    pub lost: u64,
    /// Send time of the first lost probe.
    pub first_loss_ms: Option<f64>,
    /// Send time of the last lost probe.
    pub last_loss_ms: Option<f64>,
    /// Length of the outage: from the first to the last lost probe plus one interval (each
    /// probe stands for one interval of time). `None` when nothing was lost.
    pub outage_ms: Option<f64>,
    /// Send time of the first successful probe after the last loss.
    pub recovered_ms: Option<f64>,
    /// When the K-th consecutive success after the last loss came back: the time to stable.
    pub stable_ms: Option<f64>,
    /// The flow reached K consecutive successes before the timeout.
    pub converged: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum TimelineEvent {
    Inject {
        t_ms: f64,
        duration_ms: f64,
    },
    FirstLoss {
        t_ms: f64,
        flow: String,
    },
    LastLoss {
        t_ms: f64,
        flow: String,
    },
    Recovered {
        t_ms: f64,
        flow: String,
    },
    Stable {
        t_ms: f64,
        flow: String,
    },
    /// A route appeared (`add`) or disappeared (`del`) in a node's main table.
    Route {
        t_ms: f64,
        node: String,
        action: String,
        dst: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        via: Option<std::net::Ipv4Addr>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dev: Option<String>,
        /// Routing protocol number that installed it (e.g. 188 = OSPF via zebra, 4 = static).
        protocol: u8,
    },
}

impl TimelineEvent {
    pub fn t_ms(&self) -> f64 {
        match self {
            TimelineEvent::Inject { t_ms, .. }
            | TimelineEvent::FirstLoss { t_ms, .. }
            | TimelineEvent::LastLoss { t_ms, .. }
            | TimelineEvent::Recovered { t_ms, .. }
            | TimelineEvent::Stable { t_ms, .. }
            | TimelineEvent::Route { t_ms, .. } => *t_ms,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConvergeReport {
    pub proto: Proto,
    pub interval_ms: f64,
    pub stable: u32,
    pub flows: Vec<FlowReport>,
    /// Everything on one clock, sorted by time.
    pub timeline: Vec<TimelineEvent>,
    /// End of the measurement.
    pub ended_ms: f64,
}

impl ConvergeReport {
    pub fn all_converged(&self) -> bool {
        self.flows.iter().all(|f| f.converged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_parses() {
        let f: Flow = " a -> b ".parse().unwrap();
        assert_eq!(f, Flow { from: "a".into(), to: "b".into() });
        assert!("a-b".parse::<Flow>().is_err());
        assert!("a->a".parse::<Flow>().is_err());
        assert!("->b".parse::<Flow>().is_err());
    }
}
