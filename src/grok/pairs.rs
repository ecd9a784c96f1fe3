//! Byte-pair sets: a test that rules a literal out of a text in a few instructions, before
//! any substring search.
//!
//! A parser such as `sshd-logs` tries its grok alternatives in order, and most fail on a
//! given line: each has a literal every match contains, and a memmem scan of the message
//! for it cost ~60–100 instructions, most of it searcher set-up on a short text. The
//! message's pair set is built once (a few instructions a byte), after which each
//! alternative whose literal has a pair the message lacks is skipped with one AND.

/// The byte pairs (bigrams) of a text, hashed into 64 bits (one register). Every pair of
/// a literal a text contains is a pair of that text, so a literal with a pair outside the
/// text's set is not in the text. The converse can fail (two pairs may share a bit): then a search
/// decides.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PairSet(u64);

impl PairSet {
    /// The set of `text`'s pairs.
    pub fn of(text: &[u8]) -> Self {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            return PairSet(unsafe { pair_bits_avx2(text) });
        }
        PairSet(pair_bits(text))
    }

    /// The pairs of both sets (of several literals a text must all contain).
    pub fn union(self, other: PairSet) -> PairSet {
        PairSet(self.0 | other.0)
    }

    /// False when `literal` (the set of a literal's pairs) cannot be in the text of this
    /// set; true when it may be.
    pub fn may_contain(&self, literal: &PairSet) -> bool {
        self.0 & literal.0 == literal.0
    }
}

/// What a text's pairs must hold for a pattern to match it: every pair of the literals
/// of at least one of the pattern's branches (most patterns have one branch). The default
/// admits every text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PairGate {
    /// The pairs every branch requires (of a one-branch pattern: all it requires), tested
    /// first: most texts fail here, with one AND.
    common: PairSet,
    /// With several branches, each branch's pairs: one must be in the text.
    branches: Box<[PairSet]>,
}

impl PairGate {
    /// A gate for a pattern whose branches require these literals each (a branch with
    /// no literal admits everything, as does a pattern with no branch known).
    pub fn of_branches<S: AsRef<str>>(branches: &[Vec<S>]) -> Self {
        let sets: Vec<PairSet> = branches
            .iter()
            .map(|runs| {
                runs.iter().fold(PairSet::default(), |all, r| {
                    all.union(PairSet::of(r.as_ref().as_bytes()))
                })
            })
            .collect();
        match sets.as_slice() {
            [] => PairGate::default(),
            [only] => PairGate {
                common: *only,
                branches: Box::default(),
            },
            _ => PairGate {
                common: PairSet(sets.iter().fold(u64::MAX, |all, b| all & b.0)),
                branches: sets.into_boxed_slice(),
            },
        }
    }

    /// False when no branch's literals can all be in a text with pairs `text`.
    pub fn admits(&self, text: PairSet) -> bool {
        text.may_contain(&self.common)
            && (self.branches.is_empty() || self.branches.iter().any(|b| text.may_contain(b)))
    }
}

/// A pair's bit: the top six bits of a multiplicative hash of the two bytes.
#[inline(always)]
fn pair_slot(a: u8, b: u8) -> u32 {
    (u32::from(a) | u32::from(b) << 8).wrapping_mul(0x9E37_79B1) >> 26
}

/// The bits of `text`'s pairs ([`PairSet::of`]), in a loop the compiler vectorizes where
/// the target allows (each pair is independent of the others).
#[inline(always)]
fn pair_bits(text: &[u8]) -> u64 {
    let Some(rest) = text.get(1..) else {
        return 0;
    };
    text.iter()
        .zip(rest)
        .fold(0u64, |bits, (&a, &b)| bits | 1 << pair_slot(a, b))
}

/// [`pair_bits`] compiled for AVX2, whose per-lane 64-bit shifts set four pairs' bits in
/// one instruction: ~2.5 instructions a byte, where one pair at a time cost ~5.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn pair_bits_avx2(text: &[u8]) -> u64 {
    pair_bits(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic bytes (xorshift), from a small alphabet so that literals recur.
    fn text(seed: &mut u64, len: usize, alphabet: &[u8]) -> Vec<u8> {
        (0..len)
            .map(|_| {
                *seed ^= *seed << 13;
                *seed ^= *seed >> 7;
                *seed ^= *seed << 17;
                alphabet[(*seed % alphabet.len() as u64) as usize]
            })
            .collect()
    }

    #[test]
    fn a_literal_in_a_text_is_never_ruled_out() {
        let mut seed = 0x1234_5678_9abc_def1;
        for round in 0..20_000 {
            let alphabet: &[u8] = if round % 2 == 0 {
                b"ab c"
            } else {
                b"abcdefghij :[]0123456789\xc3\xa9"
            };
            let t = text(&mut seed, 1 + round % 120, alphabet);
            let set = PairSet::of(&t);
            let start = (seed as usize) % t.len();
            let end = (start + 2 + round % 9).min(t.len());
            assert!(
                set.may_contain(&PairSet::of(&t[start..end])),
                "{t:?} {start}..{end}"
            );
            // The empty and one-byte literals have no pairs: anything may hold them.
            assert!(set.may_contain(&PairSet::of(&t[start..start + 1])));
        }
    }

    #[test]
    fn a_gate_admits_a_text_holding_every_literal_of_some_branch() {
        let gate = PairGate::of_branches(&[
            vec!["Did not receive identification string from "],
            vec!["Connection closed by ", " port "],
        ]);
        let pairs = |t: &str| PairSet::of(t.as_bytes());
        assert!(gate.admits(pairs("Connection closed by 1.2.3.4 port 22")));
        assert!(gate.admits(pairs("Did not receive identification string from 1.2.3.4")));
        assert!(!gate.admits(pairs("pam_unix(sshd:auth): check pass; user unknown")));
        assert!(PairGate::default().admits(PairSet::default()));
        let open = PairGate::of_branches(&[vec!["abc"], Vec::<&str>::new()]);
        assert!(
            open.admits(PairSet::default()),
            "a branch without literals admits all"
        );
    }

    #[test]
    fn every_way_of_building_a_set_gives_the_same_set() {
        let mut seed = 0x9e37_79b9_7f4a_7c15;
        for len in 0..200 {
            let t = text(&mut seed, len, b"abcdefghij :[]0123456789\xc3\xa9\x00\xff");
            let one_at_a_time = t
                .windows(2)
                .fold(0u64, |bits, w| bits | 1 << pair_slot(w[0], w[1]));
            // `of` takes the vectorized path where the CPU has one.
            assert_eq!(PairSet::of(&t).0, one_at_a_time, "{t:?}");
            assert_eq!(pair_bits(&t), one_at_a_time, "{t:?}");
        }
    }

    #[test]
    fn most_absent_literals_are_ruled_out() {
        let messages = [
            "Failed password for invalid user admin from 22.206.243.66 port 32392 ssh2",
            "Received disconnect from 22.206.243.66 port 32392:11: Bye Bye [preauth]",
            "Disconnected from invalid user admin 22.206.243.66 port 32392 [preauth]",
            "Connection closed by authenticating user root 1.2.3.4 port 22 [preauth]",
        ];
        let literals = [
            "Did not receive identification string",
            "Bad protocol version identification",
            "maximum authentication attempts exceeded",
            "Unable to negotiate with",
            "Timeout before authentication",
            "refused connect from",
            "PAM service(sshd) ignoring max retries",
            "not allowed because",
            "banner exchange",
        ];
        let mut passed = 0;
        for m in messages {
            let set = PairSet::of(m.as_bytes());
            for l in literals {
                assert!(!m.contains(l));
                passed += usize::from(set.may_contain(&PairSet::of(l.as_bytes())));
            }
        }
        assert!(passed <= 2, "{passed} of 36 absent literals passed");
    }
}
