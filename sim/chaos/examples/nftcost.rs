//! What each kind of nftables transaction costs on this kernel, in fresh namespaces:
//! `cargo run -p topo-chaos --example nftcost --release` (root). Prints, per transaction kind,
//! the median and minimum (ms) of the time spent in sendmsg (the kernel runs the whole
//! transaction, commit included, in the sender's context), in reading the acks, and in closing
//! the socket.

#![allow(unsafe_code, clippy::unwrap_used, clippy::missing_panics_doc, clippy::too_many_lines)]

use std::ffi::CString;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nftnl::nftnl_sys as sys;
use nftnl::{nft_expr, Batch, Chain, FinalizedBatch, Hook, MsgType, Policy, ProtoFamily, Rule, Table};

#[derive(Clone, Copy)]
struct Times {
    send: Duration,
    acks: Duration,
    close: Duration,
}

fn send_keep(batch: &FinalizedBatch) -> Result<(mnl::Socket, Times), std::io::Error> {
    let socket = mnl::Socket::new(mnl::Bus::Netfilter)?;
    let portid = socket.portid();
    let t0 = Instant::now();
    socket.send_all(batch)?;
    let t1 = Instant::now();
    let mut buffer = vec![0; nftnl::nft_nlmsg_maxsize() as usize];
    let mut expected = batch.sequence_numbers();
    let mut err = None;
    while !expected.is_empty() {
        for message in socket.recv(&mut buffer[..])? {
            let message = message?;
            let Some(seq) = expected.next() else { break };
            if let Err(e) = mnl::cb_run(message, seq, portid) {
                err.get_or_insert(e);
            }
        }
        if err.is_some() {
            break;
        }
    }
    let t2 = Instant::now();
    if let Some(e) = err {
        return Err(e);
    }
    Ok((socket, Times { send: t1 - t0, acks: t2 - t1, close: Duration::ZERO }))
}

fn send(batch: &FinalizedBatch) -> Times {
    match send_keep(batch) {
        Ok((s, mut t)) => {
            let t2 = Instant::now();
            drop(s);
            t.close = t2.elapsed();
            t
        }
        Err(e) => {
            eprintln!("transaction failed: {e}");
            Times { send: Duration::ZERO, acks: Duration::ZERO, close: Duration::ZERO }
        }
    }
}

fn col(v: &[Times], f: fn(&Times) -> Duration) -> String {
    let mut d: Vec<Duration> = v.iter().map(f).collect();
    d.sort();
    format!("{:7.3} / {:7.3}", d[d.len() / 2].as_secs_f64() * 1e3, d[0].as_secs_f64() * 1e3)
}

fn report(name: &str, v: &[Times]) {
    println!(
        "{name:44} send {}  acks {}  close {}",
        col(v, |t| t.send),
        col(v, |t| t.acks),
        col(v, |t| t.close)
    );
}

/// NEWTABLE with flags (e.g. dormant), which nftnl's Table does not expose.
struct TableFlags<'a>(&'a std::ffi::CStr, u32);

// SAFETY: writes one small message into a buffer sized for the largest netlink message.
unsafe impl nftnl::NlMsg for TableFlags<'_> {
    unsafe fn write(&self, buf: *mut std::ffi::c_void, seq: u32, _msg_type: MsgType) {
        // SAFETY: buf is large enough (NlMsg contract); the table object is freed after use.
        unsafe {
            let t = sys::nftnl_table_alloc();
            sys::nftnl_table_set_str(t, sys::NFTNL_TABLE_NAME as u16, self.0.as_ptr());
            sys::nftnl_table_set_u32(t, sys::NFTNL_TABLE_FLAGS as u16, self.1);
            let h = sys::nftnl_nlmsg_build_hdr(
                buf.cast(),
                libc::NFT_MSG_NEWTABLE as u16,
                libc::NFPROTO_INET as u16,
                libc::NLM_F_ACK as u16,
                seq,
            );
            sys::nftnl_table_nlmsg_build_payload(h, t);
            sys::nftnl_table_free(t);
        }
    }
}

struct Ns {
    name: String,
}
impl Drop for Ns {
    fn drop(&mut self) {
        let _ = topo_netns::delete(&self.name);
    }
}

fn main() {
    let reps: usize = std::env::var("REPS").ok().and_then(|s| s.parse().ok()).unwrap_or(15);
    let a = Ns { name: format!("nftcost-a{}", std::process::id()) };
    let b = Ns { name: format!("nftcost-b{}", std::process::id()) };
    let na = topo_netns::Netns::create(&a.name).unwrap();
    let nb = topo_netns::Netns::create(&b.name).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::setns(na.fd().as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            run(reps, &nb);
        });
    });
}

fn base(inet: &Table) -> Chain<'_> {
    let mut input = Chain::new(c"input", inet);
    input.set_hook(Hook::In, -10);
    input.set_policy(Policy::Accept);
    input
}

fn meminfo(key: &str) -> i64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// Kernel memory of 100 dormant generations of 250 sources each (`MEM=1`).
fn memory() {
    let v4: Vec<Ipv4Addr> = (0..250u32).map(|i| Ipv4Addr::from(0x0a4e_0000 + i)).collect();
    let (slab0, avail0) = (meminfo("Slab:"), meminfo("MemAvailable:"));
    for g in 0..100 {
        let mut b = Batch::new();
        topo_chaos::gens::add_create(&mut b, g, &v4, &[]);
        topo_chaos::gens::add_retire(&mut b, g);
        topo_chaos::nft::send(&b.finalize()).unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));
    let (slab1, avail1) = (meminfo("Slab:"), meminfo("MemAvailable:"));
    println!(
        "100 dormant generations x 250 sources: Slab +{} kB, MemAvailable -{} kB (noisy: shared machine)",
        slab1 - slab0,
        avail0 - avail1
    );
}

fn run(reps: usize, other: &topo_netns::Netns) {
    if std::env::var_os("MEM").is_some() {
        memory();
        return;
    }
    let inet = Table::new(c"t", ProtoFamily::Inet);
    let input = base(&inet);
    let c2 = Chain::new(c"c2", &inet);
    let set4 = nftnl::set::Set::<Ipv4Addr>::new_named(c"s4", 1, &inet, ProtoFamily::Inet);
    let one = |f: &dyn Fn(&mut Batch)| {
        let mut b = Batch::new();
        f(&mut b);
        send(&b.finalize())
    };
    let setup = |b: &mut Batch| {
        b.add(&inet, MsgType::Add);
        b.add(&input, MsgType::Add);
        b.add(&c2, MsgType::Add);
        b.add(&set4, MsgType::Add);
        let mut r = Rule::new(&input);
        r.add_expr(&nft_expr!(payload ipv4 saddr));
        r.add_expr(&nft_expr!(lookup & set4));
        r.add_expr(&nft_expr!(verdict drop));
        b.add(&r, MsgType::Add);
    };
    one(&setup);
    let k = std::cell::Cell::new(0u32);
    let next_addr = || {
        k.set(k.get() + 1);
        Ipv4Addr::from(0x0a00_0000 + k.get())
    };
    let elems = |a: Ipv4Addr| {
        let mut s = nftnl::set::Set::<Ipv4Addr>::new_named(c"s4", 1, &inet, ProtoFamily::Inet);
        s.add(&a);
        s
    };
    let settle = || std::thread::sleep(Duration::from_millis(40));

    let v: Vec<Times> = (0..reps).map(|_| one(&|_| {})).collect();
    report("empty batch", &v);
    let v: Vec<Times> = (0..reps).map(|_| one(&|b| b.add(&inet, MsgType::Add))).collect();
    report("table add (exists: no-op)", &v);
    let v: Vec<Times> = (0..reps)
        .map(|_| {
            let s = elems(next_addr());
            one(&|b| b.add_iter(s.elems_iter(), MsgType::Add))
        })
        .collect();
    report("set element add", &v);
    let v: Vec<Times> = (0..reps)
        .map(|_| {
            let s = elems(next_addr());
            one(&|b| b.add_iter(s.elems_iter(), MsgType::Add));
            settle();
            one(&|b| b.add_iter(s.elems_iter(), MsgType::Del))
        })
        .collect();
    report("set element delete", &v);
    let (mut adds, mut dels) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        adds.push(one(&|b| {
            let mut r = Rule::new(&c2);
            r.add_expr(&nft_expr!(counter));
            b.add(&r, MsgType::Add);
        }));
        dels.push(one(&|b| b.add(&Rule::new(&c2), MsgType::Del)));
        settle();
    }
    report("rule append (regular chain)", &adds);
    report("rule flush (regular chain)", &dels);
    let v: Vec<Times> = (0..reps)
        .map(|_| {
            one(&|b| {
                let mut r = Rule::new(&input);
                r.add_expr(&nft_expr!(counter));
                b.add(&r, MsgType::Add);
            })
        })
        .collect();
    report("rule append (base chain)", &v);
    let v: Vec<Times> = (0..reps)
        .map(|i| {
            let t = one(&|b| {
                let mut c = base(&inet);
                c.set_policy(if i % 2 == 0 { Policy::Drop } else { Policy::Accept });
                b.add(&c, MsgType::Add);
            });
            settle();
            t
        })
        .collect();
    one(&|b| b.add(&base(&inet), MsgType::Add));
    report("base chain policy update", &v);
    let (mut adds, mut dels) = (Vec::new(), Vec::new());
    for i in 0..reps {
        let n = CString::new(format!("x{i}")).unwrap();
        adds.push(one(&|b| b.add(&Chain::new(&n, &inet), MsgType::Add)));
        dels.push(one(&|b| b.add(&Chain::new(&n, &inet), MsgType::Del)));
        settle();
    }
    report("regular chain add", &adds);
    report("regular chain delete", &dels);
    let (mut adds, mut dels) = (Vec::new(), Vec::new());
    for i in 0..reps {
        let n = CString::new(format!("s{i}")).unwrap();
        let s = nftnl::set::Set::<Ipv4Addr>::new_named(&n, 100, &inet, ProtoFamily::Inet);
        adds.push(one(&|b| b.add(&s, MsgType::Add)));
        dels.push(one(&|b| b.add(&s, MsgType::Del)));
        settle();
    }
    report("set add", &adds);
    report("set delete", &dels);
    let (mut adds, mut dorm, mut wake, mut dels) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..reps {
        let n = CString::new(format!("tt{i}")).unwrap();
        let t = Table::new(&n, ProtoFamily::Inet);
        let c = base(&t);
        let s4 = nftnl::set::Set::<Ipv4Addr>::new_named(c"d4", 7, &t, ProtoFamily::Inet);
        adds.push(one(&|b| {
            b.add(&t, MsgType::Add);
            b.add(&c, MsgType::Add);
            b.add(&s4, MsgType::Add);
            let mut r = Rule::new(&c);
            r.add_expr(&nft_expr!(payload ipv4 saddr));
            r.add_expr(&nft_expr!(lookup & s4));
            r.add_expr(&nft_expr!(verdict drop));
            b.add(&r, MsgType::Add);
        }));
        dorm.push(one(&|b| b.add(&TableFlags(&n, 1), MsgType::Add)));
        settle();
        wake.push(one(&|b| b.add(&TableFlags(&n, 0), MsgType::Add)));
        settle();
        dels.push(one(&|b| b.add(&t, MsgType::Del)));
        settle();
    }
    report("table+base chain+set+rule add", &adds);
    report("table dormant", &dorm);
    report("table wake", &wake);
    report("table delete", &dels);

    // Where does the wait land when two sockets are involved?
    let (mut del, mut add_same, mut add_other) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..reps {
        let s = elems(next_addr());
        one(&|b| b.add_iter(s.elems_iter(), MsgType::Add));
        settle();
        // delete but keep the socket open
        let mut b = Batch::new();
        b.add_iter(s.elems_iter(), MsgType::Del);
        let (sock, t) = send_keep(&b.finalize()).unwrap();
        del.push(t);
        // another socket, same namespace, add-only: does its close wait?
        let s2 = elems(next_addr());
        add_same.push(one(&|b| b.add_iter(s2.elems_iter(), MsgType::Add)));
        // another namespace, add-only
        add_other.push(
            other
                .run(|| {
                    let t = Table::new(c"o", ProtoFamily::Inet);
                    let mut b = Batch::new();
                    b.add(&t, MsgType::Add);
                    send(&b.finalize())
                })
                .unwrap(),
        );
        drop(sock);
        settle();
    }
    report("element delete, socket kept open", &del);
    report("  then add on a 2nd socket, same netns", &add_same);
    report("  then add in another netns", &add_other);

    // The partition generation steps as topo-chaos builds them (50 IPv4 sources).
    let v4: Vec<Ipv4Addr> = (0..50u32).map(|i| Ipv4Addr::from(0x0a4d_0000 + i)).collect();
    let (mut build, mut create, mut retire, mut both) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..reps as u64 {
        let t = Instant::now();
        let mut b = topo_chaos::nft::batch();
        topo_chaos::gens::add_create(&mut b, 1000 + 2 * i, &v4, &[]);
        let f = b.finalize();
        build.push(t.elapsed());
        let t = Instant::now();
        topo_chaos::nft::send(&f).unwrap();
        create.push(t.elapsed());
        let t = Instant::now();
        let mut b = topo_chaos::nft::batch();
        topo_chaos::gens::add_create(&mut b, 1001 + 2 * i, &v4, &[]);
        topo_chaos::gens::add_retire(&mut b, 1000 + 2 * i);
        topo_chaos::nft::send(&b.finalize()).unwrap();
        both.push(t.elapsed());
        let t = Instant::now();
        let mut b = topo_chaos::nft::batch();
        topo_chaos::gens::add_retire(&mut b, 1001 + 2 * i);
        topo_chaos::nft::send(&b.finalize()).unwrap();
        retire.push(t.elapsed());
    }
    let med = |mut v: Vec<Duration>| {
        v.sort();
        format!("{:.3} / {:.3}", v[v.len() / 2].as_secs_f64() * 1e3, v[0].as_secs_f64() * 1e3)
    };
    let (mut empty, mut fill) = (Vec::new(), Vec::new());
    for i in 0..reps as u64 {
        let g = 7000 + i;
        let t = Instant::now();
        let mut b = topo_chaos::nft::batch();
        topo_chaos::gens::add_create(&mut b, g, &[], &[]);
        topo_chaos::nft::send(&b.finalize()).unwrap();
        empty.push(t.elapsed());
        let name = topo_chaos::gens::table_name(g);
        let table = Table::new(&name, ProtoFamily::Inet);
        let mut x = nftnl::set::Set::<Ipv4Addr>::new_named(c"x", 9, &table, ProtoFamily::Inet);
        let mut b = topo_chaos::nft::batch();
        b.add(&x, MsgType::Add);
        topo_chaos::nft::send(&b.finalize()).unwrap();
        let t = Instant::now();
        for a in &v4 {
            x.add(a);
        }
        let mut b = topo_chaos::nft::batch();
        b.add_iter(x.elems_iter(), MsgType::Add);
        topo_chaos::nft::send(&b.finalize()).unwrap();
        fill.push(t.elapsed());
    }
    println!("{:44} {}", "generation create, no sources", med(empty));
    println!("{:44} {}", "50 elements into an existing (resizable) set", med(fill));
    println!("{:44} {}", "generation batch build (50 sources)", med(build));
    println!("{:44} {}", "generation create, send..close", med(create));
    println!("{:44} {}", "generation create + retire old", med(both));
    println!("{:44} {}", "generation retire (heal)", med(retire));
    let mut sysctl = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        let _ = topo_netns::read_sysctl("net.netfilter.nf_conntrack_count");
        sysctl.push(t.elapsed());
    }
    println!("{:44} {}", "read nf_conntrack_count", med(sysctl));

    // Socket and namespace mechanics.
    let mut opens = Vec::new();
    let mut dumps = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        let s = mnl::Socket::new(mnl::Bus::Netfilter).unwrap();
        opens.push(t.elapsed());
        drop(s);
        let t = Instant::now();
        let _ = topo_chaos::nft::inet_table_exists().unwrap();
        dumps.push(t.elapsed());
    }
    println!("{:44} {}", "netfilter socket open+close", med(opens));
    println!("{:44} {}", "GETTABLE dump (own socket)", med(dumps));
    let mut setns = Vec::new();
    let mut opens = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        let h = topo_netns::Netns::open(other.name()).unwrap();
        opens.push(t.elapsed());
        let t = Instant::now();
        std::thread::scope(|s| {
            s.spawn(|| nix::sched::setns(h.fd().as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap())
                .join()
                .unwrap();
        });
        setns.push(t.elapsed());
    }
    println!("{:44} {}", "netns open (by name)", med(opens));
    println!("{:44} {}", "thread spawn+setns+join", med(setns));
}
