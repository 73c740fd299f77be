"""Built-in scenarios, one package per paper. Each registers through the `schola.scenarios` entry points."""
