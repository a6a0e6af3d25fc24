//! `synthscan models`: what is in the models folder.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Args;

use super::models_dirs;
use crate::manifest;

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
    println!(
        "{:<20} {:<10} {:<22} {:>5} {:>9}  variants",
        "name", "version", "architecture", "size", "threshold"
    );
    for entry in manifest::list(dir) {
        match entry {
            Ok(e) => {
                let m = &e.manifest;
                let variants: Vec<&str> = m.variants.iter().map(|v| v.precision.as_str()).collect();
                println!(
                    "{:<20} {:<10} {:<22} {:>5} {:>9.3}  fp32 {}",
                    m.name,
                    m.version,
                    m.architecture,
                    m.input.width,
                    m.threshold,
                    variants.join(" ")
                );
            }
            Err(e) => eprintln!("warning: {e}"),
        }
    }
    Ok(ExitCode::SUCCESS)
}
