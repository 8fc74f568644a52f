//! Artifacts: the directory a stage writes and serving systems consume (DESIGN §7).
//!
//! ```text
//! <stage>/manifest.json      versioned manifest (see [`manifest::Manifest`])
//! <stage>/model.safetensors  tensors, named as in [`weights`]
//! ```
//! Directories are written into a temporary sibling and renamed into place only when
//! complete ([`ArtifactWriter`]); every load re-hashes each file listed in the manifest and
//! refuses a mismatch ([`open`]). No burn or polars here: a serving system links this alone.

pub mod json;
pub mod manifest;
pub mod qweights;
pub mod size;
pub mod spec;
pub mod weights;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub use manifest::{ExportEntry, FileEntry, Manifest};

use crate::error::{Error, ErrorKind, IoContext, Result};

/// File name of the manifest inside an artifact directory.
pub const MANIFEST: &str = "manifest.json";
/// File name of the tensors inside an artifact directory.
pub const WEIGHTS: &str = "model.safetensors";

/// `dir/.name.tmp-<pid>` next to `path`: where single files are written before the rename
/// that puts them in place.
pub fn tmp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Writes the single file `path` atomically: `write` fills a temporary file beside it, which
/// is renamed into place only when `write` succeeds and removed when it fails. Errors on the
/// temporary file name `path`, the file the user asked for.
pub fn write_atomic(path: &Path, write: impl FnOnce(std::fs::File) -> Result<()>) -> Result<()> {
    let tmp = tmp_path(path);
    // Temporary files of killed writers of this same file go first.
    if let (Some(parent), Some(name)) = (path.parent(), path.file_name()) {
        let parent = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
        recover_stale(parent, &name.to_string_lossy(), path)?;
    }
    let result = std::fs::File::create(&tmp)
        .at(path)
        .and_then(write)
        .and_then(|()| std::fs::rename(&tmp, path).at(path))
        .map_err(|e| rename_path(e, &tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// An error that names the hidden temporary path `tmp` names `dest` instead.
fn rename_path(e: Error, tmp: &Path, dest: &Path) -> Error {
    match e {
        Error::Io { path, source } if path == tmp => Error::Io { path: dest.to_path_buf(), source },
        other => other,
    }
}

/// Hex sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).at(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).at(path)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// Hex sha256 of bytes.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Builds an artifact in a temporary directory next to its destination; [`finish`] writes the
/// manifest (with the hash of every file) and renames the directory into place. Dropping it
/// unfinished removes the temporary directory, so a failure leaves nothing half-written.
///
/// [`finish`]: ArtifactWriter::finish
pub struct ArtifactWriter {
    tmp: PathBuf,
    dest: PathBuf,
    done: bool,
}

impl ArtifactWriter {
    /// Starts an artifact that will live at `dest`.
    pub fn create(dest: &Path) -> Result<Self> {
        let parent = dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).at(parent)?;
        let name = dest.file_name().ok_or_else(|| Error::input(format!("{}: not a directory name", dest.display())))?;
        let name = name.to_string_lossy().into_owned();
        recover_stale(parent, &name, dest)?;
        check_replaceable(dest)?;
        let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).at(&tmp)?;
        }
        std::fs::create_dir_all(&tmp).at(&tmp)?;
        Ok(Self { tmp, dest: dest.to_path_buf(), done: false })
    }

    /// Path of a file inside the (temporary) artifact directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.join(name)
    }

    /// Writes one file into the artifact; an error names the file's final path.
    pub fn write(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let p = self.path(name);
        let dest = self.dest.join(name);
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir).at(&dest)?;
        }
        std::fs::write(&p, bytes).at(&dest)
    }

    /// Hashes every file, writes the manifest and moves the directory into place.
    pub fn finish(self, mut manifest: Manifest) -> Result<Manifest> {
        manifest.files = hash_tree(&self.tmp)?;
        let json = json::to_vec(&manifest)?;
        self.write(MANIFEST, &json)?;
        self.commit()?;
        Ok(manifest)
    }

    /// Moves the directory into place as it is (no manifest), replacing any previous one. The
    /// previous copy waits in `.<name>.old-<pid>` between the two renames: a process killed
    /// there leaves it for the next writer to put back ([`recover_stale`]).
    pub fn commit(mut self) -> Result<()> {
        if self.dest.exists() {
            let name = self.dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let old = self.tmp.with_file_name(format!(".{name}.old-{}", std::process::id()));
            std::fs::rename(&self.dest, &old).at(&self.dest)?;
            std::fs::rename(&self.tmp, &self.dest).at(&self.dest)?;
            std::fs::remove_dir_all(&old).at(&old)?;
        } else {
            std::fs::rename(&self.tmp, &self.dest).at(&self.dest)?;
        }
        self.done = true;
        Ok(())
    }
}

/// Names of the files reco-cli writes into a directory it replaces as a whole (an artifact, a
/// features directory, imported or synthetic raw tables).
const OWN_FILES: [&str; 17] = [
    MANIFEST,
    WEIGHTS,
    "metrics.json",
    "model.onnx",
    "feature_spec.json",
    "prepare.json",
    "train.parquet",
    "valid.parquet",
    "test.parquet",
    "calibration.parquet",
    "ranking.parquet",
    "events.parquet",
    "featurizer.json",
    "users.parquet",
    "places.parquet",
    "interactions.parquet",
    "synth.json",
];

/// A directory replaced as a whole must hold only what reco-cli wrote there: replacing a
/// user's folder (or the input data an `--out` was pointed at) would delete their files.
pub fn check_replaceable(dest: &Path) -> Result<()> {
    if !dest.exists() {
        return Ok(());
    }
    if !dest.is_dir() {
        return Err(Error::input(format!(
            "{}: is a file; the output must be a directory (new, empty, or written by reco-cli)",
            dest.display()
        )));
    }
    for entry in std::fs::read_dir(dest).at(dest)? {
        let name = entry.at(dest)?.file_name().to_string_lossy().into_owned();
        if !(name.starts_with('.') || OWN_FILES.contains(&name.as_str())) {
            return Err(Error::input(format!(
                "{}: holds `{name}`, which reco-cli did not write; choose a new or empty directory (replacing it would delete that file)",
                dest.display()
            )));
        }
    }
    Ok(())
}

/// Whether process `pid` is alive (Linux: `/proc/<pid>`; elsewhere assumed gone).
fn alive(pid: u32) -> bool {
    pid == std::process::id() || (cfg!(target_os = "linux") && Path::new("/proc").join(pid.to_string()).exists())
}

/// Leftovers of writers of `<parent>/<name>` that were killed: their temporary directories
/// (`.<name>.tmp-<pid>`) are removed, and a previous copy caught between the two renames of
/// [`ArtifactWriter::commit`] (`.<name>.old-<pid>`) is put back when `dest` is missing, or
/// removed when `dest` is there. Directories of live processes are left alone.
fn recover_stale(parent: &Path, name: &str, dest: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(parent) else { return Ok(()) };
    let mut stale: Vec<(bool, PathBuf)> = Vec::new();
    for e in entries.flatten() {
        let file = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = file.strip_prefix(&format!(".{name}.")) else { continue };
        let (old, pid) = match (rest.strip_prefix("old-"), rest.strip_prefix("tmp-")) {
            (Some(pid), _) => (true, pid),
            (_, Some(pid)) => (false, pid),
            _ => continue,
        };
        if pid.parse::<u32>().is_ok_and(|p| !alive(p)) {
            stale.push((old, e.path()));
        }
    }
    stale.sort();
    for (old, path) in stale {
        if old && !dest.exists() {
            std::fs::rename(&path, dest).at(dest)?;
        } else if path.is_dir() {
            std::fs::remove_dir_all(&path).at(&path)?;
        } else {
            std::fs::remove_file(&path).at(&path)?;
        }
    }
    Ok(())
}

impl Drop for ArtifactWriter {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_dir_all(&self.tmp);
        }
    }
}

/// sha256 and size of every file below `dir` except the manifest, keyed by relative path.
fn hash_tree(dir: &Path) -> Result<BTreeMap<String, FileEntry>> {
    let mut out = BTreeMap::new();
    for (p, rel) in files_below(dir)? {
        if rel == MANIFEST {
            continue;
        }
        let bytes = std::fs::metadata(&p).at(&p)?.len();
        out.insert(rel, FileEntry { sha256: sha256_file(&p)?, bytes });
    }
    Ok(out)
}

/// Every file below `dir` (subdirectories included) with its path relative to `dir`, `/`-separated.
pub fn files_below(dir: &Path) -> Result<Vec<(PathBuf, String)>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).at(&d)? {
            let p = entry.at(&d)?.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap_or(&p).to_string_lossy().replace('\\', "/");
                out.push((p, rel));
            }
        }
    }
    Ok(out)
}

/// Whether an artifact's parent is still the one it was made from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum LineageStatus {
    /// The parent directory holds the artifact this one was made from.
    Current,
    /// The parent was replaced since (e.g. a rerun retrained it): this artifact is stale.
    Changed {
        /// The parent's content hash now.
        now: String,
    },
    /// No readable artifact at the recorded parent path.
    Missing,
}

/// The [`LineageStatus`] of the artifact in `dir` (`None` for one without a parent).
pub fn lineage_status(dir: &Path, manifest: &Manifest) -> Option<LineageStatus> {
    let lineage = manifest.lineage.as_ref()?;
    let parent = dir.join(&lineage.parent_path);
    Some(match open(&parent) {
        Ok(p) if p.content_hash() == lineage.parent_content_sha256 => LineageStatus::Current,
        Ok(p) => LineageStatus::Changed { now: p.content_hash() },
        Err(_) => LineageStatus::Missing,
    })
}

/// Replaces an artifact's manifest with `manifest` (atomically; the files it lists are
/// unchanged, so its content hash is too): how a run writes a gate's verdict into an
/// artifact it made earlier.
pub fn rewrite_manifest(dir: &Path, manifest: &Manifest) -> Result<()> {
    let path = dir.join(MANIFEST);
    let json = json::to_vec(manifest)?;
    write_atomic(&path, |mut f| std::io::Write::write_all(&mut f, &json).at(&path))
}

/// Refuses an artifact that must not be served or exported: one whose status is `failed`, one
/// made from a parent that was replaced since (stale: the parent at its recorded path has
/// other content), and one whose parent, or any ancestor, is failed or stale. A parent that is
/// not there at all (an artifact deployed alone) is no objection.
pub fn check_usable(dir: &Path, manifest: &Manifest) -> Result<()> {
    let refuse = |what: String| {
        Err(Error::new(ErrorKind::Unusable, format!("{what}; refusing it (pass --allow-failed to use it anyway)")))
    };
    let (mut at, mut m) = (dir.to_path_buf(), manifest.clone());
    for _ in 0..16 {
        if m.status == manifest::Status::Failed {
            let why: Vec<String> = m.gate_failures.iter().map(ToString::to_string).collect();
            let why = if why.is_empty() { "a quality gate failed".to_string() } else { why.join("; ") };
            return refuse(if at == dir {
                format!("{}: status failed: {why}", dir.join(MANIFEST).display())
            } else {
                format!("{}: made from {}, whose status is failed: {why}", dir.display(), at.display())
            });
        }
        let Some(lineage) = &m.lineage else { return Ok(()) };
        let parent = lexically_normal(&at.join(&lineage.parent_path));
        match lineage_status(&at, &m) {
            Some(LineageStatus::Changed { now }) => {
                return refuse(format!(
                    "{}: stale: {} was replaced since it was made from it (content sha256 {} now, {} then); rebuild it",
                    dir.display(),
                    parent.display(),
                    now.get(..12).unwrap_or(&now),
                    lineage.parent_content_sha256.get(..12).unwrap_or(&lineage.parent_content_sha256)
                ));
            }
            Some(LineageStatus::Current) => {
                m = open(&parent)?;
                at = parent;
            }
            Some(LineageStatus::Missing) | None => return Ok(()),
        }
    }
    Ok(())
}

/// For each artifact of `artifacts` (a directory and its manifest), the index of its parent
/// among them: the one at the path its lineage records (compared after resolving links and
/// `..`), when it is there.
pub fn parents_among(artifacts: &[(&Path, &Manifest)]) -> Vec<Option<usize>> {
    let canon: Vec<Option<PathBuf>> = artifacts.iter().map(|(d, _)| d.canonicalize().ok()).collect();
    let parent_of = |(i, (d, m)): (usize, &(&Path, &Manifest))| {
        let parent = m.lineage.as_ref().and_then(|l| d.join(&l.parent_path).canonicalize().ok())?;
        (0..artifacts.len()).find(|&j| j != i && canon[j].as_ref() == Some(&parent))
    };
    artifacts.iter().enumerate().map(parent_of).collect()
}

/// `p` with `.` dropped and each `..` folding the component before it (no file system access:
/// `run/student/../teacher` is `run/teacher`).
fn lexically_normal(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir
                if matches!(out.components().next_back(), Some(std::path::Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Reads an artifact's manifest and verifies every listed file against its hash.
pub fn open(dir: &Path) -> Result<Manifest> {
    let mpath = dir.join(MANIFEST);
    if !dir.is_dir() {
        return Err(Error::new(ErrorKind::ArtifactMissing, format!("{}: no such artifact directory", dir.display())));
    }
    let text = std::fs::read(&mpath).map_err(|_| {
        Error::new(
            ErrorKind::ArtifactMissing,
            format!("{}: missing {MANIFEST} (not a reco-cli artifact)", dir.display()),
        )
    })?;
    let manifest = parse_manifest(&text, &mpath)?;
    verify_files(dir, &manifest)?;
    Ok(manifest)
}

/// Parses and format-checks a manifest; `mpath` names it in errors.
fn parse_manifest(text: &[u8], mpath: &Path) -> Result<Manifest> {
    let manifest: Manifest = serde_json::from_slice(text).map_err(|e| {
        Error::new(ErrorKind::NotAnArtifact, format!("{}: not a valid reco-cli manifest ({e})", mpath.display()))
    })?;
    manifest.check_format(mpath)?;
    Ok(manifest)
}

/// A manifest read from memory (`name` stands for the artifact in errors).
pub fn manifest_from_bytes(name: &str, text: &[u8]) -> Result<Manifest> {
    parse_manifest(text, &Path::new(name).join(MANIFEST))
}

/// Checks in-memory `bytes` of the file `file` against the manifest's size and sha256.
pub fn verify_bytes(name: &str, manifest: &Manifest, file: &str, bytes: &[u8]) -> Result<()> {
    let p = Path::new(name).join(file);
    let entry = manifest.files.get(file).ok_or_else(|| {
        Error::new(
            ErrorKind::NotAnArtifact,
            format!("{}: manifest lists no {file}", Path::new(name).join(MANIFEST).display()),
        )
    })?;
    if bytes.len() as u64 != entry.bytes {
        return Err(Error::new(
            ErrorKind::ChecksumMismatch,
            format!(
                "{}: {} bytes, the manifest says {}; the artifact was modified or corrupted",
                p.display(),
                bytes.len(),
                entry.bytes
            ),
        ));
    }
    let actual = sha256_bytes(bytes);
    if actual != entry.sha256 {
        return Err(Error::new(
            ErrorKind::ChecksumMismatch,
            format!(
                "{}: sha256 mismatch (manifest says {}, bytes have {actual}); the artifact was modified or corrupted",
                p.display(),
                entry.sha256
            ),
        ));
    }
    Ok(())
}

/// Checks that each file the manifest lists exists with the recorded sha256.
pub fn verify_files(dir: &Path, manifest: &Manifest) -> Result<()> {
    if !manifest.files.contains_key(WEIGHTS) {
        return Err(Error::new(
            ErrorKind::NotAnArtifact,
            format!("{}: manifest lists no {WEIGHTS}", dir.join(MANIFEST).display()),
        ));
    }
    let exports = manifest.exports.values().map(|e| (&e.file, &e.sha256, e.bytes));
    for (name, sha256, bytes) in manifest.files.iter().map(|(n, e)| (n, &e.sha256, e.bytes)).chain(exports) {
        let p = dir.join(name);
        if !p.is_file() {
            return Err(Error::new(
                ErrorKind::ChecksumMismatch,
                format!("{}: missing (listed in the manifest)", p.display()),
            ));
        }
        let size = std::fs::metadata(&p).at(&p)?.len();
        if size != bytes {
            return Err(Error::new(
                ErrorKind::ChecksumMismatch,
                format!(
                    "{}: {size} bytes, the manifest says {bytes}; the artifact was modified or corrupted",
                    p.display()
                ),
            ));
        }
        let actual = sha256_file(&p)?;
        if actual != *sha256 {
            return Err(Error::new(
                ErrorKind::ChecksumMismatch,
                format!(
                    "{}: sha256 mismatch (manifest says {sha256}, file has {actual}); the artifact was modified or corrupted",
                    p.display(),
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod crash_tests {
    use super::*;

    #[test]
    fn a_failed_single_file_write_keeps_the_old_file_leaves_no_temp_and_names_the_destination() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("scores.parquet");
        std::fs::write(&dest, b"previous").unwrap();
        let err = write_atomic(&dest, |mut f| {
            std::io::Write::write_all(&mut f, b"half").unwrap();
            Err(Error::io(tmp_path(&dest), std::io::Error::from_raw_os_error(28)))
        })
        .unwrap_err();
        assert!(err.to_string().starts_with(&format!("{}: ", dest.display())), "{err}");
        assert_eq!(std::fs::read(&dest).unwrap(), b"previous");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, [std::ffi::OsString::from("scores.parquet")]);
        write_atomic(&dest, |mut f| std::io::Write::write_all(&mut f, b"new").at(&dest)).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"new");
    }

    /// A pid no process has (above Linux's pid_max).
    const DEAD: u32 = 999_999_999;

    /// Creates directory `dir` holding one file `name` with `bytes`.
    fn dir_with(dir: &Path, name: &str, bytes: &[u8]) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    }

    #[test]
    fn a_copy_caught_between_the_two_renames_is_put_back_and_stale_temp_dirs_go() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("teacher");
        // Killed after `teacher` -> `.teacher.old-<pid>`, before the new copy was renamed in.
        let old = dir.path().join(format!(".teacher.old-{DEAD}"));
        dir_with(&old, "model.safetensors", b"previous");
        let tmp = dir.path().join(format!(".teacher.tmp-{DEAD}"));
        dir_with(&tmp, "half", b"x");
        let w = ArtifactWriter::create(&dest).unwrap();
        assert_eq!(std::fs::read(dest.join("model.safetensors")).unwrap(), b"previous", "previous copy put back");
        assert!(!tmp.exists() && !old.exists());
        w.write("model.safetensors", b"new").unwrap();
        w.commit().unwrap();
        assert_eq!(std::fs::read(dest.join("model.safetensors")).unwrap(), b"new");
        let left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, ["teacher"]);
    }

    #[test]
    fn a_directory_holding_foreign_files_or_a_file_is_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("mine");
        dir_with(&dest, "notes.txt", b"keep me");
        let err = ArtifactWriter::create(&dest).err().unwrap().to_string();
        assert!(err.contains("notes.txt"), "{err}");
        assert_eq!(std::fs::read(dest.join("notes.txt")).unwrap(), b"keep me");
        let file = dir.path().join("q8");
        std::fs::write(&file, b"hi").unwrap();
        assert!(ArtifactWriter::create(&file).err().unwrap().to_string().contains("is a file"));
        assert_eq!(std::fs::read(&file).unwrap(), b"hi");
    }

    #[test]
    fn a_stale_old_copy_beside_a_complete_artifact_is_removed_and_replacement_works() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("student");
        dir_with(&dest, "metrics.json", b"current");
        let old = dir.path().join(format!(".student.old-{DEAD}"));
        dir_with(&old, "metrics.json", b"older");
        // Before: the rename onto a non-empty `.student.old` failed with "Directory not empty".
        let w = ArtifactWriter::create(&dest).unwrap();
        w.write("metrics.json", b"newest").unwrap();
        w.commit().unwrap();
        assert_eq!(std::fs::read(dest.join("metrics.json")).unwrap(), b"newest");
        assert!(!old.exists());
    }
}
