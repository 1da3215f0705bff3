"""What a request asks of the model: decode uploads in parallel, run the current model (batched or
not) off the event loop, and turn logits into probabilities, decisions and heatmaps, or mask logits
into the lesion's mask and measurements (:mod:`lesionlens.serving.segment`)."""

from __future__ import annotations

import asyncio
import base64
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from lesionlens.data.images import normalize
from lesionlens.explain.cam import class_activation_maps, overlay_png
from lesionlens.serving.decode import decode_upload
from lesionlens.serving.errors import ApiError
from lesionlens.serving.runtime import BundleModel
from lesionlens.serving.segment import require_head, segment_upload
from lesionlens.serving.served import Served
from lesionlens.serving.settings import ServeSettings

NOT_A_DIAGNOSIS = ("This is the output of a research model, not a diagnosis. "
                   "Anyone worried about a skin lesion should see a doctor.")


class PredictionService:
    """Answers requests with the current model (:class:`Served`); :meth:`swap` replaces it between
    requests, never during one."""

    def __init__(self, served: Served, settings: ServeSettings):
        self.current = served
        self.settings = settings
        # Decoding runs in a pool of its own (Pillow releases the GIL), so uploads decode in parallel
        # with each other and with the model.
        self.decode_pool = ThreadPoolExecutor(settings.resolved_decode_workers(), "decode")
        self.ready = False

    @property
    def model(self) -> BundleModel:
        return self.current.model

    async def start(self) -> None:
        await self.current.start()
        self.ready = True

    async def stop(self) -> None:
        """Stop taking requests; the models are stopped by whoever loaded them."""
        self.ready = False
        self.decode_pool.shutdown(wait=False, cancel_futures=True)

    def swap(self, served: Served) -> Served:
        """Make ``served`` (started, so warmed up) answer every request from now on; requests that
        already hold the old model finish on it. Returns the old one."""
        if not served.started:
            raise RuntimeError(f"model {served.short} is not started; start (warm up) a model before it takes traffic")
        old, self.current = self.current, served
        return old

    async def decode(self, data: bytes, name: str, model: BundleModel | None = None) -> np.ndarray:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.decode_pool, decode_upload, data, (model or self.model).preprocessing,
                                          self.settings.max_pixels, name)

    async def predict(self, uploads: list[tuple[str, bytes]], explain: bool) -> list[dict | ApiError]:
        """One result per upload: a prediction dict, or the ApiError that says why there is none. The
        model is taken once, so every result of a request names the same model."""
        served = self.current
        require_head(served.model, "classification")
        with served.in_use():
            return await self._predict(served, uploads, explain)

    async def segment(self, name: str, data: bytes, mm_per_pixel: float | None = None) -> dict:
        """The lesion's mask, outline and measurements in one upload (:mod:`lesionlens.serving.segment`)."""
        served = self.current
        with served.in_use():
            result = await segment_upload(served, self.decode_pool, self.settings.max_pixels, name, data, mm_per_pixel)
            return result | {"model": served.info(), "disclaimer": NOT_A_DIAGNOSIS}

    async def _predict(self, served: Served, uploads: list[tuple[str, bytes]], explain: bool) -> list[dict | ApiError]:
        model = served.model
        started = time.perf_counter()
        decoded = await asyncio.gather(*(self.decode(data, name, model) for name, data in uploads),
                                       return_exceptions=True)
        for d in decoded:
            if isinstance(d, BaseException) and not isinstance(d, ApiError):
                raise d
        good = [i for i, d in enumerate(decoded) if not isinstance(d, ApiError)]
        decode_ms = (time.perf_counter() - started) * 1000
        results: list[dict | ApiError] = list(decoded)
        if not good:
            return results
        images = np.stack([decoded[i] for i in good])
        x = normalize(images, model.preprocessing)
        t = time.perf_counter()
        logits, features, _ = await served.infer(x)
        model_ms = (time.perf_counter() - t) * 1000
        info, basis = served.info(), decision_basis(model)
        for row, (i, answer) in enumerate(zip(good, answers(model, logits))):
            result = answer | {"decision_basis": basis, "model": info, "disclaimer": NOT_A_DIAGNOSIS}
            if explain:
                result["heatmap"] = _heatmap(model, images[row], features, row, model.classes.index(answer["top_class"]))
            result["filename"] = uploads[i][0]
            result["timing"] = {"decode_ms": round(decode_ms, 2), "model_ms": round(model_ms, 2),
                                "total_ms": round((time.perf_counter() - started) * 1000, 2)}
            results[i] = result
        return results

    def decision_basis(self) -> str:
        return decision_basis(self.model)

    def model_info(self) -> dict:
        return self.current.info()


def answers(model: BundleModel, logits: np.ndarray) -> list[dict]:
    """Per row of logits: the top class, the calibrated probabilities and each view's decision."""
    probs = model.rule.probabilities(logits)
    decisions = model.rule.decide(probs)
    out = []
    for row, p in enumerate(probs):
        top = int(p.argmax())
        out.append({
            "top_class": model.classes[top],
            "top_probability": float(p[top]),
            "probabilities": {c: float(v) for c, v in zip(model.classes, p)},
            "decision": {v: {k: _item(d[k], row) for k in ("score", "positive")} | {"rule": d["rule"]}
                         for v, d in decisions.items()},
        })
    return out


def decision_basis(model: BundleModel) -> str:
    return "; ".join(model.rule.describe())


def _heatmap(model: BundleModel, image: np.ndarray, features: np.ndarray | None, row: int, cls: int) -> dict:
    if features is None:
        raise ApiError(400, "explain_unavailable",
                       f"this model ({model.card.architecture}) has no class-activation maps: "
                       "its export has no feature-map output")
    cam = class_activation_maps(features[row:row + 1], model.cam_weight, np.array([cls]))[0]
    png = overlay_png(image, cam)
    return {"class": model.classes[cls], "method": "CAM (global-average-pooling + linear head)",
            "png_base64": base64.b64encode(png).decode("ascii")}


def _item(value, row: int):
    v = np.asarray(value)[row]
    return bool(v) if v.dtype == bool else float(v)
