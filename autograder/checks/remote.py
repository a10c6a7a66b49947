"""TRUSTED SIDE. What answers the negative_elbo_bound sandbox's stand-ins, and what it saw.

In that sandbox the student's VAE runs with an encoder, a decoder, `ut.sample_gaussian` and
`ut.kl_normal` whose forward and backward passes are computed here (`_worker.op_elbo` calls
back through `grader_call`). The encoder and decoder are functions this side chose (they
share nothing with the reference network: the child never holds a weight), the sampler's
noise is drawn here, and kl_normal is the oracle's. Every call is recorded exactly as this
side decoded it from the child's arrays, or as it answered: the checks read only these
records, never the child's description of its own values.
"""
import math
import secrets
from dataclasses import dataclass, field

import numpy as np
import torch

from .. import oracle
from ..sandbox import CallbackError

IMAGE_DIM = 784
V_LOW, V_HIGH = 0.05, 20.0        # the encoder's variances: sqrt(v), v and v^2 differ a lot over this range
HIDDEN = 64
MAX_CALLS = 400                   # per request: a loop of stand-in calls is refused past it
MAX_ELEMENTS = 4_000_000          # per array the child sends or this side answers (5,000 images)
MAX_RECORDED_BYTES = 256 * 2**20  # per request: what the records may hold (the grader's memory is small)


class TrustedModel:
    """The encoder x -> (m, v) and decoder z -> logits the stand-ins answer with (float64)."""
    shapes = {"enc": (1, 2), "dec": (1, 1)}      # stand-in -> (number of inputs, number of outputs)

    def __init__(self, z_dim, seed=20261128):
        generator = torch.Generator().manual_seed(seed)

        def draw(*shape):
            return torch.randn(*shape, generator=generator, dtype=torch.float64)

        self.z_dim = z_dim
        self.enc_weight = draw(IMAGE_DIM, 2 * z_dim) / math.sqrt(IMAGE_DIM)
        self.dec_in, self.dec_in_bias = draw(z_dim, HIDDEN) / math.sqrt(z_dim), draw(HIDDEN)
        self.dec_out, self.dec_out_bias = draw(HIDDEN, IMAGE_DIM) * 3 / math.sqrt(HIDDEN), draw(IMAGE_DIM)

    def encode(self, x):
        """Each row of (2x - 1) W is about N(0, 1): m spreads over about +-4, log v evenly over [V_LOW, V_HIGH]."""
        h = (2 * x - 1) @ self.enc_weight
        m = 2 * h[..., :self.z_dim]
        v = V_LOW * (V_HIGH / V_LOW) ** torch.sigmoid(1.7 * h[..., self.z_dim:])
        return m, v

    def decode(self, z):
        return torch.tanh(z @ self.dec_in + self.dec_in_bias) @ self.dec_out + self.dec_out_bias

    def validate(self, function, tensors):
        """Raise CallbackError when the stand-in `function` ("enc", "dec") cannot take these inputs."""
        if function == "enc":
            x = tensors[0]
            if x.dim() != 2 or x.shape[-1] != IMAGE_DIM:
                raise CallbackError(f"self.enc expects images of shape (batch, {IMAGE_DIM}), got {tuple(x.shape)}")
        else:
            z = tensors[0]
            if z.dim() < 1 or z.shape[-1] != self.z_dim:
                raise CallbackError(f"self.dec expects z of shape (batch, {self.z_dim}), got {tuple(z.shape)}")


class ConditionalTrustedModel(TrustedModel):
    """The conditional model's stand-ins: the encoder (x, y) -> (m, v) and the decoder (z, y) -> logits,
    y one-hot. The label moves the encoder's m and log v and the decoder's hidden layer as much as the
    image does, so that a bound computed with the wrong label (or none) is far from the right one."""
    shapes = {"enc": (2, 2), "dec": (2, 1)}
    classes = 10

    def __init__(self, z_dim, seed=20261129):
        super().__init__(z_dim, seed)
        generator = torch.Generator().manual_seed(seed + 1)
        self.enc_label = torch.randn(self.classes, 2 * z_dim, generator=generator, dtype=torch.float64)
        self.dec_label = torch.randn(self.classes, HIDDEN, generator=generator, dtype=torch.float64)

    def encode(self, x, y):
        h = (2 * x - 1) @ self.enc_weight + y @ self.enc_label
        m = 2 * h[..., :self.z_dim]
        v = V_LOW * (V_HIGH / V_LOW) ** torch.sigmoid(1.7 * h[..., self.z_dim:])
        return m, v

    def decode(self, z, y):
        return torch.tanh(z @ self.dec_in + y @ self.dec_label + self.dec_in_bias) @ self.dec_out + self.dec_out_bias

    def validate(self, function, tensors):
        super().validate(function, tensors)
        first, y = tensors
        call = "self.enc(x, y)" if function == "enc" else "self.dec(z, y)"
        if y.dim() != first.dim() or y.shape[-1] != self.classes or y.shape[:-1] != first.shape[:-1]:
            raise CallbackError(f"{call} expects y of shape ({', '.join(map(str, first.shape[:-1]))}, {self.classes}) "
                                f"(one one-hot label per row of {'x' if function == 'enc' else 'z'}), got "
                                f"{tuple(y.shape)}")


@dataclass
class Call:
    """One stand-in call: its inputs as decoded, its outputs as answered, the gradients that came back."""
    name: str
    phase: str
    inputs: list
    outputs: list
    eps: np.ndarray = None                         # the sampler's noise
    backward: list = field(default_factory=list)   # (phase, [gradient of each output], [answer per input])


# name -> (number of inputs, number of outputs); the encoder's and decoder's are their model's
SHAPES = {"enc": (1, 2), "dec": (1, 1), "sample_gaussian": (2, 1), "kl_normal": (4, 1)}


class Session:
    """on_callback for one negative_elbo_bound request: answers and records every stand-in call."""

    def __init__(self, model, kept_phases=None):
        self.model = model
        self.shapes = {**SHAPES, **model.shapes}
        self.calls = []
        self.kept_phases = kept_phases  # the phases whose answers the checks read (None: all); others keep shapes
        self.recorded_bytes = 0
        self.phase = "forward"          # the worker says which backward pass follows (rec, kl, nelbo)
        self.generator = torch.Generator().manual_seed(secrets.randbits(63))

    def __call__(self, name, params, arrays):
        if name == "phase":
            self.phase = str(params.get("name", ""))[:20]
            return {}, {}
        if len(self.calls) >= MAX_CALLS:
            raise CallbackError(f"more than {MAX_CALLS} calls of the model's encoder, decoder or the utils "
                                "functions in one negative_elbo_bound call")
        function, _, kind = name.partition(".")
        if function not in self.shapes or kind not in ("", "backward"):
            raise CallbackError(f"unknown grader call {name[:60]!r}")
        try:
            if kind == "backward":
                return self._backward(function, params, arrays)
            return self._forward(function, arrays)
        except (RuntimeError, ValueError, TypeError, IndexError) as error:   # shapes that do not broadcast...
            raise CallbackError(f"{function} could not be evaluated on what it was given: {error}"[:500]) from None

    # ------------------------------------------------------------ forward and backward

    def _inputs(self, function, arrays, prefix, count):
        found = []
        for i in range(count):
            array = arrays.get(f"{prefix}{i}")
            if array is None:
                raise CallbackError(f"{function}: {'gradient' if prefix == 'g' else 'argument'} {i + 1} is missing")
            if array.dtype.kind != "f" or array.size > MAX_ELEMENTS:
                raise CallbackError(f"{function}: argument {i + 1} is a {array.dtype} array of shape {array.shape}, "
                                    "expected a floating-point tensor")
            found.append(array if prefix == "g" else self._held_once(function, i, array))
        self.recorded_bytes += sum(a.nbytes for a in found)
        if self.recorded_bytes > MAX_RECORDED_BYTES:
            raise CallbackError(f"more than {MAX_RECORDED_BYTES // 2**20} MB sent to the model's encoder, decoder "
                                "and the utils functions in one negative_elbo_bound call")
        return found

    def _held_once(self, function, index, array):
        """`array`, or the earlier call of `function`'s input `index` when it holds the same bytes: a batch sent
        again (each of several calls on the same images) is recorded once."""
        earlier = next((call.inputs[index] for call in reversed(self.calls) if call.name == function), None)
        if (earlier is not None and earlier.shape == array.shape and earlier.dtype == array.dtype
                and earlier.flags.c_contiguous and array.flags.c_contiguous
                and np.array_equal(earlier.reshape(-1).view(np.uint8), array.reshape(-1).view(np.uint8))):
            return earlier
        return array

    def _recorded(self, answered):
        """What a call's record keeps of its answers: all of them in a kept phase, else their shapes and dtypes
        (arrays that hold no memory), which a backward pass checks its gradients against."""
        if self.kept_phases is None or self.phase in self.kept_phases:
            return answered
        return [np.broadcast_to(np.zeros((), a.dtype), a.shape) for a in answered]

    def _evaluate(self, function, tensors, eps=None):
        if function == "enc":
            self.model.validate(function, tensors)
            return self.model.encode(*tensors)
        if function == "dec":
            self.model.validate(function, tensors)
            return (self.model.decode(*tensors),)
        if function == "sample_gaussian":
            m, v = tensors
            return (oracle.pathwise_sample(m, v, eps),)
        qm, qv, pm, pv = tensors
        return (oracle.kl_normal(qm, qv, pm, pv),)

    def _forward(self, function, arrays):
        count, _ = self.shapes[function]
        inputs = self._inputs(function, arrays, "in", count)
        tensors = [torch.from_numpy(a.astype(np.float64)) for a in inputs]
        # (the encoder's and decoder's first input gives their batch; torch's broadcast_shapes imports its
        # symbolic shapes: 2 s)
        shape = inputs[0].shape if function in ("enc", "dec") else np.broadcast_shapes(*(a.shape for a in inputs))
        if function == "dec":
            shape = (*shape[:-1], IMAGE_DIM)
        if math.prod(shape) > MAX_ELEMENTS:
            raise CallbackError(f"{function}: an output of shape {shape} is larger than the grader answers")
        eps = None
        if function == "sample_gaussian":
            eps = torch.randn(shape, generator=self.generator, dtype=torch.float64)
        with torch.no_grad():
            outputs = self._evaluate(function, tensors, eps)
        dtype = np.result_type(*inputs) if function not in ("enc", "dec") else inputs[0].dtype
        answered = [o.numpy().astype(dtype) for o in outputs]
        self.calls.append(Call(function, self.phase, inputs, self._recorded(answered),
                               None if eps is None else eps.numpy()))
        return {"call": len(self.calls) - 1}, {f"out{i}": a for i, a in enumerate(answered)}

    def _backward(self, function, params, arrays):
        index = params.get("call")
        if not isinstance(index, int) or not 0 <= index < len(self.calls) or self.calls[index].name != function:
            raise CallbackError(f"{function}.backward names no {function} call of this request")
        call = self.calls[index]
        _, count = self.shapes[function]
        grads = self._inputs(function, arrays, "g", count)
        for grad, output in zip(grads, call.outputs):
            if grad.shape != output.shape:
                raise CallbackError(f"{function}.backward: a gradient of shape {grad.shape} for an output of "
                                    f"shape {output.shape}")
        leaves = [torch.from_numpy(a.astype(np.float64)).requires_grad_(True) for a in call.inputs]
        outputs = self._evaluate(function, leaves, None if call.eps is None else torch.from_numpy(call.eps))
        answers = torch.autograd.grad(outputs, leaves, [torch.from_numpy(g.astype(np.float64)) for g in grads],
                                      allow_unused=True)
        answered = [np.zeros(a.shape, a.dtype) if g is None else g.numpy().astype(a.dtype)
                    for g, a in zip(answers, call.inputs)]
        call.backward.append((self.phase, grads, answered))
        return {}, {f"g{i}": a for i, a in enumerate(answered)}

    # ------------------------------------------------------------ what the checks read

    def of(self, name, phase="forward"):
        return [call for call in self.calls if call.name == name and call.phase == phase]

    def arrivals(self, name, phase):
        """[(call, gradients of its outputs)] of the backward passes `name` got in `phase`."""
        return [(call, grads) for call in self.calls if call.name == name
                for seen, grads, _ in call.backward if seen == phase]


# ---------------------------------------------------------------- the convolutional VAE (problem `conv`)

class ConvTrustedModel(TrustedModel):
    """The convolutional VAE's stand-ins: the encoder x -> (mean, logvar) (the log of TrustedModel's
    variances, spread over [log V_LOW, log V_HIGH]) and the decoder z -> logits of shape (batch, 1, 28, 28);
    log_normal_pdf is answered by the oracle (ConvSession). The encoder takes the images flat, (batch, 784),
    or as (batch, 1, 28, 28) or (batch, 28, 28), as the provided ConvEncoder does."""
    shapes = {"enc": (1, 2), "dec": (1, 1), "log_normal_pdf": (3, 1)}
    image_shape = (1, 28, 28)

    def encode(self, x):
        m, v = super().encode(x.reshape(-1, IMAGE_DIM))
        return m, torch.log(v)

    def decode(self, z):
        return super().decode(z).reshape(*z.shape[:-1], *self.image_shape)

    def validate(self, function, tensors):
        if function == "enc":
            x = tensors[0]
            if x.dim() < 2 or math.prod(x.shape[1:]) != IMAGE_DIM:
                raise CallbackError(f"self.enc expects images of shape (batch, {IMAGE_DIM}), got {tuple(x.shape)}")
        else:
            z = tensors[0]
            if z.dim() != 2 or z.shape[-1] != self.z_dim:
                raise CallbackError(f"self.dec expects z of shape (batch, {self.z_dim}), got {tuple(z.shape)}")


class ConvSession(Session):
    """The conv bound sandbox's stand-ins: ConvTrustedModel's encoder and decoder, and log_normal_pdf
    (oracle.log_normal_pdf, float64), each call recorded as the others are."""

    def _evaluate(self, function, tensors, eps=None):
        if function == "log_normal_pdf":
            return (oracle.log_normal_pdf(*tensors),)
        return super()._evaluate(function, tensors, eps)

    def _forward(self, function, arrays):
        """As Session's, counting the answers too (a decoder answer is 784 values a row: thousands of calls
        of a large batch must not fill the grader's memory with the records)."""
        reply = super()._forward(function, arrays)
        self.recorded_bytes += sum(a.nbytes for a in self.calls[-1].outputs)
        if self.recorded_bytes > MAX_RECORDED_BYTES:
            self.calls[-1].outputs = []
            raise CallbackError(f"more than {MAX_RECORDED_BYTES // 2**20} MB sent to and answered by the model's "
                                "encoder, decoder and log_normal_pdf in one negative_elbo_bound call")
        return reply
