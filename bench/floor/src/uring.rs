//! The same responder on io_uring (`ferrowsgi-floor --uring HOST:PORT`): how far
//! a completion ring goes below the epoll loop's system calls on this kernel.
//!
//! One ring (single issuer, deferred task work), one multishot accept, and per
//! connection one receive in flight at a time. Each turn of the loop is one
//! `io_uring_enter` that submits every queued operation and waits for at least
//! one completion; all the completions there are then get handled. A receive
//! answers every complete head in its buffer with one send; a request with
//! `Connection: close` gets its answer sent with `MSG_MORE`, then a shutdown and
//! a close linked behind it, as the epoll responder does in three calls.

use std::io;
use std::os::raw::c_int;

use io_uring::{cqueue, opcode, squeue, types, IoUring};

use crate::{find, has_close, now_secs, response, set_nodelay};

const BUF: usize = 64 * 1024;
const ACCEPT: u64 = u64::MAX;
const RECV: u64 = 1;
const SEND: u64 = 2;
const CLOSE: u64 = 3;

struct Conn {
    fd: c_int,
    inbuf: Box<[u8]>,
    filled: usize,
    /// The answers a send in flight is writing; untouched until it completes.
    out: Vec<u8>,
    sent: usize,
    /// Answers made while a send was in flight.
    next: Vec<u8>,
    sending: bool,
    /// A receive is in flight (a connection closes only when none is).
    receiving: bool,
    close_after: bool,
    /// The peer closed or failed: close once the send in flight is done.
    dead: bool,
}

struct Ring {
    ring: IoUring,
}

impl Ring {
    fn push(&mut self, sqe: &squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: every buffer an entry points to lives in a boxed `Conn`
            // that is freed only after the entry's completion (or, for the
            // linked shutdown and close, holds no buffer at all).
            if unsafe { self.ring.submission().push(sqe) }.is_ok() {
                return Ok(());
            }
            self.ring.submit()?;
        }
    }
}

fn data(slot: usize, kind: u64) -> u64 {
    ((slot as u64) << 2) | kind
}

fn recv(r: &mut Ring, slot: usize, c: &mut Conn) -> io::Result<()> {
    let buf = c.inbuf[c.filled..].as_mut_ptr();
    let len = (BUF - c.filled) as u32;
    let sqe = opcode::Recv::new(types::Fd(c.fd), buf, len)
        .build()
        .user_data(data(slot, RECV));
    c.receiving = true;
    r.push(&sqe)
}

fn send(r: &mut Ring, slot: usize, c: &mut Conn) -> io::Result<()> {
    let rest = &c.out[c.sent..];
    let flags = if c.close_after { libc::MSG_MORE } else { 0 };
    let sqe = opcode::Send::new(types::Fd(c.fd), rest.as_ptr(), rest.len() as u32)
        .flags(flags)
        .build()
        .user_data(data(slot, SEND));
    c.sending = true;
    r.push(&sqe)
}

/// Shutdown (when the answer went out) and close, linked; only the close reports
/// (a failed shutdown reports too, as kind 0, which is ignored).
fn close(r: &mut Ring, slot: usize, c: &Conn, shut: bool) -> io::Result<()> {
    if shut {
        let sqe = opcode::Shutdown::new(types::Fd(c.fd), libc::SHUT_WR)
            .build()
            .flags(squeue::Flags::IO_HARDLINK | squeue::Flags::SKIP_SUCCESS)
            .user_data(data(slot, 0));
        r.push(&sqe)?;
    }
    let sqe = opcode::Close::new(types::Fd(c.fd))
        .build()
        .user_data(data(slot, CLOSE));
    r.push(&sqe)
}

/// Answers every complete head in the buffer (up to one with `Connection: close`).
fn answer(c: &mut Conn, resp: &[u8], resp_close: &[u8]) {
    let mut start = 0;
    let target = if c.sending { &mut c.next } else { &mut c.out };
    while let Some(end) = find(&c.inbuf[start..c.filled], b"\r\n\r\n") {
        let closing = has_close(&c.inbuf[start..start + end]);
        target.extend_from_slice(if closing { resp_close } else { resp });
        start += end + 4;
        if closing {
            c.close_after = true;
            break;
        }
    }
    c.inbuf.copy_within(start..c.filled, 0);
    c.filled -= start;
}

/// Serves on the listening socket `lfd` until an error.
pub fn run(lfd: c_int) -> io::Result<()> {
    let ring = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_coop_taskrun()
        .build(4096)?;
    let mut r = Ring { ring };
    let mut conns: Vec<Option<Box<Conn>>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let accept = opcode::AcceptMulti::new(types::Fd(lfd))
        .build()
        .user_data(ACCEPT);
    r.push(&accept)?;
    let mut secs = now_secs();
    let mut resp = response(secs, false);
    let mut resp_close = response(secs, true);
    let mut done: Vec<(u64, i32, u32)> = Vec::with_capacity(4096);
    loop {
        match r.ring.submit_and_wait(1) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(e) => return Err(e),
        }
        let t = now_secs();
        if t != secs {
            secs = t;
            resp = response(secs, false);
            resp_close = response(secs, true);
        }
        done.clear();
        done.extend(
            r.ring
                .completion()
                .map(|e| (e.user_data(), e.result(), e.flags())),
        );
        for &(ud, res, flags) in &done {
            if ud == ACCEPT {
                if !cqueue::more(flags) {
                    r.push(&accept)?;
                }
                if res < 0 {
                    continue;
                }
                set_nodelay(res);
                let c = Box::new(Conn {
                    fd: res,
                    inbuf: vec![0u8; BUF].into_boxed_slice(),
                    filled: 0,
                    out: Vec::new(),
                    sent: 0,
                    next: Vec::new(),
                    sending: false,
                    receiving: false,
                    close_after: false,
                    dead: false,
                });
                let slot = match free.pop() {
                    Some(s) => {
                        conns[s] = Some(c);
                        s
                    }
                    None => {
                        conns.push(Some(c));
                        conns.len() - 1
                    }
                };
                if let Some(c) = conns[slot].as_deref_mut() {
                    recv(&mut r, slot, c)?;
                }
                continue;
            }
            let (slot, kind) = ((ud >> 2) as usize, ud & 3);
            if kind == CLOSE {
                conns[slot] = None;
                free.push(slot);
                continue;
            }
            let Some(c) = conns.get_mut(slot).and_then(|c| c.as_deref_mut()) else {
                continue;
            };
            match kind {
                RECV if res <= 0 || c.filled + res as usize >= BUF => {
                    c.receiving = false;
                    if c.sending {
                        c.dead = true;
                    } else {
                        close(&mut r, slot, c, false)?;
                    }
                }
                RECV => {
                    c.receiving = false;
                    c.filled += res as usize;
                    let was_sending = c.sending;
                    answer(c, &resp, &resp_close);
                    if !was_sending && !c.out.is_empty() {
                        send(&mut r, slot, c)?;
                    }
                    if !c.close_after {
                        recv(&mut r, slot, c)?;
                    }
                }
                SEND if res < 0 => {
                    c.sending = false;
                    if c.receiving {
                        c.dead = true; // the receive in flight fails too, then it closes
                    } else {
                        close(&mut r, slot, c, false)?;
                    }
                }
                SEND => {
                    c.sent += res as usize;
                    c.sending = false;
                    if c.sent < c.out.len() {
                        send(&mut r, slot, c)?;
                        continue;
                    }
                    c.out.clear();
                    c.sent = 0;
                    std::mem::swap(&mut c.out, &mut c.next);
                    if c.dead && !c.receiving {
                        close(&mut r, slot, c, false)?;
                    } else if !c.out.is_empty() {
                        send(&mut r, slot, c)?;
                    } else if c.close_after {
                        close(&mut r, slot, c, true)?;
                    }
                }
                _ => {}
            }
        }
    }
}
