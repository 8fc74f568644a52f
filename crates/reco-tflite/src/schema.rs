//! The part of LiteRT's `schema.fbs` (TFLite schema version 3, file identifier `TFL3`) that
//! our graphs use, written with the `flatbuffers` crate's table builder: a table's field `i`
//! lives in vtable slot `4 + 2·i`. Field numbers below are `schema.fbs`'s field order.
//!
//! [`Graph`] holds one subgraph: tensors (each with its buffer, shape, batch-dimension
//! signature and quantization), operators and the named inputs and outputs; [`Graph::finish`]
//! packs it into a model with one `serving_default` signature.

use std::collections::BTreeMap;

use flatbuffers::{FlatBufferBuilder, WIPOffset};

/// `Model.version`: the only schema version LiteRT loads.
pub const SCHEMA_VERSION: u32 = 3;
/// The flatbuffer file identifier.
pub const FILE_IDENTIFIER: &str = "TFL3";

/// `TensorType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    /// FLOAT32.
    F32 = 0,
    /// INT32.
    I32 = 2,
    /// INT8.
    I8 = 9,
}

/// `BuiltinOperator` codes (all below 127, so `deprecated_builtin_code` holds them too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum OpCode {
    /// CONCATENATION.
    Concatenation = 2,
    /// DEQUANTIZE.
    Dequantize = 6,
    /// FULLY_CONNECTED.
    FullyConnected = 9,
    /// LOGISTIC.
    Logistic = 14,
    /// MUL.
    Mul = 18,
    /// RESHAPE.
    Reshape = 22,
    /// GATHER.
    Gather = 36,
    /// SUB.
    Sub = 41,
    /// QUANTIZE.
    Quantize = 114,
}

/// An operator's `builtin_options` (union type id, fields).
#[derive(Debug, Clone, PartialEq)]
pub enum Options {
    /// No options table (LOGISTIC, QUANTIZE, DEQUANTIZE).
    None,
    /// `FullyConnectedOptions` (union id 8): fused ReLU or none.
    FullyConnected {
        /// Fused ReLU.
        relu: bool,
    },
    /// `ConcatenationOptions` (10).
    Concatenation {
        /// Axis.
        axis: i32,
    },
    /// `ReshapeOptions` (17).
    Reshape {
        /// The new shape.
        new_shape: Vec<i32>,
    },
    /// `MulOptions` (21), no fused activation.
    Mul,
    /// `GatherOptions` (23).
    Gather {
        /// Axis.
        axis: i32,
    },
    /// `SubOptions` (28), no fused activation.
    Sub,
}

/// `QuantizationParameters`: per-tensor (one scale) or per-channel along `axis`.
#[derive(Debug, Clone, PartialEq)]
pub struct Quant {
    /// Scales.
    pub scale: Vec<f32>,
    /// Zero points (one per scale).
    pub zero_point: Vec<i64>,
    /// `quantized_dimension`.
    pub axis: i32,
}

impl Quant {
    /// One scale and zero point for the whole tensor.
    pub fn tensor(scale: f32, zero_point: i64) -> Self {
        Self { scale: vec![scale], zero_point: vec![zero_point], axis: 0 }
    }
}

/// A tensor of the subgraph.
#[derive(Debug, Clone)]
struct Tensor {
    name: String,
    /// Shape with batch 1 where `batch`.
    shape: Vec<i32>,
    dtype: DType,
    /// Buffer index (0: no data).
    buffer: u32,
    quant: Option<Quant>,
    /// The first dimension is the batch (`shape_signature` -1).
    batch: bool,
}

/// An operator: (code, version), inputs, outputs, options.
#[derive(Debug, Clone)]
struct Operator {
    code: (OpCode, i32),
    inputs: Vec<i32>,
    outputs: Vec<i32>,
    options: Options,
}

/// One subgraph being built.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    tensors: Vec<Tensor>,
    /// Buffer 0 stays empty (the convention for tensors without data).
    buffers: Vec<Vec<u8>>,
    operators: Vec<Operator>,
    inputs: Vec<i32>,
    outputs: Vec<i32>,
}

/// A tensor's index in the subgraph.
pub type TensorId = i32;

impl Graph {
    /// An empty graph.
    pub fn new() -> Self {
        Self { buffers: vec![Vec::new()], ..Self::default() }
    }

    fn push(&mut self, name: &str, shape: &[i32], dtype: DType, quant: Option<Quant>, batch: bool) -> TensorId {
        let buffer = 0;
        self.tensors.push(Tensor { name: name.to_string(), shape: shape.to_vec(), dtype, buffer, quant, batch });
        (self.tensors.len() - 1) as TensorId
    }

    /// A graph input `[batch, rest...]`.
    pub fn input(&mut self, name: &str, rest: &[i32], dtype: DType, quant: Option<Quant>) -> TensorId {
        let shape: Vec<i32> = std::iter::once(1).chain(rest.iter().copied()).collect();
        let t = self.push(name, &shape, dtype, quant, true);
        self.inputs.push(t);
        t
    }

    /// An intermediate (or output) tensor `[batch, rest...]`.
    pub fn activation(&mut self, name: &str, rest: &[i32], dtype: DType, quant: Option<Quant>) -> TensorId {
        let shape: Vec<i32> = std::iter::once(1).chain(rest.iter().copied()).collect();
        self.push(name, &shape, dtype, quant, true)
    }

    /// A constant tensor holding `data` (little-endian bytes of `dtype`).
    pub fn constant(
        &mut self,
        name: &str,
        shape: &[i32],
        dtype: DType,
        data: Vec<u8>,
        quant: Option<Quant>,
    ) -> TensorId {
        let t = self.push(name, shape, dtype, quant, false);
        self.buffers.push(data);
        self.tensors[t as usize].buffer = (self.buffers.len() - 1) as u32;
        t
    }

    /// A float32 constant.
    pub fn constant_f32(&mut self, name: &str, shape: &[i32], data: &[f32]) -> TensorId {
        self.constant(name, shape, DType::F32, data.iter().flat_map(|v| v.to_le_bytes()).collect(), None)
    }

    /// An int32 constant.
    pub fn constant_i32(&mut self, name: &str, shape: &[i32], data: &[i32], quant: Option<Quant>) -> TensorId {
        self.constant(name, shape, DType::I32, data.iter().flat_map(|v| v.to_le_bytes()).collect(), quant)
    }

    /// An operator writing `outputs`.
    pub fn op(&mut self, code: OpCode, version: i32, inputs: &[TensorId], outputs: &[TensorId], options: Options) {
        self.operators.push(Operator {
            code: (code, version),
            inputs: inputs.to_vec(),
            outputs: outputs.to_vec(),
            options,
        });
    }

    /// A graph output `[batch]` named `name`.
    pub fn push_output(&mut self, name: &str, dtype: DType) -> TensorId {
        let t = self.push(name, &[1], dtype, None, true);
        self.outputs.push(t);
        t
    }

    /// The model bytes: this subgraph, its buffers, one `serving_default` signature over the
    /// named inputs and outputs, and `metadata` as named buffers (`Model.metadata`).
    pub fn finish(self, description: &str, metadata: &BTreeMap<String, Vec<u8>>) -> Vec<u8> {
        let mut b = FlatBufferBuilder::with_capacity(1 << 16);
        let mut buffers = self.buffers.clone();
        let meta_names: Vec<(String, u32)> = metadata
            .iter()
            .map(|(k, v)| {
                buffers.push(v.clone());
                (k.clone(), (buffers.len() - 1) as u32)
            })
            .collect();
        // Operator codes in first-use order.
        let mut codes: Vec<(OpCode, i32)> = Vec::new();
        for o in &self.operators {
            if !codes.contains(&o.code) {
                codes.push(o.code);
            }
        }
        let opcodes: Vec<_> = codes.iter().map(|&(c, v)| operator_code(&mut b, c, v)).collect();
        let tensors: Vec<_> = self.tensors.iter().map(|t| tensor(&mut b, t)).collect();
        let ops: Vec<_> = self
            .operators
            .iter()
            .map(|o| {
                let index = codes.iter().position(|c| *c == o.code).unwrap_or(0) as u32;
                operator(&mut b, o, index)
            })
            .collect();
        let tensors = b.create_vector(&tensors);
        let inputs = b.create_vector(&self.inputs);
        let outputs = b.create_vector(&self.outputs);
        let ops = b.create_vector(&ops);
        let name = b.create_string("main");
        let subgraph = table(&mut b, |b| {
            b.push_slot_always(slot(0), tensors);
            b.push_slot_always(slot(1), inputs);
            b.push_slot_always(slot(2), outputs);
            b.push_slot_always(slot(3), ops);
            b.push_slot_always(slot(4), name);
        });
        let bufs: Vec<_> = buffers
            .iter()
            .map(|d| {
                let data = (!d.is_empty()).then(|| b.create_vector(d));
                table(&mut b, |b| {
                    if let Some(data) = data {
                        b.push_slot_always(slot(0), data);
                    }
                })
            })
            .collect();
        let signature = self.signature(&mut b);
        let metas: Vec<_> = meta_names
            .iter()
            .map(|(k, buf)| {
                let name = b.create_string(k);
                table(&mut b, |b| {
                    b.push_slot_always(slot(0), name);
                    b.push_slot::<u32>(slot(1), *buf, 0);
                })
            })
            .collect();
        let opcodes = b.create_vector(&opcodes);
        let subgraphs = b.create_vector(&[subgraph]);
        let description = b.create_string(description);
        let bufs = b.create_vector(&bufs);
        let metas = b.create_vector(&metas);
        let signatures = b.create_vector(&[signature]);
        let model = table(&mut b, |b| {
            b.push_slot_always::<u32>(slot(0), SCHEMA_VERSION);
            b.push_slot_always(slot(1), opcodes);
            b.push_slot_always(slot(2), subgraphs);
            b.push_slot_always(slot(3), description);
            b.push_slot_always(slot(4), bufs);
            b.push_slot_always(slot(6), metas);
            b.push_slot_always(slot(7), signatures);
        });
        b.finish(model, Some(FILE_IDENTIFIER));
        b.finished_data().to_vec()
    }

    /// `SignatureDef` `serving_default`: every input and output by its tensor name.
    fn signature<'a>(&self, b: &mut FlatBufferBuilder<'a>) -> WIPOffset<flatbuffers::TableFinishedWIPOffset> {
        let maps = |ids: &[i32], b: &mut FlatBufferBuilder<'a>| {
            let maps: Vec<_> = ids
                .iter()
                .map(|&t| {
                    let name = b.create_string(&self.tensors[t as usize].name);
                    table(b, |b| {
                        b.push_slot_always(slot(0), name);
                        b.push_slot::<u32>(slot(1), t as u32, 0);
                    })
                })
                .collect();
            b.create_vector(&maps)
        };
        let inputs = maps(&self.inputs, b);
        let outputs = maps(&self.outputs, b);
        let key = b.create_string("serving_default");
        table(b, |b| {
            b.push_slot_always(slot(0), inputs);
            b.push_slot_always(slot(1), outputs);
            b.push_slot_always(slot(2), key);
            b.push_slot::<u32>(slot(4), 0, 0);
        })
    }
}

/// The vtable slot of field `i`.
const fn slot(i: u16) -> flatbuffers::VOffsetT {
    4 + 2 * i
}

/// A table whose fields `fill` pushes.
fn table(
    b: &mut FlatBufferBuilder<'_>,
    fill: impl FnOnce(&mut FlatBufferBuilder<'_>),
) -> WIPOffset<flatbuffers::TableFinishedWIPOffset> {
    let start = b.start_table();
    fill(b);
    b.end_table(start)
}

fn operator_code(
    b: &mut FlatBufferBuilder<'_>,
    code: OpCode,
    version: i32,
) -> WIPOffset<flatbuffers::TableFinishedWIPOffset> {
    let c = code as i32;
    table(b, |b| {
        // Old readers take the deprecated byte only: it holds any code below 127.
        b.push_slot_always::<i8>(slot(0), c.min(127) as i8);
        b.push_slot_always::<i32>(slot(2), version);
        b.push_slot_always::<i32>(slot(3), c);
    })
}

fn tensor(b: &mut FlatBufferBuilder<'_>, t: &Tensor) -> WIPOffset<flatbuffers::TableFinishedWIPOffset> {
    let shape = b.create_vector(&t.shape);
    let signature = t.batch.then(|| {
        let s: Vec<i32> = std::iter::once(-1).chain(t.shape[1..].iter().copied()).collect();
        b.create_vector(&s)
    });
    let name = b.create_string(&t.name);
    let quant = t.quant.as_ref().map(|q| {
        let scale = b.create_vector(&q.scale);
        let zero = b.create_vector(&q.zero_point);
        table(b, |b| {
            b.push_slot_always(slot(2), scale);
            b.push_slot_always(slot(3), zero);
            b.push_slot::<i32>(slot(6), q.axis, 0);
        })
    });
    table(b, |b| {
        b.push_slot_always(slot(0), shape);
        b.push_slot::<i8>(slot(1), t.dtype as i8, 0);
        b.push_slot::<u32>(slot(2), t.buffer, 0);
        b.push_slot_always(slot(3), name);
        if let Some(q) = quant {
            b.push_slot_always(slot(4), q);
        }
        if let Some(s) = signature {
            b.push_slot_always(slot(7), s);
        }
    })
}

fn operator(b: &mut FlatBufferBuilder<'_>, o: &Operator, index: u32) -> WIPOffset<flatbuffers::TableFinishedWIPOffset> {
    let inputs = b.create_vector(&o.inputs);
    let outputs = b.create_vector(&o.outputs);
    let options = options(b, &o.options);
    table(b, |b| {
        b.push_slot::<u32>(slot(0), index, 0);
        b.push_slot_always(slot(1), inputs);
        b.push_slot_always(slot(2), outputs);
        if let Some((kind, t)) = options {
            b.push_slot_always::<u8>(slot(3), kind);
            b.push_slot_always(slot(4), t);
        }
    })
}

/// The options table and its union type id.
fn options(b: &mut FlatBufferBuilder<'_>, o: &Options) -> Option<(u8, WIPOffset<flatbuffers::TableFinishedWIPOffset>)> {
    Some(match o {
        Options::None => return None,
        Options::FullyConnected { relu } => (8, table(b, |b| b.push_slot::<i8>(slot(0), i8::from(*relu), 0))),
        Options::Concatenation { axis } => (10, table(b, |b| b.push_slot_always::<i32>(slot(0), *axis))),
        Options::Reshape { new_shape } => {
            let s = b.create_vector(new_shape);
            (17, table(b, |b| b.push_slot_always(slot(0), s)))
        }
        Options::Mul => (21, table(b, |_| {})),
        Options::Gather { axis } => (23, table(b, |b| b.push_slot_always::<i32>(slot(0), *axis))),
        Options::Sub => (28, table(b, |_| {})),
    })
}
