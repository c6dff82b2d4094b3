"""The package layout: imports run one way (no circle, lazy imports included), networks and file formats sit
at the bottom, the command line at the top, and every component kind a shipped model holds is in the one table."""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "diffedit_cli"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph():
    """module -> set of package modules it imports anywhere in its body (function-level imports included)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[:len(base) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                candidates = [target] + [f"{target}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            else:
                continue
            deps |= {c for c in candidates if c in modules and c != name}
        graph[name] = deps
    return graph


GRAPH = _import_graph()


def _reaches(graph, start):
    seen, todo = set(), [start]
    while todo:
        for dep in graph[todo.pop()]:
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def test_no_import_circle():
    # package __init__ files are excluded as targets: importing a.b imports a, which is not a dependency of a.b
    graph = {m: {d for d in deps if not (PACKAGE / Path(*d.split(".")[1:]) / "__init__.py").is_file()}
             for m, deps in GRAPH.items()}
    circles = [m for m in graph if m in _reaches(graph, m)]
    assert not circles, f"modules that import themselves through others: {sorted(circles)}"


@pytest.mark.parametrize("layer, allowed", [
    ("diffedit_cli.networks", {"diffedit_cli.networks", "diffedit_cli.diffusion", "diffedit_cli.errors",
                               "diffedit_cli.data.toyfaces"}),
    ("diffedit_cli.data", {"diffedit_cli.data", "diffedit_cli.errors"}),
    ("diffedit_cli.io", {"diffedit_cli.io", "diffedit_cli.networks", "diffedit_cli.errors", "diffedit_cli.hierarchy",
                         "diffedit_cli.diffusion", "diffedit_cli.data.toyfaces", "diffedit_cli"}),
    ("diffedit_cli.diffusion", set()),
])
def test_lower_layers_import_nothing_above_them(layer, allowed):
    for module, deps in GRAPH.items():
        if module == layer or module.startswith(layer + "."):
            above = {d for d in deps if not any(d == a or d.startswith(a + ".") for a in allowed) and d != "diffedit_cli"}
            assert not above, f"{module} imports {sorted(above)}"


def test_only_the_entry_point_imports_the_cli():
    importers = sorted(m for m, deps in GRAPH.items() if "diffedit_cli.cli" in deps)
    assert importers == ["diffedit_cli.__main__"]


def test_every_shipped_component_kind_loads_from_the_one_table():
    from diffedit_cli.io.models import COMPONENTS, load_component, shipped_models

    shipped = shipped_models()
    assert shipped, "no shipped models found"
    for name, folder in shipped.items():
        for component in json.loads((folder / "model_index.json").read_text())["components"]:
            assert component in COMPONENTS, f"{name}/{component}"
            module = load_component(folder / component, component)
            assert module.config.to_dict() == type(module.config).from_dict(module.config.to_dict()).to_dict()


def test_shell_completion_completes_command_names():
    env = dict(os.environ, _DIFFEDIT_COMPLETE="complete_bash", COMP_WORDS="diffedit ed", COMP_CWORD="1")
    done = subprocess.run([sys.executable, "-m", "diffedit_cli"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["edit"]
    shown = subprocess.run([sys.executable, "-m", "diffedit_cli", "--help"], capture_output=True, text=True, timeout=120)
    assert "--install-completion" in shown.stdout


def test_library_errors_name_parameters_and_the_cli_names_flags(capsys):
    """The library speaks of its parameters (``levels``, ``topk``); the CLI turns the name into its flag."""
    from diffedit_cli.cli import main
    from diffedit_cli.errors import DiffeditError, flag_message
    from diffedit_cli.networks.hierarchy import parse_levels
    from diffedit_cli.pipeline import pick_device

    with pytest.raises(DiffeditError) as err:
        parse_levels("9", 4)
    assert str(err.value).startswith("levels '9'") and "--" not in str(err.value) and err.value.param == "levels"
    with pytest.raises(DiffeditError) as err:
        pick_device("tpu")
    assert flag_message(err.value) == "--device 'tpu': expected auto, cpu or cuda[:N]"
    assert flag_message(DiffeditError("inv_steps must be >= 1", param="inv_steps")) == "--inv-steps must be >= 1"
    assert flag_message(DiffeditError("no such file", param="out")) == "no such file"  # only a leading name
    assert main(["encode", "whatever.png", "--device", "tpu"]) == 2
    assert capsys.readouterr().err.strip() == "error: --device 'tpu': expected auto, cpu or cuda[:N]"


def _flag_lines(path: Path) -> list:
    """Lines (code, messages, docstrings, comments) that spell a command-line flag."""
    import re

    flag = re.compile(r"(?<![\w-])--[A-Za-z]")
    return [line.strip() for line in path.read_text().splitlines() if flag.search(line)]


def test_no_library_module_spells_a_flag(capsys, tmp_path):
    """Only the front ends (cli/, and ui/, which shows commands) know flags: library messages name parameters with errors.opt, which the CLI spells as flags
    (one table, cli/options.py) and Python callers see as parameter names."""
    from diffedit_cli.cli import main
    from diffedit_cli.errors import DiffeditError, opt, spell, use_spelling

    found = {str(p.relative_to(PACKAGE)): _flag_lines(p) for p in PACKAGE.rglob("*.py")
             if "cli" not in p.parts and "ui" not in p.parts}  # the two front ends
    assert {k: v for k, v in found.items() if v} == {}
    use_spelling(lambda name: name)  # a Python caller
    assert str(DiffeditError(f"pass {opt('skip_existing')}")) == "pass skip_existing"
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "b.safetensors").write_bytes(b"")
    (tmp_path / "b.png").write_bytes((PACKAGE.parent / "examples" / "face.png").read_bytes())
    assert main(["encode", str(tmp_path / "b.png"), "--out", str(tmp_path / "out"), "-q"]) == 1
    assert "use --skip-existing to resume or --overwrite" in capsys.readouterr().err  # per-file line, CLI spelling
    assert spell(opt("inv_steps")) == "--inv-steps"
