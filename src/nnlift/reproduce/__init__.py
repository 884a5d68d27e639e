"""Reproductions: each module has `run(config, verbose) -> dict` and `save(result, out_dir)`."""
