//! `reco-cli quantize --model DIR --calibration FILE [--calibrator ...] [--max-auc-drop X]
//! [--junit FILE]`.

use std::path::PathBuf;

use clap::Args;
use reco::Result;
use reco::pipeline::quantize::{QuantizeJob, default_out, quantize};
use reco::progress::Progress;
use reco::recipe::{EmbeddingPrecision, QuantizeSettings};
use reco_runtime::quant::calibrate::Calibrator;

use super::Global;

#[derive(Debug, Args)]
pub struct QuantizeArgs {
    /// Float artifact to quantize.
    #[arg(long)]
    model: PathBuf,
    /// Calibration feature file (e.g. <out>/features/calibration.parquet).
    #[arg(long)]
    calibration: PathBuf,
    /// Activation calibrator: minmax, percentile, entropy, mse.
    #[arg(long, default_value = "percentile")]
    calibrator: Calibrator,
    /// One weight scale per output channel (the default).
    #[arg(long, conflicts_with = "per_tensor")]
    per_channel: bool,
    /// One weight scale per tensor instead.
    #[arg(long)]
    per_tensor: bool,
    /// Per-batch activation ranges instead of calibrated static ones.
    #[arg(long)]
    dynamic: bool,
    /// Weight bits: 7 (default: exact on AVX2's 2x faster vpmaddubsw path) or 8.
    #[arg(long, default_value_t = 7)]
    weight_bits: u32,
    /// Largest allowed |AUC(int8) - AUC(float)| on the test split.
    #[arg(long, default_value_t = 0.001)]
    max_auc_drop: f64,
    /// Largest allowed |NDCG@10(int8) - NDCG@10(float)| on the ranking set.
    #[arg(long, default_value_t = 0.002)]
    max_ndcg_drop: f64,
    /// Embedding tables' precision: auto (each table at its smallest layout, raised to 8 bits
    /// table by table while the gate fails), 8 or 4.
    #[arg(long, default_value = "auto", value_parser = EmbeddingPrecision::parse)]
    embedding_bits: EmbeddingPrecision,
    /// One table's precision, overriding --embedding-bits: `COLUMN=auto|8|4` (repeatable, or
    /// comma-separated).
    #[arg(long, value_delimiter = ',', value_parser = table_bits)]
    table_bits: Vec<(String, EmbeddingPrecision)>,
    /// Dense layers to keep in float from the start, e.g. `0,2` (the gate may add more).
    #[arg(long, value_delimiter = ',')]
    keep_float: Vec<usize>,
    /// Held-out feature file for the gate (default: test.parquet next to --calibration).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Ranking set (default: ranking.parquet next to --calibration, if present).
    #[arg(long)]
    ranking: Option<PathBuf>,
    /// Output directory (default: <model>-int8 next to the model).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also write JUnit XML: the accuracy gate's two test cases, atomically.
    #[arg(long)]
    junit: Option<PathBuf>,
}

pub fn exec(args: QuantizeArgs, g: &Global, progress: &dyn Progress) -> Result<u8> {
    let QuantizeArgs {
        model,
        calibration,
        calibrator,
        per_channel: _,
        per_tensor,
        dynamic,
        weight_bits,
        max_auc_drop,
        max_ndcg_drop,
        embedding_bits,
        table_bits,
        keep_float,
        data,
        ranking,
        out,
        junit,
    } = args;
    let test = data.unwrap_or_else(|| calibration.with_file_name("test.parquet"));
    let ranking = ranking.or_else(|| {
        let p = calibration.with_file_name("ranking.parquet");
        p.is_file().then_some(p)
    });
    let embedding_table_bits = table_bits_map(table_bits)?;
    let out = out.unwrap_or_else(|| default_out(&model));
    reco::outputs::check_output(&out, &[calibration.as_path(), model.as_path()])?;
    if let Some(path) = &junit {
        check_junit(path, &[&calibration, &model, &test], ranking.as_deref(), &out)?;
    }
    reco_runtime::artifact::check_replaceable(&out)?;
    let _lock = reco::outputs::OutputLock::acquire_parent(&out)?;
    let opts = QuantizeSettings {
        calibrator,
        per_channel: !per_tensor,
        dynamic,
        weight_bits,
        max_auc_drop,
        max_ndcg_drop,
        embedding_bits,
        embedding_table_bits,
    };
    opts.validate(|k| format!("--{}", k.replace('_', "-")))?;
    let job = QuantizeJob {
        model: &model,
        calibration: &calibration,
        test: &test,
        ranking: ranking.as_deref(),
        out: &out,
        opts,
        keep_float: &keep_float,
    };
    let s = quantize(&job, progress)?;
    if let Some(path) = &junit {
        reco::outputs::junit::write(path, "reco-cli quantize", &reco::outputs::junit::for_quantize(&s))?;
    }
    if g.json {
        super::print_json(&s)?;
    } else {
        let f = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |x| format!("{x:.4}"));
        println!(
            "{} ({}, {} calibrator, kernel {}) -> {}",
            s.kind,
            if s.passed { "gate holds" } else { "GATE FAILED" },
            s.options.calibrator.name(),
            s.kernel,
            s.dir.display()
        );
        println!("  float: AUC {}  logloss {:.4}  NDCG@10 {}", f(s.parent.auc), s.parent.logloss, f(s.parent.ndcg10));
        println!("  int8:  AUC {}  logloss {:.4}  NDCG@10 {}", f(s.int8.auc), s.int8.logloss, f(s.int8.ndcg10));
        println!(
            "  dAUC {}  dNDCG@10 {}  layer SQNR dB {:?}  float layers {:?}",
            s.delta_auc.map_or_else(|| "not measurable".into(), |d| format!("{d:+.5}")),
            s.delta_ndcg.map_or_else(|| "not measurable".into(), |d| format!("{d:+.5}")),
            s.layer_sqnr_db.iter().map(|v| (v * 10.0).round() / 10.0).collect::<Vec<_>>(),
            s.float_layers
        );
    }
    Ok(if s.passed { 0 } else { 1 })
}

/// `COLUMN=auto|8|4`.
fn table_bits(s: &str) -> std::result::Result<(String, EmbeddingPrecision), String> {
    let (col, bits) =
        s.split_once('=').filter(|(c, _)| !c.is_empty()).ok_or_else(|| format!("`{s}`: expected COLUMN=auto|8|4"))?;
    Ok((col.to_string(), EmbeddingPrecision::parse(bits)?))
}

/// `--table-bits` pairs by table, each table once.
fn table_bits_map(
    pairs: Vec<(String, EmbeddingPrecision)>,
) -> Result<std::collections::BTreeMap<String, EmbeddingPrecision>> {
    let mut map = std::collections::BTreeMap::new();
    for (table, bits) in pairs {
        if map.insert(table.clone(), bits).is_some() {
            return Err(reco::Error::input(format!("--table-bits: `{table}` given twice; expected each table once")));
        }
    }
    Ok(map)
}

/// `--junit`'s path: not one of the inputs, not inside the output artifact.
fn check_junit(
    path: &std::path::Path,
    inputs: &[&std::path::Path],
    ranking: Option<&std::path::Path>,
    out: &std::path::Path,
) -> Result<()> {
    use reco::outputs::{Format, OutputGuard, Written};
    let mut reads = inputs.to_vec();
    reads.extend(ranking);
    OutputGuard::new("--junit", path, Written::File(Format::Junit)).reads(&reads).writes([out.to_path_buf()]).check()
}
