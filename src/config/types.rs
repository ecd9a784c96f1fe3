//! Small value types shared by the configuration and the rules: durations and lists.

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::fmt;

/// A duration written as a string: `"10s"`, `"4h"`, `"1h30m"`, `"500ms"`, `"7d"`, `"2w"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    /// From whole seconds.
    pub const fn from_secs(s: u64) -> Self {
        Duration(std::time::Duration::from_secs(s))
    }

    /// Parses `"1h30m"`-style text. Units: `ms`, `s`, `m`, `h`, `d` (24 h), `w` (7 d);
    /// a number may have a fraction (`"1.5h"`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let s = text.trim();
        if s.is_empty() {
            return Err("empty duration".into());
        }
        if s == "0" {
            return Ok(Duration::default());
        }
        let mut total = 0f64;
        let mut rest = s;
        while !rest.is_empty() {
            let num_len = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .ok_or_else(|| format!("`{text}` has a number without a unit (ms, s, m, h, d, w)"))?;
            if num_len == 0 {
                return Err(format!("`{text}` is not a duration like \"10s\" or \"4h\""));
            }
            let n: f64 = rest[..num_len]
                .parse()
                .map_err(|_| format!("`{text}` has an invalid number"))?;
            rest = &rest[num_len..];
            let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
            let secs = match &rest[..unit_len] {
                "ms" => 0.001,
                "s" => 1.0,
                "m" => 60.0,
                "h" => 3600.0,
                "d" => 86400.0,
                "w" => 604800.0,
                u => return Err(format!("unknown unit `{u}` in `{text}`; use ms, s, m, h, d or w")),
            };
            total += n * secs;
            rest = &rest[unit_len..];
        }
        if !total.is_finite() || total > 1e12 {
            return Err(format!("`{text}` is too long a duration"));
        }
        Ok(Duration(std::time::Duration::from_secs_f64(total)))
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
        for (unit, len) in [("d", 86_400_000u128), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)] {
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
            "pattern": "^([0-9]+(\\.[0-9]+)?(ms|s|m|h|d|w))+$|^0$",
            "description": "A duration: a number and a unit (ms, s, m, h, d, w), repeated: \"10s\", \"4h\", \"1h30m\".",
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
                T::deserialize(serde::de::value::StrDeserializer::<E>::new(s)).map(|t| List(vec![t]))
            }
            fn visit_i64<E: serde::de::Error>(self, i: i64) -> Result<List<T>, E> {
                T::deserialize(serde::de::value::I64Deserializer::<E>::new(i)).map(|t| List(vec![t]))
            }
            fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<List<T>, E> {
                T::deserialize(serde::de::value::BoolDeserializer::<E>::new(b)).map(|t| List(vec![t]))
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
        self.0.contains(ip)
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
