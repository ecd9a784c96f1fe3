//! Standard output for commands that print one record per alert or line (`replay -o json`,
//! `explain`): a forensic run can print tens of thousands of them, and the standard
//! output's line buffering made each one a write system call (a fifth of the time of a
//! million-line sshd replay into a file). Records are buffered and, on a terminal, still
//! shown as each one ends.

use std::io::{BufWriter, IsTerminal, StdoutLock, Write};

/// Buffered standard output, flushed at the end of each record when it is a terminal.
pub struct Records {
    out: BufWriter<StdoutLock<'static>>,
    live: bool,
}

impl Records {
    /// Standard output, locked for the command's run.
    pub fn stdout() -> Self {
        let stdout = std::io::stdout();
        Records {
            live: stdout.is_terminal(),
            out: BufWriter::with_capacity(64 * 1024, stdout.lock()),
        }
    }

    /// Ends a record: on a terminal it is shown now.
    pub fn end_record(&mut self) -> std::io::Result<()> {
        if self.live { self.out.flush() } else { Ok(()) }
    }
}

impl Write for Records {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.out.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.out.write_all(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}
