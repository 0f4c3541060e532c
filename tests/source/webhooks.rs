//! Webhooks from GitHub, GitLab and Gitea: verified, matched, and refused without a secret or
//! over the limits.

use super::*;

// ---------------------------------------------------------------------------------------------
// webhooks

const SECRET: &[u8] = b"s3cret-webhook-key";

fn hmac_hex(body: &[u8], secret: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

const GITHUB_PUSH: &str = r#"{
  "ref": "refs/heads/main",
  "before": "1111111111111111111111111111111111111111",
  "after": "2222222222222222222222222222222222222222",
  "repository": {
    "full_name": "data/jobs",
    "html_url": "https://github.com/data/jobs",
    "clone_url": "https://github.com/data/jobs.git",
    "ssh_url": "git@github.com:data/jobs.git"
  }
}"#;

const GITLAB_PUSH: &str = r#"{
  "object_kind": "push",
  "ref": "refs/tags/v1.2.0",
  "after": "3333333333333333333333333333333333333333",
  "checkout_sha": "3333333333333333333333333333333333333333",
  "project": {
    "web_url": "https://gitlab.example.com/data/jobs",
    "git_ssh_url": "git@gitlab.example.com:data/jobs.git",
    "git_http_url": "https://gitlab.example.com/data/jobs.git"
  }
}"#;

const GITEA_PUSH: &str = r#"{
  "ref": "refs/heads/release",
  "after": "4444444444444444444444444444444444444444",
  "repository": {
    "html_url": "https://gitea.example.com/data/jobs",
    "clone_url": "https://gitea.example.com/data/jobs.git",
    "ssh_url": "ssh://git@gitea.example.com:2222/data/jobs.git"
  }
}"#;

#[test]
fn github_push_is_verified_and_matched() {
    let body = GITHUB_PUSH.as_bytes();
    let valid = headers(&[
        ("x-github-event", "push".into()),
        (
            "x-hub-signature-256",
            format!("sha256={}", hmac_hex(body, SECRET)),
        ),
    ]);
    let WebhookEvent::Push(push) = verify_and_parse(&valid, body, SECRET).unwrap() else {
        panic!("expected a push");
    };
    assert_eq!(push.provider, Provider::GitHub);
    assert_eq!(push.git_ref, "refs/heads/main");
    assert_eq!(
        push.after.as_deref(),
        Some("2222222222222222222222222222222222222222")
    );
    assert!(push.matches("https://github.com/data/jobs.git", "main"));
    assert!(push.matches("git@github.com:Data/Jobs.git", "refs/heads/main"));
    assert!(push.matches("ssh://git@GitHub.com/data/jobs", "main"));
    assert!(
        !push.matches("https://github.com/data/other.git", "main"),
        "wrong repo"
    );
    assert!(
        !push.matches("https://github.com/data/jobs.git", "release"),
        "wrong branch"
    );
    assert!(
        !push.matches("https://github.com/data/jobs.git", "refs/tags/main"),
        "a tag, not the branch"
    );

    let wrong = headers(&[
        ("x-github-event", "push".into()),
        (
            "x-hub-signature-256",
            format!("sha256={}", hmac_hex(body, b"other")),
        ),
    ]);
    let error = verify_and_parse(&wrong, body, SECRET).unwrap_err();
    assert!(
        matches!(error, WebhookError::BadSignature { .. }) && error.is_unauthorized(),
        "{error:?}"
    );

    let missing = headers(&[("x-github-event", "push".into())]);
    let error = verify_and_parse(&missing, body, SECRET).unwrap_err();
    assert!(matches!(error, WebhookError::MissingSignature { .. }) && error.is_unauthorized());
    assert!(error.to_string().contains("X-Hub-Signature-256"), "{error}");

    let not_hex = headers(&[
        ("x-github-event", "push".into()),
        ("x-hub-signature-256", "sha256=zz".into()),
    ]);
    assert!(matches!(
        verify_and_parse(&not_hex, body, SECRET).unwrap_err(),
        WebhookError::MalformedSignature { .. }
    ));

    // A tampered body no longer matches its signature.
    let tampered = GITHUB_PUSH.replace("main", "evil");
    let error = verify_and_parse(&valid, tampered.as_bytes(), SECRET).unwrap_err();
    assert!(matches!(error, WebhookError::BadSignature { .. }));

    let ping_body = br#"{"zen":"Keep it logically awesome.","hook_id":1}"#;
    let ping = headers(&[
        ("x-github-event", "ping".into()),
        (
            "x-hub-signature-256",
            format!("sha256={}", hmac_hex(ping_body, SECRET)),
        ),
    ]);
    assert_eq!(
        verify_and_parse(&ping, ping_body, SECRET).unwrap(),
        WebhookEvent::Ping {
            provider: Provider::GitHub
        }
    );
}

#[test]
fn gitlab_push_is_verified_by_token_and_matched() {
    let body = GITLAB_PUSH.as_bytes();
    let valid = headers(&[
        ("x-gitlab-event", "Tag Push Hook".into()),
        (
            "x-gitlab-token",
            String::from_utf8(SECRET.to_vec()).unwrap(),
        ),
    ]);
    let WebhookEvent::Push(push) = verify_and_parse(&valid, body, SECRET).unwrap() else {
        panic!("expected a push");
    };
    assert_eq!(push.provider, Provider::GitLab);
    assert_eq!(push.git_ref, "refs/tags/v1.2.0");
    assert!(push.matches("https://gitlab.example.com/data/jobs.git", "v1.2.0"));
    assert!(push.matches("git@gitlab.example.com:data/jobs.git", "refs/tags/v1.2.0"));
    assert!(!push.matches("https://gitlab.example.com/data/jobs.git", "main"));
    assert!(!push.matches("https://gitlab.other.com/data/jobs.git", "v1.2.0"));

    let wrong = headers(&[
        ("x-gitlab-event", "Push Hook".into()),
        ("x-gitlab-token", "guess".into()),
    ]);
    assert!(matches!(
        verify_and_parse(&wrong, body, SECRET).unwrap_err(),
        WebhookError::BadSignature { .. }
    ));
    let missing = headers(&[("x-gitlab-event", "Push Hook".into())]);
    assert!(matches!(
        verify_and_parse(&missing, body, SECRET).unwrap_err(),
        WebhookError::MissingSignature { .. }
    ));
    let malformed = b"{\"ref\": ";
    let error = verify_and_parse(&valid, malformed, SECRET).unwrap_err();
    assert!(matches!(error, WebhookError::MalformedPayload { .. }) && !error.is_unauthorized());

    let other = headers(&[
        ("x-gitlab-event", "Merge Request Hook".into()),
        (
            "x-gitlab-token",
            String::from_utf8(SECRET.to_vec()).unwrap(),
        ),
    ]);
    assert!(matches!(
        verify_and_parse(&other, b"{}", SECRET).unwrap(),
        WebhookEvent::Other { .. }
    ));
}

#[test]
fn gitea_push_is_verified_and_matched() {
    let body = GITEA_PUSH.as_bytes();
    let valid = headers(&[
        ("x-gitea-event", "push".into()),
        // Gitea sends GitHub's headers too; its own take precedence.
        ("x-github-event", "push".into()),
        ("x-gitea-signature", hmac_hex(body, SECRET)),
    ]);
    let WebhookEvent::Push(push) = verify_and_parse(&valid, body, SECRET).unwrap() else {
        panic!("expected a push");
    };
    assert_eq!(push.provider, Provider::Gitea);
    assert!(push.matches("ssh://git@gitea.example.com/data/jobs.git", "release"));
    assert!(push.matches("https://gitea.example.com/data/jobs", "release"));
    assert!(!push.matches("https://gitea.example.com/data/jobs", "main"));

    let wrong = headers(&[
        ("x-gitea-event", "push".into()),
        ("x-gitea-signature", hmac_hex(body, b"nope")),
    ]);
    assert!(matches!(
        verify_and_parse(&wrong, body, SECRET).unwrap_err(),
        WebhookError::BadSignature { .. }
    ));
    let missing = headers(&[("x-gitea-event", "push".into())]);
    assert!(matches!(
        verify_and_parse(&missing, body, SECRET).unwrap_err(),
        WebhookError::MissingSignature { .. }
    ));
    let not_json = b"ref=refs/heads/main";
    let signed = headers(&[
        ("x-gitea-event", "push".into()),
        ("x-gitea-signature", hmac_hex(not_json, SECRET)),
    ]);
    assert!(matches!(
        verify_and_parse(&signed, not_json, SECRET).unwrap_err(),
        WebhookError::MalformedPayload { .. }
    ));
    // A deleted branch has no commit to fetch.
    let deleted = GITEA_PUSH.replace("4444444444444444444444444444444444444444", &"0".repeat(40));
    let signed = headers(&[
        ("x-gitea-event", "push".into()),
        ("x-gitea-signature", hmac_hex(deleted.as_bytes(), SECRET)),
    ]);
    let WebhookEvent::Push(push) = verify_and_parse(&signed, deleted.as_bytes(), SECRET).unwrap()
    else {
        panic!("expected a push");
    };
    assert_eq!(push.after, None);
}

#[test]
fn webhook_requests_without_provider_secret_or_within_limits_are_refused() {
    let body = GITHUB_PUSH.as_bytes();
    assert!(matches!(
        verify_and_parse(&HeaderMap::new(), body, SECRET).unwrap_err(),
        WebhookError::UnknownProvider
    ));
    let signed = headers(&[
        ("x-github-event", "push".into()),
        (
            "x-hub-signature-256",
            format!("sha256={}", hmac_hex(body, b"")),
        ),
    ]);
    assert!(matches!(
        verify_and_parse(&signed, body, b"").unwrap_err(),
        WebhookError::NoSecret
    ));
    let huge = vec![b' '; dli_gitops::source::webhook::MAX_WEBHOOK_BODY_BYTES + 1];
    assert!(matches!(
        verify_and_parse(&signed, &huge, SECRET).unwrap_err(),
        WebhookError::TooLarge { .. }
    ));
}
