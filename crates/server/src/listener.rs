//! rill's accept loop under axum's router, for both listeners: optional TLS (rustls; plain HTTP
//! on a TLS port fails its handshake and is closed), a deadline for each request's headers and
//! for the TLS handshake (slowloris and silent connections are closed, idle keep-alive ones too),
//! a cap on open connections (beyond it new ones are closed at once), and a graceful stop that
//! waits for the connections in flight (the caller bounds that wait with the drain timeout).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use metrics::counter;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

/// Connections closed at once because `max_connections` were open.
pub const CONNECTIONS_REFUSED: &str = "rill_connections_refused_total";

/// Defaults: a client has this long to send a request's headers (and to finish a TLS handshake);
/// an idle keep-alive connection is closed after the same time.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;

#[derive(Clone)]
pub struct ServeOptions {
    pub tls: Option<Tls>,
    pub header_timeout: Duration,
    pub max_connections: usize,
}

impl Default for ServeOptions {
    fn default() -> ServeOptions {
        ServeOptions { tls: None, header_timeout: DEFAULT_HEADER_TIMEOUT, max_connections: DEFAULT_MAX_CONNECTIONS }
    }
}

/// A certificate chain and key (PEM), reloadable: new connections use the files as last read.
#[derive(Clone)]
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    config: Arc<RwLock<Arc<ServerConfig>>>,
}

impl Tls {
    pub fn load(cert: &Path, key: &Path) -> Result<Tls, String> {
        let config = server_config(cert, key)?;
        Ok(Tls { cert: cert.to_path_buf(), key: key.to_path_buf(), config: Arc::new(RwLock::new(Arc::new(config))) })
    }

    /// Rereads the files; on an error the previous certificate stays in use.
    pub fn reload(&self) -> Result<(), String> {
        let config = server_config(&self.cert, &self.key)?;
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
        Ok(())
    }

    fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config.read().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

fn server_config(cert: &Path, key: &Path) -> Result<ServerConfig, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("{}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in the file", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    // ring rather than aws-lc-rs keeps the build to a C compiler (no cmake); the price is no
    // post-quantum key exchange, which is why rustls marks this provider deprecated.
    #[allow(deprecated)]
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("the certificate and key do not go together: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Serves `app` on `listener` until `shutdown` resolves, then waits for open connections.
pub async fn serve(listener: TcpListener, app: Router, opts: ServeOptions, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(opts.max_connections));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of file descriptors and the like: wait a moment rather than spin.
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            counter!(CONNECTIONS_REFUSED).increment(1);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (app, tls, watcher, header_timeout) = (app.clone(), opts.tls.clone(), graceful.watcher(), opts.header_timeout);
        tokio::spawn(async move {
            let _permit = permit;
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder.http1().timer(TokioTimer::new()).header_read_timeout(header_timeout);
            builder.http2().timer(TokioTimer::new()).keep_alive_interval(header_timeout);
            let service = TowerToHyperService::new(app);
            let result = match tls {
                Some(tls) => match tokio::time::timeout(header_timeout, tls.acceptor().accept(stream)).await {
                    Ok(Ok(stream)) => watcher.watch(builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned()).await,
                    // Not TLS (plain HTTP on a TLS port), a failed handshake, or too slow.
                    _ => return,
                },
                None => {
                    // hyper times the headers from their first byte: a connection that sends
                    // nothing at all is closed here.
                    let mut first = [0u8; 1];
                    if !matches!(tokio::time::timeout(header_timeout, stream.peek(&mut first)).await, Ok(Ok(1..))) {
                        return;
                    }
                    watcher.watch(builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned()).await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
