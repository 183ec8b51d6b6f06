"""Direct LiteRT writer: the ``.tflite`` flatbuffer of a project module, in milliseconds.

``litert-torch`` needs 2-5 s per operator and 8-20 s per network (torch.export,
decompositions, MLIR). The modules of :mod:`space.modules` use a small vocabulary
(conv + BN + activation, depthwise conv, squeeze-and-excitation, channel shuffle,
pooled shortcuts, residual add, global pool + classifier, MobileNetV3's mix head),
so this module writes the graph directly with the flatbuffer schema that
``ai-edge-litert`` ships (``ai_edge_litert.schema_py_generated``), taking the weights
from the torch module. The operator emitters are in :mod:`.tflite_ops`.

It mirrors what litert-torch 0.10 emits for the same module (checked in the tests and
in ``bench/writer_equivalence.py``, operator by operator: builtin, version, options,
constants): an NHWC graph without transposes, BN folded into the convolutions,
ReLU/ReLU6 fused, SiLU as LOGISTIC + MUL, hard-swish as HARD_SWISH (litert-torch's
``aten.hardswish`` composite), an explicit PAD before a convolution whose torch
padding TFLite's SAME cannot express (stride 2 on even sizes), SE as MEAN + two 1x1
CONV_2D + gate + MUL, the sigmoid gate as LOGISTIC and the hard-sigmoid gate
(MobileNetV3) as ``+ 3`` folded into the expand conv's bias, RELU6 fused, MUL by 1/6;
channel shuffle as TRANSPOSE/RESHAPE, a ceil-mode average-pool shortcut as PAD +
AVERAGE_POOL_2D + MUL (divisor correction), residuals as ADD, the classifier as MEAN
+ FULLY_CONNECTED, and the MobileNetV3 head as MEAN (kept dims) + 1x1 CONV_2D (+ act)
+ FULLY_CONNECTED on the 4-D pooled tensor. Fused-MBConv (``fused``/``fusedp``) and
per-block activations need nothing beyond these.

    data = write_tflite(build_op(lc), op_input_shape(lc))   # bytes, NHWC input
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .tflite_ops import Graph, OpEmitter, WriterError, act_kind, schema

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["WRITER_NAME", "WRITER_VERSION", "WriterError", "graph_differences", "tflite_op_details",
           "tflite_op_names", "write_tflite"]

WRITER_NAME = "tflite-direct"
# Bump when the emitted graph changes: it is part of the export cache key.
# 2: MEAN axes in litert-torch's (descending) order; hard-sigmoid SE; MobileNetV3 head.
WRITER_VERSION = "2"


class _Emitter(OpEmitter):
    """Walks a :mod:`space.build` module and appends its operators to a graph."""

    def sequential(self, x: int, mods: Sequence[Any]) -> int:
        """A chain of modules, fusing conv + BN + activation."""
        from torch import nn

        mods = list(mods)
        i = 0
        while i < len(mods):
            m = mods[i]
            if isinstance(m, nn.Conv2d):
                bn = mods[i + 1] if i + 1 < len(mods) and isinstance(mods[i + 1], nn.BatchNorm2d) else None
                j = i + 1 + (bn is not None)
                act = act_kind(mods[j]) if j < len(mods) else None
                x = self.conv(x, m, bn, act)
                i = j + (act is not None)
                continue
            x = self.module(x, m)
            i += 1
        return x

    def pool(self, x: int, keep_dims: bool) -> int:
        """Global average pool.

        litert-torch pools a bare graph input in NCHW: TRANSPOSE, MEAN to ``(N, C)``, and
        a RESHAPE to ``(N, 1, 1, C)`` when the dimensions are kept.
        """
        if x == 0:
            y = self.mean(self.transpose(x, (0, 3, 1, 2)), keep_dims=False, axes=(2, 3))
            n, c = self.g.shapes[y]
            return self.reshape(y, (n, 1, 1, c)) if keep_dims else y
        return self.mean(x, keep_dims)

    def module(self, x: int, m) -> int:
        """Emit any supported module; raise :class:`WriterError` naming what is not."""
        from torch import nn

        from space import modules as P

        if isinstance(m, nn.Sequential):  # ConvBN and Stem too
            return self.sequential(x, m)
        if isinstance(m, (nn.Dropout, nn.Identity)):
            return x
        kind = act_kind(m)
        if kind is not None:
            return self.activation(x, kind)
        if isinstance(m, nn.Conv2d):
            return self.conv(x, m, None, None)
        if isinstance(m, nn.AvgPool2d):
            return self.avg_pool(x, m)
        if isinstance(m, P.ChannelShuffle):
            return self.shuffle(x, m.groups)
        if isinstance(m, P.SqueezeExcite):
            return self.squeeze_excite(x, m, "sigmoid")
        if isinstance(m, P.HardSqueezeExcite):
            return self.squeeze_excite(x, m, "hsigmoid")
        if isinstance(m, P.Layer):
            y = self.sequential(x, m.body)
            if m.add:
                y = self.add(y, self.sequential(x, m.shortcut) if len(m.shortcut) else x)
            return y
        if isinstance(m, P.Net):
            return self.module(self.module(self.module(x, m.stem), m.layers), m.head)
        if isinstance(m, P.Head):
            y = self.pool(self.sequential(x, m.conv), keep_dims=False)
            return self.linear(self.module(y, m.dropout), m.classifier)
        if isinstance(m, P.MixHead):
            y = self.pool(self.sequential(x, m.conv), keep_dims=True)
            y = self.sequential(y, m.mix)
            return self.linear(self.module(y, m.dropout), m.classifier)
        raise WriterError(f"tflite-direct cannot express module {type(m).__name__} "
                          "(it writes space.build modules only); use the litert-torch exporter")


def write_tflite(module: "torch.nn.Module", input_shape: Sequence[int]) -> bytes:
    """The ``.tflite`` bytes of ``module`` at NCHW ``input_shape``; the model takes NHWC input.

    ``module`` is one of :mod:`space.build`'s modules (``build_model``, ``build_op``,
    ``build_layer``) or a chain of their parts, in eval mode (BatchNorm running
    statistics are folded). Raises :class:`WriterError` for anything else.
    """
    shape = tuple(int(d) for d in input_shape)
    if len(shape) != 4 or any(d < 1 for d in shape):
        raise ValueError(f"input_shape must be NCHW like (1, C, H, W), got {input_shape!r}")
    if module.training:
        raise WriterError("tflite-direct writes eval-mode modules (call .eval() first)")
    g = Graph(schema())
    n, c, h, w = shape
    x = g.act((n, h, w, c))
    g.tensors[x].name = "serving_default_args_0"
    y = _Emitter(g).module(x, module)
    if y == x:
        raise WriterError(f"{type(module).__name__} computes the identity: there is no operator to write")
    return g.finish(x, y, f"mnas-surrogate {WRITER_NAME} v{WRITER_VERSION}")


def tflite_op_names(data: bytes) -> list[str]:
    """Builtin operator names of a ``.tflite`` model's first subgraph, in order."""
    S = schema()
    names = {v: k for k, v in vars(S.BuiltinOperator).items() if not k.startswith("_")}
    model = S.Model.GetRootAs(data, 0)
    sg = model.Subgraphs(0)
    out = []
    for i in range(sg.OperatorsLength()):
        oc = model.OperatorCodes(sg.Operators(i).OpcodeIndex())
        out.append(names[max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())])
    return out


def tflite_op_details(data: bytes) -> list[dict]:
    """Every operator of a ``.tflite`` model's first subgraph, in order, as plain data.

    Each is ``{"op", "version", "options", "inputs", "outputs"}``: ``options`` the
    builtin options' fields, ``inputs`` per input ``None`` (absent), ``("act", shape)``
    or ``("const", array)``, ``outputs`` the output shapes.
    """
    S = schema()
    names = {v: k for k, v in vars(S.BuiltinOperator).items() if not k.startswith("_")}
    dtypes = {S.TensorType.FLOAT32: np.float32, S.TensorType.INT32: np.int32, S.TensorType.INT64: np.int64}
    model = S.ModelT.InitFromObj(S.Model.GetRootAs(data, 0))
    sg = model.subgraphs[0]

    def shape(t) -> tuple[int, ...]:
        return tuple(int(d) for d in t.shape) if t.shape is not None else ()

    out = []
    for o in sg.operators:
        oc = model.operatorCodes[o.opcodeIndex]
        inputs: list = []
        for i in o.inputs:
            if i < 0:
                inputs.append(None)
                continue
            t = sg.tensors[i]
            buf = model.buffers[t.buffer].data
            if buf is not None and len(buf):
                inputs.append(("const", np.frombuffer(bytes(buf), dtype=dtypes[t.type]).reshape(shape(t))))
            else:
                inputs.append(("act", shape(t)))
        opts = ({k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in vars(o.builtinOptions).items()}
                if o.builtinOptions is not None else {})
        out.append({"op": names[max(oc.builtinCode, oc.deprecatedBuiltinCode)], "version": int(oc.version),
                    "options": opts, "inputs": inputs, "outputs": [shape(sg.tensors[j]) for j in o.outputs]})
    return out


def graph_differences(a: bytes, b: bytes, rtol: float = 1e-4, atol: float = 1e-5) -> list[str]:
    """How two ``.tflite`` models' operators differ (empty: the same graph).

    Compared operator by operator: builtin, operator-code version, options, output
    shapes, which inputs are absent / activations / constants, their shapes, and the
    constants' values (within ``rtol``/``atol``: BN folding rounds differently).
    """
    da, db = tflite_op_details(a), tflite_op_details(b)
    if [d["op"] for d in da] != [d["op"] for d in db]:
        return [f"operators {[d['op'] for d in da]} vs {[d['op'] for d in db]}"]
    diffs = []
    for i, (x, y) in enumerate(zip(da, db)):
        where = f"op {i} {x['op']}"
        for key in ("version", "options", "outputs"):
            if x[key] != y[key]:
                diffs.append(f"{where}: {key} {x[key]} vs {y[key]}")
        if len(x["inputs"]) != len(y["inputs"]):
            diffs.append(f"{where}: {len(x['inputs'])} vs {len(y['inputs'])} inputs")
            continue
        for j, (p, q) in enumerate(zip(x["inputs"], y["inputs"])):
            kinds = (p and p[0], q and q[0])
            if kinds[0] != kinds[1]:
                diffs.append(f"{where} input {j}: {kinds[0]} vs {kinds[1]}")
            elif kinds[0] == "act" and p[1] != q[1]:
                diffs.append(f"{where} input {j}: shape {p[1]} vs {q[1]}")
            elif kinds[0] == "const":
                u, v = p[1], q[1]
                if u.shape != v.shape or u.dtype != v.dtype:
                    diffs.append(f"{where} input {j}: {u.dtype}{u.shape} vs {v.dtype}{v.shape}")
                elif not np.allclose(u, v, rtol=rtol, atol=atol):
                    diffs.append(f"{where} input {j}: constants differ by up to "
                                 f"{float(np.max(np.abs(u.astype(np.float64) - v))):.3g}")
    return diffs
