//! Fuzzing: no input makes pipe panic.
//!
//! Three harnesses, each seeded (`PIPE_FUZZ_SEED`, default 1) and sized by `PIPE_FUZZ_SCALE`
//! (default 1: 48,000 spec texts, 48 valid specs and 30,000 data files, about 30 s in all, the
//! smoke CI runs; docs/fuzzing.md gives the figures of a long run):
//! - spec text: mutations of the repo's pipelines (bytes, lines, values, `--set` overrides)
//!   through load → resolve, in this process, every panic caught and reported with its input;
//! - valid specs: random layer stacks from the registry with random stage options, and
//!   random `hf_encoder` pipelines on the tiny checkpoint of each transformer family, each run
//!   by the real binary for 2 steps on 16 rows; a failure must be one error line, never a panic;
//! - data files: random bytes and broken rows in the three text formats, plain,
//!   gzip-compressed (whole or damaged) or posing as zstd, and damaged copies of the Parquet
//!   and save_to_disk fixtures, loaded in this process; every failure must be an error naming
//!   the file.

use crate::common;

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use common::{pipe, scratch};
use pipe::data::source::{self, Format, SourceOptions};

/// No download is ever attempted: a mutated `from = "x"` would otherwise ask the Hugging Face
/// hub for a model `x` (and, on a machine without ../shared, for MiniLM) on every input, and
/// each attempt waits on the closed network. Process-wide (no test in this binary downloads),
/// without changing the environment the other tests read.
fn offline() {
    pipe::pretrained::stay_offline();
}

fn scale() -> usize {
    std::env::var("PIPE_FUZZ_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

fn rng(stream: u64) -> ChaCha8Rng {
    let seed: u64 = std::env::var("PIPE_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    ChaCha8Rng::seed_from_u64(seed.wrapping_mul(1_000_003).wrapping_add(stream))
}

thread_local! {
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
    static CATCHING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f`, returning the panic's message and place if it panics (quietly: the hook records
/// it instead of printing, since the harness reports the input beside it). Panics outside
/// `no_panic` (the harness's own assertions) print as usual.
fn no_panic<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !CATCHING.get() {
                return default(info);
            }
            let place = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_default();
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_default();
            LAST_PANIC.with(|p| *p.borrow_mut() = Some(format!("{message} at {place}")));
        }))
    });
    CATCHING.set(true);
    let outcome = catch_unwind(AssertUnwindSafe(f));
    CATCHING.set(false);
    outcome.map_err(|_| LAST_PANIC.with(|p| p.borrow_mut().take().unwrap_or_default()))
}

/// Values that tend to break parsers and checks.
const INTERESTING: &[&str] = &[
    "0",
    "-1",
    "1",
    "2",
    "-0",
    "0.0",
    "1e400",
    "-1e400",
    "nan",
    "inf",
    "-inf",
    "1e-400",
    "4294967296",
    "18446744073709551616",
    "9223372036854775807",
    "-9223372036854775808",
    "\"\"",
    "\"x\"",
    "\"../../x\"",
    "\"a b\"",
    "[]",
    "[1]",
    "[\"\"]",
    "{}",
    "true",
    "false",
    "0.5",
    "1.0000001",
    "\"*\"",
    "\"cuda:99\"",
    "\"\\u0000\"",
    "[[",
    "]]",
    "=",
    "\"\"\"",
    "#",
];

fn mutate_text(text: &str, rng: &mut ChaCha8Rng) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for _ in 0..rng.random_range(1..=4) {
        if lines.is_empty() {
            lines.push(String::new());
        }
        let i = rng.random_range(0..lines.len());
        match rng.random_range(0..8) {
            // A value replaced.
            0..=2 => {
                if let Some(eq) = lines[i].find('=') {
                    let value = INTERESTING.choose(rng).unwrap();
                    lines[i] = format!("{}= {value}", &lines[i][..eq]);
                }
            }
            3 => {
                lines.remove(i);
            }
            4 => {
                let j = rng.random_range(0..lines.len());
                let copy = lines[j].clone();
                lines.insert(i, copy);
            }
            5 => {
                let j = rng.random_range(0..lines.len());
                lines.swap(i, j);
            }
            // Bytes: a character removed, doubled or replaced.
            _ => {
                let mut chars: Vec<char> = lines[i].chars().collect();
                if !chars.is_empty() {
                    let k = rng.random_range(0..chars.len());
                    match rng.random_range(0..3) {
                        0 => {
                            chars.remove(k);
                        }
                        1 => chars.insert(k, chars[k]),
                        _ => chars[k] = *b"=[]\"'.,{}#\\0-9aZ ".choose(rng).unwrap() as char,
                    }
                }
                lines[i] = chars.into_iter().collect();
            }
        }
    }
    lines.join("\n")
}

const SET_KEYS: &[&str] = &[
    "seed",
    "name",
    "dataset.limit",
    "dataset.validation",
    "dataset.text",
    "dataset.labels",
    "vectorizer.max_tokens",
    "vectorizer.output_sequence_length",
    "vectorizer.padding",
    "stages.train.epochs",
    "stages.train.batch_size",
    "stages.train.validate_every",
    "stages.train.optimizer.learning_rate",
    "stages.train.schedule.warmup_steps",
    "stages.train.freeze",
    "model.block.num_heads",
    "model.block.key_dim",
    "model.head.units",
    "model.embed.embed_dim",
    "runtime.device",
    "runtime.threads",
    "model.nope.units",
];

fn random_sets(rng: &mut ChaCha8Rng) -> Vec<String> {
    (0..rng.random_range(0..3))
        .map(|_| {
            let key = SET_KEYS.choose(rng).unwrap();
            let value = INTERESTING.choose(rng).unwrap();
            format!("{key}={value}")
        })
        .collect()
}

fn seed_specs() -> Vec<(String, String)> {
    let mut specs: Vec<(String, String)> = std::fs::read_dir("pipelines")
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| {
            (
                p.display().to_string(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    specs.sort();
    specs
}

#[test]
fn spec_text_mutations_never_panic() {
    offline();
    let seeds = seed_specs();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let inputs = 48_000 * scale();
    let start = std::time::Instant::now();
    // One stream of inputs per thread; each thread's inputs are reproducible from the seed.
    let accepted: usize = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let seeds = &seeds;
                scope.spawn(move || {
                    let mut rng = rng(100 + t as u64);
                    let mut accepted = 0;
                    for n in (t..inputs).step_by(threads) {
                        let (file, text) = seeds.choose(&mut rng).unwrap();
                        let text = mutate_text(text, &mut rng);
                        let sets = random_sets(&mut rng);
                        let outcome = no_panic(|| {
                            let loaded = pipe::spec::load::load_spec_str(file, &text, &sets, &[])?;
                            pipe::graph::plan::resolve_with(&loaded, false).map(|_| ())
                        });
                        match outcome {
                            Ok(Ok(())) => accepted += 1,
                            Ok(Err(diagnostics)) => assert!(
                                !diagnostics.to_string().trim().is_empty(),
                                "input {n}: an empty error for\n{text}"
                            ),
                            Err(panic) => {
                                panic!("input {n} panicked: {panic}\n--set {sets:?}\n{text}")
                            }
                        }
                    }
                    accepted
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    eprintln!(
        "spec text: {inputs} inputs on {threads} threads, {accepted} valid, 0 panics, {:.1} s",
        start.elapsed().as_secs_f64()
    );
}

/// A random model: an embedding, then 0–3 sequence layers (attention, normalisation, dropout,
/// conv1d, max pooling, lstm / gru), a reduction (average or max pooling, flatten, an lstm's
/// final state), a dense head, random stage options and 1 or 2 data-parallel workers. Many
/// are valid; the others must be refused in one line per error.
fn random_valid_spec(rng: &mut ChaCha8Rng, train: &Path) -> String {
    let embed_dim = *[8usize, 12, 16].choose(rng).unwrap();
    let mut layers = vec![if rng.random_bool(0.5) {
        format!(
            "[[model.layers]]\nname = \"embed\"\ntype = \"token_and_position_embedding\"\nembed_dim = {embed_dim}\n"
        )
    } else {
        format!(
            "[[model.layers]]\nname = \"embed\"\ntype = \"embedding\"\noutput_dim = {embed_dim}\n"
        )
    }];
    let masked = rng.random_bool(0.5);
    for i in 0..rng.random_range(0..=3) {
        let heads = *[1usize, 2, 4].choose(rng).unwrap();
        layers.push(match rng.random_range(0..8) {
            0 => format!(
                "[[model.layers]]\nname = \"block{i}\"\ntype = \"transformer_block\"\nnum_heads = {heads}\nkey_dim = {}\nff_dim = {}\ndropout = {}\nmasked = {masked}\n",
                rng.random_range(1..=8),
                rng.random_range(1..=16),
                [0.0, 0.1, 0.5].choose(rng).unwrap()
            ),
            1 => format!(
                "[[model.layers]]\nname = \"mha{i}\"\ntype = \"multi_head_attention\"\nnum_heads = {heads}\nkey_dim = {}\nmasked = {masked}\n",
                rng.random_range(1..=8)
            ),
            2 => format!(
                "[[model.layers]]\nname = \"norm{i}\"\ntype = \"layer_normalization\"\n"
            ),
            // Refuses `padding = "longest"` on sequences, in one line.
            3 => format!(
                "[[model.layers]]\nname = \"batchnorm{i}\"\ntype = \"batch_normalization\"\nmomentum = {}\n",
                [0.0, 0.9, 0.99].choose(rng).unwrap()
            ),
            // Length-changing layers: masked layers after them must refuse in one line.
            4 => format!(
                "[[model.layers]]\nname = \"conv{i}\"\ntype = \"conv1d\"\nfilters = {}\nkernel_size = {}\npadding = \"{}\"\nactivation = \"relu\"\n",
                rng.random_range(1..=16),
                rng.random_range(1..=5),
                ["valid", "same"].choose(rng).unwrap()
            ),
            5 => format!(
                "[[model.layers]]\nname = \"pool{i}\"\ntype = \"max_pooling_1d\"\npool_size = {}\n",
                rng.random_range(1..=3)
            ),
            6 => format!(
                "[[model.layers]]\nname = \"rnn{i}\"\ntype = \"{}\"\nunits = {}\nreturn_sequences = true\nbidirectional = {}\nmasked = {masked}\n",
                ["lstm", "gru"].choose(rng).unwrap(),
                rng.random_range(1..=8),
                rng.random_bool(0.5)
            ),
            _ => format!(
                "[[model.layers]]\nname = \"drop{i}\"\ntype = \"dropout\"\nrate = {}\n",
                [0.0, 0.2, 0.9].choose(rng).unwrap()
            ),
        });
    }
    layers.push(match rng.random_range(0..4) {
        0 => format!(
            "[[model.layers]]\nname = \"pool\"\ntype = \"global_max_pooling_1d\"\nmasked = {masked}\n"
        ),
        1 => "[[model.layers]]\nname = \"pool\"\ntype = \"flatten\"\n".to_string(),
        2 => format!(
            "[[model.layers]]\nname = \"pool\"\ntype = \"lstm\"\nunits = 4\nmasked = {masked}\n"
        ),
        _ => format!(
            "[[model.layers]]\nname = \"pool\"\ntype = \"global_average_pooling_1d\"\nmasked = {masked}\n"
        ),
    });
    if rng.random_bool(0.5) {
        layers.push(format!(
            "[[model.layers]]\nname = \"hidden\"\ntype = \"dense\"\nunits = {}\nactivation = \"{}\"\n",
            rng.random_range(1..=24),
            ["relu", "gelu", "tanh", "sigmoid", "linear"].choose(rng).unwrap()
        ));
    }
    layers.push(
        "[[model.layers]]\nname = \"head\"\ntype = \"dense\"\nunits = 4\nactivation = \"softmax\"\n"
            .into(),
    );
    let optimizer = match rng.random_range(0..3) {
        0 => format!(
            "type = \"adam\"\nlearning_rate = {}",
            [1e-3, 0.1].choose(rng).unwrap()
        ),
        1 => "type = \"adamw\"\nlearning_rate = 1e-3\nweight_decay = 0.01".to_string(),
        _ => "type = \"sgd\"\nlearning_rate = 0.05\nmomentum = 0.9".to_string(),
    };
    let padding = if masked && rng.random_bool(0.5) {
        "padding = \"longest\"\n"
    } else {
        ""
    };
    format!(
        "name = \"fuzz\"\nseed = {}\n\n[dataset]\nformat = \"ag_news_csv\"\ntrain = \"{}\"\nlimit = 16\nvalidation = 0.25\n\n[vectorizer]\ntype = \"text_vectorization\"\nmax_tokens = {}\noutput_sequence_length = {}\n{padding}\n{}\n[[stages]]\nname = \"train\"\nepochs = 1\nbatch_size = {}\nsteps_per_epoch = 2\nclip_norm = {}\n\n[stages.optimizer]\n{optimizer}\n\n[runtime]\ndevices = {}\n",
        rng.random_range(0..1000),
        train.display(),
        rng.random_range(2..300),
        rng.random_range(1..40),
        layers.join("\n"),
        rng.random_range(1..=8),
        [0.5, 1.0, 5.0].choose(rng).unwrap(),
        rng.random_range(1..=2),
    )
}

/// A pipeline on one of the tiny transformer checkpoints of tests/fixtures/families: its
/// tokenizer and an `hf_encoder` with random pooling, dropout, length, padding and frozen
/// parts; lengths beyond a model's positions must be refused in one line.
fn random_encoder_spec(rng: &mut ChaCha8Rng, train: &Path) -> String {
    let families = [
        "bert",
        "distilbert",
        "roberta",
        "xlm_roberta",
        "electra",
        "deberta_v2",
        "modernbert",
        "modernbert_cls",
    ];
    let model = crate::common::fixtures()
        .join("families")
        .join(families.choose(rng).unwrap());
    let pooling = *["cls", "mean", "none"].choose(rng).unwrap();
    let pool = match pooling {
        "none" => "[[model.layers]]\ntype = \"global_average_pooling_1d\"\nmasked = true\n",
        _ => "",
    };
    let freeze = [
        "",
        "freeze = [\"encoder\"]\n",
        "freeze = [\"encoder.embeddings\", \"encoder.layer.0\"]\n",
        "freeze = [\"encoder.layer.*\"]\n",
    ]
    .choose(rng)
    .unwrap()
    .to_string();
    format!(
        "name = \"fuzz\"\nseed = {}\n\n[dataset]\nformat = \"ag_news_csv\"\ntrain = \"{}\"\nlimit = 16\nvalidation = 0.25\n\n[vectorizer]\ntype = \"pretrained\"\nfrom = \"{model}\"\nmax_length = {}\npadding = \"{}\"\n\n[[model.layers]]\nname = \"encoder\"\ntype = \"hf_encoder\"\nfrom = \"{model}\"\npooling = \"{pooling}\"\ndropout = {}\n\n{pool}\n[[model.layers]]\nname = \"head\"\ntype = \"dense\"\nunits = 4\n\n[[stages]]\nname = \"train\"\nepochs = 1\nbatch_size = {}\nsteps_per_epoch = 2\n{freeze}\n[stages.optimizer]\ntype = \"adamw\"\nlearning_rate = 1e-3\n",
        rng.random_range(0..1000),
        train.display(),
        rng.random_range(1..=80),
        ["longest", "max_length"].choose(rng).unwrap(),
        [0.0, 0.1, 0.5].choose(rng).unwrap(),
        rng.random_range(1..=8),
        model = model.display(),
    )
}

#[test]
fn valid_specs_run_two_steps_or_fail_in_one_line() {
    offline();
    let dir = scratch("fuzz-valid");
    let train = Path::new("data/ag_news/train.csv").canonicalize().unwrap();
    let mut rng = rng(2);
    let specs = 48 * scale();
    let (mut ran, start) = (0usize, std::time::Instant::now());
    for n in 0..specs {
        let text = if rng.random_bool(0.25) {
            random_encoder_spec(&mut rng, &train)
        } else {
            random_valid_spec(&mut rng, &train)
        };
        let path = dir.join(format!("spec{n}.toml"));
        std::fs::write(&path, &text).unwrap();
        let out = pipe()
            .args(["run", path.to_str().unwrap(), "--quiet"])
            .arg(format!("--runs-dir={}", dir.join("runs").display()))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("panicked"),
            "spec {n} panicked:\n{stderr}\n{text}"
        );
        match out.status.code() {
            Some(0) => ran += 1,
            Some(2) => assert_eq!(
                stderr.lines().filter(|l| l.contains("error")).count(),
                stderr.lines().count(),
                "spec {n}: every line of a check failure is an error:\n{stderr}\n{text}"
            ),
            code => panic!("spec {n}: exit {code:?}\n{stderr}\n{text}"),
        }
        let _ = std::fs::remove_dir_all(dir.join("runs"));
    }
    eprintln!(
        "valid specs: {specs} specs, {ran} trained 2 steps, 0 panics, {:.1} s",
        start.elapsed().as_secs_f64()
    );
}

fn broken_rows(seed: &[u8], rng: &mut ChaCha8Rng) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    for _ in 0..rng.random_range(1..=6) {
        let len = bytes.len().max(1);
        let i = rng.random_range(0..len);
        match rng.random_range(0..6) {
            0 => bytes.truncate(i),
            1 if !bytes.is_empty() => {
                let at = i.min(bytes.len() - 1);
                bytes[at] = rng.random();
            }
            2 => {
                let byte = *b"\",\n\r{}[]:\\".choose(rng).unwrap();
                bytes.insert(i.min(bytes.len()), byte);
            }
            3 => {
                let junk: Vec<u8> = (0..rng.random_range(1..16)).map(|_| rng.random()).collect();
                bytes.splice(i.min(bytes.len())..i.min(bytes.len()), junk);
            }
            4 => {
                let piece = INTERESTING.choose(rng).unwrap().as_bytes().to_vec();
                bytes.splice(i.min(bytes.len())..i.min(bytes.len()), piece);
            }
            _ => {
                let end = (i + rng.random_range(0..40)).min(bytes.len());
                bytes.drain(i.min(end)..end);
            }
        }
    }
    bytes
}

#[test]
fn data_file_mutations_fail_naming_the_file_and_line() {
    offline();
    let dir = scratch("fuzz-data");
    let ag = std::fs::read_to_string("data/ag_news/test.csv").unwrap();
    let ag: String = ag.lines().take(20).map(|l| format!("{l}\n")).collect();
    let csv =
        "text,topic\n\"A striker scored, twice\",sports\nRates rise,other\n\"x \"\"y\"\"\",other\n";
    let jsonl = "{\"text\": \"A striker scored\", \"topic\": \"sports\"}\n{\"text\": \"Rates rise\", \"topic\": 1}\n";
    let labels = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let cases = [
        (
            Format::AgNewsCsv,
            ag.as_str(),
            vec!["title".to_string(), "description".to_string()],
            "class_index",
            labels(&["a", "b", "c", "d"]),
        ),
        (
            Format::Csv,
            csv,
            vec!["text".to_string()],
            "topic",
            labels(&["other", "sports"]),
        ),
        (
            Format::Jsonl,
            jsonl,
            vec!["text".to_string()],
            "topic",
            labels(&["other", "sports"]),
        ),
    ];
    let mut rng = rng(3);
    let inputs = 30_000 * scale();
    let data_path = dir.join("data.txt");
    let (gz_path, zst_path) = (dir.join("data.txt.gz"), dir.join("data.txt.zst"));
    let (mut loaded, start) = (0usize, std::time::Instant::now());
    const ARROW_FILE: &str = "data-00000-of-00001.arrow";
    let fixtures = common::root().join("tests/fixtures/columnar");
    let parquet = std::fs::read(fixtures.join("sports_train.parquet")).unwrap();
    let arrow = std::fs::read(fixtures.join("sports_train_saved").join(ARROW_FILE)).unwrap();
    let (parquet_path, arrow_path) = (dir.join("data.parquet"), dir.join("saved"));
    std::fs::create_dir_all(&arrow_path).unwrap();
    for n in 0..inputs {
        let path = data_path.clone();
        let mut columnar = None;
        let (format, seed, text, label, labels) = cases.choose(&mut rng).unwrap();
        let bytes = if rng.random_bool(0.1) {
            (0..rng.random_range(0..200))
                .map(|_| rng.random())
                .collect()
        } else {
            broken_rows(seed.as_bytes(), &mut rng)
        };
        // Three in ten files go through a decompressor: gzip (whole, cut short or with a byte
        // changed) or bytes that claim to be zstd.
        let path = match rng.random_range(0..10) {
            0 | 1 => {
                use std::io::Write;
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                gz.write_all(&bytes).unwrap();
                let mut packed = gz.finish().unwrap();
                match rng.random_range(0..3) {
                    0 => packed.truncate(rng.random_range(0..packed.len())),
                    1 => {
                        let at = rng.random_range(0..packed.len());
                        packed[at] = rng.random();
                    }
                    _ => {}
                }
                std::fs::write(&gz_path, &packed).unwrap();
                &gz_path
            }
            2 => {
                std::fs::write(&zst_path, &bytes).unwrap();
                &zst_path
            }
            // The columnar fixtures with bytes changed or cut, read as their own format.
            3 => {
                let is_parquet = rng.random_bool(0.5);
                let (file, written, at) = match is_parquet {
                    true => (&parquet, parquet_path.clone(), &parquet_path),
                    false => (&arrow, arrow_path.join(ARROW_FILE), &arrow_path),
                };
                let mut damaged = file.clone();
                for _ in 0..rng.random_range(1..4) {
                    let i = rng.random_range(0..damaged.len());
                    damaged[i] = rng.random();
                }
                if rng.random_bool(0.3) {
                    damaged.truncate(rng.random_range(0..damaged.len()));
                }
                std::fs::write(written, &damaged).unwrap();
                columnar = Some(if is_parquet {
                    Format::Parquet
                } else {
                    Format::Arrow
                });
                at
            }
            _ => {
                std::fs::write(&path, &bytes).unwrap();
                &path
            }
        };
        let opts = SourceOptions {
            format: columnar.clone().unwrap_or(format.clone()),
            text: match columnar {
                Some(_) => vec!["text".to_string()],
                None => text.clone(),
            },
            label: match columnar {
                Some(_) => "topic".to_string(),
                None => label.to_string(),
            },
            labels: if rng.random_bool(0.2) {
                Vec::new()
            } else {
                labels.clone()
            },
            unescape_backslash: rng.random_bool(0.5),
            limit: None,
        };
        let outcome = no_panic(|| {
            if opts.labels.is_empty() {
                source::infer_labels(path, &opts).map(|_| ())
            } else {
                source::load(path, &opts).map(|_| ())
            }
        });
        match outcome {
            Ok(Ok(())) => loaded += 1,
            Ok(Err(e)) => {
                let message = e.to_string();
                assert!(
                    message.starts_with(&path.display().to_string()) && !message.contains('\n'),
                    "input {n}: {message:?}"
                );
            }
            Err(panic) => panic!(
                "input {n} ({format:?}) panicked: {panic}\n{:?}",
                String::from_utf8_lossy(&bytes)
            ),
        }
    }
    eprintln!(
        "data files: {inputs} inputs, {loaded} loaded, 0 panics, {:.1} s",
        start.elapsed().as_secs_f64()
    );
}
