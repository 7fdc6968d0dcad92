"""A partner's developer generates a Python client from each OpenAPI document, as a new user would.

`openapi-python-client generate --path openapi.json --meta none` on the document of `backbone up` (the
command API with the read API beside it) and on that of `backbone read-api` alone. The generation must be
clean (no warning about a schema it cannot express), the packages must import in a fresh interpreter, and
the names must be the business's: modules named by operationId under their tag, models named as the
components are, no path fragments or repeated words. Then the generated client walks one order: a customer
initiates it, reads it, and reads it back from the shop view.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any
from uuid import UUID

import httpx
import pytest

from http_edge.identity import mint_token
from orders_core.lifecycle import Role
from tests.conftest import JWT_SECRET, RunningApi
from tests.security.servers import backbone

GENERATOR = Path(sys.executable).with_name("openapi-python-client")
FREE_FORM = {"ReadHealth", "ReadReadiness", "ReadLiveness"}
"""Operations whose answer is a free-form JSON object, not a named schema: the generator names its model
after the operation (ReadHealthResponse200). Every other answer has a component of its own."""


@dataclass(frozen=True)
class Generated:
    """A client package generated from one OpenAPI document."""

    doc: dict[str, Any]
    root: Path
    """The directory the package is in (what goes on sys.path)."""
    package: str
    output: str
    """What the generator printed."""

    @property
    def path(self) -> Path:
        return self.root / self.package

    def module(self, name: str) -> ModuleType:
        return importlib.import_module(f"{self.package}.{name}")


def generate(doc: dict[str, Any], root: Path) -> Generated:
    """Run the generator as its README says, in a directory of its own; the package is named by it."""
    root.mkdir()
    spec = root / "openapi.json"
    spec.write_text(json.dumps(doc))
    # Its post-generation hooks run `ruff` from PATH, as a developer's shell would have it.
    env = {**os.environ, "PATH": f"{GENERATOR.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(
        [str(GENERATOR), "generate", "--path", str(spec), "--meta", "none", "--fail-on-warning"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    packages = [p.name for p in root.iterdir() if (p / "__init__.py").exists()]
    assert len(packages) == 1, (packages, output)
    return Generated(doc, root, packages[0], output)


@pytest.fixture(scope="module")
def read_api(system: RunningApi) -> Iterator[RunningApi]:
    """`backbone read-api` alone, on the views `system` keeps."""
    with backbone("read-api", system.database_url, system.home) as api:
        yield api


@pytest.fixture(scope="module")
def clients(
    system: RunningApi, read_api: RunningApi, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Generated]]:
    """A client of each document, importable here too."""
    base = tmp_path_factory.mktemp("generated")
    generated = {
        name: generate(httpx.get(f"{api.base_url}/schema/openapi.json", timeout=30).json(), base / name)
        for name, api in (("up", system), ("read", read_api))
    }
    for client in generated.values():
        sys.path.insert(0, str(client.root))
    try:
        yield generated
    finally:
        for client in generated.values():
            sys.path.remove(str(client.root))


def snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(path, method, operation) of every operation in the document."""
    return [
        (path, method, op)
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if isinstance(op, dict) and "responses" in op
    ]


def success_schema(op: dict[str, Any]) -> dict[str, Any]:
    answer = next(r for status, r in op["responses"].items() if status.startswith("2"))
    schema: dict[str, Any] = answer.get("content", {}).get("application/json", {}).get("schema", {})
    return schema


def model_names(client: Generated) -> set[str]:
    return set(client.module("models").__all__)


def repeats(tokens: list[str]) -> bool:
    """Whether a run of words comes twice in a row (mes_orders_mes_orders, order_order)."""
    n = len(tokens)
    return any(
        tokens[i : i + k] == tokens[i + k : i + 2 * k]
        for k in range(1, n // 2 + 1)
        for i in range(n - 2 * k + 1)
    )


def test_generation_is_clean_and_the_packages_import(clients: dict[str, Generated]) -> None:
    for client in clients.values():
        assert "warning" not in client.output.lower(), client.output
        imports_all = (
            "import importlib, pkgutil, sys\n"
            "sys.path.insert(0, sys.argv[1])\n"
            "package = importlib.import_module(sys.argv[2])\n"
            "names = [m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + '.')]\n"
            "for name in names:\n"
            "    importlib.import_module(name)\n"
            "print(len(names))\n"
        )
        done = subprocess.run(
            [sys.executable, "-W", "error", "-c", imports_all, str(client.root), client.package],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert int(done.stdout) > 10
    assert clients["up"].package == "alexandrite_order_backbone_api_client"
    assert clients["read"].package == "alexandrite_read_api_client"


def test_each_operation_is_a_module_named_by_its_operation_id_under_its_tag(
    clients: dict[str, Generated],
) -> None:
    for client in clients.values():
        expected = {f"{op['tags'][0]}/{snake(op['operationId'])}.py" for _, _, op in operations(client.doc)}
        api = client.path / "api"
        found = {str(p.relative_to(api)) for p in api.glob("*/*.py") if p.name != "__init__.py"}
        assert found == expected
    up = {str(p.relative_to(clients["up"].path / "api")) for p in (clients["up"].path / "api").glob("*/*.py")}
    assert {
        "orders/initiate_order.py",
        "orders/read_order.py",
        "orders/submit_order.py",
        "orders/read_history.py",
        "catalog/set_material.py",
        "shop/read_shop_order.py",
        "shop/list_shop_orders.py",
        "mes/list_mes_orders.py",
        "operations/read_health.py",
    } <= up


def test_names_carry_no_path_fragments_or_repeated_words(clients: dict[str, Generated]) -> None:
    """What the document names: tags, operation modules, models and their modules (the rest of the package,
    client.py and the like, is the generator's own)."""
    for client in clients.values():
        api = client.path / "api"
        names = [p.name for p in api.iterdir() if p.is_dir()]
        names += [p.stem for p in api.glob("*/*.py") if p.name != "__init__.py"]
        names += [p.stem for p in (client.path / "models").glob("*.py") if p.name != "__init__.py"]
        names += sorted(model_names(client))
        for name in names:
            words = snake(name).split("_")
            assert not repeats(words), name
            assert "order_id" not in snake(name), name  # a path parameter: a name made from the path
            assert not {"get", "post", "put", "delete", "patch"} & set(words), name


def test_models_are_named_as_the_components_are(clients: dict[str, Generated]) -> None:
    for client in clients.values():
        components = set(client.doc["components"]["schemas"])
        models = model_names(client)
        assert components <= models
        # Besides the components: objects inside one (OrderViewStatusTimes), and the free-form answers.
        extra = models - components
        inner = {m for m in extra if any(m.startswith(c) for c in components)}
        assert extra - inner == {f"{op}Response200" for op in FREE_FORM}
        assert not [
            m for m in models if re.search(r"Body|Type\d|Response\d{3}$", m) and m not in extra - inner
        ]
    assert {"OrderView", "NewOrder", "Channel", "CatalogView", "HistoryEntry", "Quote"} <= model_names(
        clients["up"]
    )
    read = {"ShopOrder", "ShopOrderPage", "ShopCatalog", "MesOrder", "MesOrderPage", "MesOrderSort", "Status"}
    assert read <= model_names(clients["read"])


def test_every_named_answer_is_parsed_into_its_model(clients: dict[str, Generated]) -> None:
    """Each operation with a named success schema returns that model from `sync` (not `Any`)."""
    for client in clients.values():
        for _, _, op in operations(client.doc):
            ref = success_schema(op).get("$ref") or success_schema(op).get("items", {}).get("$ref")
            if ref is None:
                continue
            module = client.path / "api" / op["tags"][0] / f"{snake(op['operationId'])}.py"
            sync = next(
                n
                for n in ast.walk(ast.parse(module.read_text()))
                if isinstance(n, ast.FunctionDef) and n.name == "sync"
            )
            assert sync.returns is not None
            assert ref.rsplit("/", 1)[1] in ast.unparse(sync.returns), op["operationId"]
    orders = [op for path, _, op in operations(clients["up"].doc) if path.startswith(("/orders", "/catalog"))]
    assert all(success_schema(op) for op in orders)


def test_a_customer_walks_an_order_with_the_generated_client(
    clients: dict[str, Generated], system: RunningApi, read_api: RunningApi
) -> None:
    up, read = clients["up"], clients["read"]
    models = up.module("models")
    token = mint_token(JWT_SECRET, Role.CUSTOMER, "generated-ann")
    with (
        up.module("client").AuthenticatedClient(base_url=system.base_url, token=token) as commands,
        read.module("client").AuthenticatedClient(base_url=read_api.base_url, token=token) as views,
    ):
        body = models.NewOrder(
            contact_name="Ann", item_title="Signet ring", material_code="AU750", quantity=2
        )
        created = up.module("api.orders.initiate_order").sync_detailed(client=commands, body=body)
        assert created.status_code == 201, created.content
        order = created.parsed
        assert isinstance(order, models.OrderView)
        assert isinstance(order.order_id, UUID) and order.owner_id == "generated-ann"
        assert order.channel == "shop" and order.status == "INITIATED" and "AttachModel" in order.allowed

        again = up.module("api.orders.read_order").sync(client=commands, order_id=order.order_id)
        assert isinstance(again, models.OrderView)
        assert (again.order_id, again.number, again.quantity) == (order.order_id, order.number, 2)

        position = int(created.headers["X-Position"])
        shown = read.module("api.shop.read_shop_order").sync_detailed(
            client=views, order_id=order.order_id, min_position=position
        )
        assert shown.status_code == 200, shown.content
        seen = shown.parsed
        assert isinstance(seen, read.module("models").ShopOrder)
        assert (seen.order_id, seen.number, seen.status, seen.quantity) == (
            order.order_id,
            order.number,
            order.status,
            2,
        )

        missing = up.module("api.orders.read_order").sync(
            client=commands, order_id=UUID("00000000-0000-4000-8000-000000000000")
        )
        assert isinstance(missing, models.Error) and missing.error == "not_found"
