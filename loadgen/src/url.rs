//! `http[s]://host[:port]/path?query`: the URL forms loadgen speaks.

use std::net::{SocketAddr, ToSocketAddrs};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// As the user typed it, for the report.
    pub raw: String,
    pub host: String,
    pub port: u16,
    /// `https://`: the connection speaks TLS.
    pub tls: bool,
    /// Path and query, starting with `/`.
    pub target: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UrlError {
    #[error("{0:?} is not a URL: write it as http://HOST[:PORT]/PATH or https://…")]
    Syntax(String),
    #[error("{0:?}: unsupported scheme; use http:// or https://")]
    Scheme(String),
    #[error("{0:?}: invalid port; use a number from 1 to 65535")]
    Port(String),
    #[error("cannot resolve host {0:?}: check the name, or use an IP address")]
    Resolve(String),
}

impl Url {
    pub fn parse(raw: &str) -> Result<Url, UrlError> {
        let syntax = || UrlError::Syntax(raw.to_string());
        let (scheme, rest) = raw.split_once("://").ok_or_else(syntax)?;
        let tls = if scheme.eq_ignore_ascii_case("https") {
            true
        } else if scheme.eq_ignore_ascii_case("http") {
            false
        } else {
            return Err(UrlError::Scheme(raw.to_string()));
        };
        let split = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(split);
        let target = target.split('#').next().unwrap_or("");
        let target = if target.starts_with('/') {
            target.to_string()
        } else {
            format!("/{target}")
        };
        if authority.contains('@') {
            return Err(syntax());
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(syntax)?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(syntax)?),
            };
            (host, port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() || host.contains(char::is_whitespace) {
            return Err(syntax());
        }
        let port = match port {
            None => Self::default_port(tls),
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| UrlError::Port(raw.to_string()))?,
        };
        Ok(Url {
            raw: raw.to_string(),
            host: host.to_string(),
            port,
            tls,
            target,
        })
    }

    fn default_port(tls: bool) -> u16 {
        if tls { 443 } else { 80 }
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }

    /// `scheme://host:port`, to tell origins apart.
    pub fn origin(&self) -> String {
        format!("{}://{}:{}", self.scheme(), self.host, self.port)
    }

    /// The `Host` header value: the port only when it is not the default.
    pub fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == Self::default_port(self.tls) {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// Resolves the host once, before the run; the first address wins.
    pub fn resolve(&self) -> Result<SocketAddr, UrlError> {
        (self.host.as_str(), self.port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or_else(|| UrlError::Resolve(self.host.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_usual_forms() {
        let u = Url::parse("http://127.0.0.1:8080/a/b?c=d#frag").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.target.as_str()),
            ("127.0.0.1", 8080, "/a/b?c=d")
        );
        assert_eq!(u.host_header(), "127.0.0.1:8080");
        let u = Url::parse("http://localhost").unwrap();
        assert_eq!(
            (u.port, u.target.as_str(), u.host_header().as_str()),
            (80, "/", "localhost")
        );
        let u = Url::parse("HTTP://[::1]:9000?x").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.target.as_str()),
            ("::1", 9000, "/?x")
        );
        assert_eq!(u.host_header(), "[::1]:9000");
    }

    #[test]
    fn https_defaults_to_443() {
        let u = Url::parse("https://example.com/x").unwrap();
        assert!(u.tls);
        assert_eq!((u.port, u.host_header().as_str()), (443, "example.com"));
        let u = Url::parse("https://example.com:8443/").unwrap();
        assert_eq!(u.host_header(), "example.com:8443");
        assert_eq!(u.origin(), "https://example.com:8443");
        let u = Url::parse("http://example.com:443/").unwrap();
        assert_eq!(u.host_header(), "example.com:443");
    }

    #[test]
    fn rejects_bad_urls_with_a_reason() {
        assert!(matches!(
            Url::parse("gopher://x/"),
            Err(UrlError::Scheme(_))
        ));
        assert!(matches!(Url::parse("ftp://x/"), Err(UrlError::Scheme(_))));
        assert!(matches!(
            Url::parse("localhost:80"),
            Err(UrlError::Syntax(_))
        ));
        assert!(matches!(Url::parse("http:///x"), Err(UrlError::Syntax(_))));
        assert!(matches!(Url::parse("http://h:0/"), Err(UrlError::Port(_))));
        assert!(matches!(
            Url::parse("http://h:99999/"),
            Err(UrlError::Port(_))
        ));
        assert!(matches!(
            Url::parse("http://u@h/"),
            Err(UrlError::Syntax(_))
        ));
    }

    #[test]
    fn resolves_loopback_and_fails_on_nonsense() {
        let u = Url::parse("http://127.0.0.1:1/").unwrap();
        assert_eq!(u.resolve().unwrap(), "127.0.0.1:1".parse().unwrap());
        let u = Url::parse("http://no-such-host.invalid/").unwrap();
        assert!(matches!(u.resolve(), Err(UrlError::Resolve(_))));
    }
}
