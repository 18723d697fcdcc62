//! rtnetlink plumbing: sockets opened inside namespaces (on a dedicated thread), driven from a
//! tokio runtime; requests are written in order and their acknowledgements awaited together, so
//! one namespace's work is pipelined and many namespaces proceed at once.

use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};

use futures::StreamExt;
use rtnetlink::packet_core::{
    NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST,
};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::sys::{protocols::NETLINK_ROUTE, Socket, TokioSocket};
use rtnetlink::Handle;

use crate::KernelError;

/// Flags of a request that creates something (fails if it exists).
pub const CREATE: u16 = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
/// Flags of a request that changes something.
pub const CHANGE: u16 = NLM_F_REQUEST | NLM_F_ACK;

/// A NETLINK_ROUTE socket bound to the namespace of the calling thread. Call it on a thread that
/// has entered the namespace.
pub fn socket_here() -> io::Result<OwnedFd> {
    let s = Socket::new(NETLINK_ROUTE)?;
    // Thousands of requests may be in flight on one socket: acknowledgements without the echoed
    // request (NETLINK_CAP_ACK), and a receive buffer beyond rmem_max (root may force it), so
    // none is dropped while the requests are still being written.
    let _ = s.set_cap_ack(true);
    let _ = s.set_rx_buf_sz(4 << 20);
    let size: libc::c_int = 8 << 20;
    // SAFETY: setsockopt on a valid fd with a pointer to a c_int and its size.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            std::ptr::addr_of!(size).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    // SAFETY: into_raw_fd hands over ownership of a valid, open fd.
    Ok(unsafe { OwnedFd::from_raw_fd(s.into_raw_fd()) })
}

/// An rtnetlink connection on a socket of one namespace.
pub struct Conn {
    pub ns: String,
    handle: Handle,
}

impl Conn {
    /// Wrap a socket from [`socket_here`]. Must run inside the tokio runtime (it registers the fd
    /// and spawns the connection task).
    pub fn new(ns: &str, fd: OwnedFd) -> io::Result<Conn> {
        let raw = fd.into_raw_fd();
        // The fd must be non-blocking before tokio registers it; set it here so the unsafe
        // constructor below cannot fail on that.
        // SAFETY: `raw` is a valid netlink socket fd we own; from_raw_fd takes ownership of it.
        let socket = unsafe { Socket::from_raw_fd(raw) };
        socket.set_non_blocking(true)?;
        let raw = socket.into_raw_fd();
        // SAFETY: as above; TokioSocket::from_raw_fd registers the fd with the current runtime.
        let socket = unsafe { TokioSocket::from_raw_fd(raw) };
        let (mut conn, handle, _) = rtnetlink::from_socket(socket);
        // We need the acknowledgement itself: a stream that just ends may be a dead connection.
        conn.set_forward_ack(true);
        tokio::spawn(conn);
        Ok(Conn { ns: ns.to_owned(), handle })
    }

    /// Queue `msg` now (requests go out in call order) and return a future of its acknowledgement.
    pub fn send(
        &mut self,
        what: String,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> impl Future<Output = Result<(), KernelError>> + use<> {
        let mut req = NetlinkMessage::from(msg);
        req.header.flags = flags;
        let ns = self.ns.clone();
        let stream = self.handle.request(req);
        async move {
            let mut stream = stream.map_err(|e| KernelError::Netlink {
                ns: ns.clone(),
                what: what.clone(),
                msg: e.to_string(),
            })?;
            while let Some(m) = stream.next().await {
                if let NetlinkPayload::Error(e) = m.payload {
                    return match e.code {
                        Some(_) => Err(KernelError::Netlink { ns, what, msg: e.to_io().to_string() }),
                        None => Ok(()),
                    };
                }
            }
            // The stream ended without an acknowledgement: the connection died.
            Err(KernelError::Netlink {
                ns,
                what,
                msg: "no acknowledgement (netlink connection closed)".into(),
            })
        }
    }

    /// Send a dump request and collect the replies.
    pub fn dump(
        &mut self,
        msg: RouteNetlinkMessage,
    ) -> impl Future<Output = Result<Vec<RouteNetlinkMessage>, KernelError>> + use<> {
        let mut req = NetlinkMessage::from(msg);
        req.header.flags = NLM_F_REQUEST | rtnetlink::packet_core::NLM_F_DUMP;
        let ns = self.ns.clone();
        let stream = self.handle.request(req);
        async move {
            let mut stream = stream.map_err(|e| KernelError::Netlink {
                ns: ns.clone(),
                what: "dump".into(),
                msg: e.to_string(),
            })?;
            let mut out = Vec::new();
            while let Some(m) = stream.next().await {
                match m.payload {
                    NetlinkPayload::InnerMessage(inner) => out.push(inner),
                    NetlinkPayload::Error(e) if e.code.is_some() => {
                        return Err(KernelError::Netlink {
                            ns,
                            what: "dump".into(),
                            msg: e.to_io().to_string(),
                        })
                    }
                    _ => {}
                }
            }
            Ok(out)
        }
    }
}

/// Await every future; return all errors (in order), not just the first.
pub async fn settle<F>(futs: Vec<F>) -> Vec<KernelError>
where
    F: Future<Output = Result<(), KernelError>>,
{
    futures::future::join_all(futs).await.into_iter().filter_map(Result::err).collect()
}

/// A single-threaded runtime: the work is syscalls under the kernel's RTNL lock, so more threads
/// would not help; sockets stay bound to their namespaces whichever thread drives them.
pub fn runtime() -> Result<tokio::runtime::Runtime, KernelError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| KernelError::io("start the netlink runtime", e))
}

/// Raise the soft limit on open files to the hard limit: a lab holds a namespace fd and a
/// netlink socket per node while it is built.
pub fn raise_fd_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid pointer to an rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &raw const lim);
        }
    }
}
