"""Compile the fast engine's kernels into numba's disk cache, in processes of their own.

fast.py runs this script when numba's cache lacks `run` for the engine's dtypes (the
weights' and the images'), then loads `run` from the cache. On two cores the compile runs in
two halves at once:

    python _compiler.py forward DONE float32 float32   # `forward`, then DONE
    python _compiler.py run DONE float32 float32       # `backward`; waits for DONE; then `run`

(`all`: everything, one after the other, on one core). Why in other processes: numba links a
function's callees into it, and a process that compiled the callees on their own runs their
own copies, which differ in rounding from the copies inside a cached `run`; compiled
elsewhere, the first-ever run computes bit for bit what every later run loads.

The script loads _kernels.py as lecun1989.engines._kernels without running the package's
__init__ (torch: seconds of start-up); numba's cache keys on the module's name and file. It
compiles `run` for `run_types`, the argument types fast.py calls it with (a test holds them
equal), and exits with 1, compiling nothing, for dtypes other than float32 and float64.
"""

from __future__ import annotations

import os
import sys
import time
import types
from pathlib import Path

WAIT_S = 300  # the most `run` waits for `forward`, after which it compiles `forward` itself
DTYPES = ("float32", "float64")  # the weights' and the images' (fast.py casts others)


def main(part: str, done: str, dtype: str, image_dtype: str) -> int:
    if dtype not in DTYPES or image_dtype not in DTYPES:
        print(f"_compiler.py: dtypes {dtype}, {image_dtype}: only {DTYPES}", file=sys.stderr)
        return 1
    here = Path(__file__).resolve().parent
    for name, path in (("lecun1989", here.parent), ("lecun1989.engines", here)):
        if name not in sys.modules:  # bare packages: no __init__, no torch
            package = types.ModuleType(name)
            package.__path__ = [str(path)]
            sys.modules[name] = package
    from numba.core import config
    from numba.core import types as nt

    from lecun1989.engines import _kernels as k

    sig = run_types(k, dtype, image_dtype)
    config.SLP_VECTORIZE = 1  # as _compile.vectorizers
    buf, table, images, labels, o = (sig[i] for i in (0, 1, 2, 3, 10))
    try:
        if part in ("forward", "all"):  # output_backward first: `backward` soon needs it
            k.output_backward.compile((buf, labels.dtype, o))
            k.forward.compile((buf, nt.Array(images.dtype, 2, "C"), table, o))
    finally:
        if part == "forward":
            Path(done).touch()
    if part in ("run", "all"):  # `backward`'s callees that take no literal argument first
        for kernel in (k.h1_input_grad, k.h2_backward):
            kernel.compile((buf, table, o))
        k.h1_backward.compile((buf, o))
        k.backward.compile((buf, labels.dtype, table, o))
        k.set_padding.compile((buf, buf.dtype))  # `run`'s other plain callees
        k.square_inputs.compile((buf,))
        k.adamw_step.compile((buf, nt.float64, nt.float64))
        waited = time.monotonic()
        while part == "run" and not Path(done).exists() and time.monotonic() - waited < WAIT_S:
            time.sleep(0.05)
        k.run.compile(sig)
    return 0


def run_types(k, dtype: str, image_dtype: str) -> tuple:
    """The numba types of `run`'s arguments as fast.py passes them, for weights of `dtype`
    and images of `image_dtype` (k: the _kernels module)."""
    import numpy as np
    from numba import typeof

    f, flags = np.dtype(dtype).type, k.Options._fields.index("A")  # flags come first
    o = k.Options(*[False] * flags, *[f(0)] * (len(k.Options._fields) - flags))
    args = (np.zeros(k.SIZE, dtype), np.zeros((k.MAPS, 1), np.int64),
            np.zeros((1, 1, 16, 16), image_dtype), np.zeros(1, np.int64),
            np.zeros((0, k.MAPS * k.N2), dtype), 0, 0, 0, 0.0, 0.0, o, np.zeros((0, k.OUT)))
    return tuple(typeof(a) for a in args)


if __name__ == "__main__":
    sys.modules["scipy"] = None  # numba imports it (slowly) to find BLAS, which `run` never calls
    status = main(*sys.argv[1:5])
    sys.stderr.flush()
    os._exit(status)  # at once: the interpreter's teardown with numba loaded is slow
