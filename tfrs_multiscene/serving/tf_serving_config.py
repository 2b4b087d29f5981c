"""Deployment configuration for real TF Serving, written as text protos.

* ``models.config``: a ``ModelServerConfig`` with one ``model_config_list`` entry per
  servable (base path, version policy latest/all/specific, version labels such as
  stable/canary). Passed to ``tensorflow_model_server --model_config_file=...``; the local
  server (:mod:`.server`) reads the same file with :func:`read_model_config`.
* ``batching_parameters.txt``: ``BatchingParameters`` for ``--enable_batching
  --batching_parameters_file=...``.
* ``monitoring.config``: ``MonitoringConfig`` (Prometheus) for ``--monitoring_config_file``.

``tensorflow-serving-api`` ships ``ModelServerConfig`` but not ``BatchingParameters`` or
``MonitoringConfig`` (their protos live in the server sources). :func:`batching_parameters_class`
and :func:`monitoring_config_class` build those two messages at runtime from descriptors with
the same package, names, field numbers and types as TF Serving's
``session_bundle_config.proto`` and ``monitoring_config.proto``, so the generated files are
checked with a real protobuf text-format parser.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

from google.protobuf import text_format

VERSION_POLICIES = ("latest", "all", "specific")


@dataclasses.dataclass
class ServableSpec:
    """One servable of a TF Serving deployment.

    ``base_path`` is where TF Serving finds ``<version>/saved_model.pb`` (in a container,
    e.g. ``/models/recommender``). ``version_policy`` is ``latest`` (``num_latest`` newest
    versions), ``all``, or ``specific`` (``versions``). ``labels`` maps a label (``stable``,
    ``canary``) to a version; a label needs its version to be served.
    """

    name: str
    base_path: str
    version_policy: str = "latest"
    num_latest: int = 1
    versions: list = dataclasses.field(default_factory=list)
    labels: dict = dataclasses.field(default_factory=dict)
    platform: str = "tensorflow"

    def validate(self) -> None:
        if not self.name or "/" in self.name:
            raise ValueError(f"servable name must be non-empty without '/', got {self.name!r}")
        if self.version_policy not in VERSION_POLICIES:
            raise ValueError(f"{self.name}: version_policy must be one of {VERSION_POLICIES}, got {self.version_policy!r}")
        if self.version_policy == "specific" and not self.versions:
            raise ValueError(f"{self.name}: version_policy 'specific' needs versions")
        if self.version_policy == "latest" and self.num_latest < 1:
            raise ValueError(f"{self.name}: num_latest must be >= 1")
        if self.version_policy == "specific":
            missing = {k: v for k, v in self.labels.items() if int(v) not in {int(x) for x in self.versions}}
            if missing:
                raise ValueError(f"{self.name}: labels {missing} point to versions not in the specific policy {self.versions}")


@dataclasses.dataclass
class BatchingSpec:
    """Server-side batching (TF Serving's ``BatchingParameters``)."""

    max_batch_size: int = 128
    batch_timeout_micros: int = 2000
    max_enqueued_batches: int = 100
    num_batch_threads: int = 2
    allowed_batch_sizes: list = dataclasses.field(default_factory=list)
    pad_variable_length_inputs: bool = False

    def validate(self) -> None:
        if self.max_batch_size < 1 or self.num_batch_threads < 1 or self.max_enqueued_batches < 1:
            raise ValueError("max_batch_size, num_batch_threads and max_enqueued_batches must be >= 1")
        if self.batch_timeout_micros < 0:
            raise ValueError("batch_timeout_micros must be >= 0")
        sizes = list(self.allowed_batch_sizes)
        if sizes and (sizes != sorted(set(sizes)) or sizes[-1] != self.max_batch_size):
            raise ValueError("allowed_batch_sizes must increase strictly and end with max_batch_size")


# --------------------------------------------------------------------------- models.config


def model_server_config(models: list[ServableSpec]):
    """A ``tensorflow.serving.ModelServerConfig`` proto for ``models``."""
    from tensorflow_serving.config import model_server_config_pb2

    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise ValueError(f"servable names must be unique, got {names}")
    config = model_server_config_pb2.ModelServerConfig()
    for spec in models:
        spec.validate()
        entry = config.model_config_list.config.add()
        entry.name = spec.name
        entry.base_path = str(spec.base_path)
        entry.model_platform = spec.platform
        policy = entry.model_version_policy
        if spec.version_policy == "latest":
            policy.latest.num_versions = int(spec.num_latest)
        elif spec.version_policy == "all":
            policy.all.SetInParent()
        else:
            policy.specific.versions.extend(int(v) for v in spec.versions)
        for label, version in sorted(spec.labels.items()):
            entry.version_labels[str(label)] = int(version)
    return config


def read_model_config(path):
    """Parse a ``models.config`` text proto into a ``ModelServerConfig`` (clear error if bad)."""
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(Path(path).read_text(), config)
    except (text_format.ParseError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a ModelServerConfig text proto: {exc}") from exc
    if config.WhichOneof("config") == "custom_model_config":
        raise ValueError(f"{path}: custom_model_config is not supported; use model_config_list")
    return config


# --------------------------------------------------------------------------- batching, monitoring


@functools.cache
def _message_classes():
    """Build BatchingParameters and MonitoringConfig from descriptors (see module docstring)."""
    from google.protobuf import (
        descriptor_pb2,
        descriptor_pool,
        message_factory,
        wrappers_pb2,
    )

    fdp = descriptor_pb2.FieldDescriptorProto
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    file = descriptor_pb2.FileDescriptorProto(
        name="tfrs_multiscene/tf_serving_extra_configs.proto",
        package="tensorflow.serving",
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )

    def add(message, name, number, ftype, type_name=None, repeated=False):
        field = message.field.add(name=name, number=number, type=ftype,
                                  label=fdp.LABEL_REPEATED if repeated else fdp.LABEL_OPTIONAL)
        if type_name:
            field.type_name = type_name

    batching = file.message_type.add(name="BatchingParameters")
    for number, name in enumerate(["max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads"], 1):
        add(batching, name, number, fdp.TYPE_MESSAGE, ".google.protobuf.Int64Value")
    add(batching, "thread_pool_name", 5, fdp.TYPE_MESSAGE, ".google.protobuf.StringValue")
    add(batching, "allowed_batch_sizes", 6, fdp.TYPE_INT64, repeated=True)
    add(batching, "pad_variable_length_inputs", 7, fdp.TYPE_BOOL)
    prometheus = file.message_type.add(name="PrometheusConfig")
    add(prometheus, "enable", 1, fdp.TYPE_BOOL)
    add(prometheus, "path", 2, fdp.TYPE_STRING)
    monitoring = file.message_type.add(name="MonitoringConfig")
    add(monitoring, "prometheus_config", 1, fdp.TYPE_MESSAGE, ".tensorflow.serving.PrometheusConfig")
    pool.Add(file)
    get = message_factory.GetMessageClass
    return (get(pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters")),
            get(pool.FindMessageTypeByName("tensorflow.serving.MonitoringConfig")))


def batching_parameters_class():
    """The ``tensorflow.serving.BatchingParameters`` message class."""
    return _message_classes()[0]


def monitoring_config_class():
    """The ``tensorflow.serving.MonitoringConfig`` message class."""
    return _message_classes()[1]


def batching_parameters(spec: BatchingSpec):
    spec.validate()
    msg = batching_parameters_class()()
    msg.max_batch_size.value = spec.max_batch_size
    msg.batch_timeout_micros.value = spec.batch_timeout_micros
    msg.max_enqueued_batches.value = spec.max_enqueued_batches
    msg.num_batch_threads.value = spec.num_batch_threads
    msg.allowed_batch_sizes.extend(spec.allowed_batch_sizes)
    msg.pad_variable_length_inputs = spec.pad_variable_length_inputs
    return msg


def monitoring_config(prometheus_path: str = "/monitoring/prometheus/metrics"):
    msg = monitoring_config_class()()
    msg.prometheus_config.enable = True
    msg.prometheus_config.path = prometheus_path
    return msg


# --------------------------------------------------------------------------- writing


def write_serving_configs(out_dir, models: list[ServableSpec], batching: BatchingSpec | None = None,
                          prometheus_path: str = "/monitoring/prometheus/metrics") -> dict[str, Path]:
    """Write ``models.config``, ``batching_parameters.txt`` and ``monitoring.config``.

    Returns ``{"model_config": path, "batching_parameters": path, "monitoring_config": path}``
    and, under ``"command"``, a ``tensorflow_model_server`` command line using them
    (``command.txt``, paths relative to ``out_dir``'s mount point ``/config``).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    header = "# Generated by tfrs_multiscene.serving.tf_serving_config; text proto ({}).\n"
    files = {
        "model_config": ("models.config", "tensorflow.serving.ModelServerConfig", model_server_config(models)),
        "batching_parameters": ("batching_parameters.txt", "tensorflow.serving.BatchingParameters",
                                batching_parameters(batching or BatchingSpec())),
        "monitoring_config": ("monitoring.config", "tensorflow.serving.MonitoringConfig",
                              monitoring_config(prometheus_path)),
    }
    paths = {}
    for key, (filename, message_name, message) in files.items():
        path = out / filename
        path.write_text(header.format(message_name) + text_format.MessageToString(message))
        paths[key] = path
    command = (
        "tensorflow_model_server --port=8500 --rest_api_port=8501 "
        "--model_config_file=/config/models.config --model_config_file_poll_wait_seconds=60 "
        "--enable_batching --batching_parameters_file=/config/batching_parameters.txt "
        "--monitoring_config_file=/config/monitoring.config\n"
    )
    paths["command"] = out / "command.txt"
    paths["command"].write_text(command)
    return paths
