"""Rebuilding the model: data checks, generation, preparation, finetune, evaluation."""
