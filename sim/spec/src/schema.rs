//! JSON Schema (draft 2020-12) of the topology format, for editors (e.g. the YAML language
//! server: `# yaml-language-server: $schema=topo.schema.json`).
//!
//! Built by hand from the same key lists the parser checks (`parse.rs`), so the schema
//! cannot drift from what `topo validate` accepts; a test checks that every key list is
//! covered. It describes shapes and value patterns; cross-references (unknown nodes,
//! overlapping subnets, ...) are only checked by `topo validate`.

use serde_json::{json, Map, Value};

use crate::parse;

const DURATION: &str = r"^[0-9]+(\.[0-9]+)?(us|µs|ms|s)$";
const PERCENT: &str = r"^[0-9]+(\.[0-9]+)?%$";
const RATE: &str = r"^[0-9]+(\.[0-9]+)?([kmgKMG])?bit$";
const IPV4: &str = r"^[0-9]{1,3}(\.[0-9]{1,3}){3}$";
const CIDR4: &str = r"^[0-9]{1,3}(\.[0-9]{1,3}){3}/[0-9]{1,2}$";
const ADDR_OR_CIDR4: &str = r"^[0-9]{1,3}(\.[0-9]{1,3}){3}(/[0-9]{1,2})?$";
const NAME: &str = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$";
/// Node keys may carry one counter range, e.g. `web-{1..5}`.
const NODE_KEY: &str = r"^[a-z0-9{}.-]+$";

/// Optional keys accept null ("not set"; in nodes it clears an inherited value).
fn nullable(mut v: Value) -> Value {
    if let Value::Object(m) = &mut v {
        if let Some(t) = m.get_mut("type") {
            match t {
                Value::String(s) => *t = json!([s.clone(), "null"]),
                Value::Array(a) => a.push(json!("null")),
                _ => {}
            }
        } else if let Some(Value::Array(e)) = m.get_mut("enum") {
            e.push(Value::Null);
        } else if let Some(Value::Array(a)) = m.get_mut("anyOf") {
            a.push(json!({"type": "null"}));
        }
    }
    v
}

fn object(keys: &[&str], props: Value, required: &[&str]) -> Value {
    let props: Map<String, Value> = props
        .as_object()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| if required.contains(&k.as_str()) { (k, v) } else { (k, nullable(v)) })
        .collect();
    debug_assert!(keys.iter().all(|k| props.contains_key(*k)), "schema misses a key of {keys:?}");
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": required,
        "properties": props,
    })
}

/// A string of the given form, or one that holds a counter expression (`{n+1}`), which only
/// takes its form after expansion.
fn string(pattern: &str, description: &str) -> Value {
    json!({"type": "string", "pattern": format!("({pattern})|\\{{n"), "description": description})
}

/// Scalars that YAML may write as numbers or strings (`mtu: 1500`, `mtu: "1500"`).
fn uint(min: u64, max: u64, description: &str) -> Value {
    json!({"type": ["integer", "string"], "minimum": min, "maximum": max, "description": description})
}

fn impairment() -> Value {
    object(
        parse::IMPAIR_KEYS,
        json!({
            "delay": string(DURATION, "one-way delay, e.g. `50ms` (at most 60s)"),
            "jitter": string(DURATION, "delay variation, at most `delay`"),
            "loss": string(PERCENT, "packet loss, `0%` to `100%`"),
            "duplicate": string(PERCENT, "packet duplication, `0%` to `100%`"),
            "reorder": string(PERCENT, "share of packets sent without delay (needs `delay`)"),
            "rate": string(RATE, "bandwidth limit in bits per second: `512kbit`, `10mbit`, `1gbit`"),
        }),
        &[],
    )
}

fn node_props() -> Value {
    let iface = object(
        parse::IFACE_KEYS,
        json!({
            "network": {"type": "string", "description": "network to attach to"},
            "address": {
                "type": "string",
                "description": "`auto` (default), `dhcp`, or a static IPv4 address (optionally with the network's prefix length)",
                "pattern": r"(^(auto|dhcp|[0-9]{1,3}(\.[0-9]{1,3}){3}(/[0-9]{1,2})?)$)|\{n",
            },
            "name": {"type": "string", "maxLength": 15, "description": "interface name inside the node"},
            "address6": {"type": "string", "description": "static IPv6 address inside the network's `subnet6`"},
            "mtu": uint(68, 65535, "interface MTU"),
        }),
        &["network"],
    );
    let route = object(
        parse::ROUTE_KEYS,
        json!({
            "to": {"type": "string", "description": "`default`, a subnet (CIDR) or an address"},
            "via": string(IPV4, "next hop on a connected subnet"),
            "metric": uint(0, u64::from(u32::MAX), "route metric"),
        }),
        &["to", "via"],
    );
    let ospf_iface = object(
        parse::OSPF_IFACE_KEYS,
        json!({
            "cost": uint(1, 65535, "OSPF cost"),
            "passive": {"type": "boolean"},
            "area": {"type": ["string", "integer"], "description": "area number or dotted area"},
        }),
        &[],
    );
    let ospf = object(
        parse::OSPF_KEYS,
        json!({
            "router_id": string(IPV4, "default: first loopback, else first interface address"),
            "area": {"type": ["string", "integer"], "description": "default area (default 0)"},
            "hello_interval": uint(1, 65535, "seconds (default 10)"),
            "dead_interval": uint(1, 65535, "seconds (default 4 x hello_interval)"),
            "fast": {"type": "boolean", "description": "fast SPF/LSA throttling"},
            "bfd": {"type": "boolean", "description": "BFD on every OSPF interface"},
            "bfd_interval": string(DURATION, "BFD interval, whole ms from 10ms to 60s (default 300ms)"),
            "bfd_multiplier": uint(2, 255, "BFD detect multiplier (default 3)"),
            "redistribute_static": {"type": "boolean"},
            "interfaces": {
                "type": "object",
                "description": "per attachment (network name, or peer node of a link)",
                "additionalProperties": {"anyOf": [ospf_iface, {"type": "null"}]},
            },
        }),
        &[],
    );
    let routing = object(
        parse::ROUTING_KEYS,
        json!({
            "daemon": {"enum": ["frr"], "description": "routing implementation (`bird` comes later)"},
            "ospf": ospf,
        }),
        &[],
    );
    json!({
        "kind": {"enum": ["host", "router"], "description": "default host; routers forward"},
        "group": {"type": "string", "description": "one group (template) to inherit from"},
        "groups": {"type": "array", "items": {"type": "string"}, "description": "groups to inherit from, in order"},
        "interfaces": {
            "type": "array",
            "items": {"anyOf": [{"type": "string", "description": "network name (address auto)"}, iface]},
        },
        "loopback": {"type": "array", "items": string(ADDR_OR_CIDR4, "address (a /32) or address/len")},
        "routes": {"type": "array", "items": route},
        "sysctls": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}},
        "depends_on": {"type": "array", "items": {"type": "string"}, "description": "node names or `*` patterns"},
        "labels": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean", "null"]}},
        "routing": routing,
        "masquerade": {"type": "array", "items": {"type": "string"}, "description": "attachments to source-NAT out of"},
    })
}

/// The schema as a JSON value.
pub fn json_schema() -> Value {
    let node_props = node_props();
    let node = object(parse::NODE_KEYS, node_props.clone(), &[]);
    let mut template_props: Map<String, Value> = node_props.as_object().cloned().unwrap_or_default();
    template_props.remove("group");
    template_props.remove("groups");
    let template_keys: Vec<&str> =
        parse::NODE_KEYS.iter().copied().filter(|k| *k != "group" && *k != "groups").collect();
    let template = object(&template_keys, Value::Object(template_props), &[]);
    let network = object(
        parse::NETWORK_KEYS,
        json!({
            "subnet": string(CIDR4, "IPv4 subnet, /30 or larger"),
            "subnet6": {"type": "string", "description": "optional IPv6 subnet"},
            "gateway": {"type": "string", "description": "gateway address or `none` (default: first host address, reserved)"},
            "mtu": uint(68, 65535, "bridge MTU"),
        }),
        &["subnet"],
    );
    let end = object(
        parse::END_KEYS,
        json!({
            "node": {"type": "string"},
            "name": {"type": "string", "maxLength": 15},
            "address": string(IPV4, "static address inside the link's subnet"),
        }),
        &["node"],
    );
    let link = object(
        parse::LINK_KEYS,
        json!({
            "endpoints": {
                "type": "array",
                "minItems": 2,
                "maxItems": 2,
                "items": {"anyOf": [{"type": "string", "description": "`node` or `node:ifname`"}, end]},
            },
            "subnet": string(CIDR4, "static link subnet (default: allocated from the p2p pool)"),
            "mtu": uint(68, 65535, "link MTU"),
            "impair": {
                "description": "one impairment for both directions, or per direction (`a->b`, `b->a`, or `<node>-><node>`)",
                "anyOf": [
                    impairment(),
                    {"type": "object", "propertyNames": {"pattern": "->"}, "additionalProperties": impairment()},
                ],
            },
        }),
        &["endpoints"],
    );
    let pools = object(
        parse::POOL_KEYS,
        json!({
            "p2p": string(CIDR4, "pool for link subnets (default 10.255.0.0/16)"),
            "p2p_prefix": {"enum": [30, 31, "30", "31"], "description": "size of allocated link subnets (default 31)"},
        }),
        &[],
    );
    let mut top = object(
        parse::TOP_KEYS,
        json!({
            "name": {"type": "string", "pattern": NAME, "maxLength": parse::MAX_LAB_NAME, "description": "lab name"},
            "pools": pools,
            "defaults": template.clone(),
            "groups": {
                "type": "object",
                "propertyNames": {"pattern": NAME},
                "additionalProperties": {"anyOf": [template, {"type": "null"}]},
            },
            "networks": {"type": "object", "propertyNames": {"pattern": NAME}, "additionalProperties": network},
            "nodes": {
                "type": "object",
                "propertyNames": {"pattern": NODE_KEY},
                "additionalProperties": {"anyOf": [node, {"type": "null"}]},
            },
            "links": {"type": "array", "items": link},
        }),
        &["name"],
    );
    if let Value::Object(m) = &mut top {
        m.insert("$schema".into(), json!("https://json-schema.org/draft/2020-12/schema"));
        m.insert("$id".into(), json!("https://topo.invalid/schema/topology-v1.json"));
        m.insert("title".into(), json!("topo topology (format v1)"));
    }
    top
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(v: &Value) -> Vec<String> {
        let mut k: Vec<String> =
            v["properties"].as_object().expect("object schema").keys().cloned().collect();
        k.sort();
        k
    }

    fn sorted(list: &[&str]) -> Vec<String> {
        let mut k: Vec<String> = list.iter().map(|s| (*s).to_owned()).collect();
        k.sort();
        k
    }

    #[test]
    fn schema_lists_exactly_the_parser_keys() {
        let s = json_schema();
        assert_eq!(keys(&s), sorted(parse::TOP_KEYS));
        assert_eq!(keys(&s["properties"]["pools"]), sorted(parse::POOL_KEYS));
        assert_eq!(keys(&s["properties"]["networks"]["additionalProperties"]), sorted(parse::NETWORK_KEYS));
        let node = &s["properties"]["nodes"]["additionalProperties"]["anyOf"][0];
        assert_eq!(keys(node), sorted(parse::NODE_KEYS));
        assert_eq!(keys(&node["properties"]["interfaces"]["items"]["anyOf"][1]), sorted(parse::IFACE_KEYS));
        assert_eq!(keys(&node["properties"]["routes"]["items"]), sorted(parse::ROUTE_KEYS));
        assert_eq!(keys(&node["properties"]["routing"]), sorted(parse::ROUTING_KEYS));
        assert_eq!(keys(&node["properties"]["routing"]["properties"]["ospf"]), sorted(parse::OSPF_KEYS));
        let link = &s["properties"]["links"]["items"];
        assert_eq!(keys(link), sorted(parse::LINK_KEYS));
        assert_eq!(keys(&link["properties"]["impair"]["anyOf"][0]), sorted(parse::IMPAIR_KEYS));
        assert_eq!(s["additionalProperties"], json!(false));
        assert_eq!(s["required"], json!(["name"]));
    }
}
