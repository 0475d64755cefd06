"""Model files are untrusted input: a hostile or broken file gets a ValueError naming it.

It cannot make ``load`` read members the format does not define, allocate more than the
members it asks for declare, build a network its arrays do not describe, choose where training
writes, or load values that break the model later (biases, classes, momentum, random state).
The fuzz at the end mutates a valid file many ways, in a child process so that a crash fails
the test instead of killing the run.
"""

import io
import json
import subprocess
import sys
import textwrap
import time
import zipfile

import numpy as np
import pytest

from conftest import child_python
from ctre_sparse import CTREClassifier


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    folder = tmp_path_factory.mktemp("hostile")
    clf = CTREClassifier(hidden_layer_sizes=(16,), epsilon=3, max_epochs=2, random_state=0,
                         checkpoint_dir=folder / "ckpt").fit(X[:300], y[:300])
    path = clf.save(folder / "good.npz")
    return path, X[300:400]


def _members(path):
    with np.load(path, allow_pickle=False) as npz:        # our own file: trusted here
        return {k: npz[k] for k in npz.files}


def _write(path, members):
    np.savez(path, **members)
    return path


def _edit_json(members, edit, member="meta_json"):
    """``members`` with the JSON document of ``member`` passed through ``edit`` (in place)."""
    tree = json.loads(str(members[member]))
    edit(tree)
    members[member] = np.array(json.dumps(tree))
    return members


def _npy_header_only(shape, dtype):
    """The bytes of an npy member that declares ``shape``/``dtype`` but holds no data."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": np.lib.format.dtype_to_descr(
        np.dtype(dtype)), "fortran_order": False, "shape": shape})
    return buf.getvalue()


def test_an_unused_member_is_never_read(saved, tmp_path):
    # a member the format does not define, declaring 3 GiB (and holding nothing): reading it
    # would allocate 3 GiB and then fail; load never touches it
    good, X = saved
    path = tmp_path / "extra.npz"
    path.write_bytes(good.read_bytes())
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("unused_zeros.npy", _npy_header_only((3 * 2**30,), np.uint8))
    np.testing.assert_array_equal(CTREClassifier.load(path).predict(X),
                                  CTREClassifier.load(good).predict(X))


def test_a_member_declaring_more_than_the_machine_has(saved, tmp_path):
    good, _ = saved
    members = _members(good)
    path = tmp_path / "huge.npz"
    _write(path, {k: v for k, v in members.items() if k != "layers/0/data"})
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("layers/0/data.npy", _npy_header_only((2**50,), np.float32))
    with pytest.raises(ValueError, match=r"huge.npz: .*GiB, more than this machine"):
        CTREClassifier.load(path)


def test_declared_sizes_must_match_the_arrays_before_anything_is_built(saved, tmp_path):
    # hidden_layer_sizes of 3,000,000 in the metadata: refused from the stored shapes at once,
    # instead of building that network first
    good, _ = saved
    members = _edit_json(_members(good), lambda m: m["params"].update(
        hidden_layer_sizes=[3000000, 32]))
    members = _edit_json(members, lambda m: m.update(n_layers=3))
    path = _write(tmp_path / "wide.npz", members)
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"wide.npz: .*layer 0 has shape \(16, 64\), the "
                                         r"parameters give \(3000000, 64\)"):
        CTREClassifier.load(path)
    assert time.perf_counter() - start < 5


def test_the_file_does_not_choose_where_training_writes(saved, tmp_path):
    good, X = saved
    members = _edit_json(_members(good), lambda m: m["params"].update(
        checkpoint_dir=str(tmp_path / "chosen" / "by" / "file")))
    path = _write(tmp_path / "paths.npz", members)
    clf = CTREClassifier.load(path)
    assert clf.checkpoint_dir is None
    clf.partial_fit(np.vstack([X, X]), np.r_[np.arange(10).repeat(10), np.arange(10).repeat(10)])
    assert not (tmp_path / "chosen").exists()


@pytest.mark.parametrize("name, value, message", [
    ("layers/0/bias", np.zeros(1, np.float32), "bias"),                 # would broadcast
    ("layers/0/bias", np.full(16, np.nan, np.float32), "bias holds NaN"),
    ("classes", np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 8]), "distinct labels"),
    ("layers/0/indptr", np.zeros(3, np.int32), "layers/0/indptr' must have 17 entries"),
    ("layers/0/data", np.zeros(5, np.float32), "layers/0/data' must have"),
    ("input_scale", np.zeros(64), "input_mean/input_scale"),
    ("validation_indices", np.array([-1]), "validation_indices must be >= 0"),
    ("classes", np.array([{"a": 1}], dtype=object), "pickled"),
])
def test_bad_values_are_refused(saved, tmp_path, name, value, message):
    good, _ = saved
    members = _members(good)
    members[name] = value
    path = tmp_path / "bad.npz"
    if value.dtype.hasobject:      # a pickled member, written as np.save would write it
        buf = io.BytesIO()
        np.lib.format.write_array(buf, value, allow_pickle=True)
        _write(path, {k: v for k, v in members.items() if k != name})
        with zipfile.ZipFile(path, "a") as zf:
            zf.writestr(name + ".npy", buf.getvalue())
    else:
        _write(path, members)
    with pytest.raises(ValueError, match="bad.npz") as info:
        CTREClassifier.load(path)
    assert message in str(info.value)


@pytest.mark.parametrize("name, value", [
    ("preset", "evil"), ("init", "glorot"), ("grow_init", "ones"), ("lr_schedule", 3),
    ("warmup_epochs", -2), ("learning_rate", "fan_in"), ("growth", "rigl2"), ("prune", "evil"),
])
def test_bad_preset_parameters_are_refused(saved, tmp_path, name, value):
    good, _ = saved
    members = _edit_json(_members(good), lambda m: m["params"].update({name: value}))
    path = _write(tmp_path / "preset.npz", members)
    with pytest.raises(ValueError, match=f"preset.npz: .*{name}"):
        CTREClassifier.load(path)


@pytest.mark.parametrize("rule", ["grow_init", "prune"])
def test_a_topology_rule_the_library_does_not_have(saved, tmp_path, rule):
    good, _ = saved
    members = _edit_json(_members(good), lambda t: t["updater"].update({rule: "os.system"}),
                         "state_json")
    path = _write(tmp_path / "rule.npz", members)
    with pytest.raises(ValueError, match=f"rule.npz: .*{rule} must be one of"):
        CTREClassifier.load(path)


def test_momentum_of_the_wrong_length_is_refused_at_load(saved, tmp_path):
    good, _ = saved
    members = _members(good)
    tree = json.loads(str(members["state_json"]))
    ref = tree["optimizer"]["velocity.0.W"]["__array__"]
    members[ref] = members[ref][:3]
    path = _write(tmp_path / "momentum.npz", members)
    with pytest.raises(ValueError, match="momentum.npz: .*weight momentum must be"):
        CTREClassifier.load(path)


@pytest.mark.parametrize("edit, message", [
    (lambda clip, arrays: clip.update(n_steps="many"), "clip state: factor must be a number"),
    (lambda clip, arrays: clip.update(factor=0.5), "factor must be >= 1"),
    (lambda clip, arrays: arrays.__setitem__(clip["norms"]["__array__"], np.full(200, np.nan)),
     "clip state: norms must be 200 finite values"),
    (lambda clip, arrays: clip.update(norms=None), "does not fit its norms"),
])
def test_a_tampered_gradient_clip_state_is_refused_at_load(saved, tmp_path, edit, message):
    good, _ = saved
    members = _members(good)
    tree = json.loads(str(members["state_json"]))
    clip = tree["optimizer"]["clip"]
    assert clip["n_steps"] > 0   # the default preset clips: the saved model has a history
    edit(clip, members)
    members["state_json"] = np.array(json.dumps(tree))
    path = _write(tmp_path / "clip.npz", members)
    with pytest.raises(ValueError, match=f"clip.npz: .*{message}"):
        CTREClassifier.load(path)


def test_a_random_state_naming_a_numpy_function(saved, tmp_path):
    good, _ = saved
    members = _edit_json(_members(good), lambda t: t["rng"].update(bit_generator="seed"),
                         "state_json")
    path = _write(tmp_path / "rng.npz", members)
    state = np.random.get_state()
    with pytest.raises(ValueError, match="rng.npz: .*bit generator 'seed'"):
        CTREClassifier.load(path)
    assert np.array_equal(np.random.get_state()[1], state[1])      # np.random.seed never ran


def test_tree_may_point_only_at_its_own_members(saved, tmp_path):
    good, _ = saved
    members = _edit_json(_members(good), lambda t: t["optimizer"].update(
        {"velocity.0.b": {"__array__": "meta_json"}}), "state_json")
    path = _write(tmp_path / "pointer.npz", members)
    with pytest.raises(ValueError, match="pointer.npz: .*may not"):
        CTREClassifier.load(path)


_FUZZ = textwrap.dedent("""
    import json, sys, zipfile, io
    import numpy as np
    from ctre_sparse import CTREClassifier
    good, folder, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with np.load(good, allow_pickle=False) as npz:
        base = {k: npz[k] for k in npz.files}
    rng = np.random.default_rng(seed)
    outcomes = {}

    def mutate(members):
        name = str(rng.choice(sorted(members)))
        arr = members[name]
        kind = int(rng.integers(7))
        if kind == 0:
            del members[name]
        elif kind == 1 and arr.ndim == 1 and arr.shape[0] > 1:
            members[name] = arr[: int(rng.integers(arr.shape[0]))]
        elif kind == 2 and arr.dtype.kind in "iu" and arr.size:
            flat = arr.copy().reshape(-1)
            flat[int(rng.integers(flat.size))] = rng.choice([-1, 2**31 - 1, 10**9, 0])
            members[name] = flat.reshape(arr.shape)
        elif kind == 3 and arr.dtype.kind == "f" and arr.size:
            flat = arr.copy().reshape(-1)
            flat[int(rng.integers(flat.size))] = rng.choice([np.nan, np.inf, 1e38])
            members[name] = flat.reshape(arr.shape)
        elif kind == 4:
            try:
                members[name] = arr.astype(rng.choice(["f4", "f8", "i4", "i8", "u1", "U3"]))
            except (ValueError, TypeError, OverflowError):   # JSON text as numbers, say
                members[name] = np.zeros(3, dtype="f4")
        elif kind == 5 and arr.dtype.kind == "U":
            text = str(arr[()])
            try:
                obj = json.loads(text)
            except ValueError:
                obj = text
            members[name] = np.array(json.dumps(scramble(obj)))
        else:
            members[name] = np.zeros((2, 2), dtype=arr.dtype if arr.dtype.kind != "U" else "f4")
        return name, kind

    def scramble(obj):
        if isinstance(obj, dict) and obj:
            key = sorted(obj)[int(rng.integers(len(obj)))]
            choice = int(rng.integers(4))
            if choice == 0:
                del obj[key]
            elif choice == 1:
                obj[key] = [None, "x", -5, 1e300, [], {}][int(rng.integers(6))]
            else:
                obj[key] = scramble(obj[key])
        elif isinstance(obj, list) and obj:
            obj[int(rng.integers(len(obj)))] = scramble(obj[int(rng.integers(len(obj)))])
        return obj

    for case in range(int(sys.argv[4])):
        members = {k: v.copy() for k, v in base.items()}
        done = [mutate(members) for _ in range(int(rng.integers(1, 3)))]
        path = f"{folder}/case{case}.npz"
        np.savez(path, **members)
        try:
            CTREClassifier.load(path).predict(np.zeros((2, 64)))
            result = "loaded"
        except ValueError as exc:
            result = "ValueError" if path in str(exc) else "ValueError without the file name"
        except Exception as exc:
            result = f"{type(exc).__name__}: {exc} after {done}"
        outcomes[result] = outcomes.get(result, 0) + 1
    print(json.dumps(outcomes))
""")


def test_fuzzed_model_files_give_clear_errors(saved, tmp_path):
    good, _ = saved
    proc = subprocess.run([sys.executable, "-c", _FUZZ, str(good), str(tmp_path), "0", "300"],
                          capture_output=True, text=True, timeout=600, **child_python())
    assert proc.returncode == 0, f"the child died (exit {proc.returncode}): {proc.stderr[-2000:]}"
    outcomes = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(outcomes) <= {"loaded", "ValueError"}, outcomes
    assert outcomes.get("ValueError", 0) > 100, outcomes
