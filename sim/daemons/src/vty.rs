//! A minimal client for FRR's vtysh socket protocol (what `vtysh` itself speaks): send a command
//! terminated by a NUL byte; the daemon answers with the output followed by three NUL bytes and
//! a status byte (0 = success). Talking to the socket directly avoids a `vtysh` process per query
//! (~20 ms each) and lets every read have a deadline, so a paused daemon cannot hang the caller.

use std::io::{self, Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Output of one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VtyReply {
    pub text: String,
    /// FRR's `CMD_*` code: 0 is success.
    pub status: u8,
}

/// Run one command on the daemon listening at `socket` (e.g. `/var/run/frr/<ps>/ospfd.vty`), in
/// enable mode like vtysh (some `show` commands, e.g. bfdd's, exist only there).
pub fn command(socket: &Path, cmd: &str, timeout: Duration) -> io::Result<VtyReply> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let enable = exchange(&mut s, "enable")?;
    if enable.status != 0 {
        return Err(io::Error::other(format!("`enable` refused: {}", enable.text.trim())));
    }
    exchange(&mut s, cmd)
}

fn exchange(s: &mut UnixStream, cmd: &str) -> io::Result<VtyReply> {
    let mut msg = Vec::with_capacity(cmd.len() + 1);
    msg.extend_from_slice(cmd.as_bytes());
    msg.push(0);
    s.write_all(&msg)?;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "vty closed before the end marker"));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(reply) = parse_reply(&buf) {
            return Ok(reply);
        }
    }
}

/// A complete reply ends with `\0\0\0<status>`.
fn parse_reply(buf: &[u8]) -> Option<VtyReply> {
    let n = buf.len();
    if n < 4 || buf[n - 4..n - 1] != [0, 0, 0] {
        return None;
    }
    Some(VtyReply { text: String::from_utf8_lossy(&buf[..n - 4]).into_owned(), status: buf[n - 1] })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_complete_replies_only() {
        assert_eq!(parse_reply(b"{}\n"), None);
        assert_eq!(parse_reply(b"{}\n\0\0"), None);
        assert_eq!(parse_reply(b"{}\n\0\0\0\0"), Some(VtyReply { text: "{}\n".into(), status: 0 }));
        assert_eq!(parse_reply(b"% Unknown\n\0\0\0\x02").map(|r| r.status), Some(2));
        assert_eq!(parse_reply(b"\0\0\0\0"), Some(VtyReply { text: String::new(), status: 0 }));
    }

    #[test]
    fn talks_to_a_fake_daemon() {
        let dir = std::env::temp_dir().join(format!("topo-vty-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("x.vty");
        let _ = std::fs::remove_file(&sock);
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let server = std::thread::spawn(move || {
            let (mut c, _) = listener.accept().unwrap();
            let read_cmd = |c: &mut UnixStream| {
                let mut got = Vec::new();
                let mut b = [0u8; 1];
                while c.read(&mut b).unwrap() == 1 && b[0] != 0 {
                    got.push(b[0]);
                }
                String::from_utf8(got).unwrap()
            };
            let first = read_cmd(&mut c);
            c.write_all(b"\0\0\0\0").unwrap();
            let second = read_cmd(&mut c);
            // Split the reply to exercise reassembly.
            c.write_all(b"hello ").unwrap();
            c.write_all(b"world\n\0\0").unwrap();
            c.write_all(b"\0\0").unwrap();
            vec![first, second]
        });
        let r = command(&sock, "show version", Duration::from_secs(5)).unwrap();
        assert_eq!(r, VtyReply { text: "hello world\n".into(), status: 0 });
        assert_eq!(server.join().unwrap(), ["enable", "show version"]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
