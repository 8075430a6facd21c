"""What a run directory already holds, and whether a new command may use it.

A run directory belongs to one experiment. Before anything is written, a command is
checked against what the directory holds: a directory with checkpoints is continued only
with ``trainer.resume=true``, and only when the recorded config equals the new one apart
from the keys in :data:`RESUME_MAY_CHANGE` and :data:`RESUME_MAY_EXTEND`. A refusal raises
:class:`RunDirRefused` (one line naming the differing keys) and changes nothing on disk.

The resolved config of every accepted run is written to ``run_dir/config.yaml``; runs
made before that file existed are compared through Hydra's ``.hydra/config.yaml``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf

from jaxconv._atomic import nearest_existing, unwritable, write_text_atomic
from jaxconv.app.config import ResumeRules, flatten, hash_of, resume_rules
from jaxconv.run_layout import OK, RunDir, read_json
from jaxconv.train.loop import refuse_to_overwrite
from jaxconv.train.optim import planned_over_total

_RULES = resume_rules()
#: Keys that may differ between a run and its resume, and why: they change how a run is
#: carried out or shown, never the numbers it computes (``resume="free"`` in the schema).
RESUME_MAY_CHANGE: dict[str, str] = _RULES.may_change
#: Keys that may only grow on resume: training continues for longer.
RESUME_MAY_EXTEND: tuple[str, ...] = _RULES.may_extend


class RunDirRefused(ValueError):
    """The run directory holds another run or cannot be written; nothing was changed."""


class RunDirBusy(RunDirRefused):
    """Another process is writing the run directory (it holds the directory's lock)."""


class Hold:
    """This process's hold on a run directory; ``keep`` once the run is accepted (the
    lock file and the directories made for it stay)."""

    def __init__(self) -> None:
        self.keep = False
        self.handle: int | None = None  # the open lock file (process 0's)

    def lost(self) -> bool:
        """Whether the run directory's lock file was removed while held: someone removed
        the directory (or emptied it) under the run."""
        return self.handle is not None and os.fstat(self.handle).st_nlink == 0


@contextlib.contextmanager
def held(run_dir: Path, *, primary: bool = True) -> Iterator[Hold]:
    """Hold ``run_dir`` for this process for the block: an exclusive ``flock`` on its
    :attr:`~jaxconv.run_layout.RunDir.lock` file, which the kernel releases when the
    process ends however it ends (a SIGKILLed run leaves no stale lock). Another holder
    is :class:`RunDirBusy`, before anything is written. Only process 0 of a run holds it
    (``primary``); the others write nothing there. If the run is not accepted
    (``Hold.keep`` stays False), the lock file and the directories made for it are
    removed again, so a refused command changes nothing on disk."""
    hold = Hold()
    if not primary:
        yield hold
        return
    check_writable(run_dir)
    _refuse_foreign(run_dir)
    made = [p for p in (run_dir, *run_dir.parents) if not p.exists()]
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = RunDir(run_dir).lock
    created = not lock.exists()
    handle = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            created = False  # another process's file
            raise RunDirBusy(
                f"run directory {run_dir} is in use by another jaxconv-train (it holds "
                f"{lock.name}): wait for it to end, or choose another directory"
            ) from None
        hold.handle = handle
        yield hold
    finally:
        hold.handle = None
        if not hold.keep:
            _undo(lock if created else None, made)
        os.close(handle)


def _refuse_foreign(run_dir: Path) -> None:
    """jaxconv writes only into a directory that is new, empty, or one it made (its lock
    file, or an older version's checkpoint manifest, says so)."""
    if not run_dir.is_dir() or not any(run_dir.iterdir()):
        return
    files = RunDir(run_dir)
    if files.lock.exists() or (files.checkpoints / "manifest").is_dir():
        return
    names = ", ".join(sorted(p.name for p in run_dir.iterdir())[:5])
    raise RunDirRefused(
        f"run directory {run_dir} holds files jaxconv did not write ({names}): choose a new "
        "or empty directory"
    )


def _undo(lock: Path | None, made: list[Path]) -> None:
    """Remove the lock file and the (empty) directories a refused command made."""
    if lock is not None:
        lock.unlink(missing_ok=True)
    for directory in made:  # deepest first
        try:
            directory.rmdir()
        except OSError:
            return


def _extends(old: Any, new: Any) -> bool:
    if old is None or new is None:
        return old is None and new is None
    return new >= old


def config_differences(
    recorded: Mapping[str, Any], new: Mapping[str, Any], rules: ResumeRules = _RULES
) -> list[str]:
    """The keys on which ``new`` may not resume ``recorded``, as ``key: old -> new``
    (``rules``: the schema's, :func:`~jaxconv.app.config.resume_rules`).

    A key one config lacks counts as its schema default there: a run recorded before
    the key existed resumes under the same config with the key at its default.

    >>> config_differences({"seed": 0, "trainer": {"max_steps": 10, "resume": False}},
    ...                    {"seed": 1, "trainer": {"max_steps": 5, "resume": True}})
    ['seed: 0 -> 1', 'trainer.max_steps: 10 -> 5 (resume may only extend it)']
    """
    old, cur = flatten(recorded), flatten(new)
    lines = []
    for key in sorted(set(old) | set(cur)):
        if key in rules.may_change or key.startswith("hydra."):
            continue
        a, b = _value(old, key, rules), _value(cur, key, rules)
        if a == b:
            continue
        if key in rules.may_extend and _extends(a, b):
            continue
        note = " (resume may only extend it)" if key in rules.may_extend else ""
        lines.append(f"{key}: {_show(a)} -> {_show(b)}{note}")
    return lines


def _value(flat: Mapping[str, Any], key: str, rules: ResumeRules) -> Any:
    if key in flat:
        return flat[key]
    return rules.defaults.get(key, "<absent>")


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def recorded_config(run_dir: Path) -> dict | None:
    """The config the directory's run was made with (None if it records none)."""
    files = RunDir(run_dir)
    for path in (files.config, files.hydra / "config.yaml"):
        if path.is_file():
            try:
                loaded = yaml.safe_load(path.read_text())
            except (OSError, yaml.YAMLError) as err:
                raise RunDirRefused(
                    f"{path} is unreadable ({type(err).__name__}); "
                    "cannot tell which run the directory holds"
                ) from err
            return _resolved(loaded) if isinstance(loaded, dict) else None
    return None


def _resolved(loaded: dict) -> dict:
    """Hydra's .hydra/config.yaml may hold interpolations; resolve those it can."""
    try:
        return OmegaConf.to_container(OmegaConf.create(loaded), resolve=True)
    except Exception:  # an interpolation only Hydra's runtime knows: compare as written
        return loaded


def check_writable(run_dir: Path) -> None:
    """The directory (or the nearest existing parent) can take new files: its path is one
    the system accepts, no symlink on it is dangling or a loop, the files jaxconv keeps
    there are not of another kind, and it may be written."""
    run_dir = Path(run_dir)
    _check_path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirRefused(f"run directory {run_dir} is a file, not a directory")
    wrong = RunDir(run_dir).misplaced() if run_dir.is_dir() else []
    if wrong:
        raise RunDirRefused(
            f"run directory {run_dir}: {'; '.join(wrong)}, not what jaxconv writes there: "
            "move it away or choose another directory"
        )
    problem = unwritable(run_dir)
    if problem is not None:
        raise RunDirRefused(f"run directory {run_dir} is not writable ({problem})")


#: Bytes of path below a run directory that its deepest files take (Orbax's checkpoint
#: files): a directory whose own path leaves less than this under PATH_MAX is refused.
DEEPEST_FILE = 256


def _check_path(run_dir: Path) -> None:
    """Refuse a path the system would reject later: a name over NAME_MAX, a path that
    with the run's files passes PATH_MAX, a dangling symlink or a symlink loop on it."""
    absolute = Path(os.path.abspath(run_dir))
    shown = (
        str(run_dir)
        if len(str(run_dir)) <= 100
        else f"{str(run_dir)[:60]}...({len(str(run_dir))} characters)"
    )
    name_max, path_max = _limits(absolute)
    for part in absolute.parts:
        if len(os.fsencode(part)) > name_max:
            raise RunDirRefused(
                f"run directory {shown}: a name of {len(os.fsencode(part))} bytes on its path; "
                f"the file system allows {name_max}"
            )
    if len(os.fsencode(str(absolute))) + DEEPEST_FILE > path_max:
        raise RunDirRefused(
            f"run directory {shown}: its path is {len(os.fsencode(str(absolute)))} bytes, and "
            f"with the {DEEPEST_FILE} bytes of a run's files below it passes the system's "
            f"PATH_MAX ({path_max})"
        )
    for path in (absolute, *absolute.parents):
        if not path.is_symlink():
            continue
        try:
            os.stat(path)
        except FileNotFoundError:
            raise RunDirRefused(
                f"run directory {shown}: {path} is a symlink to {os.readlink(path)}, which "
                "does not exist"
            ) from None
        except OSError as err:  # ELOOP
            raise RunDirRefused(
                f"run directory {shown}: {path} is a symlink loop ({err.strerror})"
            ) from None


def _limits(path: Path) -> tuple[int, int]:
    """NAME_MAX and PATH_MAX of the file system holding ``path`` (POSIX defaults else)."""
    probe = nearest_existing(path)
    try:
        return os.pathconf(probe, "PC_NAME_MAX"), os.pathconf(probe, "PC_PATH_MAX")
    except (OSError, ValueError):
        return 255, 4096


def check_run_dir(run_dir: Path, config: Mapping[str, Any], *, resume: bool) -> list[dict]:
    """May ``config`` use ``run_dir``? Reads only.

    Raises :class:`RunDirRefused` when the directory is a file, cannot be written, holds
    checkpoints and ``resume`` is off, holds a run whose config differs from ``config``, or
    when a resume would lengthen a run whose schedule is planned over its total steps.
    Returns the run's extensions (``{"key", "from", "to"}``: the earlier ones result.json
    records, then this resume's), which the new result.json carries on.
    """
    run_dir = Path(run_dir)
    check_writable(run_dir)
    if not run_dir.is_dir():
        return []
    if not resume:
        try:
            refuse_to_overwrite(run_dir)
        except FileExistsError as err:
            raise RunDirRefused(str(err)) from err
        _refuse_finished(run_dir, config)
        return []
    recorded = recorded_config(run_dir)
    if recorded is None:
        _refuse_unrecorded(run_dir, config)
        return []
    diff = config_differences(recorded, config)
    if diff:
        raise RunDirRefused(
            f"cannot resume {run_dir}: it holds a run with another config: {'; '.join(diff)}"
        )
    extended = extensions(recorded, config)
    schedule = (config.get("schedule") or {}).get("name", "constant")
    if extended and planned_over_total(schedule):
        change = "; ".join(f"{e['key']}: {_show(e['from'])} -> {_show(e['to'])}" for e in extended)
        raise RunDirRefused(
            f"cannot extend {run_dir} ({change}): its {schedule!r} schedule is planned over "
            "the total steps, and continuing it would re-plan it mid-run into a result no "
            "fresh run gives; start a new run of the new length (a 'constant' schedule may "
            "be extended)"
        )
    earlier = (previous_result(run_dir) or {}).get("extended")
    return [*(earlier if isinstance(earlier, list) else []), *extended]


def extensions(
    recorded: Mapping[str, Any], new: Mapping[str, Any], rules: ResumeRules = _RULES
) -> list[dict]:
    """The ``resume="extend"`` keys ``new`` changes, as ``{"key", "from", "to"}``."""
    old, cur = flatten(recorded), flatten(new)
    return [
        {"key": key, "from": old.get(key), "to": cur.get(key)}
        for key in rules.may_extend
        if old.get(key) != cur.get(key)
    ]


def finished_run(previous: dict | None, config: Mapping[str, Any]) -> bool:
    """Whether ``previous`` (the directory's result.json, :func:`previous_result`) is a
    run that finished ("ok") with this very config: resuming it is a no-op."""
    return bool(
        previous
        and previous.get("status") == OK
        and previous.get("config_sha256") == hash_of(config)
    )


def previous_result(run_dir: Path) -> dict | None:
    """result.json of what the directory held before this command (None: nothing usable)."""
    return read_json(RunDir(run_dir).result)


def _refuse_finished(run_dir: Path, config: Mapping[str, Any]) -> None:
    """A directory whose result.json says ok, or records another config, is never run
    into again without resume (its checkpoints may have been cleaned up)."""
    previous = previous_result(run_dir)
    if previous is None:
        return
    if previous.get("status") == OK:
        raise RunDirRefused(
            f"run directory {run_dir} holds a finished run (result.json says ok): choose "
            "another directory"
        )
    if previous.get("config_sha256") not in (None, hash_of(config)):
        raise RunDirRefused(
            f"run directory {run_dir} holds a run of another config (result.json's "
            "config_sha256 differs): choose another directory"
        )


def _refuse_unrecorded(run_dir: Path, config: Mapping[str, Any]) -> None:
    """A resume with no config.yaml (nor .hydra/config.yaml) to compare with: allowed only
    when nothing was trained yet, or when result.json records this very config."""
    previous = previous_result(run_dir)
    if previous is not None and previous.get("config_sha256") not in (None, hash_of(config)):
        raise RunDirRefused(
            f"cannot resume {run_dir}: its config.yaml is missing and result.json records "
            "another config"
        )
    if previous is None and RunDir(run_dir).has_checkpoints():
        raise RunDirRefused(
            f"cannot resume {run_dir}: it holds checkpoints but no config.yaml or "
            "result.json to tell which config made them"
        )


def write_config(run_dir: Path, config: Mapping[str, Any]) -> None:
    """The resolved config of the accepted run, atomically."""
    write_text_atomic(RunDir(run_dir).config, yaml.safe_dump(dict(config), sort_keys=False))
