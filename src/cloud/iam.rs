//! The project id of a region, looked up from IAM with AK/SK: `GET /v3/projects?name={region}`
//! (IAM `KeystoneListProjects`), signed the way the SDK's `BasicCredentials` signs its own
//! project-id lookup (`huaweicloudsdkcore/auth/credentials.py`, `process_auth_params`: no
//! `X-Project-Id`, the `SDK-HMAC-SHA256` signature over `host` and `x-sdk-date`, plus
//! `x-security-token` for temporary keys). The answer is
//! `{"projects": [{"id", "name", "enabled", "domain_id", ...}], "links": ...}`.

use std::time::Duration;

use url::Url;

use super::signer::{self, SignableRequest};
use super::{CloudError, Secret};

/// The ids of the projects named `region` that these keys see, in IAM's order.
pub async fn project_ids_for_region(
    iam_endpoint: &Url,
    region: &str,
    access_key: &str,
    secret_key: &Secret,
    security_token: Option<&Secret>,
    timeout: Duration,
) -> Result<Vec<String>, CloudError> {
    let config_error = |problem: String| CloudError::Config { problem };
    let path = format!("{}/v3/projects", iam_endpoint.path().trim_end_matches('/'));
    let query = vec![("name".to_string(), region.to_string())];
    let host = match iam_endpoint.port() {
        Some(port) => format!("{}:{port}", iam_endpoint.host_str().unwrap_or_default()),
        None => iam_endpoint.host_str().unwrap_or_default().to_string(),
    };
    let mut headers = vec![
        (
            signer::HEADER_DATE.to_string(),
            chrono::Utc::now().format(signer::DATE_FORMAT).to_string(),
        ),
        ("Host".to_string(), host),
    ];
    if let Some(token) = security_token {
        headers.push(("X-Security-Token".to_string(), token.expose().to_string()));
    }
    let names: Vec<String> = headers
        .iter()
        .map(|(n, _)| n.to_ascii_lowercase())
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let authorization = signer::sign(
        access_key,
        secret_key.expose(),
        &SignableRequest {
            method: "GET",
            path: &path,
            query: &query,
            headers: &headers,
            body: &[],
        },
        &names,
    )
    .map_err(|error| config_error(format!("signing the IAM project lookup: {error}")))?;
    let mut url = iam_endpoint.clone();
    url.set_path(&path);
    url.set_query(Some(&format!("name={}", signer::encode_component(region))));
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|error| config_error(format!("building the IAM client: {error}")))?;
    let mut request = client.get(url).header("Authorization", authorization);
    for (name, value) in headers.iter().filter(|(n, _)| n != "Host") {
        request = request.header(name.as_str(), value.as_str());
    }
    let lookup_context = || {
        Box::new(super::CallContext {
            service: "iam",
            operation: "list_projects",
            target: format!("region {region}"),
            attempts: 1,
        })
    };
    let response = request
        .send()
        .await
        .map_err(|source| CloudError::Transport {
            context: lookup_context(),
            failure: if source.is_timeout() {
                super::TransportFailure::Timeout
            } else if source.is_connect() {
                super::TransportFailure::Connect
            } else {
                super::TransportFailure::Io
            },
            endpoint: format!(
                "{}://{}",
                iam_endpoint.scheme(),
                iam_endpoint.host_str().unwrap_or_default()
            ),
            source: source.without_url(),
        })?;
    let status = response.status().as_u16();
    let request_id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = response.bytes().await.unwrap_or_default();
    if status != 200 {
        let parsed = super::wire::parse_error_body(&body);
        return Err(CloudError::Service {
            context: lookup_context(),
            status,
            error_code: parsed.error_code,
            error_msg: parsed.error_msg,
            request_id,
            retry_after: None,
        });
    }
    let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    Ok(value["projects"]
        .as_array()
        .map(|projects| {
            projects
                .iter()
                .filter(|p| p["name"].as_str() == Some(region))
                .filter_map(|p| p["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default())
}
