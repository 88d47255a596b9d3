//! The checkout event JSON, field for field as the contract defines it.
//!
//! Strings are `Cow<str>` borrowed from the message where they can be, so
//! decoding a 600-byte event allocates only for strings with escapes.
//! Unknown fields are ignored (serde's default), as the contract requires.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// The only event type that is counted; every other `type` is filtered.
pub const CHECKOUT_COMPLETED: &str = "checkout.completed";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckoutEvent<'a> {
    #[serde(borrow)]
    pub event_id: Cow<'a, str>,
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    /// RFC 3339 event time; see [`crate::time::parse_rfc3339_ms`].
    #[serde(borrow)]
    pub occurred_at: Cow<'a, str>,
    pub shop: Shop,
    #[serde(borrow)]
    pub buyer: Buyer<'a>,
    #[serde(borrow)]
    pub order: Order<'a>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipping: Option<Shipping>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shop {
    pub id: u64,
    pub country: CountryCode,
    pub lat: f64,
    pub lon: f64,
}

/// Personal data: `id` is only ever hashed for unique-shopper counting, and
/// the coordinates are coarsened before anything leaves the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Buyer<'a> {
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    pub country: CountryCode,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub region: Option<Cow<'a, str>>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub city: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lat: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lon: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order<'a> {
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    /// Decimal string in major units; never parsed through a float.
    #[serde(borrow)]
    pub total: Cow<'a, str>,
    pub currency: CurrencyCode,
    #[serde(borrow)]
    pub channel: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<bool>,
    #[serde(borrow)]
    pub line_items: Vec<LineItem<'a>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineItem<'a> {
    #[serde(borrow)]
    pub product_category: Cow<'a, str>,
    pub quantity: u32,
    #[serde(borrow)]
    pub price: Cow<'a, str>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shipping {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carbon_kg: Option<f64>,
}

/// Two ASCII letters, stored inline; anything else fails to deserialize
/// with an "invalid value" error (the decoder's `bad_value`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CountryCode(pub [u8; 2]);

/// Three ASCII letters, stored inline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CurrencyCode(pub [u8; 3]);

macro_rules! ascii_code {
    ($ty:ident, $n:literal, $what:literal) => {
        impl $ty {
            pub fn as_str(&self) -> &str {
                // Only ASCII letters are ever stored, so this cannot fail.
                std::str::from_utf8(&self.0).unwrap_or("")
            }

            pub fn parse(s: &str) -> Option<Self> {
                let b = s.as_bytes();
                if b.len() != $n || !b.iter().all(u8::is_ascii_uppercase) {
                    return None;
                }
                let mut code = [0u8; $n];
                code.copy_from_slice(b);
                Some($ty(code))
            }
        }

        impl Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <Cow<'de, str>>::deserialize(d)?;
                $ty::parse(&s).ok_or_else(|| {
                    serde::de::Error::invalid_value(serde::de::Unexpected::Str(&s), &$what)
                })
            }
        }
    };
}

ascii_code!(CountryCode, 2, "an ISO 3166-1 alpha-2 code");
ascii_code!(CurrencyCode, 3, "an ISO 4217 code");

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"{
      "event_id": "0b9f6c1e-6f4e-4b8e-9a53-4c2a51f0d7a2",
      "type": "checkout.completed",
      "occurred_at": "2026-11-27T14:03:11.123Z",
      "shop": { "id": 1048576, "country": "CA", "lat": 43.6532, "lon": -79.3832 },
      "buyer": { "id": "b3f1c2d4e5", "country": "US", "region": "TX", "city": "Austin",
                 "lat": 30.2672, "lon": -97.7431 },
      "order": {
        "id": "5551234567", "total": "129.99", "currency": "USD",
        "channel": "online_store", "test": false,
        "line_items": [
          { "product_category": "Apparel & Accessories > Shoes", "quantity": 2, "price": "59.99" },
          { "product_category": "Home & Garden > Kitchen", "quantity": 1, "price": "10.01" }
        ]
      },
      "shipping": { "method": "standard", "carbon_kg": 0.42 },
      "some_future_field": {"nested": [1, 2, 3]}
    }"#;

    #[test]
    fn reads_the_contract_example() {
        let e: CheckoutEvent = serde_json::from_str(EXAMPLE).expect("example parses");
        assert_eq!(e.kind, CHECKOUT_COMPLETED);
        assert_eq!(e.shop.id, 1_048_576);
        assert_eq!(e.shop.country.as_str(), "CA");
        assert_eq!(e.order.currency.as_str(), "USD");
        assert_eq!(e.order.line_items.len(), 2);
        assert_eq!(e.shipping.and_then(|s| s.carbon_kg), Some(0.42));
        assert!(
            matches!(e.event_id, Cow::Borrowed(_)),
            "plain strings are borrowed"
        );
    }

    #[test]
    fn round_trips_through_serialize() {
        let e: CheckoutEvent = serde_json::from_str(EXAMPLE).expect("parses");
        let text = serde_json::to_string(&e).expect("serializes");
        let back: CheckoutEvent = serde_json::from_str(&text).expect("parses again");
        assert_eq!(e, back);
    }

    #[test]
    fn codes_must_be_uppercase_ascii_of_the_right_length() {
        assert!(CountryCode::parse("US").is_some());
        assert!(CountryCode::parse("usa").is_none());
        assert!(CountryCode::parse("us").is_none());
        assert!(CurrencyCode::parse("JPY").is_some());
        assert!(CurrencyCode::parse("JP¥").is_none());
    }
}
