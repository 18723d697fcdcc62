//! Subcommand implementations. Each returns an exit code from [`crate::exit_code`].

mod plan;
mod schema;
mod validate;

pub mod chaos;
pub mod check;
pub mod down;
pub mod events;
pub mod exec;
pub mod gc;
pub mod ls;
pub mod sim;
pub mod snapshot;
pub mod status;
pub mod test;
pub mod up;
pub mod vtysh;

use crate::args::{Cli, Command};

pub fn run(cli: Cli) -> i32 {
    match cli.command {
        Command::Up(a) => up::run(&a),
        Command::Down(a) => down::run(&a),
        Command::Status(a) => status::run(&a),
        Command::Ls(a) => ls::run(&a),
        Command::Exec(a) => exec::exec(&a),
        Command::Shell(a) => exec::shell(&a),
        Command::Gc(a) => gc::run(&a),
        Command::Validate { files, json } => validate::run(&files, json),
        Command::Schema => schema::run(),
        Command::Plan { file, node, json } => plan::run(&file, node.as_deref(), json),
        Command::Partition(a) => chaos::partition(&a),
        Command::Heal(a) => chaos::heal(&a),
        Command::Link(a) => chaos::link(&a),
        Command::Node(a) => chaos::node(&a),
        Command::Impair(a) => chaos::impair(&a),
        Command::Events(a) => events::run(&a),
        Command::Test(a) => test::run(&a),
        Command::Delayer { args } => chaos::delayer(&args),
        Command::Check(a) => check::run(&a),
        Command::Vtysh(a) => vtysh::run(&a),
        Command::Responder { port } => check::responder(port),
        Command::Sim(a) => sim::run(a),
        Command::Snapshot { cmd } => snapshot::run(cmd),
    }
}
