"""The trusted side's own copy of the reference model, loaded from solution/ under private
module names so that nothing a submission ships can shadow it. The modules every problem shares
always; a problem's own (`vae`, `cvae`, `beta_vae`, ...) where its files are here (a Gradescope zip holds the
chosen problems' files only): None otherwise."""
import importlib.util
import sys

from . import paths

# Loaded in this order (fast before train, which imports it), each where its file is here: a
# Gradescope zip holds the files of its problems only (the CVAE alone has no vae.py or nns.py).
_MODULES = ("utils", "nns", "vae", "fast", "train", "data", "runtime", "cvae_nns", "cvae", "train_cvae", "beta_vae",
            "mmd_vae", "ae", "train_ae", "conv_vae")
_SHARED = ("utils", "fast", "train", "data", "runtime")          # every problem's: always here
# except in a zip of the linear autoencoder alone (problem `ae`), which holds no VAE code: only data and runtime
_AE_ALONE = not (paths.SOLUTION / "train.py").is_file() and (paths.SOLUTION / "train_ae.py").is_file()


def _load_reference():
    """Import solution/*.py once as `reference_<name>`, wiring their `import utils` etc."""
    loaded = {}
    names = [name for name in _MODULES if (name in _SHARED and not _AE_ALONE) or (paths.SOLUTION / f"{name}.py").is_file()]
    saved = {name: sys.modules.get(name) for name in names}
    try:
        for name in names:
            spec = importlib.util.spec_from_file_location(f"reference_{name}", paths.SOLUTION / f"{name}.py")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module  # so `import utils as ut` inside vae.py finds ours
            spec.loader.exec_module(module)
            sys.modules[f"reference_{name}"] = module
            loaded[name] = module
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    return loaded


_REFERENCE = _load_reference()
utils = _REFERENCE.get("utils")
nns = _REFERENCE.get("nns")
vae = _REFERENCE.get("vae")
fast = _REFERENCE.get("fast")
train = _REFERENCE.get("train")
data = _REFERENCE["data"]
runtime = _REFERENCE["runtime"]
cvae_nns = _REFERENCE.get("cvae_nns")
cvae = _REFERENCE.get("cvae")
train_cvae = _REFERENCE.get("train_cvae")
beta_vae = _REFERENCE.get("beta_vae")
mmd_vae = _REFERENCE.get("mmd_vae")
conv_vae = _REFERENCE.get("conv_vae")
ae = _REFERENCE.get("ae")
train_ae = _REFERENCE.get("train_ae")
