//! Local API throughput on loopback: `GET /v1/decisions?ip=` with 100,000 active decisions
//! (keep-alive hyper connections, several concurrent), and a stream startup with 1,000,000
//! decisions read chunk by chunk (the server writes it page by page; resident memory is
//! sampled while it streams). Run with `cargo bench --bench lapi`.
//!
//! Targets: ≥ 20,000 req/s with p99 < 2 ms; startup stream < 2 s with bounded memory.

#[path = "../tests/lapi_common/mod.rs"]
mod lapi_common;

use bytes::Bytes;
use garrison::store::{NewDecision, Target, now_millis};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use lapi_common::Server;
use std::time::{Duration, Instant};

const CONNECTIONS: usize = 8;
const QUERY_SECS: u64 = 5;

fn fill(s: &Server, n: u32) {
    let until = now_millis() + 4 * 3_600_000;
    let mut batch = Vec::with_capacity(10_000);
    for i in 0..n {
        // Public-looking addresses in 11.0.0.0/8 onwards.
        let ip = std::net::Ipv4Addr::from(0x0b00_0000u32 + i);
        batch.push(NewDecision {
            origin: if i % 3 == 0 { "CAPI" } else { "crowdsec" }.into(),
            scenario: "crowdsecurity/ssh-bf".into(),
            decision_type: "ban".into(),
            target: Target::Ip(ip.into()),
            until: until + i64::from(i % 1000),
            simulated: false,
        });
        if batch.len() == 10_000 {
            s.state.store.add(None, std::mem::take(&mut batch));
        }
    }
    s.state.store.add(None, batch);
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

async fn connect(addr: &str) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender
}

fn query_bench(s: &Server, key: &str, n: u32) {
    let addr = s.url.trim_start_matches("http://").to_owned();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    let (count, mut lat, hits) = rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(QUERY_SECS);
        let mut tasks = Vec::new();
        for c in 0..CONNECTIONS {
            let addr = addr.clone();
            let key = key.to_owned();
            tasks.push(tokio::spawn(async move {
                let mut sender = connect(&addr).await;
                let mut lat = Vec::with_capacity(200_000);
                let mut hits = 0u64;
                let mut i: u32 = c as u32 * 7919;
                while Instant::now() < deadline {
                    i = i.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    // Half the queries hit a banned address, half miss.
                    let ip = std::net::Ipv4Addr::from(0x0b00_0000u32 + (i % (2 * n)));
                    let req = hyper::Request::get(format!("/v1/decisions?ip={ip}"))
                        .header("host", "localhost")
                        .header("x-api-key", &key)
                        .header("user-agent", "bench/v1")
                        .body(Empty::<Bytes>::new())
                        .expect("request");
                    let t = Instant::now();
                    sender.ready().await.expect("ready");
                    let resp = sender.send_request(req).await.expect("response");
                    assert_eq!(resp.status(), 200);
                    let body = resp.into_body().collect().await.expect("body").to_bytes();
                    lat.push(t.elapsed().as_micros() as u32);
                    if body.as_ref() != b"null" {
                        hits += 1;
                    }
                }
                (lat, hits)
            }));
        }
        let mut all = Vec::new();
        let mut hits = 0;
        for t in tasks {
            let (l, h) = t.await.expect("task");
            all.extend(l);
            hits += h;
        }
        (all.len(), all, hits)
    });
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    let rps = count as f64 / QUERY_SECS as f64;
    println!(
        "GET /v1/decisions?ip= with {n} active decisions, {CONNECTIONS} keep-alive connections: {rps:.0} req/s, p50 {} µs, p99 {} µs, max {} µs ({hits} hits of {count}) [target ≥ 20000 req/s, p99 < 2000 µs]",
        pct(0.50),
        pct(0.99),
        lat[lat.len() - 1]
    );
}

fn stream_bench(s: &Server, key: &str, n: u32) {
    let addr = s.url.trim_start_matches("http://").to_owned();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    let before = rss_kib();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(before));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                peak.fetch_max(rss_kib(), std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let (elapsed, bytes, chunks) = rt.block_on(async {
        let mut sender = connect(&addr).await;
        let req = hyper::Request::get("/v1/decisions/stream?startup=true")
            .header("host", "localhost")
            .header("x-api-key", key)
            .header("user-agent", "bench/v1")
            .body(Empty::<Bytes>::new())
            .expect("request");
        let t = Instant::now();
        let resp = sender.send_request(req).await.expect("response");
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body();
        let (mut bytes, mut chunks) = (0usize, 0usize);
        let mut tail = Vec::new();
        while let Some(f) = body.frame().await {
            if let Ok(d) = f.expect("frame").into_data() {
                bytes += d.len();
                chunks += 1;
                tail = d.to_vec();
            }
        }
        assert!(tail.ends_with(b"]}"), "complete JSON");
        (t.elapsed(), bytes, chunks)
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = sampler.join();
    let peak = peak.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "stream startup with {n} decisions: {:.2} s, {:.1} MB in {chunks} chunks, resident memory +{:.1} MB during the stream (before {:.0} MB) [target < 2 s, memory ≪ body]",
        elapsed.as_secs_f64(),
        bytes as f64 / 1e6,
        peak.saturating_sub(before) as f64 / 1024.0,
        before as f64 / 1024.0
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let s = Server::start();
    let key = s.bouncer("bench");
    fill(&s, 100_000);
    s.state.store.flush();
    query_bench(&s, &key, 100_000);
    drop(s);

    let s = Server::start();
    let key = s.bouncer("bench");
    fill(&s, 1_000_000);
    s.state.store.flush();
    stream_bench(&s, &key, 1_000_000);
}
