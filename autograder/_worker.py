"""UNTRUSTED SIDE. The only code that imports a submission; runs inside the sandbox child.

Started as `python -I _worker.py REQUEST_FD REPLY_FD` in a fresh directory holding the
whitelisted submission files, the provided modules, this file and wire.py. It answers
requests (see OPS) until the grader closes the channel. Everything it sends back is
plain data; the grader validates every value, so nothing here is trusted.
"""
import os
import sys
import traceback

import numpy as np
import torch

STUDENT_FILES = ("utils.py", "vae.py")
# Bound before any submission code runs: patching torch.Tensor.detach, torch.equal and the
# like at import time then cannot change what this worker reports.
_TENSOR = torch.Tensor
_DETACH, _CPU, _NUMPY, _CLONE = torch.Tensor.detach, torch.Tensor.cpu, torch.Tensor.numpy, torch.Tensor.clone
_AS_TENSOR = torch.as_tensor


def _to_array(value, what):
    if isinstance(value, _TENSOR):
        return np.array(_NUMPY(_CPU(_DETACH(value)))) if value.device.type != "meta" else np.zeros(0)
    article = "an" if type(value).__name__[:1].lower() in "aeiou" else "a"
    raise TypeError(f"{what} returned {article} {type(value).__name__}, expected a torch.Tensor")


def _describe(value):
    import torch
    if not isinstance(value, torch.Tensor):
        return {"type": type(value).__name__}
    return {"type": "Tensor", "shape": list(value.shape), "dtype": str(value.dtype).replace("torch.", ""),
            "device": value.device.type, "requires_grad": bool(value.requires_grad),
            "has_grad_fn": value.grad_fn is not None}


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
    return {}, {}


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


def op_call(params, arrays, _to_array=_to_array, _describe=_describe, _tensor=_TENSOR, _as_tensor=_AS_TENSOR):
    """Call utils.<function>(*args) `repeat` times; optionally backpropagate a cotangent.

    The helpers are bound as defaults when this module loads, before any submission code:
    replacing _worker._to_array or _describe afterwards changes nothing here. The grader reads
    shape, dtype and values from the arrays it decodes and gradients from the grad_ arrays;
    `info` (what _describe says) is for its logs only."""
    import torch
    import utils
    function = getattr(utils, params["function"])
    device = params.get("device", "cpu")
    inputs = {name: _as_tensor(arrays[name]).to(device) for name in params["args"]}
    for name in params.get("grad_wrt", []):
        inputs[name].requires_grad_(True)
    out_arrays, info = {}, {"outputs": []}
    if params.get("seed") is not None:
        torch.manual_seed(params["seed"])
    for i in range(params.get("repeat", 1)):
        if params.get("seeds"):
            torch.manual_seed(params["seeds"][i])
        result = function(*[inputs[name] for name in params["args"]])
        info["outputs"].append(_describe(result))
        out_arrays[f"out{i}"] = _to_array(result, params["function"])
        if i == 0 and params.get("grad_wrt") and isinstance(result, _tensor) and result.requires_grad:
            cotangent = _as_tensor(arrays["cotangent"]).to(device) if "cotangent" in arrays else torch.ones_like(result)
            grads = torch.autograd.grad((result * cotangent).sum(), [inputs[n] for n in params["grad_wrt"]],
                                        allow_unused=True)
            for name, grad in zip(params["grad_wrt"], grads):
                if grad is not None:
                    out_arrays[f"grad_{name}"] = _to_array(grad, "the gradient")
    for name, tensor in inputs.items():          # as seen after the calls: the grader compares
        out_arrays[f"after_{name}"] = _to_array(tensor, "the input")
    return info, out_arrays


# ---------------------------------------------------------------- negative_elbo_bound's stand-ins
# The student's VAE runs with an encoder, a decoder, sample_gaussian and kl_normal whose forward
# and backward passes the grader computes (checks/remote.py): this process holds no reference
# code and no weight, only what each answer reveals.

def _remote_class():
    import torch

    class Remote(torch.autograd.Function):
        """Forward and backward of a named function, both answered by the grader."""

        @staticmethod
        def forward(ctx, name, *tensors):
            arrays = {f"in{i}": _to_array(t, name) for i, t in enumerate(tensors) if i < _REMOTE_ARITY[name]}
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
            answers = [None]
            for i, (shape, dtype) in enumerate(ctx.inputs):
                answer = out.get(f"g{i}")
                answers.append(_AS_TENSOR(answer).to(dtype) if answer is not None else torch.zeros(shape, dtype=dtype))
            return tuple(answers)

    return Remote


_REMOTE_ARITY = {"enc": 1, "dec": 1, "sample_gaussian": 2, "kl_normal": 4}
_REMOTE = []


def _remote(name, *tensors):
    if not _REMOTE:
        _REMOTE.append(_remote_class())
    tensors = [value if isinstance(value, _TENSOR) else _AS_TENSOR(value) for value in tensors]
    return _REMOTE[0].apply(name, *tensors)


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
        setattr(utils, name, stand_ins[name])


def _remote_module(name):
    import torch

    class RemoteModule(torch.nn.Module):
        """A network whose weights only the grader holds; `anchor` makes its outputs require grad."""

        def __init__(self):
            super().__init__()
            self.anchor = torch.nn.Parameter(torch.zeros(()))

        def forward(self, value):
            return _remote(name, value, self.anchor)

    return RemoteModule()


def op_elbo(params, arrays):
    """negative_elbo_bound(x) of the student's VAE with the grader's encoder, decoder, sampler and
    KL; with `grads`, backward passes of rec, kl and nelbo in turn (the grader records each)."""
    import torch
    import vae
    model = vae.VAE(z_dim=params["z_dim"])
    model.enc, model.dec = _remote_module("enc"), _remote_module("dec")
    x = _AS_TENSOR(arrays["x"])
    result = model.negative_elbo_bound(x)
    if not isinstance(result, (tuple, list)) or len(result) != 3:
        shown = f"a {type(result).__name__} of length {len(result)}" if isinstance(result, (tuple, list)) \
            else f"a {type(result).__name__}"
        raise TypeError(f"negative_elbo_bound returned {shown}, expected a tuple (nelbo, kl, rec)")
    names = ("nelbo", "kl", "rec")
    out = {name: _to_array(value, f"negative_elbo_bound's {name}") for name, value in zip(names, result)}
    if params.get("grads"):
        terms = dict(zip(names, result))
        for name in ("rec", "kl", "nelbo"):
            grader_call("phase", {"name": name})
            if terms[name].requires_grad:
                torch.autograd.backward(terms[name].sum(), retain_graph=True)
        grader_call("phase", {"name": "done"})
    return {}, out


def op_train(params, arrays):
    """Train the student's VAE with the provided loop; return weights and its own evaluation."""
    import torch
    import data
    import runtime
    import train
    runtime.configure_threads()
    device = runtime.pick_device(params.get("device", "cpu"))
    torch.manual_seed(params["seed"])
    import vae
    model = vae.VAE(z_dim=params["z_dim"]).to(device)
    images, _ = data.load_mnist("train", params.get("data_dir"))
    train_u8 = torch.from_numpy(images).to(device)
    del images
    train.train(model, train_u8, params["iterations"], seed=params["seed"])
    test_x = torch.from_numpy(data.load_test_subset(params.get("data_dir"))[0]).to(device)
    own = train.evaluate(model, test_x)
    out = {f"w_{key}": value.detach().cpu().numpy() for key, value in model.state_dict().items()}
    return {"own_evaluation": [float(v) for v in own]}, out


OPS = {"import": op_import, "call": op_call, "elbo": op_elbo, "train": op_train}


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


def serve(requests, replies):
    import wire
    _CHANNELS.update(requests=requests, replies=replies)
    while True:
        try:
            header, arrays = wire.read_message(requests)
        except EOFError:
            return
        try:
            info, out = OPS[header["op"]](header.get("params", {}), arrays)
            wire.write_message(replies, {"status": "ok", "info": info}, out)
        except BaseException as error:  # noqa: B036 - SystemExit and KeyboardInterrupt are student faults too
            message = str(error) if not isinstance(error, SystemExit) else f"sys.exit({error.code!r}) was called"
            wire.write_message(replies, {"status": "exception", "kind": type(error).__name__,
                                         "message": message[:2000], "where": _where(error)})


def main():
    request_fd, reply_fd = int(sys.argv[1]), int(sys.argv[2])
    sys.path.insert(0, os.getcwd())
    sys.modules.setdefault("_worker", sys.modules[__name__])   # `import _worker` finds this very module
    serve(os.fdopen(request_fd, "rb"), os.fdopen(reply_fd, "wb"))


if __name__ == "__main__":
    main()
