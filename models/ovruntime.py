"""One OpenVINO ``Core`` per process, and a guard against the signal stack its CPU plugin leaves.

Why this exists: OpenVINO's CPU plugin (``intel_cpu/src/sigstack_manager.cpp``, since 2022.3)
gives the thread that creates it a fresh alternate signal stack (``sigaltstack``, for AMX's large
signal frames) and remembers the one it replaced. When the plugin is destroyed it puts the old
stack back only if its own is still the current one, then unmaps its own. Two plugins destroyed in
the order they were made (A, then B) therefore leave B restoring A's stack, which A has already
unmapped. Every ``ov.Core`` has its own CPU plugin, so two cores (or the compiled models that keep
their plugins alive) freed first-in-first-out do exactly that.

The next signal that thread handles on the alternate stack kills the process with SIGSEGV, with
no traceback (faulthandler's handler needs that stack too). Python installs every handler with
``SA_ONSTACK``: Ctrl+C, torch DataLoader's SIGCHLD, pytest-timeout's SIGALRM. Seen here: a
``DataLoader`` with one worker, after a gate run in the same process, killed the test run.

Two defences, both here:

* :func:`core` is the one ``Core`` the project's code uses (OpenVINO's own advice: one core per
  application). Its CPU plugin is made once and lives until the process ends, so our engines (a
  viewer switching models, the gate's several engines) never free plugins out of order.
  ``tests/test_architecture.py`` keeps every other ``Core()`` out of the project.
* :func:`pin_signal_stack` gives the calling thread an alternate stack of its own that is never
  freed. NNCF makes short-lived cores of its own, freed in an order we do not choose (on the
  tiny test models they happened to come back in order); ``compress.quantize`` calls this after
  every NNCF run, so whatever NNCF did, a Ctrl+C during the gate's long evaluation that follows
  still stops the run with a KeyboardInterrupt.
"""

from __future__ import annotations

import ctypes
import mmap
import sys
import threading

_lock = threading.Lock()
_core = None
_pinned: dict[int, tuple[mmap.mmap, int]] = {}  # thread id -> (our stack's memory, its address)

# 256 KiB: far above AT_MINSIGSTKSZ + SIGSTKSZ, the plugin's own size, on AMX machines too.
PINNED_STACK_BYTES = 256 * 1024
_SS_DISABLE = 2  # Linux: the thread has no alternate stack


def core():
    """The process's one ``openvino.Core`` (made on first use, thread-safe, never freed).

    Per-model settings (precision, hint, ``CACHE_DIR``) go in ``compile_model``'s config, never in
    ``set_property`` on this shared core, where they would leak into every other model.
    """
    global _core
    with _lock:
        if _core is None:
            import openvino as ov

            _core = ov.Core()
        return _core


class _StackT(ctypes.Structure):
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def current_signal_stack() -> tuple[int, int, bool]:
    """The calling thread's alternate signal stack: (address, size, enabled). Linux only."""
    st = _StackT()
    if _libc().sigaltstack(None, ctypes.byref(st)) != 0:
        raise OSError(ctypes.get_errno(), "sigaltstack (query) failed")
    return int(st.ss_sp or 0), int(st.ss_size), not (st.ss_flags & _SS_DISABLE)


def pin_signal_stack() -> bool:
    """Make the calling thread handle signals on an alternate stack of ours that is never freed.

    Safe whoever owns the current stack: a plugin still alive finds its stack no longer current
    and only unmaps its own; a plugin made later saves ours and, when freed, puts ours back.
    Returns True when the stack was switched (False: ours already, or not Linux). Call it after
    third-party code (NNCF) that may have made and freed OpenVINO cores on this thread.
    """
    if not sys.platform.startswith("linux"):
        return False
    tid = threading.get_ident()
    with _lock:
        if tid not in _pinned:
            mem = mmap.mmap(-1, PINNED_STACK_BYTES)
            _pinned[tid] = (mem, ctypes.addressof(ctypes.c_char.from_buffer(mem)))
        _, addr = _pinned[tid]
    now, _, enabled = current_signal_stack()
    if enabled and now == addr:
        return False
    st = _StackT(ss_sp=addr, ss_flags=0, ss_size=PINNED_STACK_BYTES)
    if _libc().sigaltstack(ctypes.byref(st), None) != 0:
        raise OSError(ctypes.get_errno(), "sigaltstack (set) failed")
    return True


ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def cpu_isa() -> list[str]:
    """The :data:`ISA_FLAGS` this CPU has (empty where /proc/cpuinfo is not readable).

    INT8 kernels, and so INT8 outputs in their last digits, differ between these ISA levels.
    """
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "flags":
                    flags = set(value.split())
                    return [f for f in ISA_FLAGS if f in flags]
    except OSError:
        pass
    return []


def cpu_description() -> str:
    """The CPU's model name and the ISA extensions that decide INT8/bf16 speed, for bench tables.

    INT8 and bf16 speed-ups (and INT8 rounding) differ between AVX2-only, AVX-512 VNNI and AMX
    machines, so a speed figure without these flags cannot be compared with another machine's.
    """
    name = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            name = next((ln.partition(":")[2].strip() for ln in f
                         if ln.partition(":")[0].strip() == "model name"), name)
    except OSError:  # not Linux: the plugin's own view below still says something
        pass
    isa = cpu_isa()
    try:
        caps = core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        ov_caps = f"; OpenVINO CPU: {', '.join(caps)}"
    except Exception:  # noqa: BLE001 - a description must not fail a bench
        ov_caps = ""
    return f"{name}; ISA: {', '.join(isa) or 'no AVX2'}{ov_caps}"
