//! A load client for `pipe serve` and any server with the same JSON (scripts/serve-bench.sh):
//! CLIENTS threads, each on one keep-alive HTTP/1.1 connection, POST one text per request for
//! SECONDS, then print throughput and latency percentiles as one JSON line.
//!
//!   cargo run --release --example serve_load -- PORT CLIENTS SECONDS TEXTS_FILE [PATH] [BAD_EVERY]
//!
//! PATH is `/v1/predict` (pipe's shape, the default) or `/predict` (text-embeddings-inference's
//! shape); every BAD_EVERY-th request of a client is malformed JSON and must be answered 400.
//! Only the standard library, so that it measures the server and not an HTTP stack.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

struct Tally {
    latencies: Vec<Duration>,
    ok: u64,
    refused_as_asked: u64,
    failed: u64,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        eprintln!("usage: serve_load PORT CLIENTS SECONDS TEXTS_FILE [PATH] [BAD_EVERY]");
        std::process::exit(2);
    }
    let port: u16 = args[0].parse().expect("PORT");
    let clients: usize = args[1].parse().expect("CLIENTS");
    let seconds: f64 = args[2].parse().expect("SECONDS");
    let texts: Vec<String> = std::fs::read_to_string(&args[3])
        .expect("TEXTS_FILE")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(String::from)
        .collect();
    let path = args.get(4).cloned().unwrap_or_else(|| "/v1/predict".into());
    let bad_every: usize = args.get(5).map_or(0, |b| b.parse().expect("BAD_EVERY"));
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let (texts, path) = (texts.clone(), path.clone());
            std::thread::spawn(move || client(port, c, &texts, &path, bad_every, until))
        })
        .collect();
    let mut all = Tally {
        latencies: Vec::new(),
        ok: 0,
        refused_as_asked: 0,
        failed: 0,
    };
    for t in threads {
        let tally = t.join().expect("a client thread");
        all.latencies.extend(tally.latencies);
        all.ok += tally.ok;
        all.refused_as_asked += tally.refused_as_asked;
        all.failed += tally.failed;
    }
    let wall = started.elapsed().as_secs_f64();
    all.latencies.sort();
    let pct = |p: f64| {
        let n = all.latencies.len();
        if n == 0 {
            return 0.0;
        }
        all.latencies[((p * n as f64).ceil() as usize).clamp(1, n) - 1].as_secs_f64() * 1e3
    };
    println!(
        "{{\"clients\": {clients}, \"seconds\": {wall:.2}, \"texts_per_s\": {:.1}, \"p50_ms\": {:.2}, \"p99_ms\": {:.2}, \"ok\": {}, \"refused_as_asked\": {}, \"failed\": {}}}",
        all.ok as f64 / wall,
        pct(0.50),
        pct(0.99),
        all.ok,
        all.refused_as_asked,
        all.failed
    );
}

fn client(
    port: u16,
    c: usize,
    texts: &[String],
    path: &str,
    bad_every: usize,
    until: Instant,
) -> Tally {
    let mut tally = Tally {
        latencies: Vec::new(),
        ok: 0,
        refused_as_asked: 0,
        failed: 0,
    };
    let mut conn: Option<(TcpStream, BufReader<TcpStream>)> = None;
    let mut i = c * 7919;
    while Instant::now() < until {
        i += 1;
        let bad = bad_every > 0 && i.is_multiple_of(bad_every);
        let text = &texts[i % texts.len()];
        let body = match (bad, path) {
            (true, _) => "{\"texts\": [\"unterminated".to_string(),
            (false, "/predict") => format!("{{\"inputs\": {}}}", quoted(text)),
            (false, _) => format!("{{\"texts\": [{}]}}", quoted(text)),
        };
        if conn.is_none() {
            let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
            stream.set_nodelay(true).ok();
            let reader = BufReader::new(stream.try_clone().expect("clone"));
            conn = Some((stream, reader));
        }
        let (stream, reader) = conn.as_mut().expect("connected");
        let sent = Instant::now();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let status = stream
            .write_all(head.as_bytes())
            .and_then(|()| stream.write_all(body.as_bytes()))
            .ok()
            .and_then(|()| read_response(reader));
        match status {
            Some(200) if !bad => {
                tally.ok += 1;
                tally.latencies.push(sent.elapsed());
            }
            Some(400) if bad => tally.refused_as_asked += 1,
            _ => {
                tally.failed += 1;
                conn = None;
            }
        }
    }
    tally
}

/// The status of one response, its body read and dropped.
fn read_response(reader: &mut BufReader<TcpStream>) -> Option<u16> {
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let status = line.split(' ').nth(1)?.parse().ok()?;
    let mut length = 0usize;
    loop {
        line.clear();
        reader.read_line(&mut line).ok()?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(status)
}

/// `text` as a JSON string.
fn quoted(text: &str) -> String {
    let mut out = String::from("\"");
    for ch in text.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
