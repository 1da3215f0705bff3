"""What a request asks of the model: decode uploads in parallel, run the model (batched or not)
off the event loop, and turn logits into probabilities, decisions and heatmaps."""

from __future__ import annotations

import asyncio
import base64
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from lesionlens.data.images import normalize
from lesionlens.explain.cam import class_activation_maps, overlay_png
from lesionlens.serving.batcher import MicroBatcher
from lesionlens.serving.decode import decode_upload
from lesionlens.serving.errors import ApiError
from lesionlens.serving.runtime import BundleModel
from lesionlens.serving.settings import ServeSettings

NOT_A_DIAGNOSIS = ("This is the output of a research model, not a diagnosis. "
                   "Anyone worried about a skin lesion should see a doctor.")


class PredictionService:
    def __init__(self, model: BundleModel, settings: ServeSettings):
        self.model = model
        self.settings = settings
        # Decoding runs in a pool of its own (Pillow releases the GIL), so uploads decode in parallel
        # with each other and with the model; the model has one thread that feeds it, because one
        # call already uses every core through ONNX Runtime's intra-op threads.
        self.decode_pool = ThreadPoolExecutor(settings.resolved_decode_workers(), "decode")
        self._model_pool = ThreadPoolExecutor(1, "model")
        self.batcher = (MicroBatcher(self._run, self._model_pool, settings.max_batch_size, settings.max_wait_ms)
                        if settings.batching else None)
        self.ready = False

    async def start(self) -> None:
        size = self.model.preprocessing.image_size
        await asyncio.get_running_loop().run_in_executor(  # warm-up: the first call allocates
            self._model_pool, self._run, np.zeros((1, 3, size, size), np.float32))
        if self.batcher is not None:
            self.batcher.start()
        self.ready = True

    async def stop(self) -> None:
        self.ready = False
        if self.batcher is not None:
            await self.batcher.stop()
        self.decode_pool.shutdown(wait=False, cancel_futures=True)
        self._model_pool.shutdown(wait=False, cancel_futures=True)

    def _run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        out = self.model.run(x)
        return out.logits, out.features

    async def decode(self, data: bytes, name: str) -> np.ndarray:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.decode_pool, decode_upload, data, self.model.preprocessing,
                                          self.settings.max_pixels, name)

    async def predict(self, uploads: list[tuple[str, bytes]], explain: bool) -> list[dict | ApiError]:
        """One result per upload: a prediction dict, or the ApiError that says why there is none."""
        started = time.perf_counter()
        decoded = await asyncio.gather(*(self.decode(data, name) for name, data in uploads), return_exceptions=True)
        for d in decoded:
            if isinstance(d, BaseException) and not isinstance(d, ApiError):
                raise d
        good = [i for i, d in enumerate(decoded) if not isinstance(d, ApiError)]
        decode_ms = (time.perf_counter() - started) * 1000
        results: list[dict | ApiError] = list(decoded)
        if not good:
            return results
        images = np.stack([decoded[i] for i in good])
        x = normalize(images, self.model.preprocessing)
        t = time.perf_counter()
        if self.batcher is not None:
            logits, features = await self.batcher.submit(x)
        else:
            logits, features = await asyncio.get_running_loop().run_in_executor(self._model_pool, self._run, x)
        model_ms = (time.perf_counter() - t) * 1000
        probs = self.model.rule.probabilities(logits)
        decisions = self.model.rule.decide(probs)
        for row, i in enumerate(good):
            result = self._describe(probs[row], {v: {k: _item(d[k], row) for k in ("score", "positive")} | {"rule": d["rule"]}
                                                 for v, d in decisions.items()})
            if explain:
                result["heatmap"] = self._heatmap(images[row], features, row, int(probs[row].argmax()))
            result["filename"] = uploads[i][0]
            result["timing"] = {"decode_ms": round(decode_ms, 2), "model_ms": round(model_ms, 2),
                                "total_ms": round((time.perf_counter() - started) * 1000, 2)}
            results[i] = result
        return results

    def _describe(self, p: np.ndarray, decision: dict) -> dict:
        classes = self.model.classes
        top = int(p.argmax())
        return {
            "top_class": classes[top],
            "top_probability": float(p[top]),
            "probabilities": {c: float(v) for c, v in zip(classes, p)},
            "decision": decision,
            "decision_basis": self.decision_basis(),
            "model": self.model_info(),
            "disclaimer": NOT_A_DIAGNOSIS,
        }

    def decision_basis(self) -> str:
        return "; ".join(self.model.rule.describe())

    def _heatmap(self, image: np.ndarray, features: np.ndarray | None, row: int, cls: int) -> dict:
        if features is None:
            raise ApiError(400, "explain_unavailable",
                           f"this model ({self.model.card.architecture}) has no class-activation maps: "
                           "its export has no feature-map output")
        cam = class_activation_maps(features[row:row + 1], self.model.cam_weight, np.array([cls]))[0]
        png = overlay_png(image, cam)
        return {"class": self.model.classes[cls], "method": "CAM (global-average-pooling + linear head)",
                "png_base64": base64.b64encode(png).decode("ascii")}

    def model_info(self) -> dict:
        card = self.model.card
        return {"name": card.name, "architecture": card.architecture, "version": card.version,
                "runtime": self.model.runtime}


def _item(value, row: int):
    v = np.asarray(value)[row]
    return bool(v) if v.dtype == bool else float(v)
