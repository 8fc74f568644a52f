//! A caller (a server loading an artifact, scoring a request) tells the failures apart by
//! [`Error::kind`], without parsing text; and the text itself is what it always was.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use reco_runtime::artifact::manifest::{Architecture, FORMAT, FORMAT_VERSION, Kind, Status};
use reco_runtime::artifact::spec::{CategoricalSpec, FeatureSpec, Ids, NumericSpec};
use reco_runtime::artifact::weights::{Dense, FloatWeights, Table};
use reco_runtime::artifact::{self, ArtifactWriter, MANIFEST, Manifest, WEIGHTS};
use reco_runtime::runtime::{Columns, Model};
use reco_runtime::{Error, ErrorKind};

fn spec() -> FeatureSpec {
    FeatureSpec {
        categorical: vec![CategoricalSpec::new("user_id", vec![1, 2, 3])],
        numeric: vec![NumericSpec { name: "dist".into(), mean: 0.0, std: 1.0 }],
        label: "label".into(),
        sources: vec![],
    }
}

/// A float artifact in `<tmp>/teacher`: one id column (embedding width 2), one number, one
/// hidden layer of 3.
fn artifact() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("teacher");
    let (spec, arch) = (
        spec(),
        Architecture {
            embedding_dims: vec![2],
            hidden: vec![3],
            activation: reco_runtime::artifact::manifest::Activation::Relu,
            interaction: reco_runtime::artifact::manifest::Interaction::None,
        },
    );
    let values = |n: usize| (0..n).map(|i| (i as f32 * 0.37).sin()).collect::<Vec<f32>>();
    let dense = arch
        .layer_shapes(&spec)
        .into_iter()
        .map(|(input, output)| Dense { weight: values(input * output), bias: values(output), input, output })
        .collect();
    let weights = FloatWeights { embeddings: vec![Table { data: values(8), rows: 4, dim: 2 }], dense };
    let manifest = Manifest {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        kind: Kind::Teacher,
        status: Status::Ok,
        reco_cli_version: reco_runtime::VERSION.into(),
        architecture: arch,
        tensor_layout: artifact::weights::LAYOUT.into(),
        recipe: serde_json::Value::Null,
        seed: 0,
        files: Default::default(),
        input_data: Default::default(),
        lineage: None,
        training: serde_json::Value::Null,
        metrics: serde_json::Value::Null,
        quantization: None,
        exports: Default::default(),
        gate_failures: vec![],
        feature_spec: spec,
    };
    let w = ArtifactWriter::create(&dir).unwrap();
    w.write(WEIGHTS, &weights.to_bytes(&manifest.feature_spec).unwrap()).unwrap();
    w.finish(manifest).unwrap();
    (tmp, dir)
}

/// The artifact's manifest changed by `edit` (the files it lists untouched: their hashes still
/// match).
fn edit_manifest(dir: &Path, edit: impl FnOnce(&mut Manifest)) {
    let mut m: Manifest = serde_json::from_slice(&std::fs::read(dir.join(MANIFEST)).unwrap()).unwrap();
    edit(&mut m);
    artifact::rewrite_manifest(dir, &m).unwrap();
}

/// The error of a failed `open` of an artifact, through both entries.
fn open_err(dir: &Path) -> Error {
    let via_model = Model::open(dir).err().unwrap();
    let e = artifact::open(dir).err().unwrap();
    assert_eq!((via_model.kind(), via_model.to_string()), (e.kind(), e.to_string()));
    e
}

#[test]
fn a_missing_directory_or_manifest_is_artifact_missing() {
    let (tmp, dir) = artifact();
    let nowhere = tmp.path().join("nowhere");
    let e = open_err(&nowhere);
    assert_eq!(e.kind(), ErrorKind::ArtifactMissing);
    assert_eq!(e.to_string(), format!("{}: no such artifact directory", nowhere.display()));
    std::fs::remove_file(dir.join(MANIFEST)).unwrap();
    let e = open_err(&dir);
    assert_eq!(e.kind(), ErrorKind::ArtifactMissing);
    assert_eq!(e.to_string(), format!("{}: missing manifest.json (not a reco-cli artifact)", dir.display()));
}

#[test]
fn an_unreadable_manifest_or_another_format_is_not_an_artifact() {
    let (_tmp, dir) = artifact();
    edit_manifest(&dir, |m| m.format = "onnx".into());
    let e = open_err(&dir);
    assert_eq!(e.kind(), ErrorKind::NotAnArtifact);
    let mpath = dir.join(MANIFEST);
    assert_eq!(e.to_string(), format!("{}: format is \"onnx\", expected \"reco-cli.artifact\"", mpath.display()));
    edit_manifest(&dir, |m| m.format = FORMAT.into());
    edit_manifest(&dir, |m| m.kind = Kind::TeacherInt8);
    let e = open_err(&dir);
    assert_eq!(e.kind(), ErrorKind::NotAnArtifact);
    assert_eq!(
        e.to_string(),
        format!("{}: kind teacher-int8 is INT8 but has no a `quantization` section", mpath.display())
    );
    std::fs::write(&mpath, b"{").unwrap();
    let e = open_err(&dir);
    assert_eq!(e.kind(), ErrorKind::NotAnArtifact);
    assert!(e.to_string().starts_with(&format!("{}: not a valid reco-cli manifest (", mpath.display())), "{e}");
    let e = Model::from_bytes("remote", b"[]", b"").err().unwrap();
    assert_eq!(e.kind(), ErrorKind::NotAnArtifact);
}

#[test]
fn format_version_99_is_an_unsupported_version() {
    let (_tmp, dir) = artifact();
    edit_manifest(&dir, |m| m.format_version = 99);
    let e = open_err(&dir);
    assert_eq!(e.kind(), ErrorKind::UnsupportedVersion);
    assert_eq!(
        e.to_string(),
        format!("{}: format_version 99 is not supported (this reco-cli reads 1)", dir.join(MANIFEST).display())
    );
    edit_manifest(&dir, |m| m.format_version = FORMAT_VERSION);
    edit_manifest(&dir, |m| {
        m.architecture.activation = reco_runtime::artifact::manifest::Activation::Unsupported("gelu".into())
    });
    let e = open_err(&dir);
    assert_eq!(e.kind(), ErrorKind::UnsupportedVersion);
    assert_eq!(
        e.to_string(),
        format!(
            "{}: architecture.activation \"gelu\" is not supported (format version 1 has \"relu\")",
            dir.join(MANIFEST).display()
        )
    );
}

#[test]
fn a_flipped_byte_a_cut_file_or_a_missing_file_is_a_checksum_mismatch() {
    let (_tmp, dir) = artifact();
    let path = dir.join(WEIGHTS);
    let good = std::fs::read(&path).unwrap();
    let listed = artifact::sha256_bytes(&good);
    let mut flipped = good.clone();
    *flipped.last_mut().unwrap() ^= 1;
    std::fs::write(&path, &flipped).unwrap();
    let e = open_err(&dir);
    assert_eq!(e.kind(), ErrorKind::ChecksumMismatch);
    let now = artifact::sha256_bytes(&flipped);
    assert_eq!(
        e.to_string(),
        format!(
            "{}: sha256 mismatch (manifest says {listed}, file has {now}); the artifact was modified or corrupted",
            path.display()
        )
    );
    // The same bytes from memory.
    let manifest_json = std::fs::read(dir.join(MANIFEST)).unwrap();
    let e = Model::from_bytes("remote", &manifest_json, &flipped).err().unwrap();
    assert_eq!(e.kind(), ErrorKind::ChecksumMismatch);
    assert_eq!(
        e.to_string(),
        format!(
            "{}: sha256 mismatch (manifest says {listed}, bytes have {now}); the artifact was modified or corrupted",
            Path::new("remote").join(WEIGHTS).display()
        )
    );
    assert!(Model::from_bytes("remote", &manifest_json, &good).is_ok());
    std::fs::write(&path, &good[..good.len() - 1]).unwrap();
    let e = open_err(&dir);
    assert_eq!(e.kind(), ErrorKind::ChecksumMismatch);
    assert_eq!(
        e.to_string(),
        format!(
            "{}: {} bytes, the manifest says {}; the artifact was modified or corrupted",
            path.display(),
            good.len() - 1,
            good.len()
        )
    );
    std::fs::remove_file(&path).unwrap();
    let e = open_err(&dir);
    assert_eq!(e.kind(), ErrorKind::ChecksumMismatch);
    assert_eq!(e.to_string(), format!("{}: missing (listed in the manifest)", path.display()));
}

#[test]
fn tensors_that_do_not_fit_the_architecture_are_a_shape_mismatch() {
    let (_tmp, dir) = artifact();
    edit_manifest(&dir, |m| m.architecture.hidden = vec![4]);
    let e = Model::open(&dir).err().unwrap();
    assert_eq!(e.kind(), ErrorKind::ShapeMismatch);
    assert_eq!(
        e.to_string(),
        format!("{}: tensor `dense.0.weight` is F32 [3, 3], expected F32 [4, 3]", dir.join(WEIGHTS).display())
    );
    edit_manifest(&dir, |m| m.architecture.embedding_dims = vec![2, 2]);
    let e = open_err(&dir);
    assert_eq!(e.kind(), ErrorKind::ShapeMismatch);
    assert_eq!(
        e.to_string(),
        format!(
            "{}: architecture has 2 embeddings but the feature spec has 1 categorical columns",
            dir.join(MANIFEST).display()
        )
    );
    // A dot interaction needs two categorical columns (user and place) of equal widths.
    edit_manifest(&dir, |m| {
        m.architecture.embedding_dims = vec![2];
        m.architecture.interaction = reco_runtime::artifact::manifest::Interaction::Dot;
    });
    let e = open_err(&dir);
    assert_eq!(e.kind(), ErrorKind::ShapeMismatch);
    assert_eq!(
        e.to_string(),
        format!(
            "{}: architecture: interaction \"dot\" needs two categorical columns (user and place), the model has 1",
            dir.join(MANIFEST).display()
        )
    );
}

#[test]
fn a_spec_encoding_cannot_rely_on_is_a_bad_feature_spec() {
    let (_tmp, dir) = artifact();
    edit_manifest(&dir, |m| m.feature_spec.numeric[0].std = 0.0);
    let e = open_err(&dir);
    assert_eq!(e.kind(), ErrorKind::BadFeatureSpec);
    assert_eq!(
        e.to_string(),
        format!(
            "{}: feature_spec column \"dist\": mean 0 and std 0, expected finite values within f32 range and std >= 1e-12 (a constant column has std 1)",
            dir.join(MANIFEST).display()
        )
    );
    let mut bad = spec();
    bad.categorical[0] = CategoricalSpec::new("user_id", vec![3, 1]);
    let e = bad.validate().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadFeatureSpec);
    assert_eq!(e.to_string(), "column \"user_id\": vocabulary must be strictly ascending, found 3 then 1");
}

#[test]
fn a_failed_artifact_is_unusable() {
    let (_tmp, dir) = artifact();
    let manifest = artifact::open(&dir).unwrap();
    artifact::check_usable(&dir, &manifest).unwrap();
    edit_manifest(&dir, |m| m.status = Status::Failed);
    let manifest = artifact::open(&dir).unwrap();
    let e = artifact::check_usable(&dir, &manifest).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unusable);
    assert_eq!(
        e.to_string(),
        format!(
            "{}: status failed: a quality gate failed; refusing it (pass --allow-failed to use it anyway)",
            dir.join(MANIFEST).display()
        )
    );
}

#[test]
fn a_scoring_batch_missing_a_column_or_of_another_type_is_an_input_column_error() {
    let (_tmp, dir) = artifact();
    let (_, model) = Model::open(&dir).unwrap();
    let good =
        Columns { rows: 2, categorical: vec![Ids::Int(vec![1, 9])], lists: vec![], numeric: vec![vec![0.5, -1.0]] };
    assert_eq!(model.logits(&good).unwrap().len(), 2);
    let cases = [
        (
            Columns { rows: 2, categorical: vec![Ids::Int(vec![1, 9])], lists: vec![], numeric: vec![] },
            "got 1 categorical and 0 numeric columns, the model expects 1 and 1",
        ),
        (
            Columns {
                rows: 2,
                categorical: vec![Ids::Str(vec!["a".into(), "b".into()])],
                lists: vec![],
                numeric: vec![vec![0.5, 1.0]],
            },
            "column `user_id` holds string ids, the model expects int64 ids",
        ),
        (
            Columns { rows: 2, categorical: vec![Ids::Int(vec![1, 9])], lists: vec![], numeric: vec![vec![0.5]] },
            "input columns have different lengths",
        ),
        (
            // Lists of ids where the model takes one id per row.
            Columns {
                rows: 2,
                categorical: vec![Ids::Int(vec![1, 9, 4])],
                lists: vec![Some(vec![0, 1, 3])],
                numeric: vec![vec![0.5, 1.0]],
            },
            "column `user_id`: holds lists of ids, the model expects one id per row",
        ),
    ];
    for (cols, want) in cases {
        for e in [model.logits(&cols).unwrap_err(), model.logits_threads(&cols.view(), 4).unwrap_err()] {
            assert_eq!(e.kind(), ErrorKind::InputColumn);
            assert_eq!(e.to_string(), want);
        }
    }
    let e = model.dense(&[0.0; 5], 2).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InputColumn);
    assert_eq!(e.to_string(), "dense input holds 5 values, expected 2 x 3");
}

#[test]
fn generic_io_and_internal_errors_keep_their_kind_text_and_exit_code() {
    let e = Error::input("recipe: unknown key `x`");
    assert_eq!((e.kind(), e.to_string(), e.exit_code()), (ErrorKind::Input, "recipe: unknown key `x`".into(), 2));
    let e = Error::io("data.csv", std::io::Error::from(std::io::ErrorKind::NotFound));
    assert_eq!(e.kind(), ErrorKind::Io);
    assert_eq!(e.exit_code(), 2);
    let e = Error::Internal("parquet".into());
    assert_eq!((e.kind(), e.to_string(), e.exit_code()), (ErrorKind::Internal, "internal error: parquet".into(), 2));
    // A prefix naming the file keeps the class.
    let e = Error::new(ErrorKind::InputColumn, "missing column `a`").with_prefix("f.parquet: ");
    assert_eq!((e.kind(), e.to_string()), (ErrorKind::InputColumn, "f.parquet: missing column `a`".into()));
    let e = Error::io("d", std::io::Error::other("boom")).with_prefix("x: ");
    assert_eq!((e.kind(), e.to_string()), (ErrorKind::Io, "x: d: boom".into()));
}
