//! The record loop: FastCGI records read one piece at a time, whatever
//! the input's boundaries, and acted on as each completes.

use super::pairs::Pairs;
use super::{
    encode, Fault, FcgiConn, Goal, Header, Phase, Rec, Sink, ABORT_REQUEST, BEGIN_REQUEST,
    CANT_MPX_CONN, DATA, FLAG_KEEP_CONN, GET_VALUES, HEADER_LEN, MAX_MANAGEMENT_CONTENT,
    MAX_PENDING_OUTPUT, PARAMS, REQUEST_COMPLETE, ROLE_RESPONDER, STDIN, UNKNOWN_ROLE, VERSION_1,
};
use crate::gateway::CgiVars;
use crate::{BodyKind, Limits, ParseError, RequestHead};

impl FcgiConn {
    /// The record loop shared by head and body decoding.
    pub(super) fn run(
        &mut self,
        input: &[u8],
        goal: &mut Goal<'_>,
        put: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, Fault> {
        let mut pos = 0;
        loop {
            match self.rec {
                Rec::Header { have } => {
                    if self.close || self.goal_reached(goal) {
                        if let Goal::Head { head: Some(h), .. } = goal {
                            pos += self.take_empty_stdin(&input[pos..], h);
                        }
                        return Ok(pos);
                    }
                    if pos == input.len() {
                        return Ok(pos);
                    }
                    let have = usize::from(have);
                    let n = (HEADER_LEN - have).min(input.len() - pos);
                    self.hbuf[have..have + n].copy_from_slice(&input[pos..pos + n]);
                    pos += n;
                    if have + n < HEADER_LEN {
                        self.rec = Rec::Header {
                            have: (have + n) as u8,
                        };
                        return Ok(pos);
                    }
                    self.rec = Rec::Header { have: 0 };
                    self.start_record(goal)?;
                }
                Rec::Content { left } => {
                    if pos == input.len() {
                        return Ok(pos);
                    }
                    let avail = (input.len() - pos).min(usize::from(left));
                    let n = self.content(&input[pos..pos + avail], goal, put)?;
                    if n == 0 {
                        // Body data next and no room for it.
                        return Ok(pos);
                    }
                    pos += n;
                    // n <= left, a u16.
                    let left = left - n as u16;
                    self.rec = Rec::Content { left };
                    if left == 0 {
                        self.end_record(goal)?;
                    }
                }
                Rec::Padding { left } => {
                    if pos == input.len() {
                        return Ok(pos);
                    }
                    let n = (input.len() - pos).min(usize::from(left));
                    pos += n;
                    let left = left - n as u8;
                    self.rec = if left == 0 {
                        Rec::Header { have: 0 }
                    } else {
                        Rec::Padding { left }
                    };
                }
            }
        }
    }

    /// Whether the call has what it came for (checked between records).
    fn goal_reached(&self, goal: &Goal<'_>) -> bool {
        match goal {
            Goal::Head { head, .. } => head.is_some(),
            Goal::Body { .. } => !matches!(self.phase, Phase::Stdin | Phase::Draining),
        }
    }

    /// Takes an empty `FCGI_STDIN` for the new request when it is the next
    /// whole record in `rest`, so a request without a body is complete with
    /// its head; returns the bytes taken.
    fn take_empty_stdin(&mut self, rest: &[u8], head: &mut RequestHead) -> usize {
        if self.phase != Phase::Stdin || !matches!(head.body(), BodyKind::Empty | BodyKind::Chunked)
        {
            return 0;
        }
        let Some(h) = rest.get(..HEADER_LEN) else {
            return 0;
        };
        let hdr = parse_header(h);
        let total = HEADER_LEN + usize::from(hdr.pad);
        if h[0] != VERSION_1
            || hdr.kind != STDIN
            || hdr.id != self.id
            || hdr.len != 0
            || rest.len() < total
        {
            return 0;
        }
        head.set_body(BodyKind::Empty);
        self.length_left = None;
        self.phase = Phase::StdinDone;
        total
    }

    /// Acts on a complete record header: checks it, decides where the
    /// content goes, and finishes the record at once when it is empty.
    fn start_record(&mut self, goal: &mut Goal<'_>) -> Result<(), Fault> {
        if self.hbuf[0] != VERSION_1 {
            return Err(Fault::Protocol("fastcgi: record version is not 1"));
        }
        let hdr = parse_header(&self.hbuf);
        self.cur = hdr;
        let active = self.phase != Phase::Idle && hdr.id == self.id;
        self.sink = if hdr.id == 0 {
            if hdr.kind == GET_VALUES {
                if usize::from(hdr.len) > MAX_MANAGEMENT_CONTENT {
                    return Err(Fault::Protocol("fastcgi: FCGI_GET_VALUES too long"));
                }
                self.mgmt.clear();
                Sink::Management
            } else {
                Sink::Skip
            }
        } else {
            match hdr.kind {
                BEGIN_REQUEST => {
                    if hdr.len != 8 {
                        return Err(Fault::Protocol(
                            "fastcgi: FCGI_BEGIN_REQUEST body is not 8 bytes",
                        ));
                    }
                    if active {
                        return Err(Fault::Protocol(
                            "fastcgi: FCGI_BEGIN_REQUEST for an active request id",
                        ));
                    }
                    self.begin_have = 0;
                    Sink::Begin
                }
                PARAMS if active => {
                    if self.phase != Phase::Params {
                        return Err(Fault::Protocol("fastcgi: FCGI_PARAMS after their end"));
                    }
                    Sink::Params
                }
                STDIN if active => match self.phase {
                    Phase::Params => {
                        return Err(Fault::Protocol("fastcgi: FCGI_STDIN before the params"))
                    }
                    Phase::Stdin | Phase::Draining => Sink::Stdin,
                    _ => return Err(Fault::Protocol("fastcgi: FCGI_STDIN after its end")),
                },
                ABORT_REQUEST | DATA => Sink::Skip,
                _ if !active => Sink::Skip,
                _ => {
                    return Err(Fault::Protocol(
                        "fastcgi: unexpected record type for a request",
                    ))
                }
            }
        };
        self.rec = Rec::Content { left: hdr.len };
        if hdr.len == 0 {
            self.end_record(goal)?;
        }
        Ok(())
    }

    /// Takes content bytes (`data` is within the current record); returns
    /// how many were taken, 0 only when body data has no room.
    fn content(
        &mut self,
        data: &[u8],
        goal: &mut Goal<'_>,
        put: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, Fault> {
        match self.sink {
            Sink::Skip => Ok(data.len()),
            Sink::Begin => {
                let have = usize::from(self.begin_have);
                let n = data.len().min(8 - have);
                self.begin[have..have + n].copy_from_slice(&data[..n]);
                self.begin_have += n as u8;
                Ok(n)
            }
            Sink::Management => {
                self.mgmt.extend_from_slice(data);
                Ok(data.len())
            }
            Sink::Params => {
                let Goal::Head { limits, .. } = goal else {
                    return Err(Fault::Protocol("fastcgi: FCGI_PARAMS after their end"));
                };
                let limits: &Limits = limits;
                let vars = &mut self.vars;
                let vars_bytes = &mut self.vars_bytes;
                self.pairs.feed(
                    data,
                    limits.max_head_size.saturating_sub(*vars_bytes),
                    &mut |name, value| {
                        *vars_bytes += name.len() + value.len();
                        vars.push(name, value, limits).map_err(Fault::Head)
                    },
                )?;
                Ok(data.len())
            }
            Sink::Stdin => {
                let Goal::Body { room } = goal else {
                    return Err(Fault::Protocol("fastcgi: FCGI_STDIN read as a head"));
                };
                let mut n = data.len().min(*room);
                if let Some(l) = self.length_left.as_mut() {
                    if *l == 0 {
                        return Err(Fault::Protocol(
                            "fastcgi: FCGI_STDIN longer than CONTENT_LENGTH",
                        ));
                    }
                    n = n.min(usize::try_from(*l).unwrap_or(usize::MAX));
                    *l -= n as u64;
                }
                if n > 0 {
                    put(&data[..n]);
                    *room -= n;
                }
                Ok(n)
            }
        }
    }

    /// Acts on a record whose content is complete, then moves to its
    /// padding.
    pub(super) fn end_record(&mut self, goal: &mut Goal<'_>) -> Result<(), Fault> {
        let hdr = self.cur;
        self.rec = if hdr.pad > 0 {
            Rec::Padding { left: hdr.pad }
        } else {
            Rec::Header { have: 0 }
        };
        if hdr.id == 0 {
            if hdr.kind == GET_VALUES {
                let mgmt = std::mem::take(&mut self.mgmt);
                let r = self.answer_get_values(&mgmt);
                self.mgmt = mgmt;
                r?;
            } else {
                self.owe(|out| encode::unknown_type(out, hdr.kind))?;
            }
            return Ok(());
        }
        let active = self.phase != Phase::Idle && hdr.id == self.id;
        match hdr.kind {
            BEGIN_REQUEST => self.on_begin(hdr.id),
            PARAMS if active && hdr.len == 0 => self.on_params_end(goal),
            STDIN if active && hdr.len == 0 && self.phase == Phase::Draining => {
                self.reset_request();
                Ok(())
            }
            STDIN if active && hdr.len == 0 => {
                if self.length_left.is_some_and(|l| l > 0) {
                    return Err(Fault::Protocol(
                        "fastcgi: FCGI_STDIN shorter than CONTENT_LENGTH",
                    ));
                }
                self.phase = Phase::StdinDone;
                Ok(())
            }
            ABORT_REQUEST if active => match self.phase {
                Phase::Params => {
                    // Aborted before the application saw it: end it here.
                    let id = self.id;
                    self.reset_request();
                    if !self.keep_conn {
                        self.close = true;
                    }
                    self.owe(|out| encode::end_request(out, id, REQUEST_COMPLETE))
                }
                Phase::Stdin => Err(Fault::Aborted),
                // Answered already: nothing more is owed.
                Phase::Draining => {
                    self.reset_request();
                    Ok(())
                }
                // The body was read; the response goes on and the front
                // end ignores it.
                _ => Ok(()),
            },
            _ => Ok(()),
        }
    }

    /// A complete `FCGI_BEGIN_REQUEST` for `id`.
    fn on_begin(&mut self, id: u16) -> Result<(), Fault> {
        let role = u16::from_be_bytes([self.begin[0], self.begin[1]]);
        let keep_conn = self.begin[2] & FLAG_KEEP_CONN != 0;
        if self.phase != Phase::Idle {
            // One request at a time: the spec's answer for a server that
            // does not multiplex (§5.5); the refused id stays inactive, so
            // its records are skipped.
            return self.owe(|out| encode::end_request(out, id, CANT_MPX_CONN));
        }
        if role != ROLE_RESPONDER {
            if !keep_conn {
                self.close = true;
            }
            return self.owe(|out| encode::end_request(out, id, UNKNOWN_ROLE));
        }
        self.phase = Phase::Params;
        self.id = id;
        self.keep_conn = keep_conn;
        self.head_written = false;
        self.length_left = None;
        Ok(())
    }

    /// The empty `FCGI_PARAMS`: the variables become the request head.
    fn on_params_end(&mut self, goal: &mut Goal<'_>) -> Result<(), Fault> {
        let Goal::Head { limits, head } = goal else {
            return Err(Fault::Protocol("fastcgi: FCGI_PARAMS after their end"));
        };
        if !self.pairs.is_between() {
            return Err(Fault::Head(ParseError::BadRequest(
                "fastcgi: FCGI_PARAMS end inside a name-value pair",
            )));
        }
        let vars = std::mem::take(&mut self.vars);
        self.vars_bytes = 0;
        let mut h = vars.into_request(limits).map_err(Fault::Head)?;
        h.set_keep_alive(self.keep_conn);
        match h.body() {
            BodyKind::Length(n) => self.length_left = Some(n),
            _ => {
                self.length_left = None;
                h.set_body(BodyKind::Chunked);
            }
        }
        self.phase = Phase::Stdin;
        *head = Some(h);
        Ok(())
    }

    /// Answers `FCGI_GET_VALUES` with the values this server knows.
    fn answer_get_values(&mut self, query: &[u8]) -> Result<(), Fault> {
        let mut names: Vec<&'static [u8]> = Vec::new();
        let mut p = Pairs::default();
        p.feed(query, MAX_MANAGEMENT_CONTENT, &mut |name, _| {
            if let Some(known) = encode::KNOWN_VALUES.iter().find(|k| **k == name) {
                if !names.contains(known) {
                    names.push(known);
                }
            }
            Ok(())
        })?;
        if !p.is_between() {
            return Err(Fault::Protocol(
                "fastcgi: FCGI_GET_VALUES ends inside a pair",
            ));
        }
        let settings = self.settings;
        self.owe(|out| encode::get_values_result(out, &names, &settings))
    }

    /// Queues records for the front end, failing once too much waits.
    fn owe(&mut self, write: impl FnOnce(&mut Vec<u8>)) -> Result<(), Fault> {
        if self.out.len() > MAX_PENDING_OUTPUT {
            return Err(Fault::Protocol(
                "fastcgi: too many management records left unread",
            ));
        }
        write(&mut self.out);
        Ok(())
    }

    /// Forgets the active request.
    pub(super) fn reset_request(&mut self) {
        self.phase = Phase::Idle;
        // The rest of a stream the request did not finish belongs to an
        // inactive id now: it is read past.
        if matches!(self.sink, Sink::Stdin | Sink::Params) {
            self.sink = Sink::Skip;
        }
        self.vars = CgiVars::new();
        self.vars_bytes = 0;
        self.pairs = Pairs::default();
        self.length_left = None;
        self.head_written = false;
    }
}

/// The fields of an 8-byte record header.
fn parse_header(h: &[u8]) -> Header {
    let b = |i: usize| h.get(i).copied().unwrap_or(0);
    Header {
        kind: b(1),
        id: u16::from_be_bytes([b(2), b(3)]),
        len: u16::from_be_bytes([b(4), b(5)]),
        pad: b(6),
    }
}
