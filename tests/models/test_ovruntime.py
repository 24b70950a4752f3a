"""One OpenVINO core per process, and a signal stack that survives OpenVINO's CPU plugins.

Each scenario runs in a child process: the failure it guards against is a SIGSEGV that kills the
whole process, pytest included.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest

from models import ovruntime
from models.engine import Engine
from tests.conftest import REPO

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sigaltstack: Linux only")

# Two plugins made A then B and freed A then B: B puts back A's stack, already unmapped.
TWO_CORES_FREED_IN_ORDER = """
import gc, numpy as np, openvino as ov
from openvino import opset13 as ops
def compiled(core):
    p = ops.parameter([1, 8], np.float32)
    cm = core.compile_model(ov.Model([ops.relu(p)], [p]), "CPU")
    cm(np.ones((1, 8), np.float32))
    return cm
a, b = ov.Core(), ov.Core()
ma, mb = compiled(a), compiled(b)
del ma, a; gc.collect()
del mb, b; gc.collect()
"""

SIGNAL_AFTER = """
import os, signal
got = []
signal.signal(signal.SIGUSR1, lambda *_: got.append(1))  # a Python handler: SA_ONSTACK
os.kill(os.getpid(), signal.SIGUSR1)
print("handled", len(got))
"""


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def _openvino_leaves_a_dangling_stack() -> bool:
    res = _run(TWO_CORES_FREED_IN_ORDER + SIGNAL_AFTER)
    if res.returncode == -signal.SIGSEGV:
        return True
    assert res.returncode == 0, res.stderr
    return False


def test_pinned_stack_outlives_plugins_freed_out_of_order():
    if not _openvino_leaves_a_dangling_stack():
        pytest.skip("this OpenVINO restores signal stacks in any order; the pin is no longer needed")
    res = _run(TWO_CORES_FREED_IN_ORDER + "from models import ovruntime\n"
               "assert ovruntime.pin_signal_stack()\n" + SIGNAL_AFTER)
    assert res.returncode == 0, f"rc {res.returncode}: {res.stderr[-2000:]}"
    assert "handled 1" in res.stdout


def test_engines_freed_out_of_order_leave_a_working_signal_stack(tiny_bundle):
    """The viewer switching models does this: engine A, engine B, A freed, then B."""
    if not _openvino_leaves_a_dangling_stack():
        pytest.skip("this OpenVINO restores signal stacks in any order")
    res = _run(f"""
import gc
from models.engine import Engine
a = Engine({str(tiny_bundle)!r}, performance_hint="THROUGHPUT")
b = Engine({str(tiny_bundle)!r})
a.throughput_model(); b.throughput_model()
del a; gc.collect()
del b; gc.collect()
""" + SIGNAL_AFTER)
    assert res.returncode == 0, f"rc {res.returncode}: {res.stderr[-2000:]}"
    assert "handled 1" in res.stdout


def test_engines_share_the_process_core(tiny_bundle):
    a, b = Engine(tiny_bundle), Engine(tiny_bundle, performance_hint="THROUGHPUT")
    assert a._core is b._core is ovruntime.core()


def test_pin_is_idempotent_and_reports_the_stack():
    ovruntime.pin_signal_stack()
    addr, size, enabled = ovruntime.current_signal_stack()
    assert enabled and size == ovruntime.PINNED_STACK_BYTES
    assert ovruntime.pin_signal_stack() is False  # already ours: nothing to do
    assert ovruntime.current_signal_stack()[0] == addr
