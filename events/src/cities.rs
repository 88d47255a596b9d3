//! The world's cities by population, for realistic demo geography.
//!
//! `data/cities.csv` is derived from GeoNames (CC BY 4.0) by
//! `tools/derive_cities.py`; see `data/README.md` for attribution.

use std::sync::OnceLock;

const CITIES_CSV: &str = include_str!("../data/cities.csv");

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct City {
    pub name: &'static str,
    pub country: &'static str,
    pub lat: f64,
    pub lon: f64,
    pub population: u64,
}

/// Every city in the embedded table, most populous first.
pub fn all() -> &'static [City] {
    static CITIES: OnceLock<Vec<City>> = OnceLock::new();
    CITIES.get_or_init(|| parse(CITIES_CSV))
}

/// Parses the table, skipping the header and any line that is not a city
/// (the file is ours, but a bad line should cost a city, not the demo).
fn parse(csv: &'static str) -> Vec<City> {
    csv.lines()
        .skip(1)
        .filter_map(|line| {
            let mut f = line.split(',');
            let city = City {
                name: f.next()?,
                country: f.next()?,
                lat: f.next()?.parse().ok()?,
                lon: f.next()?.parse().ok()?,
                population: f.next()?.trim().parse().ok()?,
            };
            let valid = city.country.len() == 2
                && (-90.0..=90.0).contains(&city.lat)
                && (-180.0..=180.0).contains(&city.lon);
            valid.then_some(city)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_table_is_large_and_sane() {
        let cities = all();
        assert!(cities.len() >= 1000, "only {} cities", cities.len());
        assert!(cities
            .windows(2)
            .all(|w| w[0].population >= w[1].population));
        for country in ["US", "CA", "GB", "DE", "JP", "BR", "IN", "AU"] {
            assert!(
                cities.iter().any(|c| c.country == country),
                "no city in {country}"
            );
        }
    }

    #[test]
    fn bad_lines_are_skipped() {
        let parsed =
            parse("name,country,lat,lon,population\nA,US,1.0,2.0,10\nB,XX,95.0,0,5\nbroken\n");
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].name, "A");
    }
}
