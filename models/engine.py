"""Inference engines: a bundle in, per-image and per-study predictions out (no torch).

OpenVINO is the default backend (CPU, Intel iGPU, AUTO); ONNX Runtime is the fallback and a
cross-check. The engine runs at the precision the bundle was validated at: on CPUs with AVX-512
BF16, OpenVINO silently runs an "FP32" model in bf16 unless told otherwise, so the inference
precision is always set explicitly from the card, never left to the hardware's default.

Batch screening keeps both cores busy with :meth:`Engine.async_runner`: an OpenVINO
``AsyncInferQueue`` over a THROUGHPUT-compiled copy of the model (as many requests as the plugin
says are optimal), fed with inputs already preprocessed elsewhere. The viewer's synchronous
LATENCY model is left alone, so both can run at once. ONNX Runtime has no such queue: its runner
infers synchronously and hands the same results back through the same interface.
"""

from __future__ import annotations

import queue
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from models import ovruntime
from models.card import Bundle, load_bundle
from models.errors import BundleError, ConfigError, InferenceError, ModelIOMismatchError
from models.preprocess import Placement, standardize, to_unit
from models.reduction import Reduction, validated_reduction

BACKENDS = ("openvino", "onnxruntime")
VERDICTS = ("likely", "suspicious", "negative")


@dataclass
class ImagePrediction:
    probability: float
    body_part: str
    body_part_probs: dict[str, float]
    cam: np.ndarray  # (h, w) fracture CAM in logit units, on the model-input grid
    placement: Placement

    def heatmap(self, shape: tuple[int, int]) -> np.ndarray:
        """The CAM mapped onto the original image (rows, cols), as sigmoid values in [0, 1]."""
        return cam_to_image(self.cam, self.placement, shape)


@dataclass
class StudyPrediction:
    probability: float
    body_part: str
    verdict: str
    n_images: int
    images: list[ImagePrediction] = field(default_factory=list)


def verdict_for(prob: float, thresholds: dict[str, float]) -> str:
    """'likely' at or above the likely threshold, 'suspicious' at or above the sensitive one."""
    if prob >= thresholds["likely"]:
        return "likely"
    if prob >= thresholds["suspicious"]:
        return "suspicious"
    return "negative"


def aggregate_study(preds: Sequence[ImagePrediction], thresholds: dict[str, float]) -> StudyPrediction:
    """MURA's rule: the study probability is the mean of its images'; body part by mean vote."""
    if not preds:
        raise ConfigError("a study needs at least one image prediction")
    p = float(np.mean([x.probability for x in preds]))
    names = list(preds[0].body_part_probs)
    mean_bp = np.mean([[x.body_part_probs[n] for n in names] for x in preds], axis=0)
    return StudyPrediction(
        probability=p,
        body_part=names[int(np.argmax(mean_bp))],
        verdict=verdict_for(p, thresholds),
        n_images=len(preds),
        images=list(preds),
    )


def cam_to_image(cam: np.ndarray, placement: Placement, shape: tuple[int, int]) -> np.ndarray:
    """The CAM's content region (the input grid minus the letterbox padding) resized to
    ``shape`` (rows, cols), as sigmoid values in [0, 1].

    One bilinear resize from the CAM's own grid, the crop given as a box in CAM coordinates: the
    same continuous mapping as upsampling to the input grid, cropping and resizing again, at a
    fifth of the cost (it ran for every thumbnail of a screening report: 0.5 ms of 2 ms of the
    main thread's work per image).
    """
    size = max(placement.offset_x * 2 + placement.width, placement.offset_y * 2 + placement.height)
    s = cam.shape[-1] / size  # input px -> CAM px (square CAM, square input; padding symmetric ±1)
    box = (placement.offset_x * s, placement.offset_y * s,
           (placement.offset_x + placement.width) * s, (placement.offset_y + placement.height) * s)
    rows, cols = shape
    out = np.asarray(Image.fromarray(cam.astype(np.float32), mode="F")
                     .resize((cols, rows), Image.Resampling.BILINEAR, box=box))
    return (1.0 / (1.0 + np.exp(-out))).astype(np.float32)


def port_name(port, wanted: Sequence[str]) -> str:
    """An OpenVINO port's name, preferring the card's: converted graphs give ports several names."""
    names = port.get_names()
    return next((n for n in wanted if n in names), port.get_any_name())


def _artifact_default(bundle: Bundle, backend: str) -> str:
    arts = bundle.card["artifacts"]
    if backend == "onnxruntime":
        if "onnx" not in arts:
            raise BundleError(f"{bundle.root}: bundle has no ONNX model for the onnxruntime backend")
        return "onnx"
    return bundle.card["primary_artifact"] if arts[bundle.card["primary_artifact"]].endswith(".xml") else next(
        (k for k, v in arts.items() if v.endswith(".xml")), "onnx"
    )


def validated_precision(card: dict, device: str) -> str:
    """The INFERENCE_PRECISION_HINT the gate validated for ``device`` (card ``validation``).

    ``validation.devices`` maps a device ("CPU", "GPU") to the precision its gate run used; a
    device the gate did not run on gets the card's ``inference_precision`` (what the CPU gate
    used, normally "f32"), never OpenVINO's silent default (bf16 on AVX-512 BF16 CPUs, f16 on GPUs).
    """
    val = card.get("validation", {})
    dev = device.upper().split(".")[0]
    return val.get("devices", {}).get(dev, {}).get("inference_precision") or val.get("inference_precision") or "f32"


class Engine:
    """Runs a bundle. ``predict`` takes decoded grayscale arrays and applies the shared preprocessing.

    ``precision``: OpenVINO INFERENCE_PRECISION_HINT ("f32", "bf16", "f16"); ``None`` takes the
    precision the card's gate validated for ``device`` (:func:`validated_precision`).
    ``cache_dir``: OpenVINO's compiled-model cache, so the second start skips compilation.
    """

    def __init__(
        self,
        bundle: Bundle | str | Path,
        *,
        backend: str = "openvino",
        device: str = "CPU",
        artifact: str | None = None,
        precision: str | None = None,
        performance_hint: str = "LATENCY",
        cache_dir: str | Path | None = None,
        num_threads: int | None = None,
        check_io: bool = True,
    ) -> None:
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        if backend not in BACKENDS:
            raise ConfigError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
        self.backend = backend
        self.device = device
        self.artifact = artifact or _artifact_default(self.bundle, backend)
        self.model_path = self.bundle.artifact_path(self.artifact)
        self.cfg = self.bundle.preprocess
        self.thresholds = self.bundle.thresholds
        self.body_parts = self.bundle.body_parts
        self.precision_override = precision
        self.precision = precision or validated_precision(self.bundle.card, device)
        self.input_name = self.bundle.card["input"]["name"]
        if backend == "openvino":
            self._init_openvino(performance_hint, cache_dir, num_threads)
        else:
            self._init_onnxruntime(num_threads)
        if check_io:
            self.check_io()

    @property
    def reduction(self) -> Reduction | None:
        """The reduced-resolution decode this engine's card validated (None: decode exactly;
        :func:`models.reduction.validated_reduction`)."""
        return validated_reduction(self.bundle.card)

    # -- backends -------------------------------------------------------------------------
    def _init_openvino(self, hint: str, cache_dir, num_threads) -> None:
        core = ovruntime.core()  # one per process: see models/ovruntime.py
        if self.model_path.suffix != ".xml":
            raise BundleError(f"{self.model_path}: the openvino backend runs IR (.xml) artifacts")
        model = core.read_model(str(self.model_path))
        config: dict = {"PERFORMANCE_HINT": hint}
        if cache_dir is not None:  # this model's, not the shared core's
            Path(cache_dir).mkdir(parents=True, exist_ok=True)
            config["CACHE_DIR"] = str(cache_dir)
        dev = self.device.upper()
        if dev.startswith(("CPU", "GPU")):
            config["INFERENCE_PRECISION_HINT"] = self.precision
        elif dev.startswith(("AUTO", "MULTI", "HETERO")):
            # A virtual device picks the hardware at run time: state the precision for each
            # candidate, or a GPU silently runs f16 and an AVX-512 CPU bf16.
            config["DEVICE_PROPERTIES"] = {
                d: {"INFERENCE_PRECISION_HINT": self.precision_override or validated_precision(self.bundle.card, d)}
                for d in ("CPU", "GPU")
            }
        if num_threads and dev == "CPU":
            config["INFERENCE_NUM_THREADS"] = int(num_threads)
        self._in_names = [port_name(p, [self.input_name]) for p in model.inputs]
        self._out_names = [port_name(p, list(self.bundle.card["outputs"])) for p in model.outputs]
        self._in_rank = [p.get_partial_shape().rank.get_length() for p in model.inputs]
        self._hint = hint
        self._core, self._model, self._config = core, model, config
        self._primary: Any = None  # the bundle's model as it is (dynamic batch): infer() and predict()
        self._throughput = None  # static batch 1, THROUGHPUT: async_runner()
        if hint != "THROUGHPUT":
            self._primary_model()  # the viewer scores its first study at once, not after a compile

    def _compile(self, model, config: dict, purpose: str):
        try:
            return self._core.compile_model(model, self.device, config)
        except RuntimeError as e:
            raise ConfigError(
                f"OpenVINO could not compile {self.model_path.name}{purpose} for device {self.device!r} "
                f"(available: {self._core.available_devices}): {str(e).splitlines()[0]}"
            ) from e

    def _primary_model(self):
        """The bundle's model compiled with the engine's own hint, on first use.

        A screening engine (THROUGHPUT) infers only through :meth:`throughput_model`; compiling
        this one too cost every ``mura-screen`` run ~0.2 s for nothing (measured: 0.22 s of a
        1.9 s run over 100 images), so it is compiled when ``infer``/``predict`` first need it.
        """
        if self._primary is None:
            compiled = self._compile(self._model, self._config, "")
            self._req = compiled.create_infer_request()
            self._primary = compiled
        return self._primary

    @property
    def optimal_requests(self) -> int:
        """OpenVINO's optimal number of infer requests for the engine's own compiled model."""
        if self.backend != "openvino":
            return 1
        return int(self._primary_model().get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))

    def _init_onnxruntime(self, num_threads) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        if num_threads:
            so.intra_op_num_threads = int(num_threads)
        self._sess = ort.InferenceSession(str(self.model_path), so, providers=["CPUExecutionProvider"])
        self._in_names = [i.name for i in self._sess.get_inputs()]
        self._out_names = [o.name for o in self._sess.get_outputs()]
        self._in_rank = [len(i.shape) for i in self._sess.get_inputs()]

    @property
    def compiled_model(self):
        """The OpenVINO CompiledModel, for callers that pipeline asynchronous requests."""
        if self.backend != "openvino":
            raise ConfigError("compiled_model exists only for the openvino backend")
        return self._primary_model()

    # -- contract check -------------------------------------------------------------------
    def check_io(self) -> None:
        """Feed a dummy batch and compare real names and shapes with the card."""
        card = self.bundle.card
        where = str(self.model_path)
        if self._in_names != [self.input_name]:
            raise ModelIOMismatchError(f"{where}: inputs {self._in_names} but the card declares ['{self.input_name}']")
        missing = [n for n in card["outputs"] if n not in self._out_names]
        if missing:
            raise ModelIOMismatchError(f"{where}: outputs {self._out_names} lack {missing} declared by the card")
        s = int(self.cfg.input_size)
        out = self._infer_once(np.zeros((1, 1, s, s), dtype=np.float32))
        for name, spec in card["outputs"].items():
            want = [1 if d < 0 else d for d in spec["shape"]]
            got = list(out[name].shape)
            if got != want:
                raise ModelIOMismatchError(f"{where}: output {name!r} has shape {got}, card says {spec['shape']}")

    def _infer_once(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """One batch of 1 through the model this engine will really run: a THROUGHPUT engine's
        check must not compile the primary model only to check it."""
        if self.backend == "openvino" and self._hint == "THROUGHPUT":
            compiled = self.throughput_model()
            res = compiled.create_infer_request().infer({self.input_name: batch})
            return {name: np.array(res[port]) for name, port in zip(self._out_names, compiled.outputs, strict=True)}
        return self.infer(batch)

    # -- inference ------------------------------------------------------------------------
    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Network call on an (N, 1, S, S) float32 batch; ``fracture_prob`` calibrated per the card."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if self.backend == "openvino":
            compiled = self._primary_model()
            res = self._req.infer({self.input_name: batch})
            return self.calibrate({name: np.array(res[port])
                                   for name, port in zip(self._out_names, compiled.outputs, strict=True)})
        outs = self._sess.run(None, {self.input_name: batch})
        return self.calibrate(dict(zip(self._out_names, outs, strict=True)))

    def calibrate(self, outs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The card's Platt scaling on ``fracture_prob`` (trainer.calibration): what every caller sees.

        Applied here in float64, not in the network: a near-constant calibrated probability (the
        phantom demo's model) would otherwise sit after INT8 quantizers that cannot resolve it.
        The card's thresholds are on this calibrated scale; the CAM stays in raw logit units.
        """
        cal = self.bundle.card.get("calibration") or {}
        a, b = float(cal.get("slope", 1.0)), float(cal.get("intercept", 0.0))
        if (a, b) == (1.0, 0.0) or "fracture_prob" not in outs:
            return outs
        p = np.clip(np.asarray(outs["fracture_prob"], dtype=np.float64), 1e-7, 1 - 1e-7)
        z = a * (np.log(p) - np.log1p(-p)) + b
        return {**outs, "fracture_prob": (1.0 / (1.0 + np.exp(-z))).astype(np.float32)}

    def prepare(self, image: np.ndarray) -> tuple[np.ndarray, Placement]:
        """The shared preprocessing for one decoded image: (1, S, S) input and its placement."""
        unit, placement = to_unit(image, self.cfg)
        return standardize(unit, self.cfg), placement

    def predict(self, images: Sequence[np.ndarray], batch_size: int = 8) -> list[ImagePrediction]:
        preps = [self.prepare(im) for im in images]
        out: list[ImagePrediction] = []
        for i in range(0, len(preps), batch_size):
            chunk = preps[i : i + batch_size]
            res = self.infer(np.stack([x for x, _ in chunk]))
            out += self.decode_outputs(res, [p for _, p in chunk])
        return out

    def decode_outputs(self, res: dict[str, np.ndarray], placements: Sequence[Placement]) -> list[ImagePrediction]:
        probs = np.asarray(res["fracture_prob"]).reshape(-1)
        bps = np.asarray(res["body_part_prob"])
        cams = np.asarray(res["cam"])
        preds = []
        for j, placement in enumerate(placements):
            bp = bps[j]
            preds.append(
                ImagePrediction(
                    probability=float(probs[j]),
                    body_part=self.body_parts[int(np.argmax(bp))],
                    body_part_probs={n: float(v) for n, v in zip(self.body_parts, bp, strict=True)},
                    cam=cams[j].astype(np.float32),
                    placement=placement,
                )
            )
        return preds

    def predict_study(self, images: Sequence[np.ndarray]) -> StudyPrediction:
        return aggregate_study(self.predict(images), self.thresholds)

    def throughput_model(self):
        """The model compiled for :class:`AsyncRunner`: THROUGHPUT hint, same device and
        precision, and a static batch of 1, made once.

        The bundle's IR has a dynamic batch (the viewer scores a study in one call); OpenVINO's
        CPU kernels for a dynamic shape ran ~25 % slower than for the static (1, 1, S, S) that
        every asynchronous request holds (bench/compress.py --bundle, against benchmark_app),
        with identical outputs. A second compiled model also keeps a viewer's LATENCY requests
        and a screening run from sharing an infer request.
        """
        if self.backend != "openvino":
            raise ConfigError("throughput_model exists only for the openvino backend")
        if self._throughput is None:
            model = _static_batch_one(self._model)
            if model is self._model and self._hint == "THROUGHPUT":
                self._throughput = self._primary_model()  # already static: nothing to gain
                return self._throughput
            self._throughput = self._compile(model, {**self._config, "PERFORMANCE_HINT": "THROUGHPUT"},
                                             " for throughput")
        return self._throughput

    def async_runner(self, n_requests: int | None = None) -> AsyncRunner:
        """An :class:`AsyncRunner` for pipelined batch work (see the module docstring)."""
        return AsyncRunner(self, n_requests)


def _static_batch_one(model):
    """``model`` with its dynamic batch dimension fixed to 1 (a clone), or ``model`` itself when
    no input has a dynamic batch or another dimension is dynamic too."""
    shapes = {}
    for port in model.inputs:
        ps = port.get_partial_shape()
        if ps.rank.is_dynamic or any(d.is_dynamic for d in list(ps)[1:]):
            return model
        if list(ps)[0].is_dynamic:
            shapes[port.get_any_name()] = [1] + [d.get_length() for d in list(ps)[1:]]
    if not shapes:
        return model
    static = model.clone()
    static.reshape(shapes)
    return static


#: Infer requests per request OpenVINO calls optimal (one per stream). With exactly one, a stream
#: idles while Python turns its result around (the callback, then the next ``start_async``):
#: 355 images/s against benchmark_app's 387 on the reference model (2 streams, 2 cores); with
#: two, 396 (bench/compress.py --bundle). The cost is one more input buffer per stream.
REQUESTS_PER_STREAM = 2


class AsyncRunner:
    """Asynchronous inference on preprocessed inputs: ``submit`` now, ``completed`` later.

    ``submit(x, placement, tag)`` starts one (1, S, S) input on an idle request (blocking only
    while every request is busy); ``completed()`` returns the ``(tag, ImagePrediction)`` pairs
    finished since the last call, ``wait()`` blocks until every submitted input is finished.
    The OpenVINO callback only copies the raw outputs into a thread-safe queue: building
    predictions happens in the caller's thread. An inference error is raised from ``completed``
    or ``wait`` (never lost in a callback thread). The ONNX Runtime backend infers synchronously
    inside ``submit``; the results come back the same way.
    """

    def __init__(self, engine: Engine, n_requests: int | None = None) -> None:
        self.engine = engine
        self._done: queue.SimpleQueue = queue.SimpleQueue()
        self.pending = 0
        self._queue = None
        if engine.backend == "openvino":
            import openvino as ov

            compiled = engine.throughput_model()
            optimal = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
            self.n_requests = int(n_requests or REQUESTS_PER_STREAM * optimal)
            self._ports = list(compiled.outputs)
            self._queue = ov.AsyncInferQueue(compiled, self.n_requests)
            self._queue.set_callback(self._callback)
        else:
            self.n_requests = 1

    def _callback(self, request, userdata) -> None:
        tag, placement = userdata
        try:
            outs = self.engine.calibrate({name: np.array(request.get_tensor(port).data, copy=True)
                                          for name, port in zip(self.engine._out_names, self._ports, strict=True)})
            self._done.put((tag, placement, outs, None))
        except Exception as e:  # noqa: BLE001 - re-raised in the caller's thread by completed()
            self._done.put((tag, placement, None, e))

    def submit(self, x: np.ndarray, placement: Placement, tag: Hashable) -> None:
        batch = np.ascontiguousarray(np.asarray(x, dtype=np.float32)[None])
        self.pending += 1
        if self._queue is None:
            try:
                self._done.put((tag, placement, self.engine.infer(batch), None))
            except Exception as e:  # noqa: BLE001 - re-raised by completed(), like OpenVINO's
                self._done.put((tag, placement, None, e))
            return
        self._queue.start_async({self.engine.input_name: batch}, (tag, placement))

    def completed(self) -> list[tuple[Hashable, ImagePrediction]]:
        out: list[tuple[Hashable, ImagePrediction]] = []
        while True:
            try:
                tag, placement, outs, err = self._done.get_nowait()
            except queue.Empty:
                return out
            self.pending -= 1
            if err is not None:
                raise InferenceError(f"{self.engine.model_path.name}: inference failed ({err})") from err
            out.append((tag, self.engine.decode_outputs(outs, [placement])[0]))

    def wait(self) -> list[tuple[Hashable, ImagePrediction]]:
        if self._queue is not None:
            self._queue.wait_all()
        return self.completed()


def available_devices() -> list[str]:
    """What OpenVINO reports on this machine (for the viewer's settings)."""
    return list(ovruntime.core().available_devices)
