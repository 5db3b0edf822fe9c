//! Request-body decoding: Content-Length and chunked (RFC 9112 §6.3, §7.1).
//!
//! [`BodyDecoder`] is fed whatever bytes have arrived and can stop and resume
//! at any byte boundary; a chunked body is a state machine with one state per
//! position in the grammar. It never consumes past the end of the body: the
//! bytes after it belong to the next request on the connection.

use super::head::BodyKind;
use super::syntax::{is_field_value_byte, is_tchar};
use crate::{BodyError, Limits};

/// Most hex digits in a chunk-size: 16 digits fill a `u64` exactly, so a
/// longer size line is either padded with zeros or an overflow; both are
/// refused, which keeps the size line bounded too.
const MAX_CHUNK_SIZE_DIGITS: u8 = 16;

/// Position in the chunked grammar (RFC 9112 §7.1):
///
/// ```text
/// chunked-body = *chunk last-chunk trailer-section CRLF
/// chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
/// chunk-ext    = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] )
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chunked {
    /// In chunk-size; `digits` hex digits read so far.
    Size {
        /// Hex digits read.
        digits: u8,
    },
    /// BWS right after the chunk-size; only `;` or more BWS may follow.
    SizeBws,
    /// After `;`: BWS, then an extension name.
    ExtNameStart,
    /// In an extension name.
    ExtName,
    /// BWS after an extension name: `=`, `;` or more BWS may follow.
    ExtAfterName,
    /// After `=`: BWS, then a token or a quoted-string.
    ExtValueStart,
    /// In a token extension value.
    ExtValueToken,
    /// Inside a quoted-string extension value.
    ExtQuoted,
    /// After a backslash inside a quoted-string.
    ExtQuotedEscape,
    /// After an extension value: `;`, BWS or CR may follow.
    ExtAfterValue,
    /// BWS after an extension value: only `;` or more BWS may follow.
    ExtBws,
    /// After the CR ending the chunk-size line.
    SizeLf,
    /// In chunk-data.
    Data,
    /// After chunk-data, expecting CR.
    DataCr,
    /// After chunk-data and CR, expecting LF.
    DataLf,
    /// At the start of a trailer line, or of the final CRLF.
    TrailerStart,
    /// In a trailer field name.
    TrailerName,
    /// In a trailer field value.
    TrailerValue,
    /// After the CR ending a trailer line.
    TrailerLf,
    /// After the CR of the final CRLF.
    EndLf,
    /// The whole body has been read.
    Done,
}

/// The decoder's mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Content-Length (or no body): bytes still to come.
    Length(u64),
    /// Chunked: the grammar position.
    Chunked(Chunked),
    /// A framing error happened; every later call returns it again.
    Failed(BodyError),
}

/// Decodes a request body of a given [`BodyKind`] from bytes fed to it.
#[derive(Clone, Debug)]
pub struct BodyDecoder {
    /// Where decoding stands.
    mode: Mode,
    /// Bytes left in the current chunk.
    chunk_remaining: u64,
    /// Size of the chunk being announced.
    chunk_size: u64,
    /// Bytes of chunk extensions on the current size line.
    ext_len: usize,
    /// Bytes of trailer section so far.
    trailer_len: usize,
    /// `Limits::max_chunk_ext_size`.
    max_ext: usize,
    /// `Limits::max_trailer_size`.
    max_trailer: usize,
}

impl BodyDecoder {
    /// A decoder for a body framed as `kind`, bounded by `limits`.
    pub fn new(kind: BodyKind, limits: &Limits) -> Self {
        let mode = match kind {
            BodyKind::Empty => Mode::Length(0),
            BodyKind::Length(n) => Mode::Length(n),
            BodyKind::Chunked => Mode::Chunked(Chunked::Size { digits: 0 }),
        };
        BodyDecoder {
            mode,
            chunk_remaining: 0,
            chunk_size: 0,
            ext_len: 0,
            trailer_len: 0,
            max_ext: limits.max_chunk_ext_size,
            max_trailer: limits.max_trailer_size,
        }
    }

    /// Decode as much of `input` as possible, appending body bytes to `out` but
    /// never more than `max_out` bytes in this call; returns how many input
    /// bytes were consumed. Stops consuming at the end of the body (bytes after
    /// it belong to the next request). Framing bytes (chunk lines, trailers)
    /// are consumed even when `max_out` is 0.
    ///
    /// After an error the decoder stays failed and returns the same error.
    pub fn decode(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        max_out: usize,
    ) -> Result<usize, BodyError> {
        self.decode_with(input, max_out, |data| out.extend_from_slice(data))
            .map(|(consumed, _)| consumed)
    }

    /// [`BodyDecoder::decode`] for a caller that owns the destination: each
    /// run of body bytes (at most `max_out` in all) is handed to `put`, in
    /// order, and the result is `(input bytes consumed, body bytes put)`.
    /// This lets the body go straight into its final buffer (an
    /// application's bytes object, say) with no copy in between.
    pub fn decode_with(
        &mut self,
        input: &[u8],
        max_out: usize,
        mut put: impl FnMut(&[u8]),
    ) -> Result<(usize, usize), BodyError> {
        match self.mode {
            Mode::Failed(e) => Err(e),
            Mode::Length(remaining) => {
                let n = input.len().min(max_out).min(clamp(remaining));
                if n > 0 {
                    put(&input[..n]);
                }
                self.mode = Mode::Length(remaining - n as u64);
                Ok((n, n))
            }
            Mode::Chunked(state) => {
                let result = self.decode_chunked(state, input, max_out, &mut put);
                if let Err(e) = result {
                    self.mode = Mode::Failed(e);
                }
                result
            }
        }
    }

    /// Body bytes that come next in the input with no framing among them:
    /// the rest of a Content-Length body, or of the chunk whose data is
    /// being read; 0 when framing comes first (a chunk-size line, a
    /// trailer) or the body is over. A caller may read that many bytes
    /// straight from the socket into its own buffer and report them with
    /// [`BodyDecoder::consume_data`].
    pub fn data_ahead(&self) -> u64 {
        match self.mode {
            Mode::Length(n) => n,
            Mode::Chunked(Chunked::Data) => self.chunk_remaining,
            Mode::Chunked(_) | Mode::Failed(_) => 0,
        }
    }

    /// Records `n` body bytes taken without [`BodyDecoder::decode`], at most
    /// [`BodyDecoder::data_ahead`]; returns how many counted.
    pub fn consume_data(&mut self, n: u64) -> u64 {
        match self.mode {
            Mode::Length(remaining) => {
                let n = n.min(remaining);
                self.mode = Mode::Length(remaining - n);
                n
            }
            Mode::Chunked(Chunked::Data) => {
                let n = n.min(self.chunk_remaining);
                self.chunk_remaining -= n;
                if self.chunk_remaining == 0 {
                    self.mode = Mode::Chunked(Chunked::DataCr);
                }
                n
            }
            Mode::Chunked(_) | Mode::Failed(_) => 0,
        }
    }

    /// Records `n` bytes of a Content-Length body as received without passing
    /// through [`BodyDecoder::decode`] (moved by the kernel straight from the
    /// socket to a file, for instance). Returns how many of them counted: at
    /// most the bytes still to come, and 0 for a chunked or failed body,
    /// whose framing only `decode` can follow.
    pub fn consume_length(&mut self, n: u64) -> u64 {
        match self.mode {
            Mode::Length(remaining) => {
                let n = n.min(remaining);
                self.mode = Mode::Length(remaining - n);
                n
            }
            Mode::Chunked(_) | Mode::Failed(_) => 0,
        }
    }

    /// Whether the whole body has been decoded.
    pub fn is_done(&self) -> bool {
        matches!(self.mode, Mode::Length(0) | Mode::Chunked(Chunked::Done))
    }

    /// Body bytes still to come, when known: `Some(n)` for a Content-Length
    /// body (and `Some(0)` once any body is done), `None` for chunked.
    pub fn remaining_hint(&self) -> Option<u64> {
        match self.mode {
            Mode::Length(n) => Some(n),
            Mode::Chunked(Chunked::Done) => Some(0),
            Mode::Chunked(_) | Mode::Failed(_) => None,
        }
    }

    /// The chunked loop: bulk copies in `Data`, one byte at a time elsewhere.
    /// Returns (input consumed, body bytes put).
    fn decode_chunked(
        &mut self,
        mut state: Chunked,
        input: &[u8],
        max_out: usize,
        put: &mut impl FnMut(&[u8]),
    ) -> Result<(usize, usize), BodyError> {
        let mut pos = 0;
        let mut written = 0;
        while pos < input.len() {
            match state {
                Chunked::Done => break,
                Chunked::Data => {
                    let room = max_out - written;
                    if room == 0 {
                        break;
                    }
                    let n = (input.len() - pos)
                        .min(room)
                        .min(clamp(self.chunk_remaining));
                    put(&input[pos..pos + n]);
                    pos += n;
                    written += n;
                    self.chunk_remaining -= n as u64;
                    if self.chunk_remaining == 0 {
                        state = Chunked::DataCr;
                    }
                }
                _ => {
                    state = self.step(state, input[pos])?;
                    pos += 1;
                }
            }
        }
        self.mode = Mode::Chunked(state);
        Ok((pos, written))
    }

    /// Advances the grammar by one byte outside chunk-data.
    fn step(&mut self, state: Chunked, b: u8) -> Result<Chunked, BodyError> {
        use Chunked as C;
        let in_ext = matches!(
            state,
            C::SizeBws
                | C::ExtNameStart
                | C::ExtName
                | C::ExtAfterName
                | C::ExtValueStart
                | C::ExtValueToken
                | C::ExtQuoted
                | C::ExtQuotedEscape
                | C::ExtAfterValue
                | C::ExtBws
        );
        if in_ext && b != b'\r' {
            self.ext_len += 1;
            if self.ext_len > self.max_ext {
                return Err(BodyError::ChunkExtensionTooLong);
            }
        }
        if matches!(
            state,
            C::TrailerStart | C::TrailerName | C::TrailerValue | C::TrailerLf | C::EndLf
        ) {
            self.trailer_len += 1;
            if self.trailer_len > self.max_trailer {
                return Err(BodyError::TrailerTooLarge);
            }
        }
        let is_ws = b == b' ' || b == b'\t';
        Ok(match state {
            C::Size { digits } => match hex_value(b) {
                Some(v) => {
                    if digits >= MAX_CHUNK_SIZE_DIGITS {
                        return Err(BodyError::ChunkSizeOverflow);
                    }
                    self.chunk_size = (self.chunk_size << 4) | u64::from(v);
                    C::Size { digits: digits + 1 }
                }
                None if digits == 0 => return Err(BodyError::InvalidChunkSize),
                None => match b {
                    b'\r' => C::SizeLf,
                    b';' => {
                        self.ext_len = 1;
                        C::ExtNameStart
                    }
                    b' ' | b'\t' => {
                        self.ext_len = 1;
                        C::SizeBws
                    }
                    b'\n' => return Err(BodyError::MissingChunkCrlf),
                    _ => return Err(BodyError::InvalidChunkSize),
                },
            },
            // "5 \r\n": whitespace not introducing an extension is refused.
            C::SizeBws => match b {
                b';' => C::ExtNameStart,
                _ if is_ws => C::SizeBws,
                _ => return Err(BodyError::InvalidChunkSize),
            },
            C::ExtNameStart => match b {
                _ if is_ws => C::ExtNameStart,
                _ if is_tchar(b) => C::ExtName,
                _ => return Err(BodyError::InvalidChunkExtension),
            },
            C::ExtName => match b {
                _ if is_tchar(b) => C::ExtName,
                b'=' => C::ExtValueStart,
                b';' => C::ExtNameStart,
                b'\r' => C::SizeLf,
                _ if is_ws => C::ExtAfterName,
                _ => return Err(BodyError::InvalidChunkExtension),
            },
            C::ExtAfterName => match b {
                _ if is_ws => C::ExtAfterName,
                b'=' => C::ExtValueStart,
                b';' => C::ExtNameStart,
                _ => return Err(BodyError::InvalidChunkExtension),
            },
            C::ExtValueStart => match b {
                _ if is_ws => C::ExtValueStart,
                b'"' => C::ExtQuoted,
                _ if is_tchar(b) => C::ExtValueToken,
                _ => return Err(BodyError::InvalidChunkExtension),
            },
            C::ExtValueToken => match b {
                _ if is_tchar(b) => C::ExtValueToken,
                b';' => C::ExtNameStart,
                b'\r' => C::SizeLf,
                _ if is_ws => C::ExtBws,
                _ => return Err(BodyError::InvalidChunkExtension),
            },
            // qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
            C::ExtQuoted => match b {
                b'"' => C::ExtAfterValue,
                b'\\' => C::ExtQuotedEscape,
                _ if is_field_value_byte(b) => C::ExtQuoted,
                _ => return Err(BodyError::InvalidChunkExtension),
            },
            // quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
            C::ExtQuotedEscape => match b {
                _ if is_field_value_byte(b) => C::ExtQuoted,
                _ => return Err(BodyError::InvalidChunkExtension),
            },
            C::ExtAfterValue => match b {
                b';' => C::ExtNameStart,
                b'\r' => C::SizeLf,
                _ if is_ws => C::ExtBws,
                _ => return Err(BodyError::InvalidChunkExtension),
            },
            C::ExtBws => match b {
                b';' => C::ExtNameStart,
                _ if is_ws => C::ExtBws,
                _ => return Err(BodyError::InvalidChunkExtension),
            },
            C::SizeLf => {
                if b != b'\n' {
                    return Err(BodyError::MissingChunkCrlf);
                }
                self.ext_len = 0;
                let size = std::mem::take(&mut self.chunk_size);
                if size == 0 {
                    C::TrailerStart
                } else {
                    self.chunk_remaining = size;
                    C::Data
                }
            }
            C::DataCr => expect(b, b'\r', C::DataLf)?,
            C::DataLf => expect(b, b'\n', C::Size { digits: 0 })?,
            // RFC 9112 §7.1.2: trailer-section = *( field-line CRLF ).
            C::TrailerStart => match b {
                b'\r' => C::EndLf,
                b'\n' => return Err(BodyError::MissingChunkCrlf),
                _ if is_tchar(b) => C::TrailerName,
                _ => return Err(BodyError::InvalidTrailer),
            },
            C::TrailerName => match b {
                b':' => C::TrailerValue,
                _ if is_tchar(b) => C::TrailerName,
                _ => return Err(BodyError::InvalidTrailer),
            },
            C::TrailerValue => match b {
                b'\r' => C::TrailerLf,
                b'\n' => return Err(BodyError::MissingChunkCrlf),
                _ if is_field_value_byte(b) => C::TrailerValue,
                _ => return Err(BodyError::InvalidTrailer),
            },
            C::TrailerLf => expect(b, b'\n', C::TrailerStart)?,
            C::EndLf => expect(b, b'\n', C::Done)?,
            // Handled by the caller; never stepped.
            C::Data | C::Done => state,
        })
    }
}

/// `next` if `b` is `want`, else a missing-CRLF error.
fn expect(b: u8, want: u8, next: Chunked) -> Result<Chunked, BodyError> {
    if b == want {
        Ok(next)
    } else {
        Err(BodyError::MissingChunkCrlf)
    }
}

/// The value of a hex digit.
fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// A `u64` count as a `usize`, saturating (only matters on 32-bit targets).
fn clamp(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use BodyError as E;

    type Outcome = Result<(Vec<u8>, usize), BodyError>;

    /// Decodes `input` in one call, or in two calls split at `cut` the way a
    /// connection buffer would be: unconsumed bytes are offered again.
    fn run(kind: BodyKind, limits: &Limits, input: &[u8], cut: Option<usize>) -> Outcome {
        let mut d = BodyDecoder::new(kind, limits);
        let mut out = Vec::new();
        let consumed = match cut {
            None => d.decode(input, &mut out, usize::MAX)?,
            Some(cut) => {
                let n1 = d.decode(&input[..cut], &mut out, usize::MAX)?;
                n1 + d.decode(&input[n1..], &mut out, usize::MAX)?
            }
        };
        Ok((out, consumed))
    }

    #[test]
    fn consume_length_counts_only_content_length_bytes() {
        let limits = Limits::default();
        let mut d = BodyDecoder::new(BodyKind::Length(10), &limits);
        assert_eq!(d.consume_length(4), 4);
        assert_eq!(d.remaining_hint(), Some(6));
        assert_eq!(d.consume_length(100), 6);
        assert!(d.is_done());
        assert_eq!(d.consume_length(1), 0);
        let mut c = BodyDecoder::new(BodyKind::Chunked, &limits);
        assert_eq!(c.consume_length(5), 0);
        assert!(!c.is_done());
    }

    #[test]
    fn data_ahead_and_consume_data_follow_the_framing() {
        let l = Limits::default();
        let mut d = BodyDecoder::new(BodyKind::Length(10), &l);
        assert_eq!(d.data_ahead(), 10);
        assert_eq!(d.consume_data(4), 4);
        assert_eq!((d.data_ahead(), d.remaining_hint()), (6, Some(6)));
        assert_eq!(d.consume_data(100), 6);
        assert!(d.is_done());

        // Chunked: raw data only inside a chunk, never across its CRLF.
        let mut c = BodyDecoder::new(BodyKind::Chunked, &l);
        assert_eq!(c.data_ahead(), 0);
        let mut out = Vec::new();
        assert_eq!(c.decode(b"a\r\n012", &mut out, usize::MAX), Ok(6));
        assert_eq!((c.data_ahead(), &out[..]), (7, &b"012"[..]));
        assert_eq!(c.consume_data(100), 7);
        assert_eq!(c.data_ahead(), 0);
        assert_eq!(c.consume_data(1), 0);
        assert_eq!(c.decode(b"\r\n0\r\n\r\nNEXT", &mut out, usize::MAX), Ok(7));
        assert!(c.is_done());
    }

    #[test]
    fn decode_with_puts_what_decode_appends() {
        let l = Limits::default();
        for (input, body) in GOOD {
            for budget in [1, 3, 64, usize::MAX] {
                let mut d = BodyDecoder::new(BodyKind::Chunked, &l);
                let (mut got, mut pos, mut puts) = (Vec::new(), 0, 0);
                while !d.is_done() {
                    let (n, w) = d
                        .decode_with(&input[pos..], budget, |data| {
                            puts += data.len();
                            got.extend_from_slice(data);
                        })
                        .unwrap();
                    assert!(w <= budget && puts == got.len());
                    pos += n;
                }
                assert_eq!((&got[..], &input[pos..]), (*body, &b"NEXT"[..]));
            }
        }
    }

    /// Chunked bodies that decode; the bytes after `consumed` are "NEXT".
    const GOOD: &[(&[u8], &[u8])] = &[
        (b"5\r\nhello\r\n0\r\n\r\nNEXT", b"hello"),
        (
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nNEXT",
            b"hello world",
        ),
        (b"A\r\n0123456789\r\n0\r\n\r\nNEXT", b"0123456789"),
        (b"a\r\n0123456789\r\n000\r\n\r\nNEXT", b"0123456789"),
        (b"0000000000000003\r\nabc\r\n0\r\n\r\nNEXT", b"abc"),
        (b"0\r\n\r\nNEXT", b""),
        (b"3;a\r\nabc\r\n0;b=c\r\n\r\nNEXT", b"abc"),
        (b"3 ; a = \"q\\\"x;\" ; b\r\nabc\r\n0\r\n\r\nNEXT", b"abc"),
        (b"3;a=\"\";b=tok\r\nabc\r\n0\r\n\r\nNEXT", b"abc"),
        (
            b"3\r\nabc\r\n0\r\nX-T: v\r\nY:\r\nZ: a\tb \x80\r\n\r\nNEXT",
            b"abc",
        ),
        (b"3\r\n\r\n\n\r\n0\r\n\r\nNEXT", b"\r\n\n"),
    ];

    /// Checks each (chunked input, exact error) case whole and split at every
    /// offset; the error must be the same however the input arrives.
    fn check_rejects(cases: &[(&[u8], BodyError)]) {
        let l = Limits::default();
        for (input, err) in cases {
            for cut in (0..=input.len()).map(Some).chain([None]) {
                let got = run(BodyKind::Chunked, &l, input, cut);
                assert_eq!(
                    got,
                    Err(*err),
                    "{:?} cut {cut:?}",
                    String::from_utf8_lossy(input)
                );
            }
        }
    }

    /// One `#[test]` per rule family, one line per case.
    macro_rules! rejects {
        ($($name:ident: [$($case:expr,)*])*) => {$(
            #[test]
            fn $name() {
                let cases: &[(&[u8], BodyError)] = &[$($case,)*];
                check_rejects(cases);
            }
        )*};
    }

    rejects! {
        rejects_chunk_size: [
            (b"\r\n", E::InvalidChunkSize),
            (b"x\r\n", E::InvalidChunkSize),
            (b"-5\r\n", E::InvalidChunkSize),
            (b"+5\r\n", E::InvalidChunkSize),
            (b"0x5\r\n", E::InvalidChunkSize),
            (b" 5\r\n", E::InvalidChunkSize),
            (b"5 \r\n", E::InvalidChunkSize),
            (b"5\t\r\n", E::InvalidChunkSize),
            (b"00000000000000005\r\n", E::ChunkSizeOverflow),
            (b"fffffffffffffffff\r\n", E::ChunkSizeOverflow),
        ]
        rejects_missing_crlf: [
            (b"5\n", E::MissingChunkCrlf),
            (b"5\rx", E::MissingChunkCrlf),
            (b"5\r\nhelloX", E::MissingChunkCrlf),
            (b"5\r\nhello\n", E::MissingChunkCrlf),
            (b"5\r\nhello\r0", E::MissingChunkCrlf),
        ]
        rejects_chunk_extension: [
            (b"5;\r\n", E::InvalidChunkExtension),
            (b"5;=a\r\n", E::InvalidChunkExtension),
            (b"5;a=\r\n", E::InvalidChunkExtension),
            (b"5;a=\"x\r\n", E::InvalidChunkExtension),
            (b"5;a b\r\n", E::InvalidChunkExtension),
            (b"5;a \r\n", E::InvalidChunkExtension),
            (b"5;a=b c\r\n", E::InvalidChunkExtension),
            (b"5;a=b \r\n", E::InvalidChunkExtension),
            (b"5;a=\"b\"c\r\n", E::InvalidChunkExtension),
            (b"5;a\x00\r\n", E::InvalidChunkExtension),
        ]
        rejects_trailer: [
            (b"0\r\n: v\r\n\r\n", E::InvalidTrailer),
            (b"0\r\nX : v\r\n\r\n", E::InvalidTrailer),
            (b"0\r\n X: v\r\n\r\n", E::InvalidTrailer),
            (b"0\r\nX\r\n\r\n", E::InvalidTrailer),
            (b"0\r\nX: a\x00\r\n\r\n", E::InvalidTrailer),
            (b"0\r\nX: v\n\r\n", E::MissingChunkCrlf),
            (b"0\r\nX: v\rY", E::MissingChunkCrlf),
            (b"0\r\n\n", E::MissingChunkCrlf),
            (b"0\r\n\rX", E::MissingChunkCrlf),
        ]
    }

    #[test]
    fn chunked_good() {
        let l = Limits::default();
        for (input, body) in GOOD {
            let (out, consumed) = run(BodyKind::Chunked, &l, input, None).unwrap();
            assert_eq!((&out[..], &input[consumed..]), (*body, &b"NEXT"[..]));
        }
    }

    #[test]
    fn split_at_every_offset_gives_the_same_result() {
        let l = Limits::default();
        for (input, _) in GOOD {
            let whole = run(BodyKind::Chunked, &l, input, None);
            for cut in 0..=input.len() {
                let split = run(BodyKind::Chunked, &l, input, Some(cut));
                assert_eq!(
                    split,
                    whole,
                    "{:?} cut {cut}",
                    String::from_utf8_lossy(input)
                );
            }
        }
    }

    #[test]
    fn byte_by_byte_with_tiny_output_budget() {
        let l = Limits::default();
        for (input, body) in GOOD {
            let mut d = BodyDecoder::new(BodyKind::Chunked, &l);
            let mut out = Vec::new();
            let mut pos = 0;
            while !d.is_done() {
                let before = out.len();
                pos += d.decode(&input[pos..pos + 1], &mut out, 1).unwrap();
                assert!(out.len() - before <= 1);
            }
            assert_eq!((&out[..], &input[pos..]), (*body, &b"NEXT"[..]));
        }
    }

    #[test]
    fn max_out_bounds_each_call() {
        let l = Limits::default();
        let mut d = BodyDecoder::new(BodyKind::Chunked, &l);
        let mut out = Vec::new();
        let input = b"a\r\n0123456789\r\n0\r\n\r\n";
        let n = d.decode(input, &mut out, 4).unwrap();
        assert_eq!((n, &out[..]), (7, &b"0123"[..]));
        let n2 = d.decode(&input[n..], &mut out, 0).unwrap();
        assert_eq!(n2, 0);
        let n3 = d.decode(&input[n..], &mut out, 100).unwrap();
        assert_eq!(n + n3, input.len());
        assert!(d.is_done());
        assert_eq!(out, b"0123456789");
    }

    #[test]
    fn extension_and_trailer_limits() {
        let l = Limits {
            max_chunk_ext_size: 8,
            max_trailer_size: 12,
            ..Limits::default()
        };
        let ok = run(BodyKind::Chunked, &l, b"1;a=bcdef\r\nx\r\n0\r\n\r\n", None);
        assert_eq!(ok, Ok((b"x".to_vec(), 19)));
        let long = run(BodyKind::Chunked, &l, b"1;a=bcdefg\r\nx\r\n0\r\n\r\n", None);
        assert_eq!(long, Err(E::ChunkExtensionTooLong));
        let ok = run(BodyKind::Chunked, &l, b"0\r\nX: 12345\r\n\r\n", None);
        assert!(ok.is_ok());
        let big = run(BodyKind::Chunked, &l, b"0\r\nX: 123456\r\n\r\n", None);
        assert_eq!(big, Err(E::TrailerTooLarge));
    }

    #[test]
    fn content_length_and_empty() {
        let l = Limits::default();
        assert_eq!(
            run(BodyKind::Length(5), &l, b"helloNEXT", None),
            Ok((b"hello".to_vec(), 5))
        );
        assert_eq!(run(BodyKind::Length(0), &l, b"NEXT", None), Ok((vec![], 0)));
        assert_eq!(run(BodyKind::Empty, &l, b"NEXT", None), Ok((vec![], 0)));
        let mut d = BodyDecoder::new(BodyKind::Length(10), &l);
        assert_eq!(d.remaining_hint(), Some(10));
        let mut out = Vec::new();
        assert_eq!(d.decode(b"0123456789", &mut out, 3), Ok(3));
        assert_eq!((d.remaining_hint(), d.is_done()), (Some(7), false));
        assert_eq!(d.decode(b"3456789", &mut out, usize::MAX), Ok(7));
        assert_eq!((d.remaining_hint(), d.is_done()), (Some(0), true));
        assert!(BodyDecoder::new(BodyKind::Empty, &l).is_done());
    }

    #[test]
    fn chunked_hints_and_sticky_failure() {
        let l = Limits::default();
        let mut d = BodyDecoder::new(BodyKind::Chunked, &l);
        assert_eq!(d.remaining_hint(), None);
        let mut out = Vec::new();
        assert_eq!(d.decode(b"zz", &mut out, 10), Err(E::InvalidChunkSize));
        assert_eq!(
            d.decode(b"0\r\n\r\n", &mut out, 10),
            Err(E::InvalidChunkSize)
        );
        let mut d = BodyDecoder::new(BodyKind::Chunked, &l);
        assert_eq!(d.decode(b"0\r\n\r\n", &mut out, 10), Ok(5));
        assert_eq!((d.is_done(), d.remaining_hint()), (true, Some(0)));
        assert_eq!(d.decode(b"more", &mut out, 10), Ok(0));
    }

    #[test]
    fn round_trip_with_write_chunk() {
        let mut wire = Vec::new();
        let data: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
        for piece in data.chunks(4093) {
            crate::write_chunk(&mut wire, piece);
        }
        wire.extend_from_slice(crate::LAST_CHUNK);
        let got = run(BodyKind::Chunked, &Limits::default(), &wire, None);
        assert_eq!(got, Ok((data, wire.len())));
    }

    #[test]
    fn content_length_split_at_every_offset() {
        let l = Limits::default();
        let input = b"0123456789NEXT";
        for cut in 0..=input.len() {
            let got = run(BodyKind::Length(10), &l, input, Some(cut));
            assert_eq!(got, Ok((b"0123456789".to_vec(), 10)), "cut {cut}");
        }
    }
}
