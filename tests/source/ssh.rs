//! Git over ssh against a real sshd on loopback (ignored where no sshd is installed).

use super::*;

// ---------------------------------------------------------------------------------------------
// git over ssh, against a real sshd on loopback

/// An `sshd` child process on a loopback port, killed on drop.
struct SshServer {
    child: std::process::Child,
    port: u16,
    host_public_key: String,
}

impl Drop for SshServer {
    fn drop(&mut self) {
        // Let the per-connection sshd processes finish first, so that the listener reaps them
        // instead of leaving them to PID 1.
        let pid = self.child.id();
        let children = format!("/proc/{pid}/task/{pid}/children");
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        while std::fs::read_to_string(&children).is_ok_and(|list| !list.trim().is_empty())
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_sshd() -> Option<PathBuf> {
    ["/usr/sbin/sshd", "/usr/local/sbin/sshd", "/sbin/sshd"]
        .iter()
        .map(PathBuf::from)
        .find(|path| path.is_file())
}

fn ssh_keygen(path: &Path) {
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen runs");
    assert!(status.success(), "ssh-keygen failed");
}

fn start_sshd(sshd: &Path, dir: &Path, authorized_public_key: &str) -> SshServer {
    ssh_keygen(&dir.join("host_key"));
    std::fs::write(dir.join("authorized_keys"), authorized_public_key).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = format!(
        "Port {port}\nListenAddress 127.0.0.1\nHostKey {dir}/host_key\nAuthorizedKeysFile {dir}/authorized_keys\n\
         PidFile {dir}/sshd.pid\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n\
         KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin prohibit-password\n",
        dir = dir.display()
    );
    std::fs::write(dir.join("sshd_config"), config).unwrap();
    // OpenSSH refuses to start without its privilege separation directory.
    let _ = std::fs::create_dir_all("/run/sshd");
    let log = std::fs::File::create(dir.join("sshd.log")).unwrap();
    let child = std::process::Command::new(sshd)
        .args(["-D", "-e", "-f"])
        .arg(dir.join("sshd_config"))
        .stderr(log)
        .spawn()
        .expect("sshd starts");
    let mut server = SshServer {
        child,
        port,
        host_public_key: std::fs::read_to_string(dir.join("host_key.pub")).unwrap(),
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!(
                "sshd exited with {status}: {}",
                std::fs::read_to_string(dir.join("sshd.log")).unwrap_or_default()
            );
        }
        assert!(
            std::time::Instant::now() < deadline,
            "sshd did not listen in 10s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

fn ssh_source(url: &str, key: &Path, known_hosts: &Path, state_dir: &Path) -> GitSource {
    let spec: GitSourceConfig = serde_yaml::from_str(&format!(
        "url: '{url}'\nbranch: main\nssh: {{key_file: '{}', known_hosts_file: '{}'}}\n",
        key.display(),
        known_hosts.display()
    ))
    .unwrap();
    GitSource::new(&spec, state_dir)
}

#[test]
#[ignore = "needs a local sshd and ssh-keygen (openssh-server, openssh-client); .ci/run installs them and runs it with --ignored"]
fn git_over_ssh_trusts_only_known_host_keys() {
    let Some(sshd) = find_sshd() else {
        panic!(
            "no sshd is installed (apt-get install openssh-server openssh-client); this test is ignored by default for that reason"
        );
    };
    let temp = tempfile::tempdir().unwrap();
    let work = WorkRepo::new(&temp.path().join("repo"));
    work.write("jobs/a.yaml", b"kind: FlinkSqlJob\n");
    let commit = work.commit("one");
    let server_dir = temp.path().join("sshd");
    std::fs::create_dir_all(&server_dir).unwrap();
    let client_key = temp.path().join("client_key");
    ssh_keygen(&client_key);
    let server = start_sshd(
        &sshd,
        &server_dir,
        &std::fs::read_to_string(temp.path().join("client_key.pub")).unwrap(),
    );
    let user = std::env::var("USER").unwrap_or_else(|_| "root".to_string());
    let url = format!(
        "ssh://{user}@127.0.0.1:{}{}",
        server.port,
        work.dir.display()
    );
    let state_dir = temp.path().join("state");

    // The server's real key, listed under [host]:port: trusted, fetched, readable.
    let known_hosts = temp.path().join("known_hosts");
    let host_key_fields: Vec<&str> = server.host_public_key.split_whitespace().collect();
    std::fs::write(
        &known_hosts,
        format!(
            "[127.0.0.1]:{} {} {}\n",
            server.port, host_key_fields[0], host_key_fields[1]
        ),
    )
    .unwrap();
    let trusted = ssh_source(&url, &client_key, &known_hosts, &state_dir);
    let fetched = trusted.fetch().unwrap_or_else(|error| {
        panic!(
            "{error}: {:?}\nsshd log:\n{}",
            std::error::Error::source(&error),
            std::fs::read_to_string(server_dir.join("sshd.log")).unwrap_or_default()
        )
    });
    assert_eq!(fetched, commit);
    assert!(
        trusted
            .snapshot(&fetched, "jobs")
            .unwrap()
            .files
            .contains_key("a.yaml")
    );

    // A passphrase-protected client key, with the passphrase from a file.
    let locked_key = temp.path().join("locked_key");
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "correct horse", "-f"])
        .arg(&locked_key)
        .status()
        .unwrap();
    assert!(status.success());
    let mut authorized = std::fs::read_to_string(temp.path().join("client_key.pub")).unwrap();
    authorized.push_str(&std::fs::read_to_string(temp.path().join("locked_key.pub")).unwrap());
    std::fs::write(server_dir.join("authorized_keys"), authorized).unwrap();
    let passphrase_file = temp.path().join("passphrase");
    std::fs::write(&passphrase_file, "correct horse\n").unwrap();
    let spec: GitSourceConfig = serde_yaml::from_str(&format!(
        "url: '{url}'\nbranch: main\nssh: {{key_file: '{}', known_hosts_file: '{}', passphrase_file: '{}'}}\n",
        locked_key.display(),
        known_hosts.display(),
        passphrase_file.display()
    ))
    .unwrap();
    let locked = GitSource::new(&spec, &temp.path().join("state-locked"));
    assert_eq!(
        locked
            .fetch()
            .unwrap_or_else(|error| panic!("{error}: {:?}", std::error::Error::source(&error))),
        commit
    );

    // Not listed: refused, with the way to fix it.
    let empty_known_hosts = temp.path().join("known_hosts_empty");
    std::fs::write(&empty_known_hosts, "").unwrap();
    let error = ssh_source(
        &url,
        &client_key,
        &empty_known_hosts,
        &temp.path().join("state2"),
    )
    .fetch()
    .unwrap_err();
    assert!(
        matches!(
            error,
            SourceError::HostKey {
                verdict: dli_gitops::source::HostKeyVerdict::Unknown,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("ssh-keyscan"), "{error}");

    // Listed with another key: refused as a possible interception.
    let other_key = temp.path().join("other_key");
    ssh_keygen(&other_key);
    let other_public = std::fs::read_to_string(temp.path().join("other_key.pub")).unwrap();
    let other_fields: Vec<&str> = other_public.split_whitespace().collect();
    let wrong_known_hosts = temp.path().join("known_hosts_wrong");
    std::fs::write(
        &wrong_known_hosts,
        format!(
            "[127.0.0.1]:{} {} {}\n",
            server.port, other_fields[0], other_fields[1]
        ),
    )
    .unwrap();
    let error = ssh_source(
        &url,
        &client_key,
        &wrong_known_hosts,
        &temp.path().join("state3"),
    )
    .fetch()
    .unwrap_err();
    assert!(
        matches!(
            error,
            SourceError::HostKey {
                verdict: dli_gitops::source::HostKeyVerdict::Mismatch,
                ..
            }
        ),
        "{error:?}"
    );

    // A trusted host with a key it does not authorise: an authentication error, no retry loop.
    let error = ssh_source(&url, &other_key, &known_hosts, &temp.path().join("state4"))
        .fetch()
        .unwrap_err();
    assert!(matches!(error, SourceError::Fetch { .. }), "{error:?}");
    assert!(
        !error.is_retryable(),
        "bad credentials are not retried: {error:?}"
    );
}
