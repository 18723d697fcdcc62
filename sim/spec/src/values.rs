//! Strict scalar types of the topology format: durations, percentages, rates, addresses, CIDRs,
//! names. Each parser returns the expected form as its error, which the caller attaches to the
//! value's span.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use ipnet::{Ipv4Net, Ipv6Net};

/// A decimal number with a unit suffix, e.g. `1.5ms`. Returns (number, unit).
fn split_unit(s: &str) -> Option<(f64, &str)> {
    let end = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(end);
    if num.is_empty() || num.starts_with('.') || num.ends_with('.') || num.matches('.').count() > 1 {
        return None;
    }
    let v: f64 = num.parse().ok()?;
    v.is_finite().then_some((v, unit.trim()))
}

/// `250us`, `50ms`, `1.5s`. A bare number is rejected: the unit must be explicit.
pub fn duration(s: &str) -> Result<Duration, String> {
    const FORM: &str = "a duration with a unit: `250us`, `50ms`, `1.5s`";
    let (v, unit) = split_unit(s.trim()).ok_or_else(|| FORM.to_owned())?;
    let micros = match unit {
        "us" | "µs" => v,
        "ms" => v * 1e3,
        "s" => v * 1e6,
        "" => return Err(format!("{FORM} (the unit is missing)")),
        _ => return Err(format!("{FORM} (unknown unit `{unit}`; use us, ms or s)")),
    };
    if micros > 3_600.0 * 1e6 {
        return Err("a duration of at most one hour".to_owned());
    }
    if micros.fract() != 0.0 {
        return Err(format!("{FORM} (finest resolution is 1us)"));
    }
    Ok(Duration::from_micros(micros as u64))
}

/// `5%`, `0.5%`, `100%`. Range is checked by the caller (it has its own diagnostic code).
pub fn percent(s: &str) -> Result<f64, String> {
    const FORM: &str = "a percentage such as `5%` or `0.5%`";
    let Some(num) = s.trim().strip_suffix('%') else {
        return Err(format!("{FORM} (the `%` sign is required)"));
    };
    match split_unit(num.trim()) {
        Some((v, "")) => Ok(v),
        _ => Err(FORM.to_owned()),
    }
}

/// `512kbit`, `10mbit`, `1gbit` (decimal SI prefixes, bits per second). Returns bits per second.
pub fn rate(s: &str) -> Result<u64, String> {
    const FORM: &str = "a rate in bits per second: `512kbit`, `10mbit`, `1gbit`";
    let (v, unit) = split_unit(s.trim()).ok_or_else(|| FORM.to_owned())?;
    let mult = match unit.to_ascii_lowercase().as_str() {
        "bit" => 1.0,
        "kbit" => 1e3,
        "mbit" => 1e6,
        "gbit" => 1e9,
        "" => return Err(format!("{FORM} (the unit is missing)")),
        "bps" | "kbps" | "mbps" | "gbps" => {
            return Err(format!(
                "{FORM} (`{unit}` is ambiguous: tc reads it as bytes per second; write `kbit`, `mbit`, ...)"
            ))
        }
        _ => return Err(format!("{FORM} (unknown unit `{unit}`)")),
    };
    let bits = v * mult;
    if bits.fract() != 0.0 || bits > 1e12 {
        return Err(format!("{FORM} (a whole number of bits per second, at most 1000gbit)"));
    }
    Ok(bits as u64)
}

pub fn ipv4(s: &str) -> Result<Ipv4Addr, String> {
    s.trim().parse().map_err(|_| "an IPv4 address such as `10.0.0.5`".to_owned())
}

pub fn ipv6(s: &str) -> Result<Ipv6Addr, String> {
    s.trim().parse().map_err(|_| "an IPv6 address such as `fd00::5`".to_owned())
}

/// A subnet in CIDR form whose host bits are zero.
pub fn subnet4(s: &str) -> Result<Ipv4Net, String> {
    let net: Ipv4Net =
        s.trim().parse().map_err(|_| "an IPv4 subnet in CIDR form such as `10.0.1.0/24`".to_owned())?;
    if net.trunc() != net {
        return Err(format!("a subnet without host bits: did you mean `{}`?", net.trunc()));
    }
    Ok(net)
}

pub fn subnet6(s: &str) -> Result<Ipv6Net, String> {
    let net: Ipv6Net =
        s.trim().parse().map_err(|_| "an IPv6 subnet in CIDR form such as `fd00:1::/64`".to_owned())?;
    if net.trunc() != net {
        return Err(format!("a subnet without host bits: did you mean `{}`?", net.trunc()));
    }
    Ok(net)
}

/// `A.B.C.D` (a /32) or `A.B.C.D/len` (host bits allowed).
pub fn addr_or_net4(s: &str) -> Result<Ipv4Net, String> {
    let s = s.trim();
    if s.contains('/') {
        s.parse().map_err(|_| "an IPv4 address or prefix such as `10.0.0.1` or `10.0.0.1/32`".to_owned())
    } else {
        ipv4(s).map(Ipv4Net::from)
    }
}

/// YAML booleans, strictly `true`/`false`.
pub fn boolean(s: &str) -> Result<bool, String> {
    match s.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("`true` or `false`".to_owned()),
    }
}

pub fn uint(s: &str, min: u64, max: u64) -> Result<u64, String> {
    let form = || format!("a whole number from {min} to {max}");
    let v: u64 = s.trim().parse().map_err(|_| form())?;
    if (min..=max).contains(&v) {
        Ok(v)
    } else {
        Err(form())
    }
}

/// Why `s` is not a DNS label (lowercase letters, digits, `-`; not at either end; ≤ `max`).
pub fn dns_label_problem(s: &str, max: usize) -> Option<String> {
    if s.is_empty() {
        return Some("the name is empty".to_owned());
    }
    if s.len() > max {
        return Some(format!("the name has {} characters; at most {max} are allowed", s.len()));
    }
    if let Some(c) = s.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')) {
        return Some(format!("`{c}` is not allowed; use lowercase letters, digits and `-`"));
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Some("a name cannot start or end with `-`".to_owned());
    }
    None
}

/// Why `s` is not a usable Linux interface name (IFNAMSIZ - 1 = 15 bytes, no `/`, `:`, spaces).
pub fn ifname_problem(s: &str) -> Option<String> {
    if s.is_empty() {
        return Some("the interface name is empty".to_owned());
    }
    if s.len() > 15 {
        return Some(format!("`{s}` has {} characters; Linux allows at most 15", s.len()));
    }
    if s == "." || s == ".." || s == "lo" {
        return Some(format!("`{s}` is reserved"));
    }
    if let Some(c) = s.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))) {
        return Some(format!("`{c}` is not allowed in interface names; use letters, digits, `-`, `_`, `.`"));
    }
    None
}

/// Levenshtein distance, for "did you mean" hints on short identifiers.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The closest candidate to `s`, if it is close enough to be a likely typo.
pub fn suggest<'a>(s: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (s.len() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (edit_distance(s, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|&(d, c)| (d, c))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration("50ms"), Ok(Duration::from_millis(50)));
        assert_eq!(duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(duration("0ms"), Ok(Duration::ZERO));
        assert!(duration("50").unwrap_err().contains("unit is missing"));
        assert!(duration("50 min").unwrap_err().contains("unknown unit"));
        assert!(duration("ms").is_err());
        assert!(duration("1.2.3ms").is_err());
        assert!(duration("-5ms").is_err());
        assert!(duration("0.0001ms").is_err());
        assert!(duration("2h").is_err());
        assert!(duration("99999999999999999999s").is_err());
    }

    #[test]
    fn percents() {
        assert_eq!(percent("5%"), Ok(5.0));
        assert_eq!(percent("0.5%"), Ok(0.5));
        assert_eq!(percent("100%"), Ok(100.0));
        assert_eq!(percent("150%"), Ok(150.0), "range is the caller's business");
        assert!(percent("5").unwrap_err().contains("required"));
        assert!(percent("-1%").is_err());
        assert!(percent("%").is_err());
    }

    #[test]
    fn rates() {
        assert_eq!(rate("10mbit"), Ok(10_000_000));
        assert_eq!(rate("512kbit"), Ok(512_000));
        assert_eq!(rate("1gbit"), Ok(1_000_000_000));
        assert_eq!(rate("1.5mbit"), Ok(1_500_000));
        assert_eq!(rate("100bit"), Ok(100));
        assert!(rate("10").unwrap_err().contains("missing"));
        assert!(rate("100kbps").unwrap_err().contains("ambiguous"));
        assert!(rate("10 furlongs").is_err());
        assert!(rate("2000gbit").is_err());
    }

    #[test]
    fn subnets_and_addresses() {
        assert_eq!(subnet4("10.0.0.0/24").map(|n| n.prefix_len()), Ok(24));
        assert!(subnet4("10.0.0.1/24").unwrap_err().contains("10.0.0.0/24"));
        assert!(subnet4("10.0.0.0").is_err());
        assert!(ipv4("10.0.0.300").is_err());
        assert_eq!(addr_or_net4("10.1.1.1").map(|n| n.prefix_len()), Ok(32));
        assert_eq!(addr_or_net4("10.1.1.1/24").map(|n| n.prefix_len()), Ok(24));
        assert!(subnet6("fd00::/64").is_ok());
        assert!(subnet6("fd00::1/64").is_err());
    }

    #[test]
    fn names() {
        assert_eq!(dns_label_problem("web-1", 63), None);
        assert!(dns_label_problem("Web", 63).is_some());
        assert!(dns_label_problem("-web", 63).is_some());
        assert!(dns_label_problem("web_1", 63).is_some());
        assert!(dns_label_problem(&"a".repeat(64), 63).is_some());
        assert_eq!(ifname_problem("eth0"), None);
        assert!(ifname_problem("averyveryverylongname").is_some());
        assert!(ifname_problem("eth/0").is_some());
        assert!(ifname_problem("lo").is_some());
    }

    #[test]
    fn suggestions() {
        assert_eq!(suggest("netwrks", ["networks", "nodes", "links"]), Some("networks"));
        assert_eq!(suggest("zzz", ["networks", "nodes"]), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
