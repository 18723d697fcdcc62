//! Stand-in for `topo __responder --port N` in this crate's tests (the real subcommand lives in
//! the `topo` binary): serves UDP and TCP probes in the current network namespace.

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let port = match args.as_slice() {
        [cmd, flag, port] if cmd == "__responder" && flag == "--port" => port.parse::<u16>().ok(),
        _ => None,
    };
    let Some(port) = port else {
        eprintln!("usage: responder __responder --port PORT");
        return std::process::ExitCode::from(2);
    };
    match topo_probe::run_responder(port) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("responder: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
