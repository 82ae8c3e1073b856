"""The transcoder's modules import each other in one direction only (no import circles)."""

from __future__ import annotations

import grimp


def test_no_two_transcoder_modules_import_each_other_even_indirectly() -> None:
    # Type-checking imports count too: mypy and readers follow them like any other.
    graph = grimp.build_graph("videoflix_transcoder", cache_dir=None)
    modules = sorted(graph.modules)
    circles = [
        (importer, imported)
        for importer in modules
        for imported in modules
        if importer < imported
        and graph.find_shortest_chain(importer=importer, imported=imported)
        and graph.find_shortest_chain(importer=imported, imported=importer)
    ]
    assert circles == []
