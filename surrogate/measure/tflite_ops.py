"""The operator emitters of the direct LiteRT writer (:mod:`.tflite_writer`).

:class:`Graph` holds one subgraph under construction (tensors, buffers, operators)
and serialises it with the flatbuffer schema that ``ai-edge-litert`` ships;
:class:`OpEmitter` appends operators to it exactly as litert-torch 0.10 lowers the
corresponding torch ops (which builtin, which options, which constants, in which
order). The module walk that decides which emitter a :mod:`space.modules` module
needs lives in :mod:`.tflite_writer`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["Graph", "OpEmitter", "WriterError", "act_kind", "schema"]


class WriterError(ValueError):
    """A module (or part of one) that the direct writer cannot express."""


def schema():
    """``ai_edge_litert``'s generated flatbuffer schema module."""
    try:
        from ai_edge_litert import schema_py_generated as S
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the direct .tflite writer needs ai-edge-litert (pip install ai-edge-litert==2.3.0)") from exc
    return S


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
class Graph:
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
        """A constant tensor (float32 or int32) holding ``arr`` (a 0-d array is a scalar)."""
        shape = np.shape(arr)
        arr = np.ascontiguousarray(arr)  # (0-d becomes 1-d here: keep the shape from before)
        dtype = {np.dtype(np.float32): self.S.TensorType.FLOAT32,
                 np.dtype(np.int32): self.S.TensorType.INT32}[arr.dtype]
        b = self._buf()
        b.data = np.frombuffer(arr.tobytes(), dtype=np.uint8)
        self.buffers.append(b)
        return self._tensor(shape, dtype, len(self.buffers) - 1, f"c{len(self.tensors)}")

    def op(self, name: str, inputs: Sequence[int], out_shape: Sequence[int],
           options: Any = None, options_type: int = 0, version: int = 1) -> int:
        """Append builtin operator ``name``; returns its (new) output tensor.

        ``version`` is the version this use of the operator needs (TFLite's
        ``op_version`` rules); the model's operator code gets the highest over all uses,
        as the converter's version pass sets it.
        """
        code = getattr(self.S.BuiltinOperator, name)
        if name not in self.opcodes:
            oc = self.S.OperatorCodeT()
            oc.builtinCode = code
            oc.deprecatedBuiltinCode = min(code, 127)
            oc.version = version
            self.opcodes[name] = (len(self.opcodes), oc)
        oc = self.opcodes[name][1]
        oc.version = max(oc.version, version)
        out = self.act(out_shape)
        o = self.S.OperatorT()
        o.opcodeIndex = self.opcodes[name][0]
        o.inputs = np.asarray(list(inputs), dtype=np.int32)
        o.outputs = np.asarray([out], dtype=np.int32)
        o.builtinOptionsType = options_type
        o.builtinOptions = options
        self.operators.append(o)
        return out

    def finish(self, inp: int, out: int, description: str) -> bytes:
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
        model.description = description
        model.operatorCodes = [oc for _, oc in sorted(self.opcodes.values(), key=lambda p: p[0])]
        model.subgraphs = [sg]
        model.buffers = self.buffers
        model.signatureDefs = [sig]
        builder = flatbuffers.Builder(1024)
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())


# ------------------------------------------------------------------ helpers
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


def act_kind(m) -> str | None:
    """The activation name of an activation module (None for anything else)."""
    from torch import nn

    for cls, kind in ((nn.ReLU, "relu"), (nn.ReLU6, "relu6"), (nn.SiLU, "silu"),
                      (nn.Hardswish, "hswish"), (nn.Sigmoid, "sigmoid"), (nn.Hardsigmoid, "hsigmoid")):
        if type(m) is cls:
            return kind
    return None


def _same_pads(size: int, k: int, s: int) -> tuple[int, int]:
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return out, total // 2


def _spatial_axes(rank_axes: Sequence[int]) -> np.ndarray:
    """Reduction axes as litert-torch writes them: descending (``[2, 1]`` for NHWC H, W)."""
    return np.asarray(sorted(rank_axes, reverse=True), dtype=np.int32)


class OpEmitter:
    """Appends litert-torch-shaped operators to a :class:`Graph`."""

    def __init__(self, g: Graph) -> None:
        self.g = g
        self.S = g.S

    def _mul_options(self):
        o = self.S.MulOptionsT()
        o.fusedActivationFunction = self.S.ActivationFunctionType.NONE
        return o

    def mul(self, a: int, b: int) -> int:
        """MUL ``a * b`` (``b`` broadcast); the output has ``a``'s shape."""
        return self.g.op("MUL", [a, b], self.g.shapes[a], self._mul_options(), self.S.BuiltinOptions.MulOptions)

    def activation(self, x: int, kind: str | None) -> int:
        """A standalone activation (the non-fusable ones).

        SiLU is LOGISTIC + MUL and hard-swish the HARD_SWISH builtin (litert-torch wraps
        ``aten.hardswish`` in a composite that becomes ``tfl.hard_swish``). A hard sigmoid
        not fused into a conv is ``relu6(x + 3) / 6``: ADD (RELU6 fused) + MUL.
        """
        g = self.g
        shape = g.shapes[x]
        if kind is None:
            return x
        if kind == "silu":
            return self.mul(x, g.op("LOGISTIC", [x], shape))
        if kind == "sigmoid":
            return g.op("LOGISTIC", [x], shape)
        if kind == "hswish":
            return g.op("HARD_SWISH", [x], shape)
        if kind in ("relu", "relu6"):
            return g.op("RELU" if kind == "relu" else "RELU6", [x], shape)
        if kind == "hsigmoid":
            t = self.add(x, g.const(np.asarray(3.0, dtype=np.float32)), fused="relu6")
            return self.mul(t, g.const(np.asarray(1.0 / 6.0, dtype=np.float32)))
        raise WriterError(f"tflite-direct cannot express activation {kind!r}")

    def conv(self, x: int, conv, bn, act: str | None) -> int:
        """CONV_2D or DEPTHWISE_CONV_2D (+ PAD when needed) with BN folded, act fused if it can be.

        A hard sigmoid after a conv is how litert-torch's optimiser leaves it: the ``+ 3``
        folded into the conv bias, RELU6 fused, then MUL by 1/6.
        """
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
        if act == "hsigmoid":
            b = b + 3.0
        fused = {"relu": S.ActivationFunctionType.RELU, "relu6": S.ActivationFunctionType.RELU6,
                 "hsigmoid": S.ActivationFunctionType.RELU6}.get(act)
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
        version = 6 if groups > 1 and not depthwise else 1  # grouped CONV_2D is version 6
        y = g.op(name, [x, filt, bias], out_shape, o, otype, version=version)
        if act == "hsigmoid":
            return self.mul(y, g.const(np.asarray(1.0 / 6.0, dtype=np.float32)))
        return y if fused is not None else self.activation(y, act)

    def mean(self, x: int, keep_dims: bool, axes: Sequence[int] = (1, 2)) -> int:
        """MEAN over ``axes`` (spatial by default), written in descending order as litert-torch does."""
        S, g = self.S, self.g
        shape = g.shapes[x]
        o = S.ReducerOptionsT()
        o.keepDims = keep_dims
        if keep_dims:
            out = tuple(1 if i in axes else d for i, d in enumerate(shape))
        else:
            out = tuple(d for i, d in enumerate(shape) if i not in axes)
        return g.op("MEAN", [x, g.const(_spatial_axes(axes))], out, o, S.BuiltinOptions.ReducerOptions)

    def linear(self, x: int, lin) -> int:
        """FULLY_CONNECTED (the bias is dropped when all zero or absent, as litert-torch does).

        On a 2-D input litert-torch keeps the number of dimensions (version 5); on the
        ``(N, 1, 1, C)`` output of a kept-dims pool (MobileNetV3's head, whose flatten
        folds into the FC) it does not (version 1).
        """
        S, g = self.S, self.g
        shape = g.shapes[x]
        if shape[-1] != lin.in_features or any(d != 1 for d in shape[1:-1]):
            raise WriterError(f"tflite-direct: {lin!r} gets an input of shape {shape}")
        wt = _np(lin.weight).astype(np.float32)
        b = _np(lin.bias).astype(np.float32) if lin.bias is not None else None
        inputs = [x, g.const(wt)]
        inputs.append(g.const(b) if b is not None and np.any(b) else -1)
        o = S.FullyConnectedOptionsT()
        o.keepNumDims = len(shape) == 2
        return g.op("FULLY_CONNECTED", inputs, (shape[0], lin.out_features), o,
                    S.BuiltinOptions.FullyConnectedOptions, version=5 if o.keepNumDims else 1)

    def add(self, a: int, b: int, fused: str | None = None) -> int:
        """ADD ``a + b`` (``b`` broadcast), optionally with RELU6 fused."""
        o = self.S.AddOptionsT()
        o.potScaleInt16 = True
        if fused is not None:
            o.fusedActivationFunction = {"relu6": self.S.ActivationFunctionType.RELU6}[fused]
        return self.g.op("ADD", [a, b], self.g.shapes[a], o, self.S.BuiltinOptions.AddOptions)

    def transpose(self, t: int, perm: Sequence[int]) -> int:
        """TRANSPOSE (version 4 on a 5-D tensor, as in the channel shuffle)."""
        g = self.g
        shape = tuple(g.shapes[t][p] for p in perm)
        return g.op("TRANSPOSE", [t, g.const(np.asarray(perm, dtype=np.int32))], shape,
                    version=4 if len(perm) == 5 else 1)

    def reshape(self, t: int, shape: Sequence[int]) -> int:
        g = self.g
        return g.op("RESHAPE", [t, g.const(np.asarray(shape, dtype=np.int32))], tuple(shape))

    def shuffle(self, x: int, groups: int) -> int:
        """Channel shuffle as litert-torch lowers it: NCHW round trip through TRANSPOSE/RESHAPE."""
        n, h, w, c = self.g.shapes[x]
        if c % groups:
            raise WriterError(f"channel shuffle: {c} channels are not divisible by {groups} groups")
        t = self.transpose(x, (0, 3, 1, 2))
        t = self.reshape(t, (n, groups, c // groups, h, w))
        t = self.transpose(t, (0, 2, 1, 3, 4))
        t = self.reshape(t, (n, c, h, w))
        return self.transpose(t, (0, 2, 3, 1))

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
            y = self.mul(y, g.const(corr.reshape(1, oh, ow, 1).astype(np.float32)))
        return y

    def squeeze_excite(self, x: int, m, gate: str) -> int:
        """SE: MEAN (kept dims) + reduce conv (+ act) + expand conv + gate + MUL.

        ``gate`` 'sigmoid' is LOGISTIC; 'hsigmoid' (MobileNetV3) is the expand conv with
        ``+ 3`` in its bias and RELU6 fused, then MUL by 1/6 (see :meth:`conv`).
        """
        s = self.mean(x, keep_dims=True)
        s = self.conv(s, m.reduce, None, act_kind(m.act))
        s = self.conv(s, m.expand, None, gate)
        return self.mul(x, s)
