"""Direct LiteRT writer: the ``.tflite`` flatbuffer of a project module, in milliseconds.

``litert-torch`` needs 2-5 s per operator and 8-20 s per network (torch.export,
decompositions, MLIR). The modules of :mod:`space.modules` use a small vocabulary
(conv + BN + activation, depthwise conv, squeeze-and-excitation, channel shuffle,
pooled shortcuts, residual add, global pool + classifier), so this module writes the
graph directly with the flatbuffer schema that ``ai-edge-litert`` ships
(``ai_edge_litert.schema_py_generated``), taking the weights from the torch module.

It mirrors what litert-torch 0.10 emits for the same module (checked in the tests and
in ``bench/writer_equivalence.py``): an NHWC graph without transposes, BN folded into
the convolutions, ReLU/ReLU6 fused, SiLU as LOGISTIC + MUL, hard-swish as HARD_SWISH,
an explicit PAD before a convolution whose torch padding TFLite's SAME cannot express
(stride 2 on even sizes), SE as MEAN + two 1x1 CONV_2D + LOGISTIC + MUL, channel
shuffle as TRANSPOSE/RESHAPE, a ceil-mode average-pool shortcut as PAD +
AVERAGE_POOL_2D + MUL (divisor correction), residuals as ADD, and the classifier as
MEAN + FULLY_CONNECTED.

    data = write_tflite(build_op(lc), op_input_shape(lc))   # bytes, NHWC input
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["WRITER_NAME", "WRITER_VERSION", "WriterError", "write_tflite", "tflite_op_names"]

WRITER_NAME = "tflite-direct"
# Bump when the emitted graph changes: it is part of the export cache key.
WRITER_VERSION = "1"


class WriterError(ValueError):
    """A module (or part of one) that the direct writer cannot express."""


def _schema():
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the direct .tflite writer needs ai-edge-litert (pip install ai-edge-litert==2.3.0)") from exc
    return schema


# litert-torch 0.10's operator versions for what it emits here.
_OP_VERSION = {"FULLY_CONNECTED": 5}


def _aligned_buffer_cls(S):
    class AlignedBufferT(S.BufferT):
        """A buffer whose data starts on a 16-byte boundary (weights are read in place)."""

        def Pack(self, builder):  # noqa: N802 - flatbuffers' name
            data = None
            if self.data is not None:
                payload = self.data.tobytes()
                builder.StartVector(1, len(payload), 16)
                builder.head = builder.head - len(payload)
                builder.Bytes[builder.head: builder.head + len(payload)] = payload
                builder.vectorNumElems = len(payload)
                data = builder.EndVector()
            S.BufferStart(builder)
            if data is not None:
                S.BufferAddData(builder, data)
            return S.BufferEnd(builder)

    return AlignedBufferT


@dataclass
class _Graph:
    """Tensors, buffers and operators of one subgraph under construction."""

    S: Any
    tensors: list = field(default_factory=list)
    buffers: list = field(default_factory=list)
    operators: list = field(default_factory=list)
    opcodes: dict = field(default_factory=dict)
    shapes: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self._buf = _aligned_buffer_cls(self.S)
        self.buffers.append(self._buf())  # buffer 0: the empty sentinel

    def _tensor(self, shape: Sequence[int], dtype: int, buffer: int, name: str) -> int:
        t = self.S.TensorT()
        t.shape = np.asarray(shape, dtype=np.int32)
        t.type = dtype
        t.buffer = buffer
        t.name = name
        self.tensors.append(t)
        self.shapes.append(tuple(int(d) for d in shape))
        return len(self.tensors) - 1

    def act(self, shape: Sequence[int]) -> int:
        """A new float32 activation tensor."""
        return self._tensor(shape, self.S.TensorType.FLOAT32, 0, f"t{len(self.tensors)}")

    def const(self, arr: np.ndarray) -> int:
        """A constant tensor (float32 or int32) holding ``arr``."""
        arr = np.ascontiguousarray(arr)
        dtype = {np.dtype(np.float32): self.S.TensorType.FLOAT32,
                 np.dtype(np.int32): self.S.TensorType.INT32}[arr.dtype]
        b = self._buf()
        b.data = np.frombuffer(arr.tobytes(), dtype=np.uint8)
        self.buffers.append(b)
        return self._tensor(arr.shape, dtype, len(self.buffers) - 1, f"c{len(self.tensors)}")

    def op(self, name: str, inputs: Sequence[int], out_shape: Sequence[int],
           options: Any = None, options_type: int = 0) -> int:
        """Append builtin operator ``name``; returns its (new) output tensor."""
        code = getattr(self.S.BuiltinOperator, name)
        if name not in self.opcodes:
            oc = self.S.OperatorCodeT()
            oc.builtinCode = code
            oc.deprecatedBuiltinCode = min(code, 127)
            oc.version = _OP_VERSION.get(name, 1)
            self.opcodes[name] = (len(self.opcodes), oc)
        out = self.act(out_shape)
        o = self.S.OperatorT()
        o.opcodeIndex = self.opcodes[name][0]
        o.inputs = np.asarray(list(inputs), dtype=np.int32)
        o.outputs = np.asarray([out], dtype=np.int32)
        o.builtinOptionsType = options_type
        o.builtinOptions = options
        self.operators.append(o)
        return out

    def finish(self, inp: int, out: int) -> bytes:
        """Serialise the model with one subgraph and a ``serving_default`` signature."""
        import flatbuffers

        S = self.S
        sg = S.SubGraphT()
        sg.tensors, sg.operators = self.tensors, self.operators
        sg.inputs = np.asarray([inp], dtype=np.int32)
        sg.outputs = np.asarray([out], dtype=np.int32)
        sg.name = "main"
        sig = S.SignatureDefT()
        sig.signatureKey = "serving_default"
        sig.subgraphIndex = 0
        sig.inputs, sig.outputs = [S.TensorMapT()], [S.TensorMapT()]
        sig.inputs[0].name, sig.inputs[0].tensorIndex = "args_0", inp
        sig.outputs[0].name, sig.outputs[0].tensorIndex = "output_0", out
        model = S.ModelT()
        model.version = 3
        model.description = f"mnas-surrogate {WRITER_NAME} v{WRITER_VERSION}"
        model.operatorCodes = [oc for _, oc in sorted(self.opcodes.values(), key=lambda p: p[0])]
        model.subgraphs = [sg]
        model.buffers = self.buffers
        model.signatureDefs = [sig]
        builder = flatbuffers.Builder(1024)
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())


# ------------------------------------------------------------------ emitters
def _np(t: "torch.Tensor") -> np.ndarray:
    return t.detach().to("cpu", copy=True).double().numpy()


def _fold(conv, bn) -> tuple[np.ndarray, np.ndarray]:
    """Conv weight (torch layout) and bias with BatchNorm folded in (float64)."""
    w = _np(conv.weight)
    b = _np(conv.bias) if conv.bias is not None else np.zeros(w.shape[0])
    if bn is not None:
        if not getattr(bn, "track_running_stats", True) or bn.running_mean is None:
            raise WriterError("tflite-direct needs BatchNorm2d with running statistics")
        scale = _np(bn.weight) / np.sqrt(_np(bn.running_var) + bn.eps)
        w = w * scale[:, None, None, None]
        b = (b - _np(bn.running_mean)) * scale + _np(bn.bias)
    return w, b


def _act_kind(m) -> str | None:
    from torch import nn

    for cls, kind in ((nn.ReLU, "relu"), (nn.ReLU6, "relu6"), (nn.SiLU, "silu"),
                      (nn.Hardswish, "hswish"), (nn.Sigmoid, "sigmoid")):
        if type(m) is cls:
            return kind
    return None


def _same_pads(size: int, k: int, s: int) -> tuple[int, int]:
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return out, total // 2


class _Emitter:
    """Walks a :mod:`space.build` module and appends its operators to a graph."""

    def __init__(self, g: _Graph) -> None:
        self.g = g
        self.S = g.S

    # -- building blocks ------------------------------------------------------
    def activation(self, x: int, kind: str | None) -> int:
        """A standalone activation (the non-fusable ones)."""
        g = self.g
        shape = g.shapes[x]
        if kind is None:
            return x
        if kind == "silu":
            sig = g.op("LOGISTIC", [x], shape)
            return g.op("MUL", [x, sig], shape, self._mul(), self.S.BuiltinOptions.MulOptions)
        if kind == "sigmoid":
            return g.op("LOGISTIC", [x], shape)
        if kind == "hswish":
            return g.op("HARD_SWISH", [x], shape)
        if kind in ("relu", "relu6"):
            return g.op("RELU" if kind == "relu" else "RELU6", [x], shape)
        raise WriterError(f"tflite-direct cannot express activation {kind!r}")

    def _mul(self):
        o = self.S.MulOptionsT()
        o.fusedActivationFunction = self.S.ActivationFunctionType.NONE
        return o

    def conv(self, x: int, conv, bn, act: str | None) -> int:
        """CONV_2D or DEPTHWISE_CONV_2D (+ PAD when needed) with BN folded, act fused if it can be."""
        S, g = self.S, self.g
        n, h, w, c = g.shapes[x]
        kh, kw = conv.kernel_size
        sh, sw = conv.stride
        ph, pw = conv.padding if isinstance(conv.padding, tuple) else (None, None)
        if ph is None or conv.dilation != (1, 1) or conv.padding_mode != "zeros":
            raise WriterError(f"tflite-direct cannot express {conv!r}; use the litert-torch exporter")
        if c != conv.in_channels:
            raise WriterError(f"tflite-direct: {conv!r} gets {c} input channels")
        oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
        if ph == 0 and pw == 0:
            padding = S.Padding.VALID
        else:
            (soh, sbh), (sow, sbw) = _same_pads(h, kh, sh), _same_pads(w, kw, sw)
            if (soh, sow, sbh, sbw) == (oh, ow, ph, pw):
                padding = S.Padding.SAME
            else:
                pads = np.array([[0, 0], [ph, ph], [pw, pw], [0, 0]], dtype=np.int32)
                x = g.op("PAD", [x, g.const(pads)], (n, h + 2 * ph, w + 2 * pw, c),
                         S.PadOptionsT(), S.BuiltinOptions.PadOptions)
                padding = S.Padding.VALID
        wt, b = _fold(conv, bn)
        fused = {"relu": S.ActivationFunctionType.RELU, "relu6": S.ActivationFunctionType.RELU6}.get(act)
        cout, groups = conv.out_channels, conv.groups
        depthwise = groups > 1 and groups == conv.in_channels == cout
        out_shape = (n, oh, ow, cout)
        bias = g.const(b.astype(np.float32))
        if depthwise:
            filt = g.const(wt.transpose(1, 2, 3, 0).astype(np.float32))  # [1, kh, kw, C]
            o = S.DepthwiseConv2DOptionsT()
            o.depthMultiplier = 1
            name, otype = "DEPTHWISE_CONV_2D", S.BuiltinOptions.DepthwiseConv2DOptions
        else:
            filt = g.const(wt.transpose(0, 2, 3, 1).astype(np.float32))  # [O, kh, kw, I/g]
            o = S.Conv2DOptionsT()
            name, otype = "CONV_2D", S.BuiltinOptions.Conv2DOptions
        o.padding, o.strideH, o.strideW = padding, sh, sw
        o.dilationHFactor = o.dilationWFactor = 1
        o.fusedActivationFunction = fused if fused is not None else S.ActivationFunctionType.NONE
        y = g.op(name, [x, filt, bias], out_shape, o, otype)
        return y if fused is not None else self.activation(y, act)

    def mean(self, x: int, keep_dims: bool, axes: Sequence[int] = (1, 2)) -> int:
        """MEAN over ``axes`` (spatial by default)."""
        S, g = self.S, self.g
        shape = g.shapes[x]
        o = S.ReducerOptionsT()
        o.keepDims = keep_dims
        if keep_dims:
            out = tuple(1 if i in axes else d for i, d in enumerate(shape))
        else:
            out = tuple(d for i, d in enumerate(shape) if i not in axes)
        return g.op("MEAN", [x, g.const(np.asarray(axes, dtype=np.int32))], out, o,
                    S.BuiltinOptions.ReducerOptions)

    def linear(self, x: int, lin) -> int:
        """FULLY_CONNECTED (the bias is dropped when all zero, as litert-torch does)."""
        S, g = self.S, self.g
        wt = _np(lin.weight).astype(np.float32)
        b = _np(lin.bias).astype(np.float32) if lin.bias is not None else None
        inputs = [x, g.const(wt)]
        inputs.append(g.const(b) if b is not None and np.any(b) else -1)
        o = S.FullyConnectedOptionsT()
        o.keepNumDims = True
        return g.op("FULLY_CONNECTED", inputs, (g.shapes[x][0], lin.out_features), o,
                    S.BuiltinOptions.FullyConnectedOptions)

    def add(self, a: int, b: int) -> int:
        o = self.S.AddOptionsT()
        o.potScaleInt16 = True
        return self.g.op("ADD", [a, b], self.g.shapes[a], o, self.S.BuiltinOptions.AddOptions)

    def shuffle(self, x: int, groups: int) -> int:
        """Channel shuffle as litert-torch lowers it: NCHW round trip through TRANSPOSE/RESHAPE."""
        g = self.g
        n, h, w, c = g.shapes[x]
        if c % groups:
            raise WriterError(f"channel shuffle: {c} channels are not divisible by {groups} groups")

        def transpose(t: int, perm: Sequence[int]) -> int:
            shape = tuple(g.shapes[t][p] for p in perm)
            return g.op("TRANSPOSE", [t, g.const(np.asarray(perm, dtype=np.int32))], shape)

        def reshape(t: int, shape: Sequence[int]) -> int:
            return g.op("RESHAPE", [t, g.const(np.asarray(shape, dtype=np.int32))], tuple(shape))

        t = transpose(x, (0, 3, 1, 2))
        t = reshape(t, (n, groups, c // groups, h, w))
        t = transpose(t, (0, 2, 1, 3, 4))
        t = reshape(t, (n, c, h, w))
        return transpose(t, (0, 2, 3, 1))

    def avg_pool(self, x: int, pool) -> int:
        """AvgPool2d(k=s, stride=s, ceil_mode): AVERAGE_POOL_2D, padded + divisor-corrected if ragged."""
        S, g = self.S, self.g
        k = pool.kernel_size if isinstance(pool.kernel_size, int) else pool.kernel_size[0]
        s = pool.stride if isinstance(pool.stride, int) else pool.stride[0]
        pad = pool.padding if isinstance(pool.padding, int) else pool.padding[0]
        if k != s or pad != 0:
            raise WriterError(f"tflite-direct cannot express {pool!r}; use the litert-torch exporter")
        n, h, w, c = g.shapes[x]
        oh = -(-h // s) if pool.ceil_mode else h // s
        ow = -(-w // s) if pool.ceil_mode else w // s
        eh, ew = oh * s - h, ow * s - w
        if eh > 0 or ew > 0:
            pads = np.array([[0, 0], [0, eh], [0, ew], [0, 0]], dtype=np.int32)
            x = g.op("PAD", [x, g.const(pads)], (n, h + eh, w + ew, c), S.PadOptionsT(),
                     S.BuiltinOptions.PadOptions)
        o = S.Pool2DOptionsT()
        o.padding, o.strideH, o.strideW, o.filterHeight, o.filterWidth = S.Padding.VALID, s, s, k, k
        y = g.op("AVERAGE_POOL_2D", [x], (n, oh, ow, c), o, S.BuiltinOptions.Pool2DOptions)
        if eh > 0 or ew > 0:
            rows = np.minimum(s, h - np.arange(oh) * s)
            cols = np.minimum(s, w - np.arange(ow) * s)
            corr = (k * k) / (rows[:, None] * cols[None, :]).astype(np.float64)
            y = g.op("MUL", [y, g.const(corr.reshape(1, oh, ow, 1).astype(np.float32))],
                     (n, oh, ow, c), self._mul(), S.BuiltinOptions.MulOptions)
        return y

    # -- module walk ----------------------------------------------------------
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
                act = _act_kind(mods[j]) if j < len(mods) else None
                x = self.conv(x, m, bn, act)
                i = j + (act is not None)
                continue
            x = self.module(x, m)
            i += 1
        return x

    def module(self, x: int, m) -> int:
        """Emit any supported module; raise :class:`WriterError` naming what is not."""
        from torch import nn

        from space import modules as P

        if isinstance(m, nn.Sequential):  # ConvBN and Stem too
            return self.sequential(x, m)
        if isinstance(m, (nn.Dropout, nn.Identity)):
            return x
        kind = _act_kind(m)
        if kind is not None:
            return self.activation(x, kind)
        if isinstance(m, nn.Conv2d):
            return self.conv(x, m, None, None)
        if isinstance(m, nn.AvgPool2d):
            return self.avg_pool(x, m)
        if isinstance(m, P.ChannelShuffle):
            return self.shuffle(x, m.groups)
        if isinstance(m, P.SqueezeExcite):
            s = self.mean(x, keep_dims=True)
            s = self.conv(s, m.reduce, None, _act_kind(m.act))
            s = self.conv(s, m.expand, None, None)
            s = self.activation(s, "sigmoid")
            return self.g.op("MUL", [x, s], self.g.shapes[x], self._mul(), self.S.BuiltinOptions.MulOptions)
        if isinstance(m, P.Layer):
            y = self.sequential(x, m.body)
            if m.add:
                y = self.add(y, self.sequential(x, m.shortcut) if len(m.shortcut) else x)
            return y
        if isinstance(m, P.Net):
            return self.module(self.module(self.module(x, m.stem), m.layers), m.head)
        if isinstance(m, P.Head):
            y = self.sequential(x, m.conv)
            if y == 0:  # litert-torch pools a bare graph input in NCHW (a TRANSPOSE first)
                n, h, w, c = self.g.shapes[y]
                y = self.g.op("TRANSPOSE", [y, self.g.const(np.asarray((0, 3, 1, 2), dtype=np.int32))],
                              (n, c, h, w))
                y = self.mean(y, keep_dims=False, axes=(2, 3))
            else:
                y = self.mean(y, keep_dims=False)
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
    g = _Graph(_schema())
    n, c, h, w = shape
    x = g.act((n, h, w, c))
    g.tensors[x].name = "serving_default_args_0"
    y = _Emitter(g).module(x, module)
    if y == x:
        raise WriterError(f"{type(module).__name__} computes the identity: there is no operator to write")
    return g.finish(x, y)


def tflite_op_names(data: bytes) -> list[str]:
    """Builtin operator names of a ``.tflite`` model's first subgraph, in order."""
    S = _schema()
    names = {v: k for k, v in vars(S.BuiltinOperator).items() if not k.startswith("_")}
    model = S.Model.GetRootAs(data, 0)
    sg = model.Subgraphs(0)
    out = []
    for i in range(sg.OperatorsLength()):
        oc = model.OperatorCodes(sg.Operators(i).OpcodeIndex())
        out.append(names[max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())])
    return out
