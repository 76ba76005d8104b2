"""Command-line glue: check overrides before Hydra composes, run one job, turn errors into one line."""

from __future__ import annotations

import difflib
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from reslab import sweep  # noqa: F401  (registers the resolver behind hydra.sweep.subdir)
from reslab.config.overrides import override_key
from reslab.errors import ConfigError, ReslabError

log = logging.getLogger("reslab")

GROUPS = (
    "dataset",
    "model",
    "optimizer",
    "scheduler",
    "trainer",
    "logger",
    "explain",
    "experiment",
    "course",
)
INFO_FLAGS = {
    "--help",
    "-h",
    "--hydra-help",
    "--info",
    "-i",
    "--version",
    "--shell-completion",
    "-sc",
}


def fail(message: str, code: int = 2) -> None:
    """Print one line and exit; HYDRA_FULL_ERROR=1 or RESLAB_DEBUG=1 re-raises for a traceback."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def run_script(argv: list[str], usage: str, doc: str, work: Callable[[list[str]], list]) -> int:
    """A key=value script over saved runs (explain, evaluate): --help, logging, the files
    ``work`` wrote, and one line with a non-zero exit for bad input."""
    if any(a in ("-h", "--help") for a in argv):
        print(usage)
        print(doc)
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        written = work(argv)
    except ReslabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1
    for path in written:
        print(f"wrote {path}")
    return 0


def _options(config_dir: Path, group: str) -> list[str]:
    return sorted(p.stem for p in (config_dir / group).glob("*.yaml"))


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"did you mean {close[0]}? " if close else ""


def _has_key(cfg, dotted: str) -> tuple[bool, list[str], str]:
    """Whether ``dotted`` exists (without resolving interpolations); else the siblings of the missing part."""
    from omegaconf import DictConfig

    node, prefix = cfg, ""
    for part in dotted.split("."):
        if not isinstance(node, DictConfig):
            return True, [], prefix  # inside a list or a leaf: leave it to OmegaConf
        child = node._get_node(part, validate_access=False, throw_on_missing_key=False)
        if child is None:
            return False, [f"{prefix}{k}" for k in node.keys()], prefix
        node, prefix = child, f"{prefix}{part}."
    return True, [], prefix


def check_writable(argv: list[str]) -> None:
    """Fail before Hydra does (with a traceback) when the run or sweep folder cannot be created.

    Permissions alone do not tell (root may "write" to /proc or a read-only mount), so a
    scratch folder is made and removed in the deepest folder that exists.
    """
    targets = [
        _override_value(a) for a in argv if a.startswith(("hydra.run.dir=", "hydra.sweep.dir="))
    ]
    for target in targets or ["outputs"]:
        path = Path(target).expanduser().absolute()
        ancestor = path
        while not ancestor.exists() and ancestor != ancestor.parent:
            ancestor = ancestor.parent
        reason = None if ancestor.is_dir() else "is not a folder"
        if reason is None:
            try:
                os.rmdir(tempfile.mkdtemp(prefix=".reslab-write-check-", dir=ancestor))
            except OSError as exc:
                reason = f"is not writable ({exc.strerror})"
        if reason:
            fail(
                f"cannot create the output folder {path}: {ancestor} {reason}; "
                "run from a writable directory or pass hydra.run.dir=<writable path>"
            )


def preflight(argv: list[str], config_dir: Path) -> None:
    """Refuse unknown group options and unknown keys with one line and a suggestion."""
    if any(a in INFO_FLAGS for a in argv) or "--cfg" in argv or "-c" in argv:
        return
    check_writable(argv)
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    args = [a for a in argv if not a.startswith("-") and "=" in a]
    try:
        overrides = OverridesParser.create().parse_overrides(args)
    except HydraException as exc:
        fail(
            f"cannot parse the overrides ({str(exc).splitlines()[0]}); write them as key=value "
            "and quote a value that holds '=' or ',' for Hydra: 'resume=\"<folder>\"'"
        )
    first_choices: list[str] = []
    keys = []
    for o in overrides:
        key = o.key_or_group
        if key.startswith("hydra") or o.package is not None:
            continue
        values = (
            list(o.sweep_string_iterator())
            if o.is_sweep_override()
            else [o.get_value_element_as_str()]
        )
        if key in GROUPS:
            options = _options(config_dir, key)
            for value in values:
                if value not in options and value != "null":
                    fail(
                        f"{key}={value} is not an option; {_suggest(value, options)}"
                        f"choose one of: {', '.join(options)}"
                    )
            first_choices.append(f"{key}={values[0]}")
        elif not (o.is_add() or o.is_delete() or o.is_force_add()):
            keys.append(key)
    if not keys:
        return
    from hydra import compose, initialize_config_dir

    try:
        with initialize_config_dir(str(config_dir), version_base="1.3"):
            cfg = compose(config_name="train", overrides=first_choices)
    except HydraException as exc:
        fail(str(exc).splitlines()[0])
    for key in keys:
        found, siblings, _ = _has_key(cfg, key)
        if not found:
            fail(
                f"{key} is not a config key; {_suggest(key, siblings)}"
                f"`python train.py --cfg job` lists every key (add a new one with +{key}=...)"
            )


def _override_value(arg: str) -> str:
    """The value of ``key=value`` as Hydra reads it: quotes removed, so a sweep job's folder
    (whose name holds '=' and ',') can be given quoted."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        return str(OverridesParser.create().parse_override(arg).value())
    except HydraException:
        return arg.split("=", 1)[1]


def _quoted(path: Path) -> str:
    """A path as a Hydra override value, safe when it holds '=' or ','."""
    return "'" + str(path).replace("'", "\\'") + "'"


def resume_argv(argv: list[str], config_dir: Path) -> list[str]:
    """``resume=<run>``: the run's own overrides first (those given now win), the run's folder
    as the run folder, and the checkpoint checked against the config before Hydra writes
    anything, so a refused resume leaves the run as it was."""
    resume = next((_override_value(a) for a in argv if override_key(a) == "resume"), None)
    if resume in (None, "", "null"):
        return argv
    if "-m" in argv or "--multirun" in argv:
        return sweep_resume_argv(argv, resume)
    from omegaconf import OmegaConf

    from reslab.config.compose import compose_train_config
    from reslab.training.checkpoint import load_checkpoint
    from reslab.training.resume import (
        check_same_run,
        checkpoint_path,
        run_dir_of,
        saved_overrides,
    )

    try:
        path = checkpoint_path(resume)
        run_dir = run_dir_of(resume)
        given = {override_key(a) for a in argv}
        earlier = [o for o in saved_overrides(run_dir) if override_key(o) not in given | {"resume"}]
        argv = [*earlier, *argv]
        if "hydra.run.dir" not in given:
            argv.append(f"hydra.run.dir={_quoted(run_dir.resolve())}")
        cfg = compose_train_config(config_dir, [a for a in argv if not a.startswith("hydra.")])
        saved = load_checkpoint(path).get("config") or {}
        check_same_run(OmegaConf.to_container(cfg, resolve=True), saved, path)
    except ReslabError as exc:
        fail(str(exc))
    return argv


def sweep_resume_argv(argv: list[str], resume: str) -> list[str]:
    """``-m resume=<sweep folder>``: the sweep's own overrides (values given now win, so a sweep
    can gain values) run again into its folder, where finished jobs are skipped and
    interrupted ones resume."""
    from omegaconf import OmegaConf

    sweep_dir = Path(resume).expanduser()
    saved = sweep_dir / "multirun.yaml"
    if not saved.is_file():
        fail(
            f"resume={resume}: no multirun.yaml there; with -m, give the folder of a sweep "
            "(outputs/multirun/<date>/<time>)"
        )
    task = [str(o) for o in OmegaConf.load(saved).hydra.overrides.task]
    given = {override_key(a) for a in argv}
    earlier = [o for o in task if override_key(o) not in given | {"resume"}]
    at = next(i for i, a in enumerate(argv) if override_key(a) == "resume")
    argv = [*argv[:at], *earlier, *argv[at + 1 :]]  # among the overrides, after any flag
    if "hydra.sweep.dir" not in given:
        argv.append(f"hydra.sweep.dir={_quoted(sweep_dir.resolve())}")
    return argv


def run_job(cfg) -> float | None:
    """Hydra task: train one config into Hydra's output dir; one-line errors for user mistakes."""
    from hydra.core.hydra_config import HydraConfig

    from reslab.config.validate import check_config
    from reslab.errors import TrainingInterrupted
    from reslab.sweep import record_failure

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode.name == "MULTIRUN"
    if multirun and (status := sweep.finished_status(run_dir)):
        # A re-run of the sweep: this job finished before; its folder stays as it was.
        log.info("%s: %s before, skipped (its results are kept)", run_dir.name, status)
        return sweep.monitored_value(run_dir, str(cfg.monitor))
    if multirun:
        from reslab.placement import place_job

        place_job(cfg, hydra_cfg.launcher, int(hydra_cfg.job.num))
    try:
        # A mistyped value fails here, before the dashboards, torchvision and torchmetrics
        # are imported: about a second instead of several.
        check_config(cfg)
        from reslab.run import train
        from reslab.tracking.factory import build_loggers, run_info_from_hydra
        from reslab.training.distributed import detect

        # Dashboards get the job's name and, in a multirun, the sweep as their group.
        loggers = build_loggers(cfg, run_dir, run_info_from_hydra(hydra_cfg, cfg))
        loggers = loggers if detect().is_main else []  # under torchrun: one dashboard run
        results = train(cfg, run_dir, extra_loggers=loggers)
    except TrainingInterrupted as exc:
        log.error("stopped: %s", exc)
        # Also in a multirun: Hydra would record a raised error and start the next job, so a
        # Ctrl-C or a SIGTERM would stop one job, not the sweep. SystemExit ends the sweep.
        sys.exit(128 + signal.Signals[exc.reason].value)
    except ReslabError as exc:
        log.error("error: %s", exc)
        # results.json says failed (training writes its own once it has started).
        record_failure(run_dir, exc, cfg)
        if multirun and not _debug():
            return None  # the other jobs run on and the sweep summary reports this one
        if _debug():
            raise
        sys.exit(2 if isinstance(exc, ConfigError) else 1)
    except Exception as exc:
        if not multirun or _debug():
            raise
        # A bug or out-of-memory in one job must not cost the sweep the other jobs' results.
        log.exception("job failed: %s", exc)
        record_failure(run_dir, exc, cfg)
        return None
    value = results.get(cfg.monitor)
    return float(value) if value is not None else None


def _debug() -> bool:
    """Tracebacks on, by Hydra's rule: only the value ``1`` turns HYDRA_FULL_ERROR (or RESLAB_DEBUG) on."""
    return "1" in (os.environ.get("HYDRA_FULL_ERROR"), os.environ.get("RESLAB_DEBUG"))
