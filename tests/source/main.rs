//! Integration tests for the daemon config and the sources: real git repositories made with
//! git2 in temp dirs and fetched through `GitSource`, webhook vectors for every provider, a
//! watched directory, and the config example plus a corpus of broken configs.

#[path = "../support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use dli_gitops::config::{
    Config, ConfigError, Credentials, Endpoint, GitSourceConfig, SecretRef, Service,
    StorageLocation,
};
use dli_gitops::desired::snapshot::{MAX_FILE_BYTES, RepoFile};
use dli_gitops::source::webhook::Provider;
use dli_gitops::source::{
    DirSource, GitSource, SourceError, WebhookError, WebhookEvent, verify_and_parse,
};
use git2::{Repository, Signature};
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderValue};
use sha2::Sha256;

struct WorkRepo {
    repository: Repository,
    dir: PathBuf,
}

impl WorkRepo {
    fn new(dir: &Path) -> WorkRepo {
        WorkRepo {
            repository: support::git::init_main(dir),
            dir: dir.to_path_buf(),
        }
    }

    fn write(&self, path: &str, contents: &[u8]) {
        let full = self.dir.join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, contents).unwrap();
    }

    fn commit(&self, message: &str) -> String {
        support::git::commit_work_tree(&self.repository, message)
    }
}

fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.insert(*name, HeaderValue::from_str(value).unwrap());
    }
    map
}

mod config;
mod dir;
mod git;
mod ssh;
mod webhooks;
