"""Two CPU processes (gloo) on the same global batch give the same student as one process."""
import os
import socket

import torch
import torch.multiprocessing as mp


def _train(rank, world, port, out):
    import torch.distributed as dist
    from kdlab.config import TrainConfig
    from kdlab.data.loaders import load_data
    from kdlab.engine.distill import train
    from kdlab.models.core import build_student, tiny_model
    torch.set_num_threads(1)
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                          LOCAL_RANK=str(rank))
    teacher, tok = tiny_model(2, seed=0, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    student = build_student(teacher, layers=2)
    bundle = load_data(None, max_train=32, max_eval=8)
    cfg = TrainConfig(epochs=1, max_steps=3, batch_size=8, max_len=32, lr=1e-3, progress=False,
                      eval_each_epoch=False, device="cpu", teacher_cache="off")
    train(student, tok, bundle, "kd", teacher=teacher, cfg=cfg)
    if rank == 0:
        torch.save({k: v.clone() for k, v in student.state_dict().items()}, out)
    if world > 1:
        dist.destroy_process_group()


def _port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def test_two_processes_match_one(tmp_path):
    one, two = tmp_path / "one.pt", tmp_path / "two.pt"
    mp.spawn(_train, args=(1, 0, str(one)), nprocs=1)
    mp.spawn(_train, args=(2, _port(), str(two)), nprocs=2)
    a = torch.load(one, weights_only=True)
    b = torch.load(two, weights_only=True)
    from kdlab.models.core import build_student, tiny_model
    init = build_student(tiny_model(2, seed=0)[0], layers=2).state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=2e-5), k
    assert any(not torch.allclose(init[k], a[k]) for k in a)   # training really moved the weights
