//! `pipe serve` from the outside, on loopback only, every request bounded in size and time:
//! answers equal to `pipe predict`'s, both JSON shapes, the token, every refusal as one JSON
//! line, slow and vanishing clients, concurrent clients, metrics and a clean SIGTERM.

use crate::common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{pipe, scratch, text};

const TOKEN: &str = "s3cret-token";

/// A running `pipe serve` and its port; killed if the test fails before it is stopped.
struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(run: &Path, token_file: &Path, extra: &[&str]) -> Server {
    let mut child = pipe()
        .args([
            "serve",
            run.to_str().unwrap(),
            "--port",
            "0",
            "--token-file",
        ])
        .arg(token_file)
        .args([
            "--max-texts",
            "8",
            "--body-limit",
            "4096",
            "--read-timeout-s",
            "1",
        ])
        .args(extra)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let port = line
        .split("http://127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    // Keep draining stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    Server { child, port }
}

/// One HTTP/1.1 exchange on a fresh connection: status, headers (lowercased) and body.
fn request(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> (u16, String, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{auth}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let answer = String::from_utf8(answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_string())
}

fn post(port: u16, path: &str, body: &str) -> (u16, String, String) {
    request(port, "POST", path, Some(TOKEN), body.as_bytes())
}

/// A refusal: its status, and a body of one JSON line with `error` and `error_type`.
fn assert_refused(answer: (u16, String, String), status: u16, says: &str) {
    let (got, _, body) = &answer;
    assert_eq!(*got, status, "{body}");
    assert!(!body.trim_end().contains('\n'), "{body}");
    let value: serde_json::Value = serde_json::from_str(body).unwrap();
    let error = value["error"].as_str().unwrap();
    assert!(error.contains(says), "{error}");
    assert!(value["error_type"].is_string());
}

#[test]
fn a_served_model_answers_as_predict_does_and_refuses_what_it_must() {
    let scratch = scratch("serve");
    let runs = scratch.join("runs");
    let mut sets = vec!["--set=stages.train.epochs=1".to_string()];
    // `trained` names the runs dir itself.
    sets.extend(
        common::quick(&runs, 200)
            .into_iter()
            .filter(|s| !s.starts_with("--runs-dir")),
    );
    let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
    let run = common::trained(Path::new("pipelines/agnews_transformer.toml"), &sets, &runs);
    let token_file = scratch.join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();

    // Beyond loopback without a token: refused before anything listens.
    let out = pipe()
        .args([
            "serve",
            run.to_str().unwrap(),
            "--host",
            "0.0.0.0",
            "--port",
            "0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    assert!(text(&out).1.contains("--token-file"), "{:?}", text(&out));

    let server = start(&run, &token_file, &[]);
    let port = server.port;
    let texts = [
        "The striker scored twice in the cup final",
        "Stocks fell sharply after the bank's report",
        "A new chip doubles the speed of phones",
    ];
    let (status, head, body) = post(
        port,
        "/v1/predict",
        &serde_json::json!({"texts": texts}).to_string(),
    );
    assert_eq!(status, 200, "{body}");
    assert!(head.contains("content-type: application/json"), "{head}");
    let served: serde_json::Value = serde_json::from_str(&body).unwrap();
    let predicted = pipe()
        .args(["predict", run.to_str().unwrap(), "--json"])
        .args(texts)
        .output()
        .unwrap();
    let predicted = common::json_lines(&text(&predicted).0);
    for (s, p) in served["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&predicted)
    {
        assert_eq!(s["text"], p["text"]);
        assert_eq!(s["label"], p["label"]);
        for (class, value) in p["probabilities"].as_object().unwrap() {
            // Batchmates of other lengths change the padding, so the last bits may differ.
            let served = s["probabilities"][class].as_f64().unwrap();
            assert!((served - value.as_f64().unwrap()).abs() < 1e-5, "{s} {p}");
        }
    }
    // text-embeddings-inference's shape: one list of scores, highest first; or one per input.
    let (status, _, body) = post(
        port,
        "/predict",
        &serde_json::json!({"inputs": texts[0]}).to_string(),
    );
    assert_eq!(status, 200, "{body}");
    let scores: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(scores.as_array().unwrap().len(), 4);
    assert_eq!(scores[0]["label"], predicted[0]["label"]);
    assert!(scores[0]["score"].as_f64() >= scores[1]["score"].as_f64());
    let (status, _, body) = post(
        port,
        "/predict",
        &serde_json::json!({"inputs": texts}).to_string(),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        3
    );

    // The token, and every refusal as one JSON line.
    let (status, _, _) = request(port, "GET", "/healthz", None, b"");
    assert_eq!(status, 200);
    let body = br#"{"texts": ["x"]}"#;
    let no_token = request(port, "POST", "/v1/predict", None, body);
    assert!(
        no_token.1.contains("www-authenticate: bearer"),
        "{}",
        no_token.1
    );
    assert_refused(no_token, 401, "Authorization: Bearer");
    assert_refused(
        request(port, "POST", "/v1/predict", Some("wrong"), body),
        401,
        "token",
    );
    assert_refused(request(port, "GET", "/metrics", None, b""), 401, "token");
    assert_refused(
        post(port, "/v1/predict", "{\"texts\": [\"a\""),
        400,
        "not JSON",
    );
    assert_refused(
        request(
            port,
            "POST",
            "/v1/predict",
            Some(TOKEN),
            b"{\"texts\": [\"\xff\"]}",
        ),
        400,
        "not UTF-8",
    );
    assert_refused(
        post(port, "/v1/predict", r#"{"text": ["a"]}"#),
        400,
        "field \"texts\"",
    );
    assert_refused(
        post(port, "/v1/predict", r#"{"texts": ["a", ""]}"#),
        422,
        "texts[1] is blank",
    );
    let nine = serde_json::json!({"texts": vec!["a"; 9]}).to_string();
    assert_refused(post(port, "/v1/predict", &nine), 422, "at most 8");
    let big = serde_json::json!({"texts": ["a".repeat(5000)]}).to_string();
    assert_refused(
        post(port, "/v1/predict", &big),
        413,
        "larger than 4096 bytes",
    );
    assert_refused(post(port, "/nowhere", "{}"), 404, "no such route");
    assert_refused(
        request(port, "DELETE", "/healthz", None, b""),
        405,
        "method not allowed",
    );

    // A body that stops arriving is cut off after the read timeout (1 s); headers that never
    // end have the connection closed; a client that leaves mid-body costs nothing.
    let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let head = format!(
        "POST /v1/predict HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 100\r\n\r\n{{\"texts\""
    );
    slow.write_all(head.as_bytes()).unwrap();
    let mut answer = String::new();
    let started = Instant::now();
    let _ = slow.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let mut stalled = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stalled
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stalled
        .write_all(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut rest = Vec::new();
    let started = Instant::now();
    let _ = stalled.read_to_end(&mut rest);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the stalled connection stayed open"
    );
    for _ in 0..20 {
        let mut gone = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let head = format!(
            "POST /v1/predict HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 40\r\n\r\n{{\"te"
        );
        gone.write_all(head.as_bytes()).unwrap();
        drop(gone);
    }

    // 16 clients at once, 8 requests each, good and bad mixed: every good one answered.
    let clients: Vec<_> = (0..16)
        .map(|c| {
            std::thread::spawn(move || {
                let mut statuses = Vec::new();
                for r in 0..8 {
                    let body = match (c + r) % 4 {
                        3 => "{\"texts\": nope}".to_string(),
                        _ => serde_json::json!({"texts": [format!("client {c} asks about the match {r}")]}).to_string(),
                    };
                    statuses.push(((c + r) % 4 == 3, post(port, "/v1/predict", &body).0));
                }
                statuses
            })
        })
        .collect();
    for client in clients {
        for (bad, status) in client.join().unwrap() {
            assert_eq!(status, if bad { 400 } else { 200 });
        }
    }

    let (status, head, metrics) = request(port, "GET", "/metrics", Some(TOKEN), b"");
    assert_eq!(status, 200);
    assert!(
        head.contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    for line in [
        "pipe_requests_total{status=\"401\"} 3",
        "pipe_requests_total{status=\"413\"} 1",
        "pipe_request_duration_seconds_bucket{le=\"+Inf\"}",
        "pipe_batch_texts_count",
        "pipe_queue_depth 0",
    ] {
        assert!(metrics.contains(line), "{line} not in\n{metrics}");
    }
    let ok: u64 = (metrics.lines())
        .find_map(|l| l.strip_prefix("pipe_requests_total{status=\"200\"} "))
        .unwrap()
        .parse()
        .unwrap();
    // Four single requests (healthz included) and 96 good ones from the clients; this one is
    // counted once answered.
    assert_eq!(ok, 4 + 96, "{metrics}");

    // SIGTERM: the server stops accepting, finishes, and exits 0.
    let mut server = server;
    // SAFETY: kill(2) on the child's pid, which the test owns and has not reaped.
    unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "pipe serve did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
}
