"""Training a module and head: task data, batching, the token cache, the loop with exact resume, evaluation."""
