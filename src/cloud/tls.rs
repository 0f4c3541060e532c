//! One TLS client configuration for the whole process.
//!
//! Every HTTP client reqwest builds on its own parses the trusted roots again: the bundled
//! Mozilla roots (`webpki-roots`) and the system's (`rustls-native-certs`), about 115 KiB per
//! client. Each target has a DLI, a DLF and an OBS client, so a daemon with 50 targets held
//! 150 copies (17 MiB measured). Here the roots and the verifier are built once and every
//! client gets a clone of the configuration, which shares them (`Arc`s inside rustls). The
//! trust is the same as reqwest's own with our features (Mozilla's roots and the system's, the
//! `ring` provider, TLS 1.2 and 1.3); only the ALPN list differs per use.
//!
//! Each client still has its own connection pool: a pool belongs to the runtime that opened its
//! connections, and tests run many runtimes in one process.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// The application protocols a client offers in the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Alpn {
    /// HTTP/2 or HTTP/1.1, what reqwest offers with its `http2` feature (the API clients).
    Http2AndHttp1,
    /// HTTP/1.1 only (the object store client, which object_store runs on HTTP/1).
    Http1,
}

/// A configuration for one client: verifying certificates against the shared roots, or (with
/// `accept_invalid_certs`, for test endpoints with self-signed certificates) accepting any.
pub(crate) fn client_config(accept_invalid_certs: bool, alpn: Alpn) -> ClientConfig {
    static VERIFYING: OnceLock<ClientConfig> = OnceLock::new();
    static ACCEPTING: OnceLock<ClientConfig> = OnceLock::new();
    let base = if accept_invalid_certs {
        ACCEPTING.get_or_init(|| build(false))
    } else {
        VERIFYING.get_or_init(|| build(true))
    };
    let mut config = base.clone();
    config.alpn_protocols = match alpn {
        Alpn::Http2AndHttp1 => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        Alpn::Http1 => vec![b"http/1.1".to_vec()],
    };
    config
}

/// Configurations built (one per verification mode at most; counted for the test).
static BUILDS: AtomicUsize = AtomicUsize::new(0);

fn build(verify: bool) -> ClientConfig {
    BUILDS.fetch_add(1, Ordering::SeqCst);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(rustls::ALL_VERSIONS)
        .expect("the ring provider supports TLS 1.2 and 1.3");
    let builder = if verify {
        builder.with_root_certificates(trusted_roots())
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
    };
    builder.with_no_client_auth()
}

/// Mozilla's roots and the system's, as reqwest trusts them by default. A system certificate
/// that does not parse is skipped, as reqwest does.
fn trusted_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let native = rustls_native_certs::load_native_certs();
    let (added, skipped) = roots.add_parsable_certificates(native.certs);
    tracing::debug!(
        mozilla = webpki_roots::TLS_SERVER_ROOTS.len(),
        system = added,
        skipped,
        "TLS roots loaded once for every client."
    );
    roots
}

/// Accepts any certificate (`danger_accept_invalid_certs`). Unlike reqwest's own verifier for
/// that setting, it still checks the handshake signatures against the certificate presented.
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_roots_are_built_once_per_verification_mode() {
        for _ in 0..10 {
            let api = client_config(false, Alpn::Http2AndHttp1);
            assert_eq!(
                api.alpn_protocols,
                vec![b"h2".to_vec(), b"http/1.1".to_vec()]
            );
            let store = client_config(true, Alpn::Http1);
            assert_eq!(store.alpn_protocols, vec![b"http/1.1".to_vec()]);
        }
        // Other tests in this process build clients too; still at most one per mode.
        assert!(BUILDS.load(Ordering::SeqCst) <= 2);
    }
}
