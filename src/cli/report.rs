//! `synthscan report`: summarize a verdict file or a folder of parts.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use super::usage;
use crate::report;

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A verdict Parquet file, or a folder of them (sharded scans, watch output).
    #[arg(value_name = "DATASET")]
    pub dataset: PathBuf,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also write the summary as one self-contained HTML page of charts and tables.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

pub fn run(args: ReportArgs) -> Result<ExitCode> {
    let summary = report::summarize(&args.dataset).map_err(usage)?;
    if let Some(path) = &args.html {
        let page = report::html::report_page(&summary)?;
        std::fs::write(path, page).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!("{summary}");
    }
    Ok(ExitCode::SUCCESS)
}
