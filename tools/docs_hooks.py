"""MkDocs hooks: pages generated from the code, so they cannot go stale.

* ``<!-- PARAMETERS -->`` becomes the table of every config parameter (section, name, unit,
  default, source, meaning), read from the config dataclasses;
* ``<!-- PRESETS -->`` the table of presets, from ``analogtrain.presets``;
* ``<!-- CLI -->`` the ``--help`` of every command, from the argument parser;
* the docstrings' cross-reference roles (``:class:`X```, ``:func:`X```, ...), which the API pages
  would otherwise show as text, are shown as the code name they point to.
"""

from __future__ import annotations

import dataclasses
import re

#: a reST role before a code span, as mkdocstrings renders ``:class:`X``` in HTML
_ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|obj|exc):(?=<code>)")


def _cell(v) -> str:
    return str(v).replace("|", "\\|").replace("\n", " ")


def parameters_table() -> str:
    from analogtrain.config import ExperimentConfig

    rows = ["| parameter | unit | default | source | meaning |", "|---|---|---|---|---|"]

    def walk(obj, prefix: str) -> None:
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                walk(value, f"{prefix}{f.name}.")
                continue
            m = f.metadata
            rows.append(f"| `{prefix}{f.name}` | {_cell(m.get('unit', ''))} | `{_cell(value)}` | "
                        f"{_cell(m.get('source', ''))} | {_cell(m.get('doc', ''))} |")

    walk(ExperimentConfig(), "")
    return "\n".join(rows)


def presets_table() -> str:
    from analogtrain.presets import preset_descriptions

    rows = ["| preset | what it is |", "|---|---|"]
    rows += [f"| `{name}` | {_cell(desc)} |" for name, desc in preset_descriptions().items()]
    return "\n".join(rows)


def cli_help() -> str:
    import argparse

    from analogtrain.cli import make_parser

    parser = make_parser()
    out = ["```text", parser.format_help().rstrip(), "```"]
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in sub.choices.items():
        out += ["", f"## `analogtrain {name}`", "", "```text", p.format_help().rstrip(), "```"]
    return "\n".join(out)


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ARG001 - the MkDocs hook signature
    for marker, make in (("<!-- PARAMETERS -->", parameters_table), ("<!-- PRESETS -->", presets_table),
                         ("<!-- CLI -->", cli_help)):
        if marker in markdown:
            markdown = markdown.replace(marker, make())
    return markdown


def on_post_page(output: str, page, config) -> str:  # noqa: ARG001 (MkDocs hook signature)
    return _ROLE.sub("", output)
