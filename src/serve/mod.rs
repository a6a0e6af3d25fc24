//! `synthscan serve`: a small web page and JSON API over one long-lived pipeline.
//!
//! ```text
//! POST /v1/scan ─multipart─▶ upload (parts, zip entries, limits) ─NamedFile─▶ dispatch ─▶ pipeline
//!        ◀──── JSON rows ◀── results (kept for CSV/Parquet/log downloads) ◀── rows by ticket ◀─┘
//! ```
//!
//! Uploads never touch the filesystem (unless `--keep`, and then under generated names); every
//! uploaded file is answered with exactly one row, with the same columns as `scan` writes.

pub mod dispatch;
pub mod guard;
pub mod listen;
pub mod results;
pub mod upload;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::multipart::MultipartRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Multipart, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tokio::sync::Semaphore;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutError};

use crate::pipeline::{Pipeline, PipelineError};
use crate::sink::{self, Format};
use crate::verdict::{Status, Table, Verdict};
use dispatch::{Dispatcher, NamedFile};
use guard::Guard;
use listen::ListenLimits;
use results::{Batch, Results};
use upload::{UploadError, UploadLimits};

/// The page: static HTML, CSS and JS in one file, so the binary serves it offline.
const PAGE: &str = include_str!("page.html");

/// The header that names the batch a `POST /v1/scan` answer belongs to.
pub const BATCH_HEADER: &str = "x-synthscan-batch";

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub bind: SocketAddr,
    pub limits: UploadLimits,
    /// Requests read and scored at once; later ones wait. With the body and unzip limits this
    /// bounds the memory uploads can take.
    pub upload_slots: usize,
    /// How long a request waits for a slot before it is answered 429 with `Retry-After`.
    pub slot_wait: Duration,
    /// Also write every upload here, under generated names.
    pub keep: Option<PathBuf>,
    pub max_batches: usize,
    pub batch_ttl: Duration,
    /// For the request headers and for each stretch of a body without progress (408).
    pub read_timeout: Duration,
    /// Connections held open at once; more are refused.
    pub max_connections: usize,
    /// `--allow-host` and `--allow-origin`: see [`guard`].
    pub allow_hosts: Vec<String>,
    pub allow_origins: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the server failed: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
}

struct App {
    dispatch: Dispatcher,
    table: Table,
    models: serde_json::Value,
    limits: UploadLimits,
    keep: Option<PathBuf>,
    results: Results,
    slots: Semaphore,
    slot_wait: Duration,
    read_timeout: Duration,
    guard: Guard,
    health: Health,
}

/// Whether the scoring pipeline still runs: set once, when its task ends, with the reason.
#[derive(Clone, Default)]
struct Health(Arc<std::sync::Mutex<Option<String>>>);

impl Health {
    fn down(&self, reason: String) {
        *self.0.lock().expect("no panics while locked") = Some(reason);
    }

    fn problem(&self) -> Option<String> {
        self.0.lock().expect("no panics while locked").clone()
    }
}

/// Serves until `shutdown` resolves, then lets the requests in flight finish and drains the
/// pipeline. `on_listen` learns the bound address (useful with port 0).
pub async fn serve(
    pipeline: Pipeline,
    config: ServeConfig,
    on_listen: impl FnOnce(SocketAddr),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.bind,
            source,
        })?;
    let table = pipeline.table().clone();
    let models = models_json(&pipeline, &table);
    let (dispatch, source, sink, closer) = Dispatcher::new();
    // The pipeline ends when the dispatcher (held by the router) is dropped after shutdown, not
    // on a stop flag: requests in flight still need it. If it ends before (it failed), health
    // turns to 503 and every request waiting on it is answered.
    let never = Arc::new(AtomicBool::new(false));
    let health = Health::default();
    let pipeline = tokio::spawn({
        let health = health.clone();
        let run = pipeline.run(source, sink, never, Box::new(|_, _| {}));
        async move {
            let result = run.await;
            let reason = match &result {
                Ok(_) => "the scoring pipeline has stopped".to_string(),
                Err(e) => {
                    tracing::error!("the scoring pipeline failed: {e}");
                    format!("the scoring pipeline failed: {e}")
                }
            };
            health.down(reason);
            closer.close();
            result
        }
    });

    let app = Arc::new(App {
        dispatch,
        table,
        models,
        limits: config.limits,
        keep: config.keep,
        results: Results::new(config.max_batches, config.batch_ttl),
        slots: Semaphore::new(config.upload_slots.max(1)),
        slot_wait: config.slot_wait,
        read_timeout: config.read_timeout,
        guard: Guard::new(config.bind.ip(), &config.allow_hosts, &config.allow_origins),
        health,
    });
    let limits = ListenLimits {
        read_timeout: config.read_timeout,
        max_connections: config.max_connections,
        // A refused body up to the largest one accepted is drained, with room for its headers.
        linger_bytes: config.limits.max_body_bytes.saturating_add(1 << 20),
    };
    let router = router(app, config.limits.max_body_bytes);
    on_listen(listener.local_addr()?);
    listen::serve(listener, router, limits, shutdown).await;
    let summary = pipeline
        .await
        .map_err(|e| PipelineError::Join(e.to_string()))??;
    tracing::info!("served {} files", summary.candidates);
    Ok(())
}

fn router(app: Arc<App>, max_body: u64) -> Router {
    let read_timeout = app.read_timeout;
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/healthz", get(healthz))
        .route("/v1/models", get(models))
        .route(
            "/v1/scan",
            post(scan).layer(DefaultBodyLimit::max(
                usize::try_from(max_body).unwrap_or(usize::MAX),
            )),
        )
        .route("/v1/results/{file}", get(result_file))
        .layer(RequestBodyTimeoutLayer::new(read_timeout))
        .layer(middleware::from_fn_with_state(app.clone(), guard))
        .with_state(app)
}

/// Refuses, before any handler runs, a request for another Host or from another site's page.
async fn guard(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    match app.guard.check(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            tracing::warn!("refused {} {}: {refusal}", request.method(), request.uri());
            ApiError {
                limit: Some(refusal.flag()),
                ..ApiError::new(StatusCode::FORBIDDEN, refusal.to_string())
            }
            .into_response()
        }
    }
}

fn models_json(pipeline: &Pipeline, table: &Table) -> serde_json::Value {
    let models: Vec<serde_json::Value> = pipeline
        .manifests()
        .zip(table.models())
        .map(|(m, col)| {
            json!({
                "name": col.name,
                "version": col.version,
                "architecture": m.architecture,
                "input": { "width": m.input.width, "height": m.input.height },
                "labels": m.labels,
                "threshold": col.threshold,
                "precision": col.precision,
                "score_column": col.score_column(),
                "label_column": col.label_column(),
            })
        })
        .collect();
    json!({ "models": models, "threshold": table.combined_threshold() })
}

async fn healthz(State(app): State<Arc<App>>) -> (StatusCode, Json<serde_json::Value>) {
    let names: Vec<&str> = app.table.models().iter().map(|m| m.name.as_str()).collect();
    match app.health.problem() {
        None => (
            StatusCode::OK,
            Json(json!({ "status": "ok", "models": names })),
        ),
        Some(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "down", "error": error, "models": names })),
        ),
    }
}

async fn models(State(app): State<Arc<App>>) -> Json<serde_json::Value> {
    Json(app.models.clone())
}

/// An API error: its status, which limit was hit (if one was), and what to do.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    limit: Option<&'static str>,
    message: String,
    /// Seconds after which a retry may succeed (`Retry-After`).
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            limit: None,
            message: message.into(),
            retry_after: None,
        }
    }

    fn limit(limit: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            limit: Some(limit),
            ..ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, message)
        }
    }

    /// Every slot stayed busy for `waited`: come back later rather than queue without limit.
    fn busy(waited: Duration) -> Self {
        ApiError {
            limit: Some("max_concurrent"),
            retry_after: Some(waited.as_secs_f64().ceil().max(1.0) as u64),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "every --max-concurrent slot stayed busy for {:.1} s; retry later",
                    waited.as_secs_f64()
                ),
            )
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.message, "limit": self.limit });
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<UploadError> for ApiError {
    fn from(e: UploadError) -> Self {
        if timed_out(&e) {
            return ApiError {
                limit: Some("read_timeout"),
                ..ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "the request body stopped arriving for longer than --read-timeout",
                )
            };
        }
        match &e {
            UploadError::TooManyFiles(_) => ApiError::limit("max_files", e.to_string()),
            UploadError::TooMuchUnzipped(_) => ApiError::limit("max_unzipped_mb", e.to_string()),
            UploadError::Multipart(m) if m.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::limit("max_upload_mb", "the request body is over --max-upload-mb")
            }
            UploadError::Multipart(m) => ApiError::new(m.status(), format!("bad upload: {m}")),
        }
    }
}

/// Whether reading the body failed because the client stopped sending: the timeout is deep in
/// the chain of errors (multipart, body limit, body).
fn timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(e) = source {
        if e.is::<TimeoutError>() {
            return true;
        }
        source = e.source();
    }
    false
}

async fn scan(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > app.limits.max_body_bytes) {
        return Err(ApiError::limit(
            "max_upload_mb",
            "the request body is over --max-upload-mb",
        ));
    }
    let multipart = multipart.map_err(|e| {
        ApiError::new(
            e.status(),
            format!("{e}: send images as multipart/form-data `file` parts"),
        )
    })?;
    let _slot = tokio::time::timeout(app.slot_wait, app.slots.acquire())
        .await
        .map_err(|_| ApiError::busy(app.slot_wait))?
        .expect("the semaphore is never closed");
    let started = Instant::now();
    let files = upload::read(multipart, &app.limits).await?;
    if files.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "no files in the request: send images (or a zip of images) as multipart `file` parts",
        ));
    }
    let id = app.results.new_id();
    let received: u64 = files.iter().map(|f| f.bytes.len() as u64).sum();
    if let Some(dir) = &app.keep {
        keep(dir.clone(), &id, &files).await.map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot keep uploads in {}: {e}", dir.display()),
            )
        })?;
    }
    let count = files.len();
    let rows = app.dispatch.score(files).await.map_err(|e| {
        let why = app
            .health
            .problem()
            .unwrap_or_else(|| "the server is shutting down".into());
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("{e}: {why}"))
    })?;
    let log = batch_log(&app.table, &id, peer, received, started.elapsed(), &rows);
    tracing::info!(
        "batch {id}: {count} files from {peer} in {:?}",
        started.elapsed()
    );
    let batch = app.results.insert(id, rows, log);
    let body = rows_json(&app.table, &batch.rows).map_err(internal)?;
    let mut response = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    response.headers_mut().insert(
        BATCH_HEADER,
        HeaderValue::from_str(&batch.id).expect("hex is a valid header"),
    );
    Ok(response)
}

async fn result_file(
    State(app): State<Arc<App>>,
    Path(file): Path<String>,
) -> Result<Response, ApiError> {
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no batch {file}: results are kept for a limited time and count"),
        )
    };
    let (id, ext) = file.rsplit_once('.').ok_or_else(not_found)?;
    let batch: Arc<Batch> = app.results.get(id).ok_or_else(not_found)?;
    let (content_type, body) = match ext {
        "csv" => ("text/csv", encode(Format::Csv, &app.table, &batch.rows)?),
        "parquet" => (
            "application/vnd.apache.parquet",
            encode(Format::Parquet, &app.table, &batch.rows)?,
        ),
        "json" => (
            "application/json",
            rows_json(&app.table, &batch.rows).map_err(internal)?,
        ),
        "log" => ("text/plain; charset=utf-8", batch.log.clone().into_bytes()),
        _ => return Err(not_found()),
    };
    let disposition = format!("attachment; filename=\"synthscan-{id}.{ext}\"");
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response())
}

fn encode(format: Format, table: &Table, rows: &[Verdict]) -> Result<Vec<u8>, ApiError> {
    sink::encode_to_vec(format, table, rows).map_err(internal)
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

/// The rows as a JSON array of objects with the verdict table's columns, nulls included, so
/// that every object has every field.
fn rows_json(table: &Table, rows: &[Verdict]) -> Result<Vec<u8>, arrow::error::ArrowError> {
    let batch = table.to_record_batch(rows)?;
    let mut writer = arrow::json::WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, arrow::json::writer::JsonArray>(Vec::new());
    writer.write(&batch)?;
    writer.finish()?;
    let out = writer.into_inner();
    Ok(if out.is_empty() { b"[]".to_vec() } else { out })
}

/// Writes the uploads under names the server makes up: the client's names never reach the
/// filesystem.
async fn keep(dir: PathBuf, id: &str, files: &[NamedFile]) -> std::io::Result<()> {
    let named: Vec<(PathBuf, bytes::Bytes)> = files
        .iter()
        .enumerate()
        .filter(|(_, f)| f.defect.is_none())
        .map(|(i, f)| {
            let ext = image::guess_format(&f.bytes)
                .ok()
                .and_then(|fmt| fmt.extensions_str().first().copied())
                .unwrap_or("bin");
            (dir.join(format!("{id}-{i:04}.{ext}")), f.bytes.clone())
        })
        .collect();
    tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dir)?;
        named
            .iter()
            .try_for_each(|(path, bytes)| std::fs::write(path, bytes))
    })
    .await
    .map_err(std::io::Error::other)?
}

fn batch_log(
    table: &Table,
    id: &str,
    peer: SocketAddr,
    bytes: u64,
    took: Duration,
    rows: &[Verdict],
) -> String {
    use std::fmt::Write;
    let ok = rows.iter().filter(|r| r.status == Status::Ok).count();
    let mut log = String::new();
    let _ = writeln!(
        log,
        "batch {id}: {} files ({bytes} bytes) from {peer}, scored in {:.2} s by {}: {ok} ok, {} with errors",
        rows.len(),
        took.as_secs_f64(),
        table.models_text(),
        rows.len() - ok,
    );
    for r in rows {
        let line = match (table.combined_score(r), table.final_label(r)) {
            (Some(s), Some((label, basis))) => {
                format!("{s:.4} {} ({})", label.as_str(), basis.as_str())
            }
            _ => format!("{}: {}", r.status, r.error.as_deref().unwrap_or("")),
        };
        let _ = writeln!(log, "{}\t{line}", r.meta.path);
    }
    log
}
