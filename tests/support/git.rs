//! Git repositories built in a temp directory with git2.

use std::path::Path;

/// A new repository at `path` whose initial branch is `main`.
pub fn init_main(path: &Path) -> git2::Repository {
    let mut options = git2::RepositoryInitOptions::new();
    options.initial_head("main");
    git2::Repository::init_opts(path, &options).unwrap()
}

/// Writes `files` (path, content) into the work tree and commits everything on HEAD; returns
/// the commit id.
pub fn commit(repository: &git2::Repository, files: &[(&str, &str)]) -> String {
    let root = repository.workdir().unwrap();
    for (path, content) in files {
        let full = root.join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, content).unwrap();
    }
    commit_work_tree(repository, "jobs")
}

/// Commits the work tree as it is (new, changed and deleted files) on HEAD with `message`;
/// returns the commit id.
pub fn commit_work_tree(repository: &git2::Repository, message: &str) -> String {
    let mut index = repository.index().unwrap();
    index
        .add_all(["*"].iter(), git2::IndexAddOption::DEFAULT, None)
        .unwrap();
    index.update_all(["*"].iter(), None).unwrap();
    index.write().unwrap();
    let tree = repository.find_tree(index.write_tree().unwrap()).unwrap();
    let signature = git2::Signature::now("test", "test@example.com").unwrap();
    let parent = repository
        .head()
        .ok()
        .and_then(|head| head.peel_to_commit().ok());
    let parents: Vec<&git2::Commit> = parent.iter().collect();
    repository
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
