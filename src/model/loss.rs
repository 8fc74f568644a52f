//! Losses written from logits for numerical stability (burn's BCE takes only Int targets),
//! including the distillation soft terms of DESIGN §5.

use burn::tensor::Tensor;
use burn::tensor::activation::{log_softmax, relu, softmax};

/// `log(sigmoid(x))` computed as `-(max(-x, 0) + log1p(exp(-|x|)))`: finite for any finite x.
pub fn log_sigmoid<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let tail = x.clone().abs().neg().exp().log1p();
    (relu(x.neg()) + tail).neg()
}

/// Mean binary cross-entropy with logits: `max(s, 0) - s·y + log(1 + exp(-|s|))`.
///
/// # Shapes
/// - logits, targets: `[batch]`; targets may be soft (in [0, 1]).
/// - output: `[1]`
pub fn bce_with_logits(logits: Tensor<1>, targets: Tensor<1>) -> Tensor<1> {
    let softplus_neg_abs = logits.clone().abs().neg().exp().log1p();
    (relu(logits.clone()) - logits * targets + softplus_neg_abs).mean()
}

/// Distillation soft term for a single-logit sigmoid head, batch mean:
/// `T² · [p·log(p/q) + (1-p)·log((1-p)/(1-q))]` with `p = sigmoid(t/T)`, `q = sigmoid(s/T)`.
/// Every log is a log-sigmoid of a logit, so |logits| of 50 and more stay finite.
/// Its gradient with respect to each student logit is `T·(q - p) / batch`.
///
/// # Shapes
/// - student, teacher: `[batch]` logits (the teacher's carry no gradient)
/// - output: `[1]`
pub fn bernoulli_kl(student: Tensor<1>, teacher: Tensor<1>, temperature: f64) -> Tensor<1> {
    let t = teacher.div_scalar(temperature).detach();
    let s = student.div_scalar(temperature);
    let log_p = log_sigmoid(t.clone());
    let log_1mp = log_sigmoid(t.clone().neg());
    let p = log_p.clone().exp();
    let one_minus_p = log_1mp.clone().exp();
    let log_q = log_sigmoid(s.clone());
    let log_1mq = log_sigmoid(s.neg());
    let kl = p * (log_p - log_q) + one_minus_p * (log_1mp - log_1mq);
    kl.mean().mul_scalar(temperature * temperature)
}

/// Distillation soft term for a multi-logit (softmax) head, batch mean:
/// `T² · KL(softmax(t/T) || softmax(s/T))`.
///
/// # Shapes
/// - student, teacher: `[batch, classes]`
/// - output: `[1]`
pub fn softmax_kl(student: Tensor<2>, teacher: Tensor<2>, temperature: f64) -> Tensor<1> {
    let t = teacher.div_scalar(temperature).detach();
    let log_p = log_softmax(t.clone(), 1);
    let p = softmax(t, 1);
    let log_q = log_softmax(student.div_scalar(temperature), 1);
    let [b, _] = log_q.dims();
    (p * (log_p - log_q)).sum().div_scalar(b as f64).mul_scalar(temperature * temperature)
}

/// The distillation objective: `alpha · soft + (1 - alpha) · hard`.
pub fn distillation(
    student: Tensor<1>,
    teacher: Tensor<1>,
    labels: Tensor<1>,
    temperature: f64,
    alpha: f64,
) -> Tensor<1> {
    let soft = bernoulli_kl(student.clone(), teacher, temperature);
    let hard = bce_with_logits(student, labels);
    soft.mul_scalar(alpha) + hard.mul_scalar(1.0 - alpha)
}
