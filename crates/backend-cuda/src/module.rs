//! Loading the compiled kernels (embedded by build.rs) and looking every function up once.
//!
//! On a compute capability 9.0 device the `sm_90` cubins load as they are; anything else gets the
//! `compute_90` PTX, which the driver JIT-compiles (newer GPUs only: the kernels are built for
//! sm_90 and up). Every name the backend launches is resolved here, so a naming mismatch between
//! Rust and `.cu` fails `CudaBackend::new`, not a step; a test also checks them against the PTX.

use std::sync::Arc;

use cudarc::driver::sys::CUfunction_attribute_enum;
use cudarc::driver::{CudaContext, CudaFunction, CudaModule};
use cudarc::nvrtc::Ptx;

use crate::args;
use crate::packed::Fmt;

pub struct KernelModule {
    pub name: &'static str,
    pub ptx: &'static str,
    pub cubin: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/kernels.rs"));

/// Head sizes with specialized attention kernels (others use `attn_generic_*`).
pub const ATTN_HEAD_DIMS: [usize; 3] = [64, 128, 256];
/// Query heads per decode CTA, by variant.
pub const DECODE_GROUPS: [usize; 4] = [1, 2, 4, 8];
pub const KV_NAMES: [&str; 2] = ["f16", "f32"];

pub fn gemv_name(fmt: Fmt, rows: usize) -> String {
    format!("gemv_{}_r{rows}", fmt.suffix())
}
pub fn dequant_name(fmt: Fmt) -> String {
    format!("dequant_bf16_{}", fmt.suffix())
}
pub fn embed_name(fmt: Fmt) -> String {
    format!("embed_{}", fmt.suffix())
}
pub fn decode_name(kv: usize, head_dim: usize, group: usize) -> String {
    format!("attn_decode_{}_hd{head_dim}_g{group}", KV_NAMES[kv])
}
pub fn prefill_name(kv: usize, head_dim: usize) -> String {
    format!("attn_prefill_{}_hd{head_dim}", KV_NAMES[kv])
}
pub fn generic_name(kv: usize) -> String {
    format!("attn_generic_{}", KV_NAMES[kv])
}
#[cfg(test)]
const EXPERTS: [&str; 4] = ["route_experts", "combine_experts", "add_gated", "scatter_rows"];
#[cfg(test)]
const ELEMENTWISE: [&str; 10] = ["rms_norm", "rope", "silu_mul", "gelu_mul", "scale", "softcap", "add", "add_bias", "gather_rows", "write_kv"];

/// Every kernel the backend launches, by module.
#[cfg(test)]
fn all_names() -> Vec<(&'static str, String)> {
    let mut v = Vec::new();
    for fmt in Fmt::ALL {
        for r in 1..=args::GEMV_MAX_ROWS {
            v.push(("quant_gemv", gemv_name(fmt, r)));
        }
        v.push(("dequant", dequant_name(fmt)));
        v.push(("dequant", embed_name(fmt)));
    }
    v.push(("dequant", "f32_to_bf16".to_string()));
    v.extend(ELEMENTWISE.iter().map(|n| ("elementwise", n.to_string())));
    for kv in 0..2 {
        for hd in ATTN_HEAD_DIMS {
            for g in DECODE_GROUPS {
                v.push(("attention", decode_name(kv, hd, g)));
            }
            v.push(("attention", prefill_name(kv, hd)));
        }
        v.push(("attention", generic_name(kv)));
    }
    v.push(("attention", "attn_merge".to_string()));
    v.push(("sample", "sample_rows".to_string()));
    v.extend(EXPERTS.iter().map(|n| ("experts", n.to_string())));
    v
}

/// Every function, resolved. Indexed by `Fmt as usize`, KV type (0 = f16), head-dim and group
/// variant, so a launch does no lookup by name.
pub struct Kernels {
    pub gemv: Vec<Vec<CudaFunction>>, // [fmt][rows - 1]
    pub dequant: Vec<CudaFunction>,   // [fmt]
    pub embed: Vec<CudaFunction>,     // [fmt]
    pub f32_to_bf16: CudaFunction,
    pub rms_norm: CudaFunction,
    pub rope: CudaFunction,
    pub silu_mul: CudaFunction,
    pub gelu_mul: CudaFunction,
    pub scale: CudaFunction,
    pub softcap: CudaFunction,
    pub add: CudaFunction,
    pub add_bias: CudaFunction,
    pub gather_rows: CudaFunction,
    pub write_kv: CudaFunction,
    pub decode: Vec<Vec<Vec<CudaFunction>>>, // [kv][hd index][group index]
    pub prefill: Vec<Vec<CudaFunction>>,     // [kv][hd index]
    pub generic: Vec<CudaFunction>,          // [kv]
    pub merge: CudaFunction,
    pub sample: CudaFunction,
    pub route_experts: CudaFunction,
    pub combine_experts: CudaFunction,
    pub add_gated: CudaFunction,
    pub scatter_rows: CudaFunction,
    /// Keeps the modules loaded (functions hold them too; this makes it explicit).
    _modules: Vec<Arc<CudaModule>>,
}

impl Kernels {
    pub fn load(ctx: &Arc<CudaContext>, cc: (i32, i32)) -> Result<Kernels, String> {
        let mut modules = Vec::new();
        for m in MODULES {
            modules.push((m.name, load_module(ctx, m, cc)?));
        }
        let get = |module: &str, name: &str| -> Result<CudaFunction, String> {
            let m = modules.iter().find(|(n, _)| *n == module).ok_or_else(|| format!("kernel module {module} is not embedded"))?;
            m.1.load_function(name).map_err(|e| format!("kernel {name} missing from module {module}: {e}"))
        };
        let gemv = Fmt::ALL
            .iter()
            .map(|&f| (1..=args::GEMV_MAX_ROWS).map(|r| get("quant_gemv", &gemv_name(f, r))).collect::<Result<Vec<_>, _>>())
            .collect::<Result<Vec<_>, _>>()?;
        let dequant = Fmt::ALL.iter().map(|&f| get("dequant", &dequant_name(f))).collect::<Result<Vec<_>, _>>()?;
        let embed = Fmt::ALL.iter().map(|&f| get("dequant", &embed_name(f))).collect::<Result<Vec<_>, _>>()?;
        let mut decode = Vec::new();
        let mut prefill = Vec::new();
        let mut generic = Vec::new();
        for kv in 0..2 {
            let mut by_hd = Vec::new();
            let mut pf = Vec::new();
            for hd in ATTN_HEAD_DIMS {
                by_hd.push(DECODE_GROUPS.iter().map(|&g| get("attention", &decode_name(kv, hd, g))).collect::<Result<Vec<_>, _>>()?);
                let f = get("attention", &prefill_name(kv, hd))?;
                // More than the default 48 KiB of dynamic shared memory needs an opt-in, once.
                ctx.bind_to_thread().map_err(|e| e.to_string())?;
                f.set_attribute(
                    CUfunction_attribute_enum::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                    args::prefill_smem_bytes(hd) as i32,
                )
                .map_err(|e| format!("enabling {} bytes of shared memory for {}: {e}", args::prefill_smem_bytes(hd), prefill_name(kv, hd)))?;
                pf.push(f);
            }
            decode.push(by_hd);
            prefill.push(pf);
            generic.push(get("attention", &generic_name(kv))?);
        }
        Ok(Kernels {
            gemv,
            dequant,
            embed,
            f32_to_bf16: get("dequant", "f32_to_bf16")?,
            rms_norm: get("elementwise", "rms_norm")?,
            rope: get("elementwise", "rope")?,
            silu_mul: get("elementwise", "silu_mul")?,
            gelu_mul: get("elementwise", "gelu_mul")?,
            scale: get("elementwise", "scale")?,
            softcap: get("elementwise", "softcap")?,
            add: get("elementwise", "add")?,
            add_bias: get("elementwise", "add_bias")?,
            gather_rows: get("elementwise", "gather_rows")?,
            write_kv: get("elementwise", "write_kv")?,
            decode,
            prefill,
            generic,
            merge: get("attention", "attn_merge")?,
            sample: get("sample", "sample_rows")?,
            route_experts: get("experts", "route_experts")?,
            combine_experts: get("experts", "combine_experts")?,
            add_gated: get("experts", "add_gated")?,
            scatter_rows: get("experts", "scatter_rows")?,
            _modules: modules.into_iter().map(|(_, m)| m).collect(),
        })
    }
}

fn load_module(ctx: &Arc<CudaContext>, m: &KernelModule, cc: (i32, i32)) -> Result<Arc<CudaModule>, String> {
    if cc == (9, 0) {
        match ctx.load_module(Ptx::from_binary(m.cubin.to_vec())) {
            Ok(module) => return Ok(module),
            // A driver that rejects the cubin may still JIT the PTX.
            Err(e) => eprintln!("rill-backend-cuda: sm_90 cubin for {} did not load ({e}); JIT-compiling its PTX", m.name),
        }
    }
    ctx.load_module(Ptx::from_src(m.ptx)).map_err(|e| {
        format!(
            "loading kernels {} from PTX for compute capability {}.{} failed ({e}); the kernels need 9.0 or newer",
            m.name, cc.0, cc.1
        )
    })
}

/// The `.entry` functions of a PTX text with the byte size of their single by-value parameter.
#[cfg(test)]
fn ptx_entries(ptx: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    let mut rest = ptx;
    while let Some(i) = rest.find(".entry ") {
        rest = &rest[i + ".entry ".len()..];
        let name_end = rest.find('(').unwrap_or(rest.len());
        let name = rest[..name_end].trim().to_string();
        let params = &rest[name_end..rest.find(')').unwrap_or(rest.len())];
        let size = params
            .find('[')
            .and_then(|a| params[a + 1..].find(']').map(|b| &params[a + 1..a + 1 + b]))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        out.push((name, size));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::size_of;

    fn entries() -> Vec<(String, String, usize)> {
        MODULES.iter().flat_map(|m| ptx_entries(m.ptx).into_iter().map(|(n, s)| (m.name.to_string(), n, s))).collect()
    }

    #[test]
    fn every_kernel_the_backend_launches_is_in_the_ptx() {
        let have = entries();
        for (module, name) in all_names() {
            assert!(have.iter().any(|(m, n, _)| m == module && *n == name), "{name} missing from {module}.ptx");
        }
        assert!(MODULES.iter().all(|m| !m.cubin.is_empty()), "every module has an sm_90 cubin");
    }

    /// The single by-value parameter of each kernel must be exactly the Rust struct we pass.
    #[test]
    fn kernel_parameter_sizes_match_the_rust_argument_structs() {
        for (_, name, size) in entries() {
            let want = if name.starts_with("gemv_") {
                size_of::<args::GemvArgs>()
            } else if name.starts_with("dequant_bf16_") {
                size_of::<args::DequantArgs>()
            } else if name.starts_with("embed_") {
                size_of::<args::EmbedArgs>()
            } else if name.starts_with("attn_") {
                size_of::<args::AttnArgs>()
            } else {
                match name.as_str() {
                    "f32_to_bf16" => size_of::<args::ConvertArgs>(),
                    "rms_norm" => size_of::<args::RmsNormArgs>(),
                    "rope" => size_of::<args::RopeArgs>(),
                    "silu_mul" | "gelu_mul" => size_of::<args::GluArgs>(),
                    "scale" | "softcap" => size_of::<args::ScaleArgs>(),
                    "add" => size_of::<args::AddArgs>(),
                    "add_bias" => size_of::<args::AddBiasArgs>(),
                    "gather_rows" => size_of::<args::GatherArgs>(),
                    "write_kv" => size_of::<args::WriteKvArgs>(),
                    "sample_rows" => size_of::<args::SampleArgs>(),
                    "route_experts" => size_of::<args::RouteArgs>(),
                    "combine_experts" => size_of::<args::CombineArgs>(),
                    "add_gated" => size_of::<args::GatedAddArgs>(),
                    "scatter_rows" => size_of::<args::ScatterArgs>(),
                    other => panic!("kernel {other} has no argument struct here"),
                }
            };
            assert_eq!(size, want, "{name}: PTX parameter of {size} bytes, Rust struct of {want}");
        }
    }

    #[test]
    fn ptx_entry_parser_reads_names_and_sizes() {
        let ptx = ".visible .entry add(\n\t.param .align 8 .b8 add_param_0[24]\n)\n{\n}\n.visible .entry rope(\n\t.param .align 8 .b8 rope_param_0[1080]\n)";
        assert_eq!(ptx_entries(ptx), vec![("add".to_string(), 24), ("rope".to_string(), 1080)]);
    }
}
