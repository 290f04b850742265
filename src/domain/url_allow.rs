//! Which hosts bank endpoints may point at (`serve --bank-url-allow`): the
//! switch calls every registered endpoint (probes every second, payments),
//! so an open registration would let whoever holds the operator token make
//! the switch reach anything it can reach (SSRF). Entries are IP networks
//! in CIDR notation (`10.1.0.0/16`, `::1/128`), single addresses, or host
//! names matched exactly (case-insensitively; a name is trusted as the
//! operator wrote it, its addresses are not checked). The default allows
//! loopback only, for local use. Pure.

use std::net::IpAddr;

/// The default: loopback only.
pub const LOOPBACK: &[&str] = &["127.0.0.0/8", "::1/128", "localhost"];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Net { base: IpAddr, prefix: u8 },
    Host(String),
}

/// A parsed allow-list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlAllowList(Vec<Entry>);

fn bits(ip: IpAddr) -> (u128, u8) {
    match ip {
        IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
        IpAddr::V6(v6) => (u128::from(v6), 128),
    }
}

fn in_net(ip: IpAddr, base: IpAddr, prefix: u8) -> bool {
    let (ip, width) = bits(ip);
    let (base, base_width) = bits(base);
    if width != base_width {
        return false;
    }
    let shift = u32::from(width - prefix.min(width));
    if shift >= 128 {
        return true;
    }
    (ip >> shift) == (base >> shift)
}

impl UrlAllowList {
    /// Parses entries; the error names the first bad one.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<UrlAllowList, String> {
        let mut out = Vec::new();
        for raw in entries {
            let text = raw.as_ref().trim();
            if text.is_empty() {
                continue;
            }
            let entry = match text.split_once('/') {
                Some((ip, prefix)) => {
                    let base: IpAddr = ip
                        .parse()
                        .map_err(|_| format!("{text:?}: not an IP network like 10.0.0.0/8"))?;
                    let prefix: u8 = prefix
                        .parse()
                        .ok()
                        .filter(|p| *p <= bits(base).1)
                        .ok_or_else(|| format!("{text:?}: the prefix length is out of range"))?;
                    Entry::Net { base, prefix }
                }
                None => match text
                    .trim_matches(|c| c == '[' || c == ']')
                    .parse::<IpAddr>()
                {
                    Ok(ip) => Entry::Net {
                        base: ip,
                        prefix: bits(ip).1,
                    },
                    Err(_)
                        if text
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') =>
                    {
                        Entry::Host(text.to_ascii_lowercase())
                    }
                    Err(_) => return Err(format!("{text:?}: not a host name, address or CIDR")),
                },
            };
            out.push(entry);
        }
        Ok(UrlAllowList(out))
    }

    pub fn loopback() -> UrlAllowList {
        UrlAllowList::parse(LOOPBACK).unwrap_or(UrlAllowList(Vec::new()))
    }

    /// Whether a URL's host is allowed.
    pub fn allows(&self, url: &reqwest::Url) -> bool {
        match url.host() {
            Some(url::Host::Ipv4(v4)) => self.allows_ip(IpAddr::V4(v4)),
            Some(url::Host::Ipv6(v6)) => self.allows_ip(IpAddr::V6(v6)),
            Some(url::Host::Domain(name)) => {
                let name = name.to_ascii_lowercase();
                // A name that is an address in disguise is judged as one.
                if let Ok(ip) = name.parse::<IpAddr>() {
                    return self.allows_ip(ip);
                }
                self.0
                    .iter()
                    .any(|e| matches!(e, Entry::Host(h) if *h == name))
            }
            None => false,
        }
    }

    fn allows_ip(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.0
            .iter()
            .any(|e| matches!(e, Entry::Net { base, prefix } if in_net(ip, *base, *prefix)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> reqwest::Url {
        reqwest::Url::parse(text).expect("url")
    }

    #[test]
    fn loopback_by_default_and_nothing_else() {
        let l = UrlAllowList::loopback();
        for ok in [
            "http://127.0.0.1:9101",
            "http://127.9.9.9",
            "http://[::1]:80",
            "http://LOCALHOST:1",
            "http://[::ffff:127.0.0.1]/",
        ] {
            assert!(l.allows(&url(ok)), "{ok}");
        }
        for no in [
            "http://169.254.169.254/latest",
            "http://10.0.0.1",
            "http://example.com",
            "http://[::2]",
            "http://0x7f000001.evil",
        ] {
            assert!(!l.allows(&url(no)), "{no}");
        }
    }

    #[test]
    fn networks_addresses_and_names() {
        let l = UrlAllowList::parse(&["10.1.0.0/16", "192.168.1.7", "bank-hdfc"]).expect("parse");
        assert!(l.allows(&url("http://10.1.200.3:9101")));
        assert!(!l.allows(&url("http://10.2.0.1")));
        assert!(l.allows(&url("http://192.168.1.7")));
        assert!(!l.allows(&url("http://192.168.1.8")));
        assert!(l.allows(&url("http://Bank-HDFC:9101")));
        assert!(!l.allows(&url("http://127.0.0.1")));
        assert!(UrlAllowList::parse(&["10.0.0.0/33"]).is_err());
        assert!(UrlAllowList::parse(&["bad host!"]).is_err());
    }
}
