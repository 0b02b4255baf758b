"""City OS benchmark driver: ``python bench/run.py --help``; see ``bench/README.md``."""
