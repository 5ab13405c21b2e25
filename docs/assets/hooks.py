"""MkDocs hooks for the API reference.

tinyml's docstrings are written reStructuredText-style (``:class:`Profile```,
literal blocks introduced by ``::``). mkdocstrings renders them as Markdown,
which leaves the Sphinx roles and the double colons visible. This hook tidies
the rendered HTML: roles become plain code, ``Tile loop::`` becomes
``Tile loop:``. It changes no content.
"""

from __future__ import annotations

import re

_ROLE = re.compile(r":(?:py:)?(?:mod|class|func|meth|attr|data|exc|obj|const):(<code>)")
_TILDE = re.compile(r"<code>~(?:[\w]+\.)*([\w]+)</code>")
_DOUBLE_COLON = re.compile(r"::(\s*</p>)")


def on_page_content(html: str, page, config, files) -> str:
    if not page.file.src_uri.startswith("api/"):
        return html
    html = _ROLE.sub(r"\1", html)
    html = _TILDE.sub(r"<code>\1</code>", html)
    return _DOUBLE_COLON.sub(r":\1", html)
