"""Size, latency and throughput of every deployable variant of each backbone, as a Markdown table.

Why: the choice between OpenVINO f32, its bf16 default and INT8 (and whether INT8 is worth the
gate at all) depends on measured speed-ups on the clinic CPU, not on ones quoted elsewhere. Run it
on the target PC. Weights are random unless ``--checkpoint`` is given: speed does not depend on
them, but INT8 calibration is then on random (or ``--calib``) inputs, so only timings are meaningful.

    python bench/compress.py --backbones custom_cnn,efficientnet_b0 --size 224 --iters 30
    python bench/compress.py --bundle runs/fracatlas/resnet50/bundle --bundle ...   # trained, gate-checked

With ``--bundle`` the bench times the files a mura-compress bundle ships (its validated INT8, FP32
IR and ONNX, at the card's input size) and prints the gate's ΔAUC from the card beside the INT8
speed-up, so speed and accuracy are reported for one and the same model trained on real data.
It also runs OpenVINO's own ``benchmark_app`` on the bundle's INT8 IR with the device, hint and
inference precision our engine uses, and prints our engine's throughput (``models.engine``'s
AsyncRunner, per-image postprocessing included: what the screener gets) as a ratio of it
(target ≥ 0.95), in interleaved rounds, with the CPU's ISA flags.

Latency: batch 1, LATENCY hint, median ms of ``--iters`` calls after warm-up. Throughput: for
OpenVINO the THROUGHPUT hint with ``openvino.AsyncInferQueue`` (optimal number of requests); for
torch and ONNX Runtime (synchronous), batch-1 images/s = 1000 / median latency.
"""

from __future__ import annotations

import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]
# run as a script, this file's folder comes first on sys.path and "compress" would be this file
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _REPO / "bench"]
sys.path.insert(0, str(_REPO))

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402

from models import ovruntime  # noqa: E402
from models.errors import ConfigError  # noqa: E402

BACKBONES = ("custom_cnn", "resnet50", "densenet169", "efficientnet_b0")
VARIANTS = ("torch FP32", "ORT FP32", "OV f32", "OV bf16 default", "OV INT8")


def _median_ms(fn: Callable[[], object], iters: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(max(iters, 1)):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(ts))


def _ov_compiled(core, model_path: Path, precision: str | None, hint: str):
    cfg = {"PERFORMANCE_HINT": hint}
    if precision:
        cfg["INFERENCE_PRECISION_HINT"] = precision
    return core.compile_model(str(model_path), "CPU", cfg)


def _ov_throughput_fn(core, model_path: Path, precision: str | None, x: np.ndarray,
                      iters: int) -> tuple[Callable[[], float], str]:
    """Images/s with the THROUGHPUT hint and an AsyncInferQueue of the plugin's optimal size."""
    import openvino as ov

    cm = _ov_compiled(core, model_path, precision, "THROUGHPUT")
    n_req = int(cm.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    q = ov.AsyncInferQueue(cm, n_req)
    for _ in range(n_req):  # warm-up
        q.start_async({0: x})
    q.wait_all()
    n = max(iters, 1) * n_req

    def run() -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            q.start_async({0: x})
        q.wait_all()
        return n / (time.perf_counter() - t0)

    return run, f"{n_req} req"


def _ov_latency_fn(core, model_path: Path, precision: str | None, x: np.ndarray) -> tuple[Callable[[], object], str]:
    cm = _ov_compiled(core, model_path, precision, "LATENCY")
    used = cm.get_property("INFERENCE_PRECISION_HINT")
    used = used.get_type_name() if hasattr(used, "get_type_name") else str(used)
    req = cm.create_infer_request()
    return (lambda: req.infer({0: x})), used


def _calibration(spec: str | None, size: int, n: int, seed: int) -> np.ndarray:
    """Calibration inputs: decoded through the shared preprocessing from ``spec``, else random."""
    if not spec:
        return np.random.default_rng(seed).standard_normal((n, 1, size, size), dtype=np.float32)
    from compress.evalset import build_evalset
    from models.datasources import load_source
    from models.preprocess import PreprocessConfig

    es = build_evalset(load_source(spec, "train"), PreprocessConfig(input_size=size), limit=n, seed=seed)
    if len(es.inputs) == 0:
        raise ConfigError(f"--calib {spec}: no decodable training image")
    return es.inputs


def bench_backbone(name: str, args: argparse.Namespace, calib: np.ndarray, work: Path) -> dict:
    """Export, quantize and time one backbone; returns {variant: {size_mb, latency_ms, ips, note}}."""
    import openvino as ov
    import torch

    from compress.export import convert_to_openvino, export_onnx
    from compress.quantize import QuantizeConfig, quantize_openvino
    from models.nn.networks import create_model

    if args.checkpoint:
        from models.nn.checkpoint import load_checkpoint, model_from_checkpoint

        net = model_from_checkpoint(load_checkpoint(args.checkpoint))
    else:
        torch.manual_seed(args.seed)
        net = create_model(name, num_body_parts=7)
    net.eval()
    onnx_path = export_onnx(net, work / f"{name}.onnx", args.size)
    fp32_xml = work / f"{name}_fp32.xml"
    fp32_model = convert_to_openvino(onnx_path, fp32_xml)
    int8_xml = work / f"{name}_int8.xml"
    ov.save_model(quantize_openvino(fp32_model, calib, QuantizeConfig(subset_size=len(calib))), str(int8_xml),
                  compress_to_fp16=False)
    return time_variants(net, onnx_path, fp32_xml, int8_xml, args.size, args.iters, args.seed, args.rounds)


def bench_bundle(root: Path, args: argparse.Namespace) -> tuple[str, int, dict, dict]:
    """Time a gate-checked bundle's own files; returns (name, size, rows, gate summary).

    The INT8 row is the model the gate validated (not a re-quantization), so the speed-up and the
    ΔAUC in one table belong to the same file. torch runs the card's architecture with random
    weights: speed does not depend on the weights, and a bundle does not ship its checkpoint.
    """
    import torch

    from models.card import load_bundle
    from models.nn.networks import create_model

    b = load_bundle(root)
    card = b.card
    arts = card["artifacts"]
    # A shipped bundle keeps FP16 weights instead of FP32 (half the download) and no ONNX file:
    # run at f32 precision, FP16 weights compute exactly as fast as FP32 ones (they are
    # decompressed when compiling), so they stand in for the FP32 row; the ORT row is left out.
    f32_key = "openvino_fp32" if "openvino_fp32" in arts else "openvino_fp16"
    for key in ("openvino_int8", f32_key):
        b.artifact_path(key)  # a clear error naming the bundle when one is missing
    size = int(card["input"]["preprocessing"]["input_size"])
    torch.manual_seed(args.seed)
    net = create_model(card["architecture"], num_body_parts=len(b.body_parts)).eval()
    rows = time_variants(net, b.artifact_path("onnx") if "onnx" in arts else None, b.artifact_path(f32_key),
                         b.artifact_path("openvino_int8"), size, args.iters, args.seed, args.rounds)
    if f32_key != "openvino_fp32":
        for v in ("OV f32", "OV bf16 default"):
            rows[v]["note"] += " (FP16 weights: the bundle ships no FP32 IR)"
    gate = {"verdict": card["validation"]["verdict"], "sets": {}}
    for key, m in card["metrics"].items():
        if key.startswith("gate:"):
            gate["sets"][m["dataset"]] = {
                "n": m["n_images"], "delta": m["image_auc_delta"], "ci": m.get("image_auc_delta_ci95"),
                "study_delta": m.get("study_auc_delta"),
                "agreement": min(v for k, v in m.items() if "_agreement_" in k)}
    return f"{card['architecture']} ({root.name})", size, rows, gate


def time_variants(net, onnx_path: Path | None, fp32_xml: Path, int8_xml: Path, size: int, iters: int,
                  seed: int, rounds: int = 3) -> dict:
    """Size, batch-1 latency and throughput of torch, ONNX Runtime, OpenVINO f32/bf16 and INT8.

    Interleaved: each round times every variant once, and the table shows the median of the
    rounds, so a slow spell of a shared machine lands on all variants instead of one.
    """
    import onnxruntime as ort
    import torch

    x = np.random.default_rng(seed).standard_normal((1, 1, size, size), dtype=np.float32)

    def mb(*paths: Path) -> float:
        return sum(p.stat().st_size for p in paths) / 1e6

    xt = torch.from_numpy(x)
    torch_mb = sum(v.numel() * v.element_size() for v in net.state_dict().values()) / 1e6

    def torch_call() -> object:
        with torch.no_grad():
            return net(xt)

    latency: dict[str, Callable[[], object]] = {"torch FP32": torch_call}
    throughput: dict[str, Callable[[], float]] = {}
    rows: dict[str, dict] = {"torch FP32": {"size_mb": torch_mb, "note": "sync"}}
    if onnx_path is not None:
        sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        latency["ORT FP32"] = lambda: sess.run(None, {sess.get_inputs()[0].name: x})
        rows["ORT FP32"] = {"size_mb": mb(onnx_path), "note": "sync"}
    core = ovruntime.core()
    for variant, path, prec in (("OV f32", fp32_xml, "f32"), ("OV bf16 default", fp32_xml, None),
                                ("OV INT8", int8_xml, "f32")):  # as the engine runs it (card's precision)
        latency[variant], used = _ov_latency_fn(core, path, prec, x)
        throughput[variant], req = _ov_throughput_fn(core, path, prec, x, iters)
        rows[variant] = {"size_mb": mb(path, path.with_suffix(".bin")), "note": f"{used}, {req}"}
    lat: dict[str, list[float]] = {v: [] for v in latency}
    ips: dict[str, list[float]] = {v: [] for v in throughput}
    for _ in range(max(rounds, 1)):
        for v, fn in latency.items():
            lat[v].append(_median_ms(fn, iters))
        for v, fn in throughput.items():
            ips[v].append(fn())
    for v in rows:
        rows[v]["latency_ms"] = float(np.median(lat[v]))
        rows[v]["ips"] = float(np.median(ips[v])) if v in ips else 1000 / rows[v]["latency_ms"]
    return rows


def gate_markdown(gates: dict[str, dict], results: dict[str, dict]) -> str:
    """The gate's own ΔAUC (image level, INT8 - OV f32) beside the INT8 speed-up of the same file."""
    lines = ["", "| bundle | gate | set (images) | ΔAUC INT8 - FP32 [95 % CI] | study ΔAUC | "
             "decision agreement (worst threshold) | INT8 throughput vs OV f32 |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, g in gates.items():
        speed = results[name]["OV INT8"]["ips"] / results[name]["OV f32"]["ips"]
        for ds, m in g["sets"].items():
            ci = f" [{m['ci'][0]:+.4f}, {m['ci'][1]:+.4f}]" if m["ci"] else ""
            sd = f"{m['study_delta']:+.4f}" if m["study_delta"] is not None else "-"
            lines.append(f"| {name} | {g['verdict']} | {ds} ({m['n']}) | {m['delta']:+.4f}{ci} | {sd} | "
                         f"{m['agreement']:.3f} | {speed:.2f}x |")
    return "\n".join(lines) + "\n"


def markdown(results: dict[str, dict], size: int | str) -> str:
    lines = [f"CPU: {ovruntime.cpu_description()}", "",
             f"Input {size} px, batch 1, median of interleaved rounds. Latency: LATENCY hint, median ms. "
             "Throughput: THROUGHPUT hint + AsyncInferQueue (OpenVINO); 1000/latency for the synchronous "
             "torch/ORT rows.", "",
             "| backbone | variant | size (MB) | latency (ms) | throughput (img/s) | precision used, requests |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name, rows in results.items():
        for v in (v for v in VARIANTS if v in rows):
            r = rows[v]
            lines.append(f"| {name} | {v} | {r['size_mb']:.2f} | {r['latency_ms']:.2f} | {r['ips']:.1f} | "
                         f"{r['note']} |")
    lines += ["", "| backbone | INT8 latency speed-up vs OV f32 | vs torch | INT8 throughput speed-up vs OV f32 "
              "| vs torch |", "| --- | --- | --- | --- | --- |"]
    for name, rows in results.items():
        i8, f32, pt = rows["OV INT8"], rows["OV f32"], rows["torch FP32"]
        lines.append(f"| {name} | {f32['latency_ms'] / i8['latency_ms']:.2f}x | "
                     f"{pt['latency_ms'] / i8['latency_ms']:.2f}x | {i8['ips'] / f32['ips']:.2f}x | "
                     f"{i8['ips'] / pt['ips']:.2f}x |")
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="bench/compress.py", description=__doc__.splitlines()[0])
    ap.add_argument("--backbones", default=",".join(BACKBONES),
                    help=f"comma-separated subset of {','.join(BACKBONES)} (default: all; resnet50 and "
                    "densenet169 take minutes on 2 cores)")
    ap.add_argument("--size", type=int, default=224, help="input side in pixels (default 224)")
    ap.add_argument("--iters", type=int, default=30, help="timed calls per measurement (default 30)")
    ap.add_argument("--checkpoint", default=None, help="mura-train checkpoint instead of random weights "
                    "(its architecture is used; pass one backbone)")
    ap.add_argument("--calib", default=None, help="calibration source (mura:PATH | folder:PATH | csv:PATH); "
                    "default: random inputs")
    ap.add_argument("--calib-size", type=int, default=64, help="calibration images (default 64)")
    ap.add_argument("--bench-seconds", type=float, default=5.0,
                    help="seconds per throughput measurement against benchmark_app (with --bundle; default 5; benchmark_app rounds to whole seconds, at least 1)")
    ap.add_argument("--bundle", action="append", default=[],
                    help="time a mura-compress bundle's own files instead (repeatable); adds the gate's ΔAUC "
                    "from its card beside the INT8 speed-up")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the table shows their median")
    ap.add_argument("--seed", type=int, default=0)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.bundle:
        return _main_bundles(args)
    names = [b.strip() for b in args.backbones.split(",") if b.strip()]
    unknown = [b for b in names if b not in BACKBONES]
    if unknown or not names:
        raise ConfigError(f"--backbones: unknown {unknown}; choose from {BACKBONES}")
    if args.checkpoint and len(names) != 1:
        raise ConfigError("--checkpoint fixes the architecture: pass exactly one --backbones entry")
    calib = _calibration(args.calib, args.size, args.calib_size, args.seed)
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-compress-") as tmp:
        for name in names:
            t0 = time.time()
            results[name] = bench_backbone(name, args, calib, Path(tmp))
            print(f"[bench] {name} done in {time.time() - t0:.0f}s", file=sys.stderr, flush=True)
    print(markdown(results, args.size))
    return 0


ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "avx512_bf16", "amx_bf16")


def isa() -> str:
    """The CPU model and the ISA extensions INT8/BF16 speed depends on."""
    import os

    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown CPU"
    model = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), "?")
    flags = set(next((ln.split(":", 1)[1].split() for ln in info.splitlines() if ln.startswith("flags")), []))
    return f"{model}; {os.cpu_count()} cores; " + (" ".join(f for f in ISA_FLAGS if f in flags) or "no AVX2")


def engine_throughput(root: Path, seconds: float) -> tuple[float, str, int]:
    """(images/s, precision, requests) of our engine on the bundle, THROUGHPUT hint, for
    ``seconds``: in-memory inputs through the screener's AsyncRunner, results collected."""
    from models.engine import Engine
    from models.preprocess import standardize, to_unit

    engine = Engine(root, performance_hint="THROUGHPUT")
    s = engine.cfg.input_size
    unit, placement = to_unit(np.random.default_rng(0).random((2 * s, 2 * s), dtype=np.float32), engine.cfg)
    x = standardize(unit, engine.cfg)  # what a decode worker hands the runner
    runner = engine.async_runner()
    for i in range(2 * runner.n_requests):  # warm-up
        runner.submit(x, placement, i)
    runner.wait()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(runner.n_requests):
            runner.submit(x, placement, n)
            n += 1
        runner.completed()
    runner.wait()
    return n / (time.perf_counter() - t0), str(engine.precision), runner.n_requests


def benchmark_app_throughput(xml: Path, precision: str, seconds: float, size: int) -> float:
    """OpenVINO's benchmark_app on the same IR, device (CPU), hint and precision: its FPS.

    Run as ``python -c`` after ``import models``, so it sends no telemetry either."""
    import re
    import subprocess

    code = ("import sys, models; from openvino.tools.benchmark.main import main; "
            f"sys.argv = ['benchmark_app', '-m', {str(xml)!r}, '-d', 'CPU', '-hint', 'throughput', "
            f"'-t', '{max(1, round(seconds))}', '-infer_precision', {precision!r}, '-shape', '[1,1,{size},{size}]']; main()")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=_REPO, timeout=600)
    m = re.search(r"Throughput:\s*([0-9.]+)\s*FPS", r.stdout)
    if r.returncode != 0 or m is None:
        raise ConfigError(f"benchmark_app failed on {xml}: {(r.stdout + r.stderr)[-800:]}")
    return float(m.group(1))


def vs_benchmark_app(root: Path, seconds: float, rounds: int) -> str:
    """A Markdown row: our engine and benchmark_app on the bundle's INT8 IR, medians of
    interleaved rounds, and their ratio."""
    from models.card import load_bundle

    b = load_bundle(root)
    xml, size = b.artifact_path("openvino_int8"), int(b.card["input"]["preprocessing"]["input_size"])
    ours, theirs, prec, req = [], [], "f32", 0
    for _ in range(max(rounds, 1)):
        ips, prec, req = engine_throughput(root, seconds)
        ours.append(ips)
        theirs.append(benchmark_app_throughput(xml, prec, seconds, size))
    o, t = float(np.median(ours)), float(np.median(theirs))
    return (f"| {root.name} | INT8, {prec}, THROUGHPUT ({req} req) | {o:.1f} | {t:.1f} | {o / t:.2f} |")


def _main_bundles(args: argparse.Namespace) -> int:
    results, gates, sizes = {}, {}, set()
    for root in args.bundle:
        t0 = time.time()
        name, size, rows, gate = bench_bundle(Path(root), args)
        results[name], gates[name] = rows, gate
        sizes.add(size)
        print(f"[bench] {name} done in {time.time() - t0:.0f}s", file=sys.stderr, flush=True)
    print(markdown(results, "/".join(str(s) for s in sorted(sizes))) + gate_markdown(gates, results))
    print(f"\nOur engine against OpenVINO's benchmark_app (same IR, device, hint, precision; medians of "
          f"{args.rounds} interleaved rounds of {args.bench_seconds:g} s) on {isa()}\n")
    print("| bundle | model, precision, hint | our engine (images/s) | benchmark_app (FPS) | ratio |")
    print("| --- | --- | --- | --- | --- |")
    for root in args.bundle:
        print(vs_benchmark_app(Path(root), args.bench_seconds, args.rounds), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
