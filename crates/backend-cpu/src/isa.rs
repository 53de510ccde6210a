//! Which instruction sets the kernels may use: the CPU's features, detected once, and the
//! `RILL_CPU_ISA` override, read once. Every kernel picks its path here; the kernels themselves
//! stay `#[target_feature]` functions that may only be called on what this module allows. One
//! place, so that what each path needs (AVX2 always with FMA and F16C, VNNI only with the rest of
//! AVX-512) is written once, and so a test can see the whole policy.
//!
//! `RILL_CPU_ISA` narrows the choice, for tests and benchmarks. A value the CPU cannot run falls
//! back to what it would use unset.
//!
//! | `RILL_CPU_ISA` | attention, RMSNorm, SiLU·up ([`SimdIsa`]) | quantized matmul ([`QuantIsa`]) |
//! |---|---|---|
//! | unset, or anything else | the widest: AVX-512F, AVX2, portable | the widest: AVX-512 VNNI, AVX2, portable |
//! | `avx512` | AVX-512F | the widest |
//! | `avx2` | AVX2 (+FMA, F16C) | AVX2, never wider |
//! | `portable` | portable (plain code the compiler vectorizes) | portable |
//! | `reference` | the scalar reference twins | none: `CpuBackend::new` multiplies in f32 (`MatmulMode::Float`) |
//!
//! Paths that follow the CPU alone, because every choice gives the same bits: quantizing
//! activations to Q8 ([`Features::avx512_bw`], [`Features::avx2_fma`]; the AVX-512 VNNI quad
//! layout is built whenever the CPU has VNNI, so tests can run every integer kernel), the f32 dot
//! of float weights ([`Features::avx2_fma`]) and RoPE's hardware FMA.

use std::sync::OnceLock;

/// The CPU features the kernels care about. All false off x86-64.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Features {
    pub fma: bool,
    pub f16c: bool,
    pub avx2: bool,
    pub avx512f: bool,
    pub avx512bw: bool,
    pub avx512dq: bool,
    pub avx512vl: bool,
    pub avx512vnni: bool,
}

/// This CPU's features.
pub(crate) fn cpu() -> &'static Features {
    static CPU: OnceLock<Features> = OnceLock::new();
    CPU.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            Features {
                fma: has!("fma"),
                f16c: has!("f16c"),
                avx2: has!("avx2"),
                avx512f: has!("avx512f"),
                avx512bw: has!("avx512bw"),
                avx512dq: has!("avx512dq"),
                avx512vl: has!("avx512vl"),
                avx512vnni: has!("avx512vnni"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        Features::default()
    })
}

impl Features {
    /// AVX2 and FMA: float code compiled for 256-bit vectors.
    pub fn avx2_fma(&self) -> bool {
        self.avx2 && self.fma
    }

    /// AVX2, FMA and F16C: the `Avx2` vector type and the AVX2 integer kernels.
    pub fn avx2_fma_f16c(&self) -> bool {
        self.avx2_fma() && self.f16c
    }

    /// AVX-512 F and BW: 512-bit float and byte operations.
    pub fn avx512_bw(&self) -> bool {
        self.avx512f && self.avx512bw
    }

    /// What the `vpdpbusd` kernels are compiled for: AVX-512 F, BW, DQ, VL and VNNI, on top of
    /// AVX2 + FMA + F16C.
    pub fn avx512_vnni(&self) -> bool {
        self.avx2_fma_f16c() && self.avx512_bw() && self.avx512dq && self.avx512vl && self.avx512vnni
    }
}

/// What `RILL_CPU_ISA` asks for (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Request {
    Reference,
    Portable,
    Avx2,
    Avx512,
    Best,
}

impl Request {
    fn parse(value: Option<&str>) -> Request {
        match value {
            Some("reference") => Request::Reference,
            Some("portable") => Request::Portable,
            Some("avx2") => Request::Avx2,
            Some("avx512") => Request::Avx512,
            _ => Request::Best,
        }
    }
}

/// `RILL_CPU_ISA`, read at first use.
pub(crate) fn request() -> Request {
    static REQUEST: OnceLock<Request> = OnceLock::new();
    *REQUEST.get_or_init(|| Request::parse(std::env::var("RILL_CPU_ISA").ok().as_deref()))
}

/// Which implementation of the `simd::Simd` kernels (attention, RMSNorm, SiLU·up) runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimdIsa {
    Reference,
    Portable,
    Avx2,
    Avx512,
}

impl SimdIsa {
    /// Every implementation this CPU can run, reference first, widest last.
    pub fn available() -> &'static [SimdIsa] {
        static AVAILABLE: OnceLock<Vec<SimdIsa>> = OnceLock::new();
        AVAILABLE.get_or_init(|| SimdIsa::on(cpu()))
    }

    /// The implementation the kernels run: the widest, or the one `RILL_CPU_ISA` names.
    pub fn selected() -> SimdIsa {
        static SELECTED: OnceLock<SimdIsa> = OnceLock::new();
        *SELECTED.get_or_init(|| SimdIsa::choose(request(), SimdIsa::available()))
    }

    fn on(cpu: &Features) -> Vec<SimdIsa> {
        let mut v = vec![SimdIsa::Reference, SimdIsa::Portable];
        if cpu.avx2_fma_f16c() {
            v.push(SimdIsa::Avx2);
        }
        if cpu.avx512f {
            v.push(SimdIsa::Avx512);
        }
        v
    }

    fn choose(request: Request, available: &[SimdIsa]) -> SimdIsa {
        let best = *available.last().expect("reference is always available");
        let wanted = match request {
            Request::Reference => SimdIsa::Reference,
            Request::Portable => SimdIsa::Portable,
            Request::Avx2 => SimdIsa::Avx2,
            Request::Avx512 => SimdIsa::Avx512,
            Request::Best => best,
        };
        if available.contains(&wanted) {
            wanted
        } else {
            best
        }
    }
}

/// Which integer dot kernels quantized matmul runs (`qmatmul::tile`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum QuantIsa {
    Portable,
    Avx2,
    Avx512Vnni,
}

impl QuantIsa {
    /// Every kernel set this CPU can run, narrowest first.
    pub fn available() -> Vec<QuantIsa> {
        QuantIsa::on(cpu())
    }

    /// The widest available set, or a narrower one `RILL_CPU_ISA` asks for.
    pub fn selected() -> QuantIsa {
        static SELECTED: OnceLock<QuantIsa> = OnceLock::new();
        *SELECTED.get_or_init(|| QuantIsa::choose(request(), &QuantIsa::available()))
    }

    pub fn name(self) -> &'static str {
        match self {
            QuantIsa::Portable => "portable",
            QuantIsa::Avx2 => "avx2",
            QuantIsa::Avx512Vnni => "avx512-vnni",
        }
    }

    fn on(cpu: &Features) -> Vec<QuantIsa> {
        let mut all = vec![QuantIsa::Portable];
        if cpu.avx2_fma_f16c() {
            all.push(QuantIsa::Avx2);
        }
        if cpu.avx512_vnni() {
            all.push(QuantIsa::Avx512Vnni);
        }
        all
    }

    fn choose(request: Request, available: &[QuantIsa]) -> QuantIsa {
        let best = *available.last().expect("portable is always available");
        match request {
            // `reference` multiplies in f32 (`MatmulMode::Float`); integer dots, if asked for
            // directly, run the portable kernels.
            Request::Reference | Request::Portable => QuantIsa::Portable,
            Request::Avx2 => best.min(QuantIsa::Avx2),
            Request::Avx512 | Request::Best => best,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUESTS: [(&str, Request); 6] = [
        ("reference", Request::Reference),
        ("portable", Request::Portable),
        ("avx2", Request::Avx2),
        ("avx512", Request::Avx512),
        ("AVX2", Request::Best),
        ("", Request::Best),
    ];

    #[test]
    fn rill_cpu_isa_values_parse_and_anything_else_is_best() {
        for (value, want) in REQUESTS {
            assert_eq!(Request::parse(Some(value)), want, "{value:?}");
        }
        assert_eq!(Request::parse(None), Request::Best);
    }

    /// The module docs' table, on four CPUs: AVX-512 VNNI, AVX-512 without VNNI, AVX2 only, and
    /// one with none of them.
    #[test]
    fn each_request_picks_the_documented_kernels() {
        use QuantIsa as Q;
        use SimdIsa as S;
        let avx2 = Features { fma: true, f16c: true, avx2: true, ..Features::default() };
        let avx512 = Features { avx512f: true, avx512bw: true, avx512dq: true, avx512vl: true, ..avx2 };
        let vnni = Features { avx512vnni: true, ..avx512 };
        // Per CPU, per request in `REQUESTS` order (reference, portable, avx2, avx512, best, best).
        let cases: [(Features, [S; 6], [Q; 6]); 4] = [
            (vnni, [S::Reference, S::Portable, S::Avx2, S::Avx512, S::Avx512, S::Avx512], [Q::Portable, Q::Portable, Q::Avx2, Q::Avx512Vnni, Q::Avx512Vnni, Q::Avx512Vnni]),
            (avx512, [S::Reference, S::Portable, S::Avx2, S::Avx512, S::Avx512, S::Avx512], [Q::Portable, Q::Portable, Q::Avx2, Q::Avx2, Q::Avx2, Q::Avx2]),
            (avx2, [S::Reference, S::Portable, S::Avx2, S::Avx2, S::Avx2, S::Avx2], [Q::Portable, Q::Portable, Q::Avx2, Q::Avx2, Q::Avx2, Q::Avx2]),
            (Features::default(), [S::Reference, S::Portable, S::Portable, S::Portable, S::Portable, S::Portable], [Q::Portable; 6]),
        ];
        for (cpu, simd, quant) in cases {
            for (i, (value, request)) in REQUESTS.into_iter().enumerate() {
                assert_eq!(SimdIsa::choose(request, &SimdIsa::on(&cpu)), simd[i], "{value:?} on {cpu:?}");
                assert_eq!(QuantIsa::choose(request, &QuantIsa::on(&cpu)), quant[i], "{value:?} on {cpu:?}");
            }
        }
    }

    #[test]
    fn selections_are_available_on_this_cpu() {
        assert!(SimdIsa::available().contains(&SimdIsa::selected()));
        assert!(QuantIsa::available().contains(&QuantIsa::selected()));
        assert_eq!(SimdIsa::selected(), SimdIsa::choose(request(), SimdIsa::available()));
    }
}
