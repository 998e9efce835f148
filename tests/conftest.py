"""Make `--dist loadgroup` keep each Verilator build's tests on one xdist worker.

pytest 9 stores node ids in `Node._id`; pytest-xdist 3.8's loadgroup still appends the group to the
old `Node._nodeid`, so its grouping silently does nothing (both workers would wait on one build and
simulate it twice). This hook applies the group suffix the way xdist means it, for every test of the suite
(RTL regression, campaign, synthesis), and stands aside once xdist does it itself.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent


def pytest_configure(config) -> None:  # type: ignore[no-untyped-def]
    # pyverilog 1.3.0 (pinned) has a non-raw regex in its lexer: a warning about its source, not ours.
    config.addinivalue_line("filterwarnings",
                            r"ignore:invalid escape sequence:DeprecationWarning:.*pyverilog.vparser.lexer")


def pytest_collection_modifyitems(config, items) -> None:  # type: ignore[no-untyped-def]
    if not getattr(config.option, "loadgroup", False):
        return
    from _pytest.nodeid import NodeId

    for item in items:
        if HERE not in Path(item.path).resolve().parents:
            continue
        names = sorted(
            {str(m.args[0] if m.args else m.kwargs.get("name", "default")) for m in item.iter_markers("xdist_group")}
        )
        nodeid = item.nodeid
        if names and nodeid.rfind("@") <= nodeid.rfind("]"):
            item._id = NodeId.parse(f"{nodeid}@{'_'.join(names)}")  # noqa: SLF001 - see the module docstring
