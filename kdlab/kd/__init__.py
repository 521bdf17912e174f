"""What distillation methods are built from: pure losses (student first), reusable loss modules, the layer mapping W
and attention maps rebuilt from Q, K, V."""
