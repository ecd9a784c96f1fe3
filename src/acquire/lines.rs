//! Splitting bytes into lines, counting what is skipped: shared by the live sources and by
//! `replay` / `explain`.

/// Lines longer than this are skipped (counted), so one huge line cannot stall the engine.
pub const MAX_LINE: usize = 64 * 1024;

/// What was skipped while reading.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReadStats {
    /// Non-empty lines handed on.
    pub lines: u64,
    /// Lines that were not UTF-8.
    pub not_utf8: u64,
    /// Lines over [`MAX_LINE`].
    pub too_long: u64,
}

/// Calls `f` with every non-empty line of `bytes` (without `\n` / `\r\n`).
pub fn for_each_line(bytes: &[u8], stats: &mut ReadStats, mut f: impl FnMut(&str)) {
    hand_on_all(bytes, stats, &mut f);
}

/// Hands on every line of `bytes` (lines separated by `\n`, the last one unterminated).
/// The whole run is checked for UTF-8 at once: one pass over a buffer costs a fraction of
/// a check per line (~200 instructions an nginx line), and a valid run's lines are valid.
/// A run with invalid bytes is checked line by line, so only those lines are dropped.
fn hand_on_all(bytes: &[u8], stats: &mut ReadStats, f: &mut impl FnMut(&str)) {
    match std::str::from_utf8(bytes) {
        Ok(text) => {
            // `str::split` searches with core's generic `memchr`, slower on log lines.
            let mut rest = text;
            while let Some(pos) = crate::find_byte(b'\n', rest.as_bytes()) {
                let (line, tail) = rest.split_at_checked(pos).unwrap_or((rest, ""));
                hand_on_str(line, stats, f);
                rest = tail.get(1..).unwrap_or("");
            }
            hand_on_str(rest, stats, f);
        }
        Err(_) => bytes
            .split(|&b| b == b'\n')
            .for_each(|raw| hand_on(raw, stats, f)),
    }
}

/// Hands on one line (no `\n` inside): without a trailing `\r`; empty lines are dropped,
/// over-long and non-UTF-8 ones counted and dropped.
fn hand_on(raw: &[u8], stats: &mut ReadStats, f: &mut impl FnMut(&str)) {
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    if raw.is_empty() {
        return;
    }
    if raw.len() > MAX_LINE {
        stats.too_long += 1;
        return;
    }
    match std::str::from_utf8(raw) {
        Ok(line) => {
            stats.lines += 1;
            f(line);
        }
        Err(_) => stats.not_utf8 += 1,
    }
}

/// [`hand_on`] for a line already known to be UTF-8.
fn hand_on_str(line: &str, stats: &mut ReadStats, f: &mut impl FnMut(&str)) {
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.is_empty() {
        return;
    }
    if line.len() > MAX_LINE {
        stats.too_long += 1;
        return;
    }
    stats.lines += 1;
    f(line);
}

/// Like [`for_each_line`], but streams from `reader` through a fixed buffer, so memory
/// stays bounded whatever the input size (a line over [`MAX_LINE`] is skipped without
/// being buffered whole). `consumed` is called with the bytes read so far, for progress.
pub fn for_each_line_in(
    reader: &mut impl std::io::Read,
    stats: &mut ReadStats,
    mut consumed: impl FnMut(u64),
    mut f: impl FnMut(&str),
) -> std::io::Result<()> {
    const CHUNK: usize = 256 * 1024;
    let mut buf: Vec<u8> = vec![0; CHUNK + MAX_LINE];
    // `buf[start..end]` holds bytes not yet handed on; `skipping`: inside an over-long line.
    let (mut start, mut end) = (0usize, 0usize);
    let mut skipping = false;
    let mut total = 0u64;
    loop {
        if start > 0 {
            buf.copy_within(start..end, 0);
            end -= start;
            start = 0;
        }
        let n = match reader.read(&mut buf[end..]) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        total += n as u64;
        end += n;
        let eof = n == 0;
        if skipping && let Some(pos) = memchr::memchr(b'\n', &buf[start..end]) {
            // The end of an over-long line.
            start += pos + 1;
            skipping = false;
        }
        if !skipping && let Some(last) = memchr::memrchr(b'\n', &buf[start..end]) {
            // Every whole line buffered, at once.
            hand_on_all(&buf[start..start + last], stats, &mut f);
            start += last + 1;
        }
        if eof {
            if !skipping && start < end {
                hand_on(&buf[start..end], stats, &mut f);
            }
            consumed(total);
            return Ok(());
        }
        if end - start > MAX_LINE {
            // No newline within MAX_LINE bytes: drop what is buffered, skip to the next one.
            if !skipping {
                stats.too_long += 1;
            }
            skipping = true;
            start = end;
        }
        consumed(total);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(input: &[u8]) -> (Vec<String>, ReadStats) {
        let mut stats = ReadStats::default();
        let mut out = Vec::new();
        let mut r = input;
        for_each_line_in(&mut r, &mut stats, |_| {}, |l| out.push(l.to_owned())).unwrap();
        (out, stats)
    }

    #[test]
    fn streaming_matches_whole_buffer() {
        let mut input = Vec::new();
        for i in 0..100_000 {
            input.extend_from_slice(format!("line {i}\r\n\n").as_bytes());
        }
        input.extend_from_slice(b"last without newline");
        let (lines, stats) = collect(&input);
        let mut expected = Vec::new();
        let mut st = ReadStats::default();
        for_each_line(&input, &mut st, |l| expected.push(l.to_owned()));
        assert_eq!(lines, expected);
        assert_eq!(stats.lines, st.lines);
    }

    #[test]
    fn lines_lose_their_ending_and_empty_ones_are_dropped() {
        let mut stats = ReadStats::default();
        let mut out = Vec::new();
        let input = b"a\r\n\nb c\r\r\n\r\n\xff\n\nlast";
        for_each_line(input, &mut stats, |l| out.push(l.to_owned()));
        assert_eq!(out, ["a", "b c\r", "last"]);
        assert_eq!((stats.lines, stats.not_utf8, stats.too_long), (3, 1, 0));
        let (streamed, _) = collect(input);
        assert_eq!(streamed, out);
    }

    /// Hands out its bytes a few at a time, as a pipe or a growing file may.
    struct Trickle<'a> {
        rest: &'a [u8],
        seed: u64,
    }

    impl std::io::Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            self.seed ^= self.seed << 13;
            self.seed ^= self.seed >> 7;
            self.seed ^= self.seed << 17;
            let n = (self.seed % 70_000) as usize + 1;
            let n = n.min(out.len()).min(self.rest.len());
            out[..n].copy_from_slice(&self.rest[..n]);
            self.rest = &self.rest[n..];
            Ok(n)
        }
    }

    #[test]
    fn lines_are_the_same_however_the_input_is_read() {
        // Lines of every kind: ASCII, multi-byte, invalid bytes (alone and beside valid
        // lines), `\r`, empty, just under and over the length limit, far over it.
        let kinds: [&[u8]; 8] = [
            b"Nov 18 09:46:40 web01 sshd[1]: Failed password for root from 1.2.3.4",
            "caf\u{e9} \u{1f600} \u{4e2d}".as_bytes(),
            b"bad \xff\xfe bytes",
            b"\xe9t\xe9 latin-1\r",
            b"",
            b"\r",
            &[b'y'; MAX_LINE],
            &[b'z'; MAX_LINE + 1],
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut input = Vec::new();
        for _ in 0..4000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let k = (seed % 100) as usize;
            // Long lines are rare, as in logs.
            let kind = match k {
                0 => 6,
                1 => 7,
                2 => 8,
                _ => k % 6,
            };
            match kinds.get(kind) {
                Some(bytes) => input.extend_from_slice(bytes),
                None => input.extend(std::iter::repeat_n(b'w', 5 * MAX_LINE)),
            }
            input.push(b'\n');
        }
        input.extend_from_slice(b"last \xc3");
        // The reference: split on `\n`, each line on its own.
        let mut want = (Vec::new(), ReadStats::default());
        for raw in input.split(|&b| b == b'\n') {
            hand_on(raw, &mut want.1, &mut |l: &str| want.0.push(l.to_owned()));
        }
        let mut whole = (Vec::new(), ReadStats::default());
        for_each_line(&input, &mut whole.1, |l| whole.0.push(l.to_owned()));
        let mut streamed = (Vec::new(), ReadStats::default());
        let mut reader = Trickle {
            rest: &input,
            seed: 7,
        };
        for_each_line_in(
            &mut reader,
            &mut streamed.1,
            |_| {},
            |l| streamed.0.push(l.to_owned()),
        )
        .expect("reads");
        let counts = |s: &ReadStats| (s.lines, s.not_utf8, s.too_long);
        assert!(
            want.1.not_utf8 > 100 && want.1.too_long > 20,
            "{:?}",
            want.1
        );
        assert_eq!(whole.0, want.0);
        assert_eq!(counts(&whole.1), counts(&want.1));
        // Streaming keeps no more than a limit's worth of a line: one far over it is
        // counted once, as the whole-buffer path counts it.
        assert_eq!(streamed.0, want.0);
        assert_eq!(counts(&streamed.1), counts(&want.1));
    }

    #[test]
    fn streaming_skips_over_long_lines() {
        let mut input = b"a\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 3 * MAX_LINE));
        input.extend_from_slice(b"\nb\n\xff\xfe\nc");
        let (lines, stats) = collect(&input);
        assert_eq!(lines, ["a", "b", "c"]);
        assert_eq!(stats.too_long, 1);
        assert_eq!(stats.not_utf8, 1);
    }
}
