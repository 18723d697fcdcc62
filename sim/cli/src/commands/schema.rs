//! `topo schema`: the JSON Schema of the topology format on stdout.

use std::io::Write;

use crate::exit_code;

pub fn run() -> i32 {
    let schema = topo_spec::schema::json_schema();
    let text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    match writeln!(std::io::stdout().lock(), "{text}") {
        Ok(()) => exit_code::OK,
        Err(_) => exit_code::LAB_ERROR,
    }
}
