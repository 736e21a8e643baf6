"""The public cluster API (issue 42): every name :mod:`prism_testkit.clusters` exports is
importable, documented and typed, and the built-in backends take every cluster piece from it
and from nowhere else (read from their source with :mod:`ast`)."""

from __future__ import annotations

import ast
import inspect
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import prism_testkit.clusters as clusters
from tests._parsing import parse

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = ROOT / "prism_testkit" / "backends"
PUBLIC = "prism_testkit.clusters"
# The modules the public API stands in front of: a backend imports none of them.
BEHIND = (
    "prism_testkit.provision.cluster",
    "prism_testkit.provision.netns",
    "prism_testkit.provision.workdirs",
    "prism_testkit.provision.lazymount",
    "prism_testkit.faults.linkproxies",
    "prism_testkit.stateful.checkers.replicas",
    "prism_testkit.clusters.hosts",
)
# The built-in replicated registrations' provisioners.
BUILT_IN_CLUSTERS = ("nats/cluster.py", "postgres/ha.py", "redis/sentinel.py")


def exported() -> list[tuple[str, Any]]:
    return [(name, getattr(clusters, name)) for name in clusters.__all__]


def test_every_exported_name_is_importable_and_listed_once() -> None:
    assert len(clusters.__all__) == len(set(clusters.__all__))
    namespace: dict[str, Any] = {}
    exec(f"from {PUBLIC} import {', '.join(clusters.__all__)}", namespace)  # the statement an author writes
    assert all(namespace[name] is value for name, value in exported())
    # the pieces issue 42 found an author had to dig out of the core
    wanted = {"Cluster", "Network", "namespaces_unavailable_reason", "recording_dir", "mount_lazily", "LazyMounts"}
    assert wanted | {"diverged", "ClusterContract", "ClusterHosts", "LinkProxies"} <= set(clusters.__all__)


def test_the_package_is_typed() -> None:
    assert (ROOT / "prism_testkit" / "py.typed").exists()


def public_callables() -> list[tuple[str, Any]]:
    """The exported functions, and the public methods each exported class defines itself."""
    found = []
    for name, value in exported():
        if inspect.isfunction(value):
            found.append((name, value))
        elif inspect.isclass(value) and value.__module__.startswith("prism_testkit."):
            for attribute, member in vars(value).items():
                function = member.fget if isinstance(member, property) else member
                if not inspect.isfunction(function) or function.__name__ == "<lambda>":  # a field's default
                    continue
                # in our source: not an __init__ written by @dataclass or typing.Protocol
                ours = Path(function.__code__.co_filename).is_relative_to(ROOT / "prism_testkit")
                if ours and (not attribute.startswith("_") or attribute == "__init__"):
                    found.append((f"{name}.{attribute}", function))
    return found


@pytest.mark.parametrize(("name", "function"), public_callables(), ids=[n for n, _ in public_callables()])
def test_every_public_callable_is_annotated(name: str, function: Any) -> None:
    signature = inspect.signature(function)
    missing = [
        p.name for p in signature.parameters.values() if p.name not in ("self", "cls") and p.annotation is p.empty
    ]
    assert not missing, f"{name}: parameters without a type: {missing}"
    assert signature.return_annotation is not signature.empty, f"{name}: no return type"


@pytest.mark.parametrize("name", clusters.__all__)
def test_every_exported_name_is_documented(name: str) -> None:
    value = getattr(clusters, name)
    if inspect.isclass(value) or inspect.isfunction(value):
        own = value.__dict__.get("__doc__") if inspect.isclass(value) else value.__doc__
        assert (own or "").strip(), f"{name} has no docstring of its own"
    # constants and type aliases carry no docstring: the package's own says what each is
    assert f"{name}`" in (clusters.__doc__ or ""), f"the docstring of {PUBLIC} does not name {name}"


def test_every_contract_method_says_what_it_is_for() -> None:
    undocumented = [
        name
        for name, member in vars(clusters.ClusterContract).items()
        if not name.startswith("_")
        and inspect.isfunction(getattr(member, "fget", member))
        and not (getattr(member, "fget", member).__doc__ or "").strip()
        and name not in ("kill", "stop", "start", "pause", "resume", "wait_ready")  # ServerControl's own
    ]
    assert not undocumented, undocumented


def imports_of(path: Path) -> list[tuple[str, str]]:
    """(module, name) for every name ``path`` imports from a module of prism_testkit; (module, "")
    for ``import module``. Relative imports stay inside the backend: they are its own modules."""
    found = []
    for node in ast.walk(parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").startswith("prism_testkit"):
            found += [(node.module or "", alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(alias.name, "") for alias in node.names if alias.name.startswith("prism_testkit")]
    return found


def backend_sources() -> list[Path]:
    return sorted(p for p in BACKENDS.rglob("*.py") if "__pycache__" not in p.parts)


@pytest.mark.parametrize("path", backend_sources(), ids=lambda p: str(p.relative_to(BACKENDS)))
def test_backends_take_cluster_pieces_only_from_the_public_api(path: Path) -> None:
    public = set(clusters.__all__)
    wrong = [
        f"{module}{'.' + name if name else ''}"
        for module, name in imports_of(path)
        if any(module == m or module.startswith(m + ".") for m in BEHIND)
        or (name in public and module != PUBLIC)
        or (module == "prism_testkit.clusters" and name and name not in public)
    ]
    assert not wrong, f"{path.relative_to(ROOT)} imports cluster pieces from behind the public API: {wrong}"


# The worked out-of-tree cluster (examples/etcd) may import only what the manual documents for
# authors: prism_testkit's names, the cluster API, the typed errors and the patience scale.
EXAMPLE = ROOT / "examples" / "etcd" / "prism_etcd"
DOCUMENTED = {"prism_testkit", PUBLIC, "prism_testkit.errors", "prism_testkit.patience"}


def example_sources() -> list[Path]:
    return sorted(EXAMPLE.glob("*.py"))


@pytest.mark.parametrize("path", example_sources(), ids=lambda p: p.name)
def test_the_worked_cluster_example_imports_only_documented_names(path: Path) -> None:
    import prism_testkit

    wrong = [
        f"{module}{'.' + name if name else ''}"
        for module, name in imports_of(path)
        if module not in DOCUMENTED
        or (module == "prism_testkit" and name not in prism_testkit.__all__)
        or (module == PUBLIC and name not in clusters.__all__)
    ]
    assert not wrong, f"{path.relative_to(ROOT)} imports names the manual does not document: {wrong}"


def test_the_worked_cluster_example_is_built_on_the_public_api() -> None:
    assert any(module == PUBLIC for module, _ in imports_of(EXAMPLE / "provision.py"))


@pytest.mark.parametrize("relative", BUILT_IN_CLUSTERS)
def test_each_built_in_cluster_is_built_on_the_public_api(relative: str) -> None:
    assert any(module == PUBLIC for module, _ in imports_of(BACKENDS / relative))


def test_the_check_catches_an_import_from_behind(tmp_path: Path) -> None:
    sneaky = tmp_path / "sneaky.py"
    sneaky.write_text(
        "from prism_testkit.provision.netns import Network\nfrom prism_testkit.provision.base import mount_lazily\n"
    )
    found = imports_of(sneaky)
    public = set(clusters.__all__)
    assert [m for m, n in found if any(m == b for b in BEHIND) or (n in public and m != PUBLIC)] == [
        "prism_testkit.provision.netns",
        "prism_testkit.provision.base",
    ]


def test_hosts_are_chosen_by_what_the_machine_allows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(clusters.NETWORK_MODE, raising=False)
    monkeypatch.setattr(clusters.hosts, "namespaces_unavailable_reason", lambda: "network namespaces need root")
    mode, why = clusters.network_mode()
    assert mode == clusters.PROXIES  # automatic: no setting asked for it
    assert "need root" in why
    with pytest.raises(Exception, match="namespaces, but network namespaces need root"):
        clusters.network_mode(clusters.NAMESPACES)
    monkeypatch.setattr(clusters.hosts, "namespaces_unavailable_reason", lambda: None)
    assert clusters.network_mode()[0] == clusters.NAMESPACES
    monkeypatch.setenv(clusters.NETWORK_MODE, "proxies")
    assert clusters.network_mode()[0] == clusters.PROXIES


def test_link_proxy_hosts_name_each_peer_through_its_link(tmp_path: Path) -> None:
    hosts = clusters.ClusterHosts.open(3, peer_port=6222, workdir=tmp_path, mode=clusters.PROXIES)
    try:
        assert isinstance(hosts.network, clusters.LinkProxies)
        assert {hosts.address(i) for i in range(3)} == {clusters.LOOPBACK}
        assert len(set(hosts.peer_ports)) == 3  # one node's ports are not another's on loopback
        assert hosts.port(1, 4222) == hosts.port(1, 4222) != hosts.port(2, 4222)
        assert hosts.peer(0, 1) == (clusters.LOOPBACK, hosts.network.link_port(0, 1)) != hosts.peer(2, 1)
        assert hosts.argv(0, ["server", "-c", "x"]) == ["server", "-c", "x"]
    finally:
        hosts.close()


def test_an_endpoint_holds_its_cluster_once() -> None:
    from prism_testkit import Endpoint, Via

    cluster = clusters.Cluster([], clusters.LinkProxies(0, {}), probe_port=1)
    endpoint = Endpoint("nats://127.0.0.1:1", Via.BINARY, cluster=cluster)
    assert endpoint.control is cluster  # the cluster is the endpoint's process control too
    assert endpoint.options["cluster"] is cluster  # where readers written before ``cluster=`` look
    older = Endpoint("nats://127.0.0.1:1", Via.BINARY, control=cluster, options={"cluster": cluster})
    assert older.cluster is cluster
    assert endpoint.rerouted("127.0.0.1", 2).cluster is cluster


def test_a_file_that_vanishes_while_files_walks_is_not_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A running server removes files while the walk lists them (NATS's ``__new_msgs__``): the
    damaged_leader suite once failed its verdict on the FileNotFoundError."""
    (tmp_path / "streams" / "s" / "msgs").mkdir(parents=True)
    kept, gone = tmp_path / "streams" / "s" / "msgs" / "1.blk", tmp_path / "streams" / "s" / "msgs" / "2.blk"
    kept.write_bytes(b"x")
    gone.write_bytes(b"y")
    (tmp_path / "streams" / "s" / "msgs" / "3.blk").write_bytes(b"")  # empty: nothing to damage
    real_stat, looks = Path.stat, {gone: 0}

    def stat(self: Path, **kwargs: object) -> os.stat_result:
        if self in looks:  # there when first looked at, removed before the next look
            looks[self] += 1
            if looks[self] > 1:
                raise FileNotFoundError(self)
        return real_stat(self, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "stat", stat)
    (tmp_path / "other").mkdir()
    elsewhere = tmp_path / "other" / "1.blk"
    elsewhere.write_bytes(b"z")
    cluster = clusters.Cluster([SimpleNamespace(cwd=tmp_path)], clusters.LinkProxies(0, {}), probe_port=1)  # type: ignore[list-item]
    assert cluster.files(0, "*.blk") == [elsewhere, kept]
    assert cluster.files(0, "streams/s/msgs/*.blk") == [kept]  # a stream's own files, as stream_files names them
