//! Parquet footers and schemas read with arrow-rs first (polars' decoder trusts list lengths in
//! a corrupt footer and aborts the process; found by fuzzing).

use std::path::Path;

use reco_runtime::error::{Error, IoContext, Result, catch_panic, one_line};

/// Rows per row group of a Parquet file and its top-level column names, from its footer as
/// arrow-rs decodes it (polars' decoder trusts list lengths in a corrupt footer and aborts the
/// process allocating tens of gigabytes; found by fuzzing).
pub(crate) fn parquet_footer(file: &Path) -> Result<(Vec<usize>, Vec<String>)> {
    use parquet::file::reader::FileReader;
    let bad = |detail: String| Error::input(format!("{}: not a readable Parquet file ({detail})", file.display()));
    let f = std::fs::File::open(file).at(file)?;
    catch_panic(
        || {
            let r = parquet::file::serialized_reader::SerializedFileReader::new(f)
                .map_err(|e| bad(one_line(&e.to_string())))?;
            let md = r.metadata();
            let groups = md.row_groups().iter().map(|g| usize::try_from(g.num_rows()).unwrap_or(0)).collect();
            let names = md
                .file_metadata()
                .schema_descr()
                .root_schema()
                .get_fields()
                .iter()
                .map(|f| f.name().to_string())
                .collect();
            Ok((groups, names))
        },
        |panic| bad(format!("the reader failed: {panic}")),
    )
}
