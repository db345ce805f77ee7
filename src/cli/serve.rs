//! `pipe serve RUN`: answers predictions over HTTP (see [`crate::serve`]).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};

use super::eval::{Inference, TrainedRun, Weights};
use crate::data::EncodedSplit;
use crate::serve::batcher::Batching;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  pipe serve runs/agnews_transformer\n  curl -s localhost:8080/v1/predict -d '{\"texts\": [\"The team won the final\"]}'\n  curl -s localhost:8080/predict -d '{\"inputs\": \"Stocks fell sharply\"}'\n  pipe serve runs/sports_csv --host 0.0.0.0 --port 9000 --token-file secrets/serve-token"
)]
pub struct ServeArgs {
    /// A run folder, or a folder of runs (`runs/<pipeline>`): its newest usable run.
    pub run: PathBuf,
    /// The address to listen on. Anything but a loopback address needs --token-file (or
    /// --allow-unauthenticated).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// The port (0: any free one; the address is printed).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// A file holding the bearer token every route but /healthz requires.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Listen beyond loopback without a token.
    #[arg(long)]
    pub allow_unauthenticated: bool,
    /// Texts taken from the queue for one batch at most.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_batch: u32,
    /// Texts the model runs at once: a batch is sorted by length and run this many at a time.
    /// Default: 16 where the vectorizer pads to each batch's longest text (short texts are then
    /// not padded to the longest of a large batch), else --max-batch.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub model_batch: Option<u32>,
    /// How long (ms) the first request of a batch waits for others to join it. 0: a batch is
    /// what waits when the model is free (measured best on model A from 1 to 64 clients).
    #[arg(long, default_value_t = 0)]
    pub max_wait_ms: u64,
    /// Requests that may wait for the model; more are answered 503 with Retry-After.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub queue: u32,
    /// Texts one request may hold (more: 422).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_texts: u32,
    /// Bytes one request body may hold (more: 413).
    #[arg(long, default_value_t = 1 << 20)]
    pub body_limit: usize,
    /// Seconds a client may take to send its headers, and then its body.
    #[arg(long, default_value_t = 10)]
    pub read_timeout_s: u64,
    /// Connections open at once; more wait to be accepted.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    #[command(flatten)]
    pub weights: Weights,
    #[command(flatten)]
    pub inference: Inference,
}

pub fn run(args: ServeArgs) -> Result<i32> {
    let token = match &args.token_file {
        Some(file) => match read_token(file) {
            Ok(token) => Some(token),
            Err(e) => {
                errln!("--token-file {}: error: {e}", file.display());
                return Ok(super::EXIT_INVALID);
            }
        },
        None => None,
    };
    if !args.host.is_loopback() && token.is_none() && !args.allow_unauthenticated {
        errln!(
            "--host {}: error: anyone who can reach this address could use the model; give \
             --token-file FILE, or --allow-unauthenticated to serve it openly",
            args.host
        );
        return Ok(super::EXIT_INVALID);
    }
    if let Err(e) = args.inference.device.usable() {
        errln!("--device: error: {e}");
        return Ok(super::EXIT_INVALID);
    }
    let trained = match TrainedRun::open(&args.run, &args.weights)? {
        Ok(t) => t,
        Err(code) => return Ok(code),
    };
    let address = SocketAddr::new(args.host, args.port);
    let listener = std::net::TcpListener::bind(address).map_err(|e| {
        super::Invalid(format!(
            "--port {}: cannot listen on {address}: {e}",
            args.port
        ))
    })?;
    let options = crate::serve::Options {
        batching: Batching {
            max_batch: args.max_batch as usize,
            max_wait: Duration::from_millis(args.max_wait_ms),
        },
        queue: args.queue as usize,
        max_texts: args.max_texts as usize,
        body_limit: args.body_limit,
        read_timeout: Duration::from_secs(args.read_timeout_s.max(1)),
        max_connections: args.max_connections as usize,
        token,
    };
    let labels = trained.loaded.spec.dataset.labels.clone();
    let run_path = trained.run.path.clone();
    // Measured on this CPU (docs/benchmarks.md#serving): MiniLM, padded per batch, served 64
    // clients 1.7x faster in runs of 16 than of 64; model A, padded to a fixed length, 1.1x
    // slower.
    let model_batch = match (args.model_batch, trained.vectorizer.padding().dynamic) {
        (Some(n), _) => n as usize,
        (None, true) => 16,
        (None, false) => args.max_batch as usize,
    };
    let (inference, batch_size) = (args.inference.clone(), model_batch);
    let model: crate::serve::RunModel = Box::new(move |next, done| {
        let vectorizer = trained.vectorizer.clone();
        trained.probabilities_each(
            &inference,
            batch_size,
            &mut || {
                let Some(texts) = next()? else {
                    return Ok(None);
                };
                let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                Ok(Some(EncodedSplit::encode(
                    &vectorizer,
                    &refs,
                    &vec![0; refs.len()],
                )))
            },
            done,
        )
    });
    crate::serve::serve(listener, labels, model, options, |bound| {
        errln!(
            "serving {} on http://{bound}: POST /v1/predict, POST /predict, GET /healthz, GET /metrics",
            run_path.display()
        );
    })?;
    Ok(0)
}

/// The token in `file`: its text without surrounding whitespace, which must not be empty.
fn read_token(file: &std::path::Path) -> Result<String> {
    let text = std::fs::read_to_string(file).context("cannot read it")?;
    let token = text.trim();
    anyhow::ensure!(!token.is_empty(), "the file is empty");
    anyhow::ensure!(
        !token.contains(char::is_whitespace),
        "the token holds whitespace: put the token alone in the file"
    );
    Ok(token.to_string())
}
