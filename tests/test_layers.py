"""The architecture as rules over the source: layers import only downwards, and IO stays in
the layers that own it. Read from the AST, so a rule holds whatever the code does at run time."""

from __future__ import annotations

import ast
import functools
import inspect
import sys
import tomllib
from pathlib import Path

import pytest

from xfer import errors

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "xfer"
# Arrows point down only: a module may import its own layer and the layers below it.
RANK = {"errors": 0, "settings": 0, "configuration": 0, "logs": 0, "tls": 0, "proto": 1, "clients": 2,
        "engine": 3, "images": 4,
        "jobs": 5, "web": 6, "app": 7, "upload": 7, "check": 7, "cli": 8, "dev": 9}
# proto/ is sans-IO: besides its own modules and errors, only these standard modules.
PROTO_STDLIB = {"__future__", "collections", "dataclasses", "datetime", "enum", "fnmatch",
                "hashlib", "json", "re", "typing", "urllib"}


def modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found.append((name, path))
    return found


@functools.cache  # every rule reads every file: parse each once per session
def imports_of(path: Path) -> frozenset[str]:
    """Every module a file imports, at any depth (lazy imports inside functions count)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from aiohttp import web` names aiohttp.web, not the whole of aiohttp
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return frozenset(names)


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "xfer"


MODULES = modules()


@pytest.mark.parametrize("module, path", MODULES, ids=[m for m, _ in MODULES])
def test_layers_import_only_downwards(module: str, path: Path) -> None:
    own = layer(module)
    if own in ("xfer", "sql"):
        return
    upward = sorted(name for name in imports_of(path) if name.startswith("xfer.")
                    and layer(name) in RANK and RANK[layer(name)] > RANK[own])
    # cli.py is the command line: the one module outside dev/ that offers dev's commands
    if own == "cli":
        upward = [name for name in upward if layer(name) != "dev"]
    assert upward == [], f"{module} ({own}) imports from a higher layer: {upward}"


def importers_of(prefix: str) -> set[str]:
    return {module for module, path in MODULES
            if any(name == prefix or name.startswith(prefix + ".") for name in imports_of(path))}


def test_only_the_store_and_the_migrator_use_asyncpg() -> None:
    assert importers_of("asyncpg") == {"xfer.jobs.store", "xfer.jobs.duty_store", "xfer.jobs.db"}


def test_only_clients_use_the_aiohttp_client() -> None:
    """The web layer serves with aiohttp.web; every outgoing request goes through clients/
    (dev/ is tooling: the local cloud and the demo talk to the API they start)."""
    client_users = {module for module, path in MODULES
                    if any(name == "aiohttp" or (name.startswith("aiohttp.")
                                                 and not name.startswith("aiohttp.web"))
                           for name in imports_of(path))}
    outside = {m for m in client_users if layer(m) not in ("clients", "dev")}
    assert outside == set()


def test_only_the_web_layer_uses_pydantic() -> None:
    """Request models are the API's own: the jobs layer gets a frozen JobRequest from them."""
    assert {layer(m) for m in importers_of("pydantic") | importers_of("pydantic_core")} == {"web"}


def test_engine_imports_neither_jobs_nor_web() -> None:
    engine = {m for m, _ in MODULES if layer(m) == "engine"}
    for higher in ("xfer.jobs", "xfer.web"):
        assert importers_of(higher) & engine == set()


# --- one room for the image feature: engine/ and proto/ hold no image-copy policy ----------

# The engine copies bytes from a SourceReader (engine/sources.py) to Swift targets: the image
# layer implements the reader for an image read through its Glance, so the engine needs none
# of these.
NOT_FOR_THE_ENGINE = ("xfer.images", "xfer.jobs", "xfer.web", "xfer.clients.glance",
                      "xfer.proto.glance")
ENGINE = [(m, p) for m, p in MODULES if layer(m) == "engine"]


def identifiers(path: Path) -> set[str]:
    """Every name a module defines or uses: functions, classes, arguments, variables and
    attributes (not its strings and comments, which may say what a caller is)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.alias):
            names.add(node.asname or node.name)
    return names


@pytest.mark.parametrize("module, path", ENGINE, ids=[m for m, _ in ENGINE])
def test_the_engine_knows_nothing_of_images_glance_or_jobs(module: str, path: Path) -> None:
    imported = {name for name in imports_of(path)
                if any(name == banned or name.startswith(banned + ".")
                       for banned in NOT_FOR_THE_ENGINE)}
    assert imported == set(), f"{module} imports {sorted(imported)}"
    named = {name for name in identifiers(path)
             if "glance" in name.lower() or "image" in name.lower()}
    assert named == set(), f"{module} names {sorted(named)}: image policy is images/'s"


# proto/glance.py is Glance's wire format: request builders (`*_request`), reply readers
# (`parse_*`, `check_*`), the records they give, and these few helpers of the same wire format.
# What a copy carries over, which images may be read and where xfer reads their bytes are
# policy, in images/ (properties.py, data.py): a new public name here is one of the three
# kinds or is listed here deliberately.
GLANCE_WIRE_HELPERS = {
    "SERVICE", "LOCATIONS_API_VERSION", "SWIFT_SCHEMES",  # constants of the protocol
    "Image", "ImageTask", "SwiftLocation",  # records parsed from Glance's replies
    "glance_message", "request_id", "raise_for_status", "image_from",  # reading replies
    "location_scheme", "location_url",  # glance_store's location URL syntax
}
# The image feature's errors: raised by its policy, never by the wire format.
IMAGE_POLICY_ERRORS = {"xfer.errors.ImageNotActive", "xfer.errors.UnsupportedStore"}


def test_proto_glance_exports_only_the_wire_format() -> None:
    tree = ast.parse((PACKAGE / "proto" / "glance.py").read_text())
    public = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            public.add(node.name)
        elif isinstance(node, ast.Assign):
            public.update(target.id for target in node.targets if isinstance(target, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            public.add(node.target.id)
    public = {name for name in public if not name.startswith("_")}
    unexplained = {name for name in public - GLANCE_WIRE_HELPERS
                   if not (name.endswith("_request") or name.startswith(("parse_", "check_")))}
    assert unexplained == set(), f"proto/glance.py defines {sorted(unexplained)}: policy?"


@pytest.mark.parametrize("module, path", [(m, p) for m, p in MODULES if layer(m) == "proto"])
def test_proto_raises_none_of_the_image_policy_errors(module: str, path: Path) -> None:
    assert imports_of(path) & IMAGE_POLICY_ERRORS == set()


def test_nothing_outside_dev_imports_dev() -> None:
    assert {m for m in importers_of("xfer.dev") if layer(m) != "dev"} == {"xfer.cli"}


@pytest.mark.parametrize("module, path", [(m, p) for m, p in MODULES if layer(m) == "proto"])
def test_proto_does_no_io(module: str, path: Path) -> None:
    for name in imports_of(path):
        top = name.split(".")[0]
        if top == "xfer":
            assert layer(name) in ("proto", "errors"), f"{module} imports {name}"
        else:
            assert top in PROTO_STDLIB, f"{module} imports {name}, which may do IO"


def test_every_package_under_xfer_is_listed_for_the_wheel() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"])
    packages = {module for module, path in MODULES if path.name == "__init__.py"}
    assert packages <= listed and listed - packages == {"xfer.sql", "xfer.sql.migrations"}


def test_every_exception_class_is_drawn_in_the_tree() -> None:
    """errors.py's docstring draws the exception tree; each class xfer defines is in it."""
    for module, _ in MODULES:
        if module.endswith("swift_main"):  # runs in the local cloud's own venv
            continue
        __import__(module)
    defined = {cls.__name__ for module, _ in MODULES if module in sys.modules
               for _, cls in inspect.getmembers(sys.modules[module], inspect.isclass)
               if issubclass(cls, BaseException) and cls.__module__.startswith("xfer")}
    assert defined
    tree = errors.__doc__ or ""
    assert {name for name in defined if name not in tree} == set()
    for module, _ in MODULES:
        for _, cls in inspect.getmembers(sys.modules.get(module), inspect.isclass):
            if issubclass(cls, BaseException) and cls.__module__.startswith("xfer"):
                assert issubclass(cls, errors.XferError), f"{cls} is outside the one root"



def test_a_source_read_through_glance_is_typed_and_its_stored_name_spelled_once() -> None:
    """images/types.ThroughGlance, not a marker container in an ObjectRef: the name a job's
    row and the API give it is written in jobs/records.py alone."""
    spelled = {module for module, path in MODULES for node in ast.walk(ast.parse(path.read_text()))
               if isinstance(node, ast.Constant) and node.value == "glance:file"}
    assert spelled == {"xfer.jobs.records"}
