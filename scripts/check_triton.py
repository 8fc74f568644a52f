"""A Triton model folder from `reco-cli export --format triton`, parsed with Triton's own
schema and checked against its ONNX graph.

`config.pbtxt` is parsed (protobuf text format) into `inference.ModelConfig` from the
`model_config_pb2` module the `tritonclient` package ships (loaded from its file: the package's
`grpc` import would pull in grpcio, which the schema does not need). Then, against
`1/model.onnx` (parsed with `onnx`):

- the name is the folder's, the backend `onnxruntime`, `max_batch_size` and the dynamic batcher
  as `--max-batch` / `--max-wait-ms` say;
- inputs and outputs: the graph's names in its order, each type mapped (int64 → TYPE_INT64,
  string → TYPE_STRING, float → TYPE_FP32), dims the graph's shape after the batch dimension
  (a `[batch]` tensor as `dims: [1]` with an empty `reshape`);
- `parameters.model_sha256` is the ONNX file's sha256.

Exits 1 with the first mismatch.
"""

import argparse
import hashlib
import importlib.util
import sys
from pathlib import Path

import onnx
from google.protobuf import text_format


def model_config_module():
    """`tritonclient/grpc/model_config_pb2.py`, loaded by path."""
    spec = importlib.util.find_spec("tritonclient")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("check_triton: the tritonclient package is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "grpc" / "model_config_pb2.py"
    loader = importlib.util.spec_from_file_location("model_config_pb2", path)
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    return module


ONNX_TO_TRITON = {
    onnx.TensorProto.INT64: "TYPE_INT64",
    onnx.TensorProto.STRING: "TYPE_STRING",
    onnx.TensorProto.FLOAT: "TYPE_FP32",
}


def expect(ok, what):
    if not ok:
        raise SystemExit(f"check_triton: {what}")


def check_tensors(kind, entries, values, pb):
    names = [e.name for e in entries]
    expect(names == [v.name for v in values], f"{kind} names {names} != the graph's {[v.name for v in values]}")
    for e, v in zip(entries, values):
        t = v.type.tensor_type
        want = ONNX_TO_TRITON[t.elem_type]
        expect(pb.DataType.Name(e.data_type) == want, f"{kind} {e.name}: {pb.DataType.Name(e.data_type)} != {want}")
        dims = t.shape.dim
        expect(dims[0].dim_param != "" or dims[0].dim_value == 0, f"{kind} {e.name}: first dimension is not the batch")
        rest = [d.dim_value for d in dims[1:]]
        if rest:
            expect(list(e.dims) == rest and not e.HasField("reshape"), f"{kind} {e.name}: dims {list(e.dims)} != {rest}")
        else:
            expect(list(e.dims) == [1] and e.HasField("reshape") and list(e.reshape.shape) == [],
                   f"{kind} {e.name}: a [batch] tensor needs dims [1] and reshape {{ shape: [] }}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", required=True, help="REPO/<name>")
    ap.add_argument("--max-batch", type=int, required=True)
    ap.add_argument("--max-wait-ms", type=int, required=True)
    a = ap.parse_args()
    pb = model_config_module()
    folder = Path(a.dir)
    config = text_format.Parse((folder / "config.pbtxt").read_text(), pb.ModelConfig())
    onnx_path = folder / "1" / "model.onnx"
    graph = onnx.load(str(onnx_path)).graph
    expect(config.name == folder.name, f"name {config.name!r} != folder {folder.name!r}")
    expect(config.backend == "onnxruntime", f"backend {config.backend!r}")
    expect(config.max_batch_size == a.max_batch, f"max_batch_size {config.max_batch_size} != {a.max_batch}")
    db = config.dynamic_batching
    expect(config.HasField("dynamic_batching") and list(db.preferred_batch_size) == [a.max_batch]
           and db.max_queue_delay_microseconds == a.max_wait_ms * 1000, f"dynamic_batching {db}")
    check_tensors("input", config.input, list(graph.input), pb)
    check_tensors("output", config.output, list(graph.output), pb)
    sha = hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    expect(config.parameters["model_sha256"].string_value == sha, "parameters.model_sha256 is not model.onnx's sha256")
    print(f"check_triton {folder.name}: {len(config.input)} inputs, {len(config.output)} outputs, "
          f"max_batch_size {config.max_batch_size}, queue delay {db.max_queue_delay_microseconds} us: match the ONNX graph")


if __name__ == "__main__":
    main()
