//! The HTTP core every service client shares: URL building, signing or token headers, the
//! client-side rate limit, per-attempt timeouts, retries with backoff and jitter, `Retry-After`,
//! the auth-failure back-off, error decoding and request metrics.

use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use tokio::time::Instant;
use url::Url;

use super::auth::{AUTH_FAILURE_BACKOFF, Authenticator, TokenSource, fingerprint, refusals};
use super::error::{CallContext, TransportFailure};
use super::ratelimit::TokenBucket;
use super::secret::Credentials;
use super::signer::{self, SignableRequest};
use super::wire;
use super::{ClientOptions, CloudError};

/// One logical API call; the core may send it several times.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub operation: &'static str,
    pub target: String,
    pub method: Method,
    /// The path below the endpoint, percent-decoded, e.g. `/v1.0/{pid}/streaming/jobs`.
    pub path_segments: Vec<String>,
    pub query: Vec<(String, String)>,
    pub body: Option<Value>,
    /// Safe to resend blindly after a transient failure. Creates are not: their callers check by
    /// name first.
    pub idempotent: bool,
}

impl Call {
    pub fn new(operation: &'static str, method: Method, path_segments: &[&str]) -> Call {
        Call {
            operation,
            target: String::new(),
            method,
            path_segments: path_segments.iter().map(|s| s.to_string()).collect(),
            query: Vec::new(),
            body: None,
            idempotent: true,
        }
    }

    pub fn target(mut self, target: impl Into<String>) -> Call {
        self.target = target.into();
        self
    }

    pub fn query(mut self, key: &str, value: impl ToString) -> Call {
        self.query.push((key.to_string(), value.to_string()));
        self
    }

    pub fn json(mut self, body: Value) -> Call {
        self.body = Some(body);
        self
    }

    pub fn not_idempotent(mut self) -> Call {
        self.idempotent = false;
        self
    }

    pub fn context(&self, service: &'static str, attempts: u32) -> Box<CallContext> {
        Box::new(CallContext {
            service,
            operation: self.operation,
            target: self.target.clone(),
            attempts,
        })
    }
}

/// A successful (2xx) response.
#[derive(Debug)]
pub(crate) struct Response {
    pub request_id: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub context: Box<CallContext>,
}

impl Response {
    /// The body as JSON; an empty body is `null`.
    pub fn json(&self) -> Result<Value, CloudError> {
        if self.body.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&self.body).map_err(|error| CloudError::Decode {
            context: self.context.clone(),
            problem: format!(
                "body is not JSON ({error}): {}",
                wire::shorten(&String::from_utf8_lossy(&self.body))
            ),
            request_id: self.request_id.clone(),
        })
    }

    /// The body as JSON, failing when it says `is_success: false`.
    pub fn successful_json(&self) -> Result<Value, CloudError> {
        let value = self.json()?;
        if wire::is_success(&value) == Some(false) {
            return Err(CloudError::Rejected {
                context: self.context.clone(),
                message: wire::non_empty_string(wire::first_field(
                    &value,
                    &["message", "error_msg"],
                ))
                .map(|m| wire::shorten(&m))
                .unwrap_or_else(|| "is_success is false, no message".to_string()),
                request_id: self.request_id.clone(),
            });
        }
        Ok(value)
    }

    pub fn decode_error(&self, problem: impl Into<String>) -> CloudError {
        CloudError::Decode {
            context: self.context.clone(),
            problem: problem.into(),
            request_id: self.request_id.clone(),
        }
    }
}

/// The shared HTTP machinery of one service client.
pub(crate) struct ServiceClient {
    pub service: &'static str,
    endpoint: Url,
    project_id: String,
    authenticator: Authenticator,
    http: reqwest::Client,
    options: ClientOptions,
    limiter: TokenBucket,
    extra_headers: Vec<(HeaderName, HeaderValue)>,
    /// Who we are to the service and where: the key of the process-wide refusal registry.
    refusal_key: String,
}

impl std::fmt::Debug for ServiceClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceClient")
            .field("service", &self.service)
            .field("endpoint", &self.endpoint.as_str())
            .field("project_id", &self.project_id)
            .finish_non_exhaustive()
    }
}

impl ServiceClient {
    pub fn new(
        service: &'static str,
        endpoint: Url,
        project_id: &str,
        credentials: Credentials,
        options: ClientOptions,
    ) -> Result<ServiceClient, CloudError> {
        let http = build_http(&options)?;
        let authenticator = match credentials {
            Credentials::AkSk {
                access_key,
                secret_key,
                security_token,
            } => {
                if access_key.trim().is_empty() || secret_key.is_empty() {
                    return Err(CloudError::Config {
                        problem: "access key and secret key must not be empty".into(),
                    });
                }
                Authenticator::AkSk {
                    access_key,
                    secret_key,
                    security_token,
                }
            }
            Credentials::Password {
                user,
                password,
                domain,
            } => {
                let iam = match &options.iam_endpoint {
                    Some(iam_endpoint) => Some(ServiceClient::anonymous(
                        "iam",
                        iam_endpoint.clone(),
                        options.clone(),
                        format!("user:{domain}/{user}:{}", fingerprint(password.expose())),
                    )?),
                    None => None,
                };
                Authenticator::Token(Box::new(TokenSource {
                    user,
                    password,
                    domain,
                    project_id: project_id.to_string(),
                    iam,
                    renew_before: options.token_renew_before,
                    cache: tokio::sync::Mutex::new(None),
                }))
            }
        };
        let identity = match &authenticator {
            Authenticator::AkSk {
                access_key,
                secret_key,
                ..
            } => format!("ak:{access_key}:{}", fingerprint(secret_key.expose())),
            Authenticator::Token(source) => format!(
                "user:{}/{}:{}",
                source.domain,
                source.user,
                fingerprint(source.password.expose())
            ),
            Authenticator::Anonymous => String::new(),
        };
        Ok(
            ServiceClient::assemble(service, endpoint, project_id, authenticator, http, options)
                .with_identity(identity),
        )
    }

    fn with_identity(mut self, identity: String) -> ServiceClient {
        let authority = format!(
            "{}:{}",
            self.endpoint.host_str().unwrap_or_default(),
            self.endpoint.port_or_known_default().unwrap_or(0)
        );
        self.refusal_key = format!("{identity}@{authority}");
        self
    }

    /// A client without credentials of its own: IAM's token request carries the password in
    /// its body. `identity` names that password for the refusal registry.
    fn anonymous(
        service: &'static str,
        endpoint: Url,
        options: ClientOptions,
        identity: String,
    ) -> Result<ServiceClient, CloudError> {
        let http = build_http(&options)?;
        Ok(ServiceClient::assemble(
            service,
            endpoint,
            "",
            Authenticator::Anonymous,
            http,
            options,
        )
        .with_identity(identity))
    }

    fn assemble(
        service: &'static str,
        endpoint: Url,
        project_id: &str,
        authenticator: Authenticator,
        http: reqwest::Client,
        options: ClientOptions,
    ) -> ServiceClient {
        if options.danger_accept_invalid_certs {
            tracing::warn!(
                service,
                endpoint = %endpoint,
                "TLS certificate verification is DISABLED for this client; anyone on the network path can read and change its traffic"
            );
        }
        ServiceClient {
            service,
            endpoint,
            project_id: project_id.to_string(),
            authenticator,
            http,
            limiter: TokenBucket::new(options.requests_per_second, options.burst),
            options,
            extra_headers: Vec::new(),
            refusal_key: String::new(),
        }
    }

    pub fn project_id(&self) -> &str {
        &self.project_id
    }

    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// Adds a header to every request (DLF's `workspace`).
    pub fn add_header(&mut self, name: &'static str, value: &str) -> Result<(), CloudError> {
        let header_value = HeaderValue::from_str(value).map_err(|_| CloudError::Config {
            problem: format!(
                "header {name} value {value:?} contains characters HTTP headers cannot carry"
            ),
        })?;
        self.extra_headers
            .push((HeaderName::from_static(name), header_value));
        Ok(())
    }

    /// Sends `call`, retrying transient failures of idempotent calls; returns the 2xx response.
    pub async fn send(&self, call: &Call) -> Result<Response, CloudError> {
        let policy = &self.options.retry;
        let max_attempts = policy.max_attempts.max(1);
        let mut attempt: u32 = 0;
        let mut token_renewed = false;
        loop {
            attempt += 1;
            let mut error = match self.attempt(call, attempt).await {
                Ok(response) => return Ok(response),
                Err(error) => error,
            };
            // Only the token request (IAM) fails on behalf of another service, and it has been
            // through its own retries already: its error keeps its own attempt count.
            let from_this_service = error
                .context()
                .is_none_or(|context| context.service == self.service);
            if from_this_service && let Some(context) = error.context_mut() {
                context.attempts = attempt;
            }
            if error.is_auth_failure() {
                if let Authenticator::Token(source) = &self.authenticator {
                    // An expired or revoked token is renewed once; a refused password (an
                    // error from IAM itself) is final.
                    let refused_by_this_service = matches!(
                        &error,
                        CloudError::Service { context, .. } if context.service == self.service
                    );
                    if !token_renewed && refused_by_this_service {
                        token_renewed = true;
                        *source.cache.lock().await = None;
                        tracing::info!(
                            service = self.service,
                            operation = call.operation,
                            "The token was refused; renewing it once."
                        );
                        continue;
                    }
                }
                if !matches!(error, CloudError::AuthBackoff { .. }) {
                    self.remember_auth_refusal(&error);
                    tracing::error!(
                        service = self.service,
                        operation = call.operation,
                        error = %error,
                        "The service refused our credentials; not retrying, and holding further requests back so the key is not locked."
                    );
                }
                return Err(error);
            }
            if !error.is_retryable() || attempt >= max_attempts {
                return Err(error);
            }
            if !from_this_service {
                // Retrying here too would multiply the budgets: max_attempts² token requests.
                return Err(error);
            }
            if !call.idempotent {
                // The request may have been applied; the caller decides (check by name first).
                return Err(error);
            }
            let mut delay = full_jitter(policy.base_backoff, policy.max_backoff, attempt);
            if let Some(retry_after) = error.retry_after() {
                if retry_after > policy.max_retry_after {
                    tracing::warn!(service = self.service, operation = call.operation, retry_after = ?retry_after,
                        "The service asked to wait longer than allowed; giving up for now.");
                    return Err(error);
                }
                delay = delay.max(retry_after);
            }
            tracing::warn!(
                service = self.service,
                operation = call.operation,
                target = %call.target,
                attempt,
                delay_ms = delay.as_millis() as u64,
                error = %error,
                "A transient failure; retrying after a backoff."
            );
            tokio::time::sleep(delay).await;
        }
    }

    fn remember_auth_refusal(&self, error: &CloudError) {
        let reason = match error {
            CloudError::Service {
                error_code,
                error_msg,
                ..
            } => {
                format!(
                    "{} {}",
                    error_code.as_deref().unwrap_or("HTTP 401"),
                    error_msg
                )
            }
            other => other.to_string(),
        };
        refusals().lock().unwrap_or_else(|p| p.into_inner()).insert(
            self.refusal_key.clone(),
            (std::time::Instant::now(), reason),
        );
    }

    fn auth_backoff(&self, call: &Call) -> Option<CloudError> {
        let mut refused = refusals().lock().unwrap_or_else(|p| p.into_inner());
        let (at, reason) = refused.get(&self.refusal_key)?;
        let ago = at.elapsed();
        if ago >= AUTH_FAILURE_BACKOFF {
            refused.remove(&self.refusal_key);
            return None;
        }
        Some(CloudError::AuthBackoff {
            context: call.context(self.service, 0),
            reason: reason.clone(),
            refused_ago: Duration::from_secs(ago.as_secs()),
            remaining: Duration::from_secs((AUTH_FAILURE_BACKOFF - ago).as_secs() + 1),
        })
    }

    /// The request URL: the endpoint's own path, then the call's segments, then the query
    /// encoded exactly as the signer canonicalises it.
    fn url_for(&self, call: &Call) -> (Url, String) {
        let mut url = self.endpoint.clone();
        let base_path = self.endpoint.path().trim_end_matches('/').to_string();
        let mut decoded_path = percent_encoding::percent_decode_str(&base_path)
            .decode_utf8_lossy()
            .into_owned();
        for segment in &call.path_segments {
            decoded_path.push('/');
            decoded_path.push_str(segment);
        }
        if decoded_path.is_empty() {
            decoded_path.push('/');
        }
        let encoded_path = decoded_path
            .split('/')
            .map(signer::encode_component)
            .collect::<Vec<_>>()
            .join("/");
        url.set_path(&encoded_path);
        if call.query.is_empty() {
            url.set_query(None);
        } else {
            let query = call
                .query
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{}={}",
                        signer::encode_component(k),
                        signer::encode_component(v)
                    )
                })
                .collect::<Vec<_>>()
                .join("&");
            url.set_query(Some(&query));
        }
        url.set_fragment(None);
        (url, decoded_path)
    }

    async fn attempt(&self, call: &Call, attempt: u32) -> Result<Response, CloudError> {
        if let Some(error) = self.auth_backoff(call) {
            return Err(error);
        }
        self.limiter.acquire().await;
        let (url, decoded_path) = self.url_for(call);
        let body = self.request_body(call)?;
        let mut headers = self.base_headers(call);
        self.authenticate(call, &url, &decoded_path, &body, &mut headers)
            .await?;
        let mut request = self.http.request(call.method.clone(), url.clone());
        for (name, value) in &headers {
            request = request.header(name.as_str(), value.as_str());
        }
        for (name, value) in &self.extra_headers {
            request = request.header(name.clone(), value.clone());
        }
        if call.body.is_some() {
            request = request.body(body);
        }
        let started = Instant::now();
        let context = call.context(self.service, attempt);
        let endpoint_label = format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default())
            + &url.port().map(|p| format!(":{p}")).unwrap_or_default();
        let response = match request.send().await {
            Ok(response) => response,
            Err(source) => return Err(self.transport_error(call, context, endpoint_label, source)),
        };
        let status = response.status().as_u16();
        let response_headers = response.headers().clone();
        let request_id = response_headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = match read_capped(response, MAX_RESPONSE_BODY).await {
            Ok(body) => body,
            Err(BodyError::TooLarge { declared }) => {
                return Err(self.oversized_error(call, context, status, declared, request_id));
            }
            Err(BodyError::Transport(source)) => {
                return Err(self.transport_error(call, context, endpoint_label, source));
            }
        };
        self.options
            .metrics
            .record(self.service, call.operation, &status.to_string());
        self.observe(call, &url, &headers, status, &response_headers, &body);
        tracing::debug!(
            service = self.service,
            operation = call.operation,
            target = %call.target,
            status,
            request_id = request_id.as_deref().unwrap_or(""),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "Cloud API call answered."
        );
        if (200..300).contains(&status) {
            return Ok(Response {
                request_id,
                headers: response_headers,
                body,
                context,
            });
        }
        let parsed = wire::parse_error_body(&body);
        Err(CloudError::Service {
            context,
            status,
            error_code: parsed.error_code,
            error_msg: parsed.error_msg,
            request_id,
            retry_after: response_headers
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after),
        })
    }

    /// The call's JSON body as bytes (empty without a body).
    fn request_body(&self, call: &Call) -> Result<Vec<u8>, CloudError> {
        match &call.body {
            Some(value) => serde_json::to_vec(value).map_err(|error| CloudError::Config {
                problem: format!(
                    "{} {}: request body does not serialise: {error}",
                    self.service, call.operation
                ),
            }),
            None => Ok(Vec::new()),
        }
    }

    /// The headers every request carries before authentication: the signing date, the project
    /// id (when known) and, with a body, its content type.
    fn base_headers(&self, call: &Call) -> Vec<(String, String)> {
        let mut headers: Vec<(String, String)> = Vec::new();
        headers.push((
            signer::HEADER_DATE.to_string(),
            chrono::Utc::now().format(signer::DATE_FORMAT).to_string(),
        ));
        if !self.project_id.is_empty() {
            headers.push(("X-Project-Id".to_string(), self.project_id.clone()));
        }
        if call.body.is_some() {
            headers.push((
                "Content-Type".to_string(),
                "application/json;charset=UTF-8".to_string(),
            ));
        }
        headers
    }

    /// Adds the authentication headers: an AK/SK signature over the request as it will be
    /// sent, or an IAM token, or nothing.
    async fn authenticate(
        &self,
        call: &Call,
        url: &Url,
        decoded_path: &str,
        body: &[u8],
        headers: &mut Vec<(String, String)>,
    ) -> Result<(), CloudError> {
        match &self.authenticator {
            Authenticator::AkSk {
                access_key,
                secret_key,
                security_token,
            } => {
                let host = match url.port() {
                    Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
                    None => url.host_str().unwrap_or_default().to_string(),
                };
                headers.push(("Host".to_string(), host));
                if let Some(token) = security_token {
                    headers.push(("X-Security-Token".to_string(), token.expose().to_string()));
                }
                let signed: Vec<String> = headers
                    .iter()
                    .map(|(name, _)| name.to_ascii_lowercase())
                    .collect();
                let signed: Vec<&str> = signed.iter().map(String::as_str).collect();
                let query = call.query.clone();
                let signable = SignableRequest {
                    method: call.method.as_str(),
                    path: decoded_path,
                    query: &query,
                    headers: headers.as_slice(),
                    body,
                };
                let authorization =
                    signer::sign(access_key, secret_key.expose(), &signable, &signed).map_err(
                        |error| CloudError::Config {
                            problem: format!(
                                "{} {}: could not sign the request: {error}",
                                self.service, call.operation
                            ),
                        },
                    )?;
                // reqwest writes Host itself, from the same URL, exactly as signed above.
                headers.retain(|(name, _)| !name.eq_ignore_ascii_case("host"));
                headers.push(("Authorization".to_string(), authorization));
            }
            Authenticator::Token(source) => {
                let token = Box::pin(source.token()).await?;
                headers.push(("X-Auth-Token".to_string(), token.expose().to_string()));
            }
            Authenticator::Anonymous => {}
        }
        Ok(())
    }

    /// A transport failure (sending, or reading the answer), counted in the metrics.
    fn transport_error(
        &self,
        call: &Call,
        context: Box<CallContext>,
        endpoint: String,
        source: reqwest::Error,
    ) -> CloudError {
        let failure = classify_transport(&source);
        self.options
            .metrics
            .record(self.service, call.operation, transport_label(failure));
        CloudError::Transport {
            context,
            failure,
            endpoint,
            source: source.without_url(),
        }
    }

    /// An answer over [`MAX_RESPONSE_BODY`]: counted, logged, and not read.
    fn oversized_error(
        &self,
        call: &Call,
        context: Box<CallContext>,
        status: u16,
        declared: Option<u64>,
        request_id: Option<String>,
    ) -> CloudError {
        self.options
            .metrics
            .record(self.service, call.operation, "oversized");
        tracing::warn!(
            service = self.service,
            operation = call.operation,
            target = %call.target,
            status,
            limit_bytes = MAX_RESPONSE_BODY,
            declared_bytes = declared,
            "Cloud API answer is larger than the limit; not read."
        );
        CloudError::Decode {
            context,
            problem: format!(
                "HTTP {status} body is larger than the {} MiB limit{}; not read (a proxy \
                 or endpoint misbehaving? check the endpoint URL)",
                MAX_RESPONSE_BODY / (1024 * 1024),
                declared
                    .map(|d| format!(" (Content-Length {d})"))
                    .unwrap_or_default()
            ),
            request_id,
        }
    }

    /// Shows the answered exchange to an exchange observer, without credential headers.
    fn observe(
        &self,
        call: &Call,
        url: &Url,
        headers: &[(String, String)],
        status: u16,
        response_headers: &HeaderMap,
        body: &Bytes,
    ) {
        notify_observer(|| Exchange {
            service: self.service,
            operation: call.operation,
            method: call.method.to_string(),
            path: url.path().to_string(),
            query: call.query.clone(),
            request_headers: headers
                .iter()
                .cloned()
                .chain(self.extra_headers.iter().map(|(name, value)| {
                    (
                        name.to_string(),
                        value.to_str().unwrap_or_default().to_string(),
                    )
                }))
                .filter(|(name, _)| !is_credential_header(name))
                .collect(),
            request_body: call.body.clone(),
            status,
            response_headers: response_headers
                .iter()
                .filter(|(name, _)| !is_credential_header(name.as_str()))
                .map(|(name, value)| {
                    (
                        name.to_string(),
                        value.to_str().unwrap_or_default().to_string(),
                    )
                })
                .collect(),
            response_body: body.clone(),
        });
    }
}

/// One answered HTTP attempt, as an exchange observer sees it (`dli-gitops doctor`: the clock
/// skew from `Date`, and `--record`). Credential headers (`Authorization`, `X-Auth-Token`,
/// `X-Security-Token`) are left out before an observer sees anything.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub service: &'static str,
    pub operation: &'static str,
    pub method: String,
    /// The encoded request path.
    pub path: String,
    pub query: Vec<(String, String)>,
    pub request_headers: Vec<(String, String)>,
    pub request_body: Option<Value>,
    pub status: u16,
    pub response_headers: Vec<(String, String)>,
    pub response_body: Bytes,
}

/// Called once per answered attempt.
pub type ExchangeObserver = std::sync::Arc<dyn Fn(&Exchange) + Send + Sync>;

tokio::task_local! {
    static OBSERVER: ExchangeObserver;
}

/// Runs `future` with `observer` seeing every answered attempt its service calls make (on this
/// task; tasks it spawns are not observed). Without it, nothing is built or seen.
pub async fn observe_exchanges<F: std::future::Future>(
    observer: ExchangeObserver,
    future: F,
) -> F::Output {
    OBSERVER.scope(observer, future).await
}

fn notify_observer(exchange: impl FnOnce() -> Exchange) {
    if let Ok(observer) = OBSERVER.try_with(|observer| observer.clone()) {
        observer(&exchange());
    }
}

fn is_credential_header(name: &str) -> bool {
    ["authorization", "x-auth-token", "x-security-token"]
        .iter()
        .any(|credential| name.eq_ignore_ascii_case(credential))
}

/// The largest response body read from a service. Real DLI/DLF answers are small JSON (a page
/// of 100 jobs is tens of KiB); anything beyond this is a misbehaving endpoint or proxy, and
/// reading it whole would let it make the daemon allocate without bound.
pub(crate) const MAX_RESPONSE_BODY: usize = 16 * 1024 * 1024;

enum BodyError {
    /// `declared` is the `Content-Length`, when the server sent one.
    TooLarge {
        declared: Option<u64>,
    },
    Transport(reqwest::Error),
}

/// Reads the body chunk by chunk, stopping as soon as it passes `limit`, so an endless or
/// huge body costs at most `limit` bytes of memory.
async fn read_capped(mut response: reqwest::Response, limit: usize) -> Result<Bytes, BodyError> {
    let declared = response.content_length();
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(BodyError::TooLarge { declared });
    }
    let mut body = Vec::with_capacity(declared.map_or(0, |length| length as usize));
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Transport)? {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge { declared });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(body))
}

/// How long an idle connection stays pooled. A pass's calls reuse their connections; between
/// passes (minutes apart) a connection would only hold its buffers (up to the largest page it
/// read), so it is closed after this long (reqwest's default is 90 s).
pub(crate) const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(20);

fn build_http(options: &ClientOptions) -> Result<reqwest::Client, CloudError> {
    reqwest::Client::builder()
        .connect_timeout(options.connect_timeout)
        .timeout(options.request_timeout)
        .user_agent(options.user_agent.clone())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        // The process's one TLS configuration (`cloud::tls`): the roots are not parsed again.
        .use_preconfigured_tls(super::tls::client_config(
            options.danger_accept_invalid_certs,
            super::tls::Alpn::Http2AndHttp1,
        ))
        .build()
        .map_err(|error| CloudError::Config {
            problem: format!("could not build the HTTP client: {error}"),
        })
}

fn classify_transport(error: &reqwest::Error) -> TransportFailure {
    if error.is_timeout() {
        TransportFailure::Timeout
    } else if error.is_connect() {
        TransportFailure::Connect
    } else {
        TransportFailure::Io
    }
}

fn transport_label(failure: TransportFailure) -> &'static str {
    match failure {
        TransportFailure::Timeout => "timeout",
        TransportFailure::Connect => "connect",
        TransportFailure::Io => "io",
    }
}

/// A random delay in `[0, min(max, base * 2^(attempt-1)))` ("full jitter").
pub(crate) fn full_jitter(base: Duration, max: Duration, attempt: u32) -> Duration {
    let exponent = attempt.saturating_sub(1).min(30);
    let ceiling = base.saturating_mul(1u32 << exponent).min(max);
    if ceiling.is_zero() {
        return Duration::ZERO;
    }
    let nanos =
        rand::thread_rng().gen_range(0..ceiling.as_nanos().min(u128::from(u64::MAX)) as u64);
    Duration::from_nanos(nanos)
}

/// `Retry-After`: delay seconds or an HTTP date.
pub(crate) fn parse_retry_after(text: &str) -> Option<Duration> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    if let Ok(seconds) = text.parse::<f64>()
        && seconds.is_finite()
        && seconds >= 0.0
    {
        return Some(Duration::from_secs_f64(seconds));
    }
    let date = chrono::DateTime::parse_from_rfc2822(text).ok()?;
    let wait = date.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
        let soon = (chrono::Utc::now() + chrono::Duration::seconds(30))
            .to_rfc2822()
            .replace("+0000", "GMT");
        let parsed = parse_retry_after(&soon).unwrap();
        assert!(
            parsed > Duration::from_secs(25) && parsed <= Duration::from_secs(30),
            "{parsed:?}"
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn full_jitter_stays_under_the_exponential_ceiling() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(1);
        for attempt in 1..12 {
            let ceiling = base.saturating_mul(1 << (attempt - 1)).min(max);
            for _ in 0..50 {
                assert!(full_jitter(base, max, attempt) < ceiling);
            }
        }
        assert_eq!(full_jitter(Duration::ZERO, max, 3), Duration::ZERO);
    }
}
