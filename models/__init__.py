"""The shipped LoRA adapters (v1-v4), installed as ``domain_eval.adapters``; see models/*/README.md."""
