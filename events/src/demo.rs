//! A generator of realistic Black Friday checkout traffic, in the contract's
//! exact JSON format.
//!
//! It feeds the server's embedded demo source and the load tester's
//! producer, so both exercise the same decode path real Kafka messages
//! take: mostly other event types, completed checkouts from shops in real
//! cities to buyers, both weighted by their country's share of a Black
//! Friday on a commerce platform ([`COMMERCE_SHARES`], docs/DEMO.md) and
//! by city size within the country, several currencies and
//! channels, plus the contract's hazards: duplicates delivered seconds
//! later, out-of-order event times, test orders and malformed messages.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::cities::{self, City};
use crate::contract::{
    Buyer, CheckoutEvent, CountryCode, CurrencyCode, LineItem, Order, Shipping, Shop,
    CHECKOUT_COMPLETED,
};
use crate::geo::great_circle_km;
use crate::money::{self, FxTable};
use crate::time::format_rfc3339_ms;

/// The mix of what the generator emits, as shares of all messages.
#[derive(Debug, Clone)]
pub struct DemoMix {
    /// Completed checkouts (the contract says about 1 in 10 during a sale).
    pub checkout: f64,
    /// Messages that must be rejected (bad JSON, bad values, ...).
    pub malformed: f64,
    /// Of completed checkouts: how many are delivered a second time later.
    pub duplicate: f64,
    /// Of completed checkouts: how many are test orders.
    pub test_order: f64,
}

impl Default for DemoMix {
    fn default() -> Self {
        DemoMix {
            checkout: 0.10,
            malformed: 0.001,
            duplicate: 0.01,
            test_order: 0.005,
        }
    }
}

/// Event types that share the topic with completed checkouts.
const OTHER_TYPES: &[&str] = &[
    "page.viewed",
    "product.viewed",
    "cart.updated",
    "checkout.started",
    "checkout.abandoned",
    "payment.authorized",
    "order.fulfilled",
    "order.refunded",
];

/// Product taxonomy paths (Google-product-taxonomy style), with how often
/// each sells relative to the others.
const CATEGORIES: &[(&str, u32)] = &[
    ("Apparel & Accessories > Clothing > Outerwear", 14),
    ("Apparel & Accessories > Shoes", 12),
    ("Apparel & Accessories > Jewelry", 6),
    ("Apparel & Accessories > Handbags, Wallets & Cases", 5),
    ("Health & Beauty > Personal Care > Cosmetics", 11),
    ("Health & Beauty > Health Care > Fitness & Nutrition", 5),
    ("Home & Garden > Kitchen & Dining > Cookware", 7),
    ("Home & Garden > Decor > Candles", 6),
    ("Home & Garden > Lawn & Garden", 2),
    ("Electronics > Audio > Headphones", 6),
    ("Electronics > Communications > Phone Accessories", 7),
    ("Electronics > Video Game Consoles", 2),
    ("Toys & Games > Toys > Building Toys", 5),
    ("Toys & Games > Puzzles", 3),
    ("Sporting Goods > Exercise & Fitness > Yoga", 4),
    ("Sporting Goods > Outdoor Recreation > Camping", 3),
    ("Food, Beverages & Tobacco > Beverages > Coffee", 6),
    ("Food, Beverages & Tobacco > Food Items > Snack Foods", 4),
    ("Arts & Entertainment > Hobbies & Creative Arts > Crafts", 4),
    ("Media > Books", 4),
    ("Animals & Pet Supplies > Pet Supplies > Dog Supplies", 5),
    ("Baby & Toddler > Nursing & Feeding", 2),
    ("Furniture > Chairs", 2),
    ("Luggage & Bags > Backpacks", 3),
];

const CHANNELS: &[(&str, u32)] = &[
    ("online_store", 60),
    ("mobile_app", 20),
    ("pos", 10),
    ("social", 7),
    ("marketplace", 3),
];

/// Each country's share of the sales of a Black Friday weekend on a
/// commerce platform like Shopify, in percent, by buyer country and, the
/// same, by shop country. docs/DEMO.md gives the source: the ranks follow
/// the platform's published top-selling countries; the shares are our
/// estimates (no platform publishes them). Countries not listed share
/// [`REST_OF_WORLD`] by population.
pub const COMMERCE_SHARES: &[(&str, f64)] = &[
    ("US", 48.0),
    ("GB", 9.0),
    ("CA", 7.0),
    ("AU", 5.0),
    ("DE", 5.0),
    ("FR", 3.0),
    ("NL", 1.5),
    ("IT", 1.5),
    ("ES", 1.5),
    ("JP", 1.5),
    ("NZ", 1.0),
    ("IE", 1.0),
    ("SE", 1.0),
    ("BR", 1.0),
    ("MX", 1.0),
    ("CH", 0.7),
    ("BE", 0.7),
    ("DK", 0.6),
    ("NO", 0.6),
    ("AT", 0.6),
    ("SG", 0.5),
    ("IN", 0.5),
    ("ZA", 0.5),
    ("PL", 0.5),
    ("AE", 0.5),
    ("HK", 0.4),
    ("KR", 0.4),
    ("FI", 0.3),
    ("PT", 0.3),
    ("IL", 0.3),
];

/// The share of every other country together, in percent.
pub const REST_OF_WORLD: f64 = 4.6;

/// Orders whose buyer is in the shop's own country: the platform reports
/// 15 to 25 % of its Black Friday orders crossing a border.
const DOMESTIC: f64 = 0.8;

/// Per city, its country's share ([`COMMERCE_SHARES`]) times the city's
/// part of that country's `size` (over the cities the table has); the
/// rest of the world's share goes to the other countries' cities alike.
fn commerce_weights(cities: &[City], size: impl Fn(&City) -> f64) -> Vec<f64> {
    let share = |country: &str| {
        COMMERCE_SHARES
            .iter()
            .find(|(c, _)| *c == country)
            .map(|&(_, s)| s)
    };
    let mut totals: HashMap<Option<&str>, f64> = HashMap::new();
    for c in cities {
        let key = share(c.country).map(|_| c.country);
        *totals.entry(key).or_default() += size(c);
    }
    cities
        .iter()
        .map(|c| {
            let (key, s) = match share(c.country) {
                Some(s) => (Some(c.country), s),
                None => (None, REST_OF_WORLD),
            };
            let total = totals.get(&key).copied().unwrap_or(0.0);
            if total > 0.0 {
                s * size(c) / total
            } else {
                0.0
            }
        })
        .collect()
}

/// How many distinct shoppers the demo draws from. Large enough that the
/// unique-shopper counter keeps rising through a long demo.
const BUYER_POOL: u64 = 5_000_000;
const SHOP_COUNT: usize = 20_000;
/// Orders that come from a shop making its first sale ever: the demo's
/// shops keep growing in number, so a long demo keeps showing first
/// sales (about one a second at 3,000 messages a second).
const NEW_SHOP_SHARE: f64 = 0.0005;
/// Ids of new shops count up from here, clear of the pool's.
const NEW_SHOP_IDS: u64 = 900_000_000;

struct DemoShop {
    id: u64,
    country: &'static str,
    lat: f64,
    lon: f64,
    currency: &'static str,
}

/// Cumulative weights for picking an index in proportion to its weight.
struct Weighted {
    cumulative: Vec<f64>,
}

impl Weighted {
    fn new(weights: impl Iterator<Item = f64>) -> Self {
        let mut sum = 0.0;
        let cumulative = weights
            .map(|w| {
                sum += w.max(0.0);
                sum
            })
            .collect();
        Weighted { cumulative }
    }

    fn pick(&self, rng: &mut SmallRng) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(0.0);
        let x = rng.random::<f64>() * total;
        self.cumulative
            .partition_point(|&c| c <= x)
            .min(self.cumulative.len().saturating_sub(1))
    }
}

/// Generates contract messages. Deterministic for a given seed and
/// sequence of `now_ms` values, so tests can assert on its output.
pub struct Generator {
    rng: SmallRng,
    mix: DemoMix,
    cities: &'static [City],
    buyer_cities: Weighted,
    by_country: HashMap<&'static str, (Vec<usize>, Weighted)>,
    shops: Vec<DemoShop>,
    /// Category weights for one event-time minute (see
    /// [`category_weights`]), rebuilt when the minute changes.
    categories: (i64, Weighted),
    channels: Weighted,
    fx: FxTable,
    /// Checkouts to deliver again (at-least-once delivery), soonest first.
    redeliveries: BinaryHeap<Reverse<(i64, Vec<u8>)>>,
    next_order_id: u64,
    malformed_kind: u32,
    /// New shops made so far ([`NEW_SHOP_SHARE`]).
    new_shops: u64,
}

/// What one generated message is meant to be, so tests and the load tester
/// can check the server's counts against the generator's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Checkout,
    TestOrder,
    Duplicate,
    OtherType,
    Malformed(Malformed),
}

/// The deliberately bad messages, each with the rejection it should get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Malformed {
    Truncated,
    MissingField,
    BadValue,
    WrongType,
    UnknownCurrency,
    InvalidUtf8,
    Empty,
    TooLarge,
}

impl Malformed {
    const ROTATION: [Malformed; 8] = [
        Malformed::Truncated,
        Malformed::MissingField,
        Malformed::BadValue,
        Malformed::UnknownCurrency,
        Malformed::WrongType,
        Malformed::InvalidUtf8,
        Malformed::Empty,
        Malformed::TooLarge,
    ];
}

impl Generator {
    pub fn new(seed: u64, mix: DemoMix) -> Self {
        let mut rng = SmallRng::seed_from_u64(seed);
        let cities = cities::all();
        // Both follow their country's share of the sale, then city size;
        // shops are spread a little flatter within a country, since
        // merchants are everywhere but shoppers concentrate in big cities.
        let buyer_cities =
            Weighted::new(commerce_weights(cities, |c| c.population as f64).into_iter());
        let shop_cities = Weighted::new(
            commerce_weights(cities, |c| (c.population as f64).powf(0.7)).into_iter(),
        );
        let mut grouped: HashMap<&'static str, Vec<usize>> = HashMap::new();
        for (i, c) in cities.iter().enumerate() {
            grouped.entry(c.country).or_default().push(i);
        }
        let by_country = grouped
            .into_iter()
            .map(|(country, idx)| {
                let w = Weighted::new(idx.iter().map(|&i| cities[i].population as f64));
                (country, (idx, w))
            })
            .collect();
        let shops = (0..SHOP_COUNT)
            .map(|i| {
                let city = &cities[shop_cities.pick(&mut rng)];
                let (lat, lon) = jitter(&mut rng, city.lat, city.lon, 0.15);
                DemoShop {
                    id: 1_000_000 + i as u64 * 7919,
                    country: city.country,
                    lat,
                    lon,
                    currency: currency_for(city.country),
                }
            })
            .collect();
        Generator {
            rng,
            mix,
            cities,
            buyer_cities,
            by_country,
            shops,
            categories: (i64::MIN, Weighted::new(std::iter::empty())),
            channels: Weighted::new(CHANNELS.iter().map(|&(_, w)| f64::from(w))),
            fx: FxTable::default(),
            redeliveries: BinaryHeap::new(),
            next_order_id: 5_550_000_000,
            malformed_kind: 0,
            new_shops: 0,
        }
    }

    /// Writes the next message into `out` (cleared first) and says what it is.
    pub fn next_message(&mut self, now_ms: i64, out: &mut Vec<u8>) -> Kind {
        out.clear();
        if self
            .redeliveries
            .peek()
            .is_some_and(|Reverse((due, _))| *due <= now_ms)
        {
            if let Some(Reverse((_, msg))) = self.redeliveries.pop() {
                out.extend_from_slice(&msg);
                return Kind::Duplicate;
            }
        }
        let r: f64 = self.rng.random();
        if r < self.mix.checkout {
            let test = self.rng.random::<f64>() < self.mix.test_order;
            self.write_checkout(now_ms, test, out);
            if !test
                && self.rng.random::<f64>() < self.mix.duplicate
                && self.redeliveries.len() < 100_000
            {
                let delay = self.rng.random_range(1_000..30_000);
                self.redeliveries
                    .push(Reverse((now_ms + delay, out.clone())));
            }
            if test {
                Kind::TestOrder
            } else {
                Kind::Checkout
            }
        } else if r < self.mix.checkout + self.mix.malformed {
            Kind::Malformed(self.write_malformed(now_ms, out))
        } else {
            self.write_other(now_ms, out);
            Kind::OtherType
        }
    }

    /// Writes one valid, non-test completed checkout.
    pub fn checkout(&mut self, now_ms: i64) -> Vec<u8> {
        let mut out = Vec::with_capacity(700);
        self.write_checkout_into(now_ms, &mut out);
        out
    }

    /// Writes one valid, non-test completed checkout into `out` (cleared
    /// first).
    pub fn write_checkout_into(&mut self, now_ms: i64, out: &mut Vec<u8>) {
        out.clear();
        self.write_checkout(now_ms, false, out);
    }

    /// Writes one valid, non-test completed checkout that happened exactly
    /// at `at_ms` (no arrival lag) into `out` (cleared first): for
    /// generating a sale's past, where arrival order does not matter.
    pub fn write_checkout_at(&mut self, at_ms: i64, out: &mut Vec<u8>) {
        out.clear();
        let mut event = self.build_checkout(at_ms, false);
        event.occurred_at = Cow::Owned(format_rfc3339_ms(at_ms));
        // Serializing our own plain structs cannot fail.
        let _ = serde_json::to_writer(&mut *out, &event);
    }

    fn event_time(&mut self, now_ms: i64) -> i64 {
        // Most events arrive within a couple of seconds; some minutes late.
        let r: f64 = self.rng.random();
        let lag = if r < 0.90 {
            self.rng.random_range(0..2_000)
        } else if r < 0.99 {
            self.rng.random_range(2_000..60_000)
        } else {
            self.rng.random_range(60_000..240_000)
        };
        now_ms - lag
    }

    fn event_id(&mut self) -> String {
        let (a, b): (u64, u64) = (self.rng.random(), self.rng.random());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | (b >> 48) & 0x3fff,
            b & 0xffff_ffff_ffff
        )
    }

    fn build_checkout(&mut self, now_ms: i64, test: bool) -> CheckoutEvent<'static> {
        let minute = now_ms.div_euclid(60_000);
        if self.categories.0 != minute {
            self.categories = (minute, Weighted::new(category_weights(now_ms).into_iter()));
        }
        // Popular shops sell more: squaring a uniform draw skews toward low
        // indices, a cheap stand-in for a Zipf distribution.
        let u: f64 = self.rng.random();
        let shop = &self.shops[((u * u) * self.shops.len() as f64) as usize % self.shops.len()];
        let (mut shop_id, shop_country, shop_lat, shop_lon, currency) =
            (shop.id, shop.country, shop.lat, shop.lon, shop.currency);
        // The top of the draw is a new shop where the pool's last shops
        // are (no extra random draw, so the rest of the stream is as it
        // was): it sells once, its first sale.
        if u >= 1.0 - NEW_SHOP_SHARE {
            shop_id = NEW_SHOP_IDS + self.new_shops;
            self.new_shops += 1;
        }

        let domestic = self.rng.random::<f64>() < DOMESTIC;
        let city_idx = match self.by_country.get(shop_country) {
            Some((idx, w)) if domestic => idx[w.pick(&mut self.rng)],
            _ => self.buyer_cities.pick(&mut self.rng),
        };
        let city = self.cities[city_idx];
        let has_location = self.rng.random::<f64>() < 0.95;
        let (blat, blon) = jitter(&mut self.rng, city.lat, city.lon, 0.2);

        let digits = self
            .fx
            .get(CurrencyCode::parse(currency).unwrap_or(CurrencyCode(*b"USD")))
            .map_or(2, |r| r.minor_digits);
        let rate = usd_rate(currency);
        let item_count = 1 + (self.rng.random::<f64>().powi(2) * 4.0) as usize;
        let mut total_minor = 0u64;
        let line_items = (0..item_count)
            .map(|_| {
                let (category, _) = CATEGORIES[self.categories.1.pick(&mut self.rng)];
                let quantity = if self.rng.random::<f64>() < 0.8 {
                    1
                } else {
                    self.rng.random_range(2..5)
                };
                // Log-normal prices around 35 USD, converted to local units.
                let usd = (3.55 + 0.8 * normal(&mut self.rng))
                    .exp()
                    .clamp(1.0, 5_000.0);
                let minor = ((usd / rate) * 10f64.powi(digits as i32)).round().max(1.0) as u64;
                total_minor += minor * u64::from(quantity);
                LineItem {
                    product_category: Cow::Borrowed(category),
                    quantity,
                    price: Cow::Owned(money::format_minor_units(minor, digits)),
                }
            })
            .collect();
        let carbon = (self.rng.random::<f64>() < 0.8).then(|| {
            let km = great_circle_km(shop_lat, shop_lon, blat, blon);
            ((0.15 + km * 0.00025) * (0.7 + 0.6 * self.rng.random::<f64>()) * 100.0).round() / 100.0
        });
        let (channel, _) = CHANNELS[self.channels.pick(&mut self.rng)];
        self.next_order_id += 1;
        let occurred_at = self.event_time(now_ms);
        CheckoutEvent {
            event_id: Cow::Owned(self.event_id()),
            kind: Cow::Borrowed(CHECKOUT_COMPLETED),
            occurred_at: Cow::Owned(format_rfc3339_ms(occurred_at)),
            shop: Shop {
                id: shop_id,
                country: CountryCode::parse(shop_country).unwrap_or(CountryCode(*b"US")),
                lat: round4(shop_lat),
                lon: round4(shop_lon),
            },
            buyer: Buyer {
                id: Cow::Owned(format!("b{:010x}", self.rng.random_range(0..BUYER_POOL))),
                country: CountryCode::parse(city.country).unwrap_or(CountryCode(*b"US")),
                region: None,
                city: Some(Cow::Borrowed(city.name)),
                lat: has_location.then_some(round4(blat)),
                lon: has_location.then_some(round4(blon)),
            },
            order: Order {
                id: Cow::Owned(self.next_order_id.to_string()),
                total: Cow::Owned(money::format_minor_units(total_minor, digits)),
                currency: CurrencyCode::parse(currency).unwrap_or(CurrencyCode(*b"USD")),
                channel: Cow::Borrowed(channel),
                test: test.then_some(true),
                line_items,
            },
            shipping: Some(Shipping {
                method: Some(if has_location { "standard" } else { "pickup" }.to_owned()),
                carbon_kg: carbon.filter(|_| has_location),
            }),
        }
    }

    fn write_checkout(&mut self, now_ms: i64, test: bool, out: &mut Vec<u8>) {
        let event = self.build_checkout(now_ms, test);
        // Serializing our own plain structs cannot fail.
        let _ = serde_json::to_writer(&mut *out, &event);
    }

    fn write_other(&mut self, now_ms: i64, out: &mut Vec<u8>) {
        let kind = OTHER_TYPES[self.rng.random_range(0..OTHER_TYPES.len())];
        let id = self.event_id();
        let shop = self.rng.random_range(0..self.shops.len());
        let shop_id = self.shops[shop].id;
        let at = format_rfc3339_ms(self.event_time(now_ms));
        let session: u64 = self.rng.random();
        use std::io::Write;
        let _ = write!(
            out,
            r#"{{"event_id":"{id}","type":"{kind}","occurred_at":"{at}","shop":{{"id":{shop_id}}},"session":"{session:016x}"}}"#
        );
    }

    fn write_malformed(&mut self, now_ms: i64, out: &mut Vec<u8>) -> Malformed {
        let kind = Malformed::ROTATION[self.malformed_kind as usize % Malformed::ROTATION.len()];
        self.malformed_kind += 1;
        let event = self.build_checkout(now_ms, false);
        let mut value = serde_json::to_value(&event).unwrap_or_default();
        match kind {
            Malformed::Truncated => {
                let text = value.to_string();
                // Cut in the middle, but not just after a closing brace: a
                // cut object that still ends like one, without its type
                // string, is by the contract another event type (filtered),
                // and this hazard is meant as a message that is not JSON.
                let mut cut = text.len() / 2;
                while cut > 1 && text.as_bytes()[cut - 1] == b'}' {
                    cut -= 1;
                }
                out.extend_from_slice(&text.as_bytes()[..cut]);
                return kind;
            }
            Malformed::MissingField => {
                if let Some(o) = value.as_object_mut() {
                    o.remove("occurred_at");
                }
            }
            Malformed::BadValue => value["shop"]["lat"] = serde_json::json!(123.4),
            Malformed::WrongType => value["shop"]["id"] = serde_json::json!("one"),
            Malformed::UnknownCurrency => value["order"]["currency"] = serde_json::json!("XTS"),
            Malformed::InvalidUtf8 => {
                let text = value.to_string();
                let cut = text.find("\"type\"").unwrap_or(0);
                out.extend_from_slice(&text.as_bytes()[..cut]);
                out.extend_from_slice(b"\"note\":\"\xff\xfe\",");
                out.extend_from_slice(&text.as_bytes()[cut..]);
                return kind;
            }
            Malformed::Empty => return kind,
            Malformed::TooLarge => {
                value["padding"] = serde_json::Value::String("x".repeat(70 * 1024));
            }
        }
        let _ = serde_json::to_writer(&mut *out, &value);
        kind
    }
}

/// How much each category sells at an event time, relative to the others:
/// its base weight, a slow swell of a few hours with its own period and
/// phase, and a rotating "deal of the hour" that sells three times as much,
/// so the demo's product trends move the way a real sale's do.
pub fn category_weights(t_ms: i64) -> Vec<f64> {
    use std::f64::consts::TAU;
    let hours = t_ms as f64 / 3_600_000.0;
    let deal = (t_ms.div_euclid(3_600_000) * 7).rem_euclid(CATEGORIES.len() as i64) as usize;
    CATEGORIES
        .iter()
        .enumerate()
        .map(|(i, &(_, base))| {
            let period = 2.0 + (i % 5) as f64 * 0.75;
            let swell = 1.0 + 0.5 * (TAU * hours / period + i as f64).sin();
            let deal = if i == deal { 3.0 } else { 1.0 };
            f64::from(base) * swell * deal
        })
        .collect()
}

/// The demo's sale rate over time, as a multiple of the configured average:
/// a daily curve that peaks in the US morning and European evening, a
/// ten-minute wave, and an hourly "doorbuster" burst in the first minute of
/// each hour, so a few minutes of demo already look like a live sale.
pub fn rate_multiplier(t_ms: i64) -> f64 {
    use std::f64::consts::TAU;
    let t = t_ms as f64 / 1000.0;
    let day = t.rem_euclid(86_400.0) / 86_400.0;
    let daily = 1.0 + 0.3 * (TAU * (day - 0.46)).cos();
    let wave = 1.0 + 0.2 * (TAU * t / 600.0).sin();
    let burst = if t.rem_euclid(3_600.0) < 60.0 {
        1.6
    } else {
        1.0
    };
    daily * wave * burst / 1.02
}

fn currency_for(country: &str) -> &'static str {
    match country {
        "US" | "EC" | "SV" | "PR" => "USD",
        "CA" => "CAD",
        "GB" => "GBP",
        "DE" | "FR" | "IT" | "ES" | "NL" | "BE" | "AT" | "IE" | "PT" | "FI" | "GR" => "EUR",
        "JP" => "JPY",
        "KR" => "KRW",
        "AU" => "AUD",
        "NZ" => "NZD",
        "BR" => "BRL",
        "MX" => "MXN",
        "IN" => "INR",
        "CN" => "CNY",
        "HK" => "HKD",
        "SG" => "SGD",
        "CH" => "CHF",
        "SE" => "SEK",
        "NO" => "NOK",
        "DK" => "DKK",
        "PL" => "PLN",
        "ZA" => "ZAR",
        _ => "USD",
    }
}

fn usd_rate(currency: &str) -> f64 {
    money::CURRENCIES
        .iter()
        .find(|c| c.code == currency)
        .and_then(|c| c.default_usd_rate.parse().ok())
        .unwrap_or(1.0)
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// Moves a point up to `deg` degrees, so that shops and buyers in one city
/// do not all sit on one spot.
fn jitter(rng: &mut SmallRng, lat: f64, lon: f64, deg: f64) -> (f64, f64) {
    let lat = (lat + rng.random_range(-deg..deg)).clamp(-89.9, 89.9);
    let mut lon = lon + rng.random_range(-deg..deg);
    if lon > 180.0 {
        lon -= 360.0;
    } else if lon < -180.0 {
        lon += 360.0;
    }
    (lat, lon)
}

/// A standard normal draw (Box-Muller).
fn normal(rng: &mut SmallRng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_788_191_123;

    #[test]
    fn checkouts_parse_as_contract_events() {
        let mut g = Generator::new(7, DemoMix::default());
        for _ in 0..500 {
            let msg = g.checkout(NOW);
            let e: CheckoutEvent = serde_json::from_slice(&msg).expect("valid contract JSON");
            assert_eq!(e.kind, CHECKOUT_COMPLETED);
            assert!(e.event_id.len() <= 64);
            let digits = FxTable::default()
                .get(e.order.currency)
                .expect("known currency")
                .minor_digits;
            let total = money::parse_minor_units(&e.order.total, digits).expect("exact total");
            let items: u64 = e
                .order
                .line_items
                .iter()
                .map(|li| {
                    money::parse_minor_units(&li.price, digits).expect("price")
                        * u64::from(li.quantity)
                })
                .sum();
            assert_eq!(total, items, "total is the sum of the line items");
        }
    }

    #[test]
    fn mix_contains_every_hazard() {
        let mut g = Generator::new(
            1,
            DemoMix {
                malformed: 0.01,
                ..DemoMix::default()
            },
        );
        let mut seen: HashMap<Kind, u32> = HashMap::new();
        let mut buf = Vec::new();
        for i in 0..200_000 {
            *seen.entry(g.next_message(NOW + i, &mut buf)).or_default() += 1;
        }
        for kind in [
            Kind::Checkout,
            Kind::TestOrder,
            Kind::Duplicate,
            Kind::OtherType,
        ] {
            assert!(
                seen.get(&kind).copied().unwrap_or(0) > 0,
                "{kind:?} never generated"
            );
        }
        for m in Malformed::ROTATION {
            assert!(
                seen.contains_key(&Kind::Malformed(m)),
                "{m:?} never generated"
            );
        }
        let checkouts = f64::from(seen[&Kind::Checkout]);
        assert!(
            (checkouts / 200_000.0 - 0.1).abs() < 0.01,
            "checkout share {checkouts}"
        );
        // Redeliveries come 1-30 s later; over 200 s nearly all are due.
        let dup_share = f64::from(seen[&Kind::Duplicate]) / checkouts;
        assert!(
            (0.007..0.013).contains(&dup_share),
            "duplicate share {dup_share}"
        );
    }

    /// Sales by buyer country over `n` checkouts, largest first.
    fn sales_by_country(n: usize) -> Vec<(String, f64)> {
        let mut g = Generator::new(11, DemoMix::default());
        let mut usd: HashMap<String, f64> = HashMap::new();
        for _ in 0..n {
            let msg = g.checkout(NOW);
            let e: CheckoutEvent = serde_json::from_slice(&msg).expect("valid");
            let digits = FxTable::default()
                .get(e.order.currency)
                .expect("known currency")
                .minor_digits;
            let minor = money::parse_minor_units(&e.order.total, digits).expect("total");
            let rate = usd_rate(std::str::from_utf8(&e.order.currency.0).expect("ascii"));
            *usd.entry(String::from_utf8_lossy(&e.buyer.country.0).into_owned())
                .or_default() += minor as f64 / 10f64.powi(digits as i32) * rate;
        }
        let mut v: Vec<_> = usd.into_iter().collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        v
    }

    #[test]
    fn black_friday_sells_most_in_the_united_states_then_as_the_platform_reports() {
        let sales = sales_by_country(40_000);
        let total: f64 = sales.iter().map(|(_, s)| s).sum();
        let top: Vec<&str> = sales.iter().take(5).map(|(c, _)| c.as_str()).collect();
        assert_eq!(top[0], "US", "{sales:?}");
        let us = sales[0].1 / total;
        assert!((0.40..0.56).contains(&us), "US share {us}");
        // The platform's next sellers, in some order, ahead of the most
        // populous countries (which buy from the rest of the world's share).
        for c in ["GB", "CA"] {
            assert!(top.contains(&c), "{c} not in the top 5: {top:?}");
        }
        for c in ["CN", "IN"] {
            let rank = sales.iter().position(|(x, _)| x == c).unwrap_or(usize::MAX);
            assert!(rank >= 5, "{c} ranks {rank}");
        }
        let shares: f64 = COMMERCE_SHARES.iter().map(|(_, s)| s).sum();
        assert!((shares + REST_OF_WORLD - 100.0).abs() < 1e-9);
    }

    #[test]
    fn same_seed_same_stream() {
        let (mut a, mut b) = (
            Generator::new(3, DemoMix::default()),
            Generator::new(3, DemoMix::default()),
        );
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for i in 0..1000 {
            a.next_message(NOW + i, &mut x);
            b.next_message(NOW + i, &mut y);
            assert_eq!(x, y);
        }
    }

    #[test]
    fn rate_curve_averages_near_one_and_stays_positive() {
        let samples: Vec<f64> = (0..86_400).map(|s| rate_multiplier(s * 1000)).collect();
        let mean = samples.iter().sum::<f64>() / samples.len() as f64;
        assert!((mean - 1.0).abs() < 0.05, "mean {mean}");
        assert!(samples.iter().all(|&m| m > 0.3 && m < 3.0));
    }

    #[test]
    fn great_circle_distances() {
        assert!(great_circle_km(0.0, 0.0, 0.0, 0.0).abs() < 1e-9);
        let ny_london = great_circle_km(40.7128, -74.006, 51.5074, -0.1278);
        assert!((ny_london - 5_570.0).abs() < 20.0, "{ny_london}");
        let antipodes = great_circle_km(0.0, 0.0, 0.0, 180.0);
        assert!((antipodes - 20_015.0).abs() < 5.0, "{antipodes}");
    }
}
