"""The package's structure rules, checked on its source (no import of the modules needed).

- no import cycle between modules (imports inside functions count too);
- no module reads another module's underscore attribute (but a class reads those its
  base class in another package module defines, as a subclass may);
- the device question (is the array module NumPy?) is asked in ctre_sparse/device.py only;
- the model, the trainer and the topology code reach compiled kernels only
  through the ops (no numba there).
"""

import ast
from pathlib import Path

import ctre_sparse

PACKAGE = Path(ctre_sparse.__file__).resolve().parent
SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _module_name(path):
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in SOURCES}


def _resolve(module, level, name):
    """Absolute name of ``from <level dots><name> import ...`` inside ``module``."""
    path = MODULES[module]
    base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    if level > 1:
        base = base[:-(level - 1)]
    return ".".join(base + ([name] if name else []))


def _imports(module):
    """The package modules that ``module`` imports, anywhere in its body."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("ctre_sparse"))
        elif isinstance(node, ast.ImportFrom):
            target = (_resolve(module, node.level, node.module) if node.level
                      else node.module or "")
            if not target.startswith("ctre_sparse"):
                continue
            for alias in node.names:  # "from . import ops": ops is a module
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in MODULES else target)
    return {m for m in found if m in MODULES and m != module}


def _cycles(graph):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, result = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                result.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return result


def _is_package_parent(a, b):
    return b.startswith(a + ".") or a.startswith(b + ".")


def test_no_import_cycle():
    # a package importing its own submodules (its __init__) is how packages are built, and a
    # submodule importing a sibling through the package is not a cycle of modules
    graph = {m: {d for d in _imports(m) if not _is_package_parent(m, d)} for m in MODULES}
    assert _cycles(graph) == []


def test_the_cycle_check_can_fail():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]


def _defined_names(tree):
    """Names a module defines itself: functions, classes, variables, attributes of self/cls."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) \
                and isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return names


def _base_class_names(path, tree):
    """Names defined by the package classes that the classes of ``path`` derive from.

    A subclass uses its base class's underscore names as its own (a mixin's
    methods are the class's methods); a base class gets no names of its
    subclasses, nor a module those of the classes it merely imports.
    """
    imported = {}  # local name -> (package module, class name)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "")
                                                 .startswith("ctre_sparse")):
            if node.level and path not in SOURCES:
                continue   # a relative import outside the package: nothing to resolve
            target = _resolve(_module_name(path), node.level, node.module) if node.level \
                else node.module
            imported.update({a.asname or a.name: (target, a.name) for a in node.names})
    names = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        for base in node.bases:
            module, name = imported.get(getattr(base, "id", None), (None, None))
            if module not in MODULES:
                continue
            for cls in ast.parse(MODULES[module].read_text()).body:
                if isinstance(cls, ast.ClassDef) and cls.name == name:
                    names |= _defined_names(cls)
    return names


def _foreign_private_reads(path):
    tree = ast.parse(path.read_text())
    own = _defined_names(tree) | _base_class_names(path, tree)
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") \
                and not node.attr.startswith("__") and node.attr not in own:
            bad.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
            bad += [f"{path.name}:{node.lineno}: import {a.name}" for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")
                    and not _is_module(path, node, a.name)]
    return bad


def _is_module(path, node, name):
    """``from <pkg> import _name`` of a (private) module, e.g. the compiled extension."""
    module = _module_name(path)
    target = _resolve(module, node.level, node.module) if node.level else node.module
    return f"{target}.{name}" in MODULES or name == "_native"


def test_no_module_reads_another_modules_private_names():
    bad = [line for path in SOURCES for line in _foreign_private_reads(path)]
    assert bad == []


def test_the_private_read_check_can_fail(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("from ctre_sparse import ops\nops._helper(1)\nself_x = 1\n")
    assert _foreign_private_reads(probe) == ["probe.py:2: ops._helper"]


def test_a_subclass_reads_only_what_its_base_class_defines(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("from ctre_sparse._estimator_state import EstimatorState\n"
                     "class Probe(EstimatorState):\n"
                     "    def f(self):\n"
                     "        return self._trainer, self._build, self._predict_chunk\n")
    assert _foreign_private_reads(probe) == ["probe.py:4: self._predict_chunk"]


#: The device question as code spells it (built here so that this file does not spell it).
DEVICE_QUESTIONS = ("xp is " + "np", "xp is not " + "np")


def test_device_question_asked_in_one_module():
    askers = sorted(_module_name(p) for p in SOURCES
                    if any(q in p.read_text() for q in DEVICE_QUESTIONS))
    assert askers == ["ctre_sparse.device"]


def test_training_core_has_no_compiled_code_of_its_own():
    core = [p for p in SOURCES if p.parent.name in ("nn", "topology") or p.name == "training.py"]
    assert core and [p.name for p in core if "numba" in p.read_text()] == []
