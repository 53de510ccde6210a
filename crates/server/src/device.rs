//! Which backend runs a model: `--device cpu` (default), `cuda` or `cuda:N`. The backend types
//! differ, so code that runs on "some backend" is a `BackendJob`, handed the concrete backend by
//! `with_backend`. A CUDA device on a build without the `cuda` feature, or on a machine without
//! a driver or GPU, is a clear error before anything is loaded — never a panic.

use std::fmt;
use std::str::FromStr;

use rill_backend::Backend;
use rill_backend_cpu::CpuBackend;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    #[default]
    Cpu,
    Cuda(usize),
}

impl FromStr for Device {
    type Err = String;

    fn from_str(s: &str) -> Result<Device, String> {
        match s {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Device::Cuda)
                .ok_or_else(|| format!("unknown device {s:?}: use cpu, cuda or cuda:N")),
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// Work to run on whichever backend the device selects.
pub trait BackendJob {
    type Output;
    fn run<B: Backend>(self, backend: B) -> Self::Output;
}

/// Why a device cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("{device}: this rill was built without CUDA support; rebuild with `cargo build --release -p rill-cli --features cuda` (scripts/install-cuda-toolchain.sh installs nvcc)")]
    NotBuilt { device: Device },
    #[error("{device} is not available: {reason}")]
    Unavailable { device: Device, reason: String },
}

/// Creates the backend for `device` (CPU with `threads` workers, 0 = one per core) and runs `job`.
pub fn with_backend<J: BackendJob>(device: &Device, threads: usize, job: J) -> Result<J::Output, DeviceError> {
    match *device {
        Device::Cpu => {
            let backend = CpuBackend::new(threads).map_err(|e| DeviceError::Unavailable { device: *device, reason: e.to_string() })?;
            Ok(job.run(backend))
        }
        Device::Cuda(ordinal) => cuda(ordinal, job),
    }
}

#[cfg(feature = "cuda")]
fn cuda<J: BackendJob>(ordinal: usize, job: J) -> Result<J::Output, DeviceError> {
    let device = Device::Cuda(ordinal);
    rill_backend_cuda::probe(ordinal).map_err(|reason| DeviceError::Unavailable { device, reason })?;
    let backend = rill_backend_cuda::CudaBackend::new(ordinal).map_err(|e| DeviceError::Unavailable { device, reason: e.to_string() })?;
    Ok(job.run(backend))
}

#[cfg(not(feature = "cuda"))]
fn cuda<J: BackendJob>(ordinal: usize, _job: J) -> Result<J::Output, DeviceError> {
    Err(DeviceError::NotBuilt { device: Device::Cuda(ordinal) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_devices() {
        assert_eq!("cpu".parse::<Device>(), Ok(Device::Cpu));
        assert_eq!("cuda".parse::<Device>(), Ok(Device::Cuda(0)));
        assert_eq!("cuda:3".parse::<Device>(), Ok(Device::Cuda(3)));
        for bad in ["gpu", "cuda:", "cuda:x", "CUDA", ""] {
            assert!(bad.parse::<Device>().unwrap_err().contains("use cpu, cuda or cuda:N"), "{bad}");
        }
        assert_eq!(Device::Cuda(1).to_string(), "cuda:1");
    }

    struct Name;
    impl BackendJob for Name {
        type Output = &'static str;
        fn run<B: Backend>(self, backend: B) -> &'static str {
            backend.name()
        }
    }

    #[test]
    fn cpu_runs_the_job_and_cuda_fails_cleanly_without_a_gpu() {
        assert_eq!(with_backend(&Device::Cpu, 1, Name).unwrap(), "cpu");
        // On machines without a GPU (CI) CUDA is an error naming the device, whether or not
        // this build has the feature; on a GPU machine it runs.
        match with_backend(&Device::Cuda(0), 1, Name) {
            Ok(name) => assert_eq!(name, "cuda"),
            Err(e) => assert!(e.to_string().starts_with("cuda:0"), "{e}"),
        }
        let e = with_backend(&Device::Cuda(99), 1, Name).unwrap_err().to_string();
        assert!(e.starts_with("cuda:99"), "{e}");
    }
}
