"""Narrow students projected from the teacher (kdlab.models.narrow): exactness at full width, shapes, what is kept."""
import pytest
import torch

from kdlab.data.loaders import Split
from kdlab.errors import KdlabError
from kdlab.models.core import tiny_model
from kdlab.models.narrow import basis, calibrate, calibration_batches, narrow_student

TEXTS = ["a good film with a great cast", "the plot was dull and slow", "I loved every minute of it",
         "bad acting, worse script", "an honest and moving story", "nothing works here at all"] * 3


@pytest.fixture(scope="module")
def setup():
    teacher, tok = tiny_model(num_labels=3, seed=3)
    for p in teacher.parameters():   # a teacher whose LayerNorms are not the identity at init
        if p.dim() == 1:
            p.data += 0.1 * torch.randn_like(p)
    teacher.eval()
    split = Split("train", TEXTS, [0, 1, 2] * 6, "in", TEXTS[::-1])   # a pair split
    batches = calibration_batches(split, tok, max_len=32)
    return teacher, tok, batches, calibrate(teacher, batches)


def _logits(model, b):
    model.eval()
    with torch.no_grad():
        return model(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                     token_type_ids=b["token_type_ids"]).logits


def test_select_at_full_width_is_the_teacher_itself(setup):
    teacher, _, batches, cal = setup
    H, n = teacher.config.hidden_size, teacher.config.num_hidden_layers
    s = narrow_student(teacher, list(range(n)), H, cal, how="select")
    assert torch.allclose(_logits(s, batches[0]), _logits(teacher, batches[0]), atol=1e-5)


def test_pca_basis_is_orthonormal_and_embeddings_are_projected(setup):
    teacher, _, batches, cal = setup
    H = teacher.config.hidden_size
    U = basis(cal, H // 2, "pca")
    assert U.shape == (H, H // 2)
    assert torch.allclose(U.T @ U, torch.eye(H // 2), atol=1e-5)
    s = narrow_student(teacher, [1, 3], H // 2, cal, how="pca")
    E = teacher.bert.embeddings.word_embeddings.weight
    assert torch.allclose(s.bert.embeddings.word_embeddings.weight, E @ U, atol=1e-5)
    # at full width the pca embedding table is a rotation of the teacher's: rotating back recovers it
    Uf = basis(cal, H, "pca")
    full = narrow_student(teacher, [0], H, cal, how="pca")
    assert torch.allclose(full.bert.embeddings.word_embeddings.weight @ Uf.T, E, atol=1e-5)
    # the leading direction carries the most energy of the hidden states
    energy = torch.diagonal(Uf.T @ cal.second_moment.float() @ Uf)
    assert energy[0] >= energy[-1] and torch.all(energy[:-1] >= energy[1:] - 1e-4)


def test_narrow_config_keeps_head_size_and_runs(setup):
    teacher, _, batches, cal = setup
    tc = teacher.config
    d = tc.hidden_size // tc.num_attention_heads
    s = narrow_student(teacher, [1, 3], tc.hidden_size // 2, cal, how="pca")
    c = s.config
    assert (c.num_hidden_layers, c.hidden_size, c.num_attention_heads) == (2, tc.hidden_size // 2,
                                                                           tc.num_attention_heads // 2)
    assert c.hidden_size // c.num_attention_heads == d
    assert c.intermediate_size == tc.intermediate_size // 2
    assert _logits(s, batches[0]).shape == (len(batches[0]["input_ids"]), 3)


def test_the_weakest_head_and_neurons_are_dropped(setup):
    teacher, tok, batches, _ = setup
    t = tiny_model(num_labels=3, seed=3)[0].eval()
    d = t.config.hidden_size // t.config.num_attention_heads
    layer = t.bert.encoder.layer[0]
    with torch.no_grad():
        layer.attention.output.dense.weight[:, 0:d] = 0          # head 0 writes nothing
        layer.output.dense.weight[:, :10] = 0                    # neurons 0-9 write nothing
    cal = calibrate(t, batches)
    assert int(torch.argmin(cal.head_importance[0])) == 0 and cal.head_importance[0][0] == 0
    H = t.config.hidden_size
    s = narrow_student(t, [0], H - d, cal, how="select")        # one head fewer, neurons in proportion
    kept_q = s.bert.encoder.layer[0].attention.self.query.weight
    U = basis(cal, H - d, "select")
    assert torch.allclose(kept_q, layer.attention.self.query.weight[d:] @ U)   # heads 1.. kept, head 0 gone
    assert torch.all(cal.neuron_importance[0][:10] == 0)


def test_bad_widths_are_one_clear_error(setup):
    teacher, _, _, cal = setup
    d = teacher.config.hidden_size // teacher.config.num_attention_heads
    with pytest.raises(KdlabError, match=f"multiple of {d}"):
        narrow_student(teacher, [0], d + 1, cal)
    with pytest.raises(KdlabError, match="hidden size"):
        narrow_student(teacher, [0], teacher.config.hidden_size * 2, cal)


def test_narrow_init_runs_end_to_end(tmp_path):
    import dataclasses

    from kdlab.config import RunConfig, apply_preset, build_config
    from kdlab.engine.pipeline import distill_run
    from kdlab.runs.store import Store
    with pytest.raises(KdlabError, match="--student-hidden"):
        build_config(preset="tiny", student_narrow_init="pca")
    # the tiny teacher of the method tests' fixture (tests/test_methods_a.py), shared through KDLAB_TEACHERS
    cfg = apply_preset(RunConfig(max_train=64, max_eval=32, preset="tiny", method="kd", student_hidden=32,
                                 student_narrow_init="pca"))
    cfg.train = dataclasses.replace(cfg.train, max_steps=2, progress=False, batch_size=16,
                                    checkpoint_each_epoch=False)
    cfg.teacher_train = dataclasses.replace(cfg.teacher_train, progress=False, checkpoint_each_epoch=False)
    store = Store(tmp_path)
    run = distill_run(cfg, store, log=lambda *a: None)
    assert store.run(run)["status"] == "finished"
    assert store.artifact(run, "size")["hidden"] == 32


def test_narrow_init_beats_random_init_at_step_0_on_teacher_agreement(tmp_path):
    """Before any training, a student projected from a fine-tuned teacher predicts what the teacher predicts far
    more often than a random student of the same shape (argmax agreement on the embedded dev split)."""
    from kdlab.config import RunConfig, TrainConfig, apply_preset
    from kdlab.analysis.evaluate import agreement, predict_plain
    from kdlab.models.core import fresh_student
    from kdlab.engine.pipeline import load_bundle, prepare_teacher
    from kdlab.runs.store import Store
    # the teacher of tests/test_pipeline.py (tiny preset, whole embedded train split), shared through KDLAB_TEACHERS
    cfg = apply_preset(RunConfig(preset="tiny", method="kd", train=TrainConfig(progress=False),
                                 teacher_train=TrainConfig(progress=False)))
    bundle = load_bundle(cfg)
    teacher, tok, _ = prepare_teacher(cfg, Store(tmp_path), bundle, log=lambda *a: None)
    t_logits = predict_plain(teacher, bundle.dev, tok, max_len=48)
    cal = calibrate(teacher, calibration_batches(bundle.train, tok, max_len=48))
    h = teacher.config.hidden_size // 2
    narrow = {how: agreement(predict_plain(narrow_student(teacher, [1, 3], h, cal, how=how), bundle.dev, tok,
                                           max_len=48), t_logits) for how in ("pca", "select")}
    randoms = [agreement(predict_plain(fresh_student(teacher, 2, hidden=h, heads=2, intermediate=64, seed=s),
                                       bundle.dev, tok, max_len=48), t_logits) for s in range(3)]
    assert min(narrow.values()) > max(randoms) + 0.15, (narrow, randoms)
