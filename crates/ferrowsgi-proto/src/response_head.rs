//! The status and header fields of a response, in no protocol's framing.
//!
//! What a WSGI application passes to `start_response` is the same whatever
//! carries the answer: HTTP/1.1 writes a status line before the fields,
//! SCGI and FastCGI a `Status:` field (CGI, RFC 3875 §6.3.3), AJP13 a binary
//! packet. A [`ResponseHead`] offers the status line's text (`200 OK`,
//! [`ResponseHead::status_line`]) and the fields, as field lines
//! (`Name: value\r\n` each, RFC 9112 §5, [`ResponseHead::field_lines`]) or
//! as pairs ([`ResponseHead::fields`]); each protocol's codec adds what its
//! framing needs (`Status:`, Content-Length, chunking, Connection).
//!
//! Stored, the parts sit in one buffer laid out as HTTP/1.1 sends them —
//! `HTTP/1.1 200 OK\r\n` and the field lines — so that the HTTP/1.1 hot
//! path copies the head in one piece ([`ResponseHead::http1_lines`]): three
//! copies instead of one cost about 70 instructions per response, 1% of a
//! hello request's user-space total.

/// The version an HTTP/1.1 status line starts with.
const HTTP11: &[u8] = b"HTTP/1.1 ";

/// Room for the fields of a typical response, reserved when a head is made.
const HEAD_CAPACITY: usize = 128;

/// A header field's name and value, as bytes.
pub type Field<'a> = (&'a [u8], &'a [u8]);

/// A response's status and fields, with what the server needs to know about
/// them noted on the way in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseHead {
    /// Status code.
    pub status: u16,
    /// `HTTP/1.1 `, the status line's text, CRLF, then the field lines: one
    /// allocation per response rather than one for each part. Empty in a
    /// default head.
    block: Vec<u8>,
    /// Where the field lines start in `block`.
    fields_at: usize,
    /// The application's Content-Length, if it gave a valid one.
    content_length: Option<u64>,
    /// A Date field is among the fields.
    pub has_date: bool,
    /// A Server field is among the fields.
    pub has_server: bool,
    /// The application asked for `Connection: close`.
    pub close: bool,
}

impl ResponseHead {
    /// A head with `status` (`"200 OK"` as `status_line`) and no fields.
    pub fn new(status: u16, status_line: &[u8]) -> ResponseHead {
        let mut head = ResponseHead::default();
        head.restart(status, status_line);
        head
    }

    /// Makes this a new head with `status` and no fields, as
    /// [`ResponseHead::new`] does, in the buffer it already has (a head
    /// object kept from one response to the next allocates once).
    pub fn restart(&mut self, status: u16, status_line: &[u8]) {
        self.clear();
        self.status = status;
        if self.block.capacity() < HEAD_CAPACITY {
            self.block.reserve(HEAD_CAPACITY + status_line.len());
        }
        self.block.extend_from_slice(HTTP11);
        self.block.extend_from_slice(status_line);
        self.block.extend_from_slice(b"\r\n");
        self.fields_at = self.block.len();
    }

    /// Empties the head (as a default one), keeping its buffer.
    pub fn clear(&mut self) {
        let mut block = std::mem::take(&mut self.block);
        block.clear();
        *self = ResponseHead {
            block,
            ..ResponseHead::default()
        };
    }

    /// Adds a field. The caller has validated the name (a token) and the
    /// value (no CR, LF or NUL). `Connection` is not kept: each protocol
    /// says for itself whether the connection stays, and only `close` is
    /// taken from the application.
    pub fn push_header(&mut self, name: &[u8], value: &[u8]) {
        match name.len() {
            14 if eq_lowercase(name, b"content-length") => {
                self.content_length = parse_decimal(value);
            }
            4 if eq_lowercase(name, b"date") => self.has_date = true,
            6 if eq_lowercase(name, b"server") => self.has_server = true,
            10 if eq_lowercase(name, b"connection") => {
                self.close |= value.eq_ignore_ascii_case(b"close");
                return;
            }
            _ => {}
        }
        self.block.reserve(name.len() + value.len() + 4);
        self.block.extend_from_slice(name);
        self.block.extend_from_slice(b": ");
        self.block.extend_from_slice(value);
        self.block.extend_from_slice(b"\r\n");
    }

    /// The application's Content-Length, if any.
    pub fn content_length(&self) -> Option<u64> {
        self.content_length
    }

    /// The status line's text after the version, e.g. `200 OK`.
    pub fn status_line(&self) -> &[u8] {
        self.block
            .get(HTTP11.len()..self.fields_at.saturating_sub(2))
            .unwrap_or(&[])
    }

    /// The head as HTTP/1.1 starts it: `HTTP/1.1 200 OK\r\n` and the field
    /// lines (the server adds its own fields and the empty line).
    pub fn http1_lines(&self) -> &[u8] {
        &self.block
    }

    /// The fields as field lines, `Name: value\r\n` each, in the order
    /// pushed (without `Connection`).
    pub fn field_lines(&self) -> &[u8] {
        self.block.get(self.fields_at..).unwrap_or(&[])
    }

    /// The fields as `(name, value)` pairs, in the order pushed.
    pub fn fields(&self) -> impl Iterator<Item = Field<'_>> + '_ {
        self.field_lines()
            .split(|&b| b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .filter_map(|l| {
                let i = l.windows(2).position(|w| w == b": ")?;
                Some((&l[..i], &l[i + 2..]))
            })
    }

    /// The status line's text and the fields, as pushed: for server hooks
    /// that look at the response, never on the request path otherwise.
    pub fn parts(&self) -> (&[u8], Vec<Field<'_>>) {
        (self.status_line(), self.fields().collect())
    }
}

/// Whether `name` equals the lower-case `lower`, ignoring ASCII case.
fn eq_lowercase(name: &[u8], lower: &[u8]) -> bool {
    crate::h1::response::eq_lowercase(name, lower)
}

/// A Content-Length value: 1*DIGIT that fits in 64 bits.
fn parse_decimal(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A "200 OK" head with `fields` pushed in order.
    fn head_with(fields: &[(&[u8], &[u8])]) -> ResponseHead {
        let mut head = ResponseHead::new(200, b"200 OK");
        for (name, value) in fields {
            head.push_header(name, value);
        }
        head
    }

    #[test]
    fn a_restarted_head_keeps_nothing_of_the_one_before() {
        let mut head = head_with(&[
            (b"Content-Length", b"13"),
            (b"Date", b"Tue, 01 Dec 2026 00:00:00 GMT"),
            (b"Server", b"app"),
            (b"Connection", b"close"),
            (b"X-A", b"1"),
        ]);
        assert_eq!(head.content_length(), Some(13));
        assert!(head.has_date && head.has_server && head.close);
        let capacity = head.block.capacity();

        head.restart(404, b"404 Not Found");
        assert_eq!(head.status, 404);
        assert_eq!(head.status_line(), b"404 Not Found");
        assert_eq!(head.field_lines(), b"");
        assert_eq!(head.content_length(), None);
        assert!(!head.has_date && !head.has_server && !head.close);
        assert_eq!(head.block.capacity(), capacity, "the buffer is reused");

        head.clear();
        assert!(head.block.is_empty());
        assert_eq!(head.status, 0);
        assert_eq!(head.block.capacity(), capacity);
    }

    #[test]
    fn header_names_are_recognised_in_any_case() {
        let head = head_with(&[
            (b"CONTENT-LENGTH", b"7"),
            (b"dAtE", b"x"),
            (b"connection", b"Close"),
        ]);
        assert_eq!(head.content_length(), Some(7));
        assert!(head.has_date && head.close);
        // Connection is the protocol's to write; the others are kept as given.
        assert_eq!(head.field_lines(), b"CONTENT-LENGTH: 7\r\ndAtE: x\r\n");
        let fields: Vec<_> = head.fields().collect();
        assert_eq!(
            fields,
            vec![(&b"CONTENT-LENGTH"[..], &b"7"[..]), (b"dAtE", b"x")]
        );
        assert_eq!(head.parts().0, b"200 OK");
        assert_eq!(
            head.http1_lines(),
            b"HTTP/1.1 200 OK\r\nCONTENT-LENGTH: 7\r\ndAtE: x\r\n"
        );
        assert_eq!(ResponseHead::default().status_line(), b"");
    }
}
