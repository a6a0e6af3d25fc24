//! `synthscan models`: what is in the models folder.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Args;

use super::models_dirs;
use crate::decode::simd;
use crate::model::manifest;

#[derive(Debug, Args)]
pub struct ModelsArgs {
    #[arg(long, env = "SYNTHSCAN_MODELS", value_name = "DIR")]
    pub models_dir: Option<PathBuf>,
}

pub fn run(args: ModelsArgs) -> Result<ExitCode> {
    let dirs = models_dirs(&args.models_dir);
    let Some(dir) = dirs.iter().find(|d| d.is_dir()) else {
        bail!("no models folder found (looked in {dirs:?})");
    };
    let mut manifests = Vec::new();
    for entry in manifest::list(dir) {
        match entry {
            Ok(e) => manifests.push(e.manifest),
            Err(e) => eprintln!("warning: {e}"),
        }
    }
    // Names are as long as their authors make them: the column fits the longest.
    let width = manifests
        .iter()
        .map(|m| m.name.len())
        .chain(["name".len()])
        .max()
        .unwrap_or_default();
    println!(
        "{:<width$} {:<10} {:<22} {:>5} {:>9}  variants",
        "name", "version", "architecture", "size", "threshold"
    );
    for m in manifests {
        let variants: Vec<&str> = m.variants.iter().map(|v| v.precision.as_str()).collect();
        println!(
            "{:<width$} {:<10} {:<22} {:>5} {:>9.3}  fp32 {}",
            m.name,
            m.version,
            m.architecture,
            m.input.width,
            m.threshold,
            variants.join(" ")
        );
    }
    // On stderr, so that stdout stays the table scripts read.
    eprintln!("{}", simd::statement());
    Ok(ExitCode::SUCCESS)
}
