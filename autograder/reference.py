"""The trusted side's own copy of the reference model, loaded from solution/ under private
module names so that nothing a submission ships can shadow it. The CS236 VAE's modules always;
another problem's (the conditional VAE's) where its files are here (a Gradescope zip holds the
chosen problems' files only): `cvae` etc. are None otherwise."""
import importlib.util
import sys

from . import paths

_MODULES = ("utils", "nns", "vae", "fast", "train", "data", "runtime")     # fast before train, which imports it
_OPTIONAL = ("cvae_nns", "cvae", "train_cvae")                              # the conditional VAE's, after train


def _load_reference():
    """Import solution/*.py once as `reference_<name>`, wiring their `import utils` etc."""
    loaded = {}
    names = (*_MODULES, *[name for name in _OPTIONAL if (paths.SOLUTION / f"{name}.py").is_file()])
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
utils = _REFERENCE["utils"]
nns = _REFERENCE["nns"]
vae = _REFERENCE["vae"]
fast = _REFERENCE["fast"]
train = _REFERENCE["train"]
data = _REFERENCE["data"]
runtime = _REFERENCE["runtime"]
cvae_nns = _REFERENCE.get("cvae_nns")
cvae = _REFERENCE.get("cvae")
train_cvae = _REFERENCE.get("train_cvae")
