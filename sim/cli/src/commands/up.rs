//! `topo up FILE`: build a lab from a topology file.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use topo_kernel::{KernelError, Progress, SourceInfo, UpOpts};

use crate::exit_code;

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// The topology file.
    pub file: PathBuf,
    /// Seconds to wait for another topo process holding the lab's lock.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub wait: u64,
    /// Also start a probe responder process in every node (answers UDP/TCP probes on
    /// applications' ports for `topo check`).
    #[arg(long)]
    pub responders: bool,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Print a kernel error and map it to an exit code.
pub(crate) fn fail(e: &KernelError) -> i32 {
    eprintln!("error: {e}");
    if e.is_locked() {
        exit_code::LOCKED
    } else if e.is_interrupted() {
        exit_code::INTERRUPTED
    } else if e.is_invalid_input() {
        if let KernelError::Spec(d) = e {
            eprint!("{}", topo_spec::render(d, std::io::stderr().is_terminal()));
        }
        exit_code::INVALID_INPUT
    } else {
        exit_code::LAB_ERROR
    }
}

/// Exit early unless root: building labs needs CAP_NET_ADMIN and CAP_SYS_ADMIN.
pub(crate) fn need_root(cmd: &str) -> Result<(), i32> {
    if topo_kernel::is_root() {
        Ok(())
    } else {
        eprintln!("error: `topo {cmd}` needs root (network namespaces, netlink, mounts); run it with sudo");
        Err(exit_code::NEED_ROOT)
    }
}

pub fn run(args: &UpArgs) -> i32 {
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let plan = match topo_plan::plan_file(&args.file) {
        Ok(p) => p,
        Err(d) => {
            eprint!("{}", topo_spec::render(&d, color));
            return exit_code::INVALID_INPUT;
        }
    };
    if let Err(code) = need_root("up") {
        return code;
    }
    let source = match SourceInfo::from_file(&args.file) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: read {}: {e}", args.file.display());
            return exit_code::INVALID_INPUT;
        }
    };
    if let Err(e) = topo_kernel::interrupt::install() {
        tracing::warn!("cannot catch Ctrl-C ({e}); an interrupted up may need `topo gc`");
    }
    let progress = progress_reporter(&plan.lab);
    let opts = UpOpts {
        lock_wait: Duration::from_secs(args.wait),
        progress: Some(progress.callback()),
        responder_exe: if args.responders { std::env::current_exe().ok() } else { None },
    };
    let result = topo_kernel::up(&plan, &source, &opts);
    progress.finish();
    match result {
        Ok(r) => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
            } else if r.unchanged {
                println!("lab {} is already up from this file (nothing to do)", r.lab);
            } else {
                println!(
                    "lab {} up: {} nodes, {} links, {} networks in {:.3} s",
                    r.lab,
                    r.nodes,
                    r.links,
                    r.networks,
                    r.elapsed.as_secs_f64()
                );
            }
            exit_code::OK
        }
        Err(e) => fail(&e),
    }
}

/// A progress bar when stderr is a terminal; one line per phase otherwise.
pub(crate) struct Reporter {
    bar: Option<indicatif::ProgressBar>,
    lab: String,
    last: Arc<Mutex<Option<&'static str>>>,
}

pub(crate) fn progress_reporter(lab: &str) -> Reporter {
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = indicatif::ProgressBar::new(0);
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} {msg}")
        {
            b.set_style(style.progress_chars("=> "));
        }
        b.set_prefix(lab.to_owned());
        b
    });
    Reporter { bar, lab: lab.to_owned(), last: Arc::new(Mutex::new(None)) }
}

impl Reporter {
    pub(crate) fn callback(&self) -> topo_kernel::ProgressFn {
        let bar = self.bar.clone();
        let lab = self.lab.clone();
        let last = Arc::clone(&self.last);
        Arc::new(move |p: &Progress| match (p, &bar) {
            (Progress::Phase { name, total }, Some(b)) => {
                b.set_message(*name);
                b.set_length(*total);
                b.set_position(0);
            }
            (Progress::Phase { name, total }, None) => {
                if let Ok(mut l) = last.lock() {
                    *l = Some(name);
                }
                if *total > 0 {
                    eprintln!("{lab}: {name} ({total})");
                } else {
                    eprintln!("{lab}: {name}");
                }
            }
            (Progress::Advance(n), Some(b)) => b.inc(*n),
            (Progress::Advance(_), None) => {}
        })
    }

    pub(crate) fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
