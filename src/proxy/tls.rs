//! TLS setup for both legs: rustls server config for clients, client configs per upstream mode.
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error as TlsError, SignatureScheme};

use super::ProxyError;
use crate::config::databases::UpstreamTlsSettings;
use crate::config::server::{ServerConfig, UpstreamTls};

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_pem(path: &Path) -> Result<Vec<u8>, ProxyError> {
    std::fs::read(path).map_err(|e| ProxyError::Tls(format!("cannot read {}: {e}", path.display())))
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, ProxyError> {
    let pem = read_pem(path)?;
    let certs = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ProxyError::Tls(format!("bad certificate file {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(ProxyError::Tls(format!(
            "no certificate in {}",
            path.display()
        )));
    }
    Ok(certs)
}

/// The acceptor for clients' SSLRequest, or `None` when client TLS is off.
pub fn client_acceptor(
    cfg: &ServerConfig,
) -> Result<Option<tokio_rustls::TlsAcceptor>, ProxyError> {
    let (Some(cert), Some(key)) = (&cfg.tls_cert_file, &cfg.tls_key_file) else {
        return Ok(None);
    };
    let chain = certs(cert)?;
    let key_pem = read_pem(key)?;
    let key = rustls_pemfile::private_key(&mut &key_pem[..])
        .map_err(|e| ProxyError::Tls(format!("bad key file {}: {e}", key.display())))?
        .ok_or_else(|| ProxyError::Tls(format!("no private key in {}", key.display())))?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ProxyError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| ProxyError::Tls(format!("certificate/key rejected: {e}")))?;
    Ok(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))))
}

/// The connector for one upstream's leg, or `None` when its `upstream_tls = "disable"`.
pub fn upstream_connector(
    cfg: &UpstreamTlsSettings,
) -> Result<Option<tokio_rustls::TlsConnector>, ProxyError> {
    let provider = provider();
    let verifier: Arc<dyn ServerCertVerifier> = match cfg.mode {
        UpstreamTls::Disable => return Ok(None),
        UpstreamTls::Prefer | UpstreamTls::Require => Arc::new(NoVerify(provider.clone())),
        UpstreamTls::VerifyCa | UpstreamTls::VerifyFull => {
            let path = cfg
                .ca_file
                .as_deref()
                .ok_or_else(|| ProxyError::Tls("upstream_tls_ca_file is not set".into()))?;
            let mut roots = rustls::RootCertStore::empty();
            for c in certs(path)? {
                roots
                    .add(c)
                    .map_err(|e| ProxyError::Tls(format!("bad CA in {}: {e}", path.display())))?;
            }
            let webpki =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| ProxyError::Tls(e.to_string()))?;
            if cfg.mode == UpstreamTls::VerifyCa {
                Arc::new(IgnoreName(webpki))
            } else {
                webpki
            }
        }
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ProxyError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Some(tokio_rustls::TlsConnector::from(Arc::new(config))))
}

/// The name sent as SNI and checked in verify-full.
pub fn upstream_server_name(
    cfg: &UpstreamTlsSettings,
    host: &str,
) -> Result<ServerName<'static>, ProxyError> {
    let name = cfg.server_name.as_deref().unwrap_or(host);
    ServerName::try_from(name.to_owned())
        .map_err(|e| ProxyError::Tls(format!("invalid upstream TLS server name {name:?}: {e}")))
}

/// `prefer` / `require`: encryption without authentication of the server, as libpq does.
/// Signatures are still checked so the handshake itself is sound.
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_tls12_signature(
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
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_tls13_signature(
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

/// `verify-ca`: the chain must lead to the CA, the name is not checked (libpq semantics).
#[derive(Debug)]
struct IgnoreName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for IgnoreName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(TlsError::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
