"""How the compiled engines' kernels get compiled: once, in helper processes, under a lock.

numba compiles a kernel (`_kernels.run`, `_lanes_kernels.run`) the first time it is called
with new argument types and keeps the machine code in its disk cache. This module makes that
first time cheap and safe, for both engines:

- `compile_lock`: one process at a time compiles or loads (numba's cache index has no lock);
- `vectorizers`: LLVM's SLP vectoriser on while compiling (the kernels need it), the loop
  vectoriser as the kernels ask;
- `compiled_elsewhere`: when numba starts compiling the kernel here, helper processes compile
  it instead and this process loads the result: a process that compiled the kernels runs
  other (slower, differently rounded) copies of them than one that loads them from the
  cache, so the first run computes bit for bit what every later (cached) run does;
- `call`: the first call of a kernel for its types goes through all of the above;
- the fast engine's helpers (_compiler.py: `fast_helpers`, `compile_early`, started before
  numba's import on a first-ever run); the lanes engine brings its own (lanes.py).
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

_SLP_LOCK = threading.Lock()
_COMPILED: set = set()  # (engine, dtype, image dtype) compiled or loaded in this process
_EARLY: set = set()  # the dtypes whose compile `compile_early` started
_HELPERS: set = set()  # _compiler.py processes running now (stopped if this process exits)


def call(kernel, args, key: tuple, elsewhere, loop_vectorize: bool | None = None) -> None:
    """kernel(*args). The first call for `key` ((engine, dtype, image dtype): what the
    kernel's machine code depends on) compiles it, or loads numba's cache, under the lock
    with the `vectorizers` settings; `elsewhere(args)` compiles it in helper processes and
    says whether that worked (`compiled_elsewhere`)."""
    if key in _COMPILED:
        kernel(*args)
        return
    with vectorizers(loop_vectorize):
        try:
            with compiled_elsewhere(kernel, elsewhere):
                kernel(*args)
        except _CompiledElsewhere:
            kernel(*args)  # loads what the helpers saved
    _COMPILED.add(key)


def run_jobs(engine, jobs: list, key: tuple, elsewhere, loop_vectorize: bool | None = None
             ) -> None:
    """Run (kernel, args) jobs on up to `engine.threads` threads (the kernels release the
    GIL; the pool is kept in `engine._pool`). The first call for `key` compiles the kernel,
    or loads numba's cache, with the first job here, alone (`call`); from then on every job
    goes to the pool at once (running the first job here before starting the others ran two
    blocks one after the other)."""
    if not jobs:
        return
    if not loaded(key):
        call(*jobs[0], key, elsewhere, loop_vectorize)
        jobs = jobs[1:]
    if engine.threads == 1 or len(jobs) <= 1:
        for kernel, args in jobs:
            kernel(*args)
        return
    if engine._pool is None:
        engine._pool = ThreadPoolExecutor(engine.threads, thread_name_prefix=f"{key[0]}-engine")
    for future in [engine._pool.submit(kernel, *args) for kernel, args in jobs]:
        future.result()


def loaded(key: tuple) -> bool:
    """Whether `call` has compiled or loaded the kernel for `key` in this process: from then
    on the kernel may be called directly, from any thread."""
    return key in _COMPILED


def compiled(engine: str, dtype: str) -> bool:
    """Whether this process has compiled or loaded `engine`'s kernel for weights of dtype."""
    return any(key[:2] == (engine, dtype) for key in _COMPILED)


KERNELS = {"fast": "_kernels", "lanes": "_lanes_kernels"}  # each compiled engine's module


def needs_compile(dtype: str, engine: str = "fast") -> bool:
    """A guess, without importing numba: will the engine's first call of `run` for weights
    of this dtype compile (rather than load numba's cache)? For the user only."""
    return not compiled(engine, dtype) and _cache_lacks_run(KERNELS[engine])


@contextlib.contextmanager
def compile_lock():
    """One process at a time compiles the kernels (or loads them from numba's disk cache).

    numba saves a function's compiled versions by reading, extending and rewriting an index
    file without a lock: two processes saving different versions of one function at once
    (sweep workers, test workers, an SGD and an SDLM run) can leave the index naming the
    other's code, which a later process would then load for the wrong version. Waiting here
    also spares the second process the compile: it loads what the first one saved.
    """
    try:
        import fcntl  # POSIX
    except ImportError:  # elsewhere: no lock (as numba itself)
        yield
        return
    path = os.path.join(tempfile.gettempdir(), f"lecun1989-numba-{os.getuid()}.lock")
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def vectorizers(loop_vectorize: bool | None = None):
    """Compile with LLVM's SLP vectoriser on (see _kernels' docstring) and its loop vectoriser
    as numba sets it (None) or on or off (_lanes_kernels: off), one compile at a time.

    Numba turns the SLP vectoriser off by default since numba#8852 (miscompilations in an
    older LLVM); the kernels need it to vectorise their small fixed-size loops, and every
    result they give is checked against PyTorch by the tests. Only compilations started
    inside this block see the settings; kernels loaded from numba's cache are not affected.
    """
    from numba.core import config

    with _SLP_LOCK, compile_lock():
        old = config.SLP_VECTORIZE, config.LOOP_VECTORIZE
        config.SLP_VECTORIZE = 1
        if loop_vectorize is not None:
            config.LOOP_VECTORIZE = int(loop_vectorize)
        try:
            yield
        finally:
            config.SLP_VECTORIZE, config.LOOP_VECTORIZE = old


class _CompiledElsewhere(Exception):
    """numba was about to compile a kernel in this process; helper processes compiled it."""


@contextlib.contextmanager
def compiled_elsewhere(dispatcher, elsewhere):
    """When numba starts compiling `dispatcher` here (its disk cache lacks it for these
    argument types), call `elsewhere(argument types)`, which compiles it in helper processes
    into the cache and says whether that worked; if it did, raise _CompiledElsewhere: the
    caller then loads the kernel from the cache (else numba compiles it here)."""
    from numba.core import event

    class Listener(event.Listener):
        def on_start(self, ev):
            if ev.data["dispatcher"] is dispatcher and elsewhere(tuple(ev.data["args"])):
                raise _CompiledElsewhere

        def on_end(self, ev):
            pass

    with event.install_listener("numba:compile", Listener()):
        yield


def fast_helpers(k):
    """The fast engine's `elsewhere` for `compiled_elsewhere`: _compiler.py compiles `run`
    (`forward` and `backward` at once on two cores) for the types the engine calls it with.
    (With no `run` in the cache at all, `compile_early` has started the helpers already.)"""
    from lecun1989.engines import _compiler

    def elsewhere(args) -> bool:
        dtypes = str(args[0].dtype), str(args[2].dtype)
        return (set(dtypes) <= set(_compiler.DTYPES) and args == _compiler.run_types(k, *dtypes)
                and _compile_elsewhere(*dtypes))

    return elsewhere


def compile_early(dtype: str) -> None:
    """A first-ever run (numba's cache holds no `run` at all): start the helpers before this
    process imports numba, under the compile lock, for float32 images (every data set's;
    data/base.py), so that their start-up overlaps numba's import here. The first `_run`
    waits for the lock, then loads what they saved (other types: compiled as usual)."""
    if dtype in _EARLY or not _cache_lacks_run() or _helper_python() is None:
        return
    _EARLY.add(dtype)

    def compile_under_lock():
        with compile_lock():
            if _cache_lacks_run():  # (else another process compiled it meanwhile)
                _compile_elsewhere(dtype, "float32", meanwhile=_load_numba_registries)

    threading.Thread(target=compile_under_lock, name="fast-engine-compile", daemon=True).start()


def _cache_lacks_run(module: str = "_kernels") -> bool:
    """True when no folder where numba may keep the kernels' cache holds the module's `run`,
    found without importing numba (its locators: NUMBA_CACHE_DIR, else __pycache__ beside
    the kernels or the user's cache). A guess that decides when helpers start and what the
    user is told: numba itself decides what it loads."""
    folder = os.path.dirname(os.path.abspath(Path(__file__).with_name("_kernels.py")))
    sub = f"{os.path.basename(folder)}_{hashlib.sha1(folder.encode()).hexdigest()}"
    if os.environ.get("NUMBA_CACHE_DIR"):
        places = [Path(os.environ["NUMBA_CACHE_DIR"], sub)]
    else:
        user = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
        places = [Path(folder, "__pycache__"), Path(user, "numba", sub)]
    return not any(any(place.glob(f"{module}.run-*.nbi")) for place in places)


def _helper_python() -> list[str] | None:
    """The command that runs _compiler.py, or None (a frozen app's executable is no Python)."""
    script = Path(__file__).with_name("_compiler.py")
    if not sys.executable or getattr(sys, "frozen", False) or not script.is_file():
        return None
    return [sys.executable, str(script)]


def _compile_elsewhere(dtype: str, image_dtype: str, meanwhile=None) -> bool:
    """Run _compiler.py for `run` with weights of `dtype` and images of `image_dtype`, and
    wait for it: False when it cannot start. meanwhile(): called once a core is free (the
    first of two helpers has finished)."""
    command = _helper_python()
    if command is None:
        return False
    parts = ("forward", "run") if _cores() >= 2 else ("all",)
    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            for part in parts:
                procs.append(subprocess.Popen(
                    [*command, part, os.path.join(tmp, "forward-done"), dtype, image_dtype],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL))
                _HELPERS.add(procs[-1])
            for p in procs:
                p.wait(timeout=900)
                if meanwhile is not None:
                    with contextlib.suppress(Exception):  # (only to save time: never fatal)
                        meanwhile()
                    meanwhile = None
        except OSError:  # (could not start: when none started, numba compiles right here)
            return bool(procs)
        except subprocess.TimeoutExpired:
            pass
        finally:
            for p in procs:  # after an error or an interrupt: none left running
                if p.poll() is None:
                    p.kill()
                    p.wait()
                _HELPERS.discard(p)
    return True


def _load_numba_registries() -> None:
    """What numba does here before it loads `run` from the cache (it imports its
    typing and lowering registries, and scipy to look for BLAS)."""
    from numba.core.compiler_lock import global_compiler_lock
    from numba.core.registry import cpu_target

    with global_compiler_lock:
        cpu_target.target_context.refresh()


@atexit.register
def _stop_helpers() -> None:
    """At exit (an early compile may still run in its thread): no helper left behind."""
    for p in list(_HELPERS):
        p.kill()


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def kernels():
    """The kernels' module (imports numba; numba compiles each kernel on first use)."""
    from lecun1989.engines import _kernels

    return _kernels
