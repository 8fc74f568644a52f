//! Prints reco's distillation loss and its gradient for logits read from stdin, for
//! `scripts/check_kl.py` to compare with an independent numpy implementation.
//!
//! stdin:  {"student": [..], "teacher": [..], "labels": [..], "groups": [..], "temperature": T,
//!          "alpha": a, "listwise": w}
//! stdout: {"soft": x, "soft_grad": [..], "list": l, "list_grad": [..], "total": y, "total_grad": [..]}

use std::io::Read;

use burn::tensor::{Device, Tensor, TensorData};
use reco::model::loss::{DistillWeights, bernoulli_kl, distillation, listwise_kl};

fn vec_of(v: &serde_json::Value, key: &str) -> Vec<f32> {
    v[key].as_array().map(|a| a.iter().filter_map(|x| x.as_f64()).map(|x| x as f32).collect()).unwrap_or_default()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input)?;
    let v: serde_json::Value = serde_json::from_str(&input)?;
    let (s, t, y) = (vec_of(&v, "student"), vec_of(&v, "teacher"), vec_of(&v, "labels"));
    let temperature = v["temperature"].as_f64().ok_or("temperature")?;
    let alpha = v["alpha"].as_f64().ok_or("alpha")?;
    let listwise = v["listwise"].as_f64().ok_or("listwise")?;
    let groups: Vec<u32> = v["groups"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x.as_u64()).map(|x| x as u32).collect())
        .unwrap_or_default();
    let w = DistillWeights { temperature, alpha, listwise };
    let d = Device::flex().autodiff();
    let n = s.len();
    let tensor = |x: &[f32]| Tensor::<1>::from_data(TensorData::new(x.to_vec(), [n]), &d);
    let eval = |term: u8| -> Result<(f32, Vec<f32>), Box<dyn std::error::Error>> {
        let student = tensor(&s).require_grad();
        let loss = match term {
            0 => bernoulli_kl(student.clone(), tensor(&t), temperature),
            1 => listwise_kl(student.clone(), tensor(&t), &groups, temperature),
            _ => distillation(student.clone(), tensor(&t), tensor(&y), &groups, w),
        };
        let value = loss.clone().into_data().as_slice::<f32>().map_err(|e| format!("{e:?}"))?[0];
        let grads = loss.backward();
        let g = student.grad(&grads).ok_or("no gradient")?.into_data();
        Ok((value, g.as_slice::<f32>().map_err(|e| format!("{e:?}"))?.to_vec()))
    };
    let (soft, soft_grad) = eval(0)?;
    let (list, list_grad) = eval(1)?;
    let (total, total_grad) = eval(2)?;
    println!(
        "{}",
        serde_json::json!({
            "soft": soft, "soft_grad": soft_grad, "list": list, "list_grad": list_grad,
            "total": total, "total_grad": total_grad,
        })
    );
    Ok(())
}
