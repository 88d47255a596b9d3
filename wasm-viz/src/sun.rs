//! Where the sun is overhead at a given time, for the globe's day and
//! night. Accurate to about a degree, which is all a soft terminator
//! needs: the declination from the day of the year, the longitude from the
//! time of day (the equation of time, at most 4°, is left out).

/// The subsolar point (lat, lon) in degrees at `utc_ms` (ms since the Unix
/// epoch).
pub fn subsolar(utc_ms: f64) -> (f64, f64) {
    const DAY_MS: f64 = 86_400_000.0;
    let days = utc_ms / DAY_MS;
    // Days since the December solstice of 1969 (Dec 22), the cycle's zero.
    let year_phase = (days + 10.0) / 365.2422 * std::f64::consts::TAU;
    let lat = -23.44 * year_phase.cos();
    let hours = days.rem_euclid(1.0) * 24.0;
    let lon = (-15.0 * (hours - 12.0) + 180.0).rem_euclid(360.0) - 180.0;
    (lat, lon)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY_MS: f64 = 86_400_000.0;
    /// 2026-01-01T00:00:00Z.
    const NEW_YEAR_2026: f64 = 1_767_225_600_000.0;

    #[test]
    fn solstices_equinoxes_and_noon() {
        // June solstice, noon UTC: over the Tropic of Cancer near Greenwich.
        let (lat, lon) = subsolar(NEW_YEAR_2026 + 171.0 * DAY_MS + 0.5 * DAY_MS);
        assert!((lat - 23.44).abs() < 0.5, "{lat}");
        assert!(lon.abs() < 1.0, "{lon}");
        // December solstice, midnight UTC: Tropic of Capricorn, date line.
        let (lat, lon) = subsolar(NEW_YEAR_2026 + 354.0 * DAY_MS);
        assert!((lat + 23.44).abs() < 0.5, "{lat}");
        assert!((lon.abs() - 180.0).abs() < 1.0, "{lon}");
        // March equinox, 18:00 UTC: the equator, 90°W.
        let (lat, lon) = subsolar(NEW_YEAR_2026 + 78.0 * DAY_MS + 0.75 * DAY_MS);
        assert!(lat.abs() < 1.0, "{lat}");
        assert!((lon + 90.0).abs() < 1.0, "{lon}");
    }
}
