//! Command-line arguments (clap derive). One variant per subcommand; each is implemented in
//! `commands/<name>.rs`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "topo", version, about = "Network-chaos and topology testbench on Linux network namespaces")]
pub struct Cli {
    /// More logging on stderr (-v info, -vv debug, -vvv trace). TOPO_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build a lab from a topology file (a no-op when it is already up from the same file).
    Up(crate::commands::up::UpArgs),
    /// Tear a lab down, leaving nothing behind.
    Down(crate::commands::down::DownArgs),
    /// Nodes, interfaces, addresses, link state, processes and faults of a lab.
    Status(crate::commands::status::StatusArgs),
    /// Labs on this machine.
    Ls(crate::commands::ls::LsArgs),
    /// Run a command inside a node: `topo exec [--lab L] NODE -- CMD...` (exits with its code).
    Exec(crate::commands::exec::ExecArgs),
    /// An interactive shell ($SHELL, else /bin/bash) inside a node.
    Shell(crate::commands::exec::ShellArgs),
    /// Remove the residue of crashed or killed topo runs (namespaces, processes, files) for every lab.
    Gc(crate::commands::gc::GcArgs),
    /// Check topology files; exit 0 when all are valid, 3 otherwise (diagnostics on stderr).
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Print diagnostics as JSON on stdout (an array of objects with file, code, message, span, help).
        #[arg(long)]
        json: bool,
    },
    /// Print the JSON Schema of the topology format (for editor validation of topology files).
    Schema,
    /// Show the provisioning plan of a topology (names, addresses, MACs, routes, links) without
    /// building anything. Exit 3 when the file is invalid.
    Plan {
        /// Topology file (YAML).
        file: PathBuf,
        /// Show only this node (with its sysctls and OSPF interfaces).
        #[arg(long, value_name = "NODE")]
        node: Option<String>,
        /// Print the plan as JSON (the exact data the backends consume).
        #[arg(long)]
        json: bool,
    },
    /// Partition the lab (Blockade semantics): `topo partition a,b c`, one-way `--oneway a->b`,
    /// grudges `--drop FROM->TO`, or `--random [--seed N]`. Prints the resulting groups.
    Partition(crate::commands::chaos::PartitionArgs),
    /// Remove every partition and one-way drop.
    #[command(alias = "join")]
    Heal(crate::commands::chaos::LabArg),
    /// Link faults: `down|up` (carrier loss), `cut|restore` (silent loss, carrier up), between
    /// two linked nodes or for a node's attachment to a network.
    Link(crate::commands::chaos::LinkArgs),
    /// Node faults: kill, pause, resume, stop, start.
    Node(crate::commands::chaos::NodeArgs),
    /// Impair a link per direction: `topo impair a b --delay 50ms --loss 2% [--dir a->b]`, or `--clear`.
    Impair(crate::commands::chaos::ImpairArgs),
    /// The fault audit log of a lab.
    Events(crate::commands::events::EventsArgs),
    /// Run scenario files (faults + assertions) against the kernel or the model; exit 1 when an
    /// assertion fails, 3 when a scenario is invalid.
    Test(crate::commands::test::TestArgs),
    /// Answer on the model backend, without root: `topo sim FILE [--fault SPEC]... [reach|path A B|nat A B|routes]`.
    Sim(crate::commands::sim::SimArgs),
    /// Golden files of what a design does: `freeze FILE`, `verify [FILE|DIR] [--update]`.
    Snapshot {
        #[command(subcommand)]
        cmd: crate::commands::snapshot::SnapshotCmd,
    },
    /// Assertions on live traffic: `reach` matrix, `nat`, `path`, `converge` (exit 1 on mismatch).
    Check(crate::commands::check::CheckArgs),
    /// FRR's vtysh on one router's daemons: `topo vtysh [--lab L] NODE [-c CMD]...`.
    Vtysh(crate::commands::vtysh::VtyshArgs),
    /// Internal: the probe responder process inside a node (started by topo itself).
    #[command(name = "__responder", hide = true)]
    Responder {
        #[arg(long, default_value_t = topo_lab::probe::DEFAULT_PROBE_PORT)]
        port: u16,
    },
    /// Internal: the userspace impairment process (started by topo itself).
    #[command(name = "__delayer", hide = true)]
    Delayer {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}
