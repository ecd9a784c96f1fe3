//! Getting a list's payload: over HTTP(S) with a conditional request, or from a file.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

/// The largest payload accepted.
pub const SIZE_LIMIT: u64 = 64 * 1024 * 1024;

/// How long a download may take, connection included.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// What a fetch brought.
#[derive(Debug)]
pub enum Fetched {
    /// The source did not change since the validators given.
    NotModified,
    /// A new payload, with its validators for the next fetch.
    Body {
        /// The payload.
        bytes: Vec<u8>,
        /// `ETag` (HTTP) or none.
        etag: Option<String>,
        /// `Last-Modified` (HTTP), or the file's modification time and size.
        last_modified: Option<String>,
    },
}

/// Downloads `url` (http or https only), sending `If-None-Match` / `If-Modified-Since` when
/// validators are known. Redirects are followed; errors name the URL and the cause.
pub fn url(
    agent: &ureq::Agent,
    url: &str,
    etag: Option<&str>,
    last_modified: Option<&str>,
    limit: u64,
) -> Result<Fetched, String> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(format!("{url}: only http:// and https:// URLs are fetched"));
    }
    let mut req = agent.get(url);
    if let Some(e) = etag {
        req = req.header("If-None-Match", e);
    }
    if let Some(m) = last_modified {
        req = req.header("If-Modified-Since", m);
    }
    let mut resp = req.call().map_err(|e| format!("{url}: {e}"))?;
    let status = resp.status().as_u16();
    if status == 304 {
        return Ok(Fetched::NotModified);
    }
    if !(200..300).contains(&status) {
        return Err(format!("{url}: HTTP {status}"));
    }
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let etag = header("etag");
    let last_modified = header("last-modified");
    let bytes = resp
        .body_mut()
        .with_config()
        .limit(limit)
        .read_to_vec()
        .map_err(|e| match e {
            ureq::Error::BodyExceedsLimit(_) => {
                format!("{url}: larger than the {limit}-byte limit")
            }
            e => format!("{url}: reading the body: {e}"),
        })?;
    Ok(Fetched::Body {
        bytes,
        etag,
        last_modified,
    })
}

/// Reads a list file; its modification time and size stand for a `Last-Modified`, so an
/// unchanged file is [`Fetched::NotModified`].
pub fn file(path: &Path, last_modified: Option<&str>, limit: u64) -> Result<Fetched, String> {
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    let f = std::fs::File::open(path).map_err(err)?;
    let meta = f.metadata().map_err(err)?;
    let stamp = meta
        .modified()
        .ok()
        .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| format!("{}.{:09}:{}", d.as_secs(), d.subsec_nanos(), meta.len()));
    if stamp.is_some() && stamp.as_deref() == last_modified {
        return Ok(Fetched::NotModified);
    }
    if meta.len() > limit {
        return Err(format!(
            "{}: {} bytes, larger than the {limit}-byte limit",
            path.display(),
            meta.len()
        ));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    f.take(limit + 1).read_to_end(&mut bytes).map_err(err)?;
    if bytes.len() as u64 > limit {
        return Err(format!(
            "{}: larger than the {limit}-byte limit",
            path.display()
        ));
    }
    Ok(Fetched::Body {
        bytes,
        etag: None,
        last_modified: stamp,
    })
}
