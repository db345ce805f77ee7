//! The model graph: resolving a spec's layers into a shape-checked plan, compiling the plan
//! into one burn Module, and the summary table.

pub mod compile;
pub mod plan;
pub mod summary;

pub use compile::Graph;
pub use plan::{Plan, PlannedLayer, Source, resolve};
pub use summary::summary_table;
