//! `pipe summary SPEC`: the Keras-style model table.

use std::path::PathBuf;

use anyhow::Result;

use super::{DataFiles, Overrides, load_plan};
use crate::graph::summary_table;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  pipe summary pipelines/agnews_transformer.toml\n  pipe summary pipelines/bert_finetune.toml --set model.head.units=2"
)]
pub struct SummaryArgs {
    pub spec: PathBuf,
    #[command(flatten)]
    pub overrides: Overrides,
}

pub fn run(args: SummaryArgs) -> Result<i32> {
    // The table needs shapes, not data: do not insist that data files exist.
    let (loaded, plan) = match load_plan(&args.spec, &args.overrides.sets, DataFiles::Unread) {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    out!("{}", summary_table(&loaded.spec.name, &plan));
    Ok(0)
}
