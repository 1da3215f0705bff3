"""Serving from a model registry (``lesionlens serve --registry DIR``): the champion answers, and
the server follows the registry's aliases while it runs.

A task polls the promotion log (``registry.log_path``, replaced atomically on every alias move).
When it changed, the log is replayed and verified, the bundles the aliases name are loaded and
warmed up, and only then does the champion take traffic, by one pointer swap
(:meth:`PredictionService.swap`); requests already running finish on the model they started on.
The previous champion and the challenger stay loaded, so a rollback or a promotion of the
challenger is that swap alone. A bundle that fails to load (changed, damaged, missing, other
classes) and a log that fails verification are refused with a logged error, and the server keeps
serving what it serves.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from lesionlens.bundle.registry import Registry, RegistryError, RegistryState
from lesionlens.serving.served import Served
from lesionlens.serving.service import PredictionService
from lesionlens.serving.settings import ServeSettings

log = logging.getLogger(__name__)


class RegistryModels:
    def __init__(self, folder: str | Path, settings: ServeSettings):
        """Open the registry and load its champion (blocking; a server without a champion cannot
        start, so every problem here is raised); the other aliases load when the server starts."""
        self.registry = Registry.open(folder)
        self.settings = settings
        self._stamp = _stamp(self.registry.log_path)  # before reading: a change after it is seen next poll
        self.state: RegistryState = self.registry.state()
        champion = self.state.champion
        if champion is None:
            raise RegistryError(f"{self.registry.root}: no champion to serve; `lesionlens registry promote` one first")
        self.classes: list[str] | None = None  # what labels and answers mean while the server runs: the first champion's
        first = self._load(champion)
        self.classes = first.model.classes
        self.loaded: dict[str, Served] = {champion: first}
        self.service: PredictionService | None = None
        self.problems: dict[str, str] = {}  # digest (or "log") -> why it was refused, until the log changes
        self.swaps = 0
        self._task: asyncio.Task | None = None
        self._retiring: set[asyncio.Task] = set()  # models no alias names, leaving once their requests are done

    @property
    def champion(self) -> Served:
        return self.loaded[self.state.champion]

    def challenger(self) -> Served | None:
        """The loaded challenger, for shadow scoring (None when there is none or it failed to load)."""
        digest = self.state.aliases.get("challenger")
        served = self.loaded.get(digest) if digest else None
        return served if served is not None and served.started else None

    async def start(self, service: PredictionService) -> None:
        """Load and warm up the other aliases' bundles, then follow the log."""
        self.service = service
        await self._load_aliases()
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for served in list(self.loaded.values()):
            await served.stop()
        for task in list(self._retiring):
            task.cancel()
        await asyncio.gather(*self._retiring, return_exceptions=True)

    def describe(self) -> dict:
        """For /v1/model and /readyz: what the registry says and what this server serves."""
        served = self.service.current if self.service else self.champion
        return {"folder": str(self.registry.root), "seq": self.state.seq, "aliases": dict(self.state.aliases),
                "served": served.digest, "loaded": sorted(self.loaded), "swaps": self.swaps,
                "poll_s": self.settings.registry_poll_s, "problems": dict(self.problems)}

    # -- following the log ------------------------------------------------------------------------

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.settings.registry_poll_s)
            stamp = _stamp(self.registry.log_path)
            if stamp != self._stamp:
                self._stamp = stamp
                try:
                    await self.refresh()
                except Exception:  # the watcher must outlive any one bad change
                    log.exception("following the registry failed; still serving %s", self.service.current.short)

    async def refresh(self) -> None:
        """Replay the log; load what its aliases name; swap the champion in once it is warm."""
        try:
            state = await asyncio.to_thread(self.registry.state)
        except (RegistryError, OSError) as e:
            self.problems = {"log": str(e)}
            log.error("REGISTRY REFUSED: %s; still serving %s (seq %d); retrying when the log changes",
                      e, self.service.current.short, self.state.seq)
            return
        self.problems = {}
        self.state = state
        await self._load_aliases()

    async def _load_aliases(self) -> None:
        champion = self.state.champion
        if champion is not None and await self._ensure(champion, "champion"):  # the champion first: it serves
            self._swap(self.loaded[champion])
        for alias in ("previous", "challenger"):
            digest = self.state.aliases.get(alias)
            if digest is not None:
                await self._ensure(digest, alias)
        wanted = {d for d in self.state.aliases.values() if d} | {self.service.current.digest}
        for digest in set(self.loaded) - wanted:
            served = self.loaded.pop(digest)
            log.info("unloading %s (%s): no alias names it", served.short, served.name)
            task = asyncio.get_running_loop().create_task(served.retire())
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    async def _ensure(self, digest: str, alias: str) -> bool:
        """The bundle ``digest`` loaded and warmed up; False (logged) when it is refused."""
        served = self.loaded.get(digest)
        if served is None:
            try:
                served = await asyncio.to_thread(self._load, digest)
                warm_s = await served.start()
            except Exception as e:  # noqa: BLE001 - any failure to load refuses this bundle, not the server
                self.problems[digest] = f"{alias}: {e}"
                log.error("REFUSED %s %s: %s; still serving %s", alias, digest[:12], e, self.service.current.short)
                return False
            self.loaded[digest] = served
            log.info("loaded %s %s (%s), warmed up in %.0f ms", alias, served.short, served.name, warm_s * 1000)
        else:
            await served.start()
        return True

    def _load(self, digest: str) -> Served:
        served = Served.load(self.registry.bundle_path(digest), self.settings, expected_digest=digest,
                             name=self.registry.names().get(digest))
        if served.model.task != "classification":
            raise ValueError(f"it is a {served.model.task} bundle; serving from a registry takes classifiers only "
                             f"(its swaps, shadow scoring and case store compare class answers): serve it on its own, "
                             f"`lesionlens serve {served.model.card.path}`")
        if self.classes is not None and set(served.model.classes) != set(self.classes):  # the order may differ
            raise ValueError(f"its classes ({', '.join(served.model.classes)}) differ from the served model's "
                             f"({', '.join(self.classes)}); answers and labels are per class list: restart the server "
                             "to serve other classes")
        return served

    def _swap(self, served: Served) -> None:
        if self.service.current is served:
            return
        old = self.service.swap(served)
        self.swaps += 1
        log.info("now serving %s (%s) as champion, registry seq %d; was %s", served.short, served.name,
                 self.state.seq, old.short)


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """What changes when the log is replaced: inode, modification time, size."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size
