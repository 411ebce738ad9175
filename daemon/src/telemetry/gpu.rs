//! GPU facts from NVIDIA's management library (NVML): names, driver, memory and utilisation.
//!
//! NVML is loaded at run time (`libnvidia-ml.so.1`, part of the NVIDIA driver), so the same
//! binary runs on hosts without an NVIDIA GPU; there the facts say why they are missing and
//! the admin status falls back to what wgpu reports about the adapter.

use std::ffi::OsStr;

use nvml_wrapper::Nvml;
use serde::Serialize;
use utoipa::ToSchema;

/// The soname the driver installs; the unversioned name exists only with development files.
const NVML_LIBRARY: &str = "libnvidia-ml.so.1";

/// A handle to NVML, or the reason there is none.
pub struct GpuProbe {
    nvml: Result<Nvml, String>,
}

/// One GPU as NVML sees it.
#[derive(Debug, Clone, Serialize, PartialEq, ToSchema)]
pub struct GpuFacts {
    pub index: u32,
    pub name: String,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    /// Percent of the last sample period in which a kernel ran.
    pub utilization_percent: Option<u32>,
}

/// What the probe found this time.
#[derive(Debug, Clone, Serialize, Default, PartialEq, ToSchema)]
pub struct GpuReport {
    /// `nvml` when NVML answered, else `none`.
    pub source: &'static str,
    pub driver: Option<String>,
    pub gpus: Vec<GpuFacts>,
    /// Why there are no facts, when there are none.
    pub unavailable: Option<String>,
}

impl GpuProbe {
    pub fn open() -> GpuProbe {
        GpuProbe::open_library(OsStr::new(NVML_LIBRARY))
    }

    fn open_library(library: &OsStr) -> GpuProbe {
        let nvml = Nvml::builder()
            .lib_path(library)
            .init()
            .map_err(|error| format!("NVML is not available: {error}"));
        match &nvml {
            Ok(_) => tracing::info!("NVML loaded; GPU memory and utilisation are measured"),
            Err(reason) => tracing::info!(%reason, "no NVIDIA GPU facts"),
        }
        GpuProbe { nvml }
    }

    /// Reads every GPU's memory and utilisation now.
    pub fn report(&self) -> GpuReport {
        let nvml = match &self.nvml {
            Ok(nvml) => nvml,
            Err(reason) => {
                return GpuReport {
                    source: "none",
                    unavailable: Some(reason.clone()),
                    ..GpuReport::default()
                };
            }
        };

        let count = match nvml.device_count() {
            Ok(count) => count,
            Err(error) => {
                return GpuReport {
                    source: "none",
                    unavailable: Some(format!("NVML cannot count the GPUs: {error}")),
                    ..GpuReport::default()
                };
            }
        };
        let gpus = (0..count)
            .filter_map(|index| {
                let device = nvml.device_by_index(index).ok()?;
                let memory = device.memory_info().ok()?;
                Some(GpuFacts {
                    index,
                    name: device.name().unwrap_or_else(|_| format!("GPU {index}")),
                    memory_used_bytes: memory.used,
                    memory_total_bytes: memory.total,
                    utilization_percent: device.utilization_rates().ok().map(|rates| rates.gpu),
                })
            })
            .collect();
        GpuReport {
            source: "nvml",
            driver: nvml.sys_driver_version().ok(),
            gpus,
            unavailable: None,
        }
    }
}

impl GpuReport {
    /// GPU memory used, in percent of the total, over all GPUs; absent without facts.
    pub fn memory_percent(&self) -> Option<f64> {
        let total: u64 = self.gpus.iter().map(|gpu| gpu.memory_total_bytes).sum();
        let used: u64 = self.gpus.iter().map(|gpu| gpu.memory_used_bytes).sum();
        (total > 0).then(|| used as f64 * 100.0 / total as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_library_is_reported_not_fatal() {
        let probe = GpuProbe::open_library(OsStr::new("/nonexistent/libnvidia-ml.so.1"));
        let report = probe.report();
        assert_eq!(report.source, "none");
        assert!(report.gpus.is_empty());
        assert_eq!(report.memory_percent(), None);
        let reason = report.unavailable.unwrap();
        assert!(reason.starts_with("NVML is not available"), "{reason}");
    }

    #[test]
    fn memory_percent_sums_every_gpu() {
        let gpu = |used, total| GpuFacts {
            index: 0,
            name: "test".into(),
            memory_used_bytes: used,
            memory_total_bytes: total,
            utilization_percent: None,
        };
        let report = GpuReport {
            source: "nvml",
            gpus: vec![gpu(30, 100), gpu(50, 100)],
            ..GpuReport::default()
        };
        assert_eq!(report.memory_percent(), Some(40.0));
    }
}
