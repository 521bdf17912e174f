"""The ranking objectives by name (a leaf module: the method registry and the CLI read it without importing the
ranking loop)."""
METHODS = {"margin-mse": "Margin-MSE on the cross-encoder's score differences (positive - negative)",
           "listwise-kl": "KL between the teacher's and the student's softmax over a query's candidates, with T",
           "contrastive": "in-batch negatives contrastive loss on the qrels: the no-teacher baseline"}
