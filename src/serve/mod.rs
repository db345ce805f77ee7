//! `pipe serve`: a trained model answering predictions over HTTP/1.1 with JSON.
//!
//! - `POST /v1/predict {"texts": [...]}`: each text's label and class probabilities, the same
//!   objects `pipe predict --json` prints. `POST /predict {"inputs": ...}`: the same in the shape
//!   of Hugging Face's text-embeddings-inference. `GET /healthz`, `GET /metrics` (Prometheus).
//! - Requests wait in a bounded queue and are batched together for the model ([`batcher`]),
//!   which runs on its own thread with every core; a full queue answers 503 with Retry-After.
//! - Limits: body size (413), texts per request (422), header and body read timeouts (slow
//!   clients), connections at once. Every refusal is a one-line JSON error ([`api`]).
//! - With a token, every route but `/healthz` needs `Authorization: Bearer <token>`, compared
//!   through BLAKE3 digests in constant time.
//! - SIGTERM or Ctrl-C: stop accepting, let the requests in flight finish, return.

pub mod api;
pub mod batcher;
pub mod metrics;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use api::ApiError;
use batcher::{Batches, Batching, Job, Queue, Refused};
use metrics::Metrics;

/// How the server runs.
#[derive(Clone, Debug)]
pub struct Options {
    pub batching: Batching,
    /// Requests that may wait for the model at once.
    pub queue: usize,
    /// Texts one request may hold.
    pub max_texts: usize,
    /// Bytes one request body may hold.
    pub body_limit: usize,
    /// How long a client may take to send its headers, and then its body.
    pub read_timeout: Duration,
    /// Connections open at once; more wait to be accepted.
    pub max_connections: usize,
    /// The bearer token every route but `/healthz` requires.
    pub token: Option<String>,
}

/// The model's loop: it loads the model, then calls `next` for a batch's texts until it gives
/// `None`, handing each batch's class probabilities (row order) to `done`.
pub type RunModel = Box<
    dyn FnOnce(
            &mut dyn FnMut() -> Result<Option<Vec<String>>>,
            &mut dyn FnMut(Vec<Vec<f32>>) -> Result<()>,
        ) -> Result<()>
        + Send,
>;

/// What every request handler shares.
struct App {
    labels: Vec<String>,
    queue: Queue,
    metrics: Arc<Metrics>,
    options: Options,
    token: Option<blake3::Hash>,
}

/// Serves on `listener` until SIGTERM or Ctrl-C; `ready` is called with the address once the
/// model is loaded and requests are answered.
pub fn serve(
    listener: std::net::TcpListener,
    labels: Vec<String>,
    run_model: RunModel,
    options: Options,
    ready: impl FnOnce(SocketAddr),
) -> Result<()> {
    let metrics = Arc::new(Metrics::default());
    let (queue, waiting) = Queue::new(options.queue, metrics.clone());
    let batches = Batches::new(waiting, options.batching, metrics.clone());
    let (loaded, is_loaded) = std::sync::mpsc::channel::<()>();
    let model = std::thread::Builder::new()
        .name("model".into())
        .spawn(move || model_loop(run_model, batches, loaded))
        .context("starting the model thread")?;
    if is_loaded.recv().is_err() {
        // The loop ended before asking for a batch: loading failed.
        return match model.join() {
            Ok(Err(e)) => Err(e.context("loading the model")),
            _ => Err(anyhow::anyhow!("the model thread stopped while loading")),
        };
    }
    let app = Arc::new(App {
        labels,
        queue,
        metrics,
        token: options.token.as_deref().map(|t| blake3::hash(t.as_bytes())),
        options,
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the HTTP runtime")?;
    let address = listener.local_addr()?;
    runtime.block_on(accept(listener, app, || ready(address)))?;
    drop(runtime);
    // Every queue handle is gone with the app: the model thread finishes what it holds and ends.
    match model.join() {
        Ok(result) => result,
        Err(_) => Err(anyhow::anyhow!("the model thread panicked")),
    }
}

/// Runs the model on batches from `batches` until the queue closes; `loaded` is told once the
/// model asks for its first batch.
fn model_loop(
    run_model: RunModel,
    batches: Batches,
    loaded: std::sync::mpsc::Sender<()>,
) -> Result<()> {
    let batches = std::cell::RefCell::new(batches);
    let mut loaded = Some(loaded);
    let result = run_model(
        &mut || {
            if let Some(loaded) = loaded.take() {
                let _ = loaded.send(());
            }
            Ok(batches.borrow_mut().next_batch())
        },
        &mut |probs| batches.borrow_mut().done(probs),
    );
    if let Err(e) = &result {
        tracing::error!(error = %format!("{e:#}"), "the model failed");
        batches.borrow_mut().fail(&format!("{e:#}"));
    }
    result
}

/// Accepts connections until a shutdown signal, then waits for those open to finish.
async fn accept(
    listener: std::net::TcpListener,
    app: Arc<App>,
    ready: impl FnOnce(),
) -> Result<()> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let router = axum::Router::new()
        .route("/v1/predict", post(predict_pipe))
        .route("/predict", post(predict_tei))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(app.clone());
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let slots = Arc::new(tokio::sync::Semaphore::new(app.options.max_connections));
    let mut connections = tokio::task::JoinSet::new();
    let signal = shutdown_signal();
    tokio::pin!(signal);
    ready();
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot?,
            () = &mut signal => break,
        };
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // A connection reset before it was accepted, or out of descriptors for a moment.
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = &mut signal => break,
        };
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(app.options.read_timeout)
            .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        let mut stopping = stopping.clone();
        connections.spawn(async move {
            let _slot = slot;
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stopping.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
        // Finished connections are reaped as they go, so the set does not grow.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    errln!("stopping: finishing the requests in flight");
    let _ = stop.send(true);
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(30), drained)
        .await
        .is_err()
    {
        tracing::warn!("connections still open after 30 s: closed");
    }
    Ok(())
}

/// SIGTERM, SIGINT (Ctrl-C).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => std::future::pending().await,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn predict_pipe(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    app.answer(Instant::now(), app.predict(&headers, body, false).await)
}

async fn predict_tei(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    app.answer(Instant::now(), app.predict(&headers, body, true).await)
}

async fn healthz(State(app): State<Arc<App>>) -> Response {
    let body = serde_json::json!({"status": "ok"}).to_string();
    app.answer(Instant::now(), Ok(json_response(StatusCode::OK, body)))
}

async fn metrics(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let started = Instant::now();
    let text = app.authorized(&headers).map(|()| {
        let mut response = app.metrics.render().into_response();
        let kind = HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8");
        response.headers_mut().insert(header::CONTENT_TYPE, kind);
        response
    });
    app.answer(started, text)
}

async fn not_found(State(app): State<Arc<App>>) -> Response {
    let message = "no such route: POST /v1/predict, POST /predict, GET /healthz, GET /metrics";
    app.answer(Instant::now(), Err(ApiError::new(404, "NotFound", message)))
}

async fn method_not_allowed(State(app): State<Arc<App>>) -> Response {
    let message = "method not allowed: POST /v1/predict, POST /predict, GET /healthz, GET /metrics";
    app.answer(
        Instant::now(),
        Err(ApiError::new(405, "MethodNotAllowed", message)),
    )
}

fn json_response(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let json = HeaderValue::from_static("application/json");
    response.headers_mut().insert(header::CONTENT_TYPE, json);
    response
}

impl App {
    /// The response for `result`, counted in the metrics.
    fn answer(&self, started: Instant, result: Result<Response, ApiError>) -> Response {
        let response = match result {
            Ok(response) => response,
            Err(e) => {
                let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
                let mut response = json_response(status, e.body());
                let headers = response.headers_mut();
                match e.status {
                    503 => headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1")),
                    401 => {
                        headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))
                    }
                    _ => None,
                };
                response
            }
        };
        let status = response.status().as_u16();
        self.metrics.answered(status, started.elapsed());
        response
    }

    fn authorized(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(want) = &self.token else {
            return Ok(());
        };
        let given = (headers.get(header::AUTHORIZATION))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        // blake3::Hash compares in constant time; hashing first hides the token's length.
        match given.is_some_and(|g| blake3::hash(g.trim().as_bytes()) == *want) {
            true => Ok(()),
            false => Err(ApiError::new(
                401,
                "Unauthorized",
                "this server needs `Authorization: Bearer <token>` with its token",
            )),
        }
    }

    async fn predict(
        &self,
        headers: &HeaderMap,
        body: Body,
        tei: bool,
    ) -> Result<Response, ApiError> {
        self.authorized(headers)?;
        let bytes = self.read_body(headers, body).await?;
        let (shape, texts) = api::parse(&bytes, tei, self.options.max_texts)?;
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job = Job {
            texts: texts.clone(),
            reply,
        };
        self.queue.submit(job).map_err(|refused| match refused {
            Refused::Full => ApiError::new(503, "Overloaded", "the queue is full: retry shortly"),
            Refused::Stopped => ApiError::new(503, "Unhealthy", "the model has stopped"),
        })?;
        let probs = match answer.await {
            Ok(Ok(probs)) => probs,
            Ok(Err(e)) => {
                return Err(ApiError::new(
                    500,
                    "Backend",
                    format!("the model failed: {e}"),
                ));
            }
            Err(_) => return Err(ApiError::new(503, "Unhealthy", "the model has stopped")),
        };
        let value = api::answer(shape, &self.labels, &texts, &probs);
        Ok(json_response(StatusCode::OK, value.to_string()))
    }

    /// The whole body, within the size limit and the read timeout.
    async fn read_body(
        &self,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<axum::body::Bytes, ApiError> {
        let limit = self.options.body_limit;
        let too_large = || {
            let m = format!("the body is larger than {limit} bytes (--body-limit)");
            ApiError::new(413, "PayloadTooLarge", m)
        };
        let declared = (headers.get(header::CONTENT_LENGTH))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        let read =
            tokio::time::timeout(self.options.read_timeout, axum::body::to_bytes(body, limit));
        match read.await {
            Ok(Ok(bytes)) => Ok(bytes),
            Ok(Err(e)) if is_length_limit(&e) => Err(too_large()),
            Ok(Err(e)) => Err(ApiError::new(
                400,
                "Validation",
                format!("the body could not be read: {e}"),
            )),
            Err(_) => Err(ApiError::new(
                408,
                "Timeout",
                format!(
                    "the body did not arrive within {:?}",
                    self.options.read_timeout
                ),
            )),
        }
    }
}

/// Whether a body error is the size limit (http-body-util's LengthLimitError, somewhere in the
/// chain).
fn is_length_limit(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if e.to_string().contains("length limit exceeded") {
            return true;
        }
        source = e.source();
    }
    false
}
