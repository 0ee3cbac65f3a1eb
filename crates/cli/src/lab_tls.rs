//! The lab's TLS files: the scenario's own certificate and key, or a CA and a server
//! certificate made with rcgen in the lab's output directory at each start.
//!
//! The CA's private key is never written: it signs the server certificate and is dropped,
//! so nobody can make another certificate the learners' clients would trust.

use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use tinsel_lights::scenario::TlsSettings;

/// The generated CA certificate, in the output directory: what clients pass as `--cafile`.
pub(crate) const CA_FILE: &str = "lab-ca.pem";
/// The generated server certificate, signed by the CA.
const CERT_FILE: &str = "lab-server.pem";
/// The generated server key (readable by its owner only).
const KEY_FILE: &str = "lab-server-key.pem";

/// The files the TLS listener and its clients use.
#[derive(Debug, Clone)]
pub(crate) struct LabTls {
    pub(crate) certfile: PathBuf,
    pub(crate) keyfile: PathBuf,
    /// What clients verify the server with.
    pub(crate) cafile: PathBuf,
}

/// The scenario's files if it names them, else a new CA and server certificate in `out`
/// for `localhost`, `127.0.0.1`, `::1` and `bind` (when it is a particular address).
pub(crate) fn prepare(settings: &TlsSettings, out: &Path, bind: IpAddr) -> anyhow::Result<LabTls> {
    if let (Some(certfile), Some(keyfile)) = (&settings.certfile, &settings.keyfile) {
        return Ok(LabTls {
            certfile: certfile.clone(),
            keyfile: keyfile.clone(),
            cafile: settings.cafile.clone().unwrap_or_else(|| certfile.clone()),
        });
    }
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    if !bind.is_unspecified() && !bind.is_loopback() {
        names.push(bind.to_string());
    }
    let made = generate(&names).context("cannot make the lab's TLS certificate")?;
    let files = LabTls {
        certfile: out.join(CERT_FILE),
        keyfile: out.join(KEY_FILE),
        cafile: settings.cafile.clone().unwrap_or_else(|| out.join(CA_FILE)),
    };
    write(&out.join(CA_FILE), &made.ca_pem, false)?;
    write(&files.certfile, &made.cert_pem, false)?;
    write(&files.keyfile, &made.key_pem, true)?;
    Ok(files)
}

/// PEM texts of a new CA certificate, and a server certificate and key it signed.
struct Made {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn generate(names: &[String]) -> Result<Made, rcgen::Error> {
    let (first, last) = validity();
    let (not_before, not_after) = (
        rcgen::date_time_ymd(first, 1, 1),
        rcgen::date_time_ymd(last, 1, 1),
    );
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name
        .push(DnType::CommonName, "Tinsel lab CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = not_before;
    ca.not_after = not_after;
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca.self_signed(&ca_key)?;

    let mut server = CertificateParams::new(names.to_vec())?;
    server
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server.not_before = not_before;
    server.not_after = not_after;
    let key = KeyPair::generate()?;
    let cert = server.signed_by(&key, &ca_cert, &ca_key)?;
    Ok(Made {
        ca_pem: ca_cert.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// The years a certificate is valid from and until (January 1st of each): from the start
/// of last year to the start of the year after next, so valid now whatever the date, and not
/// for ever.
fn validity() -> (i32, i32) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // The mean Gregorian year: off by at most a day around New Year, which the margins cover.
    let year = 1970 + i32::try_from(secs / 31_556_952).unwrap_or(0);
    (year - 1, year + 2)
}

/// Writes `text` to `path`, replacing it; a key is readable by its owner only.
fn write(path: &Path, text: &str, secret: bool) -> anyhow::Result<()> {
    let _ = std::fs::remove_file(path);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}
