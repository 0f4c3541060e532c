//! Endpoints and client options: timeouts, retry policy, rate limit, user agent.

use std::time::Duration;

use url::Url;

use super::CloudError;
use super::metrics::RequestMetrics;

/// The base URLs of the services one target talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEndpoints {
    pub dli: Url,
    pub dlf: Url,
    pub iam: Url,
    pub obs: Url,
}

impl ServiceEndpoints {
    /// The public endpoints of a region (`dli.{region}.myhuaweicloud.com`, ...). Regions of the
    /// EU sovereign cloud (`eu-west-101`, ...) use the `myhuaweicloud.eu` suffix.
    pub fn for_region(region: &str) -> Result<ServiceEndpoints, CloudError> {
        let region = region.trim();
        let valid = !region.is_empty()
            && region
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid {
            return Err(CloudError::Config {
                problem: format!(
                    "region {region:?} is not a region name (expected lower-case letters, digits and '-', e.g. cn-north-4)"
                ),
            });
        }
        let suffix = if region.starts_with("eu-west-1") && region.len() > "eu-west-1".len() {
            "myhuaweicloud.eu"
        } else {
            "myhuaweicloud.com"
        };
        let url = |service: &str| -> Result<Url, CloudError> {
            parse_endpoint(&format!("https://{service}.{region}.{suffix}"))
        };
        Ok(ServiceEndpoints {
            dli: url("dli")?,
            dlf: url("dayu-dlf")?,
            iam: url("iam")?,
            obs: url("obs")?,
        })
    }
}

/// Parses an endpoint URL, requiring http(s) and a host.
pub fn parse_endpoint(text: &str) -> Result<Url, CloudError> {
    let url = Url::parse(text.trim()).map_err(|error| CloudError::Config {
        problem: format!("endpoint {text:?} is not a URL: {error}"),
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(CloudError::Config {
            problem: format!("endpoint {text:?} must be an http:// or https:// URL with a host"),
        });
    }
    Ok(url)
}

/// Retry policy: exponential backoff with full jitter, capped attempts.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Total attempts per call, including the first (1 = no retries).
    pub max_attempts: u32,
    /// Backoff before retry `n` is a random duration in `[0, min(max_backoff, base_backoff * 2^n))`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// `Retry-After` is honoured up to this long; a longer wait ends the call with a retryable
    /// error so the caller's loop can come back later instead of blocking.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            base_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

/// Options shared by every client.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Whole-request timeout (send + receive) of one attempt.
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
    /// Client-side rate limit per service client, requests per second. The services allow
    /// 30 requests/s per user; the default keeps well under that.
    pub requests_per_second: f64,
    /// Requests allowed back to back before the rate applies.
    pub burst: u32,
    pub user_agent: String,
    /// IAM endpoint for [`Credentials::Password`](super::Credentials::Password) token auth.
    pub iam_endpoint: Option<Url>,
    /// Renew a cached IAM token this long before it expires.
    pub token_renew_before: Duration,
    /// Accept invalid TLS certificates. Dangerous; logs a warning at every client construction.
    pub danger_accept_invalid_certs: bool,
    /// Where request counts go; clone one registry into several clients to aggregate.
    pub metrics: RequestMetrics,
}

impl Default for ClientOptions {
    fn default() -> ClientOptions {
        ClientOptions {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            retry: RetryPolicy::default(),
            requests_per_second: 10.0,
            burst: 5,
            user_agent: format!("dli-gitops/{}", env!("CARGO_PKG_VERSION")),
            iam_endpoint: None,
            token_renew_before: Duration::from_secs(3600),
            danger_accept_invalid_certs: false,
            metrics: RequestMetrics::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_endpoints_follow_the_public_host_pattern() {
        let endpoints = ServiceEndpoints::for_region("cn-north-4").unwrap();
        assert_eq!(
            endpoints.dli.as_str(),
            "https://dli.cn-north-4.myhuaweicloud.com/"
        );
        assert_eq!(
            endpoints.dlf.as_str(),
            "https://dayu-dlf.cn-north-4.myhuaweicloud.com/"
        );
        assert_eq!(
            endpoints.iam.as_str(),
            "https://iam.cn-north-4.myhuaweicloud.com/"
        );
        assert_eq!(
            endpoints.obs.as_str(),
            "https://obs.cn-north-4.myhuaweicloud.com/"
        );
        let eu = ServiceEndpoints::for_region("eu-west-101").unwrap();
        assert_eq!(eu.dli.as_str(), "https://dli.eu-west-101.myhuaweicloud.eu/");
        assert!(ServiceEndpoints::for_region("cn north/4").is_err());
        assert!(ServiceEndpoints::for_region("").is_err());
        assert!(parse_endpoint("ftp://x").is_err());
    }
}
