//! Options for reading what files declare about their making.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use clap::Args;

use super::usage;
use crate::provenance::Reader;

#[derive(Debug, Args)]
pub struct ProvenanceOptions {
    /// Root certificates (PEM) that make a C2PA signature trusted; without them a correctly
    /// signed manifest is reported as `untrusted`.
    #[arg(long, value_name = "FILE.pem")]
    pub c2pa_trust_anchors: Option<PathBuf>,
    /// Do not read C2PA, IPTC or generator metadata: the provenance columns stay null and the
    /// label rests on the model alone.
    #[arg(long, conflicts_with = "c2pa_trust_anchors")]
    pub no_provenance: bool,
}

impl ProvenanceOptions {
    pub fn reader(&self) -> Result<Option<Arc<Reader>>> {
        if self.no_provenance {
            return Ok(None);
        }
        let reader = Reader::new(self.c2pa_trust_anchors.as_deref()).map_err(usage)?;
        Ok(Some(Arc::new(reader)))
    }
}
