//! `pipe compare RUN...`: put run folders side by side. The table shows only the resolved-spec
//! keys that differ between the runs (everything else is noise when asking "what changed?") next
//! to their final metrics; the plot overlays their learning curves from metrics.csv.

mod attention_map;
mod confusion;
mod image;
mod load;
mod plot;
mod render;
mod table;
#[cfg(test)]
mod test_fixtures;

pub use attention_map::{attention_size, plot_attention};
pub use confusion::{confusion_size, plot_confusion};
pub use image::ImageKind;
pub use load::{Loaded, RunSummary, flatten, load_runs};
pub use plot::{PLOT_SIZE, plot, plot_with_size};
pub use render::{Format, render};
pub use table::{Table, build_table};
