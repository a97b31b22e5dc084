"""Kept thin: the plugin is registered through the pytest11 entry point (domain_eval.plugin)."""
import os

# Everything this project needs ships in packages; never wait on the Hugging Face hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
