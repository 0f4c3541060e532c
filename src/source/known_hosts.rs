//! OpenSSH `known_hosts` checking for git over ssh: a server is trusted only when its host key is
//! listed for its name. Unknown hosts and changed keys are refused, never learned.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// The parsed entries of a known_hosts file.
#[derive(Debug, Clone, Default)]
pub struct KnownHosts {
    entries: Vec<Entry>,
    /// Lines that could not be parsed (ignored, as OpenSSH does).
    pub skipped_lines: usize,
}

/// What the file says about a host's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyVerdict {
    /// The key is listed for this host.
    Trusted,
    /// The host is not in the file.
    Unknown,
    /// The host is listed, with other keys: the key changed, or someone is in the middle.
    Mismatch,
    /// The key is marked `@revoked`.
    Revoked,
}

#[derive(Debug, Clone)]
struct Entry {
    marker: Marker,
    hosts: Hosts,
    key: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    None,
    Revoked,
    CertAuthority,
}

#[derive(Debug, Clone)]
enum Hosts {
    Patterns(Vec<String>),
    Hashed { salt: Vec<u8>, hash: Vec<u8> },
}

impl KnownHosts {
    /// Parses a known_hosts file's text; malformed lines are counted in `skipped_lines`.
    pub fn parse(text: &str) -> KnownHosts {
        let mut known_hosts = KnownHosts::default();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match parse_line(line) {
                Some(entry) => known_hosts.entries.push(entry),
                None => known_hosts.skipped_lines += 1,
            }
        }
        known_hosts
    }

    /// Checks `key` (the SSH wire-format public key blob, as libssh2 reports it) for `host`
    /// reached on `port` (None or 22 for the default port).
    pub fn check(&self, host: &str, port: Option<u16>, key: &[u8]) -> HostKeyVerdict {
        let lookup = match port {
            None | Some(22) => host.to_ascii_lowercase(),
            Some(port) => format!("[{}]:{port}", host.to_ascii_lowercase()),
        };
        let matching: Vec<&Entry> = self
            .entries
            .iter()
            .filter(|entry| entry.marker != Marker::CertAuthority && entry.hosts.matches(&lookup))
            .collect();
        if matching
            .iter()
            .any(|entry| entry.marker == Marker::Revoked && entry.key == key)
        {
            return HostKeyVerdict::Revoked;
        }
        let listed: Vec<&&Entry> = matching
            .iter()
            .filter(|entry| entry.marker == Marker::None)
            .collect();
        if listed.iter().any(|entry| entry.key == key) {
            HostKeyVerdict::Trusted
        } else if listed.is_empty() {
            HostKeyVerdict::Unknown
        } else {
            HostKeyVerdict::Mismatch
        }
    }
}

fn parse_line(line: &str) -> Option<Entry> {
    let mut fields = line.split_whitespace();
    let mut first = fields.next()?;
    let marker = match first {
        "@revoked" => Marker::Revoked,
        "@cert-authority" => Marker::CertAuthority,
        _ => Marker::None,
    };
    if marker != Marker::None {
        first = fields.next()?;
    }
    let _key_type = fields.next()?;
    let key = BASE64.decode(fields.next()?).ok()?;
    let hosts = if let Some(hashed) = first.strip_prefix("|1|") {
        let (salt, hash) = hashed.split_once('|')?;
        Hosts::Hashed {
            salt: BASE64.decode(salt).ok()?,
            hash: BASE64.decode(hash).ok()?,
        }
    } else {
        Hosts::Patterns(first.split(',').map(|p| p.to_ascii_lowercase()).collect())
    };
    Some(Entry { marker, hosts, key })
}

impl Hosts {
    fn matches(&self, lookup: &str) -> bool {
        match self {
            Hosts::Hashed { salt, hash } => {
                let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(salt) else {
                    return false;
                };
                mac.update(lookup.as_bytes());
                mac.verify_slice(hash).is_ok()
            }
            Hosts::Patterns(patterns) => {
                let mut matched = false;
                for pattern in patterns {
                    if let Some(negated) = pattern.strip_prefix('!') {
                        if wildcard_match(negated, lookup) {
                            return false;
                        }
                    } else if wildcard_match(pattern, lookup) {
                        matched = true;
                    }
                }
                matched
            }
        }
    }
}

/// `*` and `?` glob matching, as in OpenSSH host patterns.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    let (mut star, mut star_text) = (None, 0);
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some(p);
            star_text = t;
            p += 1;
        } else if let Some(star_at) = star {
            p = star_at + 1;
            star_text += 1;
            t = star_text;
        } else {
            return false;
        }
    }
    while p < pattern.len() && pattern[p] == '*' {
        p += 1;
    }
    p == pattern.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &[u8] =
        b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const KEY_B: &[u8] =
        b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn line(hosts: &str, key: &[u8]) -> String {
        format!("{hosts} ssh-ed25519 {}\n", BASE64.encode(key))
    }

    fn hashed(host: &str, salt: &[u8]) -> String {
        let mut mac = Hmac::<Sha1>::new_from_slice(salt).unwrap();
        mac.update(host.as_bytes());
        format!(
            "|1|{}|{}",
            BASE64.encode(salt),
            BASE64.encode(mac.finalize().into_bytes())
        )
    }

    #[test]
    fn trusts_only_listed_keys() {
        let file = KnownHosts::parse(&(line("git.example.com,10.0.0.5", KEY_A) + "# comment\n"));
        assert_eq!(
            file.check("git.example.com", None, KEY_A),
            HostKeyVerdict::Trusted
        );
        assert_eq!(
            file.check("GIT.example.com", Some(22), KEY_A),
            HostKeyVerdict::Trusted
        );
        assert_eq!(file.check("10.0.0.5", None, KEY_A), HostKeyVerdict::Trusted);
        assert_eq!(
            file.check("git.example.com", None, KEY_B),
            HostKeyVerdict::Mismatch
        );
        assert_eq!(
            file.check("other.example.com", None, KEY_A),
            HostKeyVerdict::Unknown
        );
        // A non-default port is a different host entry.
        assert_eq!(
            file.check("git.example.com", Some(2222), KEY_A),
            HostKeyVerdict::Unknown
        );
    }

    #[test]
    fn ports_hashes_wildcards_negation_and_revocation() {
        let text = [
            line("[git.example.com]:2222", KEY_A),
            line(
                &hashed("hidden.example.com", b"0123456789abcdefghij"),
                KEY_A,
            ),
            line("*.corp.example,!bad.corp.example", KEY_B),
            format!("@revoked * ssh-ed25519 {}\n", BASE64.encode(KEY_B)),
            "garbage line\n".to_string(),
        ]
        .concat();
        let file = KnownHosts::parse(&text);
        assert_eq!(file.skipped_lines, 1);
        assert_eq!(
            file.check("git.example.com", Some(2222), KEY_A),
            HostKeyVerdict::Trusted
        );
        assert_eq!(
            file.check("hidden.example.com", None, KEY_A),
            HostKeyVerdict::Trusted
        );
        assert_eq!(
            file.check("visible.example.com", None, KEY_A),
            HostKeyVerdict::Unknown
        );
        // KEY_B is listed for *.corp.example but revoked everywhere.
        assert_eq!(
            file.check("git.corp.example", None, KEY_B),
            HostKeyVerdict::Revoked
        );
        assert_eq!(
            file.check("bad.corp.example", None, KEY_A),
            HostKeyVerdict::Unknown
        );
    }

    #[test]
    fn reads_real_openssh_lines() {
        // GitHub's published ed25519 host key, as `ssh-keyscan github.com` prints it.
        let encoded = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
        let file = KnownHosts::parse(&format!("github.com ssh-ed25519 {encoded} comment here\n"));
        let key = BASE64.decode(encoded).unwrap();
        assert_eq!(file.skipped_lines, 0);
        assert_eq!(
            file.check("github.com", None, &key),
            HostKeyVerdict::Trusted
        );
        assert_eq!(
            file.check("github.com", None, KEY_A),
            HostKeyVerdict::Mismatch
        );
    }

    #[test]
    fn empty_file_trusts_nothing() {
        let file = KnownHosts::parse("");
        assert_eq!(
            file.check("github.com", None, KEY_A),
            HostKeyVerdict::Unknown
        );
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*.example.com", "git.example.com"));
        assert!(!wildcard_match("*.example.com", "example.com"));
        assert!(wildcard_match("git?.example.com", "git1.example.com"));
        assert!(wildcard_match("*", "anything"));
    }
}
