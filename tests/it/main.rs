//! The integration tests: one binary (a test binary links all of burn, so each extra one costs
//! a link and disk), one module per topic, sharing `common`.

mod common;

mod attention;
mod batch_normalization;
mod bench;
mod bert_parity;
mod bert_run;
mod cli;
mod data_cache;
mod data_formats;
mod data_parallel;
mod early_stopping;
mod families;
mod fuzz;
mod layers_graph;
mod learning_curves;
mod newcomer;
mod onnx_export;
mod precision;
mod reliability;
mod resume;
mod run_folder;
mod schema_and_pipelines;
mod serve;
mod spec_errors;
mod sweep_compare;
mod sweep_slurm;
mod tensorboard;
mod trained_tokenizers;
