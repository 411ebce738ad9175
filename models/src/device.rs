//! Choosing the compute device at run time: burn's wgpu backend or its ndarray CPU backend.
//!
//! burn 0.22 picks the backend from the [`Device`] value, not from a type parameter, so the same
//! model code runs on either. Which one is used is decided here:
//!
//! - [`DeviceChoice::Cpu`]: the ndarray backend, with OpenBLAS for matrix products.
//! - [`DeviceChoice::Wgpu`]: wgpu's default adapter, whatever it is (including a software
//!   Vulkan driver such as lavapipe, which is how CI exercises the WGSL kernels).
//! - [`DeviceChoice::Auto`]: wgpu when its default adapter is real hardware, the CPU backend
//!   otherwise. A software adapter counts as "no GPU" because it runs on the same cores as the
//!   ndarray backend, roughly ten times slower (a 512x512 matmul: 37 ms against 3.5 ms).
//!
//! The wgpu runtime can be initialised only once per process, so the first successful (or
//! failed) initialisation is kept and shared by every later caller.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use burn::tensor::Device;
use burn::tensor::wgpu::wgpu;

use crate::error::ModelError;

/// Which compute device to run the model on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum DeviceChoice {
    /// A hardware GPU through wgpu if there is one, else the CPU.
    #[default]
    Auto,
    /// wgpu's default adapter; an error if there is none.
    Wgpu,
    /// burn's ndarray CPU backend.
    Cpu,
}

impl FromStr for DeviceChoice {
    type Err = ModelError;

    /// Parses `auto`, `wgpu` or `cpu` (any case), as a config file or CLI flag would give it.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "wgpu" | "gpu" => Ok(Self::Wgpu),
            "cpu" => Ok(Self::Cpu),
            other => Err(ModelError::Device(format!(
                "unknown device {other:?} (expected auto, wgpu or cpu)"
            ))),
        }
    }
}

/// The backend a model runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// burn's wgpu backend; the hand-written WGSL kernels are used.
    Wgpu,
    /// burn's ndarray CPU backend; burn's own ops are used.
    Cpu,
}

/// What wgpu reports about the adapter in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterInfo {
    /// Adapter name, e.g. `llvmpipe (LLVM 15.0.6, 256 bits)` or `NVIDIA H200`.
    pub name: String,
    /// Graphics API, e.g. `Vulkan`.
    pub backend: String,
    /// `DiscreteGpu`, `IntegratedGpu`, `VirtualGpu`, `Cpu` (a software rasteriser) or `Other`.
    pub device_type: String,
    /// Driver name.
    pub driver: String,
    /// Driver version or other details.
    pub driver_info: String,
    /// PCI vendor id (0 when not applicable).
    pub vendor_id: u32,
    /// PCI device id (0 when not applicable).
    pub device_id: u32,
}

impl AdapterInfo {
    fn from_wgpu(info: &wgpu::AdapterInfo) -> Self {
        Self {
            name: info.name.clone(),
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type),
            driver: info.driver.clone(),
            driver_info: info.driver_info.clone(),
            vendor_id: info.vendor,
            device_id: info.device,
        }
    }

    /// Whether this adapter is a software implementation running on the CPU.
    pub fn is_software(&self) -> bool {
        self.device_type == "Cpu"
    }
}

/// The device a model was placed on, for logs and the daemon's status endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Which backend runs the model.
    pub backend: BackendKind,
    /// The wgpu adapter, for [`BackendKind::Wgpu`].
    pub adapter: Option<AdapterInfo>,
}

impl fmt::Display for DeviceInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.adapter {
            Some(adapter) => write!(
                f,
                "wgpu: {} ({}, {}, driver {} {})",
                adapter.name,
                adapter.backend,
                adapter.device_type,
                adapter.driver,
                adapter.driver_info
            ),
            None => write!(f, "cpu: burn ndarray backend"),
        }
    }
}

/// Memory burn's allocator holds on a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceMemory {
    /// Bytes of live tensors.
    pub in_use_bytes: u64,
    /// Bytes reserved from the driver: in use plus pages kept for reuse.
    pub reserved_bytes: u64,
}

/// A burn device together with what it is.
#[derive(Debug, Clone)]
pub struct ComputeDevice {
    device: Device,
    info: DeviceInfo,
}

impl ComputeDevice {
    /// Opens the device for `choice`.
    ///
    /// # Errors
    ///
    /// [`ModelError::Device`] when [`DeviceChoice::Wgpu`] is asked for and wgpu finds no
    /// adapter or cannot initialise it. `Auto` and `Cpu` do not fail.
    pub fn open(choice: DeviceChoice) -> Result<Self, ModelError> {
        match choice {
            DeviceChoice::Cpu => Ok(Self::cpu()),
            DeviceChoice::Wgpu => shared_wgpu().clone().map_err(ModelError::Device),
            DeviceChoice::Auto => match shared_wgpu() {
                Ok(gpu) if gpu.info.adapter.as_ref().is_some_and(|a| !a.is_software()) => {
                    Ok(gpu.clone())
                }
                Ok(gpu) => {
                    tracing::info!(device = %gpu.info, "only a software adapter; using the CPU");
                    Ok(Self::cpu())
                }
                Err(reason) => {
                    tracing::info!(%reason, "no wgpu adapter; using the CPU");
                    Ok(Self::cpu())
                }
            },
        }
    }

    fn cpu() -> Self {
        limit_blas_threads();
        // burn 0.22 marks ndarray deprecated in favour of its newer `flex` CPU backend, which
        // has not been measured against the reference here; ndarray is the known-good one.
        #[allow(deprecated)]
        let device = Device::ndarray();
        Self {
            device,
            info: DeviceInfo {
                backend: BackendKind::Cpu,
                adapter: None,
            },
        }
    }

    /// The burn device, for creating tensors and placing modules.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// What the device is.
    pub fn info(&self) -> &DeviceInfo {
        &self.info
    }

    /// The backend the device belongs to.
    pub fn backend(&self) -> BackendKind {
        self.info.backend
    }

    /// What burn's allocator holds on a wgpu device: our own tensors, not other processes'.
    /// `None` on the CPU backend, whose memory is the process's.
    pub fn memory(&self) -> Option<DeviceMemory> {
        if self.info.backend != BackendKind::Wgpu {
            return None;
        }
        let usage = self.device.memory_pool_usage()?;
        Some(DeviceMemory {
            in_use_bytes: usage.bytes_in_use,
            reserved_bytes: usage.bytes_reserved,
        })
    }
}

/// The process-wide wgpu device: initialised on first use, then shared (see the module docs).
/// The ndarray backend runs its matrix products on OpenBLAS (burn's `openblas-system`). By
/// default OpenBLAS starts a thread per core whose idle workers spin: on a daemon that shares
/// its cores with the API, that burns CPU for a few percent of model throughput. One thread
/// unless the operator sets `OPENBLAS_NUM_THREADS`.
fn limit_blas_threads() {
    unsafe extern "C" {
        fn openblas_set_num_threads(threads: std::ffi::c_int);
    }
    if std::env::var_os("OPENBLAS_NUM_THREADS").is_none() {
        // SAFETY: a plain setter of OpenBLAS's thread count, which is linked into the binary;
        // it is called before any matrix product runs.
        unsafe { openblas_set_num_threads(1) };
    }
}

fn shared_wgpu() -> &'static Result<ComputeDevice, String> {
    static WGPU: OnceLock<Result<ComputeDevice, String>> = OnceLock::new();
    WGPU.get_or_init(|| {
        let (device, setup) = Device::wgpu_options()
            .init_with_setup()
            .map_err(|err| format!("wgpu initialisation failed: {err}"))?;
        let adapter = AdapterInfo::from_wgpu(&setup.adapter.get_info());
        tracing::info!(
            name = %adapter.name,
            backend = %adapter.backend,
            device_type = %adapter.device_type,
            driver = %adapter.driver,
            "wgpu adapter initialised"
        );
        Ok(ComputeDevice {
            device,
            info: DeviceInfo {
                backend: BackendKind::Wgpu,
                adapter: Some(adapter),
            },
        })
    })
}
