//! The kernel's IPv4 main routing table of a namespace, read from `/proc/thread-self/net/route`
//! on a thread inside it (cheaper than netlink or `ip -j route` in a loop, and needs no process).

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use topo_netns::Netns;

use crate::DaemonError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FibRoute {
    pub dest: Ipv4Net,
    /// `None` for directly connected routes.
    pub gateway: Option<Ipv4Addr>,
    pub iface: String,
}

pub fn read(netns: &str) -> Result<Vec<FibRoute>, DaemonError> {
    let ns = Netns::open(netns)?;
    let text = ns
        .run(|| std::fs::read_to_string("/proc/thread-self/net/route"))?
        .map_err(|e| DaemonError::io(netns, "read /proc/net/route", e))?;
    Ok(parse(&text))
}

/// Parse `/proc/net/route`: addresses are the raw network-order words printed in hex on a
/// little-endian host.
pub fn parse(text: &str) -> Vec<FibRoute> {
    let word = |s: &str| u32::from_str_radix(s, 16).ok().map(|v| Ipv4Addr::from(v.to_le_bytes()));
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 {
            continue;
        }
        let (Some(dest), Some(gw), Some(mask)) = (word(f[1]), word(f[2]), word(f[7])) else { continue };
        let Ok(dest) = Ipv4Net::new(dest, u32::from(mask).count_ones() as u8) else { continue };
        out.push(FibRoute { dest, gateway: (!gw.is_unspecified()).then_some(gw), iface: f[0].to_owned() });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net_route() {
        let text = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                    dxa\t0000010A\t00000000\t0001\t0\t0\t0\tFCFFFFFF\t0\t0\t0\n\
                    dxa\t0200FF0A\t0200010A\t0007\t0\t0\t20\tFFFFFFFF\t0\t0\t0\n";
        let r = parse(text);
        assert_eq!(
            r,
            [
                FibRoute { dest: "10.1.0.0/30".parse().unwrap(), gateway: None, iface: "dxa".into() },
                FibRoute {
                    dest: "10.255.0.2/32".parse().unwrap(),
                    gateway: Some("10.1.0.2".parse().unwrap()),
                    iface: "dxa".into()
                },
            ]
        );
    }
}
