//! `exp` and `ln` of f32 in plain arithmetic (Cephes' `expf` and `logf`: a range reduction by
//! powers of two, a polynomial, the exponent put back through the bits), so that a loop calling
//! them compiles to vector instructions, as wide as [`crate::simd::widest`] picks. libm's are
//! calls per value, and `wide`'s are fixed at the build's baseline (SSE2, four lanes). Both are
//! within 2 ulp of libm's (tests below). NaN stays NaN.

/// e^x: 0 below -103.3 (as libm's, through the subnormals: +-1 ulp of the smallest), inf above
/// 88.72.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 in two parts, the first exact in few bits, so that `x - n ln 2` loses nothing.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const P: [f32; 6] = [
        1.987_569_1e-4,
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        0.5,
    ];
    // Clamped so that the two scalings below stay in range (NaN stays NaN).
    let c = x.clamp(-104.0, 88.8);
    let n = (c * LOG2E + 0.5).floor();
    let r = c - n * LN2_HI - n * LN2_LO;
    let r2 = r * r;
    let p = P.iter().fold(0.0, |acc, &a| acc * r + a);
    let y = p * r2 + r + 1.0;
    // 2^n as two factors: n reaches -150 (a subnormal result) and 128 (inf), past one f32's
    // exponent range.
    // n as an integer through the bits of n + 1.5 2^23 (exact for |n| < 2^22): `as i32` is a
    // saturating conversion that keeps the loop from vectorising.
    let n = (n + 12_582_912.0).to_bits() as i32 - 0x4b40_0000;
    let half = n >> 1;
    let scale = |k: i32| f32::from_bits(((k + 127) as u32) << 23);
    y * scale(half) * scale(n - half)
}

/// ln x for x > 0 (normal or subnormal): -inf at 0, NaN below, inf at inf.
#[inline(always)]
pub(crate) fn ln(x: f32) -> f32 {
    const SQRT_HALF: f32 = std::f32::consts::FRAC_1_SQRT_2;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const P: [f32; 9] = [
        7.037_683_6e-2,
        -1.151_461_1e-1,
        1.167_699_9e-1,
        -1.242_014_1e-1,
        1.424_932_3e-1,
        -1.666_805_8e-1,
        2.000_071_5e-1,
        -2.499_999_4e-1,
        3.333_333e-1,
    ];
    // Subnormals scaled into the normal range first.
    let tiny = x < f32::MIN_POSITIVE;
    let v = if tiny { x * 16_777_216.0 } else { x };
    let bits = v.to_bits();
    // v = m 2^e with m in [0.5, 1).
    let mut e = ((bits >> 23) & 0xff) as i32 - 126;
    let m = f32::from_bits((bits & 0x007f_ffff) | 0x3f00_0000);
    let f = if m < SQRT_HALF {
        e -= 1;
        m + m - 1.0
    } else {
        m - 1.0
    };
    let e = e as f32 - if tiny { 24.0 } else { 0.0 };
    let z = f * f;
    let p = P.iter().fold(0.0, |acc, &a| acc * f + a);
    let y = p * f * z + e * LN2_LO - 0.5 * z;
    let result = f + y + e * LN2_HI;
    if x > 0.0 && x < f32::INFINITY {
        result
    } else if x == 0.0 {
        f32::NEG_INFINITY
    } else if x == f32::INFINITY {
        x
    } else {
        f32::NAN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance in units of the last place, through the ordered bit patterns.
    fn ulps(a: f32, b: f32) -> u32 {
        let key = |v: f32| {
            let b = v.to_bits() as i32;
            if b < 0 { i32::MIN - b } else { b }
        };
        key(a).abs_diff(key(b))
    }

    /// Every 97th f32 bit pattern in the ranges, against libm.
    fn worst(f: fn(f32) -> f32, libm: fn(f32) -> f32, from: f32, to: f32) -> (u32, f32) {
        let (mut worst, mut at) = (0, 0.0);
        for sign in [0u32, 1 << 31] {
            let mut bits = 0u32;
            while bits < 0x7f80_0000 {
                let x = f32::from_bits(bits | sign);
                if x >= from && x <= to {
                    let u = ulps(f(x), libm(x));
                    if u > worst {
                        (worst, at) = (u, x);
                    }
                }
                bits += 97;
            }
        }
        (worst, at)
    }

    #[test]
    fn exp_is_within_two_ulp_of_libm() {
        let (u, at) = worst(exp, f32::exp, -103.0, 88.7);
        assert!(u <= 2, "exp is {u} ulp off at {at}");
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-200.0), 0.0);
        assert_eq!(exp(100.0), f32::INFINITY);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn ln_is_within_two_ulp_of_libm() {
        let (u, at) = worst(ln, f32::ln, 0.0, f32::MAX);
        assert!(u <= 2, "ln is {u} ulp off at {at}");
        assert_eq!(ln(1.0), 0.0);
        assert_eq!(ln(0.0), f32::NEG_INFINITY);
        assert_eq!(ln(f32::INFINITY), f32::INFINITY);
        assert!(ln(-1.0).is_nan() && ln(f32::NAN).is_nan());
    }
}
