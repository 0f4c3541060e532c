//! OBS through the `object_store` crate: S3-compatible access to OBS buckets (endpoint, region,
//! path or virtual-hosted style, AK/SK) and local directories (`file://`), behind one small
//! interface; plus the conversions between `obs://bucket/key` (DLF, savepoints) and `bucket/key`
//! (DLI export/import).
//!
//! Addressing: Huawei OBS refuses path-style requests on its public endpoints, so buckets are
//! addressed virtual-hosted (`https://{bucket}.obs.{region}...`) unless the endpoint's host is an
//! IP address or `localhost`, where no bucket host name can exist ([`ObsAddressing::Auto`]).

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::ObjectStore as _;
use object_store::path::Path;
use url::Url;

use super::{CloudError, Credentials};

/// How to reach OBS (or any S3-protocol server).
#[derive(Debug, Clone, Default)]
pub struct ObsOptions {
    /// `https://obs.{region}.myhuaweicloud.com`, or a local S3 server. Never includes the bucket.
    pub endpoint: Option<Url>,
    pub region: String,
    /// AK/SK (optionally temporary). `None` only for `file://` stores.
    pub credentials: Option<Credentials>,
    /// Virtual-hosted (`https://{bucket}.obs...`) or path style (`https://obs.../{bucket}`).
    pub addressing: ObsAddressing,
    /// Host names answered without DNS: a pinned name `obs.test` sends `obs.test` and every
    /// `*.obs.test` (the virtual-hosted bucket hosts) to the address. For tests on loopback and
    /// private networks without wildcard DNS; empty means ordinary DNS.
    pub pinned_hosts: Vec<(String, IpAddr)>,
}

/// How requests name the bucket: in the host (`https://{bucket}.obs.{region}...`, what Huawei
/// OBS requires on its public endpoints) or in the path (`https://obs.../{bucket}/key`, what many
/// self-hosted S3-compatible stores need).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObsAddressing {
    /// Virtual-hosted, except for an endpoint whose host is an IP address or `localhost`
    /// (path style there, since no `{bucket}.` host name can exist).
    #[default]
    Auto,
    VirtualHosted,
    Path,
}

impl ObsAddressing {
    /// Whether requests to `endpoint` put the bucket in the host name.
    pub fn virtual_hosted_for(self, endpoint: &Url) -> bool {
        match self {
            ObsAddressing::VirtualHosted => true,
            ObsAddressing::Path => false,
            ObsAddressing::Auto => !host_cannot_carry_buckets(endpoint),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ObsAddressing::Auto => "auto",
            ObsAddressing::VirtualHosted => "virtual_hosted",
            ObsAddressing::Path => "path",
        }
    }
}

/// True when `endpoint`'s host is an IP address (v4 or v6) or `localhost`: no `{bucket}.` name
/// can be put in front of it.
pub fn host_cannot_carry_buckets(endpoint: &Url) -> bool {
    match endpoint.host() {
        Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)) | None => true,
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            name == "localhost" || name.parse::<IpAddr>().is_ok()
        }
    }
}

/// A bucket and key, as OBS paths name them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObsLocation {
    pub bucket: String,
    /// Without a leading `/`; may be empty (the bucket root) or end in `/` (a folder).
    pub key: String,
}

impl ObsLocation {
    /// Parses `obs://bucket/key`, `s3://bucket/key` or `bucket/key`.
    pub fn parse(text: &str) -> Result<ObsLocation, CloudError> {
        let rest = strip_obs_scheme(text.trim());
        let rest = rest.strip_prefix("s3://").unwrap_or(rest);
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
        if !bucket_ok {
            return Err(CloudError::Config {
                problem: format!(
                    "{text:?} does not start with a bucket name (3-63 lower-case letters, digits, '-', '.')"
                ),
            });
        }
        Ok(ObsLocation {
            bucket: bucket.to_string(),
            key: key.trim_start_matches('/').to_string(),
        })
    }

    /// `obs://bucket/key` (DLF import/export, savepoint import).
    pub fn to_obs_url(&self) -> String {
        format!("obs://{}/{}", self.bucket, self.key)
    }

    /// `bucket/key` (DLI export `obs_dir`, import `zip_file`).
    pub fn to_dli_path(&self) -> String {
        if self.key.is_empty() {
            self.bucket.clone()
        } else {
            format!("{}/{}", self.bucket, self.key)
        }
    }
}

/// `obs://bucket/key` → `bucket/key`; anything else unchanged.
pub fn strip_obs_scheme(text: &str) -> &str {
    text.strip_prefix("obs://").unwrap_or(text)
}

/// `bucket/key` → `obs://bucket/key`; `obs://` paths unchanged.
pub fn with_obs_scheme(text: &str) -> String {
    if text.starts_with("obs://") {
        text.to_string()
    } else {
        format!("obs://{}", text.trim_start_matches('/'))
    }
}

/// A prefix in a bucket or a local directory.
#[derive(Debug, Clone)]
pub struct ObjectStore {
    store: Arc<dyn object_store::ObjectStore>,
    /// Keys are below this prefix.
    prefix: Path,
    /// `obs://bucket/prefix/` or `file:///dir/`, for messages and [`ObjectStore::url_of`].
    base: String,
}

impl ObjectStore {
    /// `obs://bucket/prefix` (or `s3://`) through S3, or `file:///dir` on local disk.
    pub fn from_url(url: &str, options: &ObsOptions) -> Result<ObjectStore, CloudError> {
        let url = url.trim();
        if let Some(rest) = url.strip_prefix("file://") {
            let directory = std::path::Path::new(rest);
            if !directory.is_absolute() {
                return Err(CloudError::Config {
                    problem: format!(
                        "{url:?}: file:// URLs need an absolute path, e.g. file:///var/lib/dli-gitops/obs"
                    ),
                });
            }
            std::fs::create_dir_all(directory).map_err(|error| CloudError::Config {
                problem: format!(
                    "cannot create the object directory {}: {error}",
                    directory.display()
                ),
            })?;
            let store = object_store::local::LocalFileSystem::new_with_prefix(directory).map_err(
                |source| CloudError::ObjectStore {
                    operation: "open",
                    location: url.to_string(),
                    source,
                },
            )?;
            return Ok(ObjectStore {
                store: Arc::new(store),
                prefix: Path::default(),
                base: format!("file://{}/", rest.trim_end_matches('/')),
            });
        }
        if !(url.starts_with("obs://") || url.starts_with("s3://")) {
            return Err(CloudError::Config {
                problem: format!("{url:?} is not an obs://, s3:// or file:// URL"),
            });
        }
        let location = ObsLocation::parse(url)?;
        let Some(Credentials::AkSk {
            access_key,
            secret_key,
            security_token,
        }) = &options.credentials
        else {
            return Err(CloudError::Config {
                problem: format!(
                    "{url:?}: OBS access needs AK/SK credentials (IAM password tokens are not accepted by the S3 protocol)"
                ),
            });
        };
        let endpoint = options.endpoint.as_ref().ok_or_else(|| CloudError::Config {
            problem: format!("{url:?}: no OBS endpoint configured (e.g. https://obs.cn-north-4.myhuaweicloud.com)"),
        })?;
        let virtual_hosted = options.addressing.virtual_hosted_for(endpoint);
        let endpoint_text = s3_endpoint(endpoint, &location.bucket, virtual_hosted);
        tracing::debug!(
            bucket = %location.bucket,
            endpoint = %endpoint_text,
            addressing = options.addressing.as_str(),
            virtual_hosted,
            "Addressing an OBS bucket."
        );
        let mut builder = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(&location.bucket)
            .with_region(if options.region.is_empty() {
                "us-east-1"
            } else {
                &options.region
            })
            .with_endpoint(endpoint_text)
            .with_allow_http(endpoint.scheme() == "http")
            .with_virtual_hosted_style_request(virtual_hosted)
            // OBS supports only unsigned or streaming payloads with SigV4.
            .with_unsigned_payload(true)
            .with_access_key_id(access_key)
            .with_secret_access_key(secret_key.expose());
        if let Some(token) = security_token {
            builder = builder.with_token(token.expose());
        }
        builder = builder.with_http_connector(StoreConnector {
            pins: Arc::new(options.pinned_hosts.clone()),
            https_only: endpoint.scheme() != "http",
        });
        let store = builder.build().map_err(|source| CloudError::ObjectStore {
            operation: "open",
            location: url.to_string(),
            source,
        })?;
        let prefix = parse_key(location.key.trim_end_matches('/'), url)?;
        let base = format!(
            "obs://{}/{}",
            location.bucket,
            if location.key.is_empty() {
                String::new()
            } else {
                format!("{}/", location.key.trim_end_matches('/'))
            }
        );
        Ok(ObjectStore {
            store: Arc::new(store),
            prefix,
            base,
        })
    }

    fn full_path(&self, key: &str) -> Result<Path, CloudError> {
        let relative = parse_key(key.trim_start_matches('/'), key)?;
        Ok(if self.prefix.as_ref().is_empty() {
            relative
        } else {
            Path::from_iter(self.prefix.parts().chain(relative.parts()))
        })
    }

    /// `obs://bucket/prefix/key` (or `file:///dir/key`): what DLI and DLF are told to read.
    pub fn url_of(&self, key: &str) -> String {
        format!("{}{}", self.base, key.trim_start_matches('/'))
    }

    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), CloudError> {
        let path = self.full_path(key)?;
        self.store
            .put(&path, bytes.into())
            .await
            .map_err(|source| self.error("put", key, source))?;
        tracing::debug!(location = %self.url_of(key), "Stored an object.");
        Ok(())
    }

    pub async fn get(&self, key: &str) -> Result<Bytes, CloudError> {
        let path = self.full_path(key)?;
        let result = self
            .store
            .get(&path)
            .await
            .map_err(|source| self.error("get", key, source))?;
        result
            .bytes()
            .await
            .map_err(|source| self.error("get", key, source))
    }

    /// Keys (relative to this store's prefix) under `prefix`, sorted.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, CloudError> {
        let mut keys: Vec<String> = self
            .list_relative(prefix)
            .await?
            .into_iter()
            .map(|(key, _)| key)
            .collect();
        keys.sort();
        Ok(keys)
    }

    /// Keys (relative to this store's prefix) under `prefix` with their sizes in bytes, sorted
    /// by key: what a savepoint copy is verified against.
    pub async fn list_sizes(&self, prefix: &str) -> Result<Vec<(String, u64)>, CloudError> {
        let mut entries = self.list_relative(prefix).await?;
        entries.sort();
        Ok(entries)
    }

    /// The objects under `prefix`, each as its key relative to this store's prefix and its
    /// size, in the order the store lists them.
    async fn list_relative(&self, prefix: &str) -> Result<Vec<(String, u64)>, CloudError> {
        let trimmed = prefix.trim_matches('/');
        let path = if trimmed.is_empty() && self.prefix.as_ref().is_empty() {
            None
        } else {
            Some(self.full_path(trimmed)?)
        };
        let metas: Vec<object_store::ObjectMeta> = self
            .store
            .list(path.as_ref())
            .try_collect()
            .await
            .map_err(|source| self.error("list", prefix, source))?;
        let base_parts = self.prefix.parts().count();
        Ok(metas
            .iter()
            .map(|meta| {
                let key = meta
                    .location
                    .parts()
                    .skip(base_parts)
                    .map(|p| p.as_ref().to_string())
                    .collect::<Vec<_>>()
                    .join("/");
                (key, meta.size)
            })
            .collect())
    }

    /// Deletes an object; deleting a missing object is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), CloudError> {
        let path = self.full_path(key)?;
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(self.error("delete", key, source)),
        }
    }

    fn error(&self, operation: &'static str, key: &str, source: object_store::Error) -> CloudError {
        if error_chain_mentions(&source, "VirtualHostDomainRequired") {
            return CloudError::Config {
                problem: format!(
                    "obs {operation} {}: the OBS endpoint refuses path-style requests (403 VirtualHostDomainRequired); set the target's `obs_addressing` to `auto` or `virtual_hosted` and use an endpoint with a host name",
                    self.url_of(key)
                ),
            };
        }
        CloudError::ObjectStore {
            operation,
            location: self.url_of(key),
            source,
        }
    }
}

/// Whether `error` or one of its sources says `needle` (the S3 error body is in the text).
fn error_chain_mentions(error: &(dyn std::error::Error + 'static), needle: &str) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if error.to_string().contains(needle) {
            return true;
        }
        current = error.source();
    }
    false
}

/// The endpoint `object_store` wants: the service endpoint for path style, the bucket's own host
/// (`https://{bucket}.obs.{region}...`) for virtual-hosted style.
fn s3_endpoint(endpoint: &Url, bucket: &str, virtual_hosted_style: bool) -> String {
    let mut url = endpoint.clone();
    if virtual_hosted_style {
        let host = format!("{bucket}.{}", endpoint.host_str().unwrap_or_default());
        // The bucket name was validated (lower-case letters, digits, '-', '.'), so the host is valid.
        let _ = url.set_host(Some(&host));
    }
    url.as_str().trim_end_matches('/').to_string()
}

/// The `object_store` HTTP connector: the client object_store would build by default (HTTP/1.1,
/// 5 s to connect, 30 s per request, no transparent decompression, HTTPS only for an HTTPS
/// endpoint) over the process's one TLS configuration (`cloud::tls`), so each store does not
/// parse the trusted roots again. Its DNS answers pinned names (and their subdomains) with a
/// fixed address and everything else through the system resolver.
#[derive(Debug)]
struct StoreConnector {
    pins: Arc<Vec<(String, IpAddr)>>,
    https_only: bool,
}

impl object_store::client::HttpConnector for StoreConnector {
    fn connect(
        &self,
        options: &object_store::ClientOptions,
    ) -> object_store::Result<object_store::client::HttpClient> {
        let _ = options;
        let mut builder = reqwest::Client::builder()
            .use_preconfigured_tls(super::tls::client_config(false, super::tls::Alpn::Http1))
            .user_agent(concat!("dli-gitops/", env!("CARGO_PKG_VERSION")))
            .http1_only()
            .no_gzip()
            .no_brotli()
            .no_zstd()
            .no_deflate()
            .https_only(self.https_only)
            .pool_idle_timeout(super::http::POOL_IDLE_TIMEOUT)
            .connect_timeout(std::time::Duration::from_secs(5))
            .timeout(std::time::Duration::from_secs(30));
        if !self.pins.is_empty() {
            builder = builder.dns_resolver(Arc::new(PinnedResolver {
                pins: Arc::clone(&self.pins),
            }));
        }
        let client = builder
            .build()
            .map_err(|error| object_store::Error::Generic {
                store: "S3",
                source: Box::new(error),
            })?;
        Ok(object_store::client::HttpClient::new(client))
    }
}

#[derive(Debug)]
struct PinnedResolver {
    pins: Arc<Vec<(String, IpAddr)>>,
}

impl PinnedResolver {
    fn pinned(&self, name: &str) -> Option<IpAddr> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        self.pins.iter().find_map(|(pinned, address)| {
            let pinned = pinned.trim_end_matches('.').to_ascii_lowercase();
            (name == pinned || name.ends_with(&format!(".{pinned}"))).then_some(*address)
        })
    }
}

impl reqwest::dns::Resolve for PinnedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let pinned = self.pinned(name.as_str());
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addresses: Vec<std::net::SocketAddr> = match pinned {
                // The port is replaced by the URL's port.
                Some(address) => vec![std::net::SocketAddr::new(address, 0)],
                None => tokio::net::lookup_host((host.as_str(), 0)).await?.collect(),
            };
            let addresses: reqwest::dns::Addrs = Box::new(addresses.into_iter());
            Ok(addresses)
        })
    }
}

fn parse_key(key: &str, shown: &str) -> Result<Path, CloudError> {
    Path::parse(key).map_err(|error| CloudError::Config {
        problem: format!("object key {shown:?} is not a valid key: {error}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn obs_paths_convert_both_ways() {
        let location = ObsLocation::parse("obs://dli-staging/dev/bundle.zip").unwrap();
        assert_eq!(location.bucket, "dli-staging");
        assert_eq!(location.to_dli_path(), "dli-staging/dev/bundle.zip");
        assert_eq!(location.to_obs_url(), "obs://dli-staging/dev/bundle.zip");
        assert_eq!(
            ObsLocation::parse("dli-staging/dev/").unwrap().to_obs_url(),
            "obs://dli-staging/dev/"
        );
        assert_eq!(
            ObsLocation::parse("bucket").unwrap().to_dli_path(),
            "bucket"
        );
        assert!(ObsLocation::parse("obs://Bad_Bucket/x").is_err());
        assert_eq!(strip_obs_scheme("obs://b/k"), "b/k");
        assert_eq!(with_obs_scheme("b/k"), "obs://b/k");
        assert_eq!(with_obs_scheme("obs://b/k"), "obs://b/k");
    }

    #[test]
    fn virtual_hosted_style_puts_the_bucket_in_the_host() {
        let endpoint = Url::parse("https://obs.cn-north-4.myhuaweicloud.com").unwrap();
        assert_eq!(
            s3_endpoint(&endpoint, "ckpt", false),
            "https://obs.cn-north-4.myhuaweicloud.com"
        );
        assert_eq!(
            s3_endpoint(&endpoint, "ckpt", true),
            "https://ckpt.obs.cn-north-4.myhuaweicloud.com"
        );
        let local = Url::parse("http://localhost:9000/").unwrap();
        assert_eq!(
            s3_endpoint(&local, "b-1", true),
            "http://b-1.localhost:9000"
        );
    }

    #[test]
    fn auto_addressing_keeps_path_style_only_where_no_bucket_host_can_exist() {
        let auto = |text: &str| ObsAddressing::Auto.virtual_hosted_for(&Url::parse(text).unwrap());
        for path_style in [
            "http://127.0.0.1:9000",
            "https://10.1.2.3",
            "http://[::1]:9000/",
            "http://[2001:db8::7]",
            "http://localhost:9000",
            "http://LOCALHOST.:9000",
        ] {
            assert!(!auto(path_style), "{path_style} should keep path style");
        }
        for virtual_hosted in [
            "https://obs.cn-north-4.myhuaweicloud.com",
            "https://obs.eu-west-101.myhuaweicloud.eu",
            "http://obs.test:8080",
            "http://minio.internal",
            "http://localhost.example.com",
        ] {
            assert!(
                auto(virtual_hosted),
                "{virtual_hosted} should be virtual-hosted"
            );
        }
        let ip = Url::parse("http://127.0.0.1:9000").unwrap();
        let name = Url::parse("https://obs.cn-north-4.myhuaweicloud.com").unwrap();
        assert!(ObsAddressing::VirtualHosted.virtual_hosted_for(&ip));
        assert!(!ObsAddressing::Path.virtual_hosted_for(&name));
        assert_eq!(ObsAddressing::default(), ObsAddressing::Auto);
    }

    #[test]
    fn pinned_hosts_answer_the_name_and_its_subdomains() {
        let resolver = PinnedResolver {
            pins: Arc::new(vec![("obs.test".into(), "127.0.0.1".parse().unwrap())]),
        };
        assert!(resolver.pinned("obs.test").is_some());
        assert!(resolver.pinned("dli-gitops-staging.obs.test").is_some());
        assert!(resolver.pinned("OBS.TEST.").is_some());
        assert!(resolver.pinned("notobs.test").is_none());
        assert!(resolver.pinned("obs.test.example.com").is_none());
    }

    #[tokio::test]
    async fn local_directories_behave_like_buckets() {
        let directory = tempfile::tempdir().unwrap();
        let url = format!("file://{}", directory.path().display());
        let store = ObjectStore::from_url(&url, &ObsOptions::default()).unwrap();
        store
            .put("bundles/a.zip", Bytes::from_static(b"PK-a"))
            .await
            .unwrap();
        store
            .put("bundles/b.zip", Bytes::from_static(b"PK-b"))
            .await
            .unwrap();
        assert_eq!(
            store.get("bundles/a.zip").await.unwrap(),
            Bytes::from_static(b"PK-a")
        );
        assert_eq!(
            store.list("bundles").await.unwrap(),
            vec!["bundles/a.zip", "bundles/b.zip"]
        );
        store.delete("bundles/a.zip").await.unwrap();
        store.delete("bundles/a.zip").await.unwrap();
        let missing = store.get("bundles/a.zip").await.unwrap_err();
        assert!(missing.is_not_found(), "{missing}");
        assert!(store.put("../escape", Bytes::new()).await.is_err());
        assert!(ObjectStore::from_url("file://relative/dir", &ObsOptions::default()).is_err());
        assert!(ObjectStore::from_url("obs://bucket/x", &ObsOptions::default()).is_err());
    }
}
