"""Speed and memory benchmarks for domain-eval (see benchmarks/README.md)."""
