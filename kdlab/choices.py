"""The run choices, declared once: name, default, type, help, group and allowed values of every choice a run is
built from, plus the presets and budgets that change some of their defaults.

Everything else is derived from this table: the run options of the command line (``kdlab distill``, ``teacher``,
``demo``, ``study``: ``kdlab.cli.run_options``), the defaults of ``kdlab.config.TrainConfig`` / ``RunConfig`` and of
``build_config`` (``kdlab.config.CHOICES``), the dashboard's Setup defaults (``app/common.defaults``) and the
notebooks' (``notebooks/_setup.py`` goes through ``build_config``). A default can therefore differ in one place only.

One rule for presets and budgets: each is a set of other defaults for some choices; a choice given explicitly beats
it. This module imports nothing (the dashboard's first page reads it).
"""
from __future__ import annotations

from dataclasses import dataclass

# The learning rates when none is chosen: a run's student, and a pretrained teacher's fine-tuning (the tiny random
# teacher has its own, TEACHER_LR).
DEFAULT_STUDENT_LR = 1e-4
DEFAULT_TEACHER_LR = 5e-5
TEACHER_LR = {"tiny": 1e-3}
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
STUDENT_INITS = ("skip", "uniform", "first", "last", "explicit", "fresh")

# The command line's option groups, in the order `--help` shows them. ``student`` groups appear only on commands
# that train a student (distill, demo, study; not teacher).
GROUPS = ("models", "data", "method", "student training", "teacher fine-tuning", "training", "output")


@dataclass(frozen=True)
class Choice:
    """One run choice. ``type``: the command line's parser (a callable, or 'layers' / 'key=value' for the two
    parsers of kdlab.cli); ``flag`` when the option is not ``--NAME-WITH-DASHES``; ``scope``: which commands take
    it as an option (run: every run command; student: those that train a student; named: those whose runs take a
    name; None: no option, set by the dashboard or a study). ``help`` may name ``{default}`` and ``{tiny}`` (the
    tiny preset's value)."""
    name: str
    default: object = None
    help: str = ""
    group: str = "models"
    type: object = None
    choices: tuple | None = None
    scope: str | None = "run"
    flag: str | None = None
    action: str | None = None      # store_true | append
    metavar: str | None = None
    nargs: str | None = None

    @property
    def option(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")


C = Choice
TABLE: tuple[Choice, ...] = (
    # ------------------------------------------------------------------------------------------------ models
    C("preset", None, "tiny: a tiny random teacher, runs in seconds", choices=("tiny",)),
    C("teacher", "minilm-l6", "built-in name (minilm-l6, mpnet-base, tiny, tiny-FAMILY), model folder, or hub name "
      "(default {default}); given several times: a teacher ensemble for logit KD (each prepared as usual; a name given "
      "twice is prepared again with the next seed)", action="append"),
    C("ensemble", "mean-probs", "several teachers: KD to the mean of their softened distributions (mean-probs, the "
      "default) or the mean of the per-teacher KD losses (mean-kl)", choices=("mean-probs", "mean-kl"),
      scope="student"),
    C("teacher_logits", None, "a teacher given only as soft labels: a .npy array [N, C] with one row of logits (or "
      "probabilities) per training example in kdlab's order, or a .csv/.tsv with a 'text' column (and 'text_b' for "
      "pairs) and one column per class, matched by text; drives logit-level methods (kd, kd-mse, ...); --teacher "
      "then names the student's base model", metavar="FILE", scope="student"),
    C("arch", None, "model family of the tiny random teacher (with --preset tiny): bert (default), roberta, electra, "
      "distilbert, deberta-v2, modernbert, mpnet", metavar="FAMILY"),
    C("teacher_finetuned", False, "the teacher is already a fine-tuned classifier for this task: use it as is "
      "(evaluated, never fine-tuned); a folder kdlab saved is recognised without this flag", action="store_true"),
    C("trust_remote_code", False, "allow custom model code from the hub (off by default)", action="store_true"),
    C("student", None, "a pretrained student from another checkpoint (built-in name, model folder or hub name) "
      "instead of layers copied from the teacher; its layers map to the teacher's through the method's mapping, with "
      "learned projections where widths differ; a student that tokenizes differently works with logit-level methods "
      "only; 'static': a token table read from the teacher (Model2Vec recipe), mean-pooled, with a linear head",
      metavar="NAME_OR_FOLDER", scope="student"),
    C("student_layers", 3, "number of student layers (default {default}; {tiny} with --preset tiny)", type=int,
      scope="student"),
    C("student_init", "skip", "copy teacher layers by strategy (default {default}), or 'fresh' random init",
      choices=STUDENT_INITS, scope="student"),
    C("student_layer_list", None, "explicit teacher layers to copy, 0-based, e.g. 0,2,4,7,9,11", type="layers",
      scope="student"),
    C("student_hidden", None, "a narrower student (hidden size; random init unless --student-narrow-init)", type=int,
      scope="student"),
    C("student_narrow_init", "random", "a narrower student: random (default), or projected from the teacher's "
      "layers: pca (principal directions of its hidden states) or select (its strongest channels)",
      choices=("random", "pca", "select"), scope="student"),
    # ------------------------------------------------------------------------------------------------ data
    C("data", None, "embedded (default), a TSV/CSV/JSONL file, a GLUE-style folder, or a hub dataset name",
      group="data"),
    C("task", None, "a built-in task: sentiment (the default), cola, sst2, mrpc, qqp, sts-b, mnli, qnli, rte, wnli "
      "(a GLUE folder names its task itself), or ranking (a BEIR folder: --method margin-mse, listwise-kl or "
      "contrastive; options via --set, see kdlab.ranking.train)", group="data"),
    C("text_col", None, "text column, or two for a sentence pair: a,b (default: the task's; sentence)", group="data"),
    C("label_col", None, "label column (default: the task's; label)", group="data"),
    C("label_kind", None, "classes (default), score (regression) or multi (several labels per row, comma-separated)",
      group="data", choices=("classes", "score", "multi")),
    C("ood", (), "labeled files evaluated as out-of-domain sets", group="data", nargs="*"),
    C("ood_map", None, "score OOD sets with other labels: model_label=ood_label,... (default: the task's built-in "
      "mapping, e.g. entailment=entails,not_entailment=neutral for SciTail)", group="data"),
    C("max_train", None, "use at most this many training examples (0: all, the default)", group="data", type=int),
    C("max_eval", None, "use at most this many examples per evaluation set (0: all, the default)", group="data",
      type=int),
    C("data_seed", None, "the seed of the data's subsampling and dev split (None: the run's seed; a study fixes it, "
      "so every seed's cell trains on the same data and teacher)", group="data", scope=None),
    C("transfer", None, "a transfer set: more texts the student learns the teacher's outputs on (.txt one per line, "
      "or .tsv/.csv/.jsonl with the text column and an optional label column); hard labels only where a row has "
      "one. With --max-train N: the few-labels setting", group="data", metavar="FILE", scope="student"),
    C("augment", False, "add augmented copies of the training texts (masking, nearest-neighbour word replacement, "
      "n-grams; kdlab.data.augment), learned from the teacher's outputs only", group="data", action="store_true",
      scope="student"),
    C("augment_args", None, "the augmentation's settings (n_samples, p_mask, p_replace, p_ng, ng_max)", group="data",
      scope=None),
    # ------------------------------------------------------------------------------------------------ method
    C("method", "kd", "a registered method (python -m kdlab methods; default {default})", group="method",
      scope="student"),
    C("method_args", None, "method option, e.g. --set temperature=4 --set alpha_soft=0.7", group="method",
      type="key=value", action="append", metavar="KEY=VALUE", flag="--set", scope="student"),
    C("temperature", None, "shortcut for --set temperature=T", group="method", type=float, scope="student"),
    # ------------------------------------------------------------------------------------------------ student training
    C("epochs", 3, "default {default} ({tiny} with --preset tiny)", group="student training", type=int,
      scope="student"),
    C("max_steps", None, "stop after this many optimiser steps", group="student training", type=int,
      scope="student"),
    C("lr", DEFAULT_STUDENT_LR, "the student's learning rate (default {default}; {tiny} with --preset tiny)",
      group="student training", type=float, scope="student"),
    C("grad_accum", 1, "gradient accumulation steps (default {default})", group="student training", type=int,
      scope="student"),
    C("checkpoint_every", 0, "also checkpoint every N steps for exact resume (default: each epoch)",
      group="student training", type=int, metavar="N", scope="student"),
    C("teacher_cache", "auto", "reuse teacher outputs per example after the first epoch (auto, the default: only "
      "when exact)", group="student training", choices=("auto", "on", "off"), scope="student"),
    C("cache_dtype", "fp32", "teacher-cache storage (default {default})", group="student training",
      choices=("fp32", "fp16"), scope="student"),
    C("select", None, "keep the model of the best epoch by this metric on this split (e.g. dev:accuracy, "
      "scitail_test:macro_f1); the run reports both the last and the selected model", group="student training",
      metavar="SPLIT:METRIC", scope="student"),
    C("patience", 0, "with --select: stop after this many epochs without improvement (default {default}: never)",
      group="student training", type=int, scope="student"),
    C("length_buckets", "auto", "skip padding: rows of similar length run together, trimmed (auto, the default: on "
      "for CPU)", group="student training", choices=("auto", "on", "off"), scope="student"),
    C("grad_share_every", 50, "every N steps, log the gradient norm each loss term puts on the student (read by "
      "`kdlab doctor`; default {default}, 0 = off)", group="student training", type=int, metavar="N",
      scope="student"),
    # ------------------------------------------------------------------------------------------------ teacher
    C("teacher_epochs", 2, "epochs to fine-tune the teacher (default {default}; {tiny} with --preset tiny)",
      group="teacher fine-tuning", type=int),
    C("teacher_lr", None, f"the teacher's fine-tuning learning rate (default {DEFAULT_TEACHER_LR}; "
      f"{TEACHER_LR['tiny']} for the tiny teacher)", group="teacher fine-tuning", type=float),
    # ------------------------------------------------------------------------------------------------ training
    C("batch_size", 32, "default {default}", group="training", type=int),
    C("max_len", 64, "tokens per example (default {default}; {tiny} with --preset tiny)", group="training", type=int),
    C("seed", 0, "default {default}", group="training", type=int),
    C("threads", 0, "CPU threads (default 0: this process's share of the cores among the kdlab runs computing on "
      "this machine, adjusted as runs start and end; also $KDLAB_THREADS)", group="training", type=int, metavar="N"),
    C("device", "auto", "auto (default), cpu, cuda, cuda:1", group="training"),
    C("precision", "auto", "default auto: fp32 on CPU; on CUDA bf16 autocast, or fp16 autocast with a gradient "
      "scaler where the GPU has no bf16 (T4-class)", group="training", choices=PRECISIONS),
    # ------------------------------------------------------------------------------------------------ output
    C("name", None, "a name for the run", group="output", scope="named"),
    C("no_progress", False, "no progress bars", group="output", action="store_true"),
    C("tensorboard", False, "also write TensorBoard event files into the run's folder (tensorboard --logdir RUNS)",
      group="output", action="store_true", scope="student"),
)
del C

BY_NAME: dict[str, Choice] = {c.name: c for c in TABLE}
DEFAULTS: dict = {c.name: c.default for c in TABLE}

# A preset changes the defaults of some choices (a choice given explicitly beats it).
PRESETS = {
    "tiny": dict(teacher="tiny", student_layers=2, teacher_epochs=3, max_len=48, epochs=2, lr=5e-4),
}
# Budgets of the dashboard and of `kdlab workshop prepare`: the same rule as a preset, over the choices in
# BUDGET_KEYS. quick reaches a first result in about two minutes on a 2-core CPU with the packaged teacher on the
# embedded data. Its one epoch of 25 steps needs larger learning rates (teacher: 5e-5 left it at 0.63 dev accuracy;
# 2e-4 reaches 0.895 with a mean top-class probability at T = 1 of only 0.898 on dev (seed 0), 3e-4 0.91 / 0.92 with
# 0.950 / 0.897 (seeds 0 / 1); 4e-4, at the same 25 steps and time, 0.915 / 0.93 with 0.955 / 0.941, confident enough
# to teach (docs/RESULTS.md); the KD student: 0.74 at 1e-4, 0.78 at 3e-4). full is every default: every example and
# the default learning rates (None: 1e-4 for the student, 5e-5 for a pretrained teacher, 1e-3 for the tiny one,
# or a preset's).
BUDGET_KEYS = ("max_train", "max_eval", "max_len", "teacher_epochs", "teacher_lr", "epochs", "lr", "batch_size")
BUDGETS = {
    "quick": {**{k: DEFAULTS[k] for k in BUDGET_KEYS},
              **dict(max_train=800, max_eval=200, teacher_epochs=1, teacher_lr=4e-4, epochs=1, lr=3e-4)},
    "full": {**{k: DEFAULTS[k] for k in BUDGET_KEYS}, "lr": None},   # None: the default, or a preset's
}


def _check():
    for what, sets in (("preset", PRESETS), ("budget", BUDGETS)):
        for name, values in sets.items():
            unknown = set(values) - set(BY_NAME)
            assert not unknown, f"{what} {name} sets undeclared choices {sorted(unknown)}"
    assert BY_NAME["preset"].choices == tuple(sorted(PRESETS))
    assert all(c.group in GROUPS for c in TABLE)


_check()


def allowed(name: str) -> tuple:
    """The allowed values of a choice that has a fixed set."""
    return BY_NAME[name].choices


def help_text(c: Choice) -> str:
    """The choice's help with its default and the tiny preset's value filled in."""
    return c.help.replace("{default}", str(c.default)).replace("{tiny}", str(PRESETS["tiny"].get(c.name)))
