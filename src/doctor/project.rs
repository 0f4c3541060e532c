//! The project id of the target's region, looked up from IAM with the target's AK/SK
//! (`cloud::iam::project_ids_for_region`), for the `project id` check's fix.

use std::time::Duration;

use crate::apply::TargetContext;
use crate::config::{Config, Endpoint, Service};

/// The IAM endpoint a target uses (its `endpoints.iam`, the embedded emulator's, or the
/// region's public host).
pub(crate) fn iam_endpoint(context: &TargetContext) -> Result<url::Url, String> {
    let text = match (context.target.endpoint(Service::Iam), context.emulator()) {
        (Endpoint::Embedded, Some(emulator)) => emulator.iam_url(),
        (Endpoint::Url(url), _) => url,
        _ => crate::cloud::ServiceEndpoints::for_region(context.target.region())
            .map_err(|e| e.to_string())?
            .iam
            .to_string(),
    };
    crate::cloud::parse_endpoint(&text).map_err(|e| e.to_string())
}

/// The ids of the projects named after the region, or why they could not be read.
pub(super) async fn lookup(context: &TargetContext) -> Result<Vec<String>, String> {
    let (access_key, secret_key, token) = match Config::resolve_credentials(&context.target) {
        Ok(crate::config::Credentials::AkSk {
            access_key,
            secret_key,
            security_token,
        }) => (
            access_key,
            crate::cloud::Secret::new(secret_key),
            security_token.map(crate::cloud::Secret::new),
        ),
        Ok(_) => return Err("the lookup needs AK/SK credentials".to_string()),
        Err(error) => return Err(error.to_string()),
    };
    crate::cloud::iam::project_ids_for_region(
        &iam_endpoint(context)?,
        context.target.region(),
        &access_key,
        &secret_key,
        token.as_ref(),
        Duration::from_secs(20),
    )
    .await
    .map_err(|error| error.to_string())
}
