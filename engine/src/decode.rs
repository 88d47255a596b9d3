//! Decode stage: one raw message in, one verdict out.
//!
//! Every message becomes exactly one of: a [`Checkout`] to count, a
//! filtered event (another type, or a test order), or a rejection with a
//! [`Reject`] reason that the operator sees counted. Nothing here panics on
//! any input, and a bad message never affects the ones around it.
//!
//! Next stage: [`crate::ingest`] de-duplicates and aggregates what passes.

use std::borrow::Cow;

use livemap_events::contract::{CheckoutEvent, CHECKOUT_COMPLETED};
use livemap_events::money::{self, AmountError, FxTable};
use livemap_events::time::parse_rfc3339_ms;
use livemap_wire::Channel;
use memchr::memmem;
use xxhash_rust::xxh3::xxh3_64;

/// The contract's size limit for one message value.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
const MAX_EVENT_ID_CHARS: usize = 64;
/// Any one order's shipping emissions above this are not credible.
const MAX_CARBON_KG: f64 = 100_000.0;
/// The default plausibility cap on one order's total: a million US
/// dollars (`--max-order-usd`). One typo'd or hostile order above it would
/// otherwise pin the sale's total for good.
pub const DEFAULT_MAX_ORDER_USD_CENTS: u64 = 100_000_000;

/// A completed checkout, reduced to what the aggregates need. It holds no
/// personal data in clear: the buyer id is already a hash, and the buyer's
/// coordinates are only used to place the (coarsened) arc.
/// Strings borrow from the message where they can, so decoding a
/// checkout allocates only for a line-item vector and escaped text.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkout<'a> {
    pub event_id_hash: u64,
    pub event_time_ms: i64,
    pub shop_lat: f64,
    pub shop_lon: f64,
    pub shop_id: u64,
    pub shop_country: [u8; 2],
    pub buyer: Option<(f64, f64)>,
    pub buyer_hash: u64,
    pub usd_cents: u64,
    pub channel: Channel,
    /// The buyer's country (ISO 3166-1 alpha-2): coarse enough to send.
    pub buyer_country: [u8; 2],
    pub carbon_grams: u64,
    /// The buyer's city as the event names it, cleaned (see
    /// [`crate::rankings::clean_city`]); a town, never an address.
    pub buyer_city: Option<Cow<'a, str>>,
    /// Trend key (top two taxonomy levels) and quantity of each line item.
    pub items: Vec<(Cow<'a, str>, u32)>,
    /// How many of the strings kept (category levels, the city) were cut
    /// to their size limit.
    pub truncated: u32,
}

/// Why a message was rejected. The names are what operators see, in
/// `ingest.rejected` and in metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reject {
    /// No payload at all (an empty value or a Kafka tombstone).
    Empty,
    TooLarge,
    InvalidUtf8,
    BadJson,
    MissingField,
    WrongType,
    BadValue,
    UnknownCurrency,
    /// An event time further in the future than the configured tolerance:
    /// counting it would drag the event-time watermark forward.
    FutureTime,
    /// An order total above the operator's plausibility cap
    /// (`--max-order-usd`).
    ImplausibleTotal,
}

impl Reject {
    pub const ALL: [Reject; 10] = [
        Reject::Empty,
        Reject::TooLarge,
        Reject::InvalidUtf8,
        Reject::BadJson,
        Reject::MissingField,
        Reject::WrongType,
        Reject::BadValue,
        Reject::UnknownCurrency,
        Reject::FutureTime,
        Reject::ImplausibleTotal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reject::Empty => "empty",
            Reject::TooLarge => "too_large",
            Reject::InvalidUtf8 => "invalid_utf8",
            Reject::BadJson => "bad_json",
            Reject::MissingField => "missing_field",
            Reject::WrongType => "wrong_type",
            Reject::BadValue => "bad_value",
            Reject::UnknownCurrency => "unknown_currency",
            Reject::FutureTime => "future_time",
            Reject::ImplausibleTotal => "implausible_total",
        }
    }
}

/// Why a message was not counted although it was valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filtered {
    OtherType,
    TestOrder,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decoded<'a> {
    Checkout(Checkout<'a>),
    Filtered(Filtered),
    Rejected(Reject),
}

/// Decodes messages against the contract, converting money with its table.
#[derive(Debug, Clone)]
pub struct Decoder {
    fx: FxTable,
    max_order_usd_cents: u64,
    checkout_type: memmem::Finder<'static>,
    unicode_escape: memmem::Finder<'static>,
}

impl Decoder {
    pub fn new(fx: FxTable) -> Self {
        Decoder {
            fx,
            max_order_usd_cents: DEFAULT_MAX_ORDER_USD_CENTS,
            checkout_type: memmem::Finder::new(CHECKOUT_COMPLETED.as_bytes()),
            unicode_escape: memmem::Finder::new(b"\\u"),
        }
    }

    /// Rejects orders whose total is above `cents` (`implausible_total`).
    pub fn with_max_order_usd_cents(mut self, cents: u64) -> Self {
        self.max_order_usd_cents = cents;
        self
    }

    /// Decodes one message value; `None` is a Kafka tombstone.
    pub fn decode<'a>(&self, payload: Option<&'a [u8]>) -> Decoded<'a> {
        match self.classify(payload) {
            Ok(checkout) => Decoded::Checkout(checkout),
            Err(Verdict::Filtered(f)) => Decoded::Filtered(f),
            Err(Verdict::Rejected(r)) => Decoded::Rejected(r),
        }
    }

    fn classify<'a>(&self, payload: Option<&'a [u8]>) -> Result<Checkout<'a>, Verdict> {
        let bytes = payload.unwrap_or_default();
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(Reject::Empty.into());
        }
        if bytes.len() > MAX_MESSAGE_BYTES {
            return Err(Reject::TooLarge.into());
        }
        // The cheap filter: about nine in ten messages are other event types.
        // A completed checkout must carry its type string, literally or
        // \u-escaped, so a message with neither cannot be one. It still has
        // to look like a JSON object, so that garbage is not counted as
        // "filtered".
        if self.checkout_type.find(bytes).is_none() && self.unicode_escape.find(bytes).is_none() {
            return if looks_like_object(bytes) {
                Err(Filtered::OtherType.into())
            } else {
                Err(Reject::BadJson.into())
            };
        }
        let text = std::str::from_utf8(bytes).map_err(|_| Reject::InvalidUtf8)?;
        if !looks_like_object(bytes) {
            // serde would read a top-level array positionally as the event;
            // the contract says the value is one JSON object.
            return Err(match serde_json::from_str::<serde::de::IgnoredAny>(text) {
                Ok(_) => Reject::WrongType,
                Err(_) => Reject::BadJson,
            }
            .into());
        }
        let event: CheckoutEvent =
            serde_json::from_str(text).map_err(|e| classify_json_error(&e))?;
        if event.kind != CHECKOUT_COMPLETED {
            return Err(Filtered::OtherType.into());
        }
        self.validate(&event)
    }

    fn validate<'a>(&self, e: &CheckoutEvent<'a>) -> Result<Checkout<'a>, Verdict> {
        let id_chars = e.event_id.chars().count();
        if id_chars == 0 || id_chars > MAX_EVENT_ID_CHARS {
            return Err(Reject::BadValue.into());
        }
        let event_time_ms = parse_rfc3339_ms(&e.occurred_at).ok_or(Reject::BadValue)?;
        check_lat_lon(e.shop.lat, e.shop.lon)?;
        let buyer = match (e.buyer.lat, e.buyer.lon) {
            (Some(lat), Some(lon)) => {
                check_lat_lon(lat, lon)?;
                Some((lat, lon))
            }
            (None, None) => None,
            // Half a location is a broken event, not a pickup order.
            _ => return Err(Reject::BadValue.into()),
        };
        let rate = self
            .fx
            .get(e.order.currency)
            .ok_or(Reject::UnknownCurrency)?;
        let minor =
            money::parse_minor_units(&e.order.total, rate.minor_digits).map_err(
                |err| match err {
                    AmountError::Malformed | AmountError::TooPrecise | AmountError::Overflow => {
                        Reject::BadValue
                    }
                },
            )?;
        let usd_cents = rate.to_usd_cents(minor).ok_or(Reject::BadValue)?;
        let mut truncated = 0;
        let mut items = Vec::with_capacity(e.order.line_items.len());
        for item in &e.order.line_items {
            let (key, cut) = borrow_or_own(&item.product_category, crate::trends::category_key)
                .ok_or(Reject::BadValue)?;
            truncated += u32::from(cut);
            items.push((key, item.quantity));
            money::parse_minor_units(&item.price, rate.minor_digits)
                .map_err(|_| Reject::BadValue)?;
        }
        let carbon_kg = match e.shipping.as_ref().and_then(|s| s.carbon_kg) {
            Some(kg) if kg.is_finite() && (0.0..=MAX_CARBON_KG).contains(&kg) => kg,
            Some(_) => return Err(Reject::BadValue.into()),
            None => buyer.map_or(0.0, |(lat, lon)| {
                estimate_carbon_kg(e.shop.lat, e.shop.lon, lat, lon)
            }),
        };
        // Test orders are valid but never counted; checked last so a broken
        // test order is still reported as broken.
        if e.order.test == Some(true) {
            return Err(Filtered::TestOrder.into());
        }
        if usd_cents > self.max_order_usd_cents {
            return Err(Reject::ImplausibleTotal.into());
        }
        let buyer_city = match e.buyer.city.as_ref().and_then(|c| {
            borrow_or_own(c, |c| {
                crate::rankings::clean_city(c).map(|(c, cut)| (Cow::Borrowed(c), cut))
            })
        }) {
            Some((city, cut)) => {
                truncated += u32::from(cut);
                Some(city)
            }
            None => None,
        };
        Ok(Checkout {
            event_id_hash: xxh3_64(e.event_id.as_bytes()),
            event_time_ms,
            shop_lat: e.shop.lat,
            shop_lon: e.shop.lon,
            buyer,
            buyer_hash: xxh3_64(e.buyer.id.as_bytes()),
            usd_cents,
            channel: Channel::from_contract(&e.order.channel),
            shop_id: e.shop.id,
            shop_country: e.shop.country.0,
            buyer_country: e.buyer.country.0,
            buyer_city,
            carbon_grams: (carbon_kg * 1000.0).round() as u64,
            items,
            truncated,
        })
    }
}

/// Applies `f` to a string that may borrow from the message: a borrowed
/// result keeps borrowing from the message; one taken from text serde had
/// to unescape (and so owns) is copied out. `f` also says whether it cut
/// the string to its size limit.
fn borrow_or_own<'a>(
    s: &Cow<'a, str>,
    f: impl for<'b> Fn(&'b str) -> Option<(Cow<'b, str>, bool)>,
) -> Option<(Cow<'a, str>, bool)> {
    match s {
        Cow::Borrowed(b) => f(b),
        Cow::Owned(o) => f(o).map(|(c, cut)| (Cow::Owned(c.into_owned()), cut)),
    }
}

enum Verdict {
    Filtered(Filtered),
    Rejected(Reject),
}

impl From<Reject> for Verdict {
    fn from(r: Reject) -> Self {
        Verdict::Rejected(r)
    }
}

impl From<Filtered> for Verdict {
    fn from(f: Filtered) -> Self {
        Verdict::Filtered(f)
    }
}

fn check_lat_lon(lat: f64, lon: f64) -> Result<(), Reject> {
    if (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon) {
        Ok(())
    } else {
        Err(Reject::BadValue)
    }
}

fn looks_like_object(bytes: &[u8]) -> bool {
    let trimmed = bytes.trim_ascii();
    trimmed.first() == Some(&b'{') && trimmed.last() == Some(&b'}')
}

/// Maps serde's error onto the contract's reasons. serde_json reports
/// structural problems as syntax/EOF errors and schema problems as data
/// errors whose message says which kind.
fn classify_json_error(e: &serde_json::Error) -> Reject {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => Reject::BadJson,
        Category::Data => {
            let msg = e.to_string();
            if msg.starts_with("missing field") {
                Reject::MissingField
            } else if msg.starts_with("invalid type") {
                Reject::WrongType
            } else {
                Reject::BadValue
            }
        }
    }
}

/// The estimate for orders that do not say their shipping emissions: a
/// fixed handling share plus a per-km share of the great-circle distance,
/// in line with typical parcel-delivery averages (about 0.15 kg per parcel
/// plus 0.25 kg per 1,000 km).
pub fn estimate_carbon_kg(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    0.15 + livemap_events::geo::great_circle_km(lat1, lon1, lat2, lon2) * 0.000_25
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"event_id":"0b9f6c1e-6f4e-4b8e-9a53-4c2a51f0d7a2","type":"checkout.completed",
      "occurred_at":"2026-11-27T14:03:11.123Z",
      "shop":{"id":1048576,"country":"CA","lat":43.6532,"lon":-79.3832},
      "buyer":{"id":"b3f1c2d4e5","country":"US","region":"TX","city":"Austin","lat":30.2672,"lon":-97.7431},
      "order":{"id":"5551234567","total":"129.99","currency":"USD","channel":"online_store","test":false,
        "line_items":[{"product_category":"Apparel & Accessories > Shoes","quantity":2,"price":"59.99"}]},
      "shipping":{"method":"standard","carbon_kg":0.42}}"#;

    fn decoder() -> Decoder {
        Decoder::new(FxTable::default())
    }

    fn decode_str(s: &str) -> Decoded<'_> {
        decoder().decode(Some(s.as_bytes()))
    }

    fn with(path: &[&str], value: serde_json::Value) -> String {
        let mut v: serde_json::Value = serde_json::from_str(GOOD).expect("fixture parses");
        let mut cur = &mut v;
        for key in &path[..path.len() - 1] {
            cur = &mut cur[*key];
        }
        let last = path[path.len() - 1];
        if value.is_null() {
            cur.as_object_mut().map(|o| o.remove(last));
        } else {
            cur[last] = value;
        }
        v.to_string()
    }

    fn rejected(s: &str) -> Reject {
        match decode_str(s) {
            Decoded::Rejected(r) => r,
            other => panic!("expected a rejection, got {other:?} for {s}"),
        }
    }

    #[test]
    fn accepts_the_contract_example() {
        let Decoded::Checkout(c) = decode_str(GOOD) else {
            panic!("example must be accepted")
        };
        assert_eq!(c.usd_cents, 12_999);
        assert_eq!(c.event_time_ms, 1_795_788_191_123);
        assert_eq!(c.channel, Channel::OnlineStore);
        assert_eq!(c.carbon_grams, 420);
        assert_eq!(c.buyer, Some((30.2672, -97.7431)));
        assert_eq!((c.shop_id, c.shop_country), (1_048_576, *b"CA"));
        assert_eq!(c.buyer_city.as_deref(), Some("Austin"));
        assert!(
            matches!(c.items[0].0, Cow::Borrowed("Apparel & Accessories > Shoes")),
            "well-formed text is borrowed, not copied"
        );
        let escaped = GOOD.replace("Austin", "Au\\u0000stin");
        let Decoded::Checkout(c) = decode_str(&escaped) else {
            panic!("escapes are fine")
        };
        assert_eq!(c.buyer_city, None, "a control character is not a city");
    }

    #[test]
    fn every_rejection_reason() {
        use serde_json::json;
        assert_eq!(decoder().decode(None), Decoded::Rejected(Reject::Empty));
        assert_eq!(rejected(""), Reject::Empty);
        assert_eq!(rejected("  \n"), Reject::Empty);
        let big = with(&["padding"], json!("x".repeat(MAX_MESSAGE_BYTES)));
        assert_eq!(rejected(&big), Reject::TooLarge);
        let mut bad_utf8 = GOOD.as_bytes().to_vec();
        let at = GOOD.find("Austin").expect("fixture has Austin");
        bad_utf8[at] = 0xff;
        assert_eq!(
            decoder().decode(Some(&bad_utf8)),
            Decoded::Rejected(Reject::InvalidUtf8)
        );
        assert_eq!(rejected(&GOOD[..GOOD.len() / 2]), Reject::BadJson);
        assert_eq!(rejected("not json at all"), Reject::BadJson);
        assert_eq!(rejected(r#"["checkout.completed"]"#), Reject::WrongType);
        assert_eq!(
            rejected(&with(&["occurred_at"], json!(null))),
            Reject::MissingField
        );
        assert_eq!(
            rejected(&with(&["buyer", "id"], json!(null))),
            Reject::MissingField
        );
        assert_eq!(
            rejected(&with(&["shop", "id"], json!("one"))),
            Reject::WrongType
        );
        assert_eq!(
            rejected(&with(&["order", "test"], json!("no"))),
            Reject::WrongType
        );
        assert_eq!(
            rejected(&with(&["shop", "id"], json!(-1))),
            Reject::BadValue
        );
        assert_eq!(
            rejected(&with(&["shop", "lat"], json!(91.0))),
            Reject::BadValue
        );
        assert_eq!(
            rejected(&with(&["buyer", "lon"], json!(-180.5))),
            Reject::BadValue
        );
        assert_eq!(
            rejected(&with(&["buyer", "lon"], json!(null))),
            Reject::BadValue
        );
        assert_eq!(
            rejected(&with(&["shop", "country"], json!("Canada"))),
            Reject::BadValue
        );
        assert_eq!(rejected(&with(&["event_id"], json!(""))), Reject::BadValue);
        assert_eq!(
            rejected(&with(&["event_id"], json!("e".repeat(65)))),
            Reject::BadValue
        );
        assert_eq!(
            rejected(&with(&["occurred_at"], json!("last tuesday"))),
            Reject::BadValue
        );
        assert_eq!(
            rejected(&with(&["order", "total"], json!("12.999"))),
            Reject::BadValue
        );
        assert_eq!(
            rejected(&with(&["order", "total"], json!("-5.00"))),
            Reject::BadValue
        );
        assert_eq!(
            rejected(&with(&["order", "total"], json!(129.99))),
            Reject::WrongType
        );
        assert_eq!(
            rejected(&with(&["shipping", "carbon_kg"], json!(-1.0))),
            Reject::BadValue
        );
        assert_eq!(
            rejected(&with(&["order", "currency"], json!("XTS"))),
            Reject::UnknownCurrency
        );
        assert_eq!(
            rejected(&with(&["order", "currency"], json!("usd"))),
            Reject::BadValue
        );
        // The largest u64 of cents would pin the sale's total for good.
        assert_eq!(
            rejected(&with(&["order", "total"], json!("184467440737095516.15"))),
            Reject::ImplausibleTotal
        );
        assert_eq!(
            rejected(&with(&["order", "total"], json!("1000000.01"))),
            Reject::ImplausibleTotal
        );
        let lower = Decoder::new(FxTable::default()).with_max_order_usd_cents(10_000);
        let total = with(&["order", "total"], json!("100.01"));
        assert_eq!(
            lower.decode(Some(total.as_bytes())),
            Decoded::Rejected(Reject::ImplausibleTotal)
        );
    }

    #[test]
    fn long_strings_are_cut_and_counted() {
        use serde_json::json;
        let at_cap = with(&["order", "total"], json!("1000000.00"));
        assert!(matches!(decode_str(&at_cap), Decoded::Checkout(_)));
        let long = "x".repeat(60_000);
        let event = with(
            &["order", "line_items"],
            json!([{"product_category": format!("{long} > Shoes"), "quantity": 1, "price": "1.00"}]),
        );
        let event: serde_json::Value = serde_json::from_str(&event).expect("json");
        let mut event = event;
        event["buyer"]["city"] = json!("Ö".repeat(500));
        let text = event.to_string();
        let Decoded::Checkout(c) = decode_str(&text) else {
            panic!("a long category or city is cut, not rejected");
        };
        assert_eq!(c.truncated, 2);
        assert!(c.items[0].0.len() <= 2 * crate::trends::MAX_LEVEL_BYTES + 3);
        assert!(c
            .buyer_city
            .as_deref()
            .is_some_and(|x| x.len() <= crate::rankings::MAX_CITY_BYTES));
        let Decoded::Checkout(c) = decode_str(GOOD) else {
            panic!("the contract's example decodes");
        };
        assert_eq!(c.truncated, 0);
    }

    #[test]
    fn filters_other_types_and_test_orders() {
        assert_eq!(
            decode_str(r#"{"event_id":"x","type":"page.viewed","shop":{"id":1}}"#),
            Decoded::Filtered(Filtered::OtherType)
        );
        assert_eq!(
            decode_str(&with(&["type"], serde_json::json!("checkout.completed.v2"))),
            Decoded::Filtered(Filtered::OtherType)
        );
        assert_eq!(
            decode_str(&with(&["order", "test"], serde_json::json!(true))),
            Decoded::Filtered(Filtered::TestOrder)
        );
    }

    #[test]
    fn escaped_type_is_not_filtered_away() {
        let escaped = GOOD.replace("\"checkout.completed\"", r#""checkout\u002ecompleted""#);
        assert!(matches!(decode_str(&escaped), Decoded::Checkout(_)));
    }

    #[test]
    fn unknown_fields_channels_and_missing_optionals_are_fine() {
        use serde_json::json;
        let extra = with(&["order", "gift_wrap"], json!({"color": "red"}));
        assert!(matches!(decode_str(&extra), Decoded::Checkout(_)));
        let pigeon = with(&["order", "channel"], json!("carrier_pigeon"));
        let Decoded::Checkout(c) = decode_str(&pigeon) else {
            panic!("unknown channel must be kept")
        };
        assert_eq!(c.channel, Channel::Other);
        let no_shipping = with(&["shipping"], json!(null));
        let Decoded::Checkout(c) = decode_str(&no_shipping) else {
            panic!("shipping is optional")
        };
        // Toronto to Austin is about 2,170 km: 0.15 + 0.54 kg.
        assert!((680..=700).contains(&c.carbon_grams), "{}", c.carbon_grams);
        let no_location = with(&["buyer", "lat"], json!(null));
        let no_location: serde_json::Value = serde_json::from_str(&no_location).expect("json");
        let mut v = no_location;
        v["buyer"].as_object_mut().map(|o| o.remove("lon"));
        let pickup = v.to_string();
        let Decoded::Checkout(c) = decode_str(&pickup) else {
            panic!("pickup orders count")
        };
        assert_eq!(c.buyer, None);
        let yen = with(&["order", "currency"], json!("JPY"));
        let yen = yen
            .replace("\"129.99\"", "\"1500\"")
            .replace("\"59.99\"", "\"750\"");
        let Decoded::Checkout(c) = decode_str(&yen) else {
            panic!("yen order")
        };
        assert_eq!(c.usd_cents, 1_005);
    }

    #[test]
    fn demo_generator_verdicts_match_its_intent() {
        use livemap_events::demo::{DemoMix, Generator, Kind, Malformed};
        let mut g = Generator::new(
            11,
            DemoMix {
                malformed: 0.02,
                ..DemoMix::default()
            },
        );
        let d = decoder();
        let mut buf = Vec::new();
        for i in 0..50_000 {
            let kind = g.next_message(1_795_788_191_123 + i, &mut buf);
            let got = d.decode(Some(&buf));
            let ok = match kind {
                Kind::Checkout | Kind::Duplicate => matches!(got, Decoded::Checkout(_)),
                Kind::TestOrder => got == Decoded::Filtered(Filtered::TestOrder),
                Kind::OtherType => got == Decoded::Filtered(Filtered::OtherType),
                Kind::Malformed(m) => {
                    got == Decoded::Rejected(match m {
                        Malformed::Truncated => Reject::BadJson,
                        Malformed::MissingField => Reject::MissingField,
                        Malformed::BadValue => Reject::BadValue,
                        Malformed::WrongType => Reject::WrongType,
                        Malformed::UnknownCurrency => Reject::UnknownCurrency,
                        Malformed::InvalidUtf8 => Reject::InvalidUtf8,
                        Malformed::Empty => Reject::Empty,
                        Malformed::TooLarge => Reject::TooLarge,
                    })
                }
            };
            assert!(
                ok,
                "{kind:?} decoded as {got:?}: {}",
                String::from_utf8_lossy(&buf)
            );
        }
    }
}

#[cfg(test)]
mod fuzz {
    //! Property tests standing in for a fuzzer: whatever the bytes, the
    //! decoder answers with a verdict and never panics.

    use super::*;
    use proptest::prelude::*;

    fn decoder() -> &'static Decoder {
        static DECODER: std::sync::OnceLock<Decoder> = std::sync::OnceLock::new();
        DECODER.get_or_init(|| Decoder::new(FxTable::default()))
    }

    fn valid_event() -> Vec<u8> {
        static EVENT: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        EVENT
            .get_or_init(|| {
                livemap_events::demo::Generator::new(3, Default::default())
                    .checkout(1_795_788_191_123)
            })
            .clone()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        #[test]
        fn arbitrary_bytes_get_a_verdict(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = decoder().decode(Some(&bytes));
        }

        #[test]
        fn mutated_events_get_a_verdict(
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut bytes = valid_event();
            for (at, byte) in edits {
                let i = at.index(bytes.len());
                bytes[i] = byte;
            }
            let end = cut.index(bytes.len() + 1).max(bytes.len() / 2);
            let verdict = decoder().decode(Some(&bytes[..end.min(bytes.len())]));
            // A checkout that survives mutation is still a valid one.
            if let Decoded::Checkout(c) = verdict {
                prop_assert!((-90.0..=90.0).contains(&c.shop_lat));
            }
        }

        #[test]
        fn json_shaped_noise_gets_a_verdict(
            total in "[0-9.\\-e]{0,12}",
            lat in any::<f64>(),
            currency in "[A-Za-z]{0,4}",
            ts in "[0-9TZ:.+\\-]{0,30}",
        ) {
            let mut v: serde_json::Value = serde_json::from_slice(&valid_event()).expect("valid");
            v["order"]["total"] = serde_json::json!(total);
            v["buyer"]["lat"] = serde_json::json!(lat);
            v["order"]["currency"] = serde_json::json!(currency);
            v["occurred_at"] = serde_json::json!(ts);
            let _ = decoder().decode(Some(v.to_string().as_bytes()));
        }
    }
}
