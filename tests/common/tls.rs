//! A private certificate authority for TLS tests: a CA certificate and a
//! server certificate it signed for `127.0.0.1` and `localhost`, as PEM files
//! the test peers (node) and the relay's `tls.ca_file` read; and a
//! TLS-terminating proxy with that certificate, as nginx would be in front of
//! the relay.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

pub struct TestCa {
    pub ca_file: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestCa {
    pub fn issue() -> TestCa {
        TestCa::issue_named("callrelay test CA")
    }

    /// A CA of its own name: a second CA of the same name is taken for the
    /// server certificate's issuer and refused for its key (`BadSignature`),
    /// one of another name is no issuer at all (`UnknownIssuer`).
    pub fn issue_named(name: &str) -> TestCa {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, name);
        let ca = ca_params.self_signed(&ca_key).expect("CA certificate");

        let server_key = KeyPair::generate().expect("server key");
        let mut server_params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .expect("server params");
        // A subject distinct from the CA's, or OpenSSL takes the server
        // certificate for a self-signed one.
        server_params
            .distinguished_name
            .push(DnType::CommonName, "callrelay test server");
        let server = server_params
            .signed_by(&server_key, &ca, &ca_key)
            .expect("server certificate");

        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, pem: String| {
            let path = dir.path().join(name);
            std::fs::write(&path, pem).expect("write PEM");
            path
        };
        TestCa {
            ca_file: write("ca.pem", ca.pem()),
            server_cert: write("server.pem", server.pem()),
            server_key: write("server-key.pem", server_key.serialize_pem()),
            _dir: dir,
        }
    }
}

impl TestCa {
    /// Listens on 127.0.0.1 for TLS with the server certificate and pipes each
    /// connection, decrypted, to `upstream`. Runs until the test's runtime ends.
    pub async fn tls_proxy(&self, upstream: SocketAddr) -> SocketAddr {
        let certs = CertificateDer::pem_file_iter(&self.server_cert)
            .expect("server certificate file")
            .collect::<Result<Vec<_>, _>>()
            .expect("server certificate");
        let key = PrivateKeyDer::from_pem_file(&self.server_key).expect("server key");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server TLS config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("proxy address");
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // A refused handshake (an untrusting client) just ends here.
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    if let Ok(mut relay) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut relay).await;
                    }
                });
            }
        });
        addr
    }
}
