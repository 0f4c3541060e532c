//! The S3-compatible OBS endpoint: `s3s-fs` over `<data>/obs`, authenticated with the accounts'
//! AK/SK through `s3s`'s `SimpleAuth` (SigV2 and SigV4).
//!
//! Bucket addressing follows [`EmulatorS3`]: path style always parses; with a `domain`,
//! `Host: {bucket}.{domain}` addresses the bucket virtual-hosted (OBS's
//! `{bucket}.obs.{region}.myhuaweicloud.com`); with `refuse_path_style`, a request that names a
//! bucket in its path is answered 403 `VirtualHostDomainRequired` before authentication, as OBS's
//! public endpoints do (OBS API reference, "Error Codes", obs_04_0115).

use std::path::Path;
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::config::{EmulatorCredential, EmulatorS3};

/// The S3 service and the addressing rules applied in front of it.
#[derive(Clone)]
pub(crate) struct ObsS3Service {
    service: s3s::service::S3Service,
    addressing: Arc<Addressing>,
}

/// Builds the S3 service for `root` (which must exist).
pub(crate) fn build_service(
    root: &Path,
    credentials: &[EmulatorCredential],
    s3: &EmulatorS3,
) -> Result<ObsS3Service, String> {
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
    if let Some(domain) = &s3.domain {
        builder.set_host(BucketDomain {
            domain: domain.clone(),
        });
    }
    Ok(ObsS3Service {
        service: builder.build(),
        addressing: Arc::new(Addressing {
            domain: s3.domain.clone(),
            refuse_path_style: s3.refuse_path_style,
            root: root.to_path_buf(),
        }),
    })
}

/// `Host` → bucket for virtual-hosted requests under one domain. A host that is the domain itself,
/// or anything else (`localhost`, another name), leaves the bucket to the path. (`s3s` never asks
/// for IP-address hosts.)
struct BucketDomain {
    domain: String,
}

impl s3s::host::S3Host for BucketDomain {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> s3s::S3Result<s3s::host::VirtualHost<'a>> {
        let name = host_name(host);
        match bucket_of_host(&name, &self.domain) {
            Some(bucket) => {
                Ok(s3s::host::VirtualHost::new(self.domain.as_str()).with_bucket(bucket))
            }
            None => Ok(s3s::host::VirtualHost::new(self.domain.as_str())),
        }
    }
}

/// The host name of a `Host` header value: no port, lower case, no trailing dot.
fn host_name(host: &str) -> String {
    let without_port = if host.starts_with('[') {
        host.split_once(']')
            .map(|(inside, _)| &inside[1..])
            .unwrap_or(host)
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        }
    };
    without_port.trim_end_matches('.').to_ascii_lowercase()
}

/// `{bucket}.{domain}` → `bucket`.
fn bucket_of_host(host: &str, domain: &str) -> Option<String> {
    host.strip_suffix(domain)
        .and_then(|rest| rest.strip_suffix('.'))
        .filter(|bucket| !bucket.is_empty())
        .map(str::to_string)
}

struct Addressing {
    domain: Option<String>,
    refuse_path_style: bool,
    /// The directory holding one directory per bucket.
    root: std::path::PathBuf,
}

impl Addressing {
    /// The bucket a request names when that bucket does not exist (and the request is not the
    /// bucket's creation). OBS answers such requests 404 `NoSuchBucket` (obs_04_0115); the
    /// file-system backend would create the directory on a PUT instead.
    fn missing_bucket<B>(&self, request: &hyper::Request<B>) -> Option<String> {
        let host = request
            .headers()
            .get(hyper::header::HOST)
            .and_then(|value| value.to_str().ok())
            .map(host_name)
            .unwrap_or_default();
        let path = request.uri().path().trim_start_matches('/');
        let hosted = self
            .domain
            .as_deref()
            .and_then(|domain| bucket_of_host(&host, domain));
        let (bucket, key) = match hosted {
            Some(bucket) => (bucket, path.to_string()),
            None => {
                let (bucket, key) = path.split_once('/').unwrap_or((path, ""));
                (bucket.to_string(), key.to_string())
            }
        };
        if bucket.is_empty() || bucket.contains("..") {
            return None;
        }
        if request.method() == hyper::Method::PUT && key.is_empty() {
            return None;
        }
        (!self.root.join(&bucket).is_dir()).then_some(bucket)
    }

    /// The bucket a path-style request names, when such requests are refused.
    fn refused_bucket<B>(&self, request: &hyper::Request<B>) -> Option<String> {
        if !self.refuse_path_style {
            return None;
        }
        let domain = self.domain.as_deref()?;
        let host = request
            .headers()
            .get(hyper::header::HOST)
            .and_then(|value| value.to_str().ok())
            .map(str::to_string)
            .or_else(|| request.uri().authority().map(|a| a.as_str().to_string()))
            .unwrap_or_default();
        if bucket_of_host(&host_name(&host), domain).is_some() {
            return None;
        }
        let first_segment = request
            .uri()
            .path()
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or_default();
        (!first_segment.is_empty()).then(|| first_segment.to_string())
    }
}

/// OBS's answer to a path-style request on an endpoint that requires virtual hosting.
fn virtual_host_required(bucket: &str) -> hyper::Response<s3s::Body> {
    let request_id = format!("{:032X}", rand::random::<u128>());
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>VirtualHostDomainRequired</Code>\
         <Message>Virtual hosting access domain name is not used.</Message>\
         <Resource>/{bucket}</Resource><RequestId>{request_id}</RequestId>\
         <HostId>{request_id}</HostId></Error>"
    );
    let mut response = hyper::Response::new(s3s::Body::from(body));
    *response.status_mut() = hyper::StatusCode::FORBIDDEN;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/xml"),
    );
    if let Ok(value) = hyper::header::HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-obs-request-id", value);
    }
    response
}

/// OBS's answer to a request naming a bucket that does not exist.
fn no_such_bucket(bucket: &str) -> hyper::Response<s3s::Body> {
    let request_id = format!("{:032X}", rand::random::<u128>());
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchBucket</Code>\
         <Message>The specified bucket does not exist</Message><BucketName>{bucket}</BucketName>\
         <RequestId>{request_id}</RequestId><HostId>{request_id}</HostId></Error>"
    );
    let mut response = hyper::Response::new(s3s::Body::from(body));
    *response.status_mut() = hyper::StatusCode::NOT_FOUND;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/xml"),
    );
    response
}

/// Serves `service` on `listener` until `shutdown` turns true, then drops every connection.
pub(crate) async fn serve(
    listener: TcpListener,
    service: ObsS3Service,
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
                    let gate = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                        let service = service.clone();
                        async move {
                            if let Some(bucket) = service.addressing.refused_bucket(&request) {
                                tracing::debug!(bucket = %bucket, "Refused a path-style S3 request.");
                                return Ok::<_, s3s::HttpError>(virtual_host_required(&bucket));
                            }
                            if let Some(bucket) = service.addressing.missing_bucket(&request) {
                                return Ok(no_such_bucket(&bucket));
                            }
                            hyper::service::Service::call(&service.service, request).await
                        }
                    });
                    let connection = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(socket), gate);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_under_the_domain_name_their_bucket() {
        assert_eq!(host_name("Bucket-1.OBS.test:9000"), "bucket-1.obs.test");
        assert_eq!(host_name("[::1]:9000"), "::1");
        assert_eq!(host_name("obs.test."), "obs.test");
        assert_eq!(
            bucket_of_host("dli-gitops-staging.obs.test", "obs.test").as_deref(),
            Some("dli-gitops-staging")
        );
        assert_eq!(
            bucket_of_host("a.b.c.obs.test", "obs.test").as_deref(),
            Some("a.b.c")
        );
        assert_eq!(bucket_of_host("obs.test", "obs.test"), None);
        assert_eq!(bucket_of_host("xobs.test", "obs.test"), None);
        assert_eq!(bucket_of_host("127.0.0.1", "obs.test"), None);
    }

    #[test]
    fn only_path_style_requests_naming_a_bucket_are_refused() {
        let addressing = Addressing {
            domain: Some("obs.test".into()),
            refuse_path_style: true,
            root: std::path::PathBuf::new(),
        };
        let request = |host: &str, path: &str| {
            hyper::Request::builder()
                .uri(path)
                .header(hyper::header::HOST, host)
                .body(())
                .unwrap()
        };
        assert_eq!(
            addressing
                .refused_bucket(&request("obs.test:9000", "/staging/key"))
                .as_deref(),
            Some("staging")
        );
        assert_eq!(
            addressing
                .refused_bucket(&request("127.0.0.1:9000", "/staging"))
                .as_deref(),
            Some("staging")
        );
        assert_eq!(
            addressing.refused_bucket(&request("staging.obs.test:9000", "/key")),
            None
        );
        assert_eq!(
            addressing.refused_bucket(&request("obs.test:9000", "/")),
            None
        );
        let lenient = Addressing {
            domain: Some("obs.test".into()),
            refuse_path_style: false,
            root: std::path::PathBuf::new(),
        };
        assert_eq!(
            lenient.refused_bucket(&request("obs.test", "/staging/key")),
            None
        );
    }
}
