//! Square matrices in the LU parametrisation `L (U + diag(s))`: `L` unit lower triangular, `U`
//! strictly upper triangular, `s = exp(log_s)`, so that `log|det| = sum(log_s)` costs nothing
//! and the matrix can never be singular. The matrix and its inverse are built with
//! differentiable operations from the raw parameters (of which only the triangles are used).

use burn::prelude::*;

use crate::tensor_util::constant;

/// `L (U + diag(exp(log_s)))` from the strict lower triangle of `lower` and the strict upper
/// triangle of `upper`.
pub(crate) fn lu_matrix(lower: Tensor<2>, upper: Tensor<2>, log_s: Tensor<1>) -> Tensor<2> {
    let c = log_s.dims()[0];
    let eye = eye(c, &lower);
    let l = lower.tril(-1) + eye.clone();
    let u = upper.triu(1) + eye * log_s.exp().reshape([1, c]);
    l.matmul(u)
}

/// The inverse of [`lu_matrix`], `(U + diag(s))^-1 L^-1`.
pub(crate) fn lu_inverse(lower: Tensor<2>, upper: Tensor<2>, log_s: Tensor<1>) -> Tensor<2> {
    let c = log_s.dims()[0];
    let eye = eye(c, &lower);
    let l_inv = unipotent_inverse(lower.tril(-1), eye.clone(), c);
    let s_inv = log_s.neg().exp();
    // U + diag(s) = (I + U diag(s)^-1) diag(s), and U diag(s)^-1 is nilpotent.
    let n_u = upper.triu(1) * s_inv.clone().reshape([1, c]);
    let u_inv = unipotent_inverse(n_u, eye, c) * s_inv.reshape([c, 1]);
    u_inv.matmul(l_inv)
}

fn eye(c: usize, like: &Tensor<2>) -> Tensor<2> {
    let mut values = vec![0.0f32; c * c];
    (0..c).for_each(|i| values[i * c + i] = 1.0);
    constant(values, [c, c], like)
}

/// `(I + N)^-1` for nilpotent `N` of size `c`: `(I - N)(I + N^2)(I + N^4)...`, exact once the
/// powers reach `N^c = 0`, and differentiable, unlike a host-side solve.
fn unipotent_inverse(n: Tensor<2>, eye: Tensor<2>, c: usize) -> Tensor<2> {
    let mut result = eye.clone() - n.clone();
    let mut power = n;
    let mut covered = 2;
    while covered < c {
        power = power.clone().matmul(power);
        result = result.matmul(eye.clone() + power.clone());
        covered *= 2;
    }
    result
}
