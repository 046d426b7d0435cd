//! HS256 JSON Web Tokens minted by loadgen (`--jwt-secret`): one per
//! connection, reused until it is about to expire, as a real client keeps
//! its session token. Claims are a template; `iat` and `exp` are ours.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::template::{Names, Template, TemplateError, Vars, push_u64};

/// `{"alg":"HS256","typ":"JWT"}`, base64url.
const HEADER_B64: &[u8] = b"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";
/// A token is replaced this long before its `exp`, so no request carries
/// a token that expires in flight.
pub const REFRESH_MARGIN_S: u64 = 1;

#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    #[error("--jwt-secret is empty; give the HS256 key the server verifies with")]
    EmptySecret,
    #[error("--jwt-claims must be a JSON object such as '{{\"sub\":\"user-{{{{seq}}}}\"}}': {0}")]
    Claims(String),
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("--jwt-ttl must be at least 2 s (tokens are refreshed 1 s before they expire)")]
    Ttl,
}

#[derive(Clone)]
pub struct Jwt {
    mac: Hmac<Sha256>,
    /// The claims after their opening `{`.
    rest: Template,
    /// The claims object is `{}`: no comma after `exp`.
    empty: bool,
    /// Feeds the claims read.
    feeds: Vec<usize>,
    pub ttl_s: u64,
}

impl std::fmt::Debug for Jwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwt")
            .field("ttl_s", &self.ttl_s)
            .finish_non_exhaustive()
    }
}

impl Jwt {
    pub fn new(
        secret: &[u8],
        claims: &str,
        ttl_s: u64,
        names: &Names<'_>,
    ) -> Result<Jwt, JwtError> {
        if secret.is_empty() {
            return Err(JwtError::EmptySecret);
        }
        if ttl_s < 2 {
            return Err(JwtError::Ttl);
        }
        let text = claims.trim();
        let Some(inner) = text.strip_prefix('{').filter(|_| text.ends_with('}')) else {
            return Err(JwtError::Claims(
                "it does not start with { and end with }".into(),
            ));
        };
        let rest = Template::parse(inner, "--jwt-claims", names)?;
        if rest.uses_jwt() {
            return Err(JwtError::Claims("a token cannot contain {{jwt}}".into()));
        }
        // HMAC takes keys of any length.
        let mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| JwtError::EmptySecret)?;
        let mut feeds: Vec<usize> = rest.feeds().collect();
        feeds.sort_unstable();
        feeds.dedup();
        let jwt = Jwt {
            mac,
            feeds,
            rest,
            empty: inner.trim() == "}",
            ttl_s,
        };
        jwt.check(names)?;
        Ok(jwt)
    }

    /// Renders the claims once with sample values: they must be a JSON
    /// object, and must leave `iat`/`exp` to us.
    fn check(&self, names: &Names<'_>) -> Result<(), JwtError> {
        let rows = vec![0; names.feeds.len()];
        let mut rng = super::rng::Rng::new(1);
        let mut v = Vars {
            seq: 0,
            rows: &rows,
            feeds: names.feeds,
            now_ms: 0,
            rng: &mut rng,
            jwt: b"",
        };
        let mut claims = b"{".to_vec();
        self.rest.render(&mut v, &mut claims);
        let value: serde_json::Value =
            serde_json::from_slice(&claims).map_err(|e| JwtError::Claims(e.to_string()))?;
        let map = value
            .as_object()
            .ok_or_else(|| JwtError::Claims("not an object".into()))?;
        if map.contains_key("iat") || map.contains_key("exp") {
            return Err(JwtError::Claims(
                "remove \"iat\" and \"exp\": loadgen sets them (see --jwt-ttl)".into(),
            ));
        }
        Ok(())
    }

    /// Feeds the claims read: a new token takes their next row.
    pub fn feeds(&self) -> &[usize] {
        &self.feeds
    }

    fn payload(&self, v: &mut Vars<'_>, now_s: u64, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"iat\":");
        push_u64(out, now_s);
        out.extend_from_slice(b",\"exp\":");
        push_u64(out, now_s + self.ttl_s);
        if !self.empty {
            out.push(b',');
        }
        self.rest.render(v, out);
    }

    /// The longest token, given the feeds.
    pub fn max_len(&self, feeds: &[super::Feed]) -> usize {
        let payload = 26 + 20 + 20 + self.rest.max_len(feeds, 0);
        HEADER_B64.len()
            + 1
            + base64::encoded_len(payload, false).unwrap_or(usize::MAX / 4)
            + 1
            + 43
    }

    /// Mints a token valid from `now_s` into `out` (replacing it), using
    /// `scratch` for the payload. Returns its `exp`. Allocates nothing once
    /// both buffers have grown to [`Jwt::max_len`].
    pub fn mint(
        &self,
        v: &mut Vars<'_>,
        now_s: u64,
        scratch: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> u64 {
        scratch.clear();
        self.payload(v, now_s, scratch);
        out.clear();
        out.extend_from_slice(HEADER_B64);
        out.push(b'.');
        push_b64(out, scratch);
        let mut mac = self.mac.clone();
        mac.update(out);
        let tag = mac.finalize().into_bytes();
        out.push(b'.');
        push_b64(out, &tag);
        now_s + self.ttl_s
    }
}

fn push_b64(out: &mut Vec<u8>, data: &[u8]) {
    let at = out.len();
    let n = base64::encoded_len(data.len(), false).unwrap_or(0);
    out.resize(at + n, 0);
    // The slice is exactly the encoded length, so this cannot fail.
    let _ = URL_SAFE_NO_PAD.encode_slice(data, &mut out[at..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::rng::Rng;

    fn names() -> Names<'static> {
        Names {
            feeds: &[],
            jwt: false,
            env: &|_| None,
        }
    }

    fn mint(jwt: &Jwt, seq: u64, now_s: u64) -> String {
        let mut rng = Rng::new(1);
        let mut v = Vars {
            seq,
            rows: &[],
            feeds: &[],
            now_ms: now_s * 1000,
            rng: &mut rng,
            jwt: b"",
        };
        let (mut scratch, mut out) = (Vec::new(), Vec::new());
        assert_eq!(
            jwt.mint(&mut v, now_s, &mut scratch, &mut out),
            now_s + jwt.ttl_s
        );
        assert!(out.len() <= jwt.max_len(&[]));
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn matches_an_independent_hs256() {
        let jwt = Jwt::new(
            b"k3y",
            r#"{"sub":"user-{{seq}}","admin":true}"#,
            60,
            &names(),
        )
        .unwrap();
        let token = mint(&jwt, 7, 1_700_000_000);
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(
            claims,
            serde_json::json!({"iat": 1_700_000_000u64, "exp": 1_700_000_060u64, "sub": "user-7", "admin": true})
        );
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header, serde_json::json!({"alg": "HS256", "typ": "JWT"}));
        // HMAC-SHA256 by hand (RFC 2104) over the signing input.
        let key = {
            let mut k = [0u8; 64];
            k[..3].copy_from_slice(b"k3y");
            k
        };
        use sha2::Digest;
        let inner = sha2::Sha256::new()
            .chain_update(key.map(|b| b ^ 0x36))
            .chain_update(format!("{}.{}", parts[0], parts[1]))
            .finalize();
        let outer = sha2::Sha256::new()
            .chain_update(key.map(|b| b ^ 0x5c))
            .chain_update(inner)
            .finalize();
        assert_eq!(URL_SAFE_NO_PAD.decode(parts[2]).unwrap(), outer.to_vec());
    }

    #[test]
    fn empty_claims_and_bad_claims() {
        let jwt = Jwt::new(b"k", "{}", 3600, &names()).unwrap();
        let token = mint(&jwt, 0, 10);
        let claims = URL_SAFE_NO_PAD
            .decode(token.split('.').nth(1).unwrap())
            .unwrap();
        assert_eq!(claims, br#"{"iat":10,"exp":3610}"#);
        assert!(matches!(
            Jwt::new(b"", "{}", 60, &names()),
            Err(JwtError::EmptySecret)
        ));
        assert!(matches!(
            Jwt::new(b"k", "[]", 60, &names()),
            Err(JwtError::Claims(_))
        ));
        assert!(matches!(
            Jwt::new(b"k", "{\"a\":}", 60, &names()),
            Err(JwtError::Claims(_))
        ));
        assert!(matches!(
            Jwt::new(b"k", "{\"exp\":1}", 60, &names()),
            Err(JwtError::Claims(_))
        ));
        assert!(matches!(
            Jwt::new(b"k", "{}", 1, &names()),
            Err(JwtError::Ttl)
        ));
    }
}
