//! A pretrained encoder's weights: the files that hold them (model.safetensors, or the shards a
//! model.safetensors.index.json lists), the tensors' names and shapes as stored, and the table
//! between each family's Hugging Face tensor names and the `hf_encoder` module's own paths.
//! The same table loads a checkpoint and exports one (`pipe export --format hf`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::encoder_config::{EncoderConfig, Family, ModernBertOptions};

/// One stored tensor: its dtype as safetensors names it, its shape, and the file holding it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredTensor {
    pub dtype: String,
    pub shape: Vec<usize>,
    pub file: PathBuf,
}

/// The files holding a model folder's weights: model.safetensors, or the shards its
/// model.safetensors.index.json names. PyTorch pickles (`pytorch_model.bin`) are refused with
/// how to convert them: reading a pickle runs code, and safetensors is what the hub serves.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        return shards(&index);
    }
    for pickle in ["pytorch_model.bin", "pytorch_model.bin.index.json"] {
        let path = dir.join(pickle);
        if path.is_file() {
            return Err(format!(
                "{}: pipe reads safetensors only, and this folder has no model.safetensors; \
                 write one with transformers (`AutoModel.from_pretrained(\"{dir}\").save_pretrained(\"{dir}\")` \
                 saves safetensors) or download the hub's model.safetensors",
                path.display(),
                dir = dir.display()
            ));
        }
    }
    Err(format!(
        "{}: no model.safetensors or model.safetensors.index.json",
        dir.display()
    ))
}

/// The shard file names a model.safetensors.index.json lists, each once, in order, with the
/// first tensor each holds (present or not: a hub model's index is found before its shards are
/// fetched). A name that is not a plain file name is refused.
fn index_entries(index: &Path) -> Result<Vec<(String, String)>, String> {
    let at = |e: String| format!("{}: {e}", index.display());
    let text = std::fs::read_to_string(index).map_err(|e| at(e.to_string()))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| at(e.to_string()))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| at("no `weight_map` object".into()))?;
    let mut entries: Vec<(String, String)> = Vec::new();
    for (tensor, file) in map {
        let name = file
            .as_str()
            .filter(|f| !f.contains('/') && !f.contains('\\') && !f.starts_with('.'))
            .ok_or_else(|| at(format!("`weight_map.{tensor}` is not a file name: {file}")))?;
        if !entries.iter().any(|(n, _)| n == name) {
            entries.push((name.to_string(), tensor.clone()));
        }
    }
    Ok(entries)
}

/// The shard file names a model.safetensors.index.json lists, each once, in order.
pub fn shard_names(index: &Path) -> Result<Vec<String>, String> {
    Ok(index_entries(index)?
        .into_iter()
        .map(|(name, _)| name)
        .collect())
}

/// The shard files of a sharded checkpoint, each once, in the order the index first names them;
/// a shard absent from the folder is named with a tensor it should hold.
fn shards(index: &Path) -> Result<Vec<PathBuf>, String> {
    let dir = index.parent().unwrap_or(Path::new("."));
    (index_entries(index)?.into_iter())
        .map(|(name, tensor)| {
            let path = dir.join(&name);
            match path.is_file() {
                true => Ok(path),
                false => Err(format!(
                    "{}: names {name} (for {tensor}), which is absent",
                    index.display()
                )),
            }
        })
        .collect()
}

/// Every tensor of a safetensors file: name → dtype and shape, from its JSON header.
pub fn read_header(path: &Path) -> Result<BTreeMap<String, StoredTensor>, String> {
    use std::io::Read;
    let at = |e: String| format!("{}: {e}", path.display());
    let mut file = std::fs::File::open(path).map_err(|e| at(e.to_string()))?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len)
        .map_err(|_| at("not a safetensors file (shorter than its 8-byte header length)".into()))?;
    let len = u64::from_le_bytes(len);
    let size = file.metadata().map_err(|e| at(e.to_string()))?.len();
    if len > size.saturating_sub(8) || len > 100 << 20 {
        return Err(at(format!(
            "not a safetensors file (header length {len} in a {size}-byte file)"
        )));
    }
    let mut header = vec![0u8; len as usize];
    file.read_exact(&mut header)
        .map_err(|e| at(e.to_string()))?;
    let json: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|e| at(format!("header: {e}")))?;
    let mut tensors = BTreeMap::new();
    for (name, info) in json {
        if name == "__metadata__" {
            continue;
        }
        let dtype = info.get("dtype").and_then(|d| d.as_str());
        let shape: Option<Vec<usize>> = info.get("shape").and_then(|s| {
            s.as_array()?
                .iter()
                .map(|d| d.as_u64().map(|d| d as usize))
                .collect()
        });
        let (Some(dtype), Some(shape)) = (dtype, shape) else {
            return Err(at(format!("header: tensor `{name}` has no dtype or shape")));
        };
        tensors.insert(
            name,
            StoredTensor {
                dtype: dtype.to_string(),
                shape,
                file: path.to_path_buf(),
            },
        );
    }
    Ok(tensors)
}

/// All tensors of a model folder's weight files.
pub fn stored_tensors(files: &[PathBuf]) -> Result<BTreeMap<String, StoredTensor>, String> {
    let mut all = BTreeMap::new();
    for f in files {
        all.extend(read_header(f)?);
    }
    Ok(all)
}

/// One tensor of the encoder: its Hugging Face name (without the family's `bert.`-style
/// prefix), the module's path for it, its PyTorch shape, and the config.json key that sets
/// that shape (for error messages).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorPlan {
    pub hf_name: String,
    pub module_path: String,
    pub shape: Vec<usize>,
    pub size_key: &'static str,
}

/// Where the pooler's dense layer comes from in a checkpoint of `family` (the classifier's
/// input is made by it): BERT's own pooler, or the sequence-classification head's first layer.
pub fn pooler_names(family: Family) -> &'static [&'static str] {
    match family {
        Family::Bert => &["pooler.dense"],
        // RoBERTa's and ELECTRA's classification heads do not read the base model's pooler;
        // a checkpoint without a head (a base model) gets a new one, as in transformers.
        Family::Roberta | Family::Electra => &["classifier.dense"],
        Family::DistilBert => &["pre_classifier"],
        // DeBERTa's context pooler belongs to its head, outside the `deberta.` prefix.
        Family::DebertaV2 => &["pooler.dense"],
        // ModernBERT's head: dense, activation, LayerNorm (`head.norm` beside it).
        Family::ModernBert => &["head.dense"],
    }
}

/// The name of the sequence-classification head's last linear layer.
pub fn classifier_name(family: Family) -> &'static str {
    match family {
        Family::Bert | Family::DistilBert | Family::DebertaV2 | Family::ModernBert => "classifier",
        Family::Roberta | Family::Electra => "classifier.out_proj",
    }
}

fn linear(plan: &mut Vec<TensorPlan>, hf: &str, module: &str, out_in: [(usize, &'static str); 2]) {
    let ((out, out_key), (input, _)) = (out_in[0], out_in[1]);
    plan.push(TensorPlan {
        hf_name: format!("{hf}.weight"),
        module_path: format!("{module}.weight"),
        shape: vec![out, input],
        size_key: out_key,
    });
    plan.push(TensorPlan {
        hf_name: format!("{hf}.bias"),
        module_path: format!("{module}.bias"),
        shape: vec![out],
        size_key: out_key,
    });
}

/// A weight, and its bias where the checkpoint has one.
fn linear_maybe_bias(
    plan: &mut Vec<TensorPlan>,
    hf: &str,
    module: &str,
    out_in: [(usize, &'static str); 2],
    bias: bool,
) {
    linear(plan, hf, module, out_in);
    if !bias {
        plan.pop();
    }
}

fn layer_norm_maybe_bias(
    plan: &mut Vec<TensorPlan>,
    hf: &str,
    module: &str,
    size: (usize, &'static str),
    bias: bool,
) {
    layer_norm(plan, hf, module, size);
    if !bias {
        plan.pop();
    }
}

fn layer_norm(plan: &mut Vec<TensorPlan>, hf: &str, module: &str, (n, key): (usize, &'static str)) {
    for (hf_param, module_param) in [("weight", "weight"), ("bias", "bias")] {
        plan.push(TensorPlan {
            hf_name: format!("{hf}.{hf_param}"),
            module_path: format!("{module}.{module_param}"),
            shape: vec![n],
            size_key: key,
        });
    }
}

fn table(
    plan: &mut Vec<TensorPlan>,
    hf: &str,
    module: &str,
    rows: (usize, &'static str),
    width: usize,
) {
    plan.push(TensorPlan {
        hf_name: format!("{hf}.weight"),
        module_path: format!("{module}.weight"),
        shape: vec![rows.0, width],
        size_key: rows.1,
    });
}

/// Every tensor of the encoder (embeddings, layers), in the family's Hugging Face names, without
/// the pooler (see [`pooler_plan`]).
pub fn encoder_plan(c: &EncoderConfig) -> Vec<TensorPlan> {
    if let Some(modern) = &c.modern {
        return modern_plan(c, modern);
    }
    let (h, e) = (c.hidden_size, c.embedding_size);
    let distil = c.family == Family::DistilBert;
    let hk = if distil { "dim" } else { "hidden_size" };
    let ek = if e != h { "embedding_size" } else { hk };
    let mut p = Vec::new();
    let rows = |n, key| (n, key);
    table(
        &mut p,
        "embeddings.word_embeddings",
        "embeddings.word_embeddings",
        rows(c.vocab_size, "vocab_size"),
        e,
    );
    if c.position_biased_input {
        table(
            &mut p,
            "embeddings.position_embeddings",
            "embeddings.position_embeddings",
            rows(c.max_position_embeddings, "max_position_embeddings"),
            e,
        );
    }
    if c.type_vocab_size > 0 {
        table(
            &mut p,
            "embeddings.token_type_embeddings",
            "embeddings.token_type_embeddings",
            rows(c.type_vocab_size, "type_vocab_size"),
            e,
        );
    }
    if c.family == Family::DebertaV2 {
        // DeBERTa projects (without a bias) before its LayerNorm, which is hidden-wide.
        if e != h {
            p.push(TensorPlan {
                hf_name: "embeddings.embed_proj.weight".into(),
                module_path: "embeddings.projection.weight".into(),
                shape: vec![h, e],
                size_key: "embedding_size",
            });
        }
        layer_norm(
            &mut p,
            "embeddings.LayerNorm",
            "embeddings.layer_norm",
            (h, hk),
        );
    } else {
        layer_norm(
            &mut p,
            "embeddings.LayerNorm",
            "embeddings.layer_norm",
            (e, ek),
        );
        if e != h {
            linear(
                &mut p,
                "embeddings_project",
                "embeddings.projection",
                [(h, hk), (e, ek)],
            );
        }
    }
    if let Some(r) = &c.relative {
        let key = "position_buckets / max_relative_positions";
        table(
            &mut p,
            "encoder.rel_embeddings",
            "encoder.rel_embeddings",
            rows(2 * r.span, key),
            h,
        );
        if r.norm_rel_embeddings {
            layer_norm(&mut p, "encoder.LayerNorm", "encoder.layer_norm", (h, hk));
        }
    }
    for n in 0..c.num_hidden_layers {
        layer_plan(&mut p, c, n);
    }
    p
}

/// ModernBERT's tensors: the fused query|key|value and input|gate projections are kept fused.
fn modern_plan(c: &EncoderConfig, m: &ModernBertOptions) -> Vec<TensorPlan> {
    let (h, i) = (c.hidden_size, c.intermediate_size);
    let (hk, ik) = ("hidden_size", "intermediate_size");
    let mut p = Vec::new();
    table(
        &mut p,
        "embeddings.tok_embeddings",
        "embeddings.word_embeddings",
        (c.vocab_size, "vocab_size"),
        h,
    );
    layer_norm_maybe_bias(
        &mut p,
        "embeddings.norm",
        "embeddings.layer_norm",
        (h, hk),
        m.norm_bias,
    );
    for n in 0..c.num_hidden_layers {
        let (hf, module) = (format!("layers.{n}"), format!("encoder.pre_norm_layer.{n}"));
        // The first layer reads the normalised embeddings as they are (no attn_norm).
        if n > 0 {
            let (a, b) = (format!("{hf}.attn_norm"), format!("{module}.attn_norm"));
            layer_norm_maybe_bias(&mut p, &a, &b, (h, hk), m.norm_bias);
        }
        let at = |a: &str, b: &str| (format!("{hf}.{a}"), format!("{module}.{b}"));
        let (a, b) = at("attn.Wqkv", "qkv");
        linear_maybe_bias(&mut p, &a, &b, [(3 * h, hk), (h, hk)], m.attention_bias);
        let (a, b) = at("attn.Wo", "attention_output");
        linear_maybe_bias(&mut p, &a, &b, [(h, hk), (h, hk)], m.attention_bias);
        let (a, b) = at("mlp_norm", "mlp_norm");
        layer_norm_maybe_bias(&mut p, &a, &b, (h, hk), m.norm_bias);
        let (a, b) = at("mlp.Wi", "mlp_input");
        linear_maybe_bias(&mut p, &a, &b, [(2 * i, ik), (h, hk)], m.mlp_bias);
        let (a, b) = at("mlp.Wo", "mlp_output");
        linear_maybe_bias(&mut p, &a, &b, [(h, hk), (i, ik)], m.mlp_bias);
    }
    layer_norm_maybe_bias(
        &mut p,
        "final_norm",
        "encoder.final_norm",
        (h, hk),
        m.norm_bias,
    );
    p
}

/// The tensors of encoder layer `n`.
fn layer_plan(p: &mut Vec<TensorPlan>, c: &EncoderConfig, n: usize) {
    let (h, i) = (c.hidden_size, c.intermediate_size);
    let distil = c.family == Family::DistilBert;
    let (hk, ik) = if distil {
        ("dim", "hidden_dim")
    } else {
        ("hidden_size", "intermediate_size")
    };
    let (query, key, value) = match c.family {
        Family::DistilBert => ("attention.q_lin", "attention.k_lin", "attention.v_lin"),
        Family::DebertaV2 => (
            "attention.self.query_proj",
            "attention.self.key_proj",
            "attention.self.value_proj",
        ),
        _ => (
            "attention.self.query",
            "attention.self.key",
            "attention.self.value",
        ),
    };
    let rest: [&str; 5] = if distil {
        [
            "attention.out_lin",
            "sa_layer_norm",
            "ffn.lin1",
            "ffn.lin2",
            "output_layer_norm",
        ]
    } else {
        [
            "attention.output.dense",
            "attention.output.LayerNorm",
            "intermediate.dense",
            "output.dense",
            "output.LayerNorm",
        ]
    };
    let m = format!("encoder.layer.{n}");
    let hf = if distil {
        format!("transformer.layer.{n}")
    } else {
        m.clone()
    };
    let square = [(h, hk), (h, hk)];
    linear(
        p,
        &format!("{hf}.{query}"),
        &format!("{m}.attention.self_attention.query"),
        square,
    );
    linear(
        p,
        &format!("{hf}.{key}"),
        &format!("{m}.attention.self_attention.key"),
        square,
    );
    linear(
        p,
        &format!("{hf}.{value}"),
        &format!("{m}.attention.self_attention.value"),
        square,
    );
    if let Some(r) = c.relative.filter(|r| !r.share_att_key) {
        if r.c2p {
            let name = format!("{hf}.attention.self.pos_key_proj");
            linear(
                p,
                &name,
                &format!("{m}.attention.self_attention.pos_key"),
                square,
            );
        }
        if r.p2c {
            let name = format!("{hf}.attention.self.pos_query_proj");
            linear(
                p,
                &name,
                &format!("{m}.attention.self_attention.pos_query"),
                square,
            );
        }
    }
    linear(
        p,
        &format!("{hf}.{}", rest[0]),
        &format!("{m}.attention.output.dense"),
        square,
    );
    layer_norm(
        p,
        &format!("{hf}.{}", rest[1]),
        &format!("{m}.attention.output.layer_norm"),
        (h, hk),
    );
    linear(
        p,
        &format!("{hf}.{}", rest[2]),
        &format!("{m}.intermediate.dense"),
        [(i, ik), (h, hk)],
    );
    linear(
        p,
        &format!("{hf}.{}", rest[3]),
        &format!("{m}.output.dense"),
        [(h, hk), (i, ik)],
    );
    layer_norm(
        p,
        &format!("{hf}.{}", rest[4]),
        &format!("{m}.output.layer_norm"),
        (h, hk),
    );
}

/// The pooler's dense layer under `hf` (one of [`pooler_names`]).
pub fn pooler_plan(c: &EncoderConfig, hf: &str) -> Vec<TensorPlan> {
    let hk = if c.family == Family::DistilBert {
        "dim"
    } else {
        "hidden_size"
    };
    let square = [(c.hidden_size, hk), (c.hidden_size, hk)];
    let mut p = Vec::new();
    match &c.modern {
        Some(m) => {
            linear_maybe_bias(&mut p, hf, "pooler.dense", square, m.head_bias);
            let norm = hf.replace(".dense", ".norm");
            let size = (c.hidden_size, hk);
            layer_norm_maybe_bias(&mut p, &norm, "pooler.norm", size, m.norm_bias);
        }
        None => linear(&mut p, hf, "pooler.dense", square),
    }
    p
}

/// How a checkpoint's tensors map onto the encoder module.
#[derive(Debug)]
pub struct LoadPlan {
    /// (stored name, module path) of every tensor to load.
    pub tensors: Vec<(String, String)>,
    /// The checkpoint has no pooler (a base model whose family's head makes it): it starts from
    /// random weights, as transformers' `from_pretrained` does.
    pub new_pooler: bool,
    /// The weight files to read.
    pub files: Vec<PathBuf>,
}

/// Buffers that checkpoints may carry beside the parameters (not weights; ignored).
fn is_buffer(name: &str) -> bool {
    name.ends_with("position_ids") || name.ends_with("token_type_ids")
}

/// Matches a checkpoint's tensors against the encoder `c` describes: every tensor present with
/// the shape config.json implies, and no encoder tensor left over. Errors name the weight file,
/// the tensor and the config.json key.
pub fn plan_load(dir: &Path, c: &EncoderConfig) -> Result<LoadPlan, String> {
    let files = weight_files(dir)?;
    let stored = stored_tensors(&files)?;
    let prefix = format!("{}.", c.family.base_prefix());
    let prefixed = stored.keys().any(|k| k.starts_with(&prefix));
    let full = |hf: &str| {
        if prefixed {
            format!("{prefix}{hf}")
        } else {
            hf.to_string()
        }
    };
    let mut tensors = Vec::new();
    let config = dir.join("config.json");
    let check = |plan: &TensorPlan, name: &str| -> Result<(), String> {
        let Some(t) = stored.get(name) else {
            return Err(format!(
                "{}: no tensor `{name}`, which a {} encoder with this config.json has",
                files_named(&files),
                c.model_type
            ));
        };
        if t.shape != plan.shape {
            return Err(format!(
                "{}: tensor `{name}` has shape {:?}, but {} implies {:?} (`{}`)",
                t.file.display(),
                t.shape,
                config.display(),
                plan.shape,
                plan.size_key
            ));
        }
        Ok(())
    };
    for plan in encoder_plan(c) {
        let name = full(&plan.hf_name);
        check(&plan, &name)?;
        tensors.push((name, plan.module_path));
    }
    // The pooler: BERT's under the base prefix; the heads' at the top level.
    let pooler_source = pooler_names(c.family).iter().find_map(|hf| {
        let name = if c.family == Family::Bert {
            full(&format!("{hf}.weight"))
        } else {
            format!("{hf}.weight")
        };
        stored
            .contains_key(&name)
            .then(|| name.trim_end_matches(".weight").to_string())
    });
    let new_pooler = pooler_source.is_none();
    if let Some(source) = pooler_source {
        for plan in pooler_plan(c, &source) {
            check(&plan, &plan.hf_name)?;
            tensors.push((plan.hf_name, plan.module_path));
        }
    }
    // Tensors of the encoder that the config does not account for (a layer more than
    // `num_hidden_layers`, a renamed weight) mean the config and the weights disagree.
    let expected: std::collections::HashSet<&str> =
        tensors.iter().map(|(name, _)| name.as_str()).collect();
    let encoder_part = [
        "embeddings.",
        "embeddings_project.",
        "encoder.",
        "transformer.",
        "layers.",
        "final_norm.",
    ];
    for name in stored.keys() {
        let bare = name.strip_prefix(&prefix).unwrap_or(name);
        if !expected.contains(name.as_str())
            && !is_buffer(name)
            && (prefixed == name.starts_with(&prefix))
            && encoder_part.iter().any(|p| bare.starts_with(p))
        {
            return Err(format!(
                "{}: unexpected tensor `{name}`: config.json ({} layers, model_type `{}`) has no such weight",
                stored[name].file.display(),
                c.num_hidden_layers,
                c.model_type
            ));
        }
    }
    Ok(LoadPlan {
        tensors,
        new_pooler,
        files,
    })
}

fn files_named(files: &[PathBuf]) -> String {
    match files {
        [one] => one.display().to_string(),
        many => format!(
            "{} (sharded: {} files)",
            many[0].parent().unwrap_or(Path::new(".")).display(),
            many.len()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: serde_json::Value) -> EncoderConfig {
        EncoderConfig::from_json(&json).unwrap()
    }

    fn bert_json() -> serde_json::Value {
        serde_json::json!({
            "model_type": "bert", "vocab_size": 10, "hidden_size": 4, "num_hidden_layers": 2,
            "num_attention_heads": 2, "intermediate_size": 6, "max_position_embeddings": 8,
        })
    }

    #[test]
    fn plans_cover_every_parameter_once() {
        // BERT's closed formula (tests/fixtures/README.md §5): (V + P + T)·H + 2H, per layer
        // 4(H² + H) + 2H + (H·I + I) + (I·H + H) + 2H, the pooler H² + H.
        let c = config(bert_json());
        let plan = encoder_plan(&c);
        let count: usize = plan.iter().map(|p| p.shape.iter().product::<usize>()).sum();
        let layer = 4 * (16 + 4) + 8 + (24 + 6) + (24 + 4) + 8;
        assert_eq!(count, (10 + 8 + 2) * 4 + 8 + 2 * layer);
        assert_eq!(c.param_count(), count + 16 + 4);
        let mut names: Vec<&str> = plan.iter().map(|p| p.module_path.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), plan.len(), "each module path once");
        let distil = config(serde_json::json!({
            "model_type": "distilbert", "vocab_size": 10, "dim": 4, "n_layers": 2,
            "n_heads": 2, "hidden_dim": 6, "max_position_embeddings": 8,
        }));
        let plan = encoder_plan(&distil);
        assert!(
            plan.iter()
                .any(|p| p.hf_name == "transformer.layer.1.ffn.lin2.weight"
                    && p.module_path == "encoder.layer.1.output.dense.weight"
                    && p.shape == vec![4, 6])
        );
        assert!(!plan.iter().any(|p| p.hf_name.contains("token_type")));
        let count: usize = plan.iter().map(|p| p.shape.iter().product::<usize>()).sum();
        assert_eq!(count, (10 + 8) * 4 + 8 + 2 * layer);
    }

    #[test]
    fn pickles_are_refused_with_how_to_convert() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pytorch_model.bin"), b"x").unwrap();
        let err = weight_files(dir.path()).unwrap_err();
        assert!(
            err.contains("pytorch_model.bin: pipe reads safetensors only"),
            "{err}"
        );
        assert!(err.contains("save_pretrained"), "{err}");
    }

    #[test]
    fn a_shard_index_names_its_files_once_and_a_missing_shard_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let index = serde_json::json!({"weight_map": {
            "a": "model-00001-of-00002.safetensors",
            "b": "model-00002-of-00002.safetensors",
            "c": "model-00001-of-00002.safetensors",
        }});
        std::fs::write(
            dir.path().join("model.safetensors.index.json"),
            index.to_string(),
        )
        .unwrap();
        std::fs::write(dir.path().join("model-00001-of-00002.safetensors"), b"").unwrap();
        let err = weight_files(dir.path()).unwrap_err();
        assert!(
            err.contains("model-00002-of-00002.safetensors (for b)"),
            "{err}"
        );
        std::fs::write(dir.path().join("model-00002-of-00002.safetensors"), b"").unwrap();
        assert_eq!(weight_files(dir.path()).unwrap().len(), 2);
    }
}
