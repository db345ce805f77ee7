//! `pipe`: declarative deep-learning pipelines on burn.
//!
//! A pipeline TOML file is loaded ([`spec`]), resolved into a shape-checked plan ([`graph`]),
//! compiled into a burn Module, and trained stage by stage ([`train`]) into a run folder ([`run`]).

// First, so that its printing macros are in scope in every module below.
#[macro_use]
pub mod console;

pub mod backend;
pub mod bench;
pub mod cli;
pub mod compare;
pub mod data;
pub mod error;
pub mod export;
pub mod fused;
pub mod graph;
pub mod layers;
pub mod onnx;
pub mod pretrained;
pub mod run;
pub mod serve;
pub mod spec;
pub mod sweep;
pub mod text_table;
pub mod train;
pub mod vectorize;
