//! TLS for `wss://` fronts and an `https://` gate: the web's root certificates
//! (webpki-roots) and any root the options add, with the ring crypto provider.

use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;

use crate::BoxError;

/// A client config trusting the web's roots and those in `extra_root_pem`.
///
/// # Errors
/// When `extra_root_pem` holds no certificate or one that is not a usable root.
pub(crate) fn client_config(extra_root_pem: Option<&str>) -> Result<Arc<ClientConfig>, BoxError> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(pem) = extra_root_pem {
        let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("tls_root_pem is not PEM: {e}"))?;
        if certs.is_empty() {
            return Err("tls_root_pem holds no PEM \"CERTIFICATE\"".into());
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| format!("tls_root_pem: not a usable root certificate: {e}"))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // Fronts and the master speak HTTP/1.1 (a WebSocket upgrade is one).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Whether `url` starts with `scheme` (`wss://`, `https://`), in any case.
pub(crate) fn has_scheme(url: &str, scheme: &str) -> bool {
    url.get(..scheme.len())
        .is_some_and(|start| start.eq_ignore_ascii_case(scheme))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_roots_must_be_pem_certificates() {
        assert!(client_config(None).is_ok());
        let err = client_config(Some("not pem")).unwrap_err();
        assert_eq!(err.to_string(), "tls_root_pem holds no PEM \"CERTIFICATE\"");
        let err = client_config(Some(
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        ))
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("tls_root_pem: not a usable root certificate"),
            "{err}"
        );
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        assert!(client_config(Some(&made.cert.pem())).is_ok());
    }

    #[test]
    fn schemes_in_any_case() {
        assert!(has_scheme("wss://a", "wss://"));
        assert!(has_scheme("WSS://a", "wss://"));
        assert!(!has_scheme("ws://a", "wss://"));
        assert!(!has_scheme("w", "wss://"));
        assert!(!has_scheme("wsé://", "wss://"));
    }
}
