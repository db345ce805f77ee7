//! `[runtime]`: where and how the pipeline runs. Nothing here changes results on one device.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

fn default_device() -> String {
    "cpu".into()
}
fn default_runs_dir() -> String {
    "runs".into()
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuntimeSpec {
    /// `cpu` (burn-flex), `ndarray` (burn-ndarray build), `cuda` or `cuda:N` (cuda build).
    #[serde(default = "default_device")]
    pub device: String,
    /// Where run folders are created.
    #[serde(default = "default_runs_dir")]
    pub runs_dir: String,
    /// Worker threads for the CPU backend (default: all cores).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
    /// Float precision of parameters, activations, gradients and optimizer state: `f32`,
    /// `bf16` or `f16` (pure half precision, no loss scaling; f16 needs Adam's `epsilon` at
    /// least 6.1e-5). Half precision is for CUDA; burn-flex (`cpu`) runs it too, slower than
    /// f32, to check a half-precision pipeline without a GPU.
    #[serde(default)]
    pub precision: Precision,
    /// Keep the outputs of a frozen prefix (e.g. a frozen BERT) in `<runs_dir>/.feature-cache/`,
    /// keyed by its weights and the encoded rows, for reuse by later runs.
    #[serde(default = "yes")]
    pub feature_cache: bool,
    /// Keep each data file's encoded rows in the encoded cache (`data_cache_dir`), memory-mapped,
    /// for reuse by later runs, sweep trials and `pipe eval` on the same file and vectorizer.
    #[serde(default = "yes")]
    pub data_cache: bool,
    /// The encoded cache's folder (default: `<runs_dir>/.data-cache`). `pipe cache` lists and
    /// clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_cache_dir: Option<String>,
    /// Data-parallel training: `N` workers (on the CPU, N threads sharing its cores; with
    /// `device = "cuda"`, the first N GPUs) or a list such as `["cuda:0", "cuda:1"]`. Each step
    /// splits `batch_size` evenly over them and averages their gradients. Default: one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<Devices>,
}

/// `runtime.devices`: a count, a list of device names, or either as `--devices` text
/// (`"2"`, `"cuda:0,cuda:1"`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Devices {
    Count(usize),
    List(Vec<String>),
    Text(String),
}

impl RuntimeSpec {
    /// [`RuntimeSpec::data_cache`] where it can be used without making a folder that is not
    /// there yet: the runs dir exists (or the cache has its own folder). For the verbs that
    /// read data without making a run (check, eval), run from anywhere.
    pub fn existing_data_cache(&self) -> Option<std::path::PathBuf> {
        let usable = std::path::Path::new(&self.runs_dir).is_dir() || self.data_cache_dir.is_some();
        self.data_cache().filter(|_| usable)
    }

    /// The encoded cache's folder, `None` when `data_cache` is off.
    pub fn data_cache(&self) -> Option<std::path::PathBuf> {
        let dir = match &self.data_cache_dir {
            Some(dir) => std::path::PathBuf::from(dir),
            None => crate::data::cache::default_dir(std::path::Path::new(&self.runs_dir)),
        };
        self.data_cache.then_some(dir)
    }

    /// One device name per data-parallel worker (`cpu` repeated for CPU workers); a single
    /// entry is the one-device path. Errors say what is wrong with `runtime.devices`.
    pub fn worker_devices(&self) -> Result<Vec<String>, String> {
        match &self.devices {
            None => Ok(vec![self.device.clone()]),
            Some(Devices::Count(n)) => device_count(*n, &self.device),
            Some(Devices::List(names)) => device_list(names),
            Some(Devices::Text(text)) => match text.trim().parse::<usize>() {
                Ok(n) => device_count(n, &self.device),
                Err(_) => device_list(
                    &text
                        .split(',')
                        .map(|d| d.trim().to_string())
                        .collect::<Vec<_>>(),
                ),
            },
        }
    }
}

fn device_count(n: usize, device: &str) -> Result<Vec<String>, String> {
    if n == 0 {
        return Err("`devices` must be at least 1".into());
    }
    Ok(if device.starts_with("cuda") || device == "gpu" {
        (0..n).map(|i| format!("cuda:{i}")).collect()
    } else {
        vec![device.to_string(); n]
    })
}

fn device_list(names: &[String]) -> Result<Vec<String>, String> {
    let names: Vec<String> = names
        .iter()
        .map(|d| {
            if d == "cuda" || d == "gpu" {
                "cuda:0".to_string()
            } else {
                d.clone()
            }
        })
        .collect();
    let Some(first) = names.first() else {
        return Err("`devices` lists no device".into());
    };
    let kind = |d: &str| d.split(':').next().unwrap_or("").to_string();
    if let Some(other) = names.iter().find(|d| kind(d) != kind(first)) {
        return Err(format!(
            "`devices` mixes `{first}` and `{other}`: the workers must be of one kind"
        ));
    }
    if kind(first) == "cuda"
        && let Some(twice) = (names.iter().enumerate()).find(|(i, d)| names[..*i].contains(d))
    {
        return Err(format!("`devices` lists `{}` twice", twice.1));
    }
    Ok(names)
}

fn yes() -> bool {
    true
}

impl Default for RuntimeSpec {
    fn default() -> Self {
        RuntimeSpec {
            device: default_device(),
            runs_dir: default_runs_dir(),
            threads: None,
            precision: Precision::F32,
            feature_cache: true,
            data_cache: true,
            data_cache_dir: None,
            devices: None,
        }
    }
}

/// The float precision of a run (`[runtime] precision`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// Everything in f32.
    #[default]
    F32,
    /// Pure f16 (Lightning's `16-true`): weights, activations, gradients and optimizer state.
    #[serde(alias = "16-true")]
    F16,
    /// Pure bf16 (Lightning's `bf16-true`), meant for CUDA.
    #[serde(alias = "bf16-true")]
    Bf16,
    /// Mixed (autocast's contract): weights, optimizer state, softmax, LayerNorm and the loss
    /// in f32; on a CPU with AMX, the large linear layers' products (forward and backward)
    /// take bf16 operands on AMX tiles and accumulate in f32; on CUDA, the linear layers' and
    /// attention's products do, on the GPU. A CPU without AMX runs in f32 and says so.
    #[serde(rename = "bf16-mixed")]
    Bf16Mixed,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workers(device: &str, devices: Option<Devices>) -> Result<Vec<String>, String> {
        let runtime = RuntimeSpec {
            device: device.into(),
            devices,
            ..Default::default()
        };
        runtime.worker_devices()
    }

    #[test]
    fn devices_are_a_count_a_list_or_flag_text() {
        assert_eq!(workers("cpu", None).unwrap(), vec!["cpu"]);
        assert_eq!(
            workers("cpu", Some(Devices::Count(2))).unwrap(),
            vec!["cpu", "cpu"]
        );
        assert_eq!(
            workers("cuda", Some(Devices::Count(2))).unwrap(),
            vec!["cuda:0", "cuda:1"]
        );
        assert_eq!(
            workers("cpu", Some(Devices::Text("cuda:1, cuda:0".into()))).unwrap(),
            vec!["cuda:1", "cuda:0"]
        );
        assert_eq!(
            workers("cpu", Some(Devices::Text("3".into())))
                .unwrap()
                .len(),
            3
        );
        assert!(
            workers("cpu", Some(Devices::Count(0)))
                .unwrap_err()
                .contains("at least 1")
        );
        let mixed = Devices::List(vec!["cpu".into(), "cuda:0".into()]);
        assert!(workers("cpu", Some(mixed)).unwrap_err().contains("mixes"));
        let twice = Devices::List(vec!["cuda".into(), "cuda:0".into()]);
        assert!(workers("cpu", Some(twice)).unwrap_err().contains("twice"));
    }
}
