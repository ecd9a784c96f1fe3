//! Small value types shared by the configuration and the rules: durations and lists.

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::fmt;

/// A duration written as a string: `"10s"`, `"4h"`, `"1h30m"`, `"500ms"`, `"7d"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    /// From whole seconds.
    pub const fn from_secs(s: u64) -> Self {
        Duration(std::time::Duration::from_secs(s))
    }

    /// Parses Go-style duration text (`"1h30m"`, `"500ms"`, `"1.5h"`) plus a `d` (24 h) unit,
    /// as CrowdSec's `ParseDurationWithDays` accepts.
    pub fn parse(text: &str) -> Result<Self, String> {
        crate::parse::timefmt::parse_go_duration(text.trim())
            .map(Duration)
            .ok_or_else(|| format!("`{text}` is not a duration: write numbers with units (ms, s, m, h, d), like \"4h\" or \"1h30m\""))
    }

    /// Seconds, as a float.
    pub fn as_secs_f64(self) -> f64 {
        self.0.as_secs_f64()
    }
}

impl fmt::Display for Duration {
    /// The shortest exact rendering: `4h`, `1h30m`, `10s`, `500ms`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        let mut rest = ms;
        for (unit, len) in [
            ("d", 86_400_000u128),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1000),
            ("ms", 1),
        ] {
            if rest >= len {
                write!(f, "{}{unit}", rest / len)?;
                rest %= len;
            }
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string like \"10s\", \"4h\" or \"1h30m\"")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Duration, E> {
                Duration::parse(s).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h|d))+$|^0$",
            "description": "A duration: a number and a unit (ms, s, m, h, d), repeated: \"10s\", \"4h\", \"1h30m\".",
            "examples": ["10s", "4h", "1h30m"]
        })
    }
}

/// A list that may also be written as a single value (`collections "sshd"` or
/// `collections "sshd" "nginx"`; in JSON `"sshd"` or `["sshd", "nginx"]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct List<T>(pub Vec<T>);

impl<T> Default for List<T> {
    fn default() -> Self {
        List(Vec::new())
    }
}

impl<T> List<T> {
    /// Iterates the items.
    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.0.iter()
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Number of items.
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl<'a, T> IntoIterator for &'a List<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl<T> From<Vec<T>> for List<T> {
    fn from(v: Vec<T>) -> Self {
        List(v)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for List<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for V<T> {
            type Value = List<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a value or a list of values")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, a: A) -> Result<List<T>, A::Error> {
                Vec::<T>::deserialize(SeqAccessDeserializer::new(a)).map(List)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, a: A) -> Result<List<T>, A::Error> {
                T::deserialize(MapAccessDeserializer::new(a)).map(|t| List(vec![t]))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<List<T>, E> {
                T::deserialize(serde::de::value::StrDeserializer::<E>::new(s))
                    .map(|t| List(vec![t]))
            }
            fn visit_i64<E: serde::de::Error>(self, i: i64) -> Result<List<T>, E> {
                T::deserialize(serde::de::value::I64Deserializer::<E>::new(i))
                    .map(|t| List(vec![t]))
            }
            fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<List<T>, E> {
                T::deserialize(serde::de::value::BoolDeserializer::<E>::new(b))
                    .map(|t| List(vec![t]))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

impl<T: Serialize> Serialize for List<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<T: JsonSchema> JsonSchema for List<T> {
    fn schema_name() -> Cow<'static, str> {
        format!("List_of_{}", T::schema_name()).into()
    }
    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let item = g.subschema_for::<T>();
        schemars::json_schema!({
            "anyOf": [ item, { "type": "array", "items": item } ]
        })
    }
}

/// An address or a CIDR range: `"10.0.0.0/8"`, `"2001:db8::/32"`, `"192.0.2.7"` (one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr(pub ipnet::IpNet);

impl Cidr {
    /// Parses an address or range; a bare address is a /32 or /128. Host bits must be zero.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Ok(ip) = s.parse::<std::net::IpAddr>() {
            return Ok(Cidr(ipnet::IpNet::from(ip)));
        }
        let net: ipnet::IpNet = s
            .parse()
            .map_err(|_| format!("`{s}` is not an IP address or CIDR range"))?;
        if net.trunc() != net {
            return Err(format!(
                "`{s}` has host bits set; did you mean `{}`?",
                net.trunc()
            ));
        }
        Ok(Cidr(net))
    }

    /// True when the range contains the address.
    pub fn contains(&self, ip: &std::net::IpAddr) -> bool {
        // One masked comparison (ipnet's `contains` builds the network and broadcast
        // addresses first): every parsed line is tested against each whitelisted range.
        use std::net::IpAddr;
        match (&self.0, ip) {
            (ipnet::IpNet::V4(n), IpAddr::V4(a)) => {
                let bits = 32 - u32::from(n.prefix_len());
                let mask = u32::MAX.checked_shl(bits).unwrap_or(0);
                (u32::from(*a) ^ u32::from(n.addr())) & mask == 0
            }
            (ipnet::IpNet::V6(n), IpAddr::V6(a)) => {
                let bits = 128 - u32::from(n.prefix_len());
                let mask = u128::MAX.checked_shl(bits).unwrap_or(0);
                (u128::from(*a) ^ u128::from(n.addr())) & mask == 0
            }
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Cow::<str>::deserialize(d)?;
        Cidr::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl JsonSchema for Cidr {
    fn schema_name() -> Cow<'static, str> {
        "Cidr".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "An IP address or a CIDR range, IPv4 or IPv6.",
            "examples": ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Cidr;
    use ipnet::{IpNet, Ipv4Net, Ipv6Net};
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    #[test]
    fn contains_agrees_with_ipnet_on_every_prefix_length() {
        // xorshift: addresses that share long prefixes with the ranges, and ones that do not.
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut hits = 0;
        for _ in 0..20_000 {
            let (a, b) = (next(), next());
            let flip = 1u128 << (next() % 128);
            let v6 = (u128::from(a) << 64) | u128::from(b);
            let v4 = a as u32;
            let nets = [
                IpNet::V4(Ipv4Net::new(Ipv4Addr::from(v4), (b % 33) as u8).expect("a v4 prefix")),
                IpNet::V6(Ipv6Net::new(Ipv6Addr::from(v6), (b % 129) as u8).expect("a v6 prefix")),
            ];
            let addrs = [
                IpAddr::V4(Ipv4Addr::from(v4 ^ flip as u32)),
                IpAddr::V4(Ipv4Addr::from(v4 ^ (flip >> 96) as u32)),
                IpAddr::V6(Ipv6Addr::from(v6 ^ flip)),
                IpAddr::V4(Ipv4Addr::from(b as u32)),
            ];
            for net in nets {
                for ip in &addrs {
                    let want = net.contains(ip);
                    assert_eq!(Cidr(net).contains(ip), want, "{net} {ip}");
                    hits += usize::from(want);
                }
            }
        }
        assert!(hits > 10_000, "both answers seen: {hits}");
        let private = Cidr::parse("172.16.0.0/12").expect("a range");
        assert!(private.contains(&"172.31.255.255".parse().expect("an address")));
        assert!(!private.contains(&"172.32.0.0".parse().expect("an address")));
        assert!(!private.contains(&"::ffff:172.16.0.1".parse().expect("an address")));
    }
}
