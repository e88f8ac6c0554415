//! Loops compiled for the widest vectors the CPU has, chosen at run time as gemm chooses its
//! kernels: the binaries' baseline is SSE2 (four f32 an instruction) and AVX-512 has sixteen.
//! Rust neither contracts nor reorders float arithmetic, so every width gives the same bits.

/// `f()` compiled for AVX-512 or AVX2 where the CPU has them. `f` must be an
/// `#[inline(always)]` closure, so that its body is compiled inside the wider function.
#[inline(always)]
pub(crate) fn widest<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has the feature the function is compiled for.
            return unsafe { avx512(f) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: as above.
            return unsafe { avx2(f) };
        }
    }
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}
