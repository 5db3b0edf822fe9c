//! FastCGI records the application writes: the response on `FCGI_STDOUT`,
//! `FCGI_END_REQUEST`, and the answers to management records.

use super::{
    FcgiConn, Phase, Settings, END_REQUEST, GET_VALUES_RESULT, HEADER_LEN, MAX_CONTENT,
    REQUEST_COMPLETE, STDOUT, UNKNOWN_TYPE, VERSION_1,
};
use crate::h1::response::{push_decimal, status_reason};
use crate::h1::syntax::is_field_value_byte;

/// The `FCGI_GET_VALUES` names this server answers (spec §4.1).
pub(super) const KNOWN_VALUES: [&[u8]; 3] =
    [b"FCGI_MAX_CONNS", b"FCGI_MAX_REQS", b"FCGI_MPXS_CONNS"];

/// A record header with no padding; `len` is at most [`MAX_CONTENT`].
pub(super) fn header(kind: u8, id: u16, len: usize) -> [u8; HEADER_LEN] {
    let len = u16::try_from(len).unwrap_or(u16::MAX);
    let [i1, i0] = id.to_be_bytes();
    let [l1, l0] = len.to_be_bytes();
    [VERSION_1, kind, i1, i0, l1, l0, 0, 0]
}

/// Appends `FCGI_END_REQUEST` with application status 0.
pub(super) fn end_request(out: &mut Vec<u8>, id: u16, protocol_status: u8) {
    out.extend_from_slice(&header(END_REQUEST, id, 8));
    out.extend_from_slice(&[0, 0, 0, 0, protocol_status, 0, 0, 0]);
}

/// Appends `FCGI_UNKNOWN_TYPE` for a management record of type `kind`.
pub(super) fn unknown_type(out: &mut Vec<u8>, kind: u8) {
    out.extend_from_slice(&header(UNKNOWN_TYPE, 0, 8));
    out.extend_from_slice(&[kind, 0, 0, 0, 0, 0, 0, 0]);
}

/// Appends `FCGI_GET_VALUES_RESULT` with the values of `names` (each one of
/// [`KNOWN_VALUES`]).
pub(super) fn get_values_result(out: &mut Vec<u8>, names: &[&[u8]], settings: &Settings) {
    let start = out.len();
    out.extend_from_slice(&header(GET_VALUES_RESULT, 0, 0));
    for name in names {
        let mut value = Vec::with_capacity(10);
        match *name {
            b"FCGI_MAX_CONNS" => push_decimal(&mut value, u64::from(settings.max_conns)),
            b"FCGI_MAX_REQS" => push_decimal(&mut value, u64::from(settings.max_reqs)),
            _ => value.push(b'0'),
        }
        // Names and values here are short: one-byte lengths.
        out.push(name.len() as u8);
        out.push(value.len() as u8);
        out.extend_from_slice(name);
        out.extend_from_slice(&value);
    }
    let len = out.len() - start - HEADER_LEN;
    out[start..start + HEADER_LEN].copy_from_slice(&header(GET_VALUES_RESULT, 0, len));
}

impl FcgiConn {
    /// Appends the response head as `FCGI_STDOUT`: `Status: {status_line}`
    /// (e.g. `b"200 OK"`), each field as `Name: value`, and the empty line,
    /// CGI style (RFC 3875 §6.2). The fields are taken as validated (tokens,
    /// no CR, LF or NUL).
    pub fn write_head<'a>(
        &mut self,
        out: &mut Vec<u8>,
        status_line: &[u8],
        fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    ) {
        self.head_written = true;
        self.stdout_with(out, |out| {
            out.extend_from_slice(b"Status: ");
            out.extend_from_slice(status_line);
            out.extend_from_slice(b"\r\n");
            for (name, value) in fields {
                out.extend_from_slice(name);
                out.extend_from_slice(b": ");
                out.extend_from_slice(value);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"\r\n");
        });
    }

    /// [`FcgiConn::write_head`] for fields already written as field lines
    /// (`Name: value\r\n` each, as [`crate::ResponseHead::field_lines`]
    /// keeps them), copied in one piece; `content_length` adds a
    /// `Content-Length` field (the whole body's length when the server knows
    /// it and the application gave none), so the front end need not frame
    /// the body to its client.
    pub fn write_head_lines(
        &mut self,
        out: &mut Vec<u8>,
        status_line: &[u8],
        field_lines: &[u8],
        content_length: Option<u64>,
    ) {
        self.head_written = true;
        self.stdout_with(out, |out| {
            out.reserve(status_line.len() + field_lines.len() + 48);
            out.extend_from_slice(b"Status: ");
            out.extend_from_slice(status_line);
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(field_lines);
            if let Some(n) = content_length {
                out.extend_from_slice(b"Content-Length: ");
                push_decimal(out, n);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"\r\n");
        });
    }

    /// Appends `data` as `FCGI_STDOUT` records of at most [`MAX_CONTENT`]
    /// bytes each; nothing for empty data (an empty `FCGI_STDOUT` would end
    /// the stream).
    pub fn write_block(&self, out: &mut Vec<u8>, data: &[u8]) {
        out.reserve(data.len() + HEADER_LEN * (data.len() / MAX_CONTENT + 1));
        for part in data.chunks(MAX_CONTENT) {
            out.extend_from_slice(&header(STDOUT, self.id, part.len()));
            out.extend_from_slice(part);
        }
    }

    /// The record header for the first bytes of a `len`-byte body block,
    /// and how many bytes it covers (`min(len, MAX_CONTENT)`), so that a
    /// large block can be written as header, slice, header, slice… with no
    /// copy. Records carry no padding, so there is nothing to write after
    /// the slice.
    pub fn stdout_header(&self, len: usize) -> ([u8; HEADER_LEN], usize) {
        let n = len.min(MAX_CONTENT);
        (header(STDOUT, self.id, n), n)
    }

    /// Appends the end of the response: an empty `FCGI_STDOUT` and
    /// `FCGI_END_REQUEST` (application status 0, `FCGI_REQUEST_COMPLETE`),
    /// and ends the request. Returns whether the connection stays open
    /// (the request had `FCGI_KEEP_CONN`); nothing is written without a
    /// request.
    pub fn write_end(&mut self, out: &mut Vec<u8>) -> bool {
        if matches!(self.phase, Phase::Idle | Phase::Draining) {
            return false;
        }
        out.extend_from_slice(&header(STDOUT, self.id, 0));
        end_request(out, self.id, REQUEST_COMPLETE);
        let keep = self.keep_conn && self.failed.is_none() && !self.close;
        if self.phase == Phase::Stdin {
            // The rest of the body is still to come and is read before the
            // next request ([`FcgiConn::decode_with`]).
            self.phase = Phase::Draining;
        } else {
            self.reset_request();
        }
        keep
    }

    /// Answers the active request with an error before any of its
    /// response: `Status: {status} {reason}`, a `text/plain` body of
    /// `message` and a newline, and the end of the request. After an
    /// abort only `FCGI_END_REQUEST` is written; when the head was already
    /// written, only the end; without an active request (a broken record
    /// stream before any `FCGI_BEGIN_REQUEST`) nothing. CR, LF and other
    /// controls in `reason` and `message` become spaces. The connection
    /// should close afterwards.
    pub fn write_error(&mut self, out: &mut Vec<u8>, status: u16, reason: &str, message: &str) {
        match self.phase {
            Phase::Idle | Phase::Draining => return,
            Phase::Aborted => {
                end_request(out, self.id, REQUEST_COMPLETE);
                self.reset_request();
                return;
            }
            _ => {}
        }
        if !self.head_written {
            let clean = |s: &str| -> Vec<u8> {
                s.bytes()
                    .map(|b| if is_field_value_byte(b) { b } else { b' ' })
                    .collect()
            };
            let status = status.clamp(100, 999);
            let reason = if reason.is_empty() {
                status_reason(status)
            } else {
                reason
            };
            let mut line = Vec::with_capacity(4 + reason.len());
            push_decimal(&mut line, u64::from(status));
            line.push(b' ');
            line.extend_from_slice(&clean(reason));
            let mut body = clean(message);
            body.push(b'\n');
            let mut length = Vec::new();
            push_decimal(&mut length, body.len() as u64);
            self.write_head(
                out,
                &line,
                [
                    (&b"Content-Type"[..], &b"text/plain; charset=utf-8"[..]),
                    (b"Content-Length", &length),
                ],
            );
            self.write_block(out, &body);
        }
        self.write_end(out);
    }

    /// Appends one `FCGI_STDOUT` holding what `build` appends (split into
    /// several records if it passes [`MAX_CONTENT`]).
    fn stdout_with(&self, out: &mut Vec<u8>, build: impl FnOnce(&mut Vec<u8>)) {
        let start = out.len();
        out.extend_from_slice(&[0; HEADER_LEN]);
        build(out);
        let len = out.len() - start - HEADER_LEN;
        if len == 0 {
            out.truncate(start);
        } else if len <= MAX_CONTENT {
            out[start..start + HEADER_LEN].copy_from_slice(&header(STDOUT, self.id, len));
        } else {
            let content = out.split_off(start + HEADER_LEN);
            out.truncate(start);
            self.write_block(out, &content);
        }
    }
}
