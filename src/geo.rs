//! Geography: haversine distance and a uniform-grid spatial index for "places within a radius".
//!
//! Candidate retrieval (negative sampling, ranking candidates) queries the grid: only the cells
//! that intersect the query circle are visited, never a scan over all places.

use std::collections::HashMap;

/// Mean Earth radius in kilometres (IUGG).
pub use reco_runtime::features::calendar::EARTH_RADIUS_KM;

/// Great-circle distance in kilometres between two (lat, lon) points in degrees.
pub fn haversine_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * a.sqrt().min(1.0).asin()
}

/// Places bucketed into square cells of `cell_km` (approximately; degrees scaled at the
/// reference latitude). Queries return exact haversine matches.
#[derive(Debug, Clone)]
pub struct GridIndex {
    cell_deg_lat: f64,
    cell_deg_lon: f64,
    cells: HashMap<(i64, i64), Vec<u32>>,
    lat: Vec<f64>,
    lon: Vec<f64>,
}

impl GridIndex {
    /// Builds the index over points `(lat[i], lon[i])`; `i` is what queries return.
    pub fn new(lat: &[f64], lon: &[f64], cell_km: f64) -> Self {
        let ref_lat = if lat.is_empty() { 0.0 } else { lat.iter().sum::<f64>() / lat.len() as f64 };
        let km_per_deg = EARTH_RADIUS_KM.to_radians();
        let cell_deg_lat = cell_km / km_per_deg;
        let cell_deg_lon = cell_km / (km_per_deg * ref_lat.to_radians().cos().max(0.05));
        let mut cells: HashMap<(i64, i64), Vec<u32>> = HashMap::new();
        for (i, (&la, &lo)) in lat.iter().zip(lon).enumerate() {
            let key = ((la / cell_deg_lat).floor() as i64, (lo / cell_deg_lon).floor() as i64);
            cells.entry(key).or_default().push(i as u32);
        }
        Self { cell_deg_lat, cell_deg_lon, cells, lat: lat.to_vec(), lon: lon.to_vec() }
    }

    /// Indices of all points within `radius_km` of (lat, lon), in ascending index order.
    pub fn within(&self, lat: f64, lon: f64, radius_km: f64) -> Vec<u32> {
        let km_per_deg = EARTH_RADIUS_KM.to_radians();
        let dlat = radius_km / km_per_deg;
        let dlon = radius_km / (km_per_deg * lat.to_radians().cos().max(0.05));
        let (r0, r1) =
            (((lat - dlat) / self.cell_deg_lat).floor() as i64, ((lat + dlat) / self.cell_deg_lat).floor() as i64);
        let (c0, c1) =
            (((lon - dlon) / self.cell_deg_lon).floor() as i64, ((lon + dlon) / self.cell_deg_lon).floor() as i64);
        let mut out = Vec::new();
        for r in r0..=r1 {
            for c in c0..=c1 {
                if let Some(ids) = self.cells.get(&(r, c)) {
                    out.extend(
                        ids.iter().copied().filter(|&i| {
                            haversine_km(lat, lon, self.lat[i as usize], self.lon[i as usize]) <= radius_km
                        }),
                    );
                }
            }
        }
        out.sort_unstable();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reco_runtime::rng::Rng;

    #[test]
    fn haversine_matches_known_distances() {
        // Paris (48.8566, 2.3522) to London (51.5074, -0.1278): about 343.5 km.
        let d = haversine_km(48.8566, 2.3522, 51.5074, -0.1278);
        assert!((d - 343.5).abs() < 1.0, "{d}");
        // One degree of latitude is about 111.2 km.
        let d = haversine_km(10.0, 5.0, 11.0, 5.0);
        assert!((d - 111.19).abs() < 0.1, "{d}");
        assert_eq!(haversine_km(1.0, 2.0, 1.0, 2.0), 0.0);
    }

    #[test]
    fn grid_query_equals_brute_force() {
        let mut rng = Rng::new(11);
        let n = 2000;
        let lat: Vec<f64> = (0..n).map(|_| 52.4 + 0.3 * rng.uniform()).collect();
        let lon: Vec<f64> = (0..n).map(|_| 13.2 + 0.4 * rng.uniform()).collect();
        let index = GridIndex::new(&lat, &lon, 2.0);
        for _ in 0..50 {
            let (qa, qo) = (52.4 + 0.3 * rng.uniform(), 13.2 + 0.4 * rng.uniform());
            for radius in [0.5, 3.0, 7.5] {
                let brute: Vec<u32> = (0..n as u32)
                    .filter(|&i| haversine_km(qa, qo, lat[i as usize], lon[i as usize]) <= radius)
                    .collect();
                assert_eq!(index.within(qa, qo, radius), brute);
            }
        }
    }
}
