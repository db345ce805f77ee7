//! `bert`: the first name of the `hf_encoder` layer, kept so that existing pipelines and run
//! folders load unchanged. The same keys, module and tensor names; any family `hf_encoder`
//! loads (the family comes from config.json's `model_type`, not from this name).

pub use super::hf_encoder::HfEncoderConfig;
