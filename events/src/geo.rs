//! Distances on the globe, shared by the demo generator (its carbon
//! estimates), the server's decoder (the carbon estimate of an order that
//! does not state one) and its snapshot (a shop's nearest city).

/// Great-circle distance in km (haversine, on a sphere of radius 6,371 km).
pub fn great_circle_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * 6_371.0 * a.sqrt().clamp(0.0, 1.0).asin()
}
