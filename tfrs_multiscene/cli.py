"""`tfrs-multiscene`: the command line.

Each subcommand is built from config sections (tfrs_multiscene.config): every flag is a
field, ``--config FILE`` (YAML/JSON, sections as keys) fills the same fields, and flags win
over the file. The work itself lives in tfrs_multiscene.workflow and the modules it calls;
this module only parses, builds configs and dispatches.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter out of the CLI

import tfrs_multiscene  # noqa: F401  (Keras 2 for TFRS before TensorFlow loads)
from tfrs_multiscene import config as C
from tfrs_multiscene.errors import UserError

# command -> (help, {section name in the config file: dataclass})
COMMANDS = {
    "generate": ("Write a synthetic multi-scenario data set (three tables + ground truth).",
                 {"generate": C.GenerateConfig}),
    "validate": ("Read and validate data; quarantine bad rows; print counts.",
                 {"data": C.DataConfig}),
    "train": ("Train retrieval then ranking (or one of them) into a run directory.",
              {"data": C.DataConfig, "split": C.SplitConfig, "text": C.TextConfig,
               "retrieval": C.RetrievalConfig, "ranking": C.RankingConfig, "train": C.TrainConfig}),
    "evaluate": ("Evaluate a run against baselines computed in the same run.",
                 {"evaluate": C.EvaluateConfig}),
    "export": ("Export SavedModels in TF Serving's layout (retrieval, ranking, recommender).",
               {"export": C.ExportConfig}),
    "serve": ("Serve a model base over TF Serving's REST and gRPC APIs.",
              {"serve": C.ServeConfig}),
    "recommend": ("Ask a running server (REST or gRPC) for recommendations.",
                  {"recommend": C.RecommendConfig}),
    "demo": ("Generate data, train, evaluate, export, serve one request, print results.",
             {"demo": C.DemoConfig}),
    "benchmark": ("Run a benchmark of benchmarks/: `benchmark KIND [options]` (`benchmark --help` lists the kinds).", {}),
    "preprocess": ("Apache Beam preprocessing into sharded TFRecords.", {}),
}


def build_parser(show_advanced: bool = False) -> argparse.ArgumentParser:
    """The CLI; ``show_advanced`` (``--help-all``) lists every setting's flag in the help."""
    parser = argparse.ArgumentParser(prog="tfrs-multiscene", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=tfrs_multiscene.__version__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, sections) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        if sections:
            p.add_argument("--config", dest="config_file", default=None,
                           help="YAML or JSON file with the sections: " + ", ".join(sections))
        advanced = 0
        for section, cls in sections.items():
            group = p.add_argument_group(section)
            advanced += C.add_arguments(group, cls, section, show_advanced=show_advanced)
        if advanced:
            p.add_argument("--help-all", action="help", help=f"show the flags of all {advanced} more settings and exit")
            if not show_advanced:
                p.epilog = (f"{advanced} more settings are fields of the --config file (each also takes a flag):\n"
                            f"`tfrs-multiscene {name} --help-all` lists them, docs/CONFIG.md describes every one.")
        if name in ("benchmark", "preprocess"):
            p.add_argument("args", nargs=argparse.REMAINDER, help="Arguments of the benchmark/pipeline.")
    return parser


def config_reference() -> str:
    """docs/CONFIG.md: every setting of every command, from the config dataclasses."""
    import dataclasses

    lines = ["# Settings", "",
             "Every setting of every command, generated from the config dataclasses in",
             "`tfrs_multiscene/config.py` by `scripts/config_reference.py` (a test checks that this page",
             "matches them). A setting is a field of its section in a `--config` YAML/JSON file",
             "(`retrieval: {temperature: 0.2}`) and takes the flag shown; precedence: defaults <",
             "config file < flags. `--help` shows the common flags, `--help-all` every one;",
             "*advanced* marks the settings `--help` leaves out.", ""]
    done = set()
    for _, sections in COMMANDS.values():
        for section, cls in sections.items():
            if cls in done:
                continue
            done.add(cls)
            used_by = [c for c, (_, s) in COMMANDS.items() if cls in s.values()]
            lines += [f"## `{section}` ({', '.join(f'`{c}`' for c in used_by)})", "",
                      (cls.__doc__ or "").strip().splitlines()[0], "",
                      "| field | flag | default | what it sets |", "|---|---|---|---|"]
            for f in dataclasses.fields(cls):
                meta = f.metadata
                if "flag" not in meta:
                    continue
                default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
                note = " *advanced*" if meta.get("advanced") else ""
                text = meta["help"].replace("|", "\\|")
                lines.append(f"| `{f.name}` | `{meta['flag']}` | `{default!r}` | {text}{note} |")
            lines.append("")
    return "\n".join(lines)


def build_configs(args: argparse.Namespace) -> dict:
    """Sections for ``args.command``: defaults < --config file < flags."""
    _, sections = COMMANDS[args.command]
    file_data = C.load_config_file(args.config_file) if getattr(args, "config_file", None) else {}
    unknown = sorted(set(file_data) - set(sections))
    if unknown:
        raise SystemExit(f"error: {args.config_file}: unknown section(s) {unknown} for "
                         f"`{args.command}`; expected some of {sorted(sections)}")
    configs = {}
    for section, cls in sections.items():
        try:
            obj = C.from_dict(cls, file_data.get(section, {}), f"{args.config_file}:{section}")
        except (TypeError, ValueError) as err:
            raise SystemExit(f"error: {err}") from None
        configs[section] = C.apply_arguments(obj, args, section)
    return configs


# Commands whose arguments belong to another program (a benchmark script, the Beam pipeline):
# everything after the command name is handed over untouched.
PASS_THROUGH = ("benchmark", "preprocess")


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in PASS_THROUGH:
        from tfrs_multiscene import workflow

        try:
            return int(getattr(workflow, f"run_{argv[0]}")(argparse.Namespace(args=argv[1:])) or 0)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            return err.exit_code
    parser = build_parser(show_advanced="--help-all" in argv)
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    configs = build_configs(args)
    import logging

    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # retracing notices are not for users
    from tfrs_multiscene import workflow

    handler = getattr(workflow, f"run_{args.command}")
    try:
        return int(handler(args, **configs) or 0)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code


if __name__ == "__main__":
    sys.exit(main())
