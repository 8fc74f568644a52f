"""A reco-cli model's dense layers as LiteRT (TFLite) flatbuffers, built from its weights with
the schema `ai-edge-litert` ships (no tensorflow), for scripts/bench_peers.py.

- FP32: FULLY_CONNECTED layers with fused ReLU, input [batch, d] float32, output [batch, 1].
- INT8: LiteRT's full-integer form, as its converter writes it: QUANTIZE (float → int8,
  per-tensor asymmetric), int8 FULLY_CONNECTED layers with per-channel symmetric int8
  weights (zero point 0, axis 0), int32 biases at s_in · s_w, int8 outputs with fused ReLU,
  DEQUANTIZE of the logit. Activation ranges are the min/max of the float layers' outputs on
  the calibration rows (the converter's default calibration), widened to include 0.
"""

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as S
from ai_edge_litert.interpreter import Interpreter


def dense_layers(weights):
    """[(W [out, in], b [out])] in layer order from a float artifact's tensors."""
    layers, i = [], 0
    while f"dense.{i}.weight" in weights:
        layers.append((weights[f"dense.{i}.weight"].astype(np.float32), weights[f"dense.{i}.bias"].astype(np.float32)))
        i += 1
    return layers


class _Graph:
    """Tensors, buffers and operators of one subgraph, packed into a TFL3 model."""

    def __init__(self):
        self.tensors, self.buffers, self.ops, self.opcodes = [], [S.BufferT()], [], []

    def tensor(self, name, shape, ttype, data=None, quant=None, batch=True):
        t = S.TensorT()
        t.name, t.type = name.encode(), ttype
        t.shape = list(shape)
        if batch:
            t.shapeSignature = [-1] + list(shape[1:])
        t.buffer = 0
        if data is not None:
            b = S.BufferT()
            b.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), dtype=np.uint8)
            self.buffers.append(b)
            t.buffer = len(self.buffers) - 1
        if quant is not None:
            q = S.QuantizationParametersT()
            scale, zero, axis = quant
            q.scale = [float(s) for s in np.atleast_1d(scale)]
            q.zeroPoint = [int(z) for z in np.atleast_1d(zero)]
            q.quantizedDimension = axis
            t.quantization = q
        self.tensors.append(t)
        return len(self.tensors) - 1

    def op(self, code, inputs, outputs, options=None, version=1):
        key = (code, version)
        if key not in self.opcodes:
            self.opcodes.append(key)
        o = S.OperatorT()
        o.opcodeIndex = self.opcodes.index(key)
        o.inputs, o.outputs = list(inputs), list(outputs)
        if options is not None:
            o.builtinOptionsType, o.builtinOptions = S.BuiltinOptions.FullyConnectedOptions, options
        self.ops.append(o)

    def pack(self, inputs, outputs):
        sg = S.SubGraphT()
        sg.tensors, sg.operators, sg.inputs, sg.outputs = self.tensors, self.ops, [inputs], [outputs]
        m = S.ModelT()
        m.version, m.subgraphs, m.buffers, m.description = 3, [sg], self.buffers, b"reco-cli dense layers"
        m.operatorCodes = []
        for code, version in self.opcodes:
            c = S.OperatorCodeT()
            c.builtinCode, c.deprecatedBuiltinCode, c.version = code, min(code, 127), version
            m.operatorCodes.append(c)
        b = flatbuffers.Builder(1024)
        b.Finish(m.Pack(b), file_identifier=b"TFL3")
        return bytes(b.Output())


def _fc_options(relu):
    o = S.FullyConnectedOptionsT()
    o.fusedActivationFunction = S.ActivationFunctionType.RELU if relu else S.ActivationFunctionType.NONE
    return o


def fp32_model(layers):
    """The dense layers as a float32 LiteRT model."""
    g = _Graph()
    x = first = g.tensor("input", [1, layers[0][0].shape[1]], S.TensorType.FLOAT32)
    for i, (w, b) in enumerate(layers):
        wt = g.tensor(f"dense.{i}.weight", w.shape, S.TensorType.FLOAT32, w, batch=False)
        bt = g.tensor(f"dense.{i}.bias", b.shape, S.TensorType.FLOAT32, b, batch=False)
        y = g.tensor(f"dense.{i}.out", [1, w.shape[0]], S.TensorType.FLOAT32)
        g.op(S.BuiltinOperator.FULLY_CONNECTED, [x, wt, bt], [y], _fc_options(i < len(layers) - 1))
        x = y
    return g.pack(first, x)


def _act_qparams(lo, hi):
    """int8 asymmetric (scale, zero point) for the range [lo, hi] widened to include 0."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    scale = max((hi - lo) / 255.0, 1e-8)
    zero = int(np.clip(np.round(-128 - lo / scale), -128, 127))
    return np.float32(scale), zero


def int8_model(layers, calibration):
    """The dense layers as a full-integer LiteRT model calibrated on `calibration` [rows, d]."""
    ranges, h = [(calibration.min(), calibration.max())], calibration.astype(np.float32)
    for i, (w, b) in enumerate(layers):
        h = h @ w.T + b
        if i < len(layers) - 1:
            h = np.maximum(h, 0)
        ranges.append((h.min(), h.max()))
    g = _Graph()
    first = g.tensor("input", [1, layers[0][0].shape[1]], S.TensorType.FLOAT32)
    s_in, z_in = _act_qparams(*ranges[0])
    x = g.tensor("input.q", [1, layers[0][0].shape[1]], S.TensorType.INT8, quant=(s_in, z_in, 0))
    g.op(S.BuiltinOperator.QUANTIZE, [first], [x])
    for i, (w, b) in enumerate(layers):
        amax = np.abs(w).max(axis=1)
        s_w = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)  # an all-zero row: scale 1
        wq = np.clip(np.round(w / s_w[:, None]), -127, 127).astype(np.int8)
        bq = np.clip(np.round(b / (s_in * s_w)), -(2**31), 2**31 - 1).astype(np.int32)
        wt = g.tensor(f"dense.{i}.weight", w.shape, S.TensorType.INT8, wq, quant=(s_w, np.zeros(len(s_w)), 0), batch=False)
        bt = g.tensor(f"dense.{i}.bias", b.shape, S.TensorType.INT32, bq, quant=(s_in * s_w, np.zeros(len(s_w)), 0),
                      batch=False)
        s_out, z_out = _act_qparams(*ranges[i + 1])
        y = g.tensor(f"dense.{i}.out", [1, w.shape[0]], S.TensorType.INT8, quant=(s_out, z_out, 0))
        g.op(S.BuiltinOperator.FULLY_CONNECTED, [x, wt, bt], [y], _fc_options(i < len(layers) - 1), version=5)
        x, s_in = y, s_out
    out = g.tensor("logit", [1, layers[-1][0].shape[0]], S.TensorType.FLOAT32)
    g.op(S.BuiltinOperator.DEQUANTIZE, [x], [out], version=2)
    return g.pack(first, out)


class Runner:
    """One LiteRT interpreter on one thread (XNNPACK, LiteRT's default CPU delegate), resized
    to a batch size on first use of that size."""

    def __init__(self, model_bytes):
        self.interp = Interpreter(model_content=model_bytes, num_threads=1)
        self.input = self.interp.get_input_details()[0]["index"]
        self.output = self.interp.get_output_details()[0]["index"]
        self.batch = None

    def __call__(self, x):
        if x.shape[0] != self.batch:
            self.interp.resize_tensor_input(self.input, list(x.shape), strict=True)
            self.interp.allocate_tensors()
            self.batch = x.shape[0]
        self.interp.set_tensor(self.input, x)
        self.interp.invoke()
        return self.interp.get_tensor(self.output)[:, 0]
