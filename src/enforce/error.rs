//! Errors of the enforcement component.

use std::io;

/// Why an nftables operation failed.
#[derive(Debug, thiserror::Error)]
pub enum EnforceError {
    /// The `nft` program could not be started.
    #[error(
        "cannot run `nft` ({0}); install the nftables package (Debian: `apt install nftables`)"
    )]
    NftMissing(#[source] io::Error),
    /// `nft` ran and refused the script.
    #[error("nft refused to {what}: {stderr}")]
    Nft {
        /// What garrison was doing.
        what: String,
        /// `nft`'s own error output.
        stderr: String,
    },
    /// The netlink socket could not be opened or used.
    #[error("netlink: {0}")]
    Netlink(#[source] io::Error),
    /// The kernel refused a request.
    #[error("the kernel refused to {what}: {source}{hint}", hint = hint(source))]
    Kernel {
        /// What garrison asked for.
        what: String,
        /// The kernel's error code.
        source: io::Error,
    },
    /// The configured table name cannot be used safely in nft scripts.
    #[error(
        "invalid nftables table name {0:?}: use 1 to 64 letters, digits, `_` or `-`, starting with a letter or `_`"
    )]
    InvalidTableName(String),
    /// The kernel answered something garrison does not understand.
    #[error("unexpected netlink answer: {0}")]
    Protocol(String),
}

fn hint(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EPERM) => " (garrison needs CAP_NET_ADMIN to manage nftables)",
        Some(libc::EAFNOSUPPORT) | Some(libc::EPROTONOSUPPORT) => {
            " (is the nf_tables kernel module available?)"
        }
        _ => "",
    }
}

impl EnforceError {
    /// A kernel error from a raw errno.
    pub(crate) fn kernel(what: impl Into<String>, errno: i32) -> Self {
        EnforceError::Kernel {
            what: what.into(),
            source: io::Error::from_raw_os_error(errno),
        }
    }

    /// The kernel's errno, when the kernel refused the request.
    pub fn errno(&self) -> Option<i32> {
        match self {
            EnforceError::Kernel { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}
