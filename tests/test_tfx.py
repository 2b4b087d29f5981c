"""TFX: the Trainer module, the index component's body and the component declaration are
tested without TFX (against stand-ins that follow TFX 1.21's rules); the pipeline runs where
TFX installs (Debian 13, `make tfx-env`) and is skipped, with the platform reason, where it
cannot (Debian 12: glibc 2.36)."""

import glob
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pipelines.beam_preprocess import PreprocessConfig, run_preprocess
from tfrs_multiscene.config import GenerateConfig
from tfrs_multiscene.data import examples as E
from tfrs_multiscene.data.formats import write_tables
from tfrs_multiscene.data.synthetic import generate
from tfrs_multiscene.tfx import platform_facts, tfx_unavailable_reason

TFX_REASON = tfx_unavailable_reason()
REPO = Path(__file__).resolve().parent.parent

RETRIEVAL = {"epochs": 2, "batch_size": 64, "embedding_dim": 16, "feature_dim": 16, "history_length": 5,
             "learning_rate": 0.02}

#: The fields of tfx.components.trainer.fn_args_utils.FnArgs in TFX 1.21 (attrs class).
FN_ARGS_FIELDS = ("working_dir", "train_files", "eval_files", "train_steps", "eval_steps", "schema_path",
                  "schema_file", "transform_graph_path", "transform_output", "data_accessor", "serving_model_dir",
                  "eval_model_dir", "model_run_dir", "base_model", "hyperparameters", "custom_config")


class FakeFnArgs:
    """What GenericExecutor._GetFnArgs passes to run_fn: every FnArgs field, None by default."""

    def __init__(self, **kwargs):
        unknown = set(kwargs) - set(FN_ARGS_FIELDS)
        assert not unknown, unknown
        for name in FN_ARGS_FIELDS:
            setattr(self, name, kwargs.get(name))


class FakeArtifact:
    """``.uri`` plus the custom-property setters of tfx.types.Artifact."""

    def __init__(self, uri):
        self.uri = str(uri)
        self.custom_properties = {}

    def set_string_custom_property(self, key, value):
        assert isinstance(value, str)
        self.custom_properties[key] = value

    def set_float_custom_property(self, key, value):
        self.custom_properties[key] = float(value)

    def set_int_custom_property(self, key, value):
        assert isinstance(value, int)
        self.custom_properties[key] = value


def _run(code: str, **kwargs):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], check=True, timeout=300, env=env,
                          capture_output=True, text=True, **kwargs)


@pytest.fixture(scope="module")
def preprocessed(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    write_tables(generate(GenerateConfig(users=80, items=40, impressions=1500, seed=4)), data, "parquet")
    out = tmp_path_factory.mktemp("pre")
    run_preprocess(data, out, cfg=PreprocessConfig(data=str(data), out=str(out), shards=2))
    return out


# --------------------------------------------------------------------------- platform


def test_skip_reason_names_the_platform():
    if TFX_REASON is None:
        pytest.skip("TFX imports here")
    assert "glibc" in TFX_REASON and "/etc/debian_version" in TFX_REASON
    assert "make tfx-env" in TFX_REASON
    facts = platform_facts()
    assert facts["glibc"] in TFX_REASON


def test_tfx_env_recipe_keeps_the_pins_apart():
    """`make tfx-env` builds .venv-tfx: tfx 1.21 with TF 2.21, this package with --no-deps
    (requirements.txt pins TF 2.20 and scann for it), a glibc preflight."""
    recipe = (REPO / "Makefile").read_text().split("tfx-env:", 2)[-1].split("\nclean:")[0]
    head = (REPO / "Makefile").read_text().split("\ntfx-env:")[0]
    assert "'tfx==1.21.*'" in head and "'tensorflow==2.21.*'" in head and "'tf-keras==2.21.*'" in head
    assert "scann" not in head.split("TFX_DEPS")[-1]
    assert "--no-deps -e ." in recipe and "2, 39" in recipe and "setuptools>=70.1" in recipe
    dry = subprocess.run(["make", "-n", "tfx-env"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    assert ".venv-tfx/bin/pip install --quiet --no-deps -e ." in dry.stdout


# --------------------------------------------------------------------------- import rules


def test_trainer_module_imports_without_tfx():
    _run("""
        import sys, tfrs_multiscene.tfx.trainer as t, tfrs_multiscene.tfx.index_component as i
        import pipelines.tfx_pipeline as p
        assert callable(t.run_fn) and callable(i.run_index_component)
        assert p.trainer_module_file().endswith('tfrs_multiscene/tfx/user_module/tfrs_multiscene_trainer.py')
        assert 'tfx' not in sys.modules, sorted(m for m in sys.modules if m.startswith('tfx'))
    """)


def test_trainer_module_file_packaged_as_tfx_does(tmp_path):
    """TFX 1.21 (udf_utils.package_user_module_file) puts every .py of the module file's
    directory, __init__.py excepted, as top-level modules in a wheel, then imports the module
    by its file name from the directory the wheel was installed to."""
    from pipelines.tfx_pipeline import trainer_module_file

    module_file = Path(trainer_module_file())
    packaged = sorted(p.name for p in module_file.parent.glob("*.py") if p.name != "__init__.py")
    assert packaged == [module_file.name]  # nothing else rides along as a top-level module
    target = tmp_path / "wheel_target"
    target.mkdir()
    shutil.copy(module_file, target / module_file.name)
    _run(f"""
        import importlib, sys
        sys.path.append({str(target)!r})
        m = importlib.import_module({module_file.stem!r})
        assert m.__file__.startswith({str(target)!r}), m.__file__
        from tfrs_multiscene.tfx.trainer import run_fn
        assert m.run_fn is run_fn and 'tfx' not in sys.modules
    """, cwd=tmp_path)


# A stand-in for the parts of tfx.v1 that tfrs_multiscene/tfx/components.py uses, enforcing
# the rules of TFX 1.21's @component: decorators.component -> utils.assert_is_top_level_func,
# function_parser.parse_typehint_component_function (reads func.__annotations__ as objects,
# InputArtifact/OutputArtifact/Parameter instances, Parameter defaults of the declared type,
# return annotation None or a TypedDict/OutputDict) and the module-level <name>_Executor.
_FAKE_TFX = '''
import inspect, sys, types

class _Artifact:
    TYPE_NAME = "Artifact"

class Model(_Artifact):
    TYPE_NAME = "Model"

class ModelRun(_Artifact):
    TYPE_NAME = "ModelRun"

class _Hint:
    def __init__(self, type_):
        self.type = type_
    def __class_getitem__(cls, type_):
        return cls(type_)

class InputArtifact(_Hint): pass
class OutputArtifact(_Hint): pass
class Parameter(_Hint): pass

DECLARED = {}

def component(func=None, /, *, component_annotation=None, use_beam=False):
    if func is None:
        return lambda f: component(f, component_annotation=component_annotation, use_beam=use_beam)
    if "<locals>" in func.__qualname__.split("."):
        raise ValueError("The decorator can only be applied to a function defined at the module level.")
    hints = func.__annotations__
    spec = inspect.getfullargspec(func)
    assert not spec.varargs and not spec.varkw
    defaults = dict(zip(spec.args[len(spec.args) - len(spec.defaults or ()):], spec.defaults or ()))
    parsed = {}
    for arg in spec.args:
        hint = hints[arg]
        if isinstance(hint, str):
            raise ValueError(f"Unknown type hint annotation for argument {arg!r} (a string: postponed annotations)")
        if isinstance(hint, (InputArtifact, OutputArtifact)):
            assert issubclass(hint.type, _Artifact)
            if isinstance(hint, OutputArtifact):
                assert arg not in defaults, "Output artifact cannot be optional"
        elif isinstance(hint, Parameter):
            if arg in defaults and not (defaults[arg] is None or isinstance(defaults[arg], hint.type)):
                raise ValueError(f"default of {arg!r} must be a {hint.type}")
        else:
            raise ValueError(f"Unknown type hint annotation for argument {arg!r}")
        parsed[arg] = (type(hint).__name__, hint.type)
    if hints.get("return") is not None:
        raise ValueError("Return type annotation of @component should be TypedDict or None.")
    executor = type(func.__name__ + "_Executor", (), {"_FUNCTION": staticmethod(func), "__module__": func.__module__})
    setattr(sys.modules[func.__module__], executor.__name__, executor)
    DECLARED[func.__name__] = (parsed, defaults, func)
    return type(func.__name__, (), {"__module__": func.__module__, "EXECUTOR": executor})

tfx = types.ModuleType("tfx"); v1 = types.ModuleType("tfx.v1")
tfx.v1 = v1; tfx.__version__ = "1.21.0-stand-in"
v1.dsl = types.SimpleNamespace(components=types.SimpleNamespace(
    component=component, InputArtifact=InputArtifact, OutputArtifact=OutputArtifact, Parameter=Parameter))
v1.types = types.SimpleNamespace(standard_artifacts=types.SimpleNamespace(Model=Model, ModelRun=ModelRun))
sys.modules["tfx"] = tfx; sys.modules["tfx.v1"] = v1
'''


def test_index_component_declaration_follows_tfx_rules(tmp_path):
    """RetrievalIndexer is declared at module level, without postponed (string) annotations,
    with ModelRun in, Model out and typed parameters; its body hands the artifacts to
    run_index_component."""
    _run(_FAKE_TFX + """
import importlib, sys
import tfrs_multiscene.tfx.index_component as ic
calls = []
ic.run_index_component = lambda *a: calls.append(a)
comp = importlib.import_module("tfrs_multiscene.tfx.components")
parsed, defaults, func = DECLARED["RetrievalIndexer"]
assert parsed == {"model_run": ("InputArtifact", ModelRun), "index": ("OutputArtifact", Model),
                  "preprocess_dir": ("Parameter", str), "kind": ("Parameter", str),
                  "target_recall": ("Parameter", float), "top_k": ("Parameter", int)}, parsed
assert defaults == {"kind": "scann", "target_recall": 0.95, "top_k": 100}, defaults
assert comp.RetrievalIndexer_Executor._FUNCTION is func     # importable by its module path
comp.run_index_component = lambda *a: calls.append(a)
func(model_run="MR", index="IX", preprocess_dir="/pre", kind="ivf", target_recall=0.9, top_k=7)
assert calls == [("MR", "IX", "/pre", "ivf", 0.9, 7)], calls
""")


def test_stand_in_rejects_what_tfx_rejects(tmp_path):
    """The stand-in is strict where TFX is: a nested definition or string annotations fail."""
    mod = tmp_path / "bad_component.py"
    mod.write_text("from __future__ import annotations\nfrom tfx import v1 as tfx\n\n"
                   "@tfx.dsl.components.component\n"
                   "def Bad(x: tfx.dsl.components.Parameter[int]) -> None:\n    pass\n")
    out = subprocess.run([sys.executable, "-c", _FAKE_TFX + textwrap.dedent(f"""
        sys.path.insert(0, {str(tmp_path)!r})
        try:
            import bad_component
        except ValueError as err:
            assert "Unknown type hint annotation" in str(err)
        else:
            raise AssertionError("string annotations accepted")

        def outer():
            @v1.dsl.components.component
            def Nested(x: Parameter[int]) -> None:
                pass
        try:
            outer()
        except ValueError as err:
            assert "module level" in str(err)
        else:
            raise AssertionError("nested component accepted")
    """)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def test_scann_unavailable_reason_is_clear():
    out = _run("""
        import sys
        sys.modules['scann'] = None   # import scann -> ImportError, as where it is not installed
        from tfrs_multiscene.tfx.index_component import scann_unavailable_reason
        print(scann_unavailable_reason())
    """)
    reason = out.stdout.strip()
    assert reason.startswith("ScaNN TF ops unavailable under TensorFlow ") and "ModuleNotFoundError" in reason
    assert "scann 1.4.2 is built for TensorFlow 2.20" in reason


# --------------------------------------------------------------------------- run_fn and the index body


def _example_gen_layout(preprocessed: Path, root: Path) -> dict:
    """The preprocess shards laid out as ImportExampleGen writes its Examples artifact:
    <uri>/Split-<name>/data_tfrecord-SSSSS-of-NNNNN.gz (GZIP TFRecords)."""
    shards = sorted((preprocessed / E.EXAMPLES_DIR).glob(E.SHARD_PATTERN))
    uri = root / "ImportExampleGen" / "examples" / "1"
    for name, shard in (("train", shards[0]), ("eval", shards[1])):
        split = uri / f"Split-{name}"
        split.mkdir(parents=True)
        shutil.copy(shard, split / "data_tfrecord-00000-of-00001.gz")
    # FnArgs carries io_utils.all_files_pattern(split_uri): glob patterns, not files
    return {"train_files": [str(uri / "Split-train" / "*")], "eval_files": [str(uri / "Split-eval" / "*")]}


@pytest.mark.slow
def test_run_fn_and_index_component_without_tfx(preprocessed, tmp_path, monkeypatch):
    import numpy as np
    import tensorflow as tf

    from tfrs_multiscene.retrieval.checkpoints import load_retrieval
    from tfrs_multiscene.tfx import index_component as ic
    from tfrs_multiscene.tfx.trainer import run_fn

    model_uri, run_uri = tmp_path / "Trainer" / "model" / "5", tmp_path / "Trainer" / "model_run" / "5"
    fn_args = FakeFnArgs(
        **_example_gen_layout(preprocessed, tmp_path), train_steps=None, eval_steps=None,
        schema_path=str(tmp_path / "SchemaGen" / "schema.pbtxt"),
        serving_model_dir=str(model_uri / "Format-Serving"), eval_model_dir=str(model_uri / "Format-TFMA"),
        model_run_dir=str(run_uri),
        custom_config={"preprocess_dir": str(preprocessed), "retrieval": RETRIEVAL,
                       "ranking": {"epochs": 1, "batch_size": 256}, "export": {"top_k": 20}})
    run_fn(fn_args)
    # GenericExecutor.Do: "if not fileio.exists(fn_args.serving_model_dir): raise RuntimeError"
    assert (model_uri / "Format-Serving" / "saved_model.pb").exists()
    summary = json.loads((run_uri / "tfx_trainer.json").read_text())
    assert {"retrieval", "ranking", "recommender"} <= set(summary["servables"])
    loss = summary["retrieval"]["history"]["loss"]
    assert loss[-1] < loss[0]
    served = tf.saved_model.load(str(model_uri / "Format-Serving"))
    assert "serving_default" in served.signatures
    model = load_retrieval(run_uri)  # the ModelRun directory is a normal retrieval run
    assert model.spec.item_table_ids

    # the RetrievalIndexer body under TF 2.21 conditions: ScaNN ops do not load -> stock-op IVF
    reason = "ScaNN TF ops unavailable under TensorFlow 2.21.0 (NotFoundError: undefined symbol)"
    monkeypatch.setattr(ic, "scann_unavailable_reason", lambda: reason)
    model_run, index = FakeArtifact(run_uri), FakeArtifact(tmp_path / "RetrievalIndexer" / "index" / "6")
    report = ic.run_index_component(model_run, index, str(preprocessed), kind="scann", target_recall=0.9, top_k=20)
    assert report["requested"] == "scann" and report["kind"] == "ivf" and report["fallback_reason"] == reason
    assert report["stock_ops"] and report["recall"] >= 0.9
    assert index.custom_properties == {"index_kind": "ivf", "index_recall": pytest.approx(report["recall"]),
                                       "stock_ops": 1, "fallback_reason": reason}
    # Pusher: path_utils.serving_model_path(model.uri) == <uri>/Format-Serving
    pushed = Path(index.uri) / ic.SERVING_SUBDIR
    assert (pushed / "saved_model.pb").exists()
    assert json.loads((Path(index.uri) / ic.REPORT_FILE).read_text())["kind"] == "ivf"
    sig = tf.saved_model.load(str(pushed)).signatures["serving_default"]
    inputs = {k: tf.constant([["" for _ in range(5)]] if k == "history" else ["u001"])
              for k, spec in sig.structured_input_signature[1].items() if spec.dtype == tf.string}
    out = sig(**inputs)
    assert np.asarray(next(iter(out.values()))).shape[0] == 1


def test_run_fn_refuses_missing_inputs(tmp_path):
    from tfrs_multiscene.tfx.trainer import run_fn

    with pytest.raises(ValueError, match="preprocess_dir"):
        run_fn(FakeFnArgs(train_files=["x/*"], model_run_dir=str(tmp_path), serving_model_dir=str(tmp_path / "s")))
    with pytest.raises(ValueError, match="train_files"):
        run_fn(FakeFnArgs(train_files=[], custom_config={"preprocess_dir": str(tmp_path)},
                          model_run_dir=str(tmp_path), serving_model_dir=str(tmp_path / "s")))


def test_copy_tree_local(tmp_path):
    from tfrs_multiscene.tfx import fsutil

    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "f.txt").write_text("x")
    fsutil.copy_tree(tmp_path / "a", tmp_path / "c")
    assert (tmp_path / "c" / "b" / "f.txt").read_text() == "x"
    assert fsutil.is_remote("gs://bucket/x") and not fsutil.is_remote(tmp_path) and not fsutil.is_remote("file:///x")


# --------------------------------------------------------------------------- with TFX (Debian 13, .venv-tfx)


@pytest.mark.skipif(TFX_REASON is not None, reason=TFX_REASON or "")
def test_tfx_pipeline_builds(preprocessed, tmp_path):
    from pipelines.tfx_pipeline import create_pipeline

    pipeline = create_pipeline("p", str(tmp_path / "root"), str(preprocessed), str(tmp_path / "serving"),
                               metadata_path=str(tmp_path / "m.sqlite"), train_steps=10)
    ids = [c.id for c in pipeline.components]
    assert ids == ["ImportExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Trainer",
                   "RetrievalIndexer", "Pusher_recommender", "Pusher_retrieval"], ids


@pytest.mark.skipif(TFX_REASON is not None, reason=TFX_REASON or "")
@pytest.mark.slow
def test_tfx_pipeline_runs_locally(preprocessed, tmp_path):
    from pipelines.tfx_pipeline import run_local
    from tfrs_multiscene.tfx.index_component import scann_unavailable_reason

    base = run_local(str(preprocessed), str(tmp_path), custom_config={"retrieval": RETRIEVAL,
                                                                       "ranking": {"epochs": 1}},
                     index_kind="scann", target_recall=0.9)
    for name in ("recommender", "retrieval"):
        versions = [Path(p) for p in glob.glob(str(base / name / "*"))]
        assert versions and all(v.name.isdigit() for v in versions), versions  # TF Serving layout
        assert all((v / "saved_model.pb").exists() for v in versions)
    assert (tmp_path / "metadata.sqlite").exists()
    assert list((tmp_path / "root").glob("_wheels/*.whl"))  # the Trainer module file, packaged by TFX
    reports = list((tmp_path / "root").glob("RetrievalIndexer/index/*/index_report.json"))
    assert reports
    report = json.loads(reports[0].read_text())
    if scann_unavailable_reason():  # TF 2.21 without a matching ScaNN build: the stock-op fallback
        assert report["kind"] == "ivf" and report["stock_ops"] and "fallback_reason" in report
