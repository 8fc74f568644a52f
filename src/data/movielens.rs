//! `datasets import movielens-100k`: MovieLens-100k's files -> the three raw tables, as
//! Parquet. A thin preset: it only converts file formats (and maps zip codes to
//! coordinates); labels, features and everything else come from the recipe's mapping
//! (`recipes/movielens.toml`).
//!
//! Accepted inputs, in `--from DIR`:
//! - GroupLens' original files: `u.data` (tab-separated user, item, rating, timestamp),
//!   `u.user` and `u.item` (pipe-separated, Latin-1), `u.genre`;
//! - RecBole's atomic files (`ml-100k.inter`, `ml-100k.user`, `ml-100k.item`: tab-separated
//!   with a `name:type` header), as `scripts/fetch-movielens.sh` fetches them.
//!
//! and a `zipcodes.csv` (`zip_code,latitude,longitude,...`, vega-datasets) for the users' home.
//!
//! Output: `users.parquet` (user_id, age, gender, occupation, zip_code, home_lat, home_lon;
//! null coordinates for zip codes not in the list), `places.parquet` (item_id, title,
//! release_year, genre = the first genre, genres = all of them as a list column),
//! `interactions.parquet` (user_id, item_id, rating, timestamp).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use polars::prelude::*;
use serde::Serialize;

use crate::data::io::{frame, write_parquet};
use reco_runtime::artifact::ArtifactWriter;
use reco_runtime::error::{Error, IoContext, Result};

/// What the import wrote.
#[derive(Debug, Clone, Serialize)]
pub struct ImportSummary {
    /// Output directory.
    pub dir: PathBuf,
    /// Users.
    pub users: usize,
    /// Movies.
    pub places: usize,
    /// Ratings.
    pub interactions: usize,
    /// Users whose zip code has coordinates.
    pub users_with_home: usize,
    /// Which input layout was read: `grouplens` or `recbole`.
    pub layout: String,
}

struct User {
    id: i64,
    age: i64,
    gender: String,
    occupation: String,
    zip: String,
}

struct Movie {
    id: i64,
    title: String,
    year: Option<i64>,
    genres: Vec<String>,
}

struct Rating {
    user: i64,
    item: i64,
    rating: f64,
    ts: i64,
}

/// Reads MovieLens-100k from `from` (and zip codes from `zipcodes`), writes the raw tables to
/// `out` atomically.
pub fn import(from: &Path, zipcodes: &Path, out: &Path) -> Result<ImportSummary> {
    let (layout, users, movies, ratings) = if from.join("u.data").is_file() {
        let users = read_users(&from.join("u.user"), false, '|')?;
        ("grouplens", users, grouplens_movies(from)?, ratings_tsv(&from.join("u.data"), false)?)
    } else if from.join("ml-100k.inter").is_file() {
        let users = read_users(&from.join("ml-100k.user"), true, '\t')?;
        ("recbole", users, recbole_movies(from)?, ratings_tsv(&from.join("ml-100k.inter"), true)?)
    } else {
        return Err(Error::input(format!(
            "{}: expected MovieLens-100k files (u.data, u.user, u.item or ml-100k.inter, ml-100k.user, ml-100k.item); scripts/fetch-movielens.sh fetches them",
            from.display()
        )));
    };
    let zips = read_zipcodes(zipcodes)?;
    let home: Vec<Option<(f64, f64)>> = users.iter().map(|u| zips.get(u.zip.trim()).copied()).collect();
    let writer = ArtifactWriter::create(out)?;
    let mut users_df = frame(
        users.len(),
        vec![
            Column::new("user_id".into(), users.iter().map(|u| u.id).collect::<Vec<_>>()),
            Column::new("age".into(), users.iter().map(|u| u.age).collect::<Vec<_>>()),
            Column::new("gender".into(), users.iter().map(|u| u.gender.as_str()).collect::<Vec<_>>()),
            Column::new("occupation".into(), users.iter().map(|u| u.occupation.as_str()).collect::<Vec<_>>()),
            Column::new("zip_code".into(), users.iter().map(|u| u.zip.as_str()).collect::<Vec<_>>()),
            Column::new("home_lat".into(), home.iter().map(|h| h.map(|x| x.0)).collect::<Vec<_>>()),
            Column::new("home_lon".into(), home.iter().map(|h| h.map(|x| x.1)).collect::<Vec<_>>()),
        ],
    )?;
    let first_genre = |m: &Movie| m.genres.first().cloned().unwrap_or_else(|| "unknown".into());
    let mut places_df = frame(
        movies.len(),
        vec![
            Column::new("item_id".into(), movies.iter().map(|m| m.id).collect::<Vec<_>>()),
            Column::new("title".into(), movies.iter().map(|m| m.title.as_str()).collect::<Vec<_>>()),
            Column::new("release_year".into(), movies.iter().map(|m| m.year).collect::<Vec<_>>()),
            Column::new("genre".into(), movies.iter().map(first_genre).collect::<Vec<_>>()),
            genre_lists(&movies),
        ],
    )?;
    let mut inter_df = frame(
        ratings.len(),
        vec![
            Column::new("user_id".into(), ratings.iter().map(|r| r.user).collect::<Vec<_>>()),
            Column::new("item_id".into(), ratings.iter().map(|r| r.item).collect::<Vec<_>>()),
            Column::new("rating".into(), ratings.iter().map(|r| r.rating).collect::<Vec<_>>()),
            Column::new("timestamp".into(), ratings.iter().map(|r| r.ts).collect::<Vec<_>>()),
        ],
    )?;
    write_parquet(&mut users_df, &writer.path("users.parquet"))?;
    write_parquet(&mut places_df, &writer.path("places.parquet"))?;
    write_parquet(&mut inter_df, &writer.path("interactions.parquet"))?;
    writer.commit()?;
    Ok(ImportSummary {
        dir: out.to_path_buf(),
        users: users.len(),
        places: movies.len(),
        interactions: ratings.len(),
        users_with_home: home.iter().filter(|h| h.is_some()).count(),
        layout: layout.into(),
    })
}

/// A file's text: UTF-8, or Latin-1 (every byte one character) when it is not valid UTF-8.
fn text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).at(path)?;
    Ok(match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => e.into_bytes().iter().map(|&b| char::from(b)).collect(),
    })
}

fn bad(path: &Path, line: usize, what: &str, value: &str) -> Error {
    Error::input(format!("{}: line {line}: {what} is {value:?}", path.display()))
}

fn int(path: &Path, line: usize, what: &str, v: &str) -> Result<i64> {
    v.trim().parse().map_err(|_| bad(path, line, what, v))
}

/// The data lines of a file (1-based line numbers), skipping a header when `header`.
fn lines(s: &str, header: bool) -> impl Iterator<Item = (usize, &str)> {
    s.lines().enumerate().skip(usize::from(header)).map(|(i, l)| (i + 1, l)).filter(|(_, l)| !l.trim().is_empty())
}

fn fields<'a>(path: &Path, n: usize, line: usize, l: &'a str, sep: char) -> Result<Vec<&'a str>> {
    let f: Vec<&str> = l.split(sep).collect();
    if f.len() < n {
        return Err(Error::input(format!(
            "{}: line {line} has {} fields, expected at least {n}",
            path.display(),
            f.len()
        )));
    }
    Ok(f)
}

fn ratings_tsv(path: &Path, header: bool) -> Result<Vec<Rating>> {
    let s = text(path)?;
    let mut out = Vec::new();
    for (line, l) in lines(&s, header) {
        let f = fields(path, 4, line, l, '\t')?;
        // Ratings 0..=10 and unix seconds 1900..2200: anything else is a corrupt line.
        let rating: f64 = f[2]
            .trim()
            .parse()
            .ok()
            .filter(|r: &f64| (0.0..=10.0).contains(r))
            .ok_or_else(|| bad(path, line, "rating (expected 0 to 10)", f[2]))?;
        let ts: f64 = f[3]
            .trim()
            .parse()
            .ok()
            .filter(|t: &f64| (-2_208_988_800.0..7_258_118_400.0).contains(t))
            .ok_or_else(|| bad(path, line, "timestamp (expected unix seconds, 1900 to 2200)", f[3]))?;
        out.push(Rating {
            user: int(path, line, "user id", f[0])?,
            item: int(path, line, "item id", f[1])?,
            rating,
            ts: ts as i64,
        });
    }
    if out.is_empty() {
        return Err(Error::input(format!("{}: holds no ratings", path.display())));
    }
    Ok(out)
}

/// Users from `u.user` (pipe-separated, no header) or `ml-100k.user` (tab-separated, a
/// header): id, age, gender, occupation, zip code.
fn read_users(path: &Path, header: bool, sep: char) -> Result<Vec<User>> {
    let s = text(path)?;
    let mut seen = std::collections::BTreeSet::new();
    lines(&s, header)
        .map(|(line, l)| {
            let f = fields(path, 5, line, l, sep)?;
            let id = int(path, line, "user id", f[0])?;
            if !seen.insert(id) {
                return Err(Error::input(format!("{}: line {line}: user id {id} appears twice", path.display())));
            }
            Ok(User {
                id,
                age: int(path, line, "age", f[1])?,
                gender: f[2].to_string(),
                occupation: f[3].to_string(),
                zip: f[4].trim().to_string(),
            })
        })
        .collect()
}

/// `Toy Story (1995)` -> (`Toy Story`, 1995).
fn title_and_year(t: &str) -> (String, Option<i64>) {
    let t = t.trim();
    if let Some(open) = t.rfind(" (")
        && t.ends_with(')')
        && let Ok(y) = t[open + 2..t.len() - 1].parse::<i64>()
    {
        return (t[..open].to_string(), Some(y));
    }
    (t.to_string(), None)
}

fn grouplens_movies(dir: &Path) -> Result<Vec<Movie>> {
    let gpath = dir.join("u.genre");
    let gs = text(&gpath)?;
    let mut names: Vec<(usize, String)> = Vec::new();
    for (line, l) in lines(&gs, false) {
        let f = fields(&gpath, 2, line, l, '|')?;
        let i = usize::try_from(int(&gpath, line, "genre index", f[1])?)
            .map_err(|_| bad(&gpath, line, "genre index", f[1]))?;
        names.push((i, f[0].to_string()));
    }
    names.sort();
    let path = dir.join("u.item");
    let s = text(&path)?;
    lines(&s, false)
        .map(|(line, l)| {
            let f = fields(&path, 5 + names.len(), line, l, '|')?;
            let (title, year) = title_and_year(f[1]);
            let year = year.or_else(|| f[2].rsplit('-').next().and_then(|y| y.parse().ok()));
            let genres = names.iter().filter(|(i, _)| f.get(5 + i).is_some_and(|v| v.trim() == "1"));
            Ok(Movie {
                id: int(&path, line, "item id", f[0])?,
                title,
                year,
                genres: genres.map(|g| g.1.clone()).collect(),
            })
        })
        .collect()
}

fn recbole_movies(dir: &Path) -> Result<Vec<Movie>> {
    let path = dir.join("ml-100k.item");
    let s = text(&path)?;
    lines(&s, true)
        .map(|(line, l)| {
            let f = fields(&path, 4, line, l, '\t')?;
            Ok(Movie {
                id: int(&path, line, "item id", f[0])?,
                title: f[1].to_string(),
                year: f[2].trim().parse().ok(),
                genres: f[3].split_whitespace().map(str::to_string).collect(),
            })
        })
        .collect()
}

/// `zip_code -> (latitude, longitude)` from a `zip_code,latitude,longitude,...` CSV.
fn read_zipcodes(path: &Path) -> Result<HashMap<String, (f64, f64)>> {
    let s = text(path)?;
    let mut out = HashMap::new();
    for (line, l) in lines(&s, true) {
        let f = fields(path, 3, line, l, ',')?;
        let (lat, lon) = (f[1].trim().parse::<f64>(), f[2].trim().parse::<f64>());
        match (lat, lon) {
            (Ok(a), Ok(b)) if (-90.0..=90.0).contains(&a) && (-180.0..=180.0).contains(&b) => {
                out.insert(f[0].trim().trim_matches('"').to_string(), (a, b));
            }
            _ => return Err(bad(path, line, "latitude,longitude", &format!("{},{}", f[1], f[2]))),
        }
    }
    if out.is_empty() {
        return Err(Error::input(format!(
            "{}: no zip codes (expected zip_code,latitude,longitude rows)",
            path.display()
        )));
    }
    Ok(out)
}

/// Every movie's genres, in `u.item`'s order, as a list column `genres`.
fn genre_lists(movies: &[Movie]) -> Column {
    let mut offsets = vec![0];
    let mut ids = Vec::new();
    for m in movies {
        ids.extend(m.genres.iter().cloned());
        offsets.push(ids.len());
    }
    crate::data::table::IdLists { offsets, ids: reco_runtime::artifact::spec::Ids::Str(ids) }.to_column("genres")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_lose_their_year_suffix() {
        assert_eq!(title_and_year("Toy Story (1995)"), ("Toy Story".into(), Some(1995)));
        assert_eq!(title_and_year("Se7en (Seven) (1995)"), ("Se7en (Seven)".into(), Some(1995)));
        assert_eq!(title_and_year("unknown"), ("unknown".into(), None));
    }
}
