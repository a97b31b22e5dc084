"""The shipped LoRA adapters (v1-v3), installed as ``domain_eval.adapters``; see models/*/README.md."""
