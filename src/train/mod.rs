//! Training: the stage loop, optimizers and schedules, freezing, metrics.

pub mod adam;
mod batches;
pub mod checkpoints;
pub mod early_stopping;
pub mod engine;
pub mod evaluate;
pub mod freeze;
pub mod metrics;
pub mod optim;
pub mod parallel;
pub mod policies;
pub mod prefix;
pub mod resume;
pub mod schedule;
mod stage;

pub use engine::TrainOutcome;
