"""Pretrained students (--student, kdlab.models.students) and teachers that tokenize differently (kdlab.models.retokenize): a
byte-level-BPE RoBERTa teacher (tokenizer trained in code) teaches a WordPiece BERT student with kd and refuses
pkd-skip; the retokenized teacher's logits are the teacher's own on its own tokens; a pretrained student of another
width and depth learns through the mapping with projections; a student that ignores --student refuses."""
import dataclasses
import json

import pytest
import torch

from kdlab.cli import main
from kdlab.config import RunConfig, apply_preset
from kdlab.data.batching import encode_texts, make_loader, model_inputs
from kdlab.errors import KdlabError
from kdlab.models.features import features
from kdlab.models.core import save_model, tiny_model
from kdlab.engine.pipeline import distill_run, load_bundle
from kdlab.records import Need
from kdlab.models.retokenize import RetokenizedTeacher, same_tokenizer
from kdlab.runs.store import Store

QUIET = dict(log=lambda *_: None)


def _bpe_roberta(folder, texts):
    """A tiny random RoBERTa classifier with a byte-level BPE tokenizer trained on ``texts``, saved to ``folder``."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaForSequenceClassification, RobertaTokenizerFast
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=400, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"], show_progress=False)
    tok = RobertaTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<s>", eos_token="</s>",
                               sep_token="</s>", cls_token="<s>", unk_token="<unk>", pad_token="<pad>",
                               mask_token="<mask>")
    cfg = RobertaConfig(vocab_size=len(tok), hidden_size=48, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=96, max_position_embeddings=130, pad_token_id=tok.pad_token_id,
                        num_labels=2)
    torch.manual_seed(0)
    save_model(RobertaForSequenceClassification(cfg), tok, folder)
    return folder


@pytest.fixture(scope="module")
def roberta_teacher(tmp_path_factory):
    from kdlab.data.synth import generate
    texts = [t for rows in generate().values() for t, _ in rows]
    return str(_bpe_roberta(tmp_path_factory.mktemp("rob") / "teacher", texts))


def _cfg(**kw):
    cfg = apply_preset(RunConfig(max_train=24, max_eval=12, preset="tiny", **kw))
    cfg.preset_applied = True
    cfg.train = dataclasses.replace(cfg.train, max_steps=3, progress=False, batch_size=8, checkpoint_each_epoch=False)
    cfg.teacher_train = dataclasses.replace(cfg.teacher_train, epochs=1, progress=False, checkpoint_each_epoch=False)
    return cfg


def test_retokenized_teacher_gives_the_teachers_own_logits(roberta_teacher):
    from kdlab.models.core import load_teacher, load_tokenizer
    teacher, t_tok = load_teacher(roberta_teacher, 2)
    teacher.eval()
    s_tok = load_tokenizer("tiny")
    assert not same_tokenizer(t_tok, s_tok) and same_tokenizer(s_tok, load_tokenizer("tiny"))
    bundle = load_bundle(_cfg())
    split = bundle.dev
    wrapped = RetokenizedTeacher(teacher, t_tok, s_tok, [bundle.train, split], max_len=48)
    batch = next(iter(make_loader(split, s_tok, batch_size=6, max_len=48)))
    got = features(wrapped, batch, Need()).logits
    texts = split.texts[:6]
    assert t_tok(texts[0])["input_ids"] != s_tok(texts[0])["input_ids"]   # the two really split text differently
    with torch.no_grad():
        want = teacher(**model_inputs(encode_texts(t_tok, texts, max_len=48))).logits
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert len(wrapped.logits) == 6   # computed once per teacher encoding, kept for the next epoch
    with pytest.raises(KdlabError, match="only the teacher's logits"):
        features(wrapped, batch, Need(hidden=True))


def test_roberta_teacher_bert_student_runs_kd_and_refuses_pkd_skip(roberta_teacher, tmp_path, capsys):
    runs = tmp_path / "runs"
    base = ["distill", "--teacher", roberta_teacher, "--student", "tiny", "--max-train", "24", "--max-eval", "12",
            "--teacher-epochs", "1", "--max-steps", "3", "--runs", str(runs), "--no-progress", "--max-len", "48"]
    assert main(base + ["--method", "kd"]) == 0
    store = Store(runs)
    (run,) = [r for r in store.runs() if r["kind"] == "student"]
    assert run["status"] == "finished" and run["config"]["student"] == "tiny"
    saved = json.loads((store.folder(run["id"]) / "student" / "tokenizer_config.json").read_text())
    assert "Bert" in saved["tokenizer_class"]   # the student keeps its own tokenizer
    capsys.readouterr()
    assert main(base + ["--method", "pkd-skip"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "tokenize differently" in err and "pkd-skip" in err
    assert len([r for r in store.runs() if r["kind"] == "student"]) == 1   # refused before any run started


def test_pretrained_student_of_another_width_learns_through_the_mapping(tmp_path):
    model, tok = tiny_model(2, seed=3, hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                            intermediate_size=64)
    folder = save_model(model, tok, tmp_path / "student")
    store = Store(tmp_path / "runs")
    for method, args in (("pkd-skip", {}), ("tinybert", {"head_average": True}), ("minilm", {"head_average": True})):
        rid = distill_run(_cfg(method=method, student=str(folder), method_args=args), store, **QUIET)
        run = store.run(rid)
        assert run["status"] == "finished", (method, run["message"])
    from kdlab.models.core import load_saved
    m, _ = load_saved(store.folder(rid) / "student")
    assert (m.config.hidden_size, m.config.num_hidden_layers) == (32, 3)


def test_student_refusals(tmp_path):
    store = Store(tmp_path / "runs")
    with pytest.raises(KdlabError, match="builds its own student"):
        distill_run(_cfg(method="bilstm", student="tiny"), store, **QUIET)
    with pytest.raises(KdlabError, match="drop --student-hidden"):
        distill_run(_cfg(method="kd", student="tiny", student_hidden=32), store, **QUIET)
    with pytest.raises(KdlabError, match="does not exist"):
        distill_run(_cfg(method="kd", student=str(tmp_path / "nope" / "x")), store, **QUIET)
    assert store.runs() == [] or all(r["kind"] != "student" for r in store.runs())


def test_a_fresh_student_trained_alone_needs_no_fine_tuned_teacher(tmp_path):
    store = Store(tmp_path / "runs")
    rid = distill_run(_cfg(method="ce", student_init="fresh", student_layers=2), store, **QUIET)
    assert store.run(rid)["status"] == "finished"
    assert [r for r in store.runs() if r["kind"] == "teacher"] == []   # the teacher's architecture only
