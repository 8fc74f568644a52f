//! The bad-input matrix: every subcommand, fed what users really get wrong. Each case must
//! exit 2 with exactly one stderr line naming the file / column / value / flag at fault
//! (`needles`), and leave the case directory byte-for-byte as it was (nothing written,
//! nothing overwritten, no temp files left).

use std::path::Path;

use super::common::{changed, copy_dir, edit, read_json, reco, repo, snapshot, tiny_run, write_json};

/// One bad input.
struct Case {
    name: &'static str,
    /// Breaks something in the case directory (which starts as `run/`, `r.toml`, `raw/`, `f.toml`).
    setup: fn(&Path),
    args: &'static [&'static str],
    /// Substrings the error line must contain.
    needles: &'static [&'static str],
}

use crate::support::{PLACES, USERS, interactions};

/// The starting point of every case: a finished tiny run, its recipe, and valid CSV tables with
/// a recipe that reads them.
fn base(dir: &Path) {
    copy_dir(tiny_run(), &dir.join("run"));
    std::fs::copy(repo().join("recipes/tiny.toml"), dir.join("r.toml")).unwrap();
    let raw = dir.join("raw");
    std::fs::create_dir_all(&raw).unwrap();
    std::fs::write(raw.join("users.csv"), USERS).unwrap();
    std::fs::write(raw.join("places.csv"), PLACES).unwrap();
    std::fs::write(raw.join("interactions.csv"), interactions()).unwrap();
    std::fs::write(
        dir.join("f.toml"),
        "name = \"case\"\n[data]\nsource = \"files\"\ndir = \"raw\"\n[prepare]\nnegatives_per_positive = 1\n",
    )
    .unwrap();
}

fn none(_: &Path) {}

/// Edits the tiny recipe copy.
fn recipe(dir: &Path, from: &str, to: &str) {
    edit(&dir.join("r.toml"), from, to);
}

fn inter(dir: &Path, text: &str) {
    std::fs::write(dir.join("raw/interactions.csv"), text).unwrap();
}

fn places(dir: &Path, text: &str) {
    std::fs::write(dir.join("raw/places.csv"), text).unwrap();
}

fn manifest(dir: &Path, stage: &str, f: impl Fn(&mut serde_json::Value)) {
    let p = dir.join("run").join(stage).join("manifest.json");
    let mut m = read_json(&p);
    f(&mut m);
    write_json(&p, &m);
}

/// `rows.csv` with the given text.
fn rows_csv(dir: &Path, text: &str) {
    std::fs::write(dir.join("rows.csv"), text).unwrap();
}

/// [`model_rows`] with the cell of `column` in data row `row` (0-based) replaced by `value`.
fn model_rows_with(dir: &Path, n: usize, row: usize, column: &str, value: &str) {
    model_rows(dir, n);
    let text = std::fs::read_to_string(dir.join("rows.csv")).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let col = lines[0].split(',').position(|c| c == column).unwrap();
    let mut cells: Vec<String> = lines[row + 1].split(',').map(str::to_string).collect();
    cells[col] = value.to_string();
    lines[row + 1] = cells.join(",");
    rows_csv(dir, &(lines.join("\n") + "\n"));
}

/// `rows.csv` with every model input column of the tiny run's feature spec and `n` rows of
/// valid values (ids 1, numbers 0, label alternating).
fn model_rows(dir: &Path, n: usize) {
    let spec = read_json(&dir.join("run/features/feature_spec.json"));
    let names = |k: &str| {
        spec[k].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().to_string()).collect::<Vec<_>>()
    };
    let (cat, num) = (names("categorical"), names("numeric"));
    let mut text = cat.iter().chain(&num).cloned().collect::<Vec<_>>().join(",") + ",label\n";
    for r in 0..n {
        let row: Vec<String> = cat.iter().map(|_| "1".to_string()).chain(num.iter().map(|_| "0".to_string())).collect();
        text.push_str(&format!("{},{}\n", row.join(","), r % 2));
    }
    rows_csv(dir, &text);
}

/// A small CSV of model inputs written by `predict`'s own reader's format: the test split's
/// columns from `eval` (made by copying a real parquet file is enough for most cases).
fn test_copy(dir: &Path) {
    std::fs::copy(dir.join("run/features/test.parquet"), dir.join("test.parquet")).unwrap();
}

/// Overwrites the first value of tensor `tensor` in `run/<stage>/model.safetensors` with NaN and
/// records the new hash and size in the manifest, so the hash check passes and the loader
/// itself must notice.
fn poison(dir: &Path, stage: &str, tensor: &str) {
    let p = dir.join("run").join(stage).join("model.safetensors");
    let mut b = std::fs::read(&p).unwrap();
    let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&b[8..8 + n]).unwrap();
    let start = 8 + n + header[tensor]["data_offsets"][0].as_u64().unwrap() as usize;
    b[start..start + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(&p, &b).unwrap();
    let (sha, len) = (reco_runtime::artifact::sha256_bytes(&b), b.len());
    manifest(dir, stage, |m| m["files"]["model.safetensors"] = serde_json::json!({ "sha256": sha, "bytes": len }));
}

/// Adds the codes tensor of the other width (zeros) beside a table's own, hashes kept matching.
fn add_other_codes(dir: &Path, stage: &str, col: &str) {
    let p = dir.join("run").join(stage).join("model.safetensors");
    let b = std::fs::read(&p).unwrap();
    let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&b[8..8 + n]).unwrap();
    let four = header.contains_key(&format!("embedding.{col}.codes4"));
    let own = &header[&format!("embedding.{col}.{}", if four { "codes4" } else { "codes" })]["shape"];
    let rows = own[0].as_u64().unwrap() as usize;
    let (name, width) = if four { ("codes", 8) } else { ("codes4", 4) };
    let mut data = b[8 + n..].to_vec();
    let start = data.len();
    data.resize(start + rows * width, 0);
    header.insert(
        format!("embedding.{col}.{name}"),
        serde_json::json!({ "dtype": "U8", "shape": [rows, width], "data_offsets": [start, data.len()] }),
    );
    let mut text = serde_json::to_vec(&header).unwrap();
    text.resize(text.len().div_ceil(8) * 8, b' ');
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend(text);
    out.extend(data);
    std::fs::write(&p, &out).unwrap();
    let (sha, len) = (reco_runtime::artifact::sha256_bytes(&out), out.len());
    manifest(dir, stage, |m| m["files"]["model.safetensors"] = serde_json::json!({ "sha256": sha, "bytes": len }));
}

/// A minimal GroupLens MovieLens directory `ml/` whose `u.data` is `data` and `u.user` is `users`.
fn movielens(dir: &Path, data: &str, users: &str) {
    let ml = dir.join("ml");
    std::fs::create_dir_all(&ml).unwrap();
    std::fs::write(ml.join("u.data"), data).unwrap();
    std::fs::write(ml.join("u.user"), users).unwrap();
    std::fs::write(ml.join("u.genre"), "unknown|0\nAction|1\n\n").unwrap();
    std::fs::write(ml.join("u.item"), "1|Heat (1995)|01-Jan-1995||http://x|0|1\n").unwrap();
    std::fs::write(ml.join("zipcodes.csv"), "zip_code,latitude,longitude,city\n85711,32.2,-110.9,Tucson\n").unwrap();
}

const ML_USERS: &str = "1|24|M|technician|85711\n";

const CASES: &[Case] = &[
    // ---- recipes and flags (refused before any stage runs) ----
    Case {
        name: "recipe file missing",
        setup: none,
        args: &["run", "nope.toml", "--out", "o"],
        needles: &["nope.toml"],
    },
    Case {
        name: "recipe not TOML",
        setup: |d| recipe(d, "name = \"tiny\"", "name = "),
        args: &["run", "r.toml", "--out", "o"],
        needles: &["r.toml"],
    },
    Case {
        name: "unknown recipe key",
        setup: |d| recipe(d, "epochs = 2", "epoch = 2"),
        args: &["run", "r.toml", "--out", "o"],
        needles: &["epoch"],
    },
    Case {
        name: "zero learning rate",
        setup: |d| recipe(d, "epochs = 2", "epochs = 2\nlearning_rate = 0.0"),
        args: &["run", "r.toml", "--out", "o"],
        needles: &["learning_rate"],
    },
    Case {
        name: "nan learning rate",
        setup: |d| recipe(d, "epochs = 2", "epochs = 2\nlearning_rate = nan"),
        args: &["run", "r.toml", "--out", "o"],
        needles: &["learning_rate"],
    },
    Case {
        name: "nan weight decay",
        setup: |d| recipe(d, "epochs = 2", "epochs = 2\nweight_decay = nan"),
        args: &["run", "r.toml", "--out", "o"],
        needles: &["weight_decay"],
    },
    Case {
        name: "negative weight decay",
        setup: |d| recipe(d, "epochs = 2", "epochs = 2\nweight_decay = -1.0"),
        args: &["run", "r.toml", "--out", "o"],
        needles: &["weight_decay"],
    },
    Case {
        name: "zero epochs",
        setup: |d| recipe(d, "epochs = 2", "epochs = 0"),
        args: &["run", "r.toml", "--out", "o"],
        needles: &["epochs"],
    },
    Case {
        name: "3-bit embedding tables",
        setup: |d| recipe(d, "max_auc_drop = 0.02", "max_auc_drop = 0.02\nembedding_bits = 3"),
        args: &["run", "r.toml", "--out", "o"],
        needles: &["embedding_bits", "`3`: expected \"auto\", 8 or 4"],
    },
    Case {
        name: "an embedding table the recipe cannot have",
        setup: |d| recipe(d, "max_auc_drop = 0.02", "max_auc_drop = 0.02\nembedding_table_bits = { nope = 4 }"),
        args: &["run", "r.toml", "--out", "o"],
        needles: &["quantize.embedding_table_bits", "`nope`", "user_id"],
    },
    Case {
        name: "embedding bits as a fraction",
        setup: |d| recipe(d, "max_auc_drop = 0.02", "max_auc_drop = 0.02\nembedding_bits = 4.0"),
        args: &["run", "r.toml", "--out", "o"],
        needles: &["embedding_bits", "4.0: expected \"auto\", 8 or 4"],
    },
    Case {
        name: "embedding bits as a string",
        setup: |d| recipe(d, "max_auc_drop = 0.02", "max_auc_drop = 0.02\nembedding_bits = \"4\""),
        args: &["run", "r.toml", "--out", "o"],
        needles: &["embedding_bits", "\"4\"", "bits as a number"],
    },
    Case {
        name: "zero batch size",
        setup: |d| recipe(d, "batch_size = 256", "batch_size = 0"),
        args: &["run", "r.toml", "--out", "o"],
        needles: &["batch_size"],
    },
    Case {
        name: "zero shuffle buffer",
        setup: |d| recipe(d, "batch_size = 256", "batch_size = 256\nshuffle_buffer_rows = 0"),
        args: &["run", "r.toml", "--out", "o"],
        needles: &["shuffle_buffer_rows"],
    },
    Case {
        name: "negative max rows in memory",
        setup: |d| recipe(d, "batch_size = 256", "batch_size = 256\nmax_rows_in_memory = -1"),
        args: &["run", "r.toml", "--out", "o"],
        needles: &["max_rows_in_memory"],
    },
    Case {
        name: "zero-width hidden layer",
        setup: |d| recipe(d, "hidden = [32, 16]", "hidden = [32, 0]"),
        args: &["run", "r.toml", "--out", "o"],
        needles: &["hidden"],
    },
    Case {
        name: "unknown interaction term",
        setup: |d| recipe(d, "hidden = [32, 16]", "hidden = [32, 16]\ninteraction = \"cross\""),
        args: &["run", "r.toml", "--out", "o"],
        needles: &["r.toml", "interaction = \"cross\"", "`dot`"],
    },
    Case {
        name: "one calibration row",
        setup: |d| recipe(d, "calibration_rows = 300", "calibration_rows = 1"),
        args: &["run", "r.toml", "--out", "o"],
        needles: &["calibration_rows"],
    },
    Case {
        name: "zero ranking queries",
        setup: |d| recipe(d, "ranking_queries = 200", "ranking_queries = 0"),
        args: &["run", "r.toml", "--out", "o"],
        needles: &["ranking_queries"],
    },
    Case {
        name: "zero ranking candidates",
        setup: |d| recipe(d, "ranking_candidates = 19", "ranking_candidates = 0"),
        args: &["run", "r.toml", "--out", "o"],
        needles: &["ranking_candidates"],
    },
    Case {
        name: "negative radius",
        setup: |d| recipe(d, "[prepare]", "[prepare]\nradius_km = -1.0"),
        args: &["run", "r.toml", "--out", "o"],
        needles: &["radius_km"],
    },
    Case {
        name: "fractions over one",
        setup: |d| recipe(d, "[prepare]", "[prepare]\nvalid_fraction = 0.6\ntest_fraction = 0.6"),
        args: &["run", "r.toml", "--out", "o"],
        needles: &["fraction"],
    },
    Case {
        name: "student ratio zero",
        setup: |d| recipe(d, "[quantize]", "[distill]\nratio = 0.0\n[quantize]"),
        args: &["run", "r.toml", "--out", "o"],
        needles: &["ratio"],
    },
    Case {
        name: "negative temperature",
        setup: |d| recipe(d, "[quantize]", "[distill]\ntemperature = -1.0\n[quantize]"),
        args: &["run", "r.toml", "--out", "o"],
        needles: &["temperature"],
    },
    Case {
        name: "alpha above one",
        setup: |d| recipe(d, "[quantize]", "[distill]\nalpha = 2.0\n[quantize]"),
        args: &["run", "r.toml", "--out", "o"],
        needles: &["alpha"],
    },
    Case {
        name: "nan INT8 gate",
        setup: |d| recipe(d, "max_auc_drop = 0.02", "max_auc_drop = nan"),
        args: &["run", "r.toml", "--out", "o"],
        needles: &["max_auc_drop"],
    },
    Case {
        name: "unknown calibrator",
        setup: |d| recipe(d, "[quantize]", "[quantize]\ncalibrator = \"magic\""),
        args: &["run", "r.toml", "--out", "o"],
        needles: &["magic"],
    },
    Case {
        name: "nan quality gate",
        setup: |d| recipe(d, "[quantize]", "[gates]\nmin_student_auc_retention = nan\n[quantize]"),
        args: &["run", "r.toml", "--out", "o"],
        needles: &["min_student_auc_retention"],
    },
    Case {
        name: "unknown data source",
        setup: |d| recipe(d, "source = \"synth\"", "source = \"cloud\""),
        args: &["run", "r.toml", "--out", "o"],
        needles: &["cloud"],
    },
    Case {
        name: "zero synthetic users",
        setup: |d| recipe(d, "users = 150", "users = 0"),
        args: &["run", "r.toml", "--out", "o"],
        needles: &["users"],
    },
    Case {
        name: "unknown backend",
        setup: none,
        args: &["run", "r.toml", "--out", "o", "--backend", "tpu"],
        needles: &["tpu"],
    },
    Case {
        name: "zero threads",
        setup: none,
        args: &["run", "r.toml", "--out", "o", "--threads", "0"],
        needles: &["threads"],
    },
    Case {
        name: "a million threads",
        setup: none,
        args: &["run", "r.toml", "--out", "o", "--threads", "1000000"],
        needles: &["threads"],
    },
    Case {
        name: "seed not a number",
        setup: none,
        args: &["run", "r.toml", "--out", "o", "--seed", "abc"],
        needles: &["--seed", "abc"],
    },
    Case {
        name: "unknown subcommand flag",
        setup: none,
        args: &["run", "r.toml", "--outt", "o"],
        needles: &["--outt"],
    },
    Case {
        name: "run --out is a file",
        setup: none,
        args: &["run", "r.toml", "--out", "r.toml"],
        needles: &["r.toml"],
    },
    // ---- raw tables (prepare) ----
    Case {
        name: "missing id column",
        setup: |d| inter(d, "uid,place_id,timestamp\n1,10,1767571200\n"),
        args: &["prepare", "--recipe", "f.toml", "--out", "o"],
        needles: &["interactions.csv", "user_id"],
    },
    Case {
        name: "place id not an integer",
        setup: |d| inter(d, &interactions().replacen("1,10,", "1,ten,", 1)),
        args: &["prepare", "--recipe", "f.toml", "--out", "o"],
        needles: &["interactions.csv", "place_id"],
    },
    Case {
        name: "empty interactions",
        setup: |d| inter(d, "user_id,place_id,timestamp\n"),
        args: &["prepare", "--recipe", "f.toml", "--out", "o"],
        needles: &["interactions.csv", "empty"],
    },
    Case {
        name: "nan latitude",
        setup: |d| places(d, &PLACES.replacen("52.51", "NaN", 1)),
        args: &["prepare", "--recipe", "f.toml", "--out", "o"],
        needles: &["places.csv", "lat"],
    },
    Case {
        name: "latitude out of range",
        setup: |d| places(d, &PLACES.replacen("52.51", "95.0", 1)),
        args: &["prepare", "--recipe", "f.toml", "--out", "o"],
        needles: &["places.csv", "lat", "95"],
    },
    Case {
        name: "unknown place referenced",
        setup: |d| inter(d, &interactions().replacen("1,10,", "1,99,", 1)),
        args: &["prepare", "--recipe", "f.toml", "--out", "o"],
        needles: &["99"],
    },
    Case {
        name: "duplicate place ids",
        setup: |d| places(d, &format!("{PLACES}10,52.5,13.4,1,2,4.0\n")),
        args: &["prepare", "--recipe", "f.toml", "--out", "o"],
        needles: &["places.csv", "10"],
    },
    Case {
        name: "unreadable timestamp",
        setup: |d| inter(d, &interactions().replacen("1767571200", "yesterday", 1)),
        args: &["prepare", "--recipe", "f.toml", "--out", "o"],
        needles: &["timestamp", "yesterday"],
    },
    Case {
        name: "timestamp in milliseconds read as seconds",
        setup: |d| inter(d, &interactions().replacen("1767571200", "1767571200000", 1)),
        args: &["prepare", "--recipe", "f.toml", "--out", "o"],
        needles: &["timestamp", "1767571200000"],
    },
    Case {
        name: "duplicate column name",
        setup: |d| inter(d, &interactions().replace("timestamp\n", "timestamp,user_id\n").replace("00\n", "00,2\n")),
        args: &["prepare", "--recipe", "f.toml", "--out", "o"],
        needles: &["interactions.csv", "two columns", "user_id"],
    },
    Case {
        name: "ragged CSV row",
        setup: |d| inter(d, &format!("{}1,10,1767571200,extra,fields\n", interactions())),
        args: &["prepare", "--recipe", "f.toml", "--out", "o"],
        needles: &["interactions.csv", "line"],
    },
    Case {
        name: "label not 0/1",
        setup: |d| inter(d, "user_id,place_id,timestamp,label\n1,10,1767571200,2\n2,11,1767657600,0\n"),
        args: &["prepare", "--recipe", "f.toml", "--out", "o"],
        needles: &["label", "2"],
    },
    Case {
        name: "mapped column absent",
        setup: |d| {
            std::fs::write(d.join("f.toml"), "name = \"case\"\n[data]\nsource = \"files\"\ndir = \"raw\"\n[data.interactions]\ncolumns = { user = \"uid\" }\n").unwrap()
        },
        args: &["prepare", "--recipe", "f.toml", "--out", "o"],
        needles: &["uid"],
    },
    Case {
        name: "interactions path missing",
        setup: |d| std::fs::remove_file(d.join("raw/interactions.csv")).unwrap(),
        args: &["prepare", "--recipe", "f.toml", "--out", "o"],
        needles: &["interactions"],
    },
    Case {
        name: "csv and parquet of one table",
        setup: |d| std::fs::copy(d.join("run/raw/places.parquet"), d.join("raw/places.parquet")).map(drop).unwrap(),
        args: &["prepare", "--recipe", "f.toml", "--out", "o"],
        needles: &["places"],
    },
    Case {
        name: "truncated parquet table",
        setup: |d| {
            std::fs::remove_file(d.join("raw/interactions.csv")).unwrap();
            let b = std::fs::read(d.join("run/raw/interactions.parquet")).unwrap();
            std::fs::write(d.join("raw/interactions.parquet"), &b[..b.len() / 2]).unwrap();
        },
        args: &["prepare", "--recipe", "f.toml", "--out", "o"],
        needles: &["interactions.parquet"],
    },
    Case {
        name: "glob matching nothing",
        setup: |d| {
            std::fs::write(
                d.join("f.toml"),
                "name = \"case\"\n[data]\nsource = \"files\"\n[data.interactions]\npath = \"logs/*.parquet\"\n",
            )
            .unwrap()
        },
        args: &["prepare", "--recipe", "f.toml", "--out", "o"],
        needles: &["logs/*.parquet"],
    },
    Case {
        name: "all visits at one instant",
        setup: |d| inter(d, "user_id,place_id,timestamp\n1,10,1767571200\n2,11,1767571200\n1,11,1767571200\n"),
        args: &["prepare", "--recipe", "f.toml", "--out", "o"],
        needles: &["timestamp"],
    },
    Case {
        name: "unknown time zone",
        setup: |d| edit(&d.join("f.toml"), "dir = \"raw\"", "dir = \"raw\"\ntimezone = \"Mars/Olympus\""),
        args: &["prepare", "--recipe", "f.toml", "--out", "o"],
        needles: &["Mars/Olympus"],
    },
    // ---- artifacts (inspect, eval, bench, export, predict) ----
    Case { name: "artifact dir missing", setup: none, args: &["inspect", "run/nope"], needles: &["run/nope"] },
    Case {
        name: "no manifest",
        setup: |d| std::fs::remove_file(d.join("run/teacher/manifest.json")).unwrap(),
        args: &["inspect", "run/teacher"],
        needles: &["manifest.json"],
    },
    Case {
        name: "manifest not JSON",
        setup: |d| std::fs::write(d.join("run/teacher/manifest.json"), "{ not json").unwrap(),
        args: &["inspect", "run/teacher"],
        needles: &["manifest.json"],
    },
    Case {
        name: "newer format version",
        setup: |d| manifest(d, "teacher", |m| m["format_version"] = 99.into()),
        args: &["inspect", "run/teacher"],
        needles: &["format_version", "99"],
    },
    Case {
        name: "unknown kind",
        setup: |d| manifest(d, "teacher", |m| m["kind"] = "wizard".into()),
        args: &["inspect", "run/teacher"],
        needles: &["manifest.json", "wizard"],
    },
    Case {
        name: "unknown status",
        setup: |d| manifest(d, "teacher", |m| m["status"] = "maybe".into()),
        args: &["inspect", "run/teacher"],
        needles: &["manifest.json", "maybe"],
    },
    Case {
        name: "INT8 kind without quantization",
        setup: |d| {
            manifest(d, "teacher-int8", |m| {
                m.as_object_mut().unwrap().remove("quantization");
            })
        },
        args: &["eval", "run/teacher-int8", "--data", "run/features/test.parquet"],
        needles: &["quantization"],
    },
    Case {
        name: "manifest lists a file outside the artifact",
        setup: |d| {
            manifest(d, "teacher", |m| m["files"]["../r.toml"] = serde_json::json!({"sha256": "00", "bytes": 1}))
        },
        args: &["inspect", "run/teacher"],
        needles: &["../r.toml"],
    },
    Case {
        name: "modified weights",
        setup: |d| {
            let p = d.join("run/teacher/model.safetensors");
            let mut b = std::fs::read(&p).unwrap();
            let n = b.len() - 3;
            b[n] ^= 1;
            std::fs::write(&p, b).unwrap();
        },
        args: &["eval", "run/teacher", "--data", "run/features/test.parquet"],
        needles: &["model.safetensors", "sha256"],
    },
    Case {
        name: "weights missing",
        setup: |d| std::fs::remove_file(d.join("run/teacher/model.safetensors")).unwrap(),
        args: &["predict", "--model", "run/teacher", "--data", "run/features/test.parquet", "--out", "p.parquet"],
        needles: &["model.safetensors"],
    },
    Case {
        name: "eval data missing",
        setup: none,
        args: &["eval", "run/teacher", "--data", "nope.parquet"],
        needles: &["nope.parquet"],
    },
    Case {
        name: "eval data without labels",
        setup: |d| rows_csv(d, "user_id,place_id\n1,2\n"),
        args: &["eval", "run/teacher", "--data", "rows.csv"],
        needles: &["rows.csv"],
    },
    Case {
        name: "ranking set without query_id",
        setup: test_copy,
        args: &["eval", "run/teacher", "--data", "run/features/test.parquet", "--ranking", "test.parquet"],
        needles: &["test.parquet", "query_id"],
    },
    Case {
        name: "precompute on features without the place snapshot",
        setup: |d| std::fs::remove_file(d.join("run/features/places.parquet")).unwrap(),
        args: &["precompute", "--model", "run/teacher-int8", "--features", "run/features", "--out", "top.parquet"],
        needles: &["places.parquet", "prepare again"],
    },
    Case {
        name: "precompute --k 0",
        setup: none,
        args: &[
            "precompute",
            "--model",
            "run/teacher-int8",
            "--features",
            "run/features",
            "--out",
            "t.parquet",
            "--k",
            "0",
        ],
        needles: &["--k"],
    },
    Case {
        name: "precompute --out onto a feature file",
        setup: none,
        args: &[
            "precompute",
            "--model",
            "run/teacher-int8",
            "--features",
            "run/features",
            "--out",
            "run/features/places.parquet",
        ],
        needles: &["--out"],
    },
    Case {
        name: "serve a model that fails verification",
        setup: |d| {
            let p = d.join("run/teacher/model.safetensors");
            let mut b = std::fs::read(&p).unwrap();
            b[100] ^= 1;
            std::fs::write(&p, b).unwrap();
        },
        args: &["serve", "--model", "run/teacher", "--addr", "127.0.0.1:0"],
        needles: &["sha256 mismatch"],
    },
    Case {
        name: "predict --out onto its input",
        setup: test_copy,
        args: &["predict", "--model", "run/teacher", "--data", "test.parquet", "--out", "test.parquet"],
        needles: &["--out"],
    },
    Case {
        name: "predict --out inside the artifact",
        setup: none,
        args: &[
            "predict",
            "--model",
            "run/teacher",
            "--data",
            "run/features/test.parquet",
            "--out",
            "run/teacher/p.parquet",
        ],
        needles: &["--out"],
    },
    Case {
        name: "run --out inside an artifact",
        setup: none,
        args: &["run", "r.toml", "--out", "run/teacher/nested"],
        needles: &["--out", "run/teacher", "artifact"],
    },
    Case {
        name: "run --metrics-out is a directory",
        setup: none,
        args: &["run", "r.toml", "--out", "o", "--metrics-out", "run"],
        needles: &["--metrics-out", "directory"],
    },
    Case {
        name: "predict --out is a directory",
        setup: |d| std::fs::create_dir_all(d.join("scores")).unwrap(),
        args: &["predict", "--model", "run/teacher", "--data", "run/features/test.parquet", "--out", "scores"],
        needles: &["scores"],
    },
    Case {
        name: "export --out is a directory",
        setup: |d| std::fs::create_dir_all(d.join("onnx")).unwrap(),
        args: &["export", "--model", "run/teacher", "--out", "onnx"],
        needles: &["onnx"],
    },
    Case {
        name: "predict data missing a column",
        setup: |d| rows_csv(d, "user_id,label\n1,0\n"),
        args: &["predict", "--model", "run/teacher", "--data", "rows.csv", "--out", "p.parquet"],
        needles: &["rows.csv"],
    },
    Case {
        name: "export --out onto the weights",
        setup: none,
        args: &["export", "--model", "run/teacher", "--out", "run/teacher/model.safetensors"],
        needles: &["--out"],
    },
    Case {
        name: "export --out onto the manifest",
        setup: none,
        args: &["export", "--model", "run/teacher", "--out", "run/teacher/manifest.json"],
        needles: &["--out"],
    },
    Case {
        name: "export a failed artifact",
        setup: |d| manifest(d, "teacher", |m| m["status"] = "failed".into()),
        args: &["export", "--model", "run/teacher", "--out", "t.onnx"],
        needles: &["failed"],
    },
    Case {
        name: "bench batch size zero",
        setup: none,
        args: &["bench", "run/teacher", "--batch-sizes", "0"],
        needles: &["batch"],
    },
    Case {
        name: "bench batch size huge",
        setup: none,
        args: &["bench", "run/teacher", "--batch-sizes", "100000000"],
        needles: &["batch"],
    },
    Case {
        name: "bench zero seconds",
        setup: none,
        args: &["bench", "run/teacher", "--seconds", "0"],
        needles: &["seconds"],
    },
    Case { name: "bench model missing", setup: none, args: &["bench", "run/nope"], needles: &["run/nope"] },
    // ---- training stages (train, distill, quantize) ----
    Case {
        name: "train without features",
        setup: none,
        args: &["train", "--recipe", "r.toml", "--out", "o"],
        needles: &["features"],
    },
    Case {
        name: "train --epochs 0",
        setup: none,
        args: &["train", "--recipe", "r.toml", "--out", "run", "--epochs", "0"],
        needles: &["epochs"],
    },
    Case {
        name: "train negative learning rate",
        setup: none,
        args: &["train", "--recipe", "r.toml", "--out", "run", "--learning-rate=-1"],
        needles: &["learning"],
    },
    Case {
        name: "distill an INT8 teacher",
        setup: none,
        args: &["distill", "--teacher", "run/teacher-int8", "--out", "o"],
        needles: &["INT8", "run/teacher-int8"],
    },
    Case {
        name: "distill a student as teacher",
        setup: none,
        args: &["distill", "--teacher", "run/student", "--out", "o"],
        needles: &["student"],
    },
    Case {
        name: "distill ratio zero",
        setup: none,
        args: &["distill", "--teacher", "run/teacher", "--out", "o", "--ratio", "0"],
        needles: &["ratio"],
    },
    Case {
        name: "distill temperature zero",
        setup: none,
        args: &["distill", "--teacher", "run/teacher", "--out", "o", "--temperature", "0"],
        needles: &["temperature"],
    },
    Case {
        name: "distill --out inside the teacher",
        setup: none,
        args: &["distill", "--teacher", "run/teacher", "--out", "run/teacher"],
        needles: &["--out"],
    },
    Case {
        name: "quantize an INT8 model",
        setup: none,
        args: &[
            "quantize",
            "--model",
            "run/teacher-int8",
            "--calibration",
            "run/features/calibration.parquet",
            "--out",
            "q",
        ],
        needles: &["run/teacher-int8", "INT8"],
    },
    Case {
        name: "quantize --out onto its parent",
        setup: none,
        args: &[
            "quantize",
            "--model",
            "run/teacher",
            "--calibration",
            "run/features/calibration.parquet",
            "--out",
            "run/teacher",
        ],
        needles: &["--out"],
    },
    Case {
        name: "quantize calibration missing",
        setup: none,
        args: &["quantize", "--model", "run/teacher", "--calibration", "nope.parquet", "--out", "q"],
        needles: &["nope.parquet"],
    },
    Case {
        name: "quantize nan gate",
        setup: none,
        args: &[
            "quantize",
            "--model",
            "run/teacher",
            "--calibration",
            "run/features/calibration.parquet",
            "--out",
            "q",
            "--max-auc-drop",
            "nan",
        ],
        needles: &["max-auc-drop"],
    },
    Case {
        name: "quantize keep-float out of range",
        setup: none,
        args: &[
            "quantize",
            "--model",
            "run/teacher",
            "--calibration",
            "run/features/calibration.parquet",
            "--out",
            "q",
            "--keep-float",
            "9",
        ],
        needles: &["9"],
    },
    Case {
        name: "quantize a five-row calibration set",
        setup: |d| model_rows(d, 5),
        args: &["quantize", "--model", "run/teacher", "--calibration", "rows.csv", "--out", "q"],
        needles: &["rows.csv"],
    },
    Case {
        name: "quantize weight bits 3",
        setup: none,
        args: &[
            "quantize",
            "--model",
            "run/teacher",
            "--calibration",
            "run/features/calibration.parquet",
            "--out",
            "q",
            "--weight-bits",
            "3",
        ],
        needles: &["3"],
    },
    // ---- datasets ----
    Case {
        name: "synth zero users",
        setup: none,
        args: &["datasets", "synth", "--out", "s", "--users", "0"],
        needles: &["users"],
    },
    Case {
        name: "synth --out is a file",
        setup: none,
        args: &["datasets", "synth", "--out", "r.toml"],
        needles: &["r.toml"],
    },
    Case {
        name: "import from a missing dir",
        setup: none,
        args: &["datasets", "import", "movielens-100k", "--from", "nope", "--out", "m"],
        needles: &["nope"],
    },
    // ---- found by a second probe: data loss through --out, garbage weights, sizes ----
    Case {
        name: "import --out onto its own input",
        setup: |d| {
            std::fs::write(d.join("raw/ml-100k.inter"), "user_id:token\titem_id:token\trating:float\ttimestamp:float\n")
                .unwrap()
        },
        args: &["datasets", "import", "movielens-100k", "--from", "raw", "--out", "raw"],
        needles: &["raw"],
    },
    Case {
        name: "quantize --out onto a user's folder",
        setup: |d| {
            std::fs::create_dir_all(d.join("mine")).unwrap();
            std::fs::write(d.join("mine/notes.txt"), "x").unwrap();
        },
        args: &[
            "quantize",
            "--model",
            "run/teacher",
            "--calibration",
            "run/features/calibration.parquet",
            "--out",
            "mine",
        ],
        needles: &["mine", "notes.txt"],
    },
    Case {
        name: "quantize --out onto the raw tables",
        setup: none,
        args: &[
            "quantize",
            "--model",
            "run/teacher",
            "--calibration",
            "run/features/calibration.parquet",
            "--out",
            "raw",
        ],
        needles: &["raw", "users.csv"],
    },
    Case {
        name: "quantize --out onto a file",
        setup: |d| std::fs::write(d.join("q8"), "hi").unwrap(),
        args: &[
            "quantize",
            "--model",
            "run/teacher",
            "--calibration",
            "run/features/calibration.parquet",
            "--out",
            "q8",
        ],
        needles: &["q8", "file"],
    },
    Case {
        name: "quantize --out onto another artifact",
        setup: none,
        args: &[
            "quantize",
            "--model",
            "run/teacher",
            "--calibration",
            "run/features/calibration.parquet",
            "--out",
            "run/student",
        ],
        needles: &["run/student", "student"],
    },
    Case {
        name: "NaN in float weights with matching hashes",
        setup: |d| poison(d, "teacher", "dense.1.weight"),
        args: &["predict", "--model", "run/teacher", "--data", "run/features/test.parquet", "--out", "p.parquet"],
        needles: &["model.safetensors", "dense.1.weight", "NaN"],
    },
    Case {
        name: "NaN in an INT8 weight scale with matching hashes",
        setup: |d| poison(d, "teacher-int8", "dense.1.weight_scale"),
        args: &["eval", "run/teacher-int8", "--data", "run/features/test.parquet"],
        needles: &["dense.1.weight_scale", "NaN"],
    },
    Case {
        name: "NaN in INT8 embedding scales",
        setup: |d| poison(d, "student-int8", "embedding.user_id.scale_bias"),
        args: &["inspect", "run/student-int8"],
        needles: &["embedding.user_id.scale_bias"],
    },
    Case {
        name: "an INT8 table stored both at 8 and at 4 bits",
        setup: |d| add_other_codes(d, "teacher-int8", "user_id"),
        args: &["predict", "--model", "run/teacher-int8", "--data", "run/features/test.parquet", "--out", "p.parquet"],
        needles: &["model.safetensors", "both", "embedding.user_id.codes4"],
    },
    Case {
        name: "an INT8 table stored otherwise than the manifest records",
        setup: |d| {
            manifest(d, "teacher-int8", |m| {
                let p = &mut m["quantization"]["embedding_precision"]["user_id"];
                *p = if *p == "int8" { "int4" } else { "int8" }.into();
            })
        },
        args: &["export", "--model", "run/teacher-int8", "--out", "m.onnx"],
        needles: &["table `user_id`", "quantization.embedding_precision says"],
    },
    Case {
        name: "unsupported activation",
        setup: |d| manifest(d, "teacher", |m| m["architecture"]["activation"] = "gelu".into()),
        args: &["predict", "--model", "run/teacher", "--data", "run/features/test.parquet", "--out", "p.parquet"],
        needles: &["activation", "gelu"],
    },
    Case {
        name: "dot interaction on unequal embedding widths",
        setup: |d| {
            manifest(d, "teacher", |m| {
                m["architecture"]["interaction"] = "dot".into();
                m["architecture"]["embedding_dims"][1] = 4.into();
            })
        },
        args: &["predict", "--model", "run/teacher", "--data", "run/features/test.parquet", "--out", "p.parquet"],
        needles: &["manifest.json", "interaction \"dot\"", "got 8 and 4"],
    },
    Case {
        name: "unknown interaction in a manifest",
        setup: |d| manifest(d, "teacher-int8", |m| m["architecture"]["interaction"] = "cross".into()),
        args: &["inspect", "run/teacher-int8"],
        needles: &["manifest.json", "cross"],
    },
    Case {
        name: "file size differs from the manifest",
        setup: |d| manifest(d, "teacher", |m| m["files"]["model.safetensors"]["bytes"] = 1.into()),
        args: &["inspect", "run/teacher"],
        needles: &["model.safetensors", "bytes"],
    },
    Case {
        name: "synth users beyond memory",
        setup: none,
        args: &["datasets", "synth", "--out", "s", "--users", "100000000000"],
        needles: &["users"],
    },
    Case {
        name: "embedding dim beyond memory",
        setup: |d| recipe(d, "id_embedding_dim = 8", "id_embedding_dim = 100000000"),
        args: &["run", "r.toml", "--out", "o"],
        needles: &["id_embedding_dim"],
    },
    Case {
        name: "hidden width beyond memory",
        setup: |d| recipe(d, "hidden = [32, 16]", "hidden = [2000000000, 16]"),
        args: &["run", "r.toml", "--out", "o"],
        needles: &["hidden"],
    },
    Case {
        name: "a billion epochs",
        setup: |d| recipe(d, "epochs = 2", "epochs = 1000000000"),
        args: &["run", "r.toml", "--out", "o"],
        needles: &["epochs"],
    },
    Case {
        name: "retention as a percentage",
        setup: |d| recipe(d, "[quantize]", "[gates]\nmin_student_auc_retention = 98.0\n[quantize]"),
        args: &["run", "r.toml", "--out", "o"],
        needles: &["min_student_auc_retention", "98"],
    },
    Case {
        name: "negative retention",
        setup: |d| recipe(d, "[quantize]", "[gates]\nmin_student_ndcg_retention = -1.0\n[quantize]"),
        args: &["run", "r.toml", "--out", "o"],
        needles: &["min_student_ndcg_retention"],
    },
    Case {
        name: "fewer places than ranking candidates",
        setup: |d| recipe(d, "places = 80", "places = 10"),
        args: &["run", "r.toml", "--out", "o"],
        needles: &["places", "ranking_candidates"],
    },
    Case {
        name: "empty data dir",
        setup: |d| edit(&d.join("f.toml"), "dir = \"raw\"", "dir = \"\""),
        args: &["prepare", "--recipe", "f.toml", "--out", "o"],
        needles: &["data.dir"],
    },
    Case {
        name: "quantize ranking file without query_id",
        setup: none,
        args: &[
            "quantize",
            "--model",
            "run/teacher",
            "--calibration",
            "run/features/calibration.parquet",
            "--out",
            "q",
            "--ranking",
            "run/features/test.parquet",
        ],
        needles: &["test.parquet", "query_id"],
    },
    Case {
        name: "one text cell in a numeric predict column",
        setup: |d| model_rows_with(d, 30, 11, "distance_km", "abc"),
        args: &["predict", "--model", "run/teacher", "--data", "rows.csv", "--out", "p.parquet"],
        needles: &["rows.csv", "distance_km", "line 13", "\"abc\""],
    },
    Case {
        name: "a fractional id in an integer column",
        setup: |d| model_rows_with(d, 30, 20, "user_id", "5.5"),
        args: &["predict", "--model", "run/teacher", "--data", "rows.csv", "--out", "p.parquet"],
        needles: &["rows.csv", "user_id", "line 22", "5.5"],
    },
    Case {
        name: "import a NaN timestamp",
        setup: |d| movielens(d, "1\t1\t5\tnan\n", ML_USERS),
        args: &["datasets", "import", "movielens-100k", "--from", "ml", "--out", "m"],
        needles: &["u.data", "line 1", "timestamp"],
    },
    Case {
        name: "import a timestamp past 2200",
        setup: |d| movielens(d, "1\t1\t5\t1e30\n", ML_USERS),
        args: &["datasets", "import", "movielens-100k", "--from", "ml", "--out", "m"],
        needles: &["u.data", "timestamp", "1e30"],
    },
    Case {
        name: "import a NaN rating",
        setup: |d| movielens(d, "1\t1\tnan\t880000000\n", ML_USERS),
        args: &["datasets", "import", "movielens-100k", "--from", "ml", "--out", "m"],
        needles: &["u.data", "rating"],
    },
    Case {
        name: "import no ratings",
        setup: |d| movielens(d, "", ML_USERS),
        args: &["datasets", "import", "movielens-100k", "--from", "ml", "--out", "m"],
        needles: &["u.data", "no ratings"],
    },
    Case {
        name: "import a duplicate user",
        setup: |d| movielens(d, "1\t1\t5\t880000000\n", "1|24|M|technician|85711\n1|30|F|other|85711\n"),
        args: &["datasets", "import", "movielens-100k", "--from", "ml", "--out", "m"],
        needles: &["u.user", "line 2", "1"],
    },
    Case {
        name: "users table is a directory",
        setup: |d| {
            std::fs::remove_file(d.join("raw/users.csv")).unwrap();
            std::fs::create_dir_all(d.join("raw/users.csv")).unwrap();
        },
        args: &["prepare", "--recipe", "f.toml", "--out", "o"],
        needles: &["users.csv", "directory"],
    },
    Case {
        name: "declared feature left with an empty vocabulary",
        setup: |d| {
            let mut r = std::fs::read_to_string(d.join("f.toml")).unwrap();
            r = r.replace("[prepare]", "[[data.features]]\ntable = \"users\"\ncolumn = \"segment\"\nname = \"seg\"\nkind = \"categorical\"\nmin_count = 100000\n[prepare]");
            std::fs::write(d.join("f.toml"), r).unwrap();
        },
        args: &["prepare", "--recipe", "f.toml", "--out", "o"],
        needles: &["seg", "users.segment", "min_count"],
    },
    Case {
        name: "a Parquet file that makes polars panic (found by fuzzing)",
        setup: |d| {
            std::fs::remove_file(d.join("raw/interactions.csv")).unwrap();
            let crash = repo().join("fuzz/regressions/table_parquet/crash-7d44da7b57cadb1e717f355a07ad700847a3fb1c");
            std::fs::copy(crash, d.join("raw/interactions.parquet")).unwrap();
        },
        args: &["prepare", "--recipe", "f.toml", "--out", "o"],
        needles: &["interactions.parquet", "not a readable Parquet file"],
    },
    Case {
        name: "a Parquet footer whose lengths made polars allocate 26 GB (found by fuzzing)",
        setup: |d| {
            std::fs::remove_file(d.join("raw/interactions.csv")).unwrap();
            let crash = repo().join("fuzz/regressions/table_parquet/crash-c6b5a9bf426a9235531596424f9492e9611563e0");
            std::fs::copy(crash, d.join("raw/interactions.parquet")).unwrap();
        },
        args: &["prepare", "--recipe", "f.toml", "--out", "o"],
        needles: &["interactions.parquet", "not a readable Parquet file"],
    },
    // ---- issue 25: output guard, provenance, stale checkpoints ----
    Case {
        name: "predict --out with a CSV name (Parquet would be written into it)",
        setup: none,
        args: &["predict", "--model", "run/teacher", "--data", "run/features/test.parquet", "--out", "p.csv"],
        needles: &["--out", "p.csv", "Parquet"],
    },
    Case {
        name: "an INT8 manifest whose std is subnormal",
        setup: |d| manifest(d, "teacher-int8", |m| m["feature_spec"]["numeric"][0]["std"] = serde_json::json!(1e-320)),
        args: &["predict", "--model", "run/teacher-int8", "--data", "run/features/test.parquet", "--out", "p.parquet"],
        needles: &["feature_spec", "std"],
    },
    Case {
        name: "eval --metrics-out onto its --data",
        setup: |d| std::fs::copy(d.join("run/features/test.parquet"), d.join("d.prom")).map(drop).unwrap(),
        args: &["eval", "run/teacher", "--data", "d.prom", "--metrics-out", "d.prom"],
        needles: &["--metrics-out", "d.prom", "input"],
    },
    Case {
        name: "eval --metrics-out onto its --ranking",
        setup: |d| std::fs::copy(d.join("run/features/ranking.parquet"), d.join("r.prom")).map(drop).unwrap(),
        args: &[
            "eval",
            "run/teacher",
            "--data",
            "run/features/test.parquet",
            "--ranking",
            "r.prom",
            "--metrics-out",
            "r.prom",
        ],
        needles: &["--metrics-out", "r.prom", "input"],
    },
    Case {
        name: "run --metrics-out onto its recipe",
        setup: none,
        args: &["run", "r.toml", "--out", "o", "--metrics-out", "r.toml"],
        needles: &["--metrics-out", "r.toml"],
    },
    Case {
        name: "run --metrics-out onto the report it writes",
        setup: none,
        args: &["run", "r.toml", "--out", "run", "--metrics-out", "run/report.json"],
        needles: &["--metrics-out", "run/report.json"],
    },
    Case {
        name: "run --metrics-out into a folder the run writes",
        setup: none,
        args: &["run", "r.toml", "--out", "run", "--metrics-out", "run/stages/m.prom"],
        needles: &["--metrics-out", "writes", "stages"],
    },
    Case {
        name: "eval --metrics-out inside the artifact it evaluates",
        setup: none,
        args: &["eval", "run/teacher", "--data", "run/features/test.parquet", "--metrics-out", "run/teacher/m.prom"],
        needles: &["--metrics-out", "artifact", "run/teacher"],
    },
    Case {
        name: "bench --metrics-out inside an artifact",
        setup: none,
        args: &["bench", "run/teacher", "--seconds", "0.1", "--metrics-out", "run/student/b.prom"],
        needles: &["--metrics-out", "artifact", "student"],
    },
    Case {
        name: "precompute --out inside another artifact",
        setup: none,
        args: &[
            "precompute",
            "--model",
            "run/teacher-int8",
            "--features",
            "run/features",
            "--out",
            "run/student/top.parquet",
        ],
        needles: &["--out", "artifact", "student"],
    },
    Case {
        name: "predict --out inside another artifact",
        setup: none,
        args: &[
            "predict",
            "--model",
            "run/teacher",
            "--data",
            "run/features/test.parquet",
            "--out",
            "run/student/p.parquet",
        ],
        needles: &["--out", "artifact", "student"],
    },
    Case {
        name: "predict --out inside the features directory",
        setup: none,
        args: &[
            "predict",
            "--model",
            "run/teacher",
            "--data",
            "run/features/test.parquet",
            "--out",
            "run/features/p.parquet",
        ],
        needles: &["--out", "features"],
    },
    Case {
        name: "export --out inside another artifact",
        setup: none,
        args: &["export", "--model", "run/teacher", "--out", "run/student/model.onnx"],
        needles: &["--out", "artifact", "student"],
    },
    Case {
        name: "export --out onto another artifact's weights",
        setup: none,
        args: &["export", "--model", "run/teacher", "--out", "run/student/model.safetensors"],
        needles: &["--out", "safetensors"],
    },
    Case {
        name: "export --out into an artifact directory",
        setup: none,
        args: &["export", "--model", "run/teacher", "--out", "run/student"],
        needles: &["--out", "directory"],
    },
    Case {
        name: "report with a string in timings.json",
        setup: |d| {
            let p = d.join("run/timings.json");
            let mut t = read_json(&p);
            t["/seconds"] = "fast".into();
            write_json(&p, &t);
        },
        args: &["report", "run"],
        needles: &["timings.json", "/seconds", "fast"],
    },
    Case {
        name: "distill temperature whose square overflows",
        setup: none,
        args: &["distill", "--teacher", "run/teacher", "--out", "o", "--temperature", "1e20"],
        needles: &["temperature", "1000"],
    },
    Case {
        name: "predict --out onto one of the files its --data glob reads",
        setup: |d| {
            std::fs::create_dir_all(d.join("parts")).unwrap();
            for k in 0..2 {
                std::fs::copy(d.join("run/features/test.parquet"), d.join(format!("parts/part-{k}.parquet"))).unwrap();
            }
        },
        args: &["predict", "--model", "run/teacher", "--data", "parts/*.parquet", "--out", "parts/part-0.parquet"],
        needles: &["--out", "part-0.parquet", "input"],
    },
    Case {
        name: "datasets synth --out a features directory",
        setup: none,
        args: &["datasets", "synth", "--out", "run/features", "--users", "20"],
        needles: &["--out", "run/features", "features directory"],
    },
    Case {
        name: "prepare --out an artifact",
        setup: none,
        args: &["prepare", "--recipe", "r.toml", "--out", "run/student"],
        needles: &["--out", "run/student", "artifact"],
    },
    Case {
        name: "run --out a features directory",
        setup: none,
        args: &["run", "r.toml", "--out", "run/features"],
        needles: &["--out", "run/features", "features directory"],
    },
    Case {
        name: "quantize with a bad calibration file into new nested folders",
        setup: |d| std::fs::write(d.join("cal.parquet"), "not parquet").unwrap(),
        args: &["quantize", "--model", "run/teacher", "--calibration", "cal.parquet", "--out", "new/a/b/int8"],
        needles: &["cal.parquet"],
    },
    Case {
        name: "report from a report.json of an older reco-cli",
        setup: |d| {
            let p = d.join("run/report.json");
            let mut r = read_json(&p);
            r.as_object_mut().unwrap().remove("recommended");
            write_json(&p, &r);
        },
        args: &["report", "run"],
        needles: &["report.json", "recommended", "older"],
    },
    Case {
        name: "run --out the folder the recipe reads its tables from",
        setup: none,
        args: &["run", "f.toml", "--out", "raw"],
        needles: &["--out", "raw", "input"],
    },
    Case {
        name: "prepare --out inside the recipe's input folder",
        setup: none,
        args: &["prepare", "--recipe", "f.toml", "--out", "raw/sub"],
        needles: &["--out", "raw/sub", "input"],
    },
    Case {
        name: "predict --out a new file its own --data glob would read next time",
        setup: |d| {
            std::fs::create_dir_all(d.join("parts")).unwrap();
            std::fs::copy(d.join("run/features/test.parquet"), d.join("parts/part-0.parquet")).unwrap();
        },
        args: &["predict", "--model", "run/teacher", "--data", "parts/*.parquet", "--out", "parts/scores.parquet"],
        needles: &["--out", "parts/*.parquet"],
    },
    Case {
        name: "run --out a folder whose teacher/ holds a user's file (refused before any work)",
        setup: |d| {
            std::fs::create_dir_all(d.join("mine/teacher")).unwrap();
            std::fs::write(d.join("mine/teacher/notes.txt"), "x").unwrap();
        },
        args: &["run", "r.toml", "--out", "mine"],
        needles: &["mine/teacher", "notes.txt"],
    },
    Case {
        name: "distill into a folder whose student/ holds a user's file",
        setup: |d| {
            std::fs::create_dir_all(d.join("mine/student")).unwrap();
            std::fs::write(d.join("mine/student/notes.txt"), "x").unwrap();
        },
        args: &["distill", "--teacher", "run/teacher", "--out", "mine"],
        needles: &["mine/student", "notes.txt"],
    },
    Case {
        name: "datasets synth --out a folder of the user's files",
        setup: |d| {
            std::fs::create_dir_all(d.join("mine")).unwrap();
            std::fs::write(d.join("mine/users.parquet"), "mine").unwrap();
            std::fs::write(d.join("mine/notes.txt"), "x").unwrap();
        },
        args: &["datasets", "synth", "--out", "mine", "--users", "20"],
        needles: &["mine", "notes.txt"],
    },
    Case {
        name: "report whose charts folder links into an artifact",
        setup: |d| {
            let charts = d.join("run/report");
            std::fs::remove_dir_all(&charts).unwrap();
            std::os::unix::fs::symlink("teacher", &charts).unwrap();
        },
        args: &["report", "run"],
        needles: &["report", "artifact"],
    },
    Case {
        name: "run --out the recipe file",
        setup: none,
        args: &["run", "r.toml", "--out", "r.toml"],
        needles: &["--out", "r.toml", "is a file"],
    },
    Case {
        name: "serve --max-wait-ms -1",
        setup: none,
        args: &["serve", "--model", "run/teacher", "--max-wait-ms", "-1"],
        needles: &["--max-wait-ms", "-1"],
    },
    Case {
        name: "--seed on inspect (it draws nothing)",
        setup: none,
        args: &["inspect", "run/teacher", "--seed", "3"],
        needles: &["--seed"],
    },
    Case {
        name: "--backend on predict (it trains nothing)",
        setup: none,
        args: &[
            "predict",
            "--model",
            "run/teacher",
            "--data",
            "run/features/test.parquet",
            "--out",
            "p.parquet",
            "--backend",
            "ndarray",
        ],
        needles: &["--backend"],
    },
    // ---- issue 25: input types, messages, plausibility ----
    Case {
        name: "a uint64 id beyond the largest int64",
        setup: |d| {
            let mut users: Vec<u64> = i25_inter().0.iter().map(|&u| u as u64).collect();
            users[2] = u64::MAX;
            i25_parquet_inter(d, std::sync::Arc::new(arrow::array::UInt64Array::from(users)));
        },
        args: &["prepare", "--recipe", "f.toml", "--out", "o"],
        needles: &["interactions.parquet", "`user_id` row 2", "18446744073709551615", "9223372036854775807"],
    },
    Case {
        name: "a timestamp_format chrono cannot use",
        setup: |d| edit(&d.join("f.toml"), "dir = \"raw\"", "dir = \"raw\"\ntimestamp_format = \"%Y-%m-%d %Q\""),
        args: &["prepare", "--recipe", "f.toml", "--out", "o"],
        needles: &["data.timestamp_format", "%Q"],
    },
    Case {
        name: "epoch seconds declared as milliseconds (two weeks collapse into minutes)",
        setup: |d| edit(&d.join("f.toml"), "dir = \"raw\"", "dir = \"raw\"\ntimestamp_unit = \"ms\""),
        args: &["prepare", "--recipe", "f.toml", "--out", "o"],
        needles: &[
            "interactions.csv",
            "`timestamp`",
            "18 min 47 s read in milliseconds",
            "13 days 1 h read in seconds",
            "timestamp_unit = \"s\"",
        ],
    },
    Case {
        name: "a log spanning centuries",
        setup: |d| {
            inter(d, &interactions().replacen("1767571200", "-2208902400", 1).replace("1768698000", "5000000000"))
        },
        args: &["prepare", "--recipe", "f.toml", "--out", "o"],
        needles: &["interactions.csv", "`timestamp`", "228 years", "-2208902400", "line 2", "5000000000"],
    },
    Case {
        name: "two roles mapped to one column",
        setup: |d| {
            std::fs::write(d.join("f.toml"), "name = \"case\"\n[data]\nsource = \"files\"\ndir = \"raw\"\n[data.interactions]\ncolumns = { user = \"place_id\" }\n").unwrap()
        },
        args: &["prepare", "--recipe", "f.toml", "--out", "o"],
        needles: &["data.interactions.columns.user", "`place`", "place_id"],
    },
    Case {
        name: "a Parquet timestamp part among epoch-second parts",
        setup: |d| {
            let (u, p, t) = i25_inter();
            let ms: Vec<i64> = t.iter().map(|t| t * 1000).collect();
            let cols = |ts: arrow::array::ArrayRef| -> Vec<arrow::array::ArrayRef> {
                vec![
                    std::sync::Arc::new(arrow::array::Int64Array::from(u.clone())),
                    std::sync::Arc::new(arrow::array::Int64Array::from(p.clone())),
                    ts,
                ]
            };
            let secs = cols(std::sync::Arc::new(arrow::array::Int64Array::from(t.clone())));
            i25_parquet(&d.join("raw/logs/part-0.parquet"), &["user_id", "place_id", "timestamp"], secs);
            let stamped = cols(std::sync::Arc::new(arrow::array::TimestampMillisecondArray::from(ms)));
            i25_parquet(&d.join("raw/logs/part-1.parquet"), &["user_id", "place_id", "timestamp"], stamped);
            i25_logs_recipe(d);
        },
        args: &["prepare", "--recipe", "f.toml", "--out", "o"],
        needles: &["part-1.parquet", "`timestamp`", "datetime[ms]", "i64", "part-0.parquet"],
    },
    Case {
        name: "a NUL byte in a CSV cell",
        setup: |d| inter(d, &interactions().replacen("2,11,", "2\0,11,", 1)),
        args: &["prepare", "--recipe", "f.toml", "--out", "o"],
        needles: &["interactions.csv", "line 3", "`user_id`", "NUL"],
    },
    Case {
        name: "one nan in a users table's home_lat",
        setup: |d| std::fs::write(d.join("raw/users.csv"), USERS.replacen("52.52", "nan", 1)).unwrap(),
        args: &["prepare", "--recipe", "f.toml", "--out", "o"],
        needles: &["users.csv", "`home_lat` line 3", "nan"],
    },
    Case {
        name: "a hive folder user_id=two where user ids are integers",
        setup: |d| {
            for (folder, rows) in [("1", "10,1767571200\n10,1767657600\n"), ("two", "11,1767661200\n11,1767747600\n")] {
                let dir = d.join(format!("raw/logs/user_id={folder}"));
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(dir.join("part.csv"), format!("place_id,timestamp\n{rows}")).unwrap();
            }
            i25_logs_recipe(d);
        },
        args: &["prepare", "--recipe", "f.toml", "--out", "o"],
        needles: &["user_id=two/part.csv", "`user_id` line 2", "\"two\"", "integer"],
    },
    Case {
        name: "predict --data a features directory names which file lacks which column",
        setup: none,
        args: &["predict", "--model", "run/teacher", "--data", "run/features", "--out", "p.parquet"],
        needles: &["events.parquet: no column", "calibration.parquet has"],
    },
    // ---- issue 25: serving and precompute ----
    Case {
        name: "loadtest --seconds NaN",
        setup: none,
        args: &["loadtest", "--model", "run/teacher", "--data", "run/features/test.parquet", "--seconds", "NaN"],
        needles: &["--seconds", "NaN", "(0, 3600]"],
    },
    Case {
        name: "loadtest --seconds inf",
        setup: none,
        args: &["loadtest", "--model", "run/teacher", "--data", "run/features/test.parquet", "--seconds", "inf"],
        needles: &["--seconds", "inf", "(0, 3600]"],
    },
    Case {
        name: "loadtest --seconds 1e20",
        setup: none,
        args: &["loadtest", "--model", "run/teacher", "--data", "run/features/test.parquet", "--seconds", "1e20"],
        needles: &["--seconds", "1e20", "(0, 3600]"],
    },
    Case {
        name: "loadtest --clients 0",
        setup: none,
        args: &["loadtest", "--model", "run/teacher", "--data", "run/features/test.parquet", "--clients", "1,0"],
        needles: &["--clients", "'0'", "1 to 100000"],
    },
    Case {
        name: "loadtest --rates 0",
        setup: none,
        args: &["loadtest", "--model", "run/teacher", "--data", "run/features/test.parquet", "--rates", "1000,0"],
        needles: &["--rates", "'0'", "(0, 100000000]"],
    },
    Case {
        name: "loadtest --max-wait-ms past an hour",
        setup: none,
        args: &["loadtest", "--model", "run/teacher", "--data", "run/features/test.parquet", "--max-wait-ms", "1e20"],
        needles: &["--max-wait-ms", "1e20", "0 to 3600000"],
    },
    Case {
        name: "serve --max-body-bytes 0",
        setup: none,
        args: &["serve", "--model", "run/teacher", "--addr", "127.0.0.1:0", "--max-body-bytes", "0"],
        needles: &["--max-body-bytes", "'0'", "1024 to 1073741824"],
    },
    Case {
        name: "serve --max-rows 0",
        setup: none,
        args: &["serve", "--model", "run/teacher", "--addr", "127.0.0.1:0", "--max-rows", "0"],
        needles: &["--max-rows", "'0'", "1 to 16777216"],
    },
    Case {
        name: "serve --queue-rows 0",
        setup: none,
        args: &["serve", "--model", "run/teacher", "--addr", "127.0.0.1:0", "--queue-rows", "0"],
        needles: &["--queue-rows", "'0'"],
    },
    Case {
        name: "serve --http-threads 0",
        setup: none,
        args: &["serve", "--model", "run/teacher", "--addr", "127.0.0.1:0", "--http-threads", "0"],
        needles: &["--http-threads", "'0'", "1 to 1024"],
    },
    Case {
        name: "serve --cache-entries absurd",
        setup: none,
        args: &["serve", "--model", "run/teacher", "--addr", "127.0.0.1:0", "--cache-entries", "99999999999999"],
        needles: &["--cache-entries", "99999999999999", "1 to 10000000"],
    },
    Case {
        name: "serve --deadline-ms NaN",
        setup: none,
        args: &["serve", "--model", "run/teacher", "--addr", "127.0.0.1:0", "--deadline-ms", "NaN"],
        needles: &["--deadline-ms", "NaN", "1 to 3600000"],
    },
    Case {
        name: "precompute --cell-deg NaN",
        setup: none,
        args: &[
            "precompute",
            "--model",
            "run/teacher-int8",
            "--features",
            "run/features",
            "--out",
            "t.parquet",
            "--cell-deg",
            "NaN",
        ],
        needles: &["--cell-deg", "NaN", "(0, 10]"],
    },
    Case {
        name: "precompute --cell-deg inf",
        setup: none,
        args: &[
            "precompute",
            "--model",
            "run/teacher-int8",
            "--features",
            "run/features",
            "--out",
            "t.parquet",
            "--cell-deg",
            "inf",
        ],
        needles: &["--cell-deg", "inf", "(0, 10]"],
    },
    Case {
        name: "precompute --features of another run",
        setup: |d| {
            copy_dir(&d.join("run/features"), &d.join("other"));
            let p = d.join("other/feature_spec.json");
            let mut spec = read_json(&p);
            spec["numeric"][0]["mean"] = serde_json::json!(spec["numeric"][0]["mean"].as_f64().unwrap() + 1.0);
            write_json(&p, &spec);
        },
        args: &["precompute", "--model", "run/teacher-int8", "--features", "other", "--out", "t.parquet"],
        needles: &["other/feature_spec.json", "run/teacher-int8/manifest.json", "normalization"],
    },
];

/// Issue 25: the user, place and timestamp columns of [`interactions`].
fn i25_inter() -> (Vec<i64>, Vec<i64>, Vec<i64>) {
    let rows: Vec<Vec<i64>> =
        interactions().lines().skip(1).map(|l| l.split(',').map(|v| v.parse().unwrap()).collect()).collect();
    (rows.iter().map(|r| r[0]).collect(), rows.iter().map(|r| r[1]).collect(), rows.iter().map(|r| r[2]).collect())
}

/// Issue 25: writes `columns` named `names` as one Parquet file (folders created).
fn i25_parquet(path: &Path, names: &[&str], columns: Vec<arrow::array::ArrayRef>) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let batch = arrow::array::RecordBatch::try_from_iter(names.iter().zip(columns)).unwrap();
    let mut w =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(path).unwrap(), batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

/// Issue 25: `raw/interactions.parquet` in place of the CSV, with the user ids `users`.
fn i25_parquet_inter(d: &Path, users: arrow::array::ArrayRef) {
    std::fs::remove_file(d.join("raw/interactions.csv")).unwrap();
    let (_, p, t) = i25_inter();
    let places: arrow::array::ArrayRef = std::sync::Arc::new(arrow::array::Int64Array::from(p));
    let t: arrow::array::ArrayRef = std::sync::Arc::new(arrow::array::Int64Array::from(t));
    i25_parquet(&d.join("raw/interactions.parquet"), &["user_id", "place_id", "timestamp"], vec![users, places, t]);
}

/// Issue 25: `f.toml` reading the interactions from the folder `raw/logs` (users and places
/// from `raw/`).
fn i25_logs_recipe(d: &Path) {
    std::fs::remove_file(d.join("raw/interactions.csv")).unwrap();
    edit(&d.join("f.toml"), "dir = \"raw\"\n", "dir = \"raw\"\n[data.interactions]\npath = \"raw/logs\"\n");
}

#[test]
fn every_bad_input_is_one_line_exit_2_and_writes_nothing() {
    assert!(CASES.len() >= 60, "{} cases", CASES.len());
    let mut failures = Vec::new();
    for case in CASES {
        let dir = tempfile::tempdir().unwrap();
        base(dir.path());
        (case.setup)(dir.path());
        let before = snapshot(dir.path());
        let out = reco(case.args, dir.path());
        let lines: Vec<&str> = out.stderr.lines().collect();
        let missing: Vec<&&str> =
            case.needles.iter().filter(|n| !lines.first().is_some_and(|l| l.contains(**n))).collect();
        let written = changed(&before, &snapshot(dir.path()));
        if out.code != 2 || lines.len() != 1 || !missing.is_empty() || !written.is_empty() {
            failures.push(format!(
                "{}: exit {}, {} stderr lines, missing {missing:?}, written {written:?}\n    {}",
                case.name,
                out.code,
                lines.len(),
                out.stderr.trim()
            ));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases wrong:\n{}", failures.len(), CASES.len(), failures.join("\n"));
}
