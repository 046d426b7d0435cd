//! `http://host[:port]/path?query` — the only URL form loadgen speaks.

use std::net::{SocketAddr, ToSocketAddrs};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// As the user typed it, for the report.
    pub raw: String,
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub target: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UrlError {
    #[error("{0:?} is not a URL: write it as http://HOST[:PORT]/PATH")]
    Syntax(String),
    #[error("{0:?}: https is not supported yet; point loadgen at an http:// endpoint")]
    Https(String),
    #[error("{0:?}: unsupported scheme; use http://")]
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
        if scheme.eq_ignore_ascii_case("https") {
            return Err(UrlError::Https(raw.to_string()));
        }
        if !scheme.eq_ignore_ascii_case("http") {
            return Err(UrlError::Scheme(raw.to_string()));
        }
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
            None => 80,
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
            target,
        })
    }

    /// The `Host` header value: the port only when it is not the default.
    pub fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == 80 {
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
    fn rejects_bad_urls_with_a_reason() {
        assert!(matches!(Url::parse("https://x/"), Err(UrlError::Https(_))));
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
