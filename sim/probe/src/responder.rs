//! The topo responder: a small process per node that answers UDP and TCP probes on one port and
//! tells the sender which source address and port it observed (`TOPO <ip>:<port>\n`).
//!
//! One-shot `topo check` runs open their listeners in-process instead; responders are for
//! long-running labs and for applications (`nc -u node 7946` shows what the node sees). They are
//! real processes (the `topo __responder` hidden subcommand, run inside the node's namespace),
//! recorded under `<state_dir>/pids/<pid>` and killed by PID.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use topo_lab::probe::DEFAULT_PROBE_PORT;
use topo_plan::Plan;

use crate::{node, ns_thread_for, ProbeError};

/// Marker in pid records and the command line, so stop/gc kill only responders.
const MARK: &str = "topo responder";
const ARG: &str = "__responder";

#[derive(Debug, Clone)]
pub struct ResponderOpts {
    /// The `topo` executable (it has the hidden `__responder` subcommand).
    pub exe: PathBuf,
    pub port: u16,
    /// Nodes to start responders in; empty = every node.
    pub nodes: Vec<String>,
}

impl ResponderOpts {
    pub fn new(exe: PathBuf) -> Self {
        ResponderOpts { exe, port: DEFAULT_PROBE_PORT, nodes: Vec::new() }
    }
}

fn line_for(peer: SocketAddr) -> String {
    format!("TOPO {peer}\n")
}

/// Serve forever in the calling process's network namespace: UDP datagrams are answered with
/// the observed source line followed by the datagram; TCP connections get the line, then are
/// closed after the peer stops sending (at most 1 s).
pub fn run_responder(port: u16) -> io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        let any = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port);
        let udp = tokio::net::UdpSocket::bind(any).await?;
        let tcp = tokio::net::TcpListener::bind(any).await?;
        let udp_task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            loop {
                let Ok((len, peer)) = udp.recv_from(&mut buf).await else { continue };
                let mut out = line_for(peer).into_bytes();
                out.extend_from_slice(&buf[..len.min(1024)]);
                let _ = udp.send_to(&out, peer).await;
            }
        });
        loop {
            let Ok((mut conn, peer)) = tcp.accept().await else { continue };
            tokio::spawn(async move {
                let _ = conn.write_all(line_for(peer).as_bytes()).await;
                let mut sink = [0u8; 512];
                let _ = tokio::time::timeout(Duration::from_secs(1), async {
                    while let Ok(n) = conn.read(&mut sink).await {
                        if n == 0 {
                            break;
                        }
                    }
                })
                .await;
            });
            if udp_task.is_finished() {
                return Err(io::Error::other("UDP responder stopped"));
            }
        }
    })
}

/// Start one responder process per node (all nodes unless `opts.nodes` names some), record each
/// under `<state_dir>/pids/<pid>`, and wait until each accepts TCP connections on its port.
/// Returns (node, pid) pairs. On failure, the ones already started are stopped.
pub fn start_responders(
    plan: &Plan,
    state_dir: &Path,
    opts: &ResponderOpts,
) -> Result<Vec<(String, u32)>, ProbeError> {
    let nodes: Vec<String> = if opts.nodes.is_empty() {
        plan.nodes.iter().map(|n| n.name.clone()).collect()
    } else {
        opts.nodes.clone()
    };
    let pids_dir = state_dir.join("pids");
    std::fs::create_dir_all(&pids_dir)
        .map_err(|e| ProbeError::io(format!("create {}", pids_dir.display()), e))?;
    let mut started: Vec<(String, u32)> = Vec::new();
    let res = (|| {
        for name in &nodes {
            let n = node(plan, name)?;
            let ns = topo_netns::Netns::open(&n.netns)?;
            let log_dir = state_dir.join("nodes").join(name);
            std::fs::create_dir_all(&log_dir)
                .map_err(|e| ProbeError::io(format!("create {}", log_dir.display()), e))?;
            let log = std::fs::File::create(log_dir.join("responder.log"))
                .map_err(|e| ProbeError::io("create responder log", e))?;
            let log2 = log.try_clone().map_err(|e| ProbeError::io("dup responder log", e))?;
            let mut cmd = Command::new(&opts.exe);
            cmd.arg(ARG).arg("--port").arg(opts.port.to_string());
            cmd.stdin(Stdio::null()).stdout(log).stderr(log2);
            topo_netns::command_in(&mut cmd, &ns, None)
                .map_err(|e| ProbeError::io(format!("{name}: prepare responder"), e))?;
            let child = cmd
                .spawn()
                .map_err(|e| ProbeError::io(format!("{name}: start {}", opts.exe.display()), e))?;
            let pid = child.id();
            std::fs::write(pids_dir.join(pid.to_string()), format!("{name} {MARK} port {}\n", opts.port))
                .map_err(|e| ProbeError::io("record responder pid", e))?;
            started.push((name.clone(), pid));
        }
        wait_listening(plan, &nodes, opts.port, Duration::from_secs(5))
    })();
    match res {
        Ok(()) => Ok(started),
        Err(e) => {
            let _ = stop_responders(state_dir);
            Err(e)
        }
    }
}

fn wait_listening(plan: &Plan, nodes: &[String], port: u16, timeout: Duration) -> Result<(), ProbeError> {
    let names: Vec<&str> = nodes.iter().map(String::as_str).collect();
    let nst = ns_thread_for(plan, &names)?;
    let start = Instant::now();
    for (i, name) in nodes.iter().enumerate() {
        loop {
            let up = nst
                .run(i, move || {
                    Ok(std::net::TcpStream::connect_timeout(
                        &SocketAddrV4::new(Ipv4Addr::LOCALHOST, port).into(),
                        Duration::from_millis(100),
                    )
                    .is_ok())
                })
                .unwrap_or(false);
            if up {
                break;
            }
            if start.elapsed() > timeout {
                return Err(ProbeError::Invalid(format!(
                    "responder in {name} does not listen on port {port} after {timeout:?} (see nodes/{name}/responder.log)"
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    Ok(())
}

fn is_responder(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| c.split(|b| *b == 0).any(|a| a == ARG.as_bytes()))
}

fn kill(pid: i32) -> io::Result<()> {
    use nix::sys::signal::{kill as nkill, Signal};
    use nix::unistd::Pid;
    match nkill(Pid::from_raw(pid), Signal::SIGKILL) {
        Ok(()) | Err(nix::Error::ESRCH) => {}
        Err(e) => return Err(io::Error::from_raw_os_error(e as i32)),
    }
    // Reap it when it is our child; otherwise init does.
    let _ = nix::sys::wait::waitpid(Pid::from_raw(pid), None);
    Ok(())
}

/// Kill every responder recorded under `<state_dir>/pids` (checking the PID still runs a
/// responder) and remove the records. Collects all errors.
pub fn stop_responders(state_dir: &Path) -> Result<(), Vec<ProbeError>> {
    let dir = state_dir.join("pids");
    let mut errs = Vec::new();
    let Ok(rd) = std::fs::read_dir(&dir) else { return Ok(()) };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let Ok(text) = std::fs::read_to_string(e.path()) else { continue };
        if !text.contains(MARK) {
            continue;
        }
        if is_responder(pid) {
            if let Err(err) = kill(pid) {
                errs.push(ProbeError::io(format!("kill responder {pid}"), err));
                continue;
            }
        }
        if let Err(err) = std::fs::remove_file(e.path()) {
            errs.push(ProbeError::io(format!("remove {}", e.path().display()), err));
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs)
    }
}

/// Kill responders left in the node namespaces of `lab` (`topo-<lab>.*`), from names only.
/// Returns how many were killed.
pub fn gc_responders(lab: &str) -> usize {
    let prefix = format!("topo-{lab}.");
    let mut killed = 0;
    for name in topo_netns::list().unwrap_or_default().into_iter().filter(|n| n.starts_with(&prefix)) {
        let Ok(ns) = topo_netns::Netns::open(&name) else { continue };
        let Ok(inode) = ns.inode() else { continue };
        for pid in topo_netns::pids_in_netns(inode) {
            if is_responder(pid) && kill(pid).is_ok() {
                killed += 1;
            }
        }
    }
    killed
}
