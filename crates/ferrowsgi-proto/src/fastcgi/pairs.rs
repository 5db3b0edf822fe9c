//! FastCGI name-value pairs (spec §3.4), read incrementally.
//!
//! A pair is a name length, a value length (each one byte below 128, else
//! four bytes with the top bit set), then the name and the value. The pairs
//! of `FCGI_PARAMS` form one stream, so any part of a pair may be split
//! across records; this parser keeps its place between calls.

use super::Fault;
use crate::ParseError;

/// What a complete pair is handed to: `(name, value)`.
pub(super) type OnPair<'a> = dyn FnMut(&[u8], &[u8]) -> Result<(), Fault> + 'a;

/// Which part of a pair comes next.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Stage {
    /// The name's length.
    #[default]
    NameLen,
    /// The value's length.
    ValueLen,
    /// The name and value bytes.
    Bytes,
}

/// An incremental name-value pair parser.
#[derive(Debug, Default)]
pub(super) struct Pairs {
    /// Which part comes next.
    stage: Stage,
    /// Bytes of the length being read.
    len_buf: [u8; 4],
    /// How many of `len_buf` are read.
    len_have: u8,
    /// The name's length, once read.
    name_len: usize,
    /// The value's length, once read.
    value_len: usize,
    /// Name and value bytes of a pair split across calls (never more than
    /// the budget allowed when the lengths were read).
    bytes: Vec<u8>,
}

impl Pairs {
    /// Whether the stream stands between two pairs (a place where it may
    /// end).
    pub(super) fn is_between(&self) -> bool {
        self.stage == Stage::NameLen && self.len_have == 0
    }

    /// Bytes held for a split pair (for tests of the bound).
    #[cfg(test)]
    pub(super) fn kept_capacity(&self) -> usize {
        self.bytes.capacity()
    }

    /// Reads `data`, calling `on_pair` with each complete pair. A pair whose
    /// name and value together pass `budget` (what is left of the head-size
    /// limit) fails with 431 before any of its bytes are kept.
    pub(super) fn feed(
        &mut self,
        mut data: &[u8],
        mut budget: usize,
        on_pair: &mut OnPair<'_>,
    ) -> Result<(), Fault> {
        while !data.is_empty() {
            match self.stage {
                Stage::NameLen | Stage::ValueLen => {
                    let Some(len) = self.read_length(&mut data) else {
                        continue;
                    };
                    if self.stage == Stage::NameLen {
                        self.name_len = len;
                        self.stage = Stage::ValueLen;
                    } else {
                        self.value_len = len;
                        if self.name_len.saturating_add(len) > budget {
                            return Err(Fault::Head(ParseError::HeadTooLarge));
                        }
                        self.stage = Stage::Bytes;
                        self.bytes.clear();
                        if self.name_len + self.value_len == 0 {
                            self.finish(&[], &mut budget, on_pair)?;
                        }
                    }
                }
                Stage::Bytes => {
                    let total = self.name_len + self.value_len;
                    if self.bytes.is_empty() && data.len() >= total {
                        // The whole pair is here: no copy.
                        let (pair, rest) = data.split_at(total);
                        data = rest;
                        self.finish(pair, &mut budget, on_pair)?;
                    } else {
                        let n = (total - self.bytes.len()).min(data.len());
                        self.bytes.extend_from_slice(&data[..n]);
                        data = &data[n..];
                        if self.bytes.len() == total {
                            let bytes = std::mem::take(&mut self.bytes);
                            let r = self.finish(&bytes, &mut budget, on_pair);
                            self.bytes = bytes;
                            self.bytes.clear();
                            r?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Reads length bytes from the front of `data`; the length once whole.
    fn read_length(&mut self, data: &mut &[u8]) -> Option<usize> {
        let have = usize::from(self.len_have);
        let first = if have == 0 { data[0] } else { self.len_buf[0] };
        let need = if first & 0x80 == 0 { 1 } else { 4 };
        let n = (need - have).min(data.len());
        self.len_buf[have..have + n].copy_from_slice(&data[..n]);
        *data = &data[n..];
        if have + n < need {
            self.len_have = (have + n) as u8;
            return None;
        }
        self.len_have = 0;
        Some(if need == 1 {
            usize::from(first)
        } else {
            let b = self.len_buf;
            (usize::from(b[0] & 0x7f) << 24)
                | (usize::from(b[1]) << 16)
                | (usize::from(b[2]) << 8)
                | usize::from(b[3])
        })
    }

    /// Hands a complete pair on and gets ready for the next.
    fn finish(
        &mut self,
        pair: &[u8],
        budget: &mut usize,
        on_pair: &mut OnPair<'_>,
    ) -> Result<(), Fault> {
        self.stage = Stage::NameLen;
        *budget = budget.saturating_sub(pair.len());
        let (name, value) = pair.split_at(self.name_len.min(pair.len()));
        on_pair(name, value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Pair = (Vec<u8>, Vec<u8>);

    fn collect(chunks: &[&[u8]], budget: usize) -> Result<Vec<Pair>, Fault> {
        let mut p = Pairs::default();
        let mut got = Vec::new();
        for c in chunks {
            p.feed(c, budget, &mut |n, v| {
                got.push((n.to_vec(), v.to_vec()));
                Ok(())
            })?;
        }
        assert!(p.is_between());
        Ok(got)
    }

    #[test]
    fn short_and_long_lengths_split_anywhere() {
        let mut wire = vec![4, 0x80, 0, 1, 0x2c];
        wire.extend_from_slice(b"NAME");
        wire.extend_from_slice(&[b'v'; 300]);
        wire.extend_from_slice(&[0x80, 0, 0, 1, 1, b'X', b'y']);
        let want = vec![
            (b"NAME".to_vec(), vec![b'v'; 300]),
            (b"X".to_vec(), b"y".to_vec()),
        ];
        assert_eq!(collect(&[&wire], 1000).unwrap(), want);
        for i in 0..=wire.len() {
            for j in i..=wire.len() {
                let got = collect(&[&wire[..i], &wire[i..j], &wire[j..]], 1000).unwrap();
                assert_eq!(got, want, "split at {i}, {j}");
            }
        }
    }

    #[test]
    fn a_pair_past_the_budget_is_refused_before_its_bytes() {
        // Announces a 2 GiB value and sends none of it.
        let wire = [1, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(
            collect(&[&wire], 65536),
            Err(Fault::Head(ParseError::HeadTooLarge))
        );
        // The budget shrinks with each pair.
        let two = [1, 1, b'a', b'b', 1, 1, b'c', b'd'];
        assert_eq!(
            collect(&[&two], 3),
            Err(Fault::Head(ParseError::HeadTooLarge))
        );
        assert_eq!(collect(&[&two], 4).unwrap().len(), 2);
    }
}
