//! Losses written from logits for numerical stability (burn's BCE takes only Int targets),
//! including the distillation soft terms of DESIGN §5 and the listwise (ranking) term over
//! groups of candidates.

use burn::tensor::activation::{log_sigmoid, log_softmax, softmax};
use burn::tensor::{Int, Tensor, TensorData};

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

/// A logit given to a padding slot in [`listwise_kl`]: its softmax weight is exactly 0 in f32.
const PADDING: f64 = 1.0e4;

/// Listwise distillation term over groups of candidates (one user at one moment), mean over
/// the groups of at least two rows: `T² · KL(softmax_g(t/T) || softmax_g(s/T))`, each softmax
/// over one group's rows only. `groups[i]` names row i's group (any numbering; rows of one
/// group need not be adjacent); a row alone in its group adds nothing. Its gradient with
/// respect to a student logit is `T·(q_i - p_i) / G`, with `p`, `q` the teacher's and the
/// student's probabilities within the row's group and `G` the number of groups counted.
///
/// # Shapes
/// - student, teacher: `[batch]` logits (the teacher's carry no gradient); groups: `batch` ids
/// - output: `[1]` (0, with a zero gradient, when no group has two rows)
pub fn listwise_kl(student: Tensor<1>, teacher: Tensor<1>, groups: &[u32], temperature: f64) -> Tensor<1> {
    let [b] = student.dims();
    let Some((rows, valid, [g, m])) = group_slots(groups).filter(|_| b == groups.len()) else {
        return student.sum().mul_scalar(0.0);
    };
    let device = student.device();
    let rows = Tensor::<1, Int>::from_data(TensorData::new(rows, [g * m]), &device);
    let valid = Tensor::<2>::from_data(TensorData::new(valid, [g, m]), &device);
    // Each group's logits in a row of [G, M]; a padding slot gets -PADDING (and, multiplied by
    // 0, no gradient).
    let padding = valid.clone().sub_scalar(1.0).mul_scalar(PADDING);
    let slots = |x: Tensor<1>| valid.clone() * x.select(0, rows.clone()).reshape([g, m]) + padding.clone();
    let t = slots(teacher.div_scalar(temperature).detach());
    let s = slots(student.div_scalar(temperature));
    let log_p = log_softmax(t.clone(), 1);
    let p = softmax(t, 1);
    let log_q = log_softmax(s, 1);
    (p * (log_p - log_q)).sum().div_scalar(g as f64).mul_scalar(temperature * temperature)
}

/// The groups with at least two of the rows, padded to the largest: for `G` groups of at most
/// `M` rows (in order of their first row), the `G · M` row indices (0 in a padding slot), the
/// `G · M` 0/1 validity of each slot, and `[G, M]`; `None` when no group has two rows.
fn group_slots(groups: &[u32]) -> Option<(Vec<i64>, Vec<f32>, [usize; 2])> {
    let mut members: Vec<Vec<i64>> = Vec::new();
    let mut slot: std::collections::HashMap<u32, usize> = std::collections::HashMap::new();
    for (i, id) in groups.iter().enumerate() {
        let next = members.len();
        let k = *slot.entry(*id).or_insert(next);
        if k == next {
            members.push(Vec::new());
        }
        members[k].push(i as i64);
    }
    members.retain(|r| r.len() >= 2);
    let (g, m) = (members.len(), members.iter().map(Vec::len).max()?);
    let (mut rows, mut valid) = (vec![0i64; g * m], vec![0f32; g * m]);
    for (k, r) in members.iter().enumerate() {
        rows[k * m..k * m + r.len()].copy_from_slice(r);
        valid[k * m..k * m + r.len()].fill(1.0);
    }
    Some((rows, valid, [g, m]))
}

/// The weights of the distillation objective's terms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DistillWeights {
    /// Temperature T of both soft terms.
    pub temperature: f64,
    /// Weight of the pointwise soft term (the hard term gets `1 - alpha`).
    pub alpha: f64,
    /// Weight of the listwise term (0: none).
    pub listwise: f64,
}

/// The distillation objective: `alpha · bernoulli_kl + (1 - alpha) · BCE + listwise ·
/// listwise_kl` (the last over `groups`, one id per row, and only when its weight is not 0).
pub fn distillation(
    student: Tensor<1>,
    teacher: Tensor<1>,
    labels: Tensor<1>,
    groups: &[u32],
    w: DistillWeights,
) -> Tensor<1> {
    match distillation_terms(student, teacher, labels, groups, w) {
        (pointwise, Some(listwise)) => pointwise + listwise,
        (pointwise, None) => pointwise,
    }
}

/// [`distillation`]'s two parts: the per-row mean terms (`alpha · bernoulli_kl + (1 - alpha)
/// · BCE`) and, when its weight is not 0, `listwise · listwise_kl` (a mean over groups). A
/// caller that splits a batch weights the first by its share of the rows and the second by
/// its share of the [`counted_groups`].
pub fn distillation_terms(
    student: Tensor<1>,
    teacher: Tensor<1>,
    labels: Tensor<1>,
    groups: &[u32],
    w: DistillWeights,
) -> (Tensor<1>, Option<Tensor<1>>) {
    let soft = bernoulli_kl(student.clone(), teacher.clone(), w.temperature);
    let hard = bce_with_logits(student.clone(), labels);
    let loss = soft.mul_scalar(w.alpha) + hard.mul_scalar(1.0 - w.alpha);
    if w.listwise == 0.0 {
        return (loss, None);
    }
    (loss, Some(listwise_kl(student, teacher, groups, w.temperature).mul_scalar(w.listwise)))
}

/// The groups [`listwise_kl`] averages over: those with at least two of the rows.
pub fn counted_groups(groups: &[u32]) -> usize {
    group_slots(groups).map_or(0, |(_, _, [g, _])| g)
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

    /// Each group's softmax of `x / temp`, in f64 (a reference for the listwise term).
    fn group_softmax(x: &[f32], groups: &[u32], g: u32, temp: f64) -> Vec<(usize, f64)> {
        let rows: Vec<usize> = (0..x.len()).filter(|&i| groups[i] == g).collect();
        let z: f64 = rows.iter().map(|&i| (f64::from(x[i]) / temp).exp()).sum();
        rows.iter().map(|&i| (i, (f64::from(x[i]) / temp).exp() / z)).collect()
    }

    #[test]
    fn listwise_kl_value_and_gradient_match_a_per_group_softmax_reference() {
        let d = dev();
        let temp = 2.0;
        let s = [0.3f32, -1.0, 2.0, 0.5, 1.5, -0.7, 4.0, 0.0, -2.5];
        let t = [1.0f32, 0.2, -1.0, 0.5, 3.0, 0.1, -4.0, 1.0, 0.4];
        // Groups scattered over the batch, numbered arbitrarily; group 5 is a single row.
        let groups = [9, 4, 9, 5, 4, 9, 12, 12, 4];
        let student = t1(&s, &d).require_grad();
        let loss = listwise_kl(student.clone(), t1(&t, &d), &groups, temp);
        let (mut want, mut want_grad) = (0.0, [0.0f64; 9]);
        for g in [9, 4, 12] {
            let (p, q) = (group_softmax(&t, &groups, g, temp), group_softmax(&s, &groups, g, temp));
            for ((i, pi), (_, qi)) in p.iter().zip(&q) {
                want += pi * (pi / qi).ln();
                want_grad[*i] = temp * (qi - pi) / 3.0;
            }
        }
        want *= temp * temp / 3.0;
        let got = scalar(loss.clone());
        assert!((got - want).abs() < 1e-5, "got {got} want {want}");
        let g = student.grad(&loss.backward()).unwrap().into_data();
        let g = g.as_slice::<f32>().unwrap();
        for i in 0..9 {
            assert!((f64::from(g[i]) - want_grad[i]).abs() < 1e-6, "row {i}: got {} want {}", g[i], want_grad[i]);
        }
        assert_eq!(g[3], 0.0, "a row alone in its group gets no listwise gradient");
    }

    #[test]
    fn listwise_kl_ignores_a_shift_of_a_whole_group_which_the_pointwise_term_does_not() {
        let d = Device::flex();
        let t = [1.0f32, -0.5, 2.0, 0.3, -1.2, 0.8];
        let groups = [0, 0, 0, 1, 1, 1];
        // The student ranks each group as the teacher does, shifted by 3 and by -50.
        let s: Vec<f32> = t.iter().zip(groups).map(|(&x, g)| x + if g == 0 { 3.0 } else { -50.0 }).collect();
        assert!(scalar(listwise_kl(t1(&s, &d), t1(&t, &d), &groups, 3.0)).abs() < 1e-6);
        assert!(scalar(bernoulli_kl(t1(&s, &d), t1(&t, &d), 3.0)) > 0.1);
        // The order reversed within a group is penalized.
        let r = [2.0f32, -0.5, 1.0, 0.3, -1.2, 0.8];
        assert!(scalar(listwise_kl(t1(&r, &d), t1(&t, &d), &groups, 3.0)) > 0.01);
    }

    #[test]
    fn listwise_kl_is_zero_without_a_group_of_two_and_the_objective_adds_it_by_weight() {
        let d = Device::flex();
        let (s, t, y) = ([0.5f32, -1.0, 2.0], [1.0f32, 1.0, -1.0], [1.0f32, 0.0, 0.0]);
        assert_eq!(scalar(listwise_kl(t1(&s, &d), t1(&t, &d), &[1, 2, 3], 2.0)), 0.0);
        let w = DistillWeights { temperature: 2.0, alpha: 0.7, listwise: 0.0 };
        let total = |w: DistillWeights| scalar(distillation(t1(&s, &d), t1(&t, &d), t1(&y, &d), &[0, 0, 1], w));
        let list = scalar(listwise_kl(t1(&s, &d), t1(&t, &d), &[0, 0, 1], 2.0));
        assert!(list > 0.0);
        let with = total(DistillWeights { listwise: 2.5, ..w });
        assert!((with - total(w) - 2.5 * list).abs() < 1e-5, "{with} vs {} + 2.5 * {list}", total(w));
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
