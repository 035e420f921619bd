//! The accept loop: plain HTTP through `axum::serve`, or HTTPS (cargo
//! feature `tls`) through rustls with the `ring` provider and hyper's
//! connection builder; both stop accepting on shutdown and wait for the
//! connections in flight.

use std::future::Future;
use std::path::PathBuf;

use axum::Router;
use tokio::net::TcpListener;

use crate::error::Result;

/// Serves `router` on `listener` until `shutdown` completes, then waits
/// for open connections to finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    tls: Option<&(PathBuf, PathBuf)>,
) -> Result<()> {
    match tls {
        None => Ok(axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await?),
        #[cfg(feature = "tls")]
        Some((cert, key)) => https::serve(listener, router, shutdown, cert, key).await,
        #[cfg(not(feature = "tls"))]
        Some((cert, _)) => Err(crate::error::Error::Tls {
            path: cert.clone(),
            message: "this valor was built without TLS; rebuild with the cargo feature `tls`"
                .into(),
        }),
    }
}

#[cfg(feature = "tls")]
mod https {
    use std::future::Future;
    use std::path::Path;
    use std::sync::Arc;

    use axum::Router;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::server::graceful::GracefulShutdown;
    use hyper_util::service::TowerToHyperService;
    use rustls::ServerConfig;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio::net::TcpListener;
    use tokio_rustls::TlsAcceptor;

    use crate::error::{Error, Result};

    fn tls_err(path: &Path, message: impl ToString) -> Error {
        Error::Tls {
            path: path.to_path_buf(),
            message: message.to_string(),
        }
    }

    /// The rustls configuration from PEM files.
    pub fn config(cert: &Path, key: &Path) -> Result<ServerConfig> {
        let read = |p: &Path| std::fs::read(p).map_err(|e| tls_err(p, e));
        let cert_pem = read(cert)?;
        let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut &cert_pem[..])
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| tls_err(cert, format!("not a PEM certificate chain: {e}")))?;
        if certs.is_empty() {
            return Err(tls_err(cert, "no certificate in the file"));
        }
        let key_pem = read(key)?;
        let key_der: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut &key_pem[..])
            .map_err(|e| tls_err(key, format!("not a PEM private key: {e}")))?
            .ok_or_else(|| tls_err(key, "no private key in the file"))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_err(cert, e))?
            .with_no_client_auth()
            .with_single_cert(certs, key_der)
            .map_err(|e| tls_err(key, format!("does not fit the certificate: {e}")))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }

    pub async fn serve(
        listener: TcpListener,
        router: Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
        cert: &Path,
        key: &Path,
    ) -> Result<()> {
        let acceptor = TlsAcceptor::from(Arc::new(config(cert, key)?));
        let graceful = GracefulShutdown::new();
        tokio::pin!(shutdown);
        loop {
            let (stream, _) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let acceptor = acceptor.clone();
            let service = TowerToHyperService::new(router.clone());
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                let tls = match acceptor.accept(stream).await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::debug!("TLS handshake failed: {e}");
                        return;
                    }
                };
                let builder = Builder::new(TokioExecutor::new());
                let conn = builder.serve_connection(TokioIo::new(tls), service);
                if let Err(e) = watcher.watch(conn).await {
                    tracing::debug!("connection ended: {e}");
                }
            });
        }
        graceful.shutdown().await;
        Ok(())
    }
}
