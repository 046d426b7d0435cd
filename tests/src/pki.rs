//! A throwaway PKI made with the `openssl` command at test time: a CA, a
//! server certificate for `localhost` and 127.0.0.1, one for another name
//! (to see a name mismatch), and a client certificate (mutual TLS).

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Pki {
    dir: PathBuf,
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// Valid, signed by the CA, but for `other.invalid` only.
    pub wrong_name_cert: PathBuf,
    pub wrong_name_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("openssl not found ({e}): apt-get install openssl"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A P-256 key and a CSR for `cn`, signed by the CA with `ext`.
fn issue(dir: &Path, name: &str, cn: &str, ext: &str) -> Result<(PathBuf, PathBuf), String> {
    let (key, csr, pem, extf) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.pem"),
        format!("{name}.ext"),
    );
    std::fs::write(dir.join(&extf), ext).map_err(|e| e.to_string())?;
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &format!("/CN={cn}"),
        ],
    )?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "7",
            "-extfile",
            &extf,
        ],
    )?;
    Ok((dir.join(pem), dir.join(key)))
}

impl Pki {
    pub fn new() -> Result<Pki, String> {
        let dir = std::env::temp_dir().join(format!(
            "loadgen-pki-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        openssl(
            &dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "7",
                "-subj",
                "/CN=loadgen test CA",
            ],
        )?;
        let (server_cert, server_key) = issue(
            &dir,
            "server",
            "localhost",
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )?;
        let (wrong_name_cert, wrong_name_key) = issue(
            &dir,
            "wrong",
            "other.invalid",
            "subjectAltName=DNS:other.invalid\n",
        )?;
        let (client_cert, client_key) = issue(
            &dir,
            "client",
            "loadgen client",
            "extendedKeyUsage=clientAuth\n",
        )?;
        Ok(Pki {
            ca: dir.join("ca.pem"),
            dir,
            server_cert,
            server_key,
            wrong_name_cert,
            wrong_name_key,
            client_cert,
            client_key,
        })
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
