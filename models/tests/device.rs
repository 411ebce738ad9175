//! Device selection.

use nexus_models::{BackendKind, ComputeDevice, DeviceChoice};

/// `Auto` takes wgpu only for a hardware adapter; with a software adapter (lavapipe) or none
/// at all it takes the CPU backend, which is faster than software Vulkan.
#[test]
fn auto_prefers_a_hardware_gpu_else_the_cpu() {
    let auto = ComputeDevice::open(DeviceChoice::Auto).expect("Auto never fails");
    let hardware = ComputeDevice::open(DeviceChoice::Wgpu)
        .ok()
        .and_then(|gpu| gpu.info().adapter.clone())
        .is_some_and(|adapter| !adapter.is_software());

    let expected = if hardware {
        BackendKind::Wgpu
    } else {
        BackendKind::Cpu
    };
    assert_eq!(auto.backend(), expected, "{}", auto.info());
}

/// The CPU choice needs no adapter and says so.
#[test]
fn cpu_device_describes_itself() {
    let cpu = ComputeDevice::open(DeviceChoice::Cpu).unwrap();
    assert_eq!(cpu.backend(), BackendKind::Cpu);
    assert!(cpu.info().to_string().starts_with("cpu"));
}

/// Config strings parse case-insensitively; unknown ones are rejected with the value named.
#[test]
fn device_choice_parses() {
    assert_eq!("auto".parse::<DeviceChoice>().unwrap(), DeviceChoice::Auto);
    assert_eq!("WGPU".parse::<DeviceChoice>().unwrap(), DeviceChoice::Wgpu);
    assert_eq!("Cpu".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cpu);
    let err = "tpu".parse::<DeviceChoice>().unwrap_err();
    assert!(err.to_string().contains("\"tpu\""), "{err}");
}
