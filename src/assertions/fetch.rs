//! Fetching key sets from the network: a client's `jwks_uri`, a trusted
//! issuer's `jwks_uri` or discovery document (API.md section 3, "Trusted
//! issuers"). A registered URL is a request the server makes on someone's
//! word, so every fetch is held to the same rules (think of a sub-tenant
//! admin pointing `jwks_uri` at a service on the server's own network):
//! - https only, no user info in the URL;
//! - the host must not resolve to a loopback, link-local, private, shared,
//!   multicast or unspecified address; the check is made in the resolver
//!   the connection uses, so the address checked is the address connected
//!   to (no second lookup to rebind);
//! - 5 s for the whole fetch, redirects included; at most 3 redirects, each
//!   to the same host; 64 KiB at most.
//!
//! `KEYWARD_ALLOW_INSECURE_JWKS=true` lifts the scheme and address rules
//! (development and tests, where issuers listen on loopback over http).
//! Fetches are blocking (ureq); callers run them off the async workers.

use std::io::Read as _;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs as _};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;

use super::jwks;

/// The whole fetch, redirects included.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// The largest document read.
pub const MAX_BYTES: u64 = 64 * 1024;
const MAX_REDIRECTS: usize = 3;

/// Why a document could not be had; said to the admin at registration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FetchError(pub String);

fn fail(why: impl Into<String>) -> FetchError {
    FetchError(why.into())
}

/// Addresses a registered URL may not reach.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                // 100.64.0.0/10, shared address space (carrier NAT).
                || (a == 100 && (64..128).contains(&b))
                // 0.0.0.0/8, "this network".
                || a == 0
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_forbidden(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                // fc00::/7, unique local.
                || (first & 0xfe00) == 0xfc00
                // fe80::/10, link-local.
                || (first & 0xffc0) == 0xfe80
        }
    }
}

/// Checks a URL before it is registered or fetched: absolute, https
/// (unless insecure fetches are allowed), no user info, at most 2000
/// characters. Addresses are checked when the host is resolved.
pub fn check_url(text: &str, allow_insecure: bool) -> Result<url::Url, FetchError> {
    if text.len() > 2000 {
        return Err(fail("the URL is longer than 2000 characters"));
    }
    let url = url::Url::parse(text).map_err(|e| fail(format!("not a URL: {e}")))?;
    match url.scheme() {
        "https" => {}
        "http" if allow_insecure => {}
        _ => return Err(fail("only https URLs are fetched")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(fail("the URL may not carry a user or password"));
    }
    let Some(host) = url.host() else {
        return Err(fail("the URL has no host"));
    };
    if !allow_insecure {
        let literal = match host {
            url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
            url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
            url::Host::Domain(name) if name.eq_ignore_ascii_case("localhost") => {
                Some(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
            }
            url::Host::Domain(_) => None,
        };
        if literal.is_some_and(is_forbidden) {
            return Err(fail(
                "the URL points at a loopback, link-local or private address",
            ));
        }
    }
    Ok(url)
}

/// The resolver every connection goes through: it drops forbidden
/// addresses, so a name that resolves only to them cannot be reached.
struct GuardedResolver {
    allow_insecure: bool,
}

impl ureq::Resolver for GuardedResolver {
    fn resolve(&self, netloc: &str) -> std::io::Result<Vec<SocketAddr>> {
        let all: Vec<SocketAddr> = netloc.to_socket_addrs()?.collect();
        if self.allow_insecure {
            return Ok(all);
        }
        let allowed: Vec<SocketAddr> = all.into_iter().filter(|a| !is_forbidden(a.ip())).collect();
        if allowed.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "resolves only to loopback, link-local or private addresses",
            ));
        }
        Ok(allowed)
    }
}

/// Fetches key sets and discovery documents under the rules above.
pub struct KeyFetcher {
    agent: ureq::Agent,
    allow_insecure: bool,
}

impl KeyFetcher {
    pub fn new(allow_insecure: bool) -> Arc<KeyFetcher> {
        let agent = ureq::AgentBuilder::new()
            .timeout(TIMEOUT)
            .redirects(0)
            .user_agent(concat!("keyward/", env!("CARGO_PKG_VERSION")))
            .resolver(GuardedResolver { allow_insecure })
            .build();
        Arc::new(KeyFetcher {
            agent,
            allow_insecure,
        })
    }

    pub fn allows_insecure(&self) -> bool {
        self.allow_insecure
    }

    /// `check_url` under this fetcher's rules.
    pub fn check_url(&self, text: &str) -> Result<url::Url, FetchError> {
        check_url(text, self.allow_insecure)
    }

    /// GETs `url` and returns the body: status 200, at most `MAX_BYTES`,
    /// redirects followed only to the same host, all within `TIMEOUT`.
    pub fn get(&self, url: &str) -> Result<Vec<u8>, FetchError> {
        let deadline = Instant::now() + TIMEOUT;
        let mut url = self.check_url(url)?;
        for _ in 0..=MAX_REDIRECTS {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(fail("timed out"));
            }
            let response = match self
                .agent
                .get(url.as_str())
                .timeout(left)
                .set("Accept", "application/json")
                .call()
            {
                Ok(r) => r,
                Err(ureq::Error::Status(code, _)) => {
                    return Err(fail(format!("answered HTTP {code}")))
                }
                Err(ureq::Error::Transport(t)) => return Err(fail(transport_reason(&t))),
            };
            let status = response.status();
            if (300..400).contains(&status) {
                let location = response
                    .header("location")
                    .ok_or_else(|| fail(format!("answered HTTP {status} without a Location")))?;
                let next = url
                    .join(location)
                    .map_err(|_| fail("redirected to something that is not a URL"))?;
                if next.host_str() != url.host_str() {
                    return Err(fail("redirected to another host"));
                }
                url = self.check_url(next.as_str())?;
                continue;
            }
            if status != 200 {
                return Err(fail(format!("answered HTTP {status}")));
            }
            let mut body = Vec::new();
            response
                .into_reader()
                .take(MAX_BYTES + 1)
                .read_to_end(&mut body)
                .map_err(|e| fail(format!("the answer could not be read: {e}")))?;
            if body.len() as u64 > MAX_BYTES {
                return Err(fail("the document is larger than 64 KiB"));
            }
            return Ok(body);
        }
        Err(fail("too many redirects"))
    }

    /// A JWK Set from `jwks_uri`.
    pub fn jwks(&self, jwks_uri: &str) -> Result<JwkSet, FetchError> {
        let body = self.get(jwks_uri)?;
        jwks::parse_published(&body).map_err(FetchError)
    }

    /// The `jwks_uri` an issuer's discovery document names
    /// (`<issuer>/.well-known/openid-configuration`). The document's
    /// `issuer` must be the issuer itself (OpenID Connect Discovery 4.3).
    pub fn discover_jwks_uri(&self, issuer: &str) -> Result<String, FetchError> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let body = self.get(&url)?;
        let doc: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|_| fail("the discovery document is not JSON"))?;
        if doc.get("issuer").and_then(|v| v.as_str()) != Some(issuer) {
            return Err(fail("the discovery document names another issuer"));
        }
        doc.get("jwks_uri")
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .ok_or_else(|| fail("the discovery document has no jwks_uri"))
    }
}

fn transport_reason(t: &ureq::Transport) -> String {
    use ureq::ErrorKind as K;
    match t.kind() {
        K::Dns => "the host does not resolve to an address keyward may fetch from \
                   (loopback, link-local and private addresses are refused)"
            .into(),
        K::ConnectionFailed => "the connection failed".into(),
        K::Io if t.to_string().contains("timed out") => "timed out".into(),
        K::Io => "the connection broke".into(),
        K::InvalidUrl | K::UnknownScheme => "not a URL keyward fetches".into(),
        _ => format!("the fetch failed ({})", t.kind()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_local_addresses_are_forbidden() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(is_forbidden(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "93.184.215.14",
            "2606:2800:21f:cb07:6820:80da:af6b:8b2c",
            "8.8.8.8",
        ] {
            assert!(!is_forbidden(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn urls_must_be_https_without_credentials_or_local_hosts() {
        let strict = KeyFetcher::new(false);
        assert!(strict.check_url("https://issuer.example/jwks").is_ok());
        for bad in [
            "http://issuer.example/jwks",
            "https://user:pw@issuer.example/jwks",
            "https://127.0.0.1/jwks",
            "https://[::1]/jwks",
            "https://localhost/jwks",
            "https://169.254.169.254/latest/meta-data",
            "ftp://issuer.example/",
            "not a url",
        ] {
            assert!(strict.check_url(bad).is_err(), "{bad}");
        }
        let lax = KeyFetcher::new(true);
        assert!(lax.check_url("http://127.0.0.1:8080/jwks").is_ok());
    }

    #[test]
    fn a_name_that_resolves_to_loopback_is_not_fetched() {
        let strict = KeyFetcher::new(false);
        // localhost.localdomain-style names pass the URL check but resolve
        // to loopback: the resolver refuses them.
        let err = strict
            .get("https://localhost.:9/jwks")
            .expect_err("a loopback name is refused");
        assert!(
            err.0.contains("resolve") || err.0.contains("private") || err.0.contains("loopback"),
            "{err}"
        );
    }
}
