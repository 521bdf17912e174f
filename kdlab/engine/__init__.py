"""The engine: the training loop (distill), a run from configuration to stored result (pipeline), chains of runs,
studies, model selection and the loop's TensorBoard events."""
