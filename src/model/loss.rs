//! Losses written from logits for numerical stability (burn's BCE takes only Int targets),
//! including the distillation soft terms of DESIGN §5.

use burn::tensor::Tensor;
use burn::tensor::activation::{log_sigmoid, log_softmax, softmax};

/// Mean binary cross-entropy with logits: `-(y·log σ(s) + (1 - y)·log σ(-s))`.
///
/// Built on burn's `log_sigmoid`, which is overflow-safe and has an analytic backward, so the
/// gradient is exactly `σ(s) - y` everywhere (a `max(s, 0) + log1p(exp(-|s|))` form gets the
/// kink at s = 0 wrong: its autodiff gradient there is `-y` instead of `0.5 - y`).
///
/// # Shapes
/// - logits, targets: `[batch]`; targets may be soft (in [0, 1]).
/// - output: `[1]`
pub fn bce_with_logits(logits: Tensor<1>, targets: Tensor<1>) -> Tensor<1> {
    let pos = log_sigmoid(logits.clone());
    let neg = log_sigmoid(logits.neg());
    (targets.clone() * pos + targets.neg().add_scalar(1.0) * neg).mean().neg()
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

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    fn dev() -> Device {
        Device::flex().autodiff()
    }

    fn t1(v: &[f32], d: &Device) -> Tensor<1> {
        Tensor::<1>::from_data(TensorData::new(v.to_vec(), [v.len()]), d)
    }

    fn scalar(t: Tensor<1>) -> f64 {
        f64::from(t.into_data().as_slice::<f32>().unwrap()[0])
    }

    fn sig(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }

    /// Logit pairs covering ordinary, equal and extreme (|z| = 50) values.
    fn cases() -> (Vec<f32>, Vec<f32>) {
        let mut r = reco_runtime::rng::Rng::new(9);
        let mut s: Vec<f32> = (0..40).map(|_| (4.0 * r.normal()) as f32).collect();
        let mut t: Vec<f32> = (0..40).map(|_| (4.0 * r.normal()) as f32).collect();
        s.extend([50.0, -50.0, 50.0, -50.0, 0.0, 2.5]);
        t.extend([-50.0, 50.0, 50.0, 3.0, 0.0, 2.5]);
        (s, t)
    }

    #[test]
    fn bernoulli_kl_gradient_is_t_times_q_minus_p_even_at_extreme_logits() {
        let d = dev();
        let temp = 3.0;
        let (s, t) = cases();
        let n = s.len() as f64;
        let student = t1(&s, &d).require_grad();
        let loss = bernoulli_kl(student.clone(), t1(&t, &d), temp);
        let value = scalar(loss.clone());
        assert!(value.is_finite() && value >= 0.0, "{value}");
        let grads = loss.backward();
        let g = student.grad(&grads).unwrap().into_data();
        let g = g.as_slice::<f32>().unwrap();
        for i in 0..s.len() {
            let (p, q) = (sig(f64::from(t[i]) / temp), sig(f64::from(s[i]) / temp));
            let want = temp * (q - p) / n;
            assert!(g[i].is_finite());
            assert!((f64::from(g[i]) - want).abs() < 1e-6, "i={i} s={} t={} got {} want {want}", s[i], t[i], g[i]);
        }
    }

    #[test]
    fn bernoulli_kl_gradient_matches_central_finite_differences() {
        let d = Device::flex();
        let temp = 2.0;
        let (s, t) = (vec![0.3f32, -1.7, 4.0, 0.0], vec![1.1f32, -0.2, -3.0, 0.0]);
        let loss_at = |s: &[f32]| scalar(bernoulli_kl(t1(s, &d), t1(&t, &d), temp));
        let ad = dev();
        let student = t1(&s, &ad).require_grad();
        let grads = bernoulli_kl(student.clone(), t1(&t, &ad), temp).backward();
        let g = student.grad(&grads).unwrap().into_data();
        let g = g.as_slice::<f32>().unwrap().to_vec();
        let h = 1e-2f32;
        for i in 0..s.len() {
            let (mut up, mut down) = (s.clone(), s.clone());
            up[i] += h;
            down[i] -= h;
            let fd = (loss_at(&up) - loss_at(&down)) / (2.0 * f64::from(h));
            assert!((fd - f64::from(g[i])).abs() < 2e-4, "i={i} fd {fd} autodiff {}", g[i]);
        }
    }

    #[test]
    fn bernoulli_kl_value_matches_the_definition_and_vanishes_only_when_logits_agree() {
        let d = Device::flex();
        let temp = 3.0;
        let (s, t) = (vec![0.5f32, -2.0, 3.0], vec![2.0f32, -2.0, -1.0]);
        let want: f64 = s
            .iter()
            .zip(&t)
            .map(|(&si, &ti)| {
                let (p, q) = (sig(f64::from(ti) / temp), sig(f64::from(si) / temp));
                p * (p / q).ln() + (1.0 - p) * ((1.0 - p) / (1.0 - q)).ln()
            })
            .sum::<f64>()
            / 3.0
            * temp
            * temp;
        let got = scalar(bernoulli_kl(t1(&s, &d), t1(&t, &d), temp));
        assert!((got - want).abs() < 1e-5, "got {got} want {want}");
        assert!(scalar(bernoulli_kl(t1(&t, &d), t1(&t, &d), temp)).abs() < 1e-6);
    }

    #[test]
    fn naive_softmax_over_one_logit_is_zero_but_bernoulli_kl_is_not() {
        // The seed's trap: softmax over a single logit is always 1, so its KL is always 0.
        let d = Device::flex();
        let s = Tensor::<2>::from_data(TensorData::new(vec![-3.0f32, 0.5, 4.0], [3, 1]), &d);
        let t = Tensor::<2>::from_data(TensorData::new(vec![2.0f32, -1.0, -4.0], [3, 1]), &d);
        assert!(scalar(softmax_kl(s.clone(), t.clone(), 3.0)).abs() < 1e-7);
        let b = bernoulli_kl(s.reshape([3]), t.reshape([3]), 3.0);
        assert!(scalar(b) > 0.1);
    }

    #[test]
    fn softmax_kl_matches_a_hand_computed_two_class_case() {
        let d = Device::flex();
        let temp = 2.0;
        let s = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 0.0, 0.0, 2.0], [2, 2]), &d);
        let t = Tensor::<2>::from_data(TensorData::new(vec![0.0f32, 1.0, 1.0, 1.0], [2, 2]), &d);
        let softmax2 = |a: f64, b: f64| {
            let (ea, eb) = ((a / temp).exp(), (b / temp).exp());
            (ea / (ea + eb), eb / (ea + eb))
        };
        let kl = |p: (f64, f64), q: (f64, f64)| p.0 * (p.0 / q.0).ln() + p.1 * (p.1 / q.1).ln();
        let want = (kl(softmax2(0.0, 1.0), softmax2(1.0, 0.0)) + kl(softmax2(1.0, 1.0), softmax2(0.0, 2.0))) / 2.0
            * temp
            * temp;
        let got = scalar(softmax_kl(s, t, temp));
        assert!((got - want).abs() < 1e-5, "got {got} want {want}");
    }

    #[test]
    fn bce_with_logits_is_finite_and_correct_at_extremes_and_at_zero() {
        let d = dev();
        let logits = t1(&[50.0, -50.0, 0.0, 0.0], &d).require_grad();
        let loss = bce_with_logits(logits.clone(), t1(&[0.0, 1.0, 1.0, 0.0], &d));
        let want = (50.0 + 50.0 + 2.0 * 2f64.ln()) / 4.0;
        let got = scalar(loss.clone());
        assert!((got - want).abs() < 1e-4, "got {got} want {want}");
        // Gradient (sigmoid(s) - y) / n, including the kink-free value at s = 0.
        let grads = loss.backward();
        let g = logits.grad(&grads).unwrap().into_data();
        let g = g.as_slice::<f32>().unwrap();
        for (gi, want) in g.iter().zip([1.0, -1.0, -0.5, 0.5]) {
            assert!((f64::from(*gi) - want / 4.0).abs() < 1e-6, "{g:?}");
        }
    }
}
