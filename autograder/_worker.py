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
    """Import `modules` in order; delete the files listed in `hide` once their module is
    loaded (the reference utils.py must not be readable by the submission imported next)."""
    import importlib
    for name in params["modules"]:
        importlib.import_module(name)
        if f"{name}.py" in params.get("hide", []):
            os.remove(f"{name}.py")
    return {}, {}


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


def _load_model(params, arrays):
    import torch
    import vae
    torch.manual_seed(params.get("seed", 0))
    model = vae.VAE(z_dim=params["z_dim"])
    state = {key[2:]: torch.as_tensor(value) for key, value in arrays.items() if key.startswith("w_")}
    if state:
        model.load_state_dict(state)
    return model


def op_elbo(params, arrays):
    """negative_elbo_bound(x) of the student's VAE with the given weights (reference utils)."""
    import torch
    import utils
    model = _load_model(params, arrays)
    recorded = []
    original_sampler = utils.sample_gaussian

    def recording_sampler(m, v):
        z = original_sampler(m, v)
        recorded.append(z.detach().clone())
        return z

    utils.sample_gaussian = recording_sampler
    x = torch.as_tensor(arrays["x"])
    torch.manual_seed(params.get("seed", 0))
    result = model.negative_elbo_bound(x)
    info = {"result": [_describe(v) for v in result] if isinstance(result, (tuple, list)) else _describe(result)}
    if not isinstance(result, (tuple, list)) or len(result) != 3:
        raise TypeError(f"negative_elbo_bound returned {info['result']}, expected a tuple (nelbo, kl, rec)")
    out = {name: _to_array(v, "negative_elbo_bound").astype("float64") for name, v in zip(("nelbo", "kl", "rec"), result)}
    if len(recorded) == 1:
        out["z"] = recorded[0].numpy()
    info["sampler_calls"] = len(recorded)
    if params.get("grads") and isinstance(result[0], torch.Tensor) and result[0].requires_grad:
        result[0].backward()
        for name, parameter in model.named_parameters():
            if parameter.grad is not None:
                out[f"grad_{name}"] = parameter.grad.numpy()
    return info, out


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


def serve(requests, replies):
    import wire
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
    serve(os.fdopen(request_fd, "rb"), os.fdopen(reply_fd, "wb"))


if __name__ == "__main__":
    main()
