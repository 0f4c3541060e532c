//! The S3-compatible OBS endpoint: `s3s-fs` over `<data>/obs`, authenticated with the accounts'
//! AK/SK through `s3s`'s `SimpleAuth` (SigV2 and SigV4).

use std::path::Path;

use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::config::EmulatorCredential;

/// Builds the S3 service for `root` (which must exist).
pub(crate) fn build_service(
    root: &Path,
    credentials: &[EmulatorCredential],
) -> Result<s3s::service::S3Service, String> {
    let file_system = s3s_fs::FileSystem::new(root).map_err(|error| format!("{error:?}"))?;
    let mut builder = s3s::service::S3ServiceBuilder::new(file_system);
    let mut auth = s3s::auth::SimpleAuth::new();
    for credential in credentials {
        auth.register(
            credential.access_key.clone(),
            credential.secret_key.clone().into(),
        );
    }
    builder.set_auth(auth);
    Ok(builder.build())
}

/// Serves `service` on `listener` until `shutdown` turns true, then drops every connection.
pub(crate) async fn serve(
    listener: TcpListener,
    service: s3s::service::S3Service,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        tokio::select! {
            accepted = listener.accept() => {
                let (socket, _) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(error = %error, "The S3 endpoint could not accept a connection.");
                        continue;
                    }
                };
                let service = service.clone();
                connections.spawn(async move {
                    let connection = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(socket), service);
                    if let Err(error) = connection.await {
                        tracing::debug!(error = %error, "An S3 connection ended with an error.");
                    }
                });
            }
            _ = shutdown.changed() => break,
        }
    }
    connections.abort_all();
    while connections.join_next().await.is_some() {}
}
