"""MkDocs hook: pages made from files outside ``docs/`` at build time.

- ``index.md`` is README.md, its ``docs/...`` links made relative to the site;
- ``changelog.md`` is CHANGELOG.md;
- ``reference/api.md`` has one mkdocstrings block per name of ``stategrad._API``, grouped
  by subpackage, so a name added to the public API gets its entry and a renamed or
  removed one fails ``mkdocs build --strict``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[2]

# subpackage -> heading and one line on what it holds, in pipeline order
_SECTIONS = {
    "data": ("Data", "Texts, vocabularies, tagged corpora and word classes."),
    "lm": ("Language models and training", "Models, checkpoints, configuration, training."),
    "legacy": ("The original's configuration files", "Reading the original `.config` files."),
    "gradients": ("State gradients", "The engine and its result files."),
    "analysis": ("Analysis", "Normalisation, singular values, memory, relative memory, probes."),
    "report": ("Figures and reports", "The HTML report and the sentence view."),
    "synth": ("Synthetic language", "A language whose memory is known in advance."),
}


def public_api() -> dict[str, str]:
    """``stategrad._API`` read from the source without importing the package."""
    tree = ast.parse((ROOT / "src" / "stategrad" / "__init__.py").read_text(encoding="utf-8"))
    for node in tree.body:
        target = node.target if isinstance(node, ast.AnnAssign) else (
            node.targets[0] if isinstance(node, ast.Assign) else None)
        if isinstance(target, ast.Name) and target.id == "_API":
            return ast.literal_eval(node.value)
    raise RuntimeError("stategrad/__init__.py defines no _API")


def object_path(sub: str, name: str) -> str:
    """Where mkdocstrings finds a name. A function named like the module that defines it
    (``analysis.relative_memory``) is shadowed by that module in the static view, so it
    is named inside its module."""
    package = ROOT / "src" / "stategrad" / sub
    if (package / f"{name}.py").exists() or (package / name).is_dir():
        return f"stategrad.{sub}.{name}.{name}"
    return f"stategrad.{sub}.{name}"


def api_page(api: dict[str, str]) -> str:
    lines = ["# API reference", "",
             "The public API: every name below can be imported from the package root "
             "(`import stategrad as sg; sg.load_model(...)`) and is documented under the "
             "subpackage that defines it. The command line is a thin layer over these.", ""]
    order = list(_SECTIONS) + sorted(set(api.values()) - set(_SECTIONS))
    for sub in order:
        names = sorted(n for n, s in api.items() if s == sub)
        if not names:
            continue
        title, blurb = _SECTIONS.get(sub, (f"`stategrad.{sub}`", ""))
        lines += [f"## {title}", "", blurb, ""] if blurb else [f"## {title}", ""]
        lines += [f"::: {object_path(sub, name)}\n" for name in names]
    return "\n".join(lines)


def readme_page() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.sub(r"\]\(docs/", "](", text)


def on_files(files, config):
    pages = {
        "index.md": readme_page(),
        "changelog.md": (ROOT / "CHANGELOG.md").read_text(encoding="utf-8"),
        "reference/api.md": api_page(public_api()),
    }
    for path, content in pages.items():
        files.append(File.generated(config, path, content=content))
    return files
