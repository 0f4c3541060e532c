//! Integration tests for the daemon config and the sources: real git repositories made with
//! git2 in temp dirs and fetched through `GitSource`, webhook vectors for every provider, a
//! watched directory, and the config example plus a corpus of broken configs.

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
use git2::{IndexAddOption, Repository, RepositoryInitOptions, Signature};
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderValue};
use sha2::Sha256;

struct WorkRepo {
    repository: Repository,
    dir: PathBuf,
}

impl WorkRepo {
    fn new(dir: &Path) -> WorkRepo {
        let mut options = RepositoryInitOptions::new();
        options.initial_head("main");
        let repository = Repository::init_opts(dir, &options).expect("init work repository");
        WorkRepo {
            repository,
            dir: dir.to_path_buf(),
        }
    }

    fn write(&self, path: &str, contents: &[u8]) {
        let full = self.dir.join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, contents).unwrap();
    }

    fn commit(&self, message: &str) -> String {
        let mut index = self.repository.index().unwrap();
        index
            .add_all(["*"].iter(), IndexAddOption::DEFAULT, None)
            .unwrap();
        index
            .update_all(["*"].iter(), None)
            .expect("stage deletions");
        index.write().unwrap();
        let tree_id = index.write_tree().unwrap();
        let tree = self.repository.find_tree(tree_id).unwrap();
        let signature = Signature::now("Test", "test@example.com").unwrap();
        let parent = self
            .repository
            .head()
            .ok()
            .and_then(|head| head.peel_to_commit().ok());
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        self.repository
            .commit(
                Some("HEAD"),
                &signature,
                &signature,
                message,
                &tree,
                &parents,
            )
            .unwrap()
            .to_string()
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
