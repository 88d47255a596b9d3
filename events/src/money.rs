//! Exact money: decimal strings to integer minor units, and conversion to
//! US cents with a rate table. No value here ever passes through a float.

use std::collections::HashMap;

use crate::contract::CurrencyCode;

/// A currency the live map knows: how many minor digits it has and its
/// default rate in US dollars per major unit (a decimal string).
#[derive(Debug, Clone, Copy)]
pub struct CurrencyInfo {
    pub code: &'static str,
    pub minor_digits: u32,
    pub default_usd_rate: &'static str,
}

/// The built-in table. Rates are indicative; operators override them with
/// `--fx-rates` for the day of the sale.
pub const CURRENCIES: &[CurrencyInfo] = &[
    CurrencyInfo {
        code: "USD",
        minor_digits: 2,
        default_usd_rate: "1",
    },
    CurrencyInfo {
        code: "EUR",
        minor_digits: 2,
        default_usd_rate: "1.08",
    },
    CurrencyInfo {
        code: "GBP",
        minor_digits: 2,
        default_usd_rate: "1.27",
    },
    CurrencyInfo {
        code: "CAD",
        minor_digits: 2,
        default_usd_rate: "0.73",
    },
    CurrencyInfo {
        code: "AUD",
        minor_digits: 2,
        default_usd_rate: "0.66",
    },
    CurrencyInfo {
        code: "NZD",
        minor_digits: 2,
        default_usd_rate: "0.60",
    },
    CurrencyInfo {
        code: "JPY",
        minor_digits: 0,
        default_usd_rate: "0.0067",
    },
    CurrencyInfo {
        code: "KRW",
        minor_digits: 0,
        default_usd_rate: "0.00073",
    },
    CurrencyInfo {
        code: "CNY",
        minor_digits: 2,
        default_usd_rate: "0.14",
    },
    CurrencyInfo {
        code: "HKD",
        minor_digits: 2,
        default_usd_rate: "0.128",
    },
    CurrencyInfo {
        code: "SGD",
        minor_digits: 2,
        default_usd_rate: "0.74",
    },
    CurrencyInfo {
        code: "INR",
        minor_digits: 2,
        default_usd_rate: "0.012",
    },
    CurrencyInfo {
        code: "BRL",
        minor_digits: 2,
        default_usd_rate: "0.20",
    },
    CurrencyInfo {
        code: "MXN",
        minor_digits: 2,
        default_usd_rate: "0.058",
    },
    CurrencyInfo {
        code: "CHF",
        minor_digits: 2,
        default_usd_rate: "1.13",
    },
    CurrencyInfo {
        code: "SEK",
        minor_digits: 2,
        default_usd_rate: "0.095",
    },
    CurrencyInfo {
        code: "NOK",
        minor_digits: 2,
        default_usd_rate: "0.093",
    },
    CurrencyInfo {
        code: "DKK",
        minor_digits: 2,
        default_usd_rate: "0.145",
    },
    CurrencyInfo {
        code: "PLN",
        minor_digits: 2,
        default_usd_rate: "0.25",
    },
    CurrencyInfo {
        code: "ZAR",
        minor_digits: 2,
        default_usd_rate: "0.055",
    },
];

/// Why an amount or a rate could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmountError {
    /// Not a plain non-negative decimal (`12`, `12.3`, `12.34`).
    Malformed,
    /// More fractional digits than the currency has.
    TooPrecise,
    /// Does not fit the integer range the totals use.
    Overflow,
}

/// Parses a non-negative decimal string into minor units with exactly
/// `minor_digits` of scale: `"129.9"` with 2 digits is `12990`.
pub fn parse_minor_units(s: &str, minor_digits: u32) -> Result<u64, AmountError> {
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AmountError::Malformed);
    }
    let frac = frac.unwrap_or("");
    if frac.bytes().any(|b| !b.is_ascii_digit()) || (s.contains('.') && frac.is_empty()) {
        return Err(AmountError::Malformed);
    }
    if frac.len() > minor_digits as usize {
        return Err(AmountError::TooPrecise);
    }
    let mut value: u64 = 0;
    for b in int.bytes().chain(frac.bytes()) {
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(b - b'0')))
            .ok_or(AmountError::Overflow)?;
    }
    let pad = minor_digits - frac.len() as u32;
    value
        .checked_mul(10u64.pow(pad))
        .ok_or(AmountError::Overflow)
}

/// Formats minor units as the contract's decimal string.
pub fn format_minor_units(minor: u64, minor_digits: u32) -> String {
    if minor_digits == 0 {
        return minor.to_string();
    }
    let scale = 10u64.pow(minor_digits);
    format!(
        "{}.{:0width$}",
        minor / scale,
        minor % scale,
        width = minor_digits as usize
    )
}

/// Rates are held as billionths of a US dollar per major unit, so that a
/// conversion is one integer multiply and divide.
const RATE_SCALE_DIGITS: u32 = 9;

/// What a currency converts at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub minor_digits: u32,
    /// US dollars per major unit, times 10^9.
    pub usd_nanos_per_unit: u64,
}

impl Rate {
    /// Converts an amount in this currency's minor units to US cents,
    /// rounding half up. Each order is rounded once; totals are sums of
    /// these integers and so stay exact.
    pub fn to_usd_cents(self, minor: u64) -> Option<u64> {
        let numer = u128::from(minor) * u128::from(self.usd_nanos_per_unit) * 100;
        let denom = 10u128.pow(self.minor_digits + RATE_SCALE_DIGITS);
        u64::try_from((numer + denom / 2) / denom).ok()
    }
}

/// Why a rate table could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FxError {
    BadCode(String),
    BadRate(String),
}

impl std::fmt::Display for FxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FxError::BadCode(c) => write!(f, "{c:?} is not a three-letter ISO 4217 code"),
            FxError::BadRate(r) => write!(f, "{r:?} is not a positive decimal rate"),
        }
    }
}

impl std::error::Error for FxError {}

/// The currency → USD table the decoder converts with.
#[derive(Debug, Clone)]
pub struct FxTable {
    rates: HashMap<CurrencyCode, Rate>,
}

impl Default for FxTable {
    fn default() -> Self {
        let mut table = FxTable {
            rates: HashMap::new(),
        };
        for c in CURRENCIES {
            // The built-in table is tested below, so these cannot fail.
            let _ = table.set(c.code, c.default_usd_rate, c.minor_digits);
        }
        table
    }
}

impl FxTable {
    /// Sets or replaces one currency's rate, given as a decimal string of
    /// US dollars per major unit with at most 9 fractional digits.
    pub fn set(
        &mut self,
        code: &str,
        usd_per_unit: &str,
        minor_digits: u32,
    ) -> Result<(), FxError> {
        let cc = CurrencyCode::parse(code).ok_or_else(|| FxError::BadCode(code.to_owned()))?;
        let nanos = parse_minor_units(usd_per_unit, RATE_SCALE_DIGITS)
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| FxError::BadRate(usd_per_unit.to_owned()))?;
        self.rates.insert(
            cc,
            Rate {
                minor_digits,
                usd_nanos_per_unit: nanos,
            },
        );
        Ok(())
    }

    /// Overrides rates from a JSON object of code → decimal string, e.g.
    /// `{"EUR": "1.0812", "XYZ": "0.5"}`. Unknown codes get 2 minor digits
    /// unless the built-in table says otherwise.
    pub fn apply_overrides(&mut self, overrides: &HashMap<String, String>) -> Result<(), FxError> {
        for (code, rate) in overrides {
            let digits = self
                .get(CurrencyCode::parse(code).ok_or_else(|| FxError::BadCode(code.clone()))?)
                .map_or(2, |r| r.minor_digits);
            self.set(code, rate, digits)?;
        }
        Ok(())
    }

    pub fn get(&self, code: CurrencyCode) -> Option<Rate> {
        self.rates.get(&code).copied()
    }

    pub fn len(&self) -> usize {
        self.rates.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rates.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exact_minor_units() {
        assert_eq!(parse_minor_units("129.99", 2), Ok(12_999));
        assert_eq!(parse_minor_units("129.9", 2), Ok(12_990));
        assert_eq!(parse_minor_units("129", 2), Ok(12_900));
        assert_eq!(parse_minor_units("0.01", 2), Ok(1));
        assert_eq!(parse_minor_units("1500", 0), Ok(1_500));
        // A float would make this 0.30000000000000004; integers cannot.
        let sum: u64 = ["0.10", "0.20"]
            .iter()
            .map(|s| parse_minor_units(s, 2).unwrap_or(0))
            .sum();
        assert_eq!(sum, 30);
    }

    #[test]
    fn rejects_what_is_not_a_plain_amount() {
        for bad in [
            "", ".5", "5.", "-1.00", "1e3", "1,00", " 1.00", "1.0.0", "abc", "+1",
        ] {
            assert_eq!(
                parse_minor_units(bad, 2),
                Err(AmountError::Malformed),
                "{bad:?}"
            );
        }
        assert_eq!(parse_minor_units("1.234", 2), Err(AmountError::TooPrecise));
        assert_eq!(parse_minor_units("1.5", 0), Err(AmountError::TooPrecise));
        assert_eq!(
            parse_minor_units("99999999999999999999", 2),
            Err(AmountError::Overflow)
        );
        assert_eq!(parse_minor_units("184467440737095516.15", 2), Ok(u64::MAX));
        assert_eq!(
            parse_minor_units("184467440737095516.16", 2),
            Err(AmountError::Overflow)
        );
    }

    #[test]
    fn formats_what_it_parses() {
        for (minor, digits) in [(0u64, 2u32), (1, 2), (12_999, 2), (1_500, 0), (100, 2)] {
            let s = format_minor_units(minor, digits);
            assert_eq!(parse_minor_units(&s, digits), Ok(minor), "{s}");
        }
        assert_eq!(format_minor_units(12_990, 2), "129.90");
    }

    #[test]
    fn converts_to_usd_cents_with_half_up_rounding() {
        let fx = FxTable::default();
        let code = |c: &str| CurrencyCode::parse(c).expect("valid code");
        let usd = fx.get(code("USD")).expect("USD");
        assert_eq!(usd.to_usd_cents(12_999), Some(12_999));
        let jpy = fx.get(code("JPY")).expect("JPY");
        // 1500 yen at 0.0067 is 10.05 USD.
        assert_eq!(jpy.to_usd_cents(1_500), Some(1_005));
        let eur = fx.get(code("EUR")).expect("EUR");
        // 0.05 EUR at 1.08 is 5.4 cents: rounds to 5; 0.25 EUR is 27 cents.
        assert_eq!(eur.to_usd_cents(5), Some(5));
        assert_eq!(eur.to_usd_cents(25), Some(27));
        // 0.5 cents rounds up.
        let mut t = FxTable::default();
        t.set("XAA", "0.5", 2).expect("valid");
        assert_eq!(t.get(code("XAA")).and_then(|r| r.to_usd_cents(1)), Some(1));
        assert_eq!(
            t.get(code("XAA")).and_then(|r| r.to_usd_cents(u64::MAX)),
            Some(u64::MAX / 2 + 1)
        );
    }

    #[test]
    fn built_in_table_is_complete_and_overridable() {
        let mut fx = FxTable::default();
        assert_eq!(fx.len(), CURRENCIES.len());
        let overrides = HashMap::from([("EUR".to_owned(), "2".to_owned())]);
        fx.apply_overrides(&overrides).expect("valid override");
        let eur = fx
            .get(CurrencyCode::parse("EUR").expect("code"))
            .expect("EUR");
        assert_eq!(eur.to_usd_cents(100), Some(200));
        let bad = HashMap::from([("EUR".to_owned(), "-1".to_owned())]);
        assert!(fx.apply_overrides(&bad).is_err());
        let bad = HashMap::from([("euro".to_owned(), "1".to_owned())]);
        assert!(fx.apply_overrides(&bad).is_err());
    }
}
