//! The admin HTTP listener (`[admin] listen`): `/metrics`, `/healthz`, `/readyz`, `/activity`.
//!
//! A small HTTP/1.1 responder on tokio instead of hyper (see `crate::metrics::registry` for why):
//! one GET per connection, `Connection: close`, a request head of at most 8 KiB read within
//! five seconds. It is meant for localhost or a trusted network: it shows user names,
//! application names and statement excerpts, and has no authentication of its own.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

pub mod activity;

use crate::proxy::Shared;

const MAX_HEAD: usize = 8 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// What the admin routes read.
pub(crate) struct Admin {
    pub(crate) shared: Arc<Shared>,
    /// False once shutdown began: `/readyz` says so, so orchestrators stop sending clients.
    pub(crate) accepting: AtomicBool,
}

/// Serves admin requests until the task is aborted.
pub(crate) async fn serve(listener: TcpListener, admin: Arc<Admin>) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                warn!("admin: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let admin = admin.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(tcp, &admin).await {
                debug!(%peer, "admin: request failed: {e}");
            }
        });
    }
}

async fn handle(mut tcp: TcpStream, admin: &Admin) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let read = tokio::time::timeout(READ_TIMEOUT, async {
        let mut chunk = [0u8; 1024];
        loop {
            if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
                return Ok::<bool, std::io::Error>(true);
            }
            if head.len() >= MAX_HEAD {
                return Ok(false);
            }
            let n = tcp.read(&mut chunk).await?;
            if n == 0 {
                return Ok(false);
            }
            head.extend_from_slice(&chunk[..n]);
        }
    })
    .await;
    let complete = match read {
        Ok(r) => r?,
        Err(_) => false,
    };
    let response = if complete {
        route(&head, admin).await
    } else {
        Response::text(400, "Bad Request", "incomplete or oversized request head\n")
    };
    tcp.write_all(&response.encode()).await?;
    tcp.shutdown().await
}

struct Response {
    status: u16,
    reason: &'static str,
    content_type: &'static str,
    body: String,
    head_only: bool,
}

impl Response {
    fn text(status: u16, reason: &'static str, body: &str) -> Response {
        Response {
            status,
            reason,
            content_type: "text/plain; charset=utf-8",
            body: body.to_owned(),
            head_only: false,
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.status,
            self.reason,
            self.content_type,
            self.body.len()
        )
        .into_bytes();
        if !self.head_only {
            out.extend_from_slice(self.body.as_bytes());
        }
        out
    }
}

async fn route(head: &[u8], admin: &Admin) -> Response {
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.trim_end().split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if !parts.next().is_some_and(|v| v.starts_with("HTTP/1.")) {
        return Response::text(400, "Bad Request", "not an HTTP/1.x request line\n");
    }
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return Response::text(405, "Method Not Allowed", "only GET and HEAD\n");
    }
    let path = target.split('?').next().unwrap_or("");
    let mut r = match path {
        "/metrics" => {
            crate::metrics::audit_totals(
                admin.shared.audit.queue_depth(),
                admin.shared.audit.stats(),
            );
            Response {
                // The classic text format Prometheus scrapes.
                content_type: "text/plain; version=0.0.4; charset=utf-8",
                ..Response::text(200, "OK", &crate::metrics::render())
            }
        }
        "/healthz" => Response::text(200, "OK", "ok\n"),
        "/readyz" => readyz(admin).await,
        "/activity" => Response {
            content_type: "application/json",
            ..Response::text(
                200,
                "OK",
                &format!("{:#}\n", admin.shared.activity.to_json()),
            )
        },
        _ => Response::text(
            404,
            "Not Found",
            "routes: /metrics /healthz /readyz /activity\n",
        ),
    };
    r.head_only = head_only;
    r
}

/// Ready: accepting clients, the configuration in force is valid (a refused reload leaves
/// the old one in force, which is), and the upstream accepts a TCP connection within
/// `[admin] ready_timeout`.
async fn readyz(admin: &Admin) -> Response {
    if !admin.accepting.load(Ordering::Relaxed) {
        return Response::text(503, "Service Unavailable", "shutting down: not accepting\n");
    }
    let timeout = admin.shared.live.now().config.admin.ready_timeout;
    let mut problems = String::new();
    for upstream in admin.shared.upstreams() {
        let probe = tokio::time::timeout(timeout, TcpStream::connect(upstream.as_str())).await;
        match probe {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => problems.push_str(&format!("upstream {upstream}: {e}\n")),
            Err(_) => problems.push_str(&format!(
                "upstream {upstream}: no connection within {timeout:?}\n"
            )),
        }
    }
    if problems.is_empty() {
        Response::text(200, "OK", "ready\n")
    } else {
        Response::text(503, "Service Unavailable", &problems)
    }
}
