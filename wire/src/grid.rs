//! The ~11 km grid every position that leaves the server is snapped to.
//!
//! Rows are 0.1° of latitude (11.1 km); each row has as many cells of
//! longitude as fit at about 11 km each, so cells are roughly equal in area
//! at any latitude. On the wire a position is a [`Cell`] (row, column), not
//! coordinates: the format cannot say anything finer than a cell, and a
//! position costs four bytes.

/// Grid rows per degree of latitude.
const ROWS_PER_DEG: f64 = 10.0;
/// Rows from the south pole to the north pole.
pub const ROWS: u16 = 1_800;

/// One grid cell: a row from the south pole, a column eastwards from 180° W.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Cell {
    pub row: u16,
    pub col: u16,
}

fn row_centre_lat(row: u16) -> f64 {
    -90.0 + (f64::from(row) + 0.5) / ROWS_PER_DEG
}

/// Cells in a row: 3,600 at the equator, fewer towards the poles.
pub fn cells_in_row(row: u16) -> u16 {
    ((3600.0 * row_centre_lat(row).to_radians().cos()).floor() as u16).max(1)
}

/// The cell a point falls in. Out-of-range input is clamped.
pub fn cell_of(lat: f64, lon: f64) -> Cell {
    let row = ((lat + 90.0) * ROWS_PER_DEG)
        .floor()
        .clamp(0.0, f64::from(ROWS - 1)) as u16;
    let cells = cells_in_row(row);
    let width = 360.0 / f64::from(cells);
    let col = ((lon + 180.0) / width)
        .floor()
        .clamp(0.0, f64::from(cells - 1)) as u16;
    Cell { row, col }
}

/// The centre of a cell, in degrees. A cell read from untrusted bytes may
/// be out of range; it is clamped to the grid.
pub fn centre(cell: Cell) -> (f64, f64) {
    let row = cell.row.min(ROWS - 1);
    let cells = cells_in_row(row);
    let col = cell.col.min(cells - 1);
    let width = 360.0 / f64::from(cells);
    (row_centre_lat(row), -180.0 + (f64::from(col) + 0.5) * width)
}

/// Snaps a point to the centre of its cell.
pub fn coarsen(lat: f64, lon: f64) -> (f64, f64) {
    centre(cell_of(lat, lon))
}

/// Whether a point is (to f32 precision) a cell centre: what every
/// coordinate shown to a browser must be.
pub fn is_coarsened(lat: f32, lon: f32) -> bool {
    let (clat, clon) = coarsen(f64::from(lat), f64::from(lon));
    (clat - f64::from(lat)).abs() < 1e-4 && (clon - f64::from(lon)).abs() < 1e-4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn centres_map_back_to_their_cell_and_points_move_under_9_km() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let lat = (x % 180_000) as f64 / 1000.0 - 90.0;
            let lon = ((x >> 20) % 360_000) as f64 / 1000.0 - 180.0;
            let cell = cell_of(lat, lon);
            let (clat, clon) = centre(cell);
            assert_eq!(cell_of(clat, clon), cell);
            assert_eq!(
                cell_of(f64::from(clat as f32), f64::from(clon as f32)),
                cell
            );
            assert!(is_coarsened(clat as f32, clon as f32));
            let km = 111.2
                * ((clat - lat).powi(2) + ((clon - lon) * lat.to_radians().cos()).powi(2)).sqrt();
            assert!(km < 9.0 || lat.abs() > 89.0, "{lat},{lon} moved {km} km");
        }
    }

    #[test]
    fn hostile_cells_are_clamped_to_the_grid() {
        let (lat, lon) = centre(Cell {
            row: u16::MAX,
            col: u16::MAX,
        });
        assert!(lat < 90.0 && (-180.0..=180.0).contains(&lon));
    }
}
