//! Task names held inline.

use std::fmt;
use std::ops::Deref;

/// A kernel task name (`comm`, at most 15 bytes), held inline: an event carries two to three of
/// them, and as heap strings each cost an allocation and a free per event on the capture path
/// (the collector decodes up to ~2M events/s on a core). Room for 23 bytes: a name that is not
/// UTF-8 is kept lossily (U+FFFD is 3 bytes), cut at a character boundary past that.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Comm {
    len: u8,
    bytes: [u8; Comm::CAPACITY],
}

impl Comm {
    /// Bytes a name may hold.
    pub const CAPACITY: usize = 23;

    /// `s`, cut at the last character boundary within [`Comm::CAPACITY`] bytes.
    pub fn new(s: &str) -> Comm {
        let mut end = s.len().min(Self::CAPACITY);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        let mut bytes = [0u8; Self::CAPACITY];
        bytes[..end].copy_from_slice(&s.as_bytes()[..end]);
        Comm {
            len: end as u8,
            bytes,
        }
    }

    /// A NUL-terminated (or full) kernel char array, lossily when it is not UTF-8.
    pub fn from_c(raw: &[u8]) -> Comm {
        // the kernel's comm arrays are 16 bytes: find the NUL and check ASCII in one word (the
        // capture path decodes two to three names an event)
        if let Ok(word) = <[u8; 16]>::try_from(raw) {
            const LOW: u128 = u128::from_le_bytes([0x01; 16]);
            const HIGH: u128 = u128::from_le_bytes([0x80; 16]);
            let w = u128::from_le_bytes(word);
            // the lowest set bit marks the first zero byte exactly (higher ones may be borrows)
            let zeros = w.wrapping_sub(LOW) & !w & HIGH;
            let len = if zeros == 0 {
                16
            } else {
                zeros.trailing_zeros() as usize / 8
            };
            let name = if len == 16 {
                w
            } else {
                w & ((1u128 << (len * 8)) - 1)
            };
            if name & HIGH == 0 {
                let mut bytes = [0u8; Self::CAPACITY];
                bytes[..16].copy_from_slice(&name.to_le_bytes());
                return Comm {
                    len: len as u8,
                    bytes,
                };
            }
        }
        let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
        match std::str::from_utf8(&raw[..end]) {
            Ok(s) => Comm::new(s),
            Err(_) => Comm::new(&String::from_utf8_lossy(&raw[..end])),
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        // SAFETY: `bytes[..len]` is always a prefix of a &str cut at a char boundary (`new`).
        unsafe { std::str::from_utf8_unchecked(&self.bytes[..self.len as usize]) }
    }
}

impl Deref for Comm {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Comm {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for Comm {
    fn from(s: &str) -> Comm {
        Comm::new(s)
    }
}

impl From<String> for Comm {
    fn from(s: String) -> Comm {
        Comm::new(&s)
    }
}

impl From<&String> for Comm {
    fn from(s: &String) -> Comm {
        Comm::new(s)
    }
}

impl PartialEq<str> for Comm {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Comm {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_long_ones_are_cut_at_a_char_boundary() {
        assert_eq!(Comm::new("cw-holder").as_str(), "cw-holder");
        assert_eq!(Comm::from_c(b"kworker/0:1\0\0\0\0\0"), "kworker/0:1");
        assert_eq!(Comm::from_c(b"0123456789abcdef"), "0123456789abcdef");
        // not UTF-8: kept lossily
        assert_eq!(Comm::from_c(b"a\xffb\0"), "a\u{fffd}b");
        // the word-at-a-time path for 16-byte arrays agrees with the general one
        for name in ["", "a", "cw-holder", "0123456789abcde", "0123456789abcdef"] {
            let mut raw = [0u8; 16];
            raw[..name.len()].copy_from_slice(name.as_bytes());
            if name.len() < 15 {
                raw[name.len() + 1] = b'x'; // bytes after the NUL are not part of it
            }
            assert_eq!(Comm::from_c(&raw), Comm::new(name), "{name:?}");
            assert_eq!(Comm::from_c(&raw[..]).as_str(), name);
        }
        let mut raw = *b"caf\xc3\xa9\0zzzzzzzzzz";
        assert_eq!(Comm::from_c(&raw), "café");
        raw[3] = 0xff;
        assert_eq!(Comm::from_c(&raw), "caf\u{fffd}\u{fffd}");
        // 8 × 'é' (2 bytes) = 16 bytes fits; 12 × = 24 bytes is cut to 11 characters (22 bytes)
        assert_eq!(Comm::new(&"é".repeat(12)).as_str(), "é".repeat(11));
        assert_eq!(Comm::default().as_str(), "");
        assert_eq!(std::mem::size_of::<Comm>(), 24);
        assert_eq!(std::mem::size_of::<Option<Comm>>(), 25);
    }
}
