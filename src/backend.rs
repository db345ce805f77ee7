//! The only file that names burn backends. Everything else is generic over
//! `B: AutodiffBackend`; a command hands a [`BackendTask`] to [`dispatch`], which picks the
//! backend for the requested device once.

use anyhow::{Result, bail};
use burn::backend::Autodiff;
use burn::tensor::backend::{AutodiffBackend, Backend, DeviceError};
use burn::tensor::{FloatDType, IntDType};

pub use crate::spec::runtime::Precision;

/// A device as the user names it: `cpu`, `ndarray`, `cuda`, `cuda:1`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceChoice {
    Cpu,
    NdArray,
    Cuda(usize),
}

impl DeviceChoice {
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "cpu" | "flex" => Ok(DeviceChoice::Cpu),
            "ndarray" => Ok(DeviceChoice::NdArray),
            "cuda" | "gpu" => Ok(DeviceChoice::Cuda(0)),
            other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(i)) => Ok(DeviceChoice::Cuda(i)),
                _ => Err(format!(
                    "unknown device `{other}` (expected cpu, ndarray, cuda or cuda:N)"
                )),
            },
        }
    }

    /// Backend and device as recorded in run.json.
    pub fn describe(&self) -> String {
        match self {
            DeviceChoice::Cpu => "cpu (burn-flex)".into(),
            DeviceChoice::NdArray => "cpu (burn-ndarray)".into(),
            DeviceChoice::Cuda(i) => format!("cuda:{i} (burn-cuda)"),
        }
    }
}

/// A `--device` value checked as [`DeviceChoice::parse`] does, kept as the user wrote it (for
/// flags that pass it on: into the spec's `runtime.device`, to a sweep's trials).
pub fn device_name(text: &str) -> Result<String, String> {
    DeviceChoice::parse(text).map(|_| text.to_string())
}

/// Work that runs on whichever backend the device needs.
pub trait BackendTask {
    type Output;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output;
}

/// Training allocates and frees the same large tensor buffers every step. glibc serves
/// blocks above 128 KiB with mmap and unmaps them on free, so every step page-faults its
/// memory in again (a fifth of the CPU time on model A); keeping them in the heap avoids that.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator thresholds; called before any worker thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

/// Hands the heap's free pages back to the system. With the thresholds above glibc never does
/// so itself, so a large buffer freed once (the encoded rows built before they are written to
/// the cache and mapped back) would stay resident for the whole run.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns unused pages; it is safe to call at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Sizes rayon's global pool, which burn-flex and pipe's fused kernels (src/fused) both run
/// on, to `runtime.threads`. It must run before any parallel work: the pool starts once per
/// process and keeps its size.
pub fn set_cpu_threads(threads: Option<usize>) -> Result<()> {
    let Some(n) = threads else {
        return Ok(());
    };
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global()
        .map_err(|e| anyhow::anyhow!("runtime.threads = {n}: {e}"))
}

pub fn dispatch<T: BackendTask>(device: &DeviceChoice, task: T) -> Result<T::Output> {
    dispatch_with(device, Precision::F32, task)
}

const NO_NDARRAY: &str = "this pipe was built without the ndarray backend; rebuild with `cargo build --release --features ndarray`";
#[cfg(not(feature = "cuda"))]
const NO_CUDA: &str = "this pipe was built without CUDA; rebuild with `cargo build --release --features cuda` (needs an NVIDIA driver at run time, no toolkit at build time)";

impl DeviceChoice {
    /// Whether this build (and, for CUDA, this machine) can run on the device: asked before
    /// anything is created, so that a refusal leaves no failed run folder behind.
    pub fn usable(&self) -> Result<()> {
        match self {
            DeviceChoice::Cpu => Ok(()),
            DeviceChoice::NdArray if cfg!(feature = "ndarray") => Ok(()),
            DeviceChoice::NdArray => bail!(NO_NDARRAY),
            #[cfg(feature = "cuda")]
            DeviceChoice::Cuda(_) => probe_cuda(),
            #[cfg(not(feature = "cuda"))]
            DeviceChoice::Cuda(_) => bail!(NO_CUDA),
        }
    }
}

/// What `precision` runs as on this device and machine, for run.json: `bf16-mixed` says where
/// its products run (AMX tiles, or the GPU), or that it fell back to f32 (a CPU without AMX).
pub fn precision_used(precision: Precision, device: &DeviceChoice) -> String {
    match precision {
        Precision::F32 => "f32".into(),
        Precision::F16 => "f16".into(),
        Precision::Bf16 => "bf16".into(),
        Precision::Bf16Mixed if matches!(device, DeviceChoice::Cuda(_)) => {
            "bf16-mixed: linear layers' (not BERT's pooler) and attention's products in bf16 on \
             the GPU (f32 sums), their results back in f32; weights, optimizer state and \
             everything else in f32"
                .into()
        }
        Precision::Bf16Mixed if crate::fused::amx::available() => {
            "bf16-mixed: large linear layers' and attention's products on AMX tiles (bf16 \
             operands, f32 sums); everything else in f32"
                .into()
        }
        Precision::Bf16Mixed => "bf16-mixed without AMX: everything in f32".into(),
    }
}

/// [`dispatch`] with a float precision; half precision is a CUDA feature.
pub fn dispatch_with<T: BackendTask>(
    device: &DeviceChoice,
    precision: Precision,
    task: T,
) -> Result<T::Output> {
    if precision != Precision::F32 && matches!(device, DeviceChoice::NdArray) {
        bail!("precision {precision:?} needs --device cpu or cuda; burn-ndarray trains in f32");
    }
    match device {
        DeviceChoice::Cpu => {
            let device = Default::default();
            set_float_precision::<burn::backend::Flex>(&device, precision)?;
            crate::fused::amx::set_mixed(precision == Precision::Bf16Mixed);
            // burn-flex has kernels of its own; the generic formulas' switch is CUDA's.
            crate::fused::set_autocast_bf16(false);
            Ok(task.run::<Autodiff<burn::backend::Flex>>(device))
        }
        #[cfg(feature = "ndarray")]
        DeviceChoice::NdArray => {
            Ok(task.run::<Autodiff<burn::backend::NdArray>>(Default::default()))
        }
        #[cfg(not(feature = "ndarray"))]
        DeviceChoice::NdArray => bail!(NO_NDARRAY),
        #[cfg(feature = "cuda")]
        DeviceChoice::Cuda(i) => {
            probe_cuda()?;
            let device = burn::backend::cuda::CudaDevice::new(*i);
            set_float_precision::<burn::backend::Cuda>(&device, precision)?;
            crate::fused::set_autocast_bf16(precision == Precision::Bf16Mixed);
            Ok(task.run::<Autodiff<burn::backend::Cuda>>(device))
        }
        #[cfg(not(feature = "cuda"))]
        DeviceChoice::Cuda(_) => bail!(NO_CUDA),
    }
}

/// Makes `precision` the float dtype of every float tensor created on `device` from here on:
/// parameters, inputs, activations, gradients and optimizer state.
///
/// One backend type serves every precision (burn 0.21 keeps the dtype on each tensor, and the
/// kernels are chosen by it at run time), so burn-flex runs a half precision as CUDA does and
/// the tests can check it without a GPU. A device keeps the dtype it first created a tensor in,
/// so a second precision in the same process is an error rather than a silent mix.
pub fn set_float_precision<B: Backend>(device: &B::Device, precision: Precision) -> Result<()> {
    let dtype = match precision {
        // Mixed precision keeps every tensor in f32; only the products round their operands.
        Precision::F32 | Precision::Bf16Mixed => FloatDType::F32,
        Precision::F16 => FloatDType::F16,
        Precision::Bf16 => FloatDType::BF16,
    };
    set_float_dtype::<B>(device, dtype).map_err(|e| anyhow::anyhow!("precision {precision:?}: {e}"))
}

/// [`set_float_precision`] by dtype: data-parallel workers take their first device's.
pub fn set_float_dtype<B: Backend>(device: &B::Device, dtype: FloatDType) -> Result<()> {
    let int = IntDType::from(<B::IntElem as burn::tensor::Element>::dtype());
    match burn::tensor::set_default_dtypes::<B>(device, dtype, int) {
        Ok(()) => Ok(()),
        Err(DeviceError::AlreadyInitialized { .. }) => {
            let current = burn::tensor::get_device_settings::<B>(device).float_dtype;
            if current != dtype {
                bail!(
                    "{device:?} already computes in {current:?} in this process, not {dtype:?} (one float dtype per device and process)"
                );
            }
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// A missing driver otherwise shows up as a panic in a device thread.
#[cfg(feature = "cuda")]
fn probe_cuda() -> Result<()> {
    let found = ["libcuda.so.1", "libcuda.so"].iter().any(|lib| {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("ldconfig -p 2>/dev/null | grep -q {lib}"))
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    });
    if !found {
        bail!("--device cuda: no NVIDIA driver found (libcuda.so.1 is not in the loader cache)");
    }
    Ok(())
}
