//! Which requests may be served: those addressed to this server by a name that cannot be
//! rebound to it, and not sent by a page of another site.
//!
//! A page on any site can make the user's browser send requests to a local port. Two checks
//! keep it out: the `Host` a browser sends names the site the page thinks it talks to, so a
//! DNS-rebinding page (evil.example re-resolved to 127.0.0.1) is refused by name; and a browser
//! sends `Origin` with every POST and every cross-site fetch, so a form or script on another site
//! is refused before anything is read or scored.

use std::net::IpAddr;

use axum::http::uri::Authority;
use axum::http::{header, HeaderMap};

#[derive(Debug, Clone)]
pub struct Guard {
    bind: IpAddr,
    /// `--allow-host` entries, lowercased: `name` (any port) or `name:port`.
    hosts: Vec<String>,
    any_host: bool,
    /// `--allow-origin` entries, lowercased, without a trailing `/`.
    origins: Vec<String>,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("Host {0:?} is not this server's (allow it with --allow-host NAME)")]
    Host(String),
    #[error("the request has no Host header")]
    NoHost,
    #[error("requests from Origin {0:?} are not served (allow it with --allow-origin ORIGIN)")]
    Origin(String),
}

impl Refusal {
    /// The flag that would let the request in.
    pub fn flag(&self) -> &'static str {
        match self {
            Refusal::Host(_) | Refusal::NoHost => "allow_host",
            Refusal::Origin(_) => "allow_origin",
        }
    }
}

impl Guard {
    /// `allow_hosts` may hold `*`: any Host (a proxy in front checks it).
    pub fn new(bind: IpAddr, allow_hosts: &[String], allow_origins: &[String]) -> Self {
        let hosts: Vec<String> = allow_hosts.iter().map(|h| h.to_ascii_lowercase()).collect();
        Guard {
            bind,
            any_host: hosts.iter().any(|h| h == "*"),
            hosts,
            origins: allow_origins
                .iter()
                .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                .collect(),
        }
    }

    pub fn check(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let host = headers
            .get(header::HOST)
            .ok_or(Refusal::NoHost)?
            .to_str()
            .map_err(|_| Refusal::Host("(not text)".into()))?
            .to_ascii_lowercase();
        if !self.host_allowed(&host) {
            return Err(Refusal::Host(host));
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("(not text)").to_ascii_lowercase();
            if !self.origin_allowed(&origin, &host) {
                return Err(Refusal::Origin(origin));
            }
        }
        Ok(())
    }

    fn host_allowed(&self, host: &str) -> bool {
        if self.any_host || self.hosts.iter().any(|h| h == host) {
            return true;
        }
        let Ok(authority) = host.parse::<Authority>() else {
            return false;
        };
        let name = authority.host().trim_end_matches('.');
        if self.hosts.iter().any(|h| h == name) {
            return true;
        }
        // RFC 6761: localhost and its subdomains resolve to loopback, never to another site.
        if name == "localhost" || name.ends_with(".localhost") {
            return true;
        }
        // An address cannot be rebound: a browser that sends one connected to it. Bound to
        // every interface, any address that reached the server is one of this machine's.
        match name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            Ok(ip) => ip.is_loopback() || ip == self.bind || self.bind.is_unspecified(),
            Err(_) => false,
        }
    }

    /// Same origin means the Origin's host and port are the Host the request was sent to; the
    /// scheme is not compared, so a TLS proxy in front that keeps the Host still works.
    fn origin_allowed(&self, origin: &str, host: &str) -> bool {
        let origin = origin.trim_end_matches('/');
        if self.origins.iter().any(|o| o == origin) {
            return true;
        }
        match origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
        {
            Some(authority) => authority == host,
            // `null` (a sandboxed frame, a file:// page) and other schemes are foreign.
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(host: Option<&str>, origin: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(host) = host {
            h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        }
        if let Some(origin) = origin {
            h.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
        }
        h
    }

    fn loopback() -> Guard {
        Guard::new("127.0.0.1".parse().unwrap(), &[], &[])
    }

    #[test]
    fn local_names_and_the_bind_address_are_served_other_names_are_not() {
        let g = loopback();
        for host in [
            "localhost:8080",
            "LOCALHOST",
            "127.0.0.1:8080",
            "127.0.0.2:8080",
            "[::1]:8080",
            "app.localhost:8080",
        ] {
            assert_eq!(g.check(&headers(Some(host), None)), Ok(()), "{host}");
        }
        for host in [
            "evil.example:8080",
            "192.168.1.5:8080",
            "localhost.evil.example",
        ] {
            assert_eq!(
                g.check(&headers(Some(host), None)),
                Err(Refusal::Host(host.into())),
                "{host}"
            );
        }
        assert_eq!(g.check(&headers(None, None)), Err(Refusal::NoHost));

        let lan = Guard::new("192.168.1.5".parse().unwrap(), &[], &[]);
        assert!(lan.check(&headers(Some("192.168.1.5:8080"), None)).is_ok());
        assert!(lan.check(&headers(Some("10.0.0.1:8080"), None)).is_err());
    }

    #[test]
    fn bound_to_every_interface_any_address_is_served_but_names_need_allowing() {
        let any = Guard::new("0.0.0.0".parse().unwrap(), &[], &[]);
        assert!(any.check(&headers(Some("192.168.1.5:8080"), None)).is_ok());
        assert!(any.check(&headers(Some("[fe80::1]:8080"), None)).is_ok());
        assert!(any.check(&headers(Some("scanner.lan:8080"), None)).is_err());

        let named = Guard::new(
            "0.0.0.0".parse().unwrap(),
            &["Scanner.lan".into(), "proxy.example:443".into()],
            &[],
        );
        assert!(named
            .check(&headers(Some("scanner.lan:8080"), None))
            .is_ok());
        assert!(named.check(&headers(Some("scanner.lan"), None)).is_ok());
        assert!(named
            .check(&headers(Some("proxy.example:443"), None))
            .is_ok());
        assert!(named
            .check(&headers(Some("proxy.example:8080"), None))
            .is_err());
        let star = Guard::new("0.0.0.0".parse().unwrap(), &["*".into()], &[]);
        assert!(star.check(&headers(Some("whatever.example"), None)).is_ok());
    }

    #[test]
    fn an_origin_other_than_the_host_is_refused_unless_allowed() {
        let g = loopback();
        let ok = |host, origin| g.check(&headers(Some(host), Some(origin)));
        assert_eq!(ok("localhost:8080", "http://localhost:8080"), Ok(()));
        assert_eq!(ok("127.0.0.1:8080", "http://127.0.0.1:8080/"), Ok(()));
        for origin in [
            "http://evil.example",
            "http://localhost:3000",
            "http://127.0.0.1:8080.evil.example",
            "null",
            "file://",
        ] {
            assert_eq!(
                ok("localhost:8080", origin),
                Err(Refusal::Origin(origin.into())),
                "{origin}"
            );
        }
        let allowed = Guard::new(
            "127.0.0.1".parse().unwrap(),
            &[],
            &["https://Tools.example/".into()],
        );
        let h = headers(Some("localhost:8080"), Some("https://tools.example"));
        assert_eq!(allowed.check(&h), Ok(()));
    }
}
