//! `CloudClients`: the DLI, DLF and OBS clients of one target, built from its endpoints.

use super::{
    ClientOptions, CloudError, Credentials, DlfClient, DliClient, ObjectStore, ObsAddressing,
    ObsOptions, ServiceEndpoints,
};

/// Everything one target needs to talk to the cloud. The clients share the options (and so one
/// metrics registry); password credentials get their IAM endpoint from `endpoints.iam` unless
/// the options name one.
#[derive(Debug)]
pub struct CloudClients {
    pub dli: DliClient,
    pub dlf: DlfClient,
    pub obs: ObsOptions,
}

impl CloudClients {
    pub fn new(
        endpoints: &ServiceEndpoints,
        region: &str,
        project_id: &str,
        credentials: Credentials,
        options: ClientOptions,
        dlf_workspace: Option<&str>,
    ) -> Result<CloudClients, CloudError> {
        let options = ClientOptions {
            iam_endpoint: options
                .iam_endpoint
                .clone()
                .or_else(|| Some(endpoints.iam.clone())),
            ..options
        };
        Ok(CloudClients {
            dli: DliClient::new(
                endpoints.dli.clone(),
                project_id,
                credentials.clone(),
                options.clone(),
            )?,
            dlf: DlfClient::new(
                endpoints.dlf.clone(),
                project_id,
                credentials.clone(),
                options,
                dlf_workspace,
            )?,
            obs: ObsOptions {
                endpoint: Some(endpoints.obs.clone()),
                region: region.to_string(),
                credentials: Some(credentials),
                addressing: ObsAddressing::Auto,
                pinned_hosts: Vec::new(),
            },
        })
    }

    /// The same clients with OBS buckets addressed as `addressing` says (the default is
    /// [`ObsAddressing::Auto`]: virtual-hosted unless the endpoint is an IP address or
    /// `localhost`).
    pub fn with_obs_addressing(mut self, addressing: ObsAddressing) -> CloudClients {
        self.obs.addressing = addressing;
        self
    }

    /// An object store for `obs://bucket/prefix` (or `file:///dir`) with this target's OBS
    /// endpoint and keys.
    pub fn object_store(&self, url: &str) -> Result<ObjectStore, CloudError> {
        ObjectStore::from_url(url, &self.obs)
    }
}
