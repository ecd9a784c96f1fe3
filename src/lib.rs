//! garrison: a declarative, CrowdSec-compatible intrusion-prevention appliance.
//!
//! The daemon is a pipeline, one module per stage:
//! acquire → parse → detect → decide → store → enforce / serve,
//! with the configuration compiler (`config`, `rules`, `compile`, `expr`) in front.

pub mod acquire;
pub mod alert;
pub mod allocator;
pub mod api;
pub mod blocklists;
pub mod capi;
pub mod cli;
pub mod compile;
pub mod config;
pub mod daemon;
pub mod data;
pub mod decide;
pub mod detect;
pub mod enforce;
pub mod engine;
pub mod event;
pub mod expr;
pub mod grok;
pub mod metrics;
pub mod parse;
pub mod rules;
pub mod schema;
pub mod store;

/// Hashes values looked up in tables built from the rules (data lists, the verdict cache,
/// the scenario index): lookups cannot grow or reshape them, so a fast seeded hash is
/// enough. Keys an attacker inserts (bucket keys, `distinct` values) use SipHash, see
/// `detect`.
pub(crate) type FastState = foldhash::fast::RandomState;

/// `n` in decimal, written at the end of `buf` (no formatting machinery: the decision
/// stream writes millions of numbers, the parser statics one or two a line).
pub(crate) fn decimal(n: u64, buf: &mut [u8; 20]) -> &str {
    let mut at = buf.len();
    let mut rest = n;
    loop {
        at -= 1;
        buf[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[at..]).unwrap_or_default()
}

/// The first position of `byte` in `text` where `accept` holds (tried in order). Log
/// lines and their fields are short: on x86-64 this is memchr's SSE2 routine, which
/// inlines, where memchr's default search reaches its AVX2 routine through three calls
/// that cost more than the search on a text of a few dozen bytes.
#[inline]
pub(crate) fn find_byte_where(
    byte: u8,
    text: &[u8],
    mut accept: impl FnMut(usize) -> bool,
) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    if let Some(one) = memchr::arch::x86_64::sse2::memchr::One::new(byte) {
        return one.iter(text).find(|&i| accept(i));
    }
    memchr::memchr_iter(byte, text).find(|&i| accept(i))
}

/// The first position of `byte` in `text` ([`find_byte_where`]).
#[inline]
pub(crate) fn find_byte(byte: u8, text: &[u8]) -> Option<usize> {
    find_byte_where(byte, text, |_| true)
}

/// The first position of `a` or `b` in `text`: [`find_byte`] for two bytes.
#[inline]
pub(crate) fn find_either(a: u8, b: u8, text: &[u8]) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    if let Some(two) = memchr::arch::x86_64::sse2::memchr::Two::new(a, b) {
        return two.find(text);
    }
    memchr::memchr2(a, b, text)
}

/// The last position of `byte` in `text`: [`find_byte`] from the end.
#[inline]
pub(crate) fn rfind_byte(byte: u8, text: &[u8]) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    if let Some(one) = memchr::arch::x86_64::sse2::memchr::One::new(byte) {
        return one.rfind(text);
    }
    memchr::memrchr(byte, text)
}

/// Whether two byte strings are equal. The texts compared line after line (programs, bucket
/// keys, user names, timestamps, addresses) are short: up to 16 bytes they are compared in
/// two overlapping word loads each, where `==` on slices calls `memcmp` (~20 instructions
/// a call, several calls a line).
#[inline(always)]
pub(crate) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let words = |x: &[u8], n: usize| -> Option<(u64, u64)> {
        match n {
            8.. => Some((
                u64::from_le_bytes(*x.first_chunk::<8>()?),
                u64::from_le_bytes(*x.last_chunk::<8>()?),
            )),
            4.. => Some((
                u64::from(u32::from_le_bytes(*x.first_chunk::<4>()?)),
                u64::from(u32::from_le_bytes(*x.last_chunk::<4>()?)),
            )),
            _ => Some((x.iter().fold(0, |w, &c| w << 8 | u64::from(c)), 0)),
        }
    };
    match a.len() {
        0..=16 => words(a, a.len()) == words(b, b.len()),
        _ => a == b,
    }
}

/// [`same_bytes`] on text.
#[inline(always)]
pub(crate) fn same_text(a: &str, b: &str) -> bool {
    same_bytes(a.as_bytes(), b.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_byte_where_finds_the_first_accepted_position_at_every_length() {
        for len in 0..=100usize {
            let text: Vec<u8> = (0..len).map(|i| [b'a', b'\n', b'b'][i % 3]).collect();
            let naive =
                |accept: &dyn Fn(usize) -> bool| (0..len).find(|&i| text[i] == b'\n' && accept(i));
            assert_eq!(find_byte(b'\n', &text), naive(&|_| true), "len {len}");
            assert_eq!(
                find_byte_where(b'\n', &text, |i| i > len / 2),
                naive(&|i| i > len / 2),
                "len {len}"
            );
            assert_eq!(find_byte(b'z', &text), None);
        }
    }

    #[test]
    fn same_bytes_agrees_with_slice_equality_at_every_length_and_position() {
        for len in 0..=40usize {
            let a: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            assert!(same_bytes(&a, &a.clone()), "len {len}");
            // One byte different, wherever it is: every byte is compared.
            for at in 0..len {
                for flip in [1u8, 0x80] {
                    let mut b = a.clone();
                    b[at] ^= flip;
                    assert!(!same_bytes(&a, &b), "len {len}, byte {at}");
                }
            }
            // A prefix or an extension is not equal, nor a zero-padded copy.
            if len > 0 {
                assert!(!same_bytes(&a, &a[..len - 1]));
            }
            let mut longer = a.clone();
            longer.push(0);
            assert!(!same_bytes(&a, &longer));
            assert!(!same_bytes(&longer, &a));
        }
        assert!(same_text("sshd", "sshd"));
        assert!(!same_text("sshd", "sshe"));
    }
}
