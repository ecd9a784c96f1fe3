//! Substring search for the literal every match of a grok alternative contains, tuned for
//! the short texts log messages are.
//!
//! memchr's `memmem` searcher is built for long haystacks: on a 70-byte sshd message one
//! search cost ~150 instructions, most of it dispatch and set-up. Here a short text is
//! searched for the literal's rarest byte (memchr's own frequency heuristic picks it) and
//! each place it occurs is compared with the literal; long texts still go to `memmem`.

use memchr::arch::all::packedpair::Pair;
use memchr::memmem;

/// Texts up to this long are searched by rare byte.
const SHORT: usize = 256;

/// Finds one literal in texts.
#[derive(Debug, Clone)]
pub struct LiteralFinder {
    literal: Box<[u8]>,
    /// The literal's rarest byte's offset in it, and the second rarest one's.
    rare: (usize, usize),
    long: memmem::Finder<'static>,
}

impl LiteralFinder {
    /// A finder of `literal`.
    pub fn new(literal: &[u8]) -> Self {
        let rare = Pair::new(literal).map_or((0, 0), |p| {
            (usize::from(p.index1()), usize::from(p.index2()))
        });
        LiteralFinder {
            literal: literal.into(),
            rare,
            long: memmem::Finder::new(literal).into_owned(),
        }
    }

    /// Whether `text` contains the literal.
    #[inline]
    pub fn is_in(&self, text: &[u8]) -> bool {
        let n = self.literal.len();
        if text.len() > SHORT || n == 0 {
            return self.long.find(text).is_some();
        }
        let (r1, r2) = self.rare;
        let (Some(&b1), Some(&b2)) = (self.literal.get(r1), self.literal.get(r2)) else {
            return false;
        };
        // The literal starts at most at `text.len() - n`: its rarest byte, `r1` later.
        let Some(last_start) = text.len().checked_sub(n) else {
            return false;
        };
        let Some(window) = text.get(r1..=last_start + r1) else {
            return false;
        };
        crate::find_byte_where(b1, window, |start| {
            text.get(start + r2) == Some(&b2) && text.get(start..start + n) == Some(&self.literal)
        })
        .is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic bytes (xorshift) from a small alphabet, so that literals recur.
    fn text(seed: &mut u64, len: usize) -> Vec<u8> {
        (0..len)
            .map(|_| {
                *seed ^= *seed << 13;
                *seed ^= *seed >> 7;
                *seed ^= *seed << 17;
                b"ab c:"[(*seed % 5) as usize]
            })
            .collect()
    }

    #[test]
    fn finds_a_literal_exactly_where_a_naive_search_does() {
        let mut seed = 0x9E37_79B9_7F4A_7C15;
        for round in 0..20_000 {
            let lit_len = 1 + round % 6;
            let literal = text(&mut seed, lit_len);
            // Short texts by rare byte, and some past the limit for memmem.
            let len = if round % 50 == 0 {
                SHORT + 1 + round % 40
            } else {
                round % 40
            };
            let haystack = text(&mut seed, len);
            let naive = haystack.windows(lit_len).any(|w| w == literal.as_slice());
            assert_eq!(
                LiteralFinder::new(&literal).is_in(&haystack),
                naive,
                "{:?} in {:?}",
                String::from_utf8_lossy(&literal),
                String::from_utf8_lossy(&haystack)
            );
        }
    }

    #[test]
    fn finds_literals_at_either_end_and_not_past_them() {
        let f = LiteralFinder::new(b"Failed ");
        assert!(f.is_in(b"Failed password for root"));
        assert!(f.is_in(b"PAM: Failed "));
        assert!(!f.is_in(b"PAM: Failed"));
        assert!(!f.is_in(b"ailed "));
        assert!(!f.is_in(b""));
        assert!(LiteralFinder::new(b"").is_in(b"anything"));
    }
}
