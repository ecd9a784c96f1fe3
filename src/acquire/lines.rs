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
    for raw in bytes.split(|b| *b == b'\n') {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.is_empty() {
            continue;
        }
        if raw.len() > MAX_LINE {
            stats.too_long += 1;
            continue;
        }
        match std::str::from_utf8(raw) {
            Ok(line) => {
                stats.lines += 1;
                f(line);
            }
            Err(_) => stats.not_utf8 += 1,
        }
    }
}
