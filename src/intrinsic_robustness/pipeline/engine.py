"""The stage engine: skip what is done and unchanged, redo what changed, resume the rest.

A run directory (paths in :mod:`.layout`) holds ``config.json`` (the resolved config), ``meta.json``
(package versions, machine, seed, device, and one record per stage) and one output location per stage.
Each stage has a *key*: the hash of its own config section together with the *fingerprints* (content
hashes of the outputs) of the stages it reads. A stage is skipped when its record says ``done`` with the
same key and its outputs still exist. The record turns ``done`` only after the stage's outputs are in
place (the stage writes them atomically), so a run killed mid-stage leaves that stage ``running``: the
rerun calls it again with ``fresh=False`` and the stage resumes from whatever checkpoints its library
function keeps.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from intrinsic_robustness.distributed import is_distributed, is_main, main_only
from intrinsic_robustness.errors import Interrupted, UserInputError
from intrinsic_robustness.hashing import canonical_hash, file_sha256
from intrinsic_robustness.layout import RUN_FORMAT, RunLayout
from intrinsic_robustness.progress import advance, task
from intrinsic_robustness.storage import read_versioned, write_json

log = logging.getLogger(__name__)

META_FORMAT = RUN_FORMAT


def package_versions() -> dict[str, str]:
    """Versions that decide whether a run can be reproduced."""
    import importlib.metadata as md

    versions = {"python": platform.python_version(), "platform": platform.platform()}
    for name in ("intrinsic-robustness", "torch", "numpy", "scipy", "pydantic", "safetensors"):
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


@dataclass
class StageContext:
    """What a stage function gets: the run directory, whether to start clean, and upstream records."""

    run_dir: Path
    name: str
    fresh: bool
    upstream: dict[str, dict[str, Any]]

    def path(self, *parts: str) -> Path:
        return self.run_dir.joinpath(*parts)

    @property
    def layout(self) -> RunLayout:
        return RunLayout(self.run_dir)


StageFn = Callable[[StageContext], Sequence[str]]


@dataclass
class Stage:
    """One step: ``run(ctx)`` writes its outputs and returns their paths relative to the run directory.

    ``config`` is the JSON-able settings that decide the outputs; ``inputs`` names upstream stages;
    ``files`` are external files (weights, data) whose content also decides the outputs; ``clean`` are
    paths removed before a fresh (not resumed) execution. In a torchrun job a ``distributed`` stage runs on
    every rank (its library call splits the work and writes from rank 0); any other runs on rank 0 alone.
    """

    name: str
    config: Any
    run: StageFn
    inputs: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    clean: tuple[str, ...] = ()
    distributed: bool = False


@dataclass
class StageOutcome:
    name: str
    action: str  # "skipped" | "ran" | "resumed"
    seconds: float
    key: str
    reason: str = ""  # why it ran (pipeline.changes.why_redo); empty when skipped


@dataclass
class RunDir:
    """A run directory and its ``meta.json``."""

    path: Path
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def open(cls, path: str | os.PathLike[str], seed: int | None = None) -> RunDir:
        """Open (or create) a run directory; an existing ``meta.json`` of another format is an error."""
        p = Path(path)
        if p.exists() and not p.is_dir():
            raise UserInputError(f"--run-dir {p}: exists and is not a directory; choose another path")
        p.mkdir(parents=True, exist_ok=True)
        meta_path = RunLayout(p).meta_file
        if meta_path.is_file():
            meta = read_versioned(meta_path, META_FORMAT, fix="use a new --run-dir")
        else:
            meta = {"format": META_FORMAT, "created": _now(), "stages": {}}
        run = cls(p, meta)
        from intrinsic_robustness.runtime import machine_info

        run.meta["versions"] = package_versions()
        run.meta["machine"] = machine_info()
        if seed is not None:
            run.meta["seed"] = int(seed)
        return run

    def save(self) -> None:
        self.meta["updated"] = _now()
        write_json(RunLayout(self.path).meta_file, self.meta)

    def record(self, name: str) -> dict[str, Any] | None:
        return self.meta.get("stages", {}).get(name)

    def set_record(self, name: str, record: dict[str, Any]) -> None:
        self.meta.setdefault("stages", {})[name] = record
        self.save()

    def stage_key(self, stage: Stage) -> tuple[str, dict[str, Any]]:
        """The stage's key and the input hashes it was computed from."""
        inputs: dict[str, Any] = {}
        for up in stage.inputs:
            rec = self.record(up)
            if rec is None or rec.get("status") != "done":
                raise RuntimeError(f"stage {stage.name} needs {up}, which has not finished")
            inputs[up] = rec["fingerprint"]
        for f in stage.files:
            if not Path(f).is_file():
                raise UserInputError(
                    f"{f}: file not found (needed by stage {stage.name}); fix the path in the config or --set it"
                )
            inputs[f"file:{f}"] = file_sha256(f)
        return canonical_hash({"stage": stage.name, "config": stage.config, "inputs": inputs}), inputs

    def is_current(self, stage: Stage, key: str) -> bool:
        rec = self.record(stage.name)
        if rec is None or rec.get("status") != "done" or rec.get("key") != key:
            return False
        return all((self.path / out).exists() for out in rec.get("outputs", {}))

    def fingerprint(self, outputs: Iterable[str]) -> dict[str, str]:
        """Content hash of each output (a directory hashes its JSON and safetensors files)."""
        return {out: _hash_path(self.path / out) for out in sorted(set(outputs))}


def _hash_path(path: Path) -> str:
    if path.is_file():
        return file_sha256(path)
    if not path.is_dir():
        raise RuntimeError(f"stage output {path} does not exist")
    parts = {}
    for f in sorted(path.rglob("*")):
        rel = f.relative_to(path)
        if f.is_file() and f.suffix in (".json", ".safetensors") and not _is_scratch(rel):
            parts[str(rel)] = file_sha256(f)
    return canonical_hash(parts)


def _is_scratch(rel: Path) -> bool:
    """Checkpoints and hidden temp files do not define a stage's result."""
    return any(p.startswith(".") or "checkpoint" in p for p in rel.parts)


# What an interrupted stage keeps for its rerun to resume from (the others restart, after the finished stages).
_KEPT = {"generator": "its epochs checkpointed so far (when training)", "classifiers": "its epochs checkpointed so far",
         "evaluation": "its batches attacked so far"}

# What opening a run writes before any stage works: removed again when the run fails before leaving any work.
_SCAFFOLDING = ("meta.json", "config.json", ".lock")


@contextlib.contextmanager
def nothing_left_on_early_failure(root: str | os.PathLike[str]) -> Iterator[None]:
    """A new run that fails before any stage leaves work (a config error found at the start, Ctrl-C in the first
    seconds) leaves its run directory as it found it: the ``meta.json``, ``config.json``, lock file and empty
    directories it created are removed. A resumed run, or one with any stage output or checkpoint, is kept."""
    top = Path(root).absolute()
    if (top / "meta.json").exists() or not is_main():
        yield
        return
    existed = top.exists()
    before = set(top.rglob("*")) if existed else set()
    created = [top, *(p for p in top.parents if not p.exists())]  # the run directory and new parents
    try:
        yield
    except BaseException:
        new = set(top.rglob("*")) - before if top.is_dir() else set()
        if all(p.is_dir() or p.name in _SCAFFOLDING for p in new):
            for p in sorted(new, key=lambda q: len(q.parts), reverse=True):
                with contextlib.suppress(OSError):
                    p.rmdir() if p.is_dir() else p.unlink()
            for p in created if not existed else ():
                with contextlib.suppress(OSError):
                    p.rmdir()
        raise


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def match_force(names: Sequence[str], force: Iterable[str]) -> set[str]:
    """Stage names selected by ``--force`` values: a stage name, a group (``classifiers``) or ``all``."""
    chosen: set[str] = set()
    for want in force:
        want = want.strip()
        hit = [n for n in names if want in ("all", n) or n.startswith(want + "/")]
        if not hit:
            groups = sorted({n.split("/")[0] for n in names})
            raise UserInputError(
                f"--force {want}: no such stage; choose from all, {', '.join(groups)} "
                f"or one of {', '.join(n for n in names if '/' in n)}"
            )
        chosen.update(hit)
    return chosen


def execute(
    run: RunDir,
    stages: Sequence[Stage],
    force: Iterable[str] = (),
    on_event: Callable[[StageOutcome], None] | None = None,
) -> list[StageOutcome]:
    """Run the stages in order, skipping those done with an unchanged key (unless forced)."""
    forced = match_force([s.name for s in stages], force)
    outcomes = []
    with task("pipeline stages", len(stages)) as handle:
        for stage in stages:
            outcome = _execute_one(run, stage, stage.name in forced)
            outcomes.append(outcome)
            if on_event is not None and is_main():
                on_event(outcome)
            advance(handle)
    return outcomes


def _execute_one(run: RunDir, stage: Stage, forced: bool) -> StageOutcome:
    """Plan on rank 0 (skip, resume or start fresh), run the stage, record it on rank 0.

    A single process does all three itself; in a torchrun job the other ranks receive rank 0's plan, run a
    ``distributed`` stage with it (or wait while rank 0 runs any other) and wait while it is recorded.
    """
    key, resume, upstream, reason = main_only(_plan, run, stage, forced)
    if resume is None:
        return StageOutcome(stage.name, "skipped", 0.0, key)
    start, cpu_start = time.perf_counter(), time.process_time()
    ctx = StageContext(run.path, stage.name, fresh=not resume, upstream=upstream)
    try:
        outputs = stage.run(ctx) if stage.distributed or not is_distributed() else main_only(stage.run, ctx)
    except BaseException as exc:  # an interrupted attempt's time counts towards the stage's total when it resumes
        if isinstance(exc, Interrupted) and exc.stage is None:  # the CLI's message names what was saved where
            exc.stage, exc.run_dir = stage.name, str(run.path)
            exc.kept = _KEPT.get(stage.name.split("/")[0], "nothing of this stage: it restarts")
        main_only(_record_partial, run, stage, time.perf_counter() - start, time.process_time() - cpu_start)
        raise
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    main_only(_record_done, run, stage, key, outputs, seconds, cpu_seconds)
    log.info("stage %s: finished in %.1f s", stage.name, seconds)
    return StageOutcome(stage.name, "resumed" if resume else "ran", seconds, key, reason)


def _plan(run: RunDir, stage: Stage, forced: bool) -> tuple[str, bool | None, dict[str, dict[str, Any]], str]:
    """(key, resume, upstream records, why it runs); resume None means skip. Cleans and marks the stage running."""
    from intrinsic_robustness.pipeline.changes import why_redo

    key, inputs = run.stage_key(stage)
    if not forced and run.is_current(stage, key):
        log.info("stage %s: done and unchanged, skipped", stage.name)
        return key, None, {}, ""
    previous = run.record(stage.name)
    reason = why_redo(previous, stage.config, inputs, key, forced)
    resume = not forced and previous is not None and previous.get("key") == key
    if not resume:
        for rel in stage.clean:
            _remove(run.path / rel)
    spent = {k: float(previous.get(k) or 0.0) for k in _PARTIAL} if resume and previous else {}
    run.set_record(
        stage.name,
        {"status": "running", "key": key, "inputs": inputs, "started": _now(), "config": stage.config,
         "reason": reason, **spent},
    )
    return key, resume, {u: run.record(u) or {} for u in stage.inputs}, reason


def _record_done(run: RunDir, stage: Stage, key: str, outputs: Sequence[str], seconds: float,
                 cpu_seconds: float) -> None:
    hashes = run.fingerprint(outputs)
    inputs = run.record(stage.name)["inputs"]
    earlier = run.record(stage.name)
    last_seconds = seconds
    seconds += float(earlier.get("partial_seconds") or 0.0)  # total across resumes, not just the last part
    cpu_seconds += float(earlier.get("partial_cpu_seconds") or 0.0)
    run.set_record(
        stage.name,
        {
            "status": "done",
            "key": key,
            "inputs": inputs,
            "outputs": hashes,
            "fingerprint": canonical_hash(hashes),
            "started": run.record(stage.name)["started"],
            "finished": _now(),
            "seconds": seconds,
            "cpu_seconds": cpu_seconds,
            "last_attempt_seconds": last_seconds,
            "config": stage.config,
            "reason": earlier.get("reason", ""),
        },
    )


_PARTIAL = ("partial_seconds", "partial_cpu_seconds")


def _record_partial(run: RunDir, stage: Stage, seconds: float, cpu_seconds: float) -> None:
    """Add an interrupted attempt's wall and CPU time to the running record, for the total on completion."""
    record = run.record(stage.name)
    if record is None or record.get("status") != "running":
        return
    record = dict(record)
    record["partial_seconds"] = float(record.get("partial_seconds") or 0.0) + seconds
    record["partial_cpu_seconds"] = float(record.get("partial_cpu_seconds") or 0.0) + cpu_seconds
    run.set_record(stage.name, record)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
