//! Streamable HTTP transport: rmcp's service behind a small gate that checks the path (404), the
//! bearer token (401, saying how to authenticate) and then each client's request rate (429): an
//! unauthenticated flood is turned away before it can use up an authenticated client's rate.
//! Request headers must arrive within `http.header_timeout_s`. rmcp itself checks Host (DNS
//! rebinding), Origin (403) and the body size.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::Context;
use http_body_util::combinators::BoxBody;
use http_body_util::BodyExt;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::Request;
use hyper::Response;
use hyper::StatusCode;
use hyper_util::rt::TokioIo;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::StreamableHttpServerConfig;
use rmcp::transport::streamable_http_server::StreamableHttpService;

use super::Server;
use crate::config::Config;
use crate::engine::Engine;

type Body = BoxBody<Bytes, Infallible>;

/// A token bucket.
struct RateLimiter {
    capacity: f64,
    tokens: f64,
    per_sec: f64,
    last: Instant,
}

impl RateLimiter {
    fn new(per_sec: u32) -> Self {
        let c = per_sec as f64;
        RateLimiter {
            capacity: c,
            tokens: c,
            per_sec: c,
            last: Instant::now(),
        }
    }

    fn allow(&mut self) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.per_sec)
            .min(self.capacity);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// One token bucket per client (its MCP session, else its address), idle ones forgotten.
struct ClientLimits {
    per_sec: u32,
    buckets: std::collections::HashMap<String, RateLimiter>,
}

impl ClientLimits {
    /// Clients tracked at most before idle ones are dropped.
    const MAX_CLIENTS: usize = 10_000;

    fn new(per_sec: u32) -> Self {
        ClientLimits {
            per_sec,
            buckets: std::collections::HashMap::new(),
        }
    }

    fn allow(&mut self, client: &str) -> bool {
        if self.buckets.len() >= Self::MAX_CLIENTS && !self.buckets.contains_key(client) {
            // a bucket idle this long is full again: forgetting it changes nothing
            let full = std::time::Duration::from_secs(2);
            self.buckets.retain(|_, b| b.last.elapsed() < full);
        }
        let per_sec = self.per_sec;
        self.buckets
            .entry(client.to_string())
            .or_insert_with(|| RateLimiter::new(per_sec))
            .allow()
    }
}

/// Who a request comes from, for its rate: its MCP session when it has one, else its address.
fn client_of(req: &Request<Incoming>, peer: SocketAddr) -> String {
    match req
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
    {
        Some(session) => format!("session {session}"),
        None => format!("address {}", peer.ip()),
    }
}

fn reply(status: StatusCode, msg: &str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(format!("{msg}\n"))).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(
        "content-type",
        "text/plain; charset=utf-8".parse().expect("static header"),
    );
    r
}

/// Constant-time comparison, so the token cannot be guessed byte by byte from timings.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Reads the bearer token from the configured file, else the configured environment variable.
pub fn load_token(cfg: &Config) -> Result<String, String> {
    let token = match &cfg.http.token_file {
        Some(f) => std::fs::read_to_string(f)
            .map_err(|e| format!("cannot read http.token_file {f}: {e}"))?
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_string(),
        None => std::env::var(&cfg.http.token_env)
            .unwrap_or_default()
            .trim()
            .to_string(),
    };
    if token.len() < 16 {
        return Err(format!(
            "HTTP serving needs a bearer token of at least 16 characters: set {} or http.token_file",
            cfg.http.token_env
        ));
    }
    Ok(token)
}

/// Serves MCP at `http://addr/mcp` until the process ends.
pub async fn serve(
    engine: Arc<dyn Engine>,
    addr: SocketAddr,
    cfg: &Config,
    token: String,
) -> anyhow::Result<()> {
    let mut http_cfg = StreamableHttpServerConfig::default()
        .with_allowed_hosts(cfg.http.allowed_hosts.clone())
        .with_allowed_origins(cfg.http.allowed_origins.clone())
        .enforce_origin_validation()
        .with_max_request_body_bytes(cfg.security.max_request_bytes);
    http_cfg.json_response = true;
    let documents = Arc::new(super::Documents::default());
    let mcp = StreamableHttpService::new(
        move || Ok(Server::new(engine.clone(), documents.clone())),
        Arc::new(LocalSessionManager::default()),
        http_cfg,
    );
    let limits = Arc::new(Mutex::new(ClientLimits::new(
        cfg.security.rate_limit_per_second,
    )));
    let expected = Arc::new(format!("Bearer {token}"));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    eprintln!(
        "causeway-query: serving MCP (Streamable HTTP) at http://{}/mcp",
        listener.local_addr()?
    );
    let header_timeout = std::time::Duration::from_secs(cfg.http.header_timeout_s);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                continue;
            }
        };
        let gate = Gate {
            mcp: mcp.clone(),
            limits: limits.clone(),
            expected: expected.clone(),
            peer,
        };
        let svc = service_fn(move |req: Request<Incoming>| gate.clone().handle(req));
        tokio::spawn(async move {
            let served = http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(stream), svc)
                .await;
            if let Err(e) = served {
                tracing::debug!("connection ended: {e}");
            }
        });
    }
}

/// What every request of a connection passes before it reaches rmcp.
#[derive(Clone)]
struct Gate {
    mcp: StreamableHttpService<Server, LocalSessionManager>,
    limits: Arc<Mutex<ClientLimits>>,
    expected: Arc<String>,
    peer: SocketAddr,
}

impl Gate {
    async fn handle(mut self, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
        if req.uri().path() != "/mcp" {
            return Ok(reply(StatusCode::NOT_FOUND, "the MCP endpoint is /mcp"));
        }
        let auth = req
            .headers()
            .get("authorization")
            .map(|v| v.as_bytes())
            .unwrap_or(b"");
        if !same(auth, self.expected.as_bytes()) {
            let mut r = reply(
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token: send `Authorization: Bearer <token>`, the token the \
                 server was given (http.token_file, or the variable http.token_env names, \
                 CAUSEWAY_MCP_TOKEN by default)",
            );
            let challenge = "Bearer realm=\"causeway-query\", error=\"invalid_token\"";
            r.headers_mut().insert(
                "www-authenticate",
                challenge.parse().expect("static header"),
            );
            return Ok(r);
        }
        let client = client_of(&req, self.peer);
        let allowed = self
            .limits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .allow(&client);
        if !allowed {
            let mut r = reply(
                StatusCode::TOO_MANY_REQUESTS,
                "rate limit exceeded (security.rate_limit_per_second, per client)",
            );
            r.headers_mut()
                .insert("retry-after", "1".parse().expect("static header"));
            return Ok(r);
        }
        tower_call(&mut self.mcp, req).await
    }
}

async fn tower_call(
    mcp: &mut StreamableHttpService<Server, LocalSessionManager>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    use tower_service::Service;
    mcp.call(req).await
}
