//! TLS for the client and peer ports, with rustls (no OpenSSL).
//!
//! [`TlsFiles`] names the PEM files of one port, as etcd's flags do: `--cert-file`,
//! `--key-file`, `--trusted-ca-file`, `--client-cert-auth` for the client port and the
//! same with a `--peer-` prefix for the peer port. [`TlsFiles::load`] reads and checks
//! them (every problem is an [`Error::InvalidConfig`] naming the file), and the builders
//! turn them into what tonic needs:
//!
//! - [`TlsFiles::server_tls`]: a [`ServerTlsConfig`] for `Server::builder().tls_config(..)`.
//! - [`TlsFiles::client_tls`] and [`TlsFiles::client_endpoint`]: a [`ClientTlsConfig`] or
//!   a ready [`Endpoint`] for dialing a TLS port (tests, tools).
//!
//! The peer port uses the same files through [`NodeConfig::peer_tls`](crate::NodeConfig::peer_tls):
//! a node serves its peer port with its peer certificate, dials other peers over TLS
//! checking that their certificate covers the host it dials, and presents its peer
//! certificate as a client certificate. With `client_cert_auth` on the peer port, a peer
//! must also present a certificate whose SANs cover the host of its member's peer address.
//!
//! ```no_run
//! # fn demo() -> quorumkv::Result<()> {
//! use quorumkv::tls::TlsFiles;
//! let files = TlsFiles::new("server.pem", "server-key.pem").trusted_ca("ca.pem").client_cert_auth(true);
//! let server_tls = files.server_tls()?; // for tonic::transport::Server::builder().tls_config(..)
//! let dial = TlsFiles::default().trusted_ca("ca.pem").client_endpoint("127.0.0.1:2379")?;
//! # let _ = (server_tls, dial); Ok(()) }
//! ```

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_rustls::rustls;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::error::{Error, Result};

/// The PEM files of one TLS port (etcd's `--cert-file`, `--key-file`, `--trusted-ca-file`,
/// `--client-cert-auth`, or the same with a `--peer-` prefix).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// This side's certificate chain (PEM; the leaf first). Empty: no certificate, only
    /// allowed for a dialing side that presents none ([`TlsFiles::client_tls`]).
    pub cert_file: PathBuf,
    /// The private key of `cert_file` (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// CA bundle (PEM) the other side's certificate must chain to: client certificates on
    /// a server port, the server's certificate when dialing. Required for the peer port.
    pub trusted_ca_file: Option<PathBuf>,
    /// Require a client certificate signed by `trusted_ca_file` (mutual TLS). Without it a
    /// server with `trusted_ca_file` verifies a client certificate only if one is sent.
    pub client_cert_auth: bool,
}

/// The PEM contents of [`TlsFiles`], read and checked.
#[derive(Clone)]
pub struct LoadedTls {
    /// The certificate chain, PEM (empty when no certificate was configured).
    pub cert_pem: Vec<u8>,
    /// The private key, PEM (empty when no certificate was configured).
    pub key_pem: Vec<u8>,
    /// The trusted CA bundle, PEM, if configured.
    pub ca_pem: Option<Vec<u8>>,
    /// Whether client certificates are required.
    pub client_cert_auth: bool,
    chain: Vec<CertificateDer<'static>>,
    key: Option<Arc<PrivateKeyDer<'static>>>,
    roots: Option<Arc<rustls::RootCertStore>>,
}

impl std::fmt::Debug for LoadedTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedTls")
            .field("certificates", &self.chain.len())
            .field("trusted_cas", &self.roots.as_ref().map(|r| r.len()))
            .field("client_cert_auth", &self.client_cert_auth)
            .finish_non_exhaustive()
    }
}

/// How long a TLS handshake may take before the connection is dropped.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The crypto provider every config uses (ring), so no process-wide default is needed.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn invalid(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::InvalidConfig(format!("{}: {what}", path.display()))
}

fn read_file(path: &Path, role: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| invalid(path, format_args!("cannot read the {role}: {e}")))
}

fn parse_certs(path: &Path, pem: &[u8], role: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| invalid(path, format_args!("the {role} is not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(path, format_args!("the {role} holds no PEM \"CERTIFICATE\" block")));
    }
    Ok(certs)
}

impl TlsFiles {
    /// Files for a side with a certificate: `cert_file` and its `key_file`.
    pub fn new(cert_file: impl Into<PathBuf>, key_file: impl Into<PathBuf>) -> Self {
        TlsFiles { cert_file: cert_file.into(), key_file: key_file.into(), ..Default::default() }
    }

    /// Sets the trusted CA bundle.
    pub fn trusted_ca(mut self, ca_file: impl Into<PathBuf>) -> Self {
        self.trusted_ca_file = Some(ca_file.into());
        self
    }

    /// Sets whether client certificates are required (mutual TLS).
    pub fn client_cert_auth(mut self, on: bool) -> Self {
        self.client_cert_auth = on;
        self
    }

    fn has_cert(&self) -> bool {
        !self.cert_file.as_os_str().is_empty() || !self.key_file.as_os_str().is_empty()
    }

    /// Reads and checks every file: each exists and is PEM of the right kind, the key
    /// matches the certificate, the CA bundle holds usable CA certificates, and
    /// `client_cert_auth` has a CA to verify against.
    ///
    /// Errors: [`Error::InvalidConfig`] naming the file and what is wrong with it.
    pub fn load(&self) -> Result<LoadedTls> {
        if self.client_cert_auth && self.trusted_ca_file.is_none() {
            return Err(Error::InvalidConfig(
                "client_cert_auth needs trusted_ca_file: client certificates are verified against it".into(),
            ));
        }
        let (cert_pem, key_pem, chain, key) = if self.has_cert() {
            if self.cert_file.as_os_str().is_empty() || self.key_file.as_os_str().is_empty() {
                return Err(Error::InvalidConfig("cert_file and key_file must be given together".into()));
            }
            let cert_pem = read_file(&self.cert_file, "certificate")?;
            let chain = parse_certs(&self.cert_file, &cert_pem, "certificate")?;
            rustls::server::ParsedCertificate::try_from(&chain[0])
                .map_err(|e| invalid(&self.cert_file, format_args!("the certificate cannot be parsed: {e}")))?;
            let key_pem = read_file(&self.key_file, "private key")?;
            let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
                rustls::pki_types::pem::Error::NoItemsFound => {
                    invalid(&self.key_file, "holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")
                }
                e => invalid(&self.key_file, format_args!("the private key is not valid PEM: {e}")),
            })?;
            rustls::sign::CertifiedKey::from_der(chain.clone(), key.clone_key(), &provider()).map_err(|e| match e {
                rustls::Error::InconsistentKeys(_) => invalid(
                    &self.key_file,
                    format_args!("the private key does not match the certificate in {}", self.cert_file.display()),
                ),
                e => invalid(&self.key_file, format_args!("the private key is unusable: {e}")),
            })?;
            (cert_pem, key_pem, chain, Some(Arc::new(key)))
        } else {
            (Vec::new(), Vec::new(), Vec::new(), None)
        };
        let (ca_pem, roots) = match &self.trusted_ca_file {
            None => (None, None),
            Some(path) => {
                let pem = read_file(path, "trusted CA bundle")?;
                let mut roots = rustls::RootCertStore::empty();
                for cert in parse_certs(path, &pem, "trusted CA bundle")? {
                    roots.add(cert).map_err(|e| invalid(path, format_args!("unusable CA certificate: {e}")))?;
                }
                (Some(pem), Some(Arc::new(roots)))
            }
        };
        Ok(LoadedTls { cert_pem, key_pem, ca_pem, client_cert_auth: self.client_cert_auth, chain, key, roots })
    }

    /// The TLS config of a server port (the etcd client port):
    /// `Server::builder().tls_config(files.server_tls()?)`. With `trusted_ca_file`, client
    /// certificates are verified against it: required with `client_cert_auth`, checked
    /// only if sent otherwise.
    ///
    /// Errors: [`Error::InvalidConfig`] (see [`TlsFiles::load`]; a server needs a certificate).
    pub fn server_tls(&self) -> Result<ServerTlsConfig> {
        let loaded = self.load()?;
        if loaded.key.is_none() {
            return Err(Error::InvalidConfig("a TLS server needs cert_file and key_file".into()));
        }
        let mut config = ServerTlsConfig::new()
            .identity(Identity::from_pem(&loaded.cert_pem, &loaded.key_pem))
            .timeout(HANDSHAKE_TIMEOUT);
        if let Some(ca) = &loaded.ca_pem {
            config = config.client_ca_root(Certificate::from_pem(ca)).client_auth_optional(!loaded.client_cert_auth);
        }
        Ok(config)
    }

    /// The TLS config for dialing a TLS port whose certificate must cover `server_name`
    /// (a DNS name or an IP address, as in the address dialed). The server's certificate
    /// is verified against `trusted_ca_file` (required); `cert_file`/`key_file`, if set,
    /// are presented as the client certificate.
    ///
    /// Errors: [`Error::InvalidConfig`] (see [`TlsFiles::load`]), or a bad `server_name`.
    pub fn client_tls(&self, server_name: &str) -> Result<ClientTlsConfig> {
        self.load()?.client_tls(server_name)
    }

    /// An [`Endpoint`] for `https://{addr}` (`addr` is `host:port`) with
    /// [`TlsFiles::client_tls`] for the host of `addr`.
    pub fn client_endpoint(&self, addr: &str) -> Result<Endpoint> {
        self.load()?.client_endpoint(addr)
    }
}

impl LoadedTls {
    /// See [`TlsFiles::client_tls`].
    pub fn client_tls(&self, server_name: &str) -> Result<ClientTlsConfig> {
        let Some(ca) = &self.ca_pem else {
            return Err(Error::InvalidConfig(
                "dialing a TLS port needs trusted_ca_file to verify the server's certificate".into(),
            ));
        };
        let name = server_name.trim_start_matches('[').trim_end_matches(']');
        ServerName::try_from(name)
            .map_err(|_| Error::InvalidArgument(format!("{server_name:?} is not a DNS name or an IP address")))?;
        let mut config = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca))
            .domain_name(name)
            .timeout(HANDSHAKE_TIMEOUT);
        if self.key.is_some() {
            config = config.identity(Identity::from_pem(&self.cert_pem, &self.key_pem));
        }
        Ok(config)
    }

    /// See [`TlsFiles::client_endpoint`].
    pub fn client_endpoint(&self, addr: &str) -> Result<Endpoint> {
        let endpoint = Endpoint::from_shared(format!("https://{addr}"))
            .map_err(|e| Error::InvalidArgument(format!("bad address {addr:?}: {e}")))?;
        endpoint
            .tls_config(self.client_tls(host_of(addr))?)
            .map_err(|e| Error::InvalidConfig(format!("TLS config for {addr}: {e}")))
    }

    /// A rustls server config for a port that does its own handshakes (the peer port).
    pub(crate) fn rustls_server_config(&self) -> Result<Arc<rustls::ServerConfig>> {
        let key = self.key.as_ref().ok_or_else(|| Error::InvalidConfig("a TLS server needs cert_file".into()))?;
        let provider = provider();
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::InvalidConfig(format!("TLS: {e}")))?;
        let builder = match &self.roots {
            None => builder.with_no_client_auth(),
            Some(roots) => {
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(roots.clone(), provider);
                let verifier = if self.client_cert_auth { verifier } else { verifier.allow_unauthenticated() };
                let verifier = verifier.build().map_err(|e| Error::InvalidConfig(format!("trusted CA: {e}")))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder
            .with_single_cert(self.chain.clone(), key.clone_key())
            .map_err(|e| Error::InvalidConfig(format!("certificate: {e}")))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }
}

/// The host part of `host:port` (an IPv6 host keeps no brackets).
pub(crate) fn host_of(addr: &str) -> &str {
    let host = match addr.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => addr,
    };
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Whether `cert` (DER, a leaf certificate) has a SAN covering `host` (an IP address
/// or a DNS name), by the same rules a TLS client applies to a server.
pub(crate) fn cert_covers(cert: &CertificateDer<'_>, host: &str) -> std::result::Result<(), String> {
    let parsed =
        rustls::server::ParsedCertificate::try_from(cert).map_err(|e| format!("unparsable certificate: {e}"))?;
    let name = match host.parse::<IpAddr>() {
        Ok(ip) => ServerName::IpAddress(ip.into()),
        Err(_) => ServerName::try_from(host).map_err(|_| format!("{host:?} is not a host name"))?,
    };
    rustls::client::verify_server_name(&parsed, &name)
        .map_err(|_| format!("its certificate's subject alternative names do not cover {host}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Pki {
        dir: tempfile::TempDir,
        ca: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    }

    impl Pki {
        fn new() -> Self {
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params.distinguished_name.push(rcgen::DnType::CommonName, "quorumkv unit test CA");
            let ca = rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap();
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
            Pki { dir, ca }
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        /// Writes `name.pem` and `name-key.pem` for a leaf with these SANs.
        fn leaf(&self, name: &str, sans: &[&str]) -> (rcgen::Certificate, TlsFiles) {
            let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
            let key = rcgen::KeyPair::generate().unwrap();
            let mut params = rcgen::CertificateParams::new(sans).unwrap();
            params.distinguished_name.push(rcgen::DnType::CommonName, name);
            let cert = params.signed_by(&key, &self.ca).unwrap();
            std::fs::write(self.path(&format!("{name}.pem")), cert.pem()).unwrap();
            std::fs::write(self.path(&format!("{name}-key.pem")), key.serialize_pem()).unwrap();
            let files = TlsFiles::new(self.path(&format!("{name}.pem")), self.path(&format!("{name}-key.pem")))
                .trusted_ca(self.path("ca.pem"));
            (cert, files)
        }
    }

    fn config_error(r: Result<impl std::fmt::Debug>) -> String {
        match r {
            Err(Error::InvalidConfig(m)) => m,
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
    }

    #[test]
    fn server_and_client_configs_build_from_generated_files() {
        let pki = Pki::new();
        let (_, files) = pki.leaf("server", &["127.0.0.1", "localhost"]);
        files.server_tls().unwrap();
        files.clone().client_cert_auth(true).server_tls().unwrap();
        TlsFiles { trusted_ca_file: None, ..files.clone() }.server_tls().unwrap();
        files.client_tls("127.0.0.1").unwrap();
        files.client_endpoint("localhost:2379").unwrap();
        TlsFiles::default().trusted_ca(pki.path("ca.pem")).client_endpoint("[::1]:2379").unwrap();
        let loaded = files.load().unwrap();
        loaded.rustls_server_config().unwrap();
    }

    #[test]
    fn bad_files_are_invalid_config_naming_the_file() {
        let pki = Pki::new();
        let (_, files) = pki.leaf("server", &["127.0.0.1"]);
        let (_, other) = pki.leaf("other", &["127.0.0.1"]);

        let missing = TlsFiles { cert_file: pki.path("nope.pem"), ..files.clone() };
        let m = config_error(missing.server_tls());
        assert!(m.contains("nope.pem") && m.contains("cannot read the certificate"), "{m}");

        std::fs::write(pki.path("garbage.pem"), "not a certificate\n").unwrap();
        let not_pem = TlsFiles { cert_file: pki.path("garbage.pem"), ..files.clone() };
        let m = config_error(not_pem.server_tls());
        assert!(m.contains("garbage.pem") && m.contains("no PEM \"CERTIFICATE\""), "{m}");

        let key_as_cert = TlsFiles { cert_file: files.key_file.clone(), ..files.clone() };
        let m = config_error(key_as_cert.server_tls());
        assert!(m.contains("server-key.pem"), "{m}");

        let no_key = TlsFiles { key_file: pki.path("server.pem"), ..files.clone() };
        let m = config_error(no_key.server_tls());
        assert!(m.contains("server.pem") && m.contains("no PEM private key"), "{m}");

        let mismatched = TlsFiles { key_file: other.key_file.clone(), ..files.clone() };
        let m = config_error(mismatched.server_tls());
        assert!(m.contains("other-key.pem") && m.contains("does not match the certificate"), "{m}");

        let bad_ca = TlsFiles { trusted_ca_file: Some(pki.path("garbage.pem")), ..files.clone() };
        let m = config_error(bad_ca.server_tls());
        assert!(m.contains("garbage.pem") && m.contains("trusted CA bundle"), "{m}");

        let auth_without_ca = TlsFiles { trusted_ca_file: None, client_cert_auth: true, ..files.clone() };
        assert!(config_error(auth_without_ca.server_tls()).contains("client_cert_auth needs trusted_ca_file"));

        let m = config_error(TlsFiles::default().server_tls());
        assert!(m.contains("needs cert_file and key_file"), "{m}");
        let m = config_error(TlsFiles { trusted_ca_file: None, ..files.clone() }.client_tls("127.0.0.1"));
        assert!(m.contains("needs trusted_ca_file"), "{m}");
    }

    #[test]
    fn san_coverage() {
        let pki = Pki::new();
        let (cert, _) = pki.leaf("n1", &["127.0.0.1", "n1.example"]);
        let der = cert.der();
        assert!(cert_covers(der, "127.0.0.1").is_ok());
        assert!(cert_covers(der, "n1.example").is_ok());
        assert!(cert_covers(der, "127.0.0.2").is_err());
        assert!(cert_covers(der, "n2.example").is_err());
        assert!(cert_covers(der, "::1").is_err());
    }

    #[test]
    fn host_of_addresses() {
        assert_eq!(host_of("127.0.0.1:7001"), "127.0.0.1");
        assert_eq!(host_of("[::1]:7001"), "::1");
        assert_eq!(host_of("node-1.example:7001"), "node-1.example");
        assert_eq!(host_of("node-1.example"), "node-1.example");
    }
}
