"""A pretrained student from another checkpoint (``--student NAME_OR_FOLDER``).

Instead of layers copied from the teacher (or a fresh smaller config), the student is a model of its own: a
built-in name (``minilm-l6``, ``tiny``, ``tiny-FAMILY``), a model folder (a kdlab student or teacher, or any
``save_pretrained`` folder) or a hub name. It gets a classification head for the task where it has none (or one
of another size). Its layers map to the teacher's through the method's mapping matrix like any student's
(``ModelInfo`` reads its depth, width and heads), and methods that compare hidden states learn projections where
the widths differ, as they do for a narrower fresh student.

A student that tokenizes differently from the teacher reads the same texts through its own tokenizer; the teacher
then runs on its own tokens (``kdlab.models.retokenize``) and only logit-level methods apply.
"""
from __future__ import annotations

from ..errors import KdlabError


def check_student_choice(cfg, method_cls, task=None) -> None:
    """Refuse, before any teacher is fine-tuned, settings that build the student another way."""
    from .static import check, is_static
    if is_static(cfg.student):   # the static-embedding student (kdlab.models.static): logits only
        from .teachers import _logits_only
        check(cfg, method_cls, task)
        why = _logits_only(method_cls) if method_cls.uses_teacher else None
        if why:
            raise KdlabError(f"method '{method_cls.name}' cannot train the static student: {why}, and the static "
                             "student has only a token table and logits; use kd, kd-mse or ce")
        return None
    if method_cls.defines("make_student"):
        raise KdlabError(f"method '{method_cls.name}' builds its own student: drop --student")
    if method_cls.chain:
        raise KdlabError(f"method '{method_cls.name}' is a chain of runs that builds each student from the one "
                         "before: drop --student")
    if cfg.student_hidden or cfg.student_layer_list:
        raise KdlabError("--student gives the whole student: drop --student-hidden / --student-layer-list "
                         "(they shape a student copied from the teacher)")


def student_tokenizer(cfg):
    from .core import load_tokenizer
    from .static import is_static
    return load_tokenizer(str(cfg.teacher if is_static(cfg.student) else cfg.student))


def tokenizes_differently(cfg, s_tok) -> bool:
    """Does the pretrained student read text differently from the teacher? (a soft-label teacher has no tokens)"""
    from .static import is_static
    if cfg.teacher_logits or is_static(cfg.student):   # the static student reads the teacher's tokens
        return False
    from .core import load_tokenizer
    from .core import same_tokenizer
    return not same_tokenizer(load_tokenizer(str(cfg.teacher)), s_tok)


def check_tokenizers(cfg, method_cls, s_tok) -> bool:
    """True when teacher and student tokenize differently (and the method can work with that; else one line)."""
    if not tokenizes_differently(cfg, s_tok):
        return False
    if cfg.teachers:
        raise KdlabError("the student tokenizes differently from the teachers: a teacher ensemble needs a student "
                         "that shares the teachers' tokenizer")
    from .retokenize import check_logit_method
    check_logit_method(method_cls)
    return True


def load_student(cfg, bundle, *, attentions: bool = False, teacher=None, tokenizer=None):
    """(student model, its tokenizer) for ``cfg.student``, with a head of ``bundle.num_labels()`` outputs
    (``static``: a table read from ``teacher``, with the teacher's ``tokenizer``; ``kdlab.models.static``)."""
    from . import families
    from .core import load_saved, load_teacher, resolve
    from .ready_teacher import is_kdlab_model
    from .static import build_student, is_static
    n = bundle.num_labels()
    if is_static(cfg.student):
        if teacher is None or tokenizer is None:
            raise KdlabError("the static student is built from the teacher: it needs a teacher model")
        return build_student(teacher, tokenizer, n, seed=cfg.train.seed), tokenizer
    if is_kdlab_model(cfg.student):
        model, tok = load_saved(resolve(cfg.student), attentions=attentions)
        if model.config.num_labels != n:
            raise KdlabError(f"the student '{cfg.student}' was trained for {model.config.num_labels} outputs but the "
                             f"task '{bundle.task.name}' has {n}: give a base model or a student of this task")
    else:
        model, tok = load_teacher(str(cfg.student), n, trust_remote_code=cfg.trust_remote_code,
                                  attentions=attentions, seed=cfg.train.seed)
    families.of(model)   # an architecture kdlab has no adapter for: one clear line
    return model, tok
