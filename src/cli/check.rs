//! `pipe check SPEC`: validate and resolve, report every problem at once.

use std::path::PathBuf;

use anyhow::Result;

use super::{DataFiles, Overrides, load_plan};

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  pipe check pipelines/agnews_transformer.toml\n  pipe check pipelines/agnews_transformer.toml --set model.block.num_heads=4"
)]
pub struct CheckArgs {
    pub spec: PathBuf,
    #[command(flatten)]
    pub overrides: Overrides,
}

pub fn run(args: CheckArgs) -> Result<i32> {
    let (loaded, plan) = match load_plan(&args.spec, &args.overrides.sets, DataFiles::Checked) {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    let spec = &loaded.spec;
    outln!("{}: ok — pipeline `{}`", args.spec.display(), spec.name);
    outln!(
        "  vectorizer {} → input {}",
        spec.vectorizer.type_name(),
        plan.inputs[0].1
    );
    for l in &plan.layers {
        outln!(
            "  {:<28} {:<30} {:>12} params",
            l.name,
            format!("{}", l.outputs[0].1),
            l.params
        );
    }
    outln!(
        "  {} parameters ({} trainable), {} classes",
        plan.total_params(),
        plan.trainable_params(),
        plan.num_classes
    );
    if let Some(found) = &loaded.inferred_labels {
        let shown: Vec<String> = found
            .iter()
            .map(|c| format!("{} ({} rows)", c.label, c.rows))
            .collect();
        outln!(
            "  classes from {} (`dataset.labels` omitted): {}",
            spec.dataset.train,
            shown.join(", ")
        );
    }
    for (i, s) in spec.stages.iter().enumerate() {
        outln!(
            "  stage {}: {} epoch(s), batch {}, {} lr {}{}{}",
            s.name_or_default(i),
            s.epochs,
            s.batch_size,
            s.optimizer.type_name(),
            s.optimizer.learning_rate(),
            if s.freeze.is_empty() {
                String::new()
            } else {
                format!(", frozen: {}", s.freeze.join(", "))
            },
            s.early_stopping
                .as_ref()
                .map(|es| format!(
                    ", early stopping on {} (patience {})",
                    es.monitor, es.patience
                ))
                .unwrap_or_default()
        );
    }
    Ok(0)
}
