"""What each CLI command does, as plain functions over config sections.

``run_<command>(args, **sections)`` is called by tfrs_multiscene.cli with the parsed
argparse namespace and the config sections of that command. Each returns an exit code.
The heavy lifting lives in the data, text, retrieval, ranking, evaluation, export and
serving packages; these functions sequence them, write the run directory and print what a
person wants to see.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from tfrs_multiscene import config as C
from tfrs_multiscene.errors import UserError

# --------------------------------------------------------------------------- data


def run_generate(args, generate: C.GenerateConfig) -> int:
    from tfrs_multiscene.data import synthetic
    from tfrs_multiscene.data.formats import write_tables

    start = time.time()
    tables = synthetic.generate(generate)
    paths = write_tables(tables, generate.out, generate.out_format)
    print(f"generated in {time.time() - start:.1f}s -> {generate.out}")
    for table, path in paths.items():
        print(f"  {table:<13} {path}")
    print(_scenario_table(tables))
    return 0


def _scenario_table(tables) -> str:
    inter = tables.interactions
    lines = [f"{'scenario':<12}{'impressions':>12}{'share':>8}" + "".join(f"{t + ' rate':>17}" for t in tables.tasks)]
    for name, group in inter.groupby("scenario"):
        row = f"{name:<12}{len(group):>12}{len(group) / len(inter):>8.1%}"
        row += "".join(f"{group[t].mean():>17.3f}" for t in tables.tasks)
        lines.append(row)
    return "\n".join(lines)


def load_data(data: C.DataConfig, quarantine_dir=None):
    """Validated tables + report, with user-facing errors for unusable input."""
    from tfrs_multiscene.data.formats import FormatError
    from tfrs_multiscene.data.loading import DataLayoutError, load_tables

    try:
        return load_tables(data, quarantine_dir=quarantine_dir)
    except (DataLayoutError, FormatError, FileNotFoundError) as err:
        raise UserError(str(err)) from None


def run_validate(args, data: C.DataConfig) -> int:
    tables, report = load_data(data)
    print(report.format_summary())
    if not report.balanced():  # the invariant this command exists to show
        print("internal error: read != used + quarantined", flush=True)
        return 3
    code = report.exit_code(strict=data.strict)
    if code and data.strict and not report.ok:
        print("--strict: rows were quarantined, exiting with status 1")
    return code


# --------------------------------------------------------------------------- training


def run_train(args, **sections) -> int:
    from tfrs_multiscene.training import train_run

    run_cfg = C.run_config_from(sections)
    if not run_cfg.data.data and not run_cfg.train.examples:
        raise UserError("train needs --data DIR (tables or a public data set download) or --examples DIR "
                        "(from `tfrs-multiscene preprocess`); `tfrs-multiscene generate --out DIR` makes a data set")
    summary = train_run(run_cfg, explicit=C.explicit_fields(args))
    print(json.dumps(summary, indent=2, default=str))
    return 0


# --------------------------------------------------------------------------- serving


def run_serve(args, serve: C.ServeConfig) -> int:
    from tfrs_multiscene.serving.server import serve as serve_forever

    if not Path(serve.model_base).is_dir():
        raise UserError(f"--model-base {serve.model_base}: no such directory (export a run first)")
    serve_forever(serve)
    return 0


def run_preprocess(args) -> int:
    from pipelines.beam_preprocess import main as beam_main

    return int(beam_main(list(args.args)) or 0)


def run_benchmark(args) -> int:
    """`benchmark KIND [options]`: run ``benchmarks/bench_KIND.py`` with the options; without a
    kind (or with --help) list the kinds and the first line of each one's docstring."""
    import ast
    import runpy
    import sys

    rest = list(args.args)
    bench_dir = Path(__file__).resolve().parent.parent / "benchmarks"
    scripts = {p.stem[len("bench_"):]: p for p in sorted(bench_dir.glob("bench_*.py"))}
    if not scripts:
        raise UserError(f"{bench_dir}: no benchmark scripts (benchmarks/ ships with the source tree, not the wheel)")
    if not rest or rest[0] in ("-h", "--help"):
        print("usage: tfrs-multiscene benchmark KIND [options]   (KIND --help lists its options)\n\nkinds:")
        for kind, script in scripts.items():
            doc = ast.get_docstring(ast.parse(script.read_text())) or ""
            print(f"  {kind:<20} {doc.strip().splitlines()[0] if doc.strip() else ''}")
        return 0 if rest else 2
    kind, rest = rest[0], rest[1:]
    if kind not in scripts:
        raise UserError(f"unknown benchmark {kind!r}; kinds: {', '.join(scripts)}")
    sys.argv = [str(scripts[kind])] + rest
    try:
        runpy.run_path(str(scripts[kind]), run_name="__main__")
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0


def write_json(obj, path) -> Path:
    from tfrs_multiscene.jsonsafe import dump_json

    return dump_json(obj, path)


# --------------------------------------------------------------------------- evaluation


def run_evaluate(args, evaluate: C.EvaluateConfig) -> int:
    from tfrs_multiscene.evaluation.run_evaluation import evaluate_run
    from tfrs_multiscene.run import RunDir

    if not RunDir(evaluate.run_dir).exists():
        raise UserError(f"--run {evaluate.run_dir}: not a run directory (no config.json); train one first")
    results = evaluate_run(evaluate)
    if evaluate.json_out:
        print(f"wrote {write_json(results, evaluate.json_out)}")
    print(f"evaluation written to {RunDir(evaluate.run_dir).evaluation_path}; report: "
          f"{RunDir(evaluate.run_dir).path / 'report' / 'report.md'}")
    return 0


# --------------------------------------------------------------------------- export


def run_export(args, export: C.ExportConfig) -> int:
    from tfrs_multiscene.export.run_export import export_run

    result = export_run(export)
    print(json.dumps(result, indent=2))
    return 0


# --------------------------------------------------------------------------- recommend


def run_recommend(args, recommend: C.RecommendConfig) -> int:
    from tfrs_multiscene.data.privacy import hash_user_id
    from tfrs_multiscene.serving.client import ServingClientError, make_client
    from tfrs_multiscene.serving.recommend import recommend as ask

    if not recommend.user or not recommend.scenario:
        raise UserError("recommend needs --user and --scenario")
    client = make_client(recommend.server, timeout=recommend.timeout)
    user = hash_user_id(recommend.user, recommend.hash_user_ids) if recommend.hash_user_ids else recommend.user
    try:
        result = ask(client, recommend.model, user, recommend.scenario, recommend.k,
                     recommend.exclude, recommend.history, recommend.features)
    except (ServingClientError, KeyError) as err:
        raise UserError(f"{recommend.server}: {err}") from None
    print(json.dumps(result, indent=2))
    return 0


# --------------------------------------------------------------------------- demo


def run_demo(args, demo: C.DemoConfig) -> int:
    from tfrs_multiscene.demo import run_demo as demo_main

    result = demo_main(demo)
    write_json(result, Path(demo.out) / "demo_result.json")
    return 0
