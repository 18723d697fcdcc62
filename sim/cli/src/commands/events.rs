//! `topo events [--json]`: the lab's append-only fault audit log (`events.jsonl` in the state
//! directory), so faults can be lined up against an application's own logs.

use std::io::BufRead;

use clap::Args;

use crate::exit_code;

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Lab name or topology file (default: the only lab that is up).
    #[arg(long, value_name = "LAB|FILE")]
    pub lab: Option<String>,
    /// Print the events as a JSON array.
    #[arg(long)]
    pub json: bool,
}

fn field<'a>(v: &'a serde_json::Value, keys: &[&str]) -> Option<&'a serde_json::Value> {
    keys.iter().find_map(|k| v.get(*k))
}

fn text(v: Option<&serde_json::Value>) -> String {
    match v {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

pub fn run(args: &EventsArgs) -> i32 {
    let lab = match topo_kernel::resolve_lab(args.lab.as_deref()) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return exit_code::LAB_ERROR;
        }
    };
    let path = topo_kernel::state_dir(&lab).join("events.jsonl");
    let file = match std::fs::File::open(&path) {
        Ok(f) => Some(f),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", path.display());
            return exit_code::LAB_ERROR;
        }
    };
    let mut events = Vec::new();
    if let Some(f) = file {
        for line in std::io::BufReader::new(f).lines().map_while(Result::ok) {
            // A line cut by a crash mid-write is skipped, not fatal.
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                events.push(v);
            }
        }
    }
    if args.json {
        println!("{}", serde_json::Value::Array(events));
        return exit_code::OK;
    }
    for e in &events {
        let ts = text(field(e, &["timestamp", "ts", "time"]));
        let fault = text(field(e, &["fault", "kind"]));
        let targets = text(field(e, &["targets"]));
        let result = text(field(e, &["result", "outcome"]));
        println!("{ts}  {fault}  {targets}  {result}");
    }
    exit_code::OK
}
