//! The project id of the target's region, looked up from IAM with the target's AK/SK, for the
//! `project id` check's fix: `GET /v3/projects?name={region}` (IAM `KeystoneListProjects`),
//! signed the way the SDK's `BasicCredentials` signs its own project-id lookup (no
//! `X-Project-Id`; `huaweicloudsdkcore/auth/credentials.py`, `process_auth_params`). The answer is
//! `{"projects": [{"id", "name", ...}], "links": ...}`.

use std::time::Duration;

use crate::apply::TargetContext;
use crate::cloud::signer::{self, SignableRequest};
use crate::config::{Config, Endpoint, Service};

/// The ids of the projects named after the region, or why they could not be read.
pub(super) async fn lookup(context: &TargetContext) -> Result<Vec<String>, String> {
    let (access_key, secret_key, token) = match Config::resolve_credentials(&context.target) {
        Ok(crate::config::Credentials::AkSk {
            access_key,
            secret_key,
            security_token,
        }) => (access_key, secret_key, security_token),
        Ok(_) => return Err("the lookup needs AK/SK credentials".to_string()),
        Err(error) => return Err(error.to_string()),
    };
    let base = match (context.target.endpoint(Service::Iam), context.emulator()) {
        (Endpoint::Embedded, Some(emulator)) => emulator.iam_url(),
        (Endpoint::Url(url), _) => url,
        _ => crate::cloud::ServiceEndpoints::for_region(context.target.region())
            .map_err(|e| e.to_string())?
            .iam
            .to_string(),
    };
    let url = url::Url::parse(&base).map_err(|e| format!("IAM endpoint {base}: {e}"))?;
    let region = context.target.region().to_string();
    let path = format!("{}/v3/projects", url.path().trim_end_matches('/'));
    let query = vec![("name".to_string(), region.clone())];
    let host = match url.port() {
        Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_string(),
    };
    let mut headers = vec![
        (
            signer::HEADER_DATE.to_string(),
            chrono::Utc::now().format(signer::DATE_FORMAT).to_string(),
        ),
        ("Host".to_string(), host),
    ];
    if let Some(token) = &token {
        headers.push(("X-Security-Token".to_string(), token.clone()));
    }
    let names: Vec<String> = headers
        .iter()
        .map(|(n, _)| n.to_ascii_lowercase())
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let authorization = signer::sign(
        &access_key,
        &secret_key,
        &SignableRequest {
            method: "GET",
            path: &path,
            query: &query,
            headers: &headers,
            body: &[],
        },
        &names,
    )
    .map_err(|e| format!("signing the lookup: {e}"))?;
    let mut request_url = url.clone();
    request_url.set_path(&path);
    request_url.set_query(Some(&format!("name={}", signer::encode_component(&region))));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .map_err(|e| e.to_string())?;
    let mut request = client
        .get(request_url)
        .header("Authorization", authorization);
    for (name, value) in headers.iter().filter(|(n, _)| n != "Host") {
        request = request.header(name.as_str(), value.as_str());
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("IAM did not answer: {}", e.without_url()))?;
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap_or(serde_json::Value::Null);
    if status != 200 {
        return Err(format!(
            "IAM answered HTTP {status} {}",
            body["error_code"]
                .as_str()
                .or(body["error"]["code"].as_str())
                .unwrap_or("")
        ));
    }
    let ids: Vec<String> = body["projects"]
        .as_array()
        .map(|projects| {
            projects
                .iter()
                .filter(|p| p["name"].as_str() == Some(region.as_str()))
                .filter_map(|p| p["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    Ok(ids)
}
