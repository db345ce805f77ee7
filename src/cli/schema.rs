//! `pipe schema`: write (or `--check`) schemas/pipeline.schema.json.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::spec::schema::pipeline_schema_text;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  pipe schema\n  pipe schema --check")]
pub struct SchemaArgs {
    /// Where to write the schema; `-` prints it on stdout.
    #[arg(long, default_value = "schemas/pipeline.schema.json")]
    pub out: PathBuf,
    /// Do not write; exit 1 if the file differs from what pipe would write.
    #[arg(long)]
    pub check: bool,
}

pub fn run(args: SchemaArgs) -> Result<i32> {
    let text = pipeline_schema_text();
    if args.check {
        let current = std::fs::read_to_string(&args.out).unwrap_or_default();
        if current != text {
            errln!("{} is out of date; run `pipe schema`", args.out.display());
            return Ok(1);
        }
        outln!("{} is current", args.out.display());
        return Ok(0);
    }
    if args.out.as_os_str() == "-" {
        out!("{text}");
        return Ok(0);
    }
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    crate::run::atomic_write(&args.out, text.as_bytes())
        .with_context(|| format!("writing {}", args.out.display()))?;
    outln!("wrote {}", args.out.display());
    Ok(0)
}
