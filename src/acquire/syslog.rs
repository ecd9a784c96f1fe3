//! A syslog listener: UDP datagrams, or TCP streams framed by newlines or by octet counts
//! (RFC 6587). Messages are handed on as lines; the `syslog` parsers read their RFC 3164 or
//! RFC 5424 headers.

use super::{Batch, SourceId, Stop};
use crate::acquire::lines::MAX_LINE;
use crate::config::model::{SyslogListener, SyslogProtocol};
use crossbeam_channel::Sender;
use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

/// Starts the listener; its threads end when `stop` is set.
pub fn run(
    source: SourceId,
    listener: &SyslogListener,
    out: Sender<Batch>,
    stop: Stop,
) -> std::io::Result<Vec<std::thread::JoinHandle<()>>> {
    let addr = listener.listen.clone();
    match listener.protocol {
        SyslogProtocol::Udp => {
            let socket = UdpSocket::bind(&addr)?;
            socket.set_read_timeout(Some(Duration::from_millis(500)))?;
            tracing::info!(%addr, "syslog listener (udp)");
            let t = std::thread::Builder::new()
                .name("garrison-syslog-udp".into())
                .spawn(move || udp_loop(source, &socket, &out, &stop))?;
            Ok(vec![t])
        }
        SyslogProtocol::Tcp => {
            let listener = TcpListener::bind(&addr)?;
            listener.set_nonblocking(true)?;
            tracing::info!(%addr, "syslog listener (tcp)");
            let t = std::thread::Builder::new()
                .name("garrison-syslog-tcp".into())
                .spawn(move || tcp_accept_loop(source, &listener, &out, &stop))?;
            Ok(vec![t])
        }
    }
}

fn udp_loop(source: SourceId, socket: &UdpSocket, out: &Sender<Batch>, stop: &Stop) {
    let mut buf = vec![0u8; 65536];
    while !stop.is_set() {
        let n = match socket.recv_from(&mut buf) {
            Ok((n, _)) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "syslog receive failed");
                continue;
            }
        };
        let mut batch = Batch::new(source);
        push_message(&mut batch, &buf[..n]);
        if out.send(batch).is_err() {
            return;
        }
    }
}

/// One datagram or frame as one line: trailing newlines dropped, inner ones flattened.
fn push_message(batch: &mut Batch, msg: &[u8]) {
    let msg = msg.strip_suffix(b"\n").unwrap_or(msg);
    let msg = msg.strip_suffix(b"\r").unwrap_or(msg);
    if msg.is_empty() {
        return;
    }
    if msg.len() > MAX_LINE {
        batch.too_long += 1;
        return;
    }
    let start = batch.data.len();
    batch.push_line(msg);
    let end = batch.data.len() - 1;
    for b in &mut batch.data[start..end] {
        if *b == b'\n' {
            *b = b' ';
        }
    }
}

fn tcp_accept_loop(source: SourceId, listener: &TcpListener, out: &Sender<Batch>, stop: &Stop) {
    while !stop.is_set() {
        match listener.accept() {
            Ok((stream, peer)) => {
                let out = out.clone();
                let stop = stop.clone();
                let spawned = std::thread::Builder::new()
                    .name("garrison-syslog-conn".into())
                    .spawn(move || {
                        if let Err(e) = tcp_conn(source, stream, &out, &stop) {
                            tracing::debug!(%peer, error = %e, "syslog connection closed");
                        }
                    });
                if let Err(e) = spawned {
                    tracing::warn!(error = %e, "cannot serve a syslog connection");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => {
                tracing::warn!(error = %e, "syslog accept failed");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

fn tcp_conn(
    source: SourceId,
    stream: TcpStream,
    out: &Sender<Batch>,
    stop: &Stop,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_millis(500)))?;
    let mut reader = BufReader::new(stream);
    let mut frame = Vec::new();
    while !stop.is_set() {
        let first = match reader.fill_buf() {
            Ok([]) => return Ok(()),
            Ok(buf) => buf[0],
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) => return Err(e),
        };
        frame.clear();
        if first.is_ascii_digit() {
            // Octet counting: "<len> <message>".
            let mut len = Vec::new();
            reader.read_until(b' ', &mut len)?;
            let n: usize = std::str::from_utf8(len.trim_ascii())
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| std::io::Error::other("bad octet count"))?;
            if n > MAX_LINE {
                std::io::copy(&mut (&mut reader).take(n as u64), &mut std::io::sink())?;
                let mut batch = Batch::new(source);
                batch.too_long += 1;
                let _ = out.send(batch);
                continue;
            }
            frame.resize(n, 0);
            reader.read_exact(&mut frame)?;
        } else {
            (&mut reader)
                .take(MAX_LINE as u64 + 1)
                .read_until(b'\n', &mut frame)?;
        }
        let mut batch = Batch::new(source);
        push_message(&mut batch, &frame);
        if out.send(batch).is_err() {
            return Ok(());
        }
    }
    Ok(())
}
