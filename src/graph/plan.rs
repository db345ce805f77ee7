//! Spec → Plan: every layer's config parsed, inputs resolved, output shapes inferred and
//! parameters counted before anything is allocated or trained. All problems are collected.

use std::path::Path;

use crate::error::{Diagnostics, suggest, with_suggestion};
use crate::layers::{InferCtx, LAYER_TYPES, LayerConfig, TensorSpec, ValueKind};
use crate::spec::dataset::DatasetFormat;
use crate::spec::stage::OptimizerSpec;
use crate::spec::vectorizer::Padding;
use crate::spec::{LoadedSpec, Spec, Validation, VectorizerSpec};

/// Where a layer input comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// One of the vectorizer's outputs, by its index in [`Plan::inputs`] (ids, mask, token
    /// types).
    Input(usize),
    /// One of an earlier layer's outputs: indices into [`Plan::layers`] and its `outputs`.
    Layer { layer: usize, output: usize },
}

#[derive(Clone, Debug)]
pub struct PlannedLayer {
    pub name: String,
    pub config: LayerConfig,
    pub sources: Vec<Source>,
    pub input_specs: Vec<TensorSpec>,
    pub outputs: Vec<(String, TensorSpec)>,
    pub params: usize,
    /// Of `params`, the running statistics no optimizer trains.
    pub state: usize,
    /// `trainable = false` in the spec: frozen in every stage.
    pub trainable: bool,
}

#[derive(Clone, Debug)]
pub struct Plan {
    /// The vectorizer's outputs, addressable as `input`, `input.attention_mask`, ...
    pub inputs: Vec<(String, TensorSpec)>,
    pub layers: Vec<PlannedLayer>,
    pub ctx: InferCtx,
    pub num_classes: usize,
}

pub const INPUT_NAME: &str = "input";

impl Plan {
    /// Each pretrained encoder layer's name and the folder of the config.json it was built
    /// from (what a run folder keeps a copy of).
    pub fn pretrained_configs(&self) -> Vec<(String, Result<std::path::PathBuf, String>)> {
        self.layers
            .iter()
            .filter_map(|l| match &l.config {
                LayerConfig::HfEncoder(c) | LayerConfig::Bert(c) => {
                    Some((l.name.clone(), c.model_dir()))
                }
                _ => None,
            })
            .collect()
    }

    pub fn total_params(&self) -> usize {
        self.layers.iter().map(|l| l.params).sum()
    }
    pub fn trainable_params(&self) -> usize {
        self.layers
            .iter()
            .filter(|l| l.trainable)
            .map(|l| l.params - l.state)
            .sum()
    }
}

/// `*` and `?` wildcards, for `freeze = ["bert*"]`.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some('*'), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
            (Some('?'), Some(_)) => go(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &n[1..]),
            _ => false,
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    go(&p, &n)
}

/// What the vectorizer feeds the model, known from the spec alone.
pub fn vectorizer_shapes(spec: &Spec) -> (InferCtx, Vec<(String, TensorSpec)>) {
    let (ctx, len) = match &spec.vectorizer {
        VectorizerSpec::TextVectorization(v) => (
            InferCtx {
                vocab_size: v.max_tokens,
                sequence_length: Some(v.output_sequence_length),
                load_pretrained: true,
                dynamic_padding: v.padding == Padding::Longest,
            },
            match v.padding {
                Padding::MaxLength => Some(v.output_sequence_length),
                Padding::Longest => None,
            },
        ),
        VectorizerSpec::Pretrained(v) => {
            let len = match v.padding {
                Padding::MaxLength => Some(v.max_length),
                Padding::Longest => None,
            };
            (
                InferCtx {
                    // The tokenizer's size is filled in by `resolve`, which loads it.
                    vocab_size: 0,
                    // The longest a batch can be, whatever the padding (as text_vectorization).
                    sequence_length: Some(v.max_length),
                    load_pretrained: true,
                    dynamic_padding: v.padding == Padding::Longest,
                },
                len,
            )
        }
        VectorizerSpec::Wordpiece(v) | VectorizerSpec::Bpe(v) => (
            InferCtx {
                // The trained vocabulary holds at most this many pieces.
                vocab_size: v.vocab_size,
                sequence_length: Some(v.max_length),
                load_pretrained: true,
                dynamic_padding: v.padding == Padding::Longest,
            },
            match v.padding {
                Padding::MaxLength => Some(v.max_length),
                Padding::Longest => None,
            },
        ),
    };
    let inputs = vec![
        ("input_ids".to_string(), TensorSpec::ids(len)),
        ("attention_mask".to_string(), TensorSpec::float(vec![len])),
        ("token_type_ids".to_string(), TensorSpec::ids(len)),
    ];
    (ctx, inputs)
}

/// Names that become parts of paths (`runs/<pipeline>/`, `checkpoints/<stage>-last...`) are
/// `[A-Za-z0-9][A-Za-z0-9._-]*`: no separators, no `..`, nothing hidden, nothing empty, so a
/// run never writes outside its runs dir.
pub fn is_path_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn check_path_name(
    name: &str,
    key: &str,
    what: &str,
    loaded: &LoadedSpec,
    diags: &mut Diagnostics,
) {
    if !is_path_name(name) {
        diags.push(
            loaded.source.value(key),
            format!(
                "`{key}`: {what} `{name}` becomes part of a path, so it must match [A-Za-z0-9][A-Za-z0-9._-]*"
            ),
        );
    }
}

/// The pretrained tokenizer's vocabulary size, added tokens included: from the run's saved
/// tokenizer.json when resolving a run folder's spec, else from the model `from` names.
fn pretrained_vocab_size(
    spec: &crate::spec::vectorizer::PretrainedVectorizerSpec,
    run_vectorizer: Option<&Path>,
) -> Result<usize, String> {
    use crate::vectorize::SubwordTokenizer;
    // The size does not depend on the length; a length too short is reported on its own.
    let spec = crate::spec::vectorizer::PretrainedVectorizerSpec {
        max_length: spec.max_length.max(2),
        ..spec.clone()
    };
    let tokenizer = match run_vectorizer {
        Some(dir) => SubwordTokenizer::load(dir, spec.max_length, &spec.padding),
        None => SubwordTokenizer::pretrained(&spec),
    };
    tokenizer
        .map(|t| t.vocab_size())
        .map_err(|e| format!("{e:#}"))
}

fn check_file(path: &str, key: &str, loaded: &LoadedSpec, diags: &mut Diagnostics) {
    // A file, or a save_to_disk folder (`format = "arrow"`).
    if !Path::new(path).exists() {
        diags.push(
            loaded.source.value(key),
            format!("`{key}`: file not found: {path}"),
        );
    }
}

pub fn resolve(loaded: &LoadedSpec) -> Result<Plan, Diagnostics> {
    resolve_with(loaded, true)
}

/// `check_files = false` skips the existence of data files (summary, eval of a moved run).
pub fn resolve_with(loaded: &LoadedSpec, check_files: bool) -> Result<Plan, Diagnostics> {
    let spec = &loaded.spec;
    let mut diags = Diagnostics::default();
    check_dataset(loaded, check_files, &mut diags);
    check_path_name(&spec.name, "name", "the pipeline name", loaded, &mut diags);
    let (ctx, inputs) = check_vectorizer(loaded, &mut diags);
    let names = spec.model.layer_names();
    let layers = plan_layers(loaded, &names, &inputs, &ctx, &mut diags);
    let num_classes = spec.dataset.labels.len();
    check_head(loaded, &layers, num_classes, &mut diags);
    check_stages(loaded, &names, &layers, &mut diags);
    if !diags.is_empty() {
        return Err(diags);
    }
    Ok(Plan {
        inputs,
        layers: layers
            .into_iter()
            .map(|l| l.expect("no diagnostics"))
            .collect(),
        ctx,
        num_classes,
    })
}

/// The `[dataset]` table: files, classes, text columns, validation and limit.
fn check_dataset(loaded: &LoadedSpec, check_files: bool, diags: &mut Diagnostics) {
    let (ds, src) = (&loaded.spec.dataset, &loaded.source);
    if check_files {
        check_file(&ds.train, "dataset.train", loaded, diags);
        if let Some(test) = &ds.test {
            check_file(test, "dataset.test", loaded, diags);
        }
    }
    match &loaded.inferred_labels {
        Some(found) if found.len() < 2 => diags.push(
            src.value("dataset.train"),
            format!(
                "the train file has {} class(es) ({}); a classifier needs at least two (`dataset.labels` is omitted, so the classes come from it)",
                found.len(),
                found.iter().map(|c| c.label.as_str()).collect::<Vec<_>>().join(", ")
            ),
        ),
        _ if ds.labels.len() == 1 => diags.push(
            src.value("dataset.labels"),
            "`dataset.labels` needs at least two class names",
        ),
        // A train file that cannot be read is reported on its own (check_file, or the
        // inference's error); without it nothing says what the classes are.
        _ if ds.labels.is_empty() && !check_files => diags.push(
            src.value("dataset.train"),
            "`dataset.labels` is omitted and the train file cannot be read to find the classes",
        ),
        _ => {}
    }
    if ds.text.is_empty() {
        diags.push(
            src.value("dataset.text"),
            "`dataset.text` needs at least one column",
        );
    }
    if ds.format == DatasetFormat::AgNewsCsv {
        for (i, col) in ds.text.iter().enumerate() {
            if col != "title" && col != "description" {
                diags.push(
                    src.value(&format!("dataset.text[{i}]")),
                    format!("ag_news_csv has columns `title` and `description`, not `{col}`"),
                );
            }
        }
    }
    match &ds.validation {
        Some(Validation::Split(_)) if ds.test.is_none() => diags.push(
            src.value("dataset.validation"),
            "`validation = \"test\"` needs `dataset.test`",
        ),
        Some(Validation::Fraction(f)) if !(*f > 0.0 && *f < 1.0) => diags.push(
            src.value("dataset.validation"),
            format!("validation fraction must be in (0, 1), got {f}"),
        ),
        _ => {}
    }
    if ds.limit == Some(0) {
        diags.push(
            src.value("dataset.limit"),
            "`dataset.limit` must be at least 1",
        );
    }
}

/// The `[vectorizer]` table's sizes, and what it feeds the model (with a pretrained
/// tokenizer's real vocabulary size).
fn check_vectorizer(
    loaded: &LoadedSpec,
    diags: &mut Diagnostics,
) -> (InferCtx, Vec<(String, TensorSpec)>) {
    let (spec, src) = (&loaded.spec, &loaded.source);
    let (mut ctx, inputs) = vectorizer_shapes(spec);
    match &spec.vectorizer {
        VectorizerSpec::TextVectorization(v) => {
            if v.max_tokens < 3 {
                diags.push(
                    src.value("vectorizer.max_tokens"),
                    "`max_tokens` must be at least 3",
                );
            }
            if v.output_sequence_length == 0 {
                diags.push(
                    src.value("vectorizer.output_sequence_length"),
                    "`output_sequence_length` must be at least 1",
                );
            }
        }
        VectorizerSpec::Pretrained(v) => {
            if v.max_length < 2 {
                diags.push(
                    src.value("vectorizer.max_length"),
                    format!(
                        "`max_length` must be at least 2 (room for [CLS] and [SEP]), got {}",
                        v.max_length
                    ),
                );
            }
            // Layers sized by the vocabulary (embeddings, BERT's check) need the real size.
            match pretrained_vocab_size(v, loaded.vectorizer_dir.as_deref()) {
                Ok(n) => ctx.vocab_size = n,
                Err(e) => diags.push(src.value("vectorizer.from"), format!("`vectorizer`: {e}")),
            }
        }
        VectorizerSpec::Wordpiece(v) | VectorizerSpec::Bpe(v) => {
            // BPE starts from the 256 bytes; WordPiece from [PAD], [UNK] and a character.
            let least = match spec.vectorizer {
                VectorizerSpec::Bpe(_) => 257,
                _ => 4,
            };
            let kind = spec.vectorizer.type_name();
            if v.vocab_size < least {
                diags.push(
                    src.value("vectorizer.vocab_size"),
                    format!(
                        "`vocab_size` of a `{kind}` tokenizer must be at least {least}, got {}",
                        v.vocab_size
                    ),
                );
            }
            if v.max_length == 0 {
                diags.push(
                    src.value("vectorizer.max_length"),
                    "`max_length` must be at least 1",
                );
            }
        }
    }
    (ctx, inputs)
}

/// Plans the layers in order; a layer that fails (or whose input failed) is `None`, so that
/// later layers still report their own problems.
fn plan_layers(
    loaded: &LoadedSpec,
    names: &[String],
    inputs: &[(String, TensorSpec)],
    ctx: &InferCtx,
    diags: &mut Diagnostics,
) -> Vec<Option<PlannedLayer>> {
    if loaded.spec.model.layers.is_empty() {
        diags.push(loaded.source.key("model"), "the model has no layers");
    }
    let mut layers: Vec<Option<PlannedLayer>> = Vec::new();
    for i in 0..loaded.spec.model.layers.len() {
        let earlier = Earlier {
            names: &names[..i],
            layers: &layers,
            inputs,
        };
        let planned = plan_layer(loaded, i, &names[i], &earlier, ctx, diags);
        layers.push(planned);
    }
    layers
}

/// What a layer can take its inputs from: the vectorizer's outputs and the layers before it.
struct Earlier<'a> {
    names: &'a [String],
    layers: &'a [Option<PlannedLayer>],
    inputs: &'a [(String, TensorSpec)],
}

/// One layer: its config parsed and validated, its inputs resolved, its shape inferred.
fn plan_layer(
    loaded: &LoadedSpec,
    i: usize,
    name: &String,
    earlier: &Earlier,
    ctx: &InferCtx,
    diags: &mut Diagnostics,
) -> Option<PlannedLayer> {
    let (layer, src) = (&loaded.spec.model.layers[i], &loaded.source);
    let at = format!("model.layers[{i}]");
    if earlier.names.contains(name) || name == INPUT_NAME {
        diags.push(
            src.value(&format!("{at}.name")),
            format!("duplicate layer name `{name}`"),
        );
    }
    let config = parse_layer(loaded, i, name, diags)?;
    let refs = input_refs(loaded, i, name, earlier.names, diags)?;
    let mut sources = Vec::new();
    let mut specs = Vec::new();
    let mut upstream_failed = false;
    for (r, key) in &refs {
        match lookup(r, earlier) {
            Ok(Some((s, spec))) => {
                sources.push(s);
                specs.push(spec);
            }
            Ok(None) => upstream_failed = true,
            Err(msg) => {
                let loc = if key.is_empty() {
                    src.key(&format!("{at}.type"))
                } else {
                    src.value(key)
                };
                diags.push(loc, format!("layer `{name}`: {msg}"));
                upstream_failed = true;
            }
        }
    }
    if upstream_failed {
        return None;
    }
    if !config.arity().contains(&sources.len()) {
        diags.push(
            src.key(&format!("{at}.type")),
            format!(
                "layer `{name}` ({}) takes {:?} inputs, got {}",
                layer.kind,
                config.arity(),
                sources.len()
            ),
        );
        return None;
    }
    match config.infer(&specs, ctx) {
        Ok(outputs) => Some(PlannedLayer {
            name: name.clone(),
            params: config.param_count(&specs, ctx),
            state: config.state_count(&specs, ctx),
            config,
            sources,
            input_specs: specs,
            outputs,
            trainable: layer.trainable.unwrap_or(true),
        }),
        Err(msg) => {
            let from: Vec<String> = (refs.iter().zip(&specs))
                .map(|((r, _), s)| {
                    let kind = describe_source(r, earlier.names, &loaded.spec);
                    format!("`{r}`{kind} {s}")
                })
                .collect();
            diags.push(
                src.key(&format!("{at}.type")),
                format!(
                    "shape mismatch: layer `{name}` ({}) cannot take {}: {msg}",
                    layer.kind,
                    from.join(" and ")
                ),
            );
            None
        }
    }
}

/// Layer `i`'s config from its table, validated; errors name the key (or the type). Every
/// unknown key is reported: each is recorded, taken out, and the table read again.
fn parse_layer(
    loaded: &LoadedSpec,
    i: usize,
    name: &str,
    diags: &mut Diagnostics,
) -> Option<LayerConfig> {
    let layers = &loaded.spec.model.layers;
    let mut params = layers[i].params.clone();
    // The output layer's width is the number of classes: a last `dense` may leave it out.
    let classes = loaded.spec.dataset.labels.len();
    if i + 1 == layers.len() && layers[i].kind == "dense" && classes > 0 {
        params
            .entry("units")
            .or_insert(toml::Value::Integer(classes as i64));
    }
    let mut reported = false;
    loop {
        match parse_layer_once(loaded, i, name, &params, reported, diags) {
            Ok(config) if !reported => return Some(config),
            Ok(_) | Err(None) => return None,
            Err(Some(unknown)) => {
                reported = true;
                params.remove(&unknown)?;
            }
        }
    }
}

/// One reading of [`parse_layer`]: the valid config, or the error recorded and, when it was an
/// unknown key of the layer's table, that key.
fn parse_layer_once(
    loaded: &LoadedSpec,
    i: usize,
    name: &str,
    params: &toml::Table,
    retry: bool,
    diags: &mut Diagnostics,
) -> Result<LayerConfig, Option<String>> {
    let (layer, src) = (&loaded.spec.model.layers[i], &loaded.source);
    let at = format!("model.layers[{i}]");
    let config = match LayerConfig::parse(&layer.kind, toml::Value::Table(params.clone())) {
        Ok(Some(c)) => c,
        Ok(None) => {
            let hint = suggest(&layer.kind, LAYER_TYPES.iter().copied())
                .map(|s| format!(", did you mean `{s}`?"))
                .unwrap_or_else(|| format!(" (known: {})", LAYER_TYPES.join(", ")));
            diags.push(
                src.value(&format!("{at}.type")),
                format!("unknown layer type `{}`{hint}", layer.kind),
            );
            return Err(None);
        }
        // After an unknown key was taken out, a missing one is most likely it, misspelt.
        Err((message, _)) if retry && message.starts_with("missing field") => return Err(None),
        Err((message, path)) => {
            let field = message
                .strip_prefix("unknown field `")
                .and_then(|r| r.split('`').next())
                .map(str::to_string);
            let loc = match (&field, path.is_empty()) {
                (Some(f), _) => src.key(&format!("{at}.{f}")),
                (None, false) => src.value(&format!("{at}.{path}")),
                (None, true) => src.key(&format!("{at}.type")),
            };
            let key = if path.is_empty() || field.is_some() {
                String::new()
            } else {
                format!("`{path}`: ")
            };
            diags.push(
                loc,
                format!(
                    "layer `{name}` ({}): {key}{}",
                    layer.kind,
                    with_suggestion(&message)
                ),
            );
            return Err(field);
        }
    };
    if let Err(e) = config.validate() {
        diags.push(
            src.key(&format!("{at}.type")),
            format!("layer `{name}` ({}): {e}", layer.kind),
        );
        return Err(None);
    }
    Ok(config)
}

/// Layer `i`'s input references with the key each came from (`""`: implied): named, or the
/// previous layer's default output.
fn input_refs(
    loaded: &LoadedSpec,
    i: usize,
    name: &str,
    names: &[String],
    diags: &mut Diagnostics,
) -> Option<Vec<(String, String)>> {
    let layer = &loaded.spec.model.layers[i];
    let at = format!("model.layers[{i}]");
    Some(match (&layer.input, &layer.inputs) {
        (Some(_), Some(_)) => {
            diags.push(
                loaded.source.key(&format!("{at}.inputs")),
                format!("layer `{name}`: give `input` or `inputs`, not both"),
            );
            return None;
        }
        (Some(r), None) => vec![(r.clone(), format!("{at}.input"))],
        (None, Some(rs)) => (rs.iter().enumerate())
            .map(|(j, r)| (r.clone(), format!("{at}.inputs[{j}]")))
            .collect(),
        (None, None) if i == 0 => vec![(INPUT_NAME.to_string(), String::new())],
        (None, None) => vec![(names[i - 1].clone(), String::new())],
    })
}

/// The last layer must give one probability (or logit) per class.
fn check_head(
    loaded: &LoadedSpec,
    layers: &[Option<PlannedLayer>],
    num_classes: usize,
    diags: &mut Diagnostics,
) {
    let src = &loaded.source;
    let Some(Some(last)) = layers.last().filter(|_| num_classes > 0) else {
        return;
    };
    let out = &last.outputs[0].1;
    let ok = out.kind == ValueKind::Float && out.rank() == 1 && out.features() == Some(num_classes);
    if !ok {
        diags.push(
            src.key(&format!("model.layers[{}].type", layers.len() - 1)),
            format!(
                "shape mismatch: the last layer `{}` outputs {out}, but the dataset has {num_classes} classes, so it must output (None, {num_classes})",
                last.name
            ),
        );
    }
    if let LayerConfig::Dense(d) = &last.config {
        use crate::layers::dense::Activation;
        if !matches!(d.activation, Activation::Softmax | Activation::Linear) {
            diags.push(
                src.value(&format!("model.layers[{}].activation", layers.len() - 1)),
                "the classification head must end in `softmax` or `linear` (logits)",
            );
        }
    }
}

/// The `[[stages]]`: names, sizes, rates, policies and freeze patterns. A spec without
/// stages still checks and summarises; `pipe run` reports it.
fn check_stages(
    loaded: &LoadedSpec,
    layer_names: &[String],
    layers: &[Option<PlannedLayer>],
    diags: &mut Diagnostics,
) {
    let (spec, src) = (&loaded.spec, &loaded.source);
    // Data-parallel workers: each takes an equal share of every batch.
    let workers = match spec.runtime.worker_devices() {
        Ok(w) => w.len(),
        Err(e) => {
            diags.push(src.value("runtime.devices"), e);
            1
        }
    };
    let mut stage_names: Vec<String> = Vec::new();
    for (i, stage) in spec.stages.iter().enumerate() {
        let sname = stage.name_or_default(i);
        if stage_names.contains(&sname) {
            diags.push(
                src.value(&format!("stages[{i}].name")),
                format!("duplicate stage name `{sname}`"),
            );
        }
        stage_names.push(sname.clone());
        check_stage(loaded, i, &sname, workers, (layer_names, layers), diags);
    }
}

fn check_stage(
    loaded: &LoadedSpec,
    i: usize,
    sname: &str,
    workers: usize,
    (layer_names, layers): (&[String], &[Option<PlannedLayer>]),
    diags: &mut Diagnostics,
) {
    let (stage, src) = (&loaded.spec.stages[i], &loaded.source);
    let at = format!("stages[{i}]");
    if stage.name.is_some() {
        let key = format!("{at}.name");
        check_path_name(sname, &key, "a stage name", loaded, diags);
    }
    let validated = loaded.spec.dataset.validation.is_some();
    crate::spec::policy::check_stage(stage, &at, sname, validated, src, diags);
    if stage.epochs == 0 {
        diags.push(
            src.value(&format!("{at}.epochs")),
            "`epochs` must be at least 1",
        );
    }
    if workers > 1 && !stage.batch_size.is_multiple_of(workers) {
        diags.push(
            src.value(&format!("{at}.batch_size")),
            format!(
                "stage `{sname}`: `batch_size` {} does not split evenly over the {workers} \
                 workers of `runtime.devices`",
                stage.batch_size
            ),
        );
    }
    for (key, value) in [
        ("steps_per_epoch", stage.steps_per_epoch),
        ("validation_steps", stage.validation_steps),
        ("validate_every", stage.validate_every),
        ("checkpoint_every", stage.checkpoint_every),
    ] {
        if value == Some(0) {
            diags.push(
                src.value(&format!("{at}.{key}")),
                format!("stage `{sname}`: `{key}` must be at least 1 (leave it out for none)"),
            );
        }
    }
    for (key, value) in [
        ("batch_size", stage.batch_size),
        ("gradient_accumulation", stage.gradient_accumulation),
    ] {
        if value == 0 {
            diags.push(
                src.value(&format!("{at}.{key}")),
                format!("`{key}` must be at least 1"),
            );
        }
    }
    check_f16_epsilon(loaded, i, sname, diags);
    let lr = stage.optimizer.learning_rate();
    if !(lr > 0.0 && lr.is_finite()) {
        diags.push(
            // The key itself, so that a `--set` of it is blamed, not the file's line.
            src.value(&format!("{at}.optimizer.learning_rate")),
            format!("learning_rate must be positive, got {lr}"),
        );
    }
    for (j, pattern) in stage.freeze.iter().enumerate() {
        if let Some(why) = part_pattern_problem(pattern, layers) {
            diags.push(
                src.value(&format!("{at}.freeze[{j}]")),
                format!("stage `{sname}`: `freeze` pattern `{pattern}`: {why}"),
            );
            continue;
        }
        if !layer_names.iter().any(|n| glob_match(pattern, n))
            && frozen_parts(pattern, layers.iter().map(Option::as_ref)).is_empty()
        {
            let hint = suggest(pattern, layer_names.iter().map(|s| s.as_str()))
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            diags.push(
                src.value(&format!("{at}.freeze[{j}]")),
                format!("stage `{sname}`: `freeze` pattern `{pattern}` matches no layer{hint}"),
            );
        }
    }
}

/// The `(layer index, part)` pairs a `freeze` pattern `<layer>.<part glob>` names (an encoder's
/// `embeddings`, `layer.N`, `pooler`).
pub fn frozen_parts<'a>(
    pattern: &str,
    layers: impl IntoIterator<Item = Option<&'a PlannedLayer>>,
) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (i, layer) in layers.into_iter().enumerate() {
        let Some(layer) = layer else { continue };
        let Some(part) = pattern.strip_prefix(&format!("{}.", layer.name)) else {
            continue;
        };
        for p in layer.config.parts() {
            if glob_match(part, &p) {
                found.push((i, p));
            }
        }
    }
    found
}

/// A `<layer>.<part>` pattern whose layer exists but has no such part: what it has.
fn part_pattern_problem(pattern: &str, layers: &[Option<PlannedLayer>]) -> Option<String> {
    let layer = layers
        .iter()
        .flatten()
        .find(|l| pattern.starts_with(&format!("{}.", l.name)))?;
    if !frozen_parts(pattern, layers.iter().map(Option::as_ref)).is_empty() {
        return None;
    }
    let parts = layer.config.parts();
    Some(if parts.is_empty() {
        format!(
            "layer `{}` ({}) has no parts to freeze on their own; freeze it whole",
            layer.name,
            layer.config.type_name()
        )
    } else {
        format!(
            "layer `{}` has no such part (its parts: {})",
            layer.name,
            parts.join(", ")
        )
    })
}

/// float16's smallest normal number, 2⁻¹⁴.
const F16_SMALLEST_NORMAL: f64 = 6.103515625e-5;

/// Adam's ε under `precision = "f16"`. Below f16's normal range the step m̂ / (√v̂ + ε)
/// overflows once v̂ underflows, and the losses turn NaN: on burn-flex model A did so with
/// Keras' default 1e-7 (and blew up with 1e-6), MiniLM's fine-tuning with PyTorch's 1e-8;
/// both trained with 1e-4.
fn check_f16_epsilon(loaded: &LoadedSpec, i: usize, sname: &str, diags: &mut Diagnostics) {
    if loaded.spec.runtime.precision != crate::spec::runtime::Precision::F16 {
        return;
    }
    let epsilon = match loaded.spec.stages[i].optimizer {
        OptimizerSpec::Adam { epsilon, .. } | OptimizerSpec::AdamW { epsilon, .. } => epsilon,
        OptimizerSpec::Sgd { .. } => return,
    };
    if epsilon < F16_SMALLEST_NORMAL {
        diags.push(
            loaded
                .source
                .value(&format!("stages[{i}].optimizer.epsilon")),
            format!(
                "stage `{sname}`: `epsilon` {epsilon:e} is below float16's smallest normal \
                 number (6.1e-5): under `precision = \"f16\"` Adam's steps overflow and the \
                 losses turn NaN; set `epsilon = 1e-4`, or use `precision = \"bf16\"`"
            ),
        );
    }
}

fn describe_source(reference: &str, names: &[String], spec: &Spec) -> String {
    let layer = reference.split('.').next().unwrap_or(reference);
    names
        .iter()
        .position(|n| n == layer)
        .map(|i| format!(" ({})", spec.model.layers[i].kind))
        .unwrap_or_default()
}

/// Resolves `layer` or `layer.output_name` among earlier layers. `Ok(None)`: that layer failed.
fn lookup(reference: &str, earlier: &Earlier) -> Result<Option<(Source, TensorSpec)>, String> {
    let Earlier {
        names,
        layers,
        inputs,
    } = earlier;
    let (layer, output) = match reference.split_once('.') {
        Some((l, o)) => (l, Some(o)),
        None => (reference, None),
    };
    if layer == INPUT_NAME {
        let idx = match output {
            None => 0,
            Some(o) => inputs.iter().position(|(n, _)| n == o).ok_or_else(|| {
                let names: Vec<&str> = inputs.iter().map(|(n, _)| n.as_str()).collect();
                format!(
                    "the input has no output `{o}` (outputs: {})",
                    names.join(", ")
                )
            })?,
        };
        return Ok(Some((Source::Input(idx), inputs[idx].1.clone())));
    }
    let Some(idx) = names.iter().position(|n| n == layer) else {
        let hint = suggest(layer, names.iter().map(|s| s.as_str()))
            .map(|s| format!("; did you mean `{s}`?"))
            .unwrap_or_default();
        return Err(format!("input `{reference}` is not an earlier layer{hint}"));
    };
    let Some(planned) = &layers[idx] else {
        return Ok(None);
    };
    let out = match output {
        None => 0,
        Some(o) => planned
            .outputs
            .iter()
            .position(|(n, _)| n == o)
            .ok_or_else(|| {
                let outs: Vec<&str> = planned.outputs.iter().map(|(n, _)| n.as_str()).collect();
                format!(
                    "layer `{layer}` has no output `{o}` (outputs: {})",
                    outs.join(", ")
                )
            })?,
    };
    Ok(Some((
        Source::Layer {
            layer: idx,
            output: out,
        },
        planned.outputs[out].1.clone(),
    )))
}
