"""UNTRUSTED SIDE. The only code that imports a submission; runs inside the sandbox child.

Started as `python -I _worker.py REQUEST_FD REPLY_FD` in a fresh directory holding the
whitelisted submission files, the provided modules, this file and wire.py. It answers
requests (see OPS) until the grader closes the channel. Everything it sends back is
plain data; the grader validates every value, so nothing here is trusted.
"""
import hashlib
import json
import os
import sys
import traceback

import numpy as np
import torch

STUDENT_FILES = ("utils.py", "vae.py", "cvae.py", "beta_vae.py", "logvar_utils.py", "mmd_vae.py", "ae.py", "conv_vae.py")     # every problem's (autograder/problems.py)
# Bound before any submission code runs: patching torch.Tensor.detach, torch.equal and the
# like at import time then cannot change what this worker reports.
_TENSOR = torch.Tensor
_DETACH, _CPU, _NUMPY, _CLONE = torch.Tensor.detach, torch.Tensor.cpu, torch.Tensor.numpy, torch.Tensor.clone
_AS_TENSOR = torch.as_tensor
# A tensor subclass may answer detach/cpu/numpy through its own __torch_function__ (turned off while a value
# is read) or __torch_dispatch__ (refused): either could report values other than the tensor's own.
_NO_SUBCLASS = torch._C.DisableTorchFunctionSubclass
_PLAIN_DISPATCH = torch.Tensor.__torch_dispatch__
_MRO, _VARS = type.__dict__["__mro__"].__get__, type.__dict__["__dict__"].__get__
# The torch and numpy functions the operations record with: torch and numpy are the submission's to change
# too (torch.autograd.grad replaced for the one call that measures a gradient), and no guard compares them.
_GRAD, _BACKWARD, _SEED, _ONES_LIKE = torch.autograd.grad, torch.autograd.backward, torch.manual_seed, torch.ones_like
_MUL, _SUM = torch.Tensor.__mul__, torch.Tensor.sum
_ARRAY, _ZEROS, _FROMBUFFER = np.array, np.zeros, np.frombuffer


def _to_array(value, what, _array=_ARRAY, _zeros=_ZEROS):
    if isinstance(value, _TENSOR):
        if any(_VARS(k).get("__torch_dispatch__", _PLAIN_DISPATCH) is not _PLAIN_DISPATCH for k in _MRO(type(value))):
            raise TypeError(f"{what} returned a tensor subclass ({type(value).__name__}) with its own "
                            "__torch_dispatch__, expected a torch.Tensor")
        with _NO_SUBCLASS():
            plain = _DETACH(value)
            return _array(_NUMPY(_CPU(plain))) if plain.device.type != "meta" else _zeros(0)
    article = "an" if type(value).__name__[:1].lower() in "aeiou" else "a"
    raise TypeError(f"{what} returned {article} {type(value).__name__}, expected a torch.Tensor")


def _describe(value):
    import torch
    if not isinstance(value, torch.Tensor):
        return {"type": type(value).__name__}
    return {"type": "Tensor", "shape": list(value.shape), "dtype": str(value.dtype).replace("torch.", ""),
            "device": value.device.type, "requires_grad": bool(value.requires_grad),
            "has_grad_fn": value.grad_fn is not None}


def _plain(value, _tensor=_TENSOR, _no_subclass=_NO_SUBCLASS, _type=type):
    """A tensor subclass's value as a plain torch.Tensor on the same data and autograd graph, so
    that no hook of the subclass (__torch_function__) runs while the worker reads it."""
    if isinstance(value, _tensor) and _type(value) is not _tensor:
        with _no_subclass():
            return value.as_subclass(_tensor)
    return value


def op_import(params, arrays):
    """Import `modules` in order. With `remote`, once utils is imported its functions of those
    names become stand-ins answered by the grader (before vae.py imports them); if the student's
    utils.py cannot be imported, `fallback_utils` (the handout's text) stands in for it, so that
    a broken utils.py costs points only where it is graded."""
    import importlib
    for name in params["modules"]:
        if name == "utils" and params.get("fallback_utils") is not None:
            _import_utils_or_fallback(params["fallback_utils"])
        else:
            importlib.import_module(name)
        if name == "utils" and params.get("remote"):
            _install_remote_utils(params["remote"])
    return "{}", ()


def _import_utils_or_fallback(text):
    import importlib
    import types
    try:
        importlib.import_module("utils")
    except BaseException:  # noqa: B036 - SyntaxError, ImportError, sys.exit: the unit checks report it
        sys.modules.pop("utils", None)
        module = types.ModuleType("utils")
        module.__file__ = "<handout utils.py>"
        exec(compile(text, "<handout utils.py>", "exec"), module.__dict__)
        sys.modules["utils"] = module


def _frozen(array):
    """An array recorded by a request as immutable bytes, its dtype and shape."""
    return array.tobytes(), array.dtype.str, array.shape


def _thawed(frozen, _frombuffer=_FROMBUFFER):
    data, dtype, shape = frozen
    return _frombuffer(data, dtype=dtype).reshape(shape)


# ---------------------------------------------------------------- after the submission's last call of a request
# Code of the submission can go on running after its call returned, and reach what the worker is about
# to send (through the frames of the worker it saw during the call): a thread, a signal handler (a timer's),
# a gc callback or a finalizer run by a collection. _quiesce stops the timers, puts the signal handlers back
# as they were before any submission code, turns collections off (serve turns them on for the next request)
# and refuses to go on while a thread the submission started is alive. (Threads made outside Python, with
# ctypes, are not counted.)

def _quiesce_function():
    import _thread
    import gc
    import signal
    import types
    handlers = types.MappingProxyType({number: signal.getsignal(number) for number in signal.valid_signals()
                                       if callable(signal.getsignal(number))})
    timers = [getattr(signal, name) for name in ("ITIMER_REAL", "ITIMER_VIRTUAL", "ITIMER_PROF")]

    def quiesce(setitimer=signal.setitimer, getsignal=signal.getsignal, set_handler=signal.signal,
                default=signal.SIG_DFL, valid=signal.valid_signals, handlers=handlers, timers=tuple(timers),
                gc_disable=gc.disable, gc_callbacks=gc.callbacks, thread_count=_thread._count,
                callable=callable, RuntimeError=RuntimeError):
        gc_disable()
        for timer in timers:
            setitimer(timer, 0)
        for number in valid():
            if callable(getsignal(number)) and getsignal(number) is not handlers.get(number):
                set_handler(number, handlers.get(number, default))
        del gc_callbacks[:]
        threads = thread_count()
        if threads:
            raise RuntimeError(f"the submission left {threads} thread(s) running after its call returned: a "
                               "thread could change what the grader's worker reports, so this reply does not count. "
                               "Join every thread your code starts (threading, concurrent.futures) before the "
                               "function, or the import, returns")
    return quiesce


_quiesce = _quiesce_function()       # made as this module loads, before any submission code


def _call_recorded(params, arrays, _to_array=_to_array, _describe=_describe, _tensor=_TENSOR, _as_tensor=_AS_TENSOR,
                   _plain=_plain, _frozen=_frozen, _seed=_SEED, _ones_like=_ONES_LIKE, _grad=_GRAD, _mul=_MUL, _sum=_SUM):
    """op_call's work -> (info, recorded): call utils.<function>(*args) `repeat` times (params["module"]:
    another student module's function, e.g. "logvar_utils"); optionally backpropagate a cotangent.

    The helpers are bound as defaults when this module loads, before any submission code:
    replacing _worker._to_array or _describe afterwards changes nothing here. The grader reads
    shape, dtype and values from the arrays it decodes and gradients from the grad_ arrays;
    `info` (what _describe says) is for its logs only. What is recorded before student code runs
    again (a custom backward can reach this frame) is kept as immutable bytes in a tuple, whose
    name here no code outside this frame can rebind, until the reply is made."""
    import importlib
    function = getattr(importlib.import_module(params.get("module", "utils")), params["function"])
    device = params.get("device", "cpu")
    inputs = {name: _as_tensor(arrays[name]).to(device) for name in params["args"]}
    for name in params.get("grad_wrt", []):
        inputs[name].requires_grad_(True)
    recorded, info = (), {"outputs": []}
    if params.get("seed") is not None:
        _seed(params["seed"])
    for i in range(params.get("repeat", 1)):
        if params.get("seeds"):
            _seed(params["seeds"][i])
        result = _plain(function(*[inputs[name] for name in params["args"]]))
        if i == params.get("repeat", 1) - 1:      # after the last call, before anything else can run student code
            for name, tensor in inputs.items():
                recorded += ((f"after_{name}", _frozen(_to_array(tensor, "the input"))),)
        info["outputs"].append(_describe(result))
        recorded += ((f"out{i}", _frozen(_to_array(result, params["function"]))),)
        if i == 0 and params.get("grad_wrt") and isinstance(result, _tensor) and result.requires_grad:
            cotangent = _as_tensor(arrays["cotangent"]).to(device) if "cotangent" in arrays else _ones_like(result)
            grads = _grad(_sum(_mul(result, cotangent)), [inputs[n] for n in params["grad_wrt"]],
                                        allow_unused=True)
            for name, grad in zip(params["grad_wrt"], grads):
                if grad is not None:
                    recorded += ((f"grad_{name}", _frozen(_to_array(grad, "the gradient"))),)
    for name, tensor in inputs.items():          # and after the backward pass (a custom backward is student code)
        recorded += ((f"after_backward_{name}", _frozen(_to_array(tensor, "the input"))),)
    return info, recorded


def op_call(params, arrays, _call_recorded=_call_recorded, _quiesce=_quiesce, _dumps=json.dumps):
    """utils.<function>(*args), see _call_recorded: its frozen reply (see serve)."""
    info, recorded = _call_recorded(params, arrays)
    _quiesce()
    return _dumps(info), recorded




# ---------------------------------------------------------------- negative_elbo_bound's stand-ins
# The student's VAE runs with an encoder, a decoder, sample_gaussian and kl_normal whose forward
# and backward passes the grader computes (checks/remote.py): this process holds no reference
# code and no weight, only what each answer reveals.

def _remote_class():
    import torch

    class Remote(torch.autograd.Function):
        """Forward and backward of a named function, both answered by the grader."""

        @staticmethod
        def forward(ctx, name, arity, *tensors):
            arrays = {f"in{i}": _to_array(t, name) for i, t in enumerate(tensors) if i < arity}
            info, out = grader_call(name, {}, arrays)
            ctx.name, ctx.call = name, info["call"]
            ctx.inputs = [(t.shape, t.dtype) for t in tensors]
            outputs = [_AS_TENSOR(out[f"out{i}"]) for i in range(len(out))]
            ctx.output_shapes = [o.shape for o in outputs]
            return tuple(outputs) if len(outputs) > 1 else outputs[0]

        @staticmethod
        def backward(ctx, *grads):
            arrays = {f"g{i}": _to_array(g, ctx.name) if g is not None else np.zeros(tuple(shape), np.float32)
                      for i, (g, shape) in enumerate(zip(grads, ctx.output_shapes))}
            _, out = grader_call(f"{ctx.name}.backward", {"call": ctx.call}, arrays)
            answers = [None, None]
            for i, (shape, dtype) in enumerate(ctx.inputs):
                answer = out.get(f"g{i}")
                answers.append(_AS_TENSOR(answer).to(dtype) if answer is not None else torch.zeros(shape, dtype=dtype))
            return tuple(answers)

    return Remote


_REMOTE_ARITY = {"enc": 1, "dec": 1, "sample_gaussian": 2, "kl_normal": 4, "mmd": 3}
_REMOTE = []


def _remote(name, *tensors, arity=None):
    """name's forward (and backward) answered by the grader; the first `arity` tensors are sent."""
    if not _REMOTE:
        _REMOTE.append(_remote_class())
    tensors = [value if isinstance(value, _TENSOR) else _AS_TENSOR(value) for value in tensors]
    return _REMOTE[0].apply(name, _REMOTE_ARITY[name] if arity is None else arity, *tensors)


def _remote_sample_gaussian(m, v):
    """Draw z ~ N(m, diag(v)) with the reparameterization trick (answered by the grader)."""
    return _remote("sample_gaussian", m, v)


def _remote_kl_normal(qm, qv, pm, pv):
    """KL(q || p) between diagonal Gaussians, summed over the last dimension (answered by the grader)."""
    return _remote("kl_normal", qm, qv, pm, pv)


def _install_remote_utils(names):
    import utils
    stand_ins = {"sample_gaussian": _remote_sample_gaussian, "kl_normal": _remote_kl_normal}
    for name in names:
        setattr(utils, name, _called_as_students(stand_ins[name], getattr(utils, name, None)))


def _called_as_students(stand_in, own):
    """The stand-in, called as the student's own function is: vae.py calls it with the student's
    parameter names (sample_gaussian(mu=m, var=v)) and the parameters the student added after the
    handout's, with defaults (kl_normal(..., dim=-1)). The handout's parameters are the first ones;
    an added one passed a value other than its default is refused by name: the grader answers for the
    handout's function only."""
    import inspect
    try:
        signature = inspect.signature(own)
    except (TypeError, ValueError):       # not a Python function (a missing one: the stand-in's own error)
        return stand_in
    handout_signature = inspect.signature(stand_in)
    handout_count = len(handout_signature.parameters)
    parameters = list(signature.parameters.values())
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if len(parameters) < handout_count or any(p.kind not in positional for p in parameters[:handout_count]):
        return stand_in
    handout_names = [p.name for p in parameters[:handout_count]]
    added = parameters[handout_count:]

    def called(*args, **kwargs):
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as error:
            if _binds(handout_signature, args, kwargs):     # the handout's call (a student's function that
                return stand_in(*args, **kwargs)            # needs more is kl_normal's own checks' fault)
            raise TypeError(f"{own.__name__}() {error}") from None
        bound.apply_defaults()
        for parameter in added:
            if not _is_default(bound.arguments[parameter.name], parameter):
                raise TypeError(f"{own.__name__}: the grader answers for the handout's arguments "
                                f"({', '.join(handout_names)}) only, and {parameter.name} must keep its default "
                                f"here (got {type(bound.arguments[parameter.name]).__name__} "
                                f"{str(bound.arguments[parameter.name])[:40]})")
        return stand_in(*(bound.arguments[name] for name in handout_names))

    called.__name__, called.__doc__ = stand_in.__name__, stand_in.__doc__
    called.__wrapped__ = own      # its signature, when a later request of the same child installs the stand-in again
    return called


def _binds(signature, args, kwargs):
    try:
        signature.bind(*args, **kwargs)
    except TypeError:
        return False
    return True


def _is_default(value, parameter):
    """Whether `value` is the default of the student's added `parameter` (*args and **kwargs: empty)."""
    if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
        return not value
    if value is parameter.default:
        return True
    try:
        return type(value) is type(parameter.default) and bool(value == parameter.default)
    except Exception:  # noqa: BLE001 - a value that cannot be compared is not the default
        return False


_STAND_IN_CLASSES = {"enc": "Encoder", "dec": "Decoder"}


def _remote_module(name, inputs=None):
    """The encoder or decoder stand-in; `inputs`: its arguments' names when it takes several (the
    conditional model's self.enc(x, y), self.dec(z, y))."""
    import torch

    class RemoteModule(torch.nn.Module):
        """A network whose weights only the grader holds; `anchor` makes its outputs require grad."""

        def __init__(self):
            super().__init__()
            self.anchor = torch.nn.Parameter(torch.zeros(()))

        def forward(self, value):
            return _remote(name, value, self.anchor)

    class ConditionalModule(RemoteModule):
        def forward(self, *values, **named):
            values = [*values, *[named.pop(n) for n in inputs[len(values):] if n in named]]
            if named or len(values) != len(inputs):
                raise TypeError(f"self.{name}({', '.join(inputs)}) takes {len(inputs)} tensors, got "
                                f"{len(values) + len(named)}")
            return _remote(name, *values, self.anchor, arity=len(inputs))

    stand_in = RemoteModule if inputs is None else ConditionalModule
    # Named after the handout's networks: a student's AttributeError then reads as it does in training.
    stand_in.__name__ = stand_in.__qualname__ = _STAND_IN_CLASSES[name]
    module = stand_in()
    module.net = _network(module, name, inputs)
    return module


LABEL_COLUMNS = 10           # cvae_nns.CLASSES: the one-hot label's columns, last in the conditional networks' input


def _network(module, name, inputs):
    """The provided networks' self.net for a stand-in (a function, not a submodule): nns's and cvae_nns's forward
    is self.net of the input (the label concatenated last), the encoder's split by ut.gaussian_parameters, and
    a bound may call self.enc.net or self.dec.net itself. The encoder's answers h with gaussian_parameters(h)
    the answered (m, v): v = softplus(h_v) + 1e-8 inverted."""
    import torch

    def net(h):
        args = (h,) if inputs is None else (h[..., :-LABEL_COLUMNS], h[..., -LABEL_COLUMNS:])
        if name == "dec":
            return module(*args)
        m, v = module(*args)
        return torch.cat([m, torch.log(torch.expm1(v - 1e-8))], dim=-1)
    return net


class _LayersAnsweredRemotely(torch.nn.Sequential):
    """A stand-in's self.net: the provided network's layers (never run; a bound may read
    self.enc.net[0].weight.device or self.dec.net[-1].out_features), called as the stand-in's net function."""

    def __init__(self, function, layers):
        super().__init__(*layers)
        self.answered = function

    def forward(self, h):
        return self.answered(h)


def _stand_in_for(model, name, inputs=None):
    """The stand-in that replaces model.<name> (the encoder or decoder the student's model built)."""
    return _holding_layers(_remote_module(name, inputs), lambda: getattr(model, name))


def _holding_layers(stand_in, network):
    """`stand_in` holding the layers of the provided network `network()` builds or reads (never run): a bound
    may read self.enc.net[0].weight.device or self.dec.net[-1].out_features, the provided ConvVAE.sample_z
    reads self.enc.fc.weight.device. nns's and cvae_nns's self.net (an nn.Sequential) becomes the stand-in's
    net, answered as the stand-in's net function; another network's submodules (ConvEncoder's conv1, conv2,
    fc) are added under their names. A network that cannot be built or read (its own checks' or training's
    fault) leaves the stand-in without them."""
    try:
        network = network()
        layers = getattr(network, "net", None)
        if isinstance(layers, torch.nn.Sequential):
            if not isinstance(layers, _LayersAnsweredRemotely):
                stand_in.net = _LayersAnsweredRemotely(stand_in.net, layers)
        else:
            for name, layer in network.named_children():
                stand_in.add_module(name, layer)
    except Exception:
        pass
    return stand_in


def op_elbo(params, arrays):
    """negative_elbo_bound(x) of the student's VAE with the grader's encoder, decoder, sampler and
    KL; with `grads`, backward passes of rec, kl and nelbo in turn (the grader records each).
    With labels `y` (params["model"] "cvae"), the CVAE's negative_elbo_bound(x, y), whose encoder
    and decoder stand-ins take (x, y) and (z, y); params["model"] "beta": the BetaVAE's
    negative_elbo_bound(x, beta=params["beta"]) (without "beta": negative_elbo_bound(x)), whose first
    value is the loss rec + beta * kl."""
    if params.get("model") == "cvae":
        import cvae
        model = cvae.CVAE(z_dim=params["z_dim"])
        model.enc, model.dec = _stand_in_for(model, "enc", ("x", "y")), _stand_in_for(model, "dec", ("z", "y"))
        x = _AS_TENSOR(arrays["x"])
        result = model.negative_elbo_bound(x, _AS_TENSOR(arrays["y"]))
        return _elbo_reply(result, params)
    if params.get("model") == "beta":
        import beta_vae
        model = beta_vae.BetaVAE(z_dim=params["z_dim"])
        model.enc, model.dec = _stand_in_for(model, "enc"), _stand_in_for(model, "dec")
        x = _AS_TENSOR(arrays["x"])
        if params.get("beta") is None:                       # the default weight
            result = model.negative_elbo_bound(x)
        else:
            result = model.negative_elbo_bound(x, beta=float(params["beta"]))
        return _elbo_reply(result, params)
    import vae
    model = vae.VAE(z_dim=params["z_dim"])
    model.enc, model.dec = _stand_in_for(model, "enc"), _stand_in_for(model, "dec")
    x = _AS_TENSOR(arrays["x"])
    result = model.negative_elbo_bound(x)
    return _elbo_reply(result, params)


def _elbo_recorded(result, params, method="negative_elbo_bound", names=("nelbo", "kl", "rec"), _frozen=_frozen,
                   _to_array=_to_array, _backward=_BACKWARD, _sum=_SUM):
    """The three scalars a bound returned (negative_elbo_bound's (nelbo, kl, rec), or another method's
    `names`), recorded frozen (see _call_recorded: the backward passes are student code); with `grads`,
    backward passes of each in turn, the last name first."""
    if not isinstance(result, (tuple, list)) or len(result) != 3:
        shown = f"a {type(result).__name__} of length {len(result)}" if isinstance(result, (tuple, list)) \
            else f"a {type(result).__name__}"
        raise TypeError(f"{method} returned {shown}, expected a tuple ({', '.join(names)})")
    terms = tuple(zip(names, result))
    recorded = tuple((name, _frozen(_to_array(value, f"{method}'s {name}"))) for name, value in terms)
    if params.get("grads"):
        for name, term in reversed(terms):
            grader_call("phase", {"name": name})
            if term.requires_grad:
                _backward(_sum(term), retain_graph=True)
        grader_call("phase", {"name": "done"})
    return recorded


def _reply(recorded, info="{}", _quiesce=_quiesce):
    """The frozen reply (see serve) of an operation whose submission code has all returned: `info` as JSON
    text and what it recorded; the submission's code is stopped here already (a pending timer)."""
    _quiesce()
    return info, recorded


def _elbo_reply(result, params, method="negative_elbo_bound", names=("nelbo", "kl", "rec")):
    return _reply(_elbo_recorded(result, params, method, names))


# ---------------------------------------------------------------- the MMD-VAE (problem `mmd`)

def op_mmd(params, arrays, _frozen=_frozen, _to_array=_to_array, _reply=_reply, _grad=_GRAD, _sum=_SUM):
    """mmd_vae.mmd(x, y) (biased=params["biased"], or the default without it) on each pair sent (x0, y0,
    x1, y1, ...); with `grads`, the gradients of the first pair's value with respect to x and y."""
    import mmd_vae
    recorded = ()
    for i in range(params["pairs"]):
        x, y = _AS_TENSOR(arrays[f"x{i}"]), _AS_TENSOR(arrays[f"y{i}"])
        if params.get("grads") and i == 0:
            x.requires_grad_(True)
            y.requires_grad_(True)
        value = mmd_vae.mmd(x, y) if params.get("biased") is None else mmd_vae.mmd(x, y, biased=bool(params["biased"]))
        recorded += ((f"out{i}", _frozen(_to_array(value, "mmd"))),)
        if params.get("grads") and i == 0 and isinstance(value, _TENSOR) and value.requires_grad:
            grads = _grad(_sum(value), [x, y], allow_unused=True)
            for name, grad in zip(("x", "y"), grads):
                if grad is not None:
                    recorded += ((f"grad_{name}", _frozen(_to_array(grad, "the gradient"))),)
    return _reply(recorded)


def _remote_mmd(x, y, biased=True):
    """The squared MMD between the rows of x and y (answered by the grader)."""
    return _remote("mmd", x, y, _AS_TENSOR(1.0 if biased else 0.0, dtype=torch.float64), arity=3)


def op_mmd_loss(params, arrays):
    """MMDVAE.loss(x) of the student's MMD-VAE with the grader's encoder, decoder and mmd (mmd_vae.mmd
    replaced after import); with `grads`, backward passes of rec, mmd and loss in turn."""
    import mmd_vae
    mmd_vae.mmd = _called_as_students(_remote_mmd, mmd_vae.mmd)
    model = mmd_vae.MMDVAE(z_dim=params["z_dim"])
    model.enc, model.dec = _stand_in_for(model, "enc"), _stand_in_for(model, "dec")
    return _elbo_reply(model.loss(_AS_TENSOR(arrays["x"])), params, "loss", ("loss", "mmd", "rec"))


def _loss_as_bound_class():
    """The MMD-VAE as train.py's loop sees it: the loop calls negative_elbo_bound(x), this answers with
    model.loss(x) (mmd_vae.LossAsBound of the handout, made here before any submission code runs)."""
    class LossAsBound(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def negative_elbo_bound(self, x):
            return self.model.loss(x)

    return LossAsBound


_LOSS_AS_BOUND = [_loss_as_bound_class()]


# ---------------------------------------------------------------- the convolutional VAE (problem `conv`)

def _remote_log_normal_pdf(sample, mean, logvar):
    """log N(sample; mean, diag(exp(logvar))), summed over the last dimension (answered by the grader)."""
    tensors = [value if isinstance(value, _TENSOR) else _AS_TENSOR(value) for value in (sample, mean, logvar)]
    dtype = next((t.dtype for t in tensors if t.is_floating_point()), torch.get_default_dtype())
    tensors = [t if t.is_floating_point() else t.to(dtype) for t in tensors]       # log_normal_pdf(z, 0, 0)
    return _remote("log_normal_pdf", *tensors, arity=3)


def op_conv_elbo(params, arrays, _elbo_recorded=_elbo_recorded, _reply=_reply):
    """ConvVAE.negative_elbo_bound(x) of the student's convolutional VAE with the grader's encoder, decoder
    and log_normal_pdf (conv_vae.log_normal_pdf replaced after import: a wrong log_normal_pdf costs points
    in its own checks only). params["calls"] > 1: that many calls on x, each in its own phase "call<i>",
    their values nelbo<i>, kl<i>, rec<i>; else one call, with `grads` backward passes of rec, kl and nelbo."""
    import conv_vae
    conv_vae.log_normal_pdf = _called_as_students(_remote_log_normal_pdf, conv_vae.log_normal_pdf)
    encoder, decoder = conv_vae.ConvEncoder, conv_vae.ConvDecoder
    conv_vae.ConvEncoder = lambda z_dim: _remote_module("enc")
    conv_vae.ConvDecoder = lambda z_dim: _remote_module("dec")
    try:                     # the student's ConvDecoder.__init__ is its own checks' (a broken one costs nothing here)
        model = conv_vae.ConvVAE(z_dim=params["z_dim"])
    finally:
        conv_vae.ConvEncoder, conv_vae.ConvDecoder = encoder, decoder
    model.enc = _holding_layers(_remote_module("enc"), lambda: encoder(params["z_dim"]))
    model.dec = _remote_module("dec")
    x = _AS_TENSOR(arrays["x"])
    calls = int(params.get("calls", 1))
    if calls == 1:
        return _elbo_reply(model.negative_elbo_bound(x), params)
    recorded = ()
    for i in range(calls):
        grader_call("phase", {"name": f"call{i}"})
        recorded += tuple((f"{name}{i}", frozen) for name, frozen in _elbo_recorded(model.negative_elbo_bound(x), {}))
    return _reply(recorded)


# ---------------------------------------------------------------- training

# The provided modules, imported and their entry points bound by `bind_provided` before any
# submission code runs (in every sandbox where they are present, so that no sandbox differs).
_PROVIDED = {}
_ORIGINALS = {}        # label -> (lookup, object, code or None, code bytes or None)
_RUN = {"optimizers": [], "binarizers": []}
_IMAGES = {}           # the training images of the last request that sent them

# What the training loop runs, besides the student's bound: the plain loop of train.py and the
# fast one of fast.py (train.train picks one), verified after training to be the objects bound
# before student code ran, with the same code.
_TRAIN_FUNCTIONS = {
    "train": ("train", "binarize", "make_optimizer"),
    "train_cvae": ("train", "binarize", "make_optimizer", "one_hot", "mean_in_pieces"),
    "train_ae": ("train", "_steps", "scale", "split", "make_optimizer"),
    "fast": ("train", "wanted", "usable", "_missing", "_say", "_eager_step", "_training_optimizer", "_window_mean",
             "_threshold_table", "fast_matmul", "_onednn_mm", "_onednn_addmm", "_plain_matrix", "onednn_matmul_pays",
             "_probe_onednn", "_hide_kernel_frames", "_cuda_graphs_wanted", "_capture_cuda_graph", "_on_stream"),
}
_TRAIN_METHODS = {
    "train": {"Batches": ("__init__", "next")},
    "train_cvae": {"LabelledBatches": ("__init__", "next")},
    "train_ae": {"Batches": ("__init__", "next")},
    "fast": {"Binarizer": ("__init__", "next", "_uniform_int16"), "FusedAdam": ("__init__", "step", "zero_grad",
             "supports"), "ThreadTuner": ("__init__", "tick", "restore"), "GraphedStep": ("__init__", "__call__",
             "_captured_step")},
}
# Each loop's optimizer factory and batch class, which it looks up in its module at each call:
# routed through counters (`_route_through_counters`).
_COUNTED = {"train": ("make_optimizer", "Batches"), "fast": ("_training_optimizer", "Binarizer"),
            "train_cvae": ("make_optimizer", "LabelledBatches"), "train_ae": ("make_optimizer", "Batches")}
_TORCH_NAMES = {
    # (not torch.manual_seed: importing torch._dynamo, which torch.optim does, wraps it; the loop seeds a Generator)
    "torch": ("_fused_adam_", "randperm", "randint", "lt", "stack", "empty", "zeros", "zeros_like", "Generator",
              "set_num_threads", "get_num_threads", "no_grad", "enable_grad", "is_grad_enabled", "from_numpy"),
    "torch.Tensor": ("backward", "random_", "index_select", "view", "int", "to", "add_", "unbind", "detach",
                     "float", "mean", "tolist", "copy_", "clone", "requires_grad_", "__getitem__", "__add__",
                     "__mul__", "__lt__", "__and__"),
    "torch.autograd": ("backward", "grad"),
    "torch.optim": ("Adam",),
    "torch.optim.Adam": ("__init__", "step"),
    "torch.optim.adam": ("adam", "_single_tensor_adam", "_multi_tensor_adam", "_fused_adam"),
    "torch.library.Library": ("__init__", "impl", "_destroy"),
    "torch.optim.Optimizer": ("zero_grad", "__init__"),
    "torch.nn.Module": ("__call__", "_call_impl", "train", "eval", "parameters", "named_parameters", "state_dict",
                        "to", "zero_grad"),
    "torch.nn.Linear": ("forward",),
    "torch.nn.ELU": ("forward",),
    "torch.nn.Sequential": ("forward",),
    "torch.nn.functional": ("linear", "elu"),
    "torch.Generator": ("manual_seed",),
}


def _resolve(dotted):
    if dotted in sys.modules:                  # a submodule (torch.optim.adam is no attribute of torch.optim)
        return sys.modules[dotted]
    obj = sys.modules[dotted.split(".")[0]]
    for part in dotted.split(".")[1:]:
        obj = getattr(obj, part)
    return obj


def _attribute(owner, name):
    """What `owner.name` is now (a class's own entry first, so that an override in a subclass shows)."""
    if isinstance(owner, type) and name in owner.__dict__:
        return owner.__dict__[name]
    return getattr(owner, name)


def _remember(label, lookup):
    """Record what `lookup()` gives now, and its code, under `label`."""
    value = lookup()
    code = getattr(getattr(value, "__func__", value), "__code__", None)
    _ORIGINALS[label] = (lookup, value, code, code.co_code if code is not None else None)


def _remember_attribute(owner, name, label):
    _remember(label, lambda: _attribute(owner, name))


def bind_provided():
    """Import the provided modules present here and bind what the training loops use (call
    before any submission code runs); then route each loop's optimizer and batches through
    counters, so that code the student did not write reports the steps and images it saw."""
    import importlib
    for name in ("runtime", "data", "fast", "train", "train_cvae", "train_ae"):     # none imports a student file
        if os.path.exists(f"{name}.py"):
            _PROVIDED[name] = importlib.import_module(name)
    if "train" not in _PROVIDED and "train_ae" not in _PROVIDED:
        return
    for module_name, names in _TORCH_NAMES.items():
        owner = _resolve(module_name)
        for name in names:
            if hasattr(owner, name):
                _remember_attribute(owner, name, f"{module_name}.{name}")
    for module_name, functions in _TRAIN_FUNCTIONS.items():
        if module_name not in _PROVIDED:          # another problem's loop
            continue
        module = _PROVIDED[module_name]
        factory, batch_class = _COUNTED[module_name]
        for name in functions:
            if hasattr(module, name) and name != factory:
                _remember_attribute(module, name, f"{module_name}.{name}")
        for cls, methods in _TRAIN_METHODS[module_name].items():
            for name in methods:
                _remember_attribute(getattr(module, cls), name, f"{module_name}.{cls}.{name}")
        _route_through_counters(module, module_name, factory, batch_class, _TRAIN_METHODS[module_name][batch_class])
    if "train" not in _PROVIDED:
        return
    # the beta-VAE's adaptor (problem `beta`): its method is what the loop calls
    _remember_attribute(_KL_WEIGHTED[0], "negative_elbo_bound", "KLWeighted.negative_elbo_bound")
    # the MMD-VAE's adaptor (problem `mmd`)
    _remember_attribute(_LOSS_AS_BOUND[0], "negative_elbo_bound", "LossAsBound.negative_elbo_bound")


def _route_through_counters(module, module_name, factory, batch_class, methods):
    """Replace `module.factory` (the loop's optimizer) and `module.batch_class` (its batches),
    which the loop looks up in its module at each call, by ones that record what it creates and
    count the batches it draws."""
    make_optimizer, batches = getattr(module, factory), getattr(module, batch_class)
    _remember(f"{module_name}.{factory}", lambda: make_optimizer)       # its code, called by our wrapper
    batches_init, batches_next = batches.__init__, batches.next

    def recorded_optimizer(model, lr):
        optimizer = make_optimizer(model, lr)
        _RUN["optimizers"].append(optimizer)
        return optimizer

    class Counted(batches):
        def __init__(self, *args, **kwargs):
            batches_init(self, *args, **kwargs)
            self.draws = 0
            _RUN["binarizers"].append(self)

        def next(self):
            self.draws += 1
            return batches_next(self)

    setattr(module, factory, recorded_optimizer)
    setattr(module, batch_class, Counted)
    _remember_attribute(module, factory, f"{module_name}.{factory} (as the loop calls it)")
    _remember_attribute(module, batch_class, f"{module_name}.{batch_class} (as the loop calls it)")
    for name in methods:       # as an instance finds them: an override added to Counted shows too
        _remember(f"{module_name}.{batch_class}.{name} (as the loop calls it)",
                  lambda name=name: getattr(Counted, name))


def replaced_originals():
    """Labels of the bound objects that are no longer what they were, or whose code changed."""
    replaced = []
    for label, (lookup, value, code, code_bytes) in _ORIGINALS.items():
        try:
            now = _unhooked(lookup(), value)
            same = now is value and getattr(getattr(now, "__func__", now), "__code__", None) is code \
                and (code is None or code.co_code == code_bytes)
        except Exception:  # noqa: BLE001 - an attribute that raises is a replacement too
            same = False
        if not same:
            replaced.append(label)
    return replaced


def _unhooked(now, original):
    """torch.optim wraps an optimizer class's step in its profiling hook when the first one is made,
    and torch.compile, once used, wraps functions such as torch.optim.adam._fused_adam in dynamo's
    "disable" wrapper: either wrapper, around the original, counts as the original."""
    import torch
    if now is not original and getattr(now, "hooked", False) and getattr(now, "__wrapped__", None) is original \
            and getattr(now, "__code__", None) is _PROFILE_HOOK_CODE.setdefault(
                "code", torch.optim.Optimizer.profile_hook_step(lambda self: None).__code__):
        return original
    if now is not original and _dynamo_disabled(now, original):
        return original
    return now


def _dynamo_disabled(now, original):
    """True if `now` is torch._dynamo's disable wrapper (its code, a DisableContext) around `original`.
    Only where a submission already imported torch._dynamo (torch.compile): never imported here."""
    eval_frame = sys.modules.get("torch._dynamo.eval_frame")
    code = getattr(now, "__code__", None)
    if eval_frame is None or code is None or code.co_freevars != ("fn", "self"):
        return False
    import torch._dynamo
    cells = dict(zip(code.co_freevars, (c.cell_contents for c in now.__closure__ or ())))
    return code is torch._dynamo.disable(lambda: None).__code__ and cells.get("fn") is original \
        and type(cells.get("self")) is eval_frame.DisableContext


_PROFILE_HOOK_CODE = {}


def _kl_weighted_class():
    """The BetaVAE as train.py's loop sees it: the loop calls negative_elbo_bound(x) and this passes the
    KL weight on (beta_vae.KLWeighted of the handout, made here before any submission code runs)."""
    class KLWeighted(torch.nn.Module):
        def __init__(self, model, beta):
            super().__init__()
            self.model, self.beta = model, beta

        def negative_elbo_bound(self, x):
            return self.model.negative_elbo_bound(x, beta=self.beta)

    return KLWeighted


_KL_WEIGHTED = [_kl_weighted_class()]


def _optimizer_steps(optimizer):
    """The step counts the optimizer keeps per parameter (FusedAdam or torch.optim.Adam) -> list of ints."""
    if hasattr(optimizer, "step_counts"):
        return [int(v) for v in optimizer.step_counts.tolist()]
    return [int(state["step"]) for state in optimizer.state.values() if "step" in state]


def _training_audit(train_u8, images, digest, _run=_RUN, _replaced=replaced_originals, _steps=_optimizer_steps,
                    _sha256=hashlib.sha256, _contiguous=np.ascontiguousarray, sorted=sorted, len=len, list=list):
    """What the grader checks of a training run: functions replaced, the optimizers and their steps, the
    batches drawn, that the images were the ones sent and unchanged (their hash before and after).
    What it calls is bound when this module loads: rebinding a name here during training changes
    nothing it reports (the loops call it through a default bound the same way)."""
    binarizers = list(_run["binarizers"])
    return {
        "replaced": _replaced(),
        "optimizer_steps": sorted({s for o in _run["optimizers"] for s in _steps(o)}),
        "optimizers": len(_run["optimizers"]),
        "batches": [b.draws for b in binarizers],
        "same_images": len(binarizers) == 1 and binarizers[0].images.data_ptr() == train_u8.data_ptr(),
        "images_sha256": _sha256(_contiguous(images).data).hexdigest(),
        "images_sha256_before": digest,
    }


def _module_tensors(model, vars=vars, id=id, type=type, str=str, items=dict.items):
    """{dotted name: tensor} of the parameters and buffers of `model` and its submodules, read from the
    modules' own tables (as state_dict names them, without running any hook or override of theirs)."""
    found, todo, seen = {}, [("", model)], set()
    while todo:
        prefix, module = todo.pop()
        if id(module) in seen:
            continue
        seen.add(id(module))
        tables = vars(module)
        for table in ("_parameters", "_buffers"):
            for name, tensor in items(tables.get(table, {})):
                if tensor is not None and type(name) is str:
                    found.setdefault(prefix + name, tensor)
        for name, child in items(tables.get("_modules", {})):
            if child is not None and type(name) is str:
                todo.append((prefix + name + ".", child))
    return found


def op_train(params, arrays, _training_audit=_training_audit, _module_tensors=_module_tensors, _to_array=_to_array,
             _quiesce=_quiesce, _frozen=_frozen, _dumps=json.dumps):
    """Train the student's VAE with the provided loop on the images sent (or those of the last
    request); return the tensors the grader asked for and how the run went, as our code saw it.
    params["problem"] "cvae": the student's CVAE with train_cvae's loop, on the images and labels;
    "beta": the student's BetaVAE with train.py's loop at beta = 1 (negative_elbo_bound(x, beta=1.0));
    "conv": the student's ConvVAE with train.py's loop;
    "ae": the student's LinearAutoencoder at each k (op_train_ae)."""
    import hashlib
    import torch
    if params.get("problem") == "ae":
        return op_train_ae(params, arrays)
    runtime = _PROVIDED["runtime"]
    if "images" in arrays:
        _IMAGES["train"] = arrays["images"]
    if "labels" in arrays:
        _IMAGES["labels"] = arrays["labels"]
    images = _IMAGES["train"]
    digest = hashlib.sha256(np.ascontiguousarray(images).data).hexdigest()
    runtime.configure_threads()
    device = runtime.pick_device(params.get("device", "cpu"))
    torch.manual_seed(params["seed"])
    conditional = params.get("problem") == "cvae"
    if conditional:
        import cvae
        model = cvae.CVAE(z_dim=params["z_dim"]).to(device)
        labels_digest = hashlib.sha256(np.ascontiguousarray(_IMAGES["labels"]).data).hexdigest()
        train_labels = torch.from_numpy(_IMAGES["labels"].astype(np.int64)).to(device)
    elif params.get("problem") == "beta":
        import beta_vae
        model = beta_vae.BetaVAE(z_dim=params["z_dim"]).to(device)
    elif params.get("problem") == "mmd":
        import mmd_vae
        model = mmd_vae.MMDVAE(z_dim=params["z_dim"]).to(device)
    elif params.get("problem") == "conv":         # the student's ConvVAE, with train.py's loop as it is
        import conv_vae
        model = conv_vae.ConvVAE(z_dim=params["z_dim"]).to(device)
    else:
        import vae
        model = vae.VAE(z_dim=params["z_dim"]).to(device)
    train_u8 = torch.from_numpy(images).to(device)
    _RUN["optimizers"].clear()
    _RUN["binarizers"].clear()
    if conditional:
        _ORIGINALS["train_cvae.train"][1](model, train_u8, train_labels, params["iterations"], seed=params["seed"])
    elif params.get("problem") == "beta":         # at beta = 1, through the adaptor bound before student code
        _ORIGINALS["train.train"][1](_KL_WEIGHTED[0](model, 1.0), train_u8, params["iterations"], seed=params["seed"])
    elif params.get("problem") == "mmd":          # through the adaptor bound before student code
        _ORIGINALS["train.train"][1](_LOSS_AS_BOUND[0](model), train_u8, params["iterations"], seed=params["seed"])
    else:
        _ORIGINALS["train.train"][1](model, train_u8, params["iterations"], seed=params["seed"])
    # Nothing of the submission runs from here on (_quiesce); the weights are read without running any
    # (state_dict would run the model's hooks), then the audit is made.
    _quiesce()
    trained = _module_tensors(model)
    out = {f"w_{key}": _to_array(trained[key], "a trained weight") for key in params["parameters"] if key in trained}
    audit = _training_audit(train_u8, images, digest)
    if conditional:
        audit["labels_sha256_before"] = labels_digest
        audit["labels_sha256"] = hashlib.sha256(np.ascontiguousarray(
            _NUMPY(_CPU(_DETACH(train_labels))).astype(np.uint8)).data).hexdigest()
    return _dumps({"audit": audit}), tuple((name, _frozen(array)) for name, array in out.items())




# ---------------------------------------------------------------- the linear autoencoder (problem `ae`)

def _ae_probe(model, arrays, suffix="", _frozen=_frozen, _to_array=_to_array, _dumps=json.dumps):
    """encode and decode of the model at the grader's points, and its parameters (no grad) -> (info as JSON
    text, recorded frozen): named_parameters, and what runs later, may be the submission's code."""
    import torch
    with torch.no_grad():
        encoded = model.encode(_AS_TENSOR(arrays["enc_in"]))
        decoded = model.decode(_AS_TENSOR(arrays["dec_in"]))
    recorded = ((f"enc{suffix}", _frozen(_to_array(encoded, "encode"))),
                (f"dec{suffix}", _frozen(_to_array(decoded, "decode"))))
    parameters = tuple((name, p) for name, p in model.named_parameters())
    for index, (_, parameter) in enumerate(parameters[:16]):
        recorded += ((f"p{index}{suffix}", _frozen(_to_array(parameter, "a parameter"))),)
    info = {"parameters": [[str(name)[:200], bool(p.requires_grad)] for name, p in parameters[:16]],
            "parameter_count": len(parameters)}
    return _dumps(info), recorded


def op_ae_probe(params, arrays, _ae_probe=_ae_probe, _frozen=_frozen, _to_array=_to_array, _reply=_reply, _seed=_SEED,
                _grad=_GRAD, _mul=_MUL, _sum=_SUM):
    """A fresh LinearAutoencoder(k) (seeded) at the grader's points: encode, decode, its parameters;
    with "grad", the gradients of sum(forward(x) * cotangent) with respect to each parameter."""
    import ae
    _seed(params["seed"])
    model = ae.LinearAutoencoder(params["k"])
    info, recorded = _ae_probe(model, arrays)
    if "x" in arrays:
        parameters = [p for _, p in model.named_parameters()][:16]
        result = model(_AS_TENSOR(arrays["x"]))
        recorded += (("forward", _frozen(_to_array(result, "forward"))),)
        trained = [p for p in parameters if p.requires_grad]
        if isinstance(result, _TENSOR) and result.requires_grad and trained:
            grads = _grad(_sum(_mul(result, _AS_TENSOR(arrays["cotangent"]))), trained, allow_unused=True)
            index = {id(p): i for i, p in enumerate(parameters)}
            for parameter, grad in zip(trained, grads):
                if grad is not None:
                    recorded += ((f"grad{index[id(parameter)]}", _frozen(_to_array(grad, "a gradient"))),)
    return _reply(recorded, info)


def _frozen_audit(audit, tuple=tuple, list=list, isinstance=isinstance):
    """An audit (a dict of plain values and lists) as nested tuples, which no code can change."""
    return tuple((key, tuple(value) if isinstance(value, list) else value) for key, value in audit.items())


def _thawed_audit(frozen, list=list, isinstance=isinstance):
    return {key: list(value) if isinstance(value, tuple) else value for key, value in frozen}


def op_train_ae(params, arrays, _training_audit=_training_audit, _frozen_audit=_frozen_audit,
                _thawed_audit=_thawed_audit, _quiesce=_quiesce, _ae_probe=_ae_probe, _loads=json.loads, _dumps=json.dumps):
    """Train the student's LinearAutoencoder at each k with train_ae's loop on the images sent, then
    probe it at the grader's points; how each run went, as our code saw it. Each run's audit is kept
    frozen (the probes after it, and the later runs, are student code that can reach this frame) and
    thawed once nothing of the submission runs any more."""
    import hashlib
    import torch
    import ae
    runtime = _PROVIDED["runtime"]
    if "images" in arrays:
        _IMAGES["train"] = arrays["images"]
    images = _IMAGES["train"]
    digest = hashlib.sha256(np.ascontiguousarray(images).data).hexdigest()
    runtime.configure_threads()
    device = runtime.pick_device(params.get("device", "cpu"))
    train_u8 = torch.from_numpy(images).to(device)
    audits, infos, recorded = (), (), ()
    for k in params["ks"]:
        torch.manual_seed(params["seed"])
        model = ae.LinearAutoencoder(k).to(device)
        _RUN["optimizers"].clear()
        _RUN["binarizers"].clear()
        _ORIGINALS["train_ae.train"][1](model, train_u8, params["iterations"], loss=ae.reconstruction_loss,
                                        seed=params["seed"])
        audits += ((str(k), _frozen_audit(_training_audit(train_u8, images, digest))),)
        model = model.cpu()
        info, probed = _ae_probe(model, {"enc_in": arrays["enc_in"], "dec_in": arrays[f"dec_in{k}"]}, f"_{k}")
        infos += ((str(k), info),)
        recorded += probed
    _quiesce()
    infos = {k: _loads(info) for k, info in infos}
    return _dumps({"runs": {k: {**infos[k], "audit": _thawed_audit(frozen)} for k, frozen in audits}}), recorded


# ---------------------------------------------------------------- the convolutional VAE's decoder (problem `conv`)
# Bound when this module loads, before any submission code: a class that overrides named_parameters
# or __call__ cannot change what is listed, loaded or run here.
_NAMED_PARAMETERS, _MODULE_CALL = torch.nn.Module.named_parameters, torch.nn.Module.__call__
_CONV_LISTED = 64               # parameters reported (names and shapes) at most


def op_conv_decoder(params, arrays, _frozen=_frozen, _to_array=_to_array, _reply=_reply, _dumps=json.dumps, _seed=_SEED,
                    _grad=_GRAD, _mul=_MUL, _sum=_SUM):
    """A fresh conv_vae.ConvDecoder(z_dim) (seeded): its named parameters (name, shape, requires_grad);
    with params["load"] (names), the arrays w0, w1, ... copied into the parameters of those names where
    a parameter of that name and shape exists (the others reported); with arrays z0, z1, ..., the
    decoder's output for each (out0, ...); with "grads", for z0, the gradients of
    sum(output * cotangent) with respect to z0 (grad_z) and to each listed parameter (grad0, ...)."""
    import torch
    import conv_vae
    _seed(params["seed"])
    model = conv_vae.ConvDecoder(params["z_dim"])
    listed = tuple(_NAMED_PARAMETERS(model))
    info = {"parameters": [[str(name)[:200], [int(n) for n in p.shape][:8], bool(p.requires_grad)]
                           for name, p in listed[:_CONV_LISTED]],
            "parameter_count": len(listed), "loaded": [], "not_loaded": []}
    by_name = {str(name): p for name, p in listed}
    with torch.no_grad():
        for j, name in enumerate(params.get("load", [])):
            parameter, value = by_name.get(name), arrays[f"w{j}"]
            if parameter is not None and tuple(parameter.shape) == value.shape:
                parameter.copy_(_AS_TENSOR(value))
                info["loaded"].append(name)
            else:
                info["not_loaded"].append(name)
    info, recorded = _dumps(info), ()      # the decoder's forward and backward passes are student code
    for i in range(params.get("batches", 0)):
        z = _AS_TENSOR(arrays[f"z{i}"])
        grads = i == 0 and params.get("grads")
        if grads:
            z.requires_grad_(True)
        result = _MODULE_CALL(model, z)
        recorded += ((f"out{i}", _frozen(_to_array(result, "ConvDecoder.forward"))),)
        if grads and isinstance(result, _TENSOR) and result.requires_grad:
            cotangent = _AS_TENSOR(arrays["cotangent"])
            if cotangent.numel() == result.numel():
                cotangent = cotangent.reshape(result.shape)
            trained = [(k, p) for k, (_, p) in enumerate(listed[:_CONV_LISTED]) if p.requires_grad]
            found = _grad(_sum(_mul(result, cotangent)), [z] + [p for _, p in trained], allow_unused=True)
            if found[0] is not None:
                recorded += (("grad_z", _frozen(_to_array(found[0], "the gradient"))),)
            for (index, _), grad in zip(trained, found[1:]):
                if grad is not None:
                    recorded += ((f"grad{index}", _frozen(_to_array(grad, "a gradient"))),)
    return _reply(recorded, info)


OPS = {"import": op_import, "call": op_call, "elbo": op_elbo, "train": op_train, "mmd": op_mmd, "mmd_loss": op_mmd_loss,
       "ae_probe": op_ae_probe, "conv_decoder": op_conv_decoder}
OPS["conv_elbo"] = op_conv_elbo


def _where(error):
    """file:line of the innermost frame in a student file, if any."""
    if isinstance(error, SyntaxError) and error.filename:
        return f"{os.path.basename(error.filename)}:{error.lineno}"
    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        if os.path.basename(frame.filename) in STUDENT_FILES:
            return f"{os.path.basename(frame.filename)}:{frame.lineno}"
    return None


_CHANNELS = {}


def grader_call(name, params=None, arrays=None):
    """Ask the grader (trusted side) for something while a request is in flight.
    -> (info dict, {name: ndarray}); raises RuntimeError(message) when the grader refuses."""
    import wire
    if not _CHANNELS:
        raise RuntimeError("grader_call works only while the worker serves a request")
    wire.write_message(_CHANNELS["replies"], {"callback": name, "params": params or {}}, arrays)
    header, out = wire.read_message(_CHANNELS["requests"])
    if header.get("status") != "ok":
        raise RuntimeError(str(header.get("message", "the grader refused the callback")))
    return header.get("info", {}), out


# ---------------------------------------------------------------- this worker's own code, as it was
# Submission code runs in this process and could rebind what this worker runs (OPS, _training_audit,
# wire.write_message, a builtin) to report what it likes. serve() dispatches through copies bound
# before any submission code and, after every request, compares this module, wire and builtins with
# how they were: a change voids that request and every later one.

# Globals that Python itself adds or changes while a request runs: the warnings module keeps, in the
# module of the frame a warning is attributed to, which warnings it has shown. And those torch.compile
# adds to the module of every frame it compiles: a submission's compiled function compiles the frames
# it runs, this worker's audit hook among them (e.g. __builtins_dict___2). No code here reads any of them.
_MUTABLE_GLOBALS = frozenset({"__warningregistry__"})
_COMPILER_GLOBALS = ("__builtins_dict__", "__compiled_fn", "__resume_at_", "__import_")


def _filled(cell, ValueError=ValueError):
    try:
        cell.cell_contents
        return True
    except ValueError:
        return False


def _fingerprint(modules, tables, getattr=getattr, callable=callable, list=list, vars=vars, tuple=tuple,
                 isinstance=isinstance, enumerate=enumerate, dict=dict, filled=_filled, skip=_MUTABLE_GLOBALS,
                 compiler=_COMPILER_GLOBALS, type=type, str=str, startswith=str.startswith):
    """-> {label: identities} of every global of `modules` (with the code, defaults and closure
    cells of their functions) and of every entry of `tables` ({label: dict or list}). Builtins are
    bound as defaults: a submission that rebinds one cannot blind this."""
    prints = {}
    for label, module in modules.items():
        for name, value in list(vars(module).items()):
            if name in skip or (type(name) is str and startswith(name, compiler)):
                continue
            code = getattr(value, "__code__", None) if callable(value) else None
            cells = tuple(c.cell_contents for c in (getattr(value, "__closure__", None) or ()) if filled(c))
            prints[f"{label}.{name}"] = (value, code, getattr(value, "__defaults__", None),
                                         getattr(value, "__kwdefaults__", None), *cells)
    for label, table in tables.items():
        items = table.items() if isinstance(table, dict) else enumerate(table)
        for key, value in list(items):
            prints[f"{label}[{key!r}]"] = (value,)
    return prints


def _changed(before, after, sorted=sorted, len=len, any=any, zip=zip):
    """Labels whose identities differ (rebound, added or removed), sorted."""
    return sorted(label for label in before.keys() | after.keys()
                  if label not in before or label not in after or len(before[label]) != len(after[label])
                  or any(a is not b for a, b in zip(before[label], after[label])))


def _thawed_reply(frozen, _loads=json.loads, _thawed=_thawed):
    """(info, arrays) of an operation's frozen reply: its info as JSON text and what it recorded."""
    info, recorded = frozen
    return _loads(info), {name: _thawed(array) for name, array in recorded}


def serve(requests, replies):
    import builtins
    import gc
    import wire
    # Code of the submission that runs after a request returned could walk up to this frame and rewrite
    # `out`: _quiesce from the moment a request returns until it is answered (collections on again after).
    # An operation replies frozen (JSON text and bytes), thawed here only then: a finalizer that runs as
    # the operation's frame lets go of the submission's objects can arm a timer before this _quiesce.
    gc_enable, quiesce, thawed_reply = gc.enable, _quiesce, _thawed_reply
    _CHANNELS.update(requests=requests, replies=replies)
    read_message, write_message, ops = wire.read_message, wire.write_message, dict(OPS)
    fingerprint, changed, where, length = _fingerprint, _changed, _where, len
    # The provided modules are left to the training audit (replaced_originals), which names what changed.
    modules = {"_worker": sys.modules[__name__], "wire": wire, "builtins": builtins}
    tables = {"_worker.OPS": OPS, "_worker._ORIGINALS": _ORIGINALS, "_worker._PROVIDED": _PROVIDED,
              "_worker._KL_WEIGHTED": _KL_WEIGHTED, "_worker._LOSS_AS_BOUND": _LOSS_AS_BOUND}
    pristine, void = fingerprint(modules, tables), None
    while True:
        try:
            header, arrays = read_message(requests)
        except EOFError:
            return
        reply, out = None, None
        if void is None:
            try:
                gc_enable()
                frozen = ops[header["op"]](header.get("params", {}), arrays)
                quiesce()             # first, before anything here allocates
                info, out = thawed_reply(frozen)
                reply = {"status": "ok", "info": info}
            except BaseException as error:  # noqa: B036 - SystemExit and KeyboardInterrupt are student faults too
                message = str(error) if not isinstance(error, SystemExit) else f"sys.exit({error.code!r}) was called"
                reply, out = {"status": "exception", "kind": type(error).__name__, "message": message[:2000],
                              "where": where(error)}, None
            tampered = changed(pristine, fingerprint(modules, tables))
            if tampered:
                shown = ", ".join(tampered[:3]) + (f" and {length(tampered) - 3} more" if length(tampered) > 3 else "")
                void = (f"the submission changed the grader's own code in its process ({shown}): a submission "
                        "may not modify the autograder, so nothing more this process reports counts")
        if void is not None:
            reply, out = {"status": "exception", "kind": "GraderCodeModified", "message": void, "where": None}, None
        write_message(replies, reply, out)


# ---------------------------------------------------------------- hooks into this worker's frames
# The guard above compares after each request; a trace or profile function (sys.settrace, sys.setprofile,
# threading's, sys.monitoring's) sees every frame of this worker while a request runs, the ones that record
# its results included, and could rewrite what they return and take itself away before the request ends;
# an audit hook could do the same at every audited event, and a function of this worker whose code or
# defaults are swapped and swapped back would report what it likes in between; gc's lists of objects reach
# what a request is about to send from code that runs later (a finalizer). An audit hook of our own,
# added before any submission code and never removable, refuses all of these as they are attempted.
_REFUSED_HOOKS = frozenset({"sys.settrace", "sys.setprofile", "sys.addaudithook", "sys.monitoring.register_callback",
                            "gc.get_objects", "gc.get_referrers", "gc.get_referents"})
_GUARDED_ATTRIBUTES = frozenset({"__code__", "__defaults__", "__kwdefaults__"})


def _refusing_hooks(guarded_globals):
    """-> an audit hook that refuses the hooks above and changes to the code of functions whose globals
    are one of `guarded_globals` (this module's, wire's). Everything it reads is bound as a default:
    changing a default is itself an audited event that it refuses."""
    def refuse(event, args, refused=_REFUSED_HOOKS, attributes=_GUARDED_ATTRIBUTES, guarded=tuple(guarded_globals),
               RuntimeError=RuntimeError, getattr=getattr, len=len, any=any):
        if event in refused:
            raise RuntimeError(f"{event} is refused in the grader's sandbox: it would reach into the grader's own "
                               "code and data")
        if event == "object.__setattr__" and len(args) > 1 and args[1] in attributes:
            owner = getattr(args[0], "__globals__", None)
            if any(owner is g for g in guarded):
                raise RuntimeError(f"changing {args[1]} of the grader's own functions is refused in its sandbox")
    return refuse


def _no_library_threads():
    """tqdm's progress bars share a monitor thread that outlives them (torch.compile draws one): off, so that
    a submission that shows a bar, or compiles, does not leave a thread running after its call (_quiesce)."""
    try:
        import tqdm
    except ImportError:
        return
    tqdm.tqdm.monitor_interval = 0


def main():
    request_fd, reply_fd = int(sys.argv[1]), int(sys.argv[2])
    sys.path.insert(0, os.getcwd())
    import wire
    sys.modules.setdefault("_worker", sys.modules[__name__])   # `import _worker` finds this very module
    bind_provided()
    _no_library_threads()
    sys.addaudithook(_refusing_hooks((globals(), vars(wire))))
    serve(os.fdopen(request_fd, "rb"), os.fdopen(reply_fd, "wb"))


if __name__ == "__main__":
    main()
