//! rtnetlink plumbing: sockets opened inside namespaces (on a dedicated thread). `up` drives them
//! synchronously in batches ([`SyncConn`]); `status` reads through a tokio connection ([`Conn`]).

use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};

use futures::StreamExt;
use rtnetlink::packet_core::{
    NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST,
};
use rtnetlink::packet_route::link::LinkMessage;
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

    /// Send a dump request and collect the replies.
    pub fn dump(
        &mut self,
        msg: RouteNetlinkMessage,
    ) -> impl Future<Output = Result<Vec<RouteNetlinkMessage>, KernelError>> + use<> {
        let mut req = NetlinkMessage::from(msg);
        req.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
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

/// One request: what it does (for errors), the message, its netlink flags.
pub type Request = (String, RouteNetlinkMessage, u16);

/// Most bytes of requests written in one `sendmsg` (well below the default socket send buffer,
/// which bounds a netlink message batch).
const BATCH_BYTES: usize = 64 << 10;

/// A netlink socket of one namespace driven synchronously from one thread. Requests go out in
/// batches, many per `sendmsg`; only the last of a batch asks for an acknowledgement. The kernel
/// handles a batch's messages in order inside the `sendmsg` and reports every failure whether
/// or not it was asked to, so when the last acknowledgement arrives every error is already in.
pub struct SyncConn {
    pub ns: String,
    sock: Socket,
    seq: u32,
    out: Vec<u8>,
    inb: Vec<u8>,
}

impl SyncConn {
    /// Wrap a blocking socket from [`socket_here`].
    pub fn new(ns: &str, fd: OwnedFd) -> SyncConn {
        // SAFETY: `fd` is a valid netlink socket we own; from_raw_fd takes ownership of it.
        let sock = unsafe { Socket::from_raw_fd(fd.into_raw_fd()) };
        // A safety net: the acknowledgement comes back within the sendmsg, so this never waits
        // in practice; a lost one fails instead of hanging `up`.
        let tv = libc::timeval { tv_sec: 30, tv_usec: 0 };
        // SAFETY: setsockopt on a valid fd with a pointer to a timeval and its size.
        unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                std::ptr::addr_of!(tv).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            );
        }
        SyncConn { ns: ns.to_owned(), sock, seq: 0, out: Vec::new(), inb: vec![0; 64 << 10] }
    }

    /// Carry out `reqs` in order. Returns every failure (a failed request does not stop the
    /// ones after it, like the kernel).
    pub fn run(&mut self, reqs: &[Request]) -> Vec<KernelError> {
        let mut errors = Vec::new();
        let mut start = 0;
        while start < reqs.len() {
            let end = self.fill(reqs, start);
            if let Err(e) = self.exchange(reqs, start, end, &mut errors) {
                errors.push(e);
                break;
            }
            start = end;
        }
        // Replies to requests of a failed exchange must not be taken for later ones.
        self.seq = self.seq.wrapping_add(reqs.len() as u32 + 1);
        errors
    }

    /// Every link of the namespace (an RTM_GETLINK dump).
    pub fn dump_links(&mut self) -> Result<Vec<LinkMessage>, KernelError> {
        let fail =
            |what: &str, msg: String| KernelError::Netlink { ns: self.ns.clone(), what: what.into(), msg };
        let mut req = NetlinkMessage::from(RouteNetlinkMessage::GetLink(LinkMessage::default()));
        req.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        self.seq = self.seq.wrapping_add(1);
        req.header.sequence_number = self.seq;
        req.finalize();
        self.out.clear();
        self.out.resize(req.buffer_len(), 0);
        req.serialize(&mut self.out);
        self.sock.send(&self.out, 0).map_err(|e| fail("send a link dump request", e.to_string()))?;
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        let mut links = Vec::new();
        loop {
            let n = self
                .sock
                .recv(&mut &mut self.inb[..], 0)
                .map_err(|e| fail("receive a link dump", e.to_string()))?;
            for m in messages(&self.inb[..n]) {
                let m = m.map_err(|e| fail("parse a link dump", e))?;
                if m.header.sequence_number != seq {
                    continue; // a late reply to something earlier
                }
                match m.payload {
                    NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(l)) => links.push(l),
                    NetlinkPayload::Done(_) => return Ok(links),
                    NetlinkPayload::Error(e) if e.code.is_some() => {
                        return Err(fail("link dump", e.to_io().to_string()))
                    }
                    _ => {}
                }
            }
        }
    }

    /// Serialize requests from `start` into `self.out` up to BATCH_BYTES (at least one); the
    /// last gets NLM_F_ACK. Sequence numbers are `self.seq + index`. Returns the end index.
    fn fill(&mut self, reqs: &[Request], start: usize) -> usize {
        self.out.clear();
        let mut end = start;
        let mut msgs = Vec::new();
        while end < reqs.len() {
            let (_, msg, flags) = &reqs[end];
            let mut m = NetlinkMessage::from(msg.clone());
            m.header.flags = flags & !NLM_F_ACK;
            m.header.sequence_number = self.seq.wrapping_add(end as u32);
            m.finalize();
            let len = m.buffer_len();
            if end > start && self.out.len() + len > BATCH_BYTES {
                break;
            }
            let at = self.out.len();
            self.out.resize(at + len, 0);
            msgs.push((at, m));
            end += 1;
        }
        let last = msgs.len() - 1;
        for (i, (at, m)) in msgs.iter_mut().enumerate() {
            if i == last {
                m.header.flags |= NLM_F_ACK;
            }
            let len = m.buffer_len();
            m.serialize(&mut self.out[*at..*at + len]);
        }
        end
    }

    fn exchange(
        &mut self,
        reqs: &[Request],
        start: usize,
        end: usize,
        errors: &mut Vec<KernelError>,
    ) -> Result<(), KernelError> {
        let fail =
            |what: &str, msg: String| KernelError::Netlink { ns: self.ns.clone(), what: what.into(), msg };
        self.sock.send(&self.out, 0).map_err(|e| fail("send requests", e.to_string()))?;
        let base = self.seq;
        let last = base.wrapping_add(end as u32 - 1);
        loop {
            let n = self.sock.recv(&mut &mut self.inb[..], 0).map_err(|e| {
                let msg = if e.kind() == io::ErrorKind::WouldBlock {
                    "no acknowledgement within 30 s".to_owned()
                } else {
                    e.to_string()
                };
                fail("receive acknowledgements", msg)
            })?;
            for m in messages(&self.inb[..n]) {
                let m = m.map_err(|e| fail("parse a reply", e))?;
                let seq = m.header.sequence_number;
                let idx = seq.wrapping_sub(base) as usize;
                if let NetlinkPayload::Error(e) = m.payload {
                    if let Some(code) = e.code {
                        let what =
                            reqs.get(idx).filter(|_| idx >= start && idx < end).map_or("?", |r| r.0.as_str());
                        errors.push(KernelError::Netlink {
                            ns: self.ns.clone(),
                            what: what.to_owned(),
                            msg: io::Error::from_raw_os_error(-code.get()).to_string(),
                        });
                    }
                    if seq == last {
                        return Ok(());
                    }
                }
            }
        }
    }
}

/// The netlink messages in one received datagram, in order (a truncated tail is ignored).
fn messages(buf: &[u8]) -> impl Iterator<Item = Result<NetlinkMessage<RouteNetlinkMessage>, String>> + '_ {
    let mut off = 0;
    std::iter::from_fn(move || {
        let head = buf.get(off..off + 4)?;
        let len = u32::from_ne_bytes([head[0], head[1], head[2], head[3]]) as usize;
        if len < 16 || off + len > buf.len() {
            return None;
        }
        let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[off..off + len])
            .map_err(|e| e.to_string());
        off += (len + 3) & !3;
        Some(m)
    })
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use rtnetlink::packet_route::address::AddressMessage;
    use rtnetlink::{AddressMessageBuilder, LinkUnspec};

    use super::*;

    fn addr(index: u32, ip: Ipv4Addr) -> RouteNetlinkMessage {
        let m: AddressMessage = AddressMessageBuilder::<Ipv4Addr>::new().index(index).address(ip, 32).build();
        RouteNetlinkMessage::NewAddress(m)
    }

    struct Gone(String);
    impl Drop for Gone {
        fn drop(&mut self) {
            let _ = topo_netns::delete(&self.0);
        }
    }

    /// Only the last request of a batch asks for an acknowledgement, yet a failure in the middle
    /// is reported for the request that failed, the requests after it still happen, and batches
    /// larger than one `sendmsg` keep their order.
    #[test]
    fn batch_reports_the_failed_request_and_goes_on() {
        if !topo_lab::testkit::require_root("topo-kernel::netlink::batch") {
            return;
        }
        let name = topo_lab::testkit::unique_lab("tnl");
        let ns = topo_netns::Netns::create(&name).expect("namespace");
        let _gone = Gone(name.clone());
        let sock = ns.run(socket_here).expect("enter").expect("socket");
        let mut conn = SyncConn::new(&name, sock);
        let up: Request = (
            "set lo up".into(),
            RouteNetlinkMessage::SetLink(LinkUnspec::new_with_index(1).up().build()),
            CHANGE,
        );
        let mut reqs = vec![up];
        reqs.push(("addr on a missing link".into(), addr(4242, Ipv4Addr::new(10, 1, 1, 1)), CREATE));
        // Enough addresses to need several sendmsg calls.
        for i in 0..3000u32 {
            let ip = Ipv4Addr::from(0x0a02_0000 + i);
            reqs.push((format!("add {ip}"), addr(1, ip), CREATE));
        }
        // The same address again: EEXIST, reported for this request.
        reqs.push(("duplicate".into(), addr(1, Ipv4Addr::new(10, 2, 0, 7)), CREATE));
        let errors = conn.run(&reqs);
        let texts: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(texts.len(), 2, "{texts:?}");
        assert!(texts[0].contains("addr on a missing link"), "{texts:?}");
        assert!(texts[1].contains("duplicate") && texts[1].contains("exists"), "{texts:?}");
        // Everything else was applied.
        let out = std::process::Command::new("ip")
            .args(["-n", &name, "-4", "-o", "addr", "show", "dev", "lo"])
            .output()
            .expect("ip");
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(text.matches("10.2.").count(), 3000, "{}", text.lines().count());
        // The connection stays usable after a failed batch.
        assert!(conn.run(&reqs[reqs.len() - 1..]).len() == 1);
        assert!(conn.run(&[("one more".into(), addr(1, Ipv4Addr::new(10, 3, 0, 1)), CREATE)]).is_empty());
    }
}
