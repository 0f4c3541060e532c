//! `SDK-HMAC-SHA256` request signing, as the official Huawei Cloud SDKs do it (the APIG signer).
//!
//! Used by the client to sign and by the emulator to verify, so both sides share one
//! implementation; `tests/` and the SDK vector script keep it honest against the official SDK.

use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha2::{Digest, Sha256};

/// The algorithm name in the `Authorization` header and the string to sign.
pub const ALGORITHM: &str = "SDK-HMAC-SHA256";
/// The timestamp header (`YYYYMMDDTHHMMSSZ`).
pub const HEADER_DATE: &str = "X-Sdk-Date";
/// When present and the body is not empty, its value replaces the body hash (`UNSIGNED-PAYLOAD`).
pub const HEADER_CONTENT_SHA256: &str = "X-Sdk-Content-Sha256";
/// `strftime` format of [`HEADER_DATE`].
pub const DATE_FORMAT: &str = "%Y%m%dT%H%M%SZ";

/// Everything but `A-Z a-z 0-9 - _ . ~` is escaped, with upper-case hex.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The parts of an HTTP request that the signature covers.
#[derive(Debug, Clone, Copy)]
pub struct SignableRequest<'a> {
    pub method: &'a str,
    /// The URL path, percent-decoded (`/v1.0/pid/streaming/jobs`).
    pub path: &'a str,
    /// Query pairs, percent-decoded, in any order.
    pub query: &'a [(String, String)],
    /// Request headers (any case). Headers named in `signed_headers` must be present.
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

/// Why a signature could not be computed or checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("signed header {0:?} is not present in the request")]
    MissingSignedHeader(String),
    #[error("authorization header is malformed: {0}")]
    MalformedAuthorization(&'static str),
    #[error("signature does not match")]
    Mismatch,
}

/// A parsed `Authorization: SDK-HMAC-SHA256 Access=..., SignedHeaders=..., Signature=...` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub access_key: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
}

impl Authorization {
    /// Parses the header value; tolerant of spacing around commas.
    pub fn parse(value: &str) -> Result<Authorization, SignatureError> {
        let rest =
            value
                .trim()
                .strip_prefix(ALGORITHM)
                .ok_or(SignatureError::MalformedAuthorization(
                    "algorithm is not SDK-HMAC-SHA256",
                ))?;
        let mut access_key = None;
        let mut signed_headers = None;
        let mut signature = None;
        for part in rest.split(',') {
            let part = part.trim();
            if let Some(value) = part.strip_prefix("Access=") {
                access_key = Some(value.to_string());
            } else if let Some(value) = part.strip_prefix("SignedHeaders=") {
                signed_headers = Some(
                    value
                        .split(';')
                        .filter(|name| !name.is_empty())
                        .map(|name| name.to_ascii_lowercase())
                        .collect::<Vec<_>>(),
                );
            } else if let Some(value) = part.strip_prefix("Signature=") {
                signature = Some(value.to_string());
            }
        }
        Ok(Authorization {
            access_key: access_key.ok_or(SignatureError::MalformedAuthorization("no Access="))?,
            signed_headers: signed_headers
                .ok_or(SignatureError::MalformedAuthorization("no SignedHeaders="))?,
            signature: signature.ok_or(SignatureError::MalformedAuthorization("no Signature="))?,
        })
    }

    /// The header value.
    pub fn to_header_value(&self) -> String {
        format!(
            "{ALGORITHM} Access={}, SignedHeaders={}, Signature={}",
            self.access_key,
            self.signed_headers.join(";"),
            self.signature
        )
    }
}

/// Percent-encodes one path segment or query component the way the SDKs do.
pub fn encode_component(text: &str) -> String {
    utf8_percent_encode(text, UNRESERVED).to_string()
}

/// `CanonicalURI`: every segment encoded, always ending in `/`.
pub fn canonical_uri(path: &str) -> String {
    let mut uri = path
        .split('/')
        .map(encode_component)
        .collect::<Vec<_>>()
        .join("/");
    if !uri.ends_with('/') {
        uri.push('/');
    }
    uri
}

/// `CanonicalQueryString`: sorted by key, then by value, each side encoded.
///
/// The SDKs sort the *decoded* keys and values (by code point) and encode afterwards; sorting
/// the encoded text instead orders `[` or non-ASCII characters differently.
pub fn canonical_query(query: &[(String, String)]) -> String {
    let mut pairs: Vec<&(String, String)> = query.iter().collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(key, value)| format!("{}={}", encode_component(key), encode_component(value)))
        .collect::<Vec<_>>()
        .join("&")
}

fn header_value<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

/// The canonical request the signature is computed over.
pub fn canonical_request(
    request: &SignableRequest<'_>,
    signed_headers: &[String],
) -> Result<String, SignatureError> {
    let mut canonical_headers = String::new();
    for name in signed_headers {
        let value = header_value(request.headers, name)
            .ok_or_else(|| SignatureError::MissingSignedHeader(name.clone()))?;
        canonical_headers.push_str(&name.to_ascii_lowercase());
        canonical_headers.push(':');
        canonical_headers.push_str(value.trim());
        canonical_headers.push('\n');
    }
    // As the Python SDK does: an empty body always hashes as empty, even when
    // `X-Sdk-Content-Sha256: UNSIGNED-PAYLOAD` is present.
    let body_hash = match header_value(request.headers, HEADER_CONTENT_SHA256) {
        Some(value) if !request.body.is_empty() => value.to_string(),
        _ => hex::encode(Sha256::digest(request.body)),
    };
    Ok(format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        request.method.to_ascii_uppercase(),
        canonical_uri(request.path),
        canonical_query(request.query),
        canonical_headers,
        signed_headers.join(";"),
        body_hash
    ))
}

/// `StringToSign` for a canonical request and the `X-Sdk-Date` value.
pub fn string_to_sign(canonical_request: &str, sdk_date: &str) -> String {
    format!(
        "{ALGORITHM}\n{sdk_date}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    )
}

fn hmac_hex(secret_key: &str, message: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret_key.as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(message.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Signs `request`, covering `signed_headers` (lower-case names; sorted here). The request's
/// headers must already contain `X-Sdk-Date` and every signed header.
/// Returns the `Authorization` header value.
pub fn sign(
    access_key: &str,
    secret_key: &str,
    request: &SignableRequest<'_>,
    signed_headers: &[&str],
) -> Result<String, SignatureError> {
    let mut names: Vec<String> = signed_headers
        .iter()
        .map(|name| name.to_ascii_lowercase())
        .collect();
    names.sort();
    names.dedup();
    let sdk_date = header_value(request.headers, HEADER_DATE)
        .ok_or_else(|| SignatureError::MissingSignedHeader(HEADER_DATE.to_ascii_lowercase()))?;
    let canonical = canonical_request(request, &names)?;
    let signature = hmac_hex(secret_key, &string_to_sign(&canonical, sdk_date));
    Ok(Authorization {
        access_key: access_key.to_string(),
        signed_headers: names,
        signature,
    }
    .to_header_value())
}

/// Checks a parsed `Authorization` against the request with the secret key of its access key.
/// The comparison is constant-time.
pub fn verify(
    authorization: &Authorization,
    secret_key: &str,
    request: &SignableRequest<'_>,
) -> Result<(), SignatureError> {
    let sdk_date = header_value(request.headers, HEADER_DATE)
        .ok_or_else(|| SignatureError::MissingSignedHeader(HEADER_DATE.to_ascii_lowercase()))?;
    let canonical = canonical_request(request, &authorization.signed_headers)?;
    let expected = hmac_hex(secret_key, &string_to_sign(&canonical, sdk_date));
    use subtle::ConstantTimeEq;
    if expected
        .as_bytes()
        .ct_eq(authorization.signature.as_bytes())
        .into()
    {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published vector from the Go SDK's `signer_test.go`.
    #[test]
    fn go_sdk_published_vector() {
        let headers = vec![("X-Sdk-Date".to_string(), "20060102T150405Z".to_string())];
        let query = vec![("limit".to_string(), "1".to_string())];
        let request = SignableRequest {
            method: "GET",
            path: "/path",
            query: &query,
            headers: &headers,
            body: b"",
        };
        let canonical = canonical_request(&request, &["x-sdk-date".to_string()]).unwrap();
        assert_eq!(
            canonical,
            "GET\n/path/\nlimit=1\nx-sdk-date:20060102T150405Z\n\nx-sdk-date\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let header = sign("AccessKey", "SecretKey", &request, &["x-sdk-date"]).unwrap();
        assert_eq!(
            header,
            "SDK-HMAC-SHA256 Access=AccessKey, SignedHeaders=x-sdk-date, \
             Signature=5a2ce64c865e0e6046321c6f3d5a77ba8413eeaf355c3166c03d58d02ac79624"
        );
        let parsed = Authorization::parse(&header).unwrap();
        verify(&parsed, "SecretKey", &request).unwrap();
        assert_eq!(
            verify(&parsed, "WrongKey", &request),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn encoding_matches_the_sdk_rules() {
        assert_eq!(canonical_uri("/v1.0/a b/jobs"), "/v1.0/a%20b/jobs/");
        assert_eq!(canonical_uri("/"), "/");
        let query = vec![
            ("name".to_string(), "a+b c/~".to_string()),
            ("limit".to_string(), "100".to_string()),
            ("name".to_string(), "a".to_string()),
        ];
        assert_eq!(
            canonical_query(&query),
            "limit=100&name=a&name=a%2Bb%20c%2F~"
        );
    }

    #[test]
    fn missing_signed_header_is_reported() {
        let headers = vec![("X-Sdk-Date".to_string(), "20060102T150405Z".to_string())];
        let request = SignableRequest {
            method: "GET",
            path: "/",
            query: &[],
            headers: &headers,
            body: b"",
        };
        assert_eq!(
            sign("ak", "sk", &request, &["host", "x-sdk-date"]),
            Err(SignatureError::MissingSignedHeader("host".into()))
        );
    }
}
