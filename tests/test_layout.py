"""The house rules of the layout, checked on every module's imports (docs/architecture.md).

- the hub core imports only the standard library, gevent and itself;
- the HTTP edge (``web``) and the process layer (``serving``) import no door,
  no domain package and no operations route;
- no door package imports another door package (doors meet in the hub, the
  domain packages ``chat`` and ``packets``, and the HTTP edge);
- the domain packages and the operations routes import no door;
- a door's library (``mflow``, ``g3``) imports nothing of channelstream
  outside itself, but for its ``door`` package, which adapts it to the hub
  (and which the library's other modules do not import);
- the signing client imports no framework (a backend may use it alone).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: Packages that adapt one protocol to the hub.
DOORS = frozenset({"rest", "transports", "sio", "tcp_streamer", "amqp", "loom", "mflow", "g3"})
#: Packages that doors share.
DOMAIN = frozenset({"chat", "packets"})
#: Door packages whose modules are a library usable without the service (but ``door``).
LIBRARIES = frozenset({"mflow", "g3"})
#: The subpackage of a library that adapts it to the hub (``channelstream.<library>.door``).
LIBRARY_DOOR = "door"
#: What the hub core may import besides itself.
HUB_ALLOWED = frozenset({"gevent"})


def is_library_door(module: str) -> bool:
    """``channelstream.<library>.door`` or a module of it (``...door.source``)."""
    parts = module.split(".")
    return len(parts) > 2 and parts[1] in LIBRARIES and parts[2] == LIBRARY_DOOR


def modules() -> Iterator[tuple[str, Path]]:
    for path in sorted([*REPO.glob("channelstream/**/*.py"), *REPO.glob("loom/**/*.py")]):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


def imports(name: str, path: Path) -> Iterator[str]:
    """Every module ``name`` imports (relative imports resolved)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                if node.level > 1:
                    base = base[: -(node.level - 1)]
                yield ".".join([*base, *([node.module] if node.module else [])])
            else:
                yield node.module or ""


def area(module: str) -> str | None:
    """``loom``, or the package under ``channelstream`` (``hub``, ``web``...); None outside."""
    parts = module.split(".")
    if parts[0] == "loom":
        return "loom"
    if parts[0] == "channelstream" and len(parts) > 1:
        return parts[1]
    return None


EDGES = [(name, target) for name, path in modules() for target in imports(name, path)]


def offences(rule) -> list[str]:
    return [f"{name} imports {target}" for name, target in EDGES if rule(name, target)]


def test_the_layout_was_found():
    areas = {area(name) for name, _ in EDGES}
    assert {"hub", "web", "serving", "chat", "rest", "sio", "loom"} <= areas


def test_the_hub_imports_only_the_standard_library_gevent_and_itself():
    stdlib = sys.stdlib_module_names

    def bad(name: str, target: str) -> bool:
        if area(name) != "hub":
            return False
        top = target.split(".")[0]
        if top in ("channelstream", "loom"):
            return area(target) != "hub"
        return top not in stdlib and top not in HUB_ALLOWED and top != "__future__"

    assert offences(bad) == []


@pytest.mark.parametrize("layer", ["web", "serving"])
def test_the_http_edge_and_the_process_layer_import_no_door(layer):
    forbidden = DOORS | DOMAIN | {"ops"}
    assert offences(lambda n, t: area(n) == layer and area(t) in forbidden) == []


def test_no_door_imports_another_door():
    def bad(name: str, target: str) -> bool:
        here, there = area(name), area(target)
        return here in DOORS and there in DOORS and here != there

    assert offences(bad) == []


def test_domain_packages_and_operations_import_no_door():
    assert offences(lambda n, t: area(n) in DOMAIN | {"ops"} and area(t) in DOORS) == []


def test_a_door_library_imports_nothing_of_channelstream_outside_itself():
    def bad(name: str, target: str) -> bool:
        here = area(name)
        if here not in LIBRARIES or is_library_door(name):
            return False
        return target.split(".")[0] in ("channelstream", "loom") and area(target) != here

    assert offences(bad) == []


@pytest.mark.parametrize("library", sorted(LIBRARIES))
def test_a_door_library_leaves_its_door_package_to_the_service(library):
    """The door package is there, and no library module imports it (it imports the hub)."""
    names = {name for name, _ in modules() if area(name) == library}
    assert f"channelstream.{library}.door" in names
    assert offences(
        lambda n, t: n in names and not is_library_door(n) and is_library_door(t)
    ) == []


def test_the_signing_client_loads_no_framework():
    probe = (
        "import sys, channelstream.client; "
        "print(sorted(m for m in ('pyramid', 'gevent', 'webob', 'socketio', 'pika', 'zmq') "
        "if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert loaded.stdout.strip() == "[]"
