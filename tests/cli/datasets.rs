//! `reco-cli datasets`: `synth` is reproducible from its seed; `import movielens-100k` reads the
//! GroupLens files into raw tables that a recipe prepares.

use crate::support::{ok, reco};

#[test]
fn same_seed_gives_byte_identical_synthetic_data() {
    let dir = tempfile::tempdir().unwrap();
    for out in ["a", "b"] {
        ok(reco(&["datasets", "synth", "--out", out, "--users", "30", "--places", "20", "--days", "7"], dir.path()));
    }
    for t in ["users.parquet", "places.parquet", "interactions.parquet"] {
        assert_eq!(
            std::fs::read(dir.path().join("a").join(t)).unwrap(),
            std::fs::read(dir.path().join("b").join(t)).unwrap(),
            "{t}"
        );
    }
}

#[test]
fn movielens_grouplens_files_import_as_raw_tables_and_a_recipe_labels_them_by_rating() {
    let dir = tempfile::tempdir().unwrap();
    let ml = dir.path().join("ml");
    std::fs::create_dir_all(&ml).unwrap();
    let mut data = String::new();
    for d in 0..20i64 {
        let t = 880_000_000 + d * 86_400;
        data.push_str(&format!("1\t1\t5\t{t}\n1\t2\t2\t{}\n2\t2\t4\t{}\n2\t3\t1\t{}\n", t + 9, t + 60, t + 99));
    }
    std::fs::write(ml.join("u.data"), data).unwrap();
    std::fs::write(ml.join("u.user"), "1|24|M|technician|85711\n2|53|F|other|T8H1N\n").unwrap();
    std::fs::write(ml.join("u.genre"), "unknown|0\nAction|1\nComedy|2\n\n").unwrap();
    // Latin-1 title (0xE9 = é), as GroupLens ships u.item.
    let mut item = b"1|Toy Story (1995)|01-Jan-1995||http://x|0|0|1\n2|Les Mis".to_vec();
    item.extend([0xE9]);
    item.extend(b"rables (1995)|01-Jan-1995||http://x|0|1|1\n3|Heat (1995)|01-Jan-1995||http://x|0|1|0\n");
    std::fs::write(ml.join("u.item"), item).unwrap();
    std::fs::write(ml.join("zipcodes.csv"), "zip_code,latitude,longitude,city\n85711,32.2,-110.9,Tucson\n").unwrap();
    let o =
        ok(reco(&["datasets", "import", "movielens-100k", "--from", "ml", "--out", "tables", "--json"], dir.path()));
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!((v["users"].as_u64(), v["places"].as_u64(), v["interactions"].as_u64()), (Some(2), Some(3), Some(80)));
    // The Canadian zip code has no coordinates: one user with a home.
    assert_eq!((v["users_with_home"].as_u64(), v["layout"].as_str()), (Some(1), Some("grouplens")));
    let places = reco::data::table::Table::file(&dir.path().join("tables/places.parquet")).unwrap();
    let reco_runtime::artifact::spec::Ids::Str(titles) = places.ids("title").unwrap() else { panic!("titles") };
    assert_eq!(titles[1], "Les Misérables");
    let reco_runtime::artifact::spec::Ids::Str(genre) = places.ids("genre").unwrap() else { panic!("genre") };
    assert_eq!(genre, ["Comedy", "Action", "Action"]);
    std::fs::write(
        dir.path().join("r.toml"),
        "name = \"ml\"\n[data]\nsource = \"files\"\ndir = \"tables\"\npositive_rating = 4\n\
         [data.places]\ncolumns = { place = \"item_id\", category = \"genre\" }\n\
         [data.interactions]\ncolumns = { place = \"item_id\" }\n",
    )
    .unwrap();
    let o = ok(reco(&["prepare", "--recipe", "r.toml", "--out", "out", "--json"], dir.path()));
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["labels"]["kind"], "rating");
    // Movies have no coordinates: no context, no distance feature.
    assert_eq!(v["context"], serde_json::Value::Null);
    assert!(!v["features"].as_array().unwrap().iter().any(|f| f == "distance_km"));
}
