//! One request as the user described it. `crate::scenario` compiles it,
//! templates and all, into what the engines send; `to_bytes` is the plain
//! rendering that the compiled form must match when nothing is templated.

/// What to send; rendered to bytes by [`RequestSpec::to_bytes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestSpec {
    pub method: String,
    /// Path and query, starting with `/`.
    pub target: String,
    /// Value of the `Host` header unless `headers` overrides it.
    pub host: String,
    /// Extra headers in the order given (`-H "K: V"`).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RequestError {
    #[error("invalid HTTP method {0:?}: use a token such as GET, POST or HEAD")]
    Method(String),
    #[error("invalid header {0:?}: use -H \"Name: value\"")]
    Header(String),
    #[error("the request target {0:?} contains spaces or control characters: percent-encode them")]
    Target(String),
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A byte that cannot stand in a request target (space, control, DEL).
pub fn bad_target_byte(b: u8) -> bool {
    b <= b' ' || b == 0x7f
}

impl RequestSpec {
    /// A `GET target` with no headers or body.
    pub fn get(host: &str, target: &str) -> Self {
        RequestSpec {
            method: "GET".into(),
            target: target.into(),
            host: host.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Parses a `-H` argument (`"Name: value"`).
    pub fn parse_header(arg: &str) -> Result<(String, String), RequestError> {
        let (name, value) = arg
            .split_once(':')
            .ok_or_else(|| RequestError::Header(arg.to_string()))?;
        let name = name.trim();
        let value = value.trim();
        if !is_token(name) || value.bytes().any(|b| b == b'\r' || b == b'\n') {
            return Err(RequestError::Header(arg.to_string()));
        }
        Ok((name.to_string(), value.to_string()))
    }

    /// True when responses to this request carry no body.
    pub fn is_head(&self) -> bool {
        self.method.eq_ignore_ascii_case("HEAD")
    }

    fn has_header(&self, name: &str) -> bool {
        self.headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    /// The method must be an HTTP token.
    pub fn check_method(&self) -> Result<(), RequestError> {
        if is_token(&self.method) {
            Ok(())
        } else {
            Err(RequestError::Method(self.method.clone()))
        }
    }

    /// Renders the request as it goes on the wire.
    pub fn to_bytes(&self) -> Result<Vec<u8>, RequestError> {
        self.check_method()?;
        if self.target.bytes().any(bad_target_byte) {
            return Err(RequestError::Target(self.target.clone()));
        }
        let mut out = Vec::with_capacity(128 + self.body.len());
        out.extend_from_slice(self.method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.target.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        if !self.has_header("host") {
            out.extend_from_slice(b"Host: ");
            out.extend_from_slice(self.host.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        for (name, value) in &self.headers {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        let wants_length = !self.body.is_empty()
            || ["POST", "PUT", "PATCH"]
                .iter()
                .any(|m| self.method.eq_ignore_ascii_case(m));
        if wants_length && !self.has_header("content-length") {
            out.extend_from_slice(format!("Content-Length: {}\r\n", self.body.len()).as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_has_host_and_no_length() {
        let bytes = RequestSpec::get("h:8080", "/a?b=1").to_bytes().unwrap();
        assert_eq!(bytes, b"GET /a?b=1 HTTP/1.1\r\nHost: h:8080\r\n\r\n");
    }

    #[test]
    fn body_gets_content_length_and_headers_keep_order() {
        let mut spec = RequestSpec::get("h", "/");
        spec.method = "POST".into();
        spec.headers = vec![("X-A".into(), "1".into()), ("x-b".into(), "2".into())];
        spec.body = b"hello".to_vec();
        let text = String::from_utf8(spec.to_bytes().unwrap()).unwrap();
        assert_eq!(
            text,
            "POST / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nx-b: 2\r\nContent-Length: 5\r\n\r\nhello"
        );
    }

    #[test]
    fn host_header_override() {
        let mut spec = RequestSpec::get("h", "/");
        spec.headers = vec![("host".into(), "example.com".into())];
        let text = String::from_utf8(spec.to_bytes().unwrap()).unwrap();
        assert_eq!(text, "GET / HTTP/1.1\r\nhost: example.com\r\n\r\n");
    }

    #[test]
    fn empty_post_says_zero_length() {
        let mut spec = RequestSpec::get("h", "/");
        spec.method = "POST".into();
        assert!(
            String::from_utf8(spec.to_bytes().unwrap())
                .unwrap()
                .contains("Content-Length: 0\r\n")
        );
    }

    #[test]
    fn bad_inputs_are_rejected() {
        assert!(RequestSpec::parse_header("NoColon").is_err());
        assert!(RequestSpec::parse_header("Bad Name: v").is_err());
        assert_eq!(
            RequestSpec::parse_header("  X-Y :  z ").unwrap(),
            ("X-Y".to_string(), "z".to_string())
        );
        let mut spec = RequestSpec::get("h", "/a b");
        assert!(matches!(spec.to_bytes(), Err(RequestError::Target(_))));
        spec.target = "/".into();
        spec.method = "G ET".into();
        assert!(matches!(spec.to_bytes(), Err(RequestError::Method(_))));
    }
}
