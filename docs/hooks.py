"""MkDocs hook: the table of methods and options in docs/methods.md is made at build time from the registry's
declarations (``ueo_core.methods.options.markdown_table``), so the docs cannot drift from the code."""
import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])
MARKER = "<!-- methods-and-options -->"


def on_page_markdown(markdown, page, config, files):
    if MARKER not in markdown:
        return markdown
    try:
        import ueo_core  # noqa: F401  (installed, or the working directory is the repository)
    except ImportError:  # (MkDocs restores sys.path after loading a hook: the repository is added here)
        sys.path.insert(0, ROOT)
    from ueo_core.methods import METHODS
    from ueo_core.methods.options import markdown_table
    return markdown.replace(MARKER, markdown_table(METHODS))
