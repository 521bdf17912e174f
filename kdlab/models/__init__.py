"""Models: teachers and students (core), their features, the model families, narrower, static and BiLSTM students,
tokenizer bridging, packaged and ready (fine-tuned) teachers, ensembles and soft-label teachers, the longest input a
model takes.

Importing this package imports nothing heavy: the dashboard's first page reads kdlab.models.families."""
