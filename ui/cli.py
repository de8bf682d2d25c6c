"""The ``ama`` command line. Installed as the console script ``ama``; each command is a thin front over the
package that does the work (``ama sim`` steps simulators through a RunRecorder). Errors the user can fix
(``InputError``) print one line and exit with code 2; nothing else is caught.

The command line is the operator's interface, so it sits in ui, the top layer, and may import any layer below;
the Streamlit console in ui never steps a simulator.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table

from local_agents.controllers import PLACEMENTS, parse_params
from local_agents.registry import controller_names, make_controller
from simulators.cluster import ROUTINGS
from simulators.errors import ConfigError, InputError, TransientError
from simulators.metrics import RunRecorder
from simulators.scenarios import load_scenario, traces_dir
from tools.decision_log import DecisionLog, parse_since, rows_to_dicts
from tools.recorder import DecisionRecorder

app = typer.Typer(
    name="ama",
    help="AMA: an LLM-planned hierarchical control plane for elastic compute clusters.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)


@app.callback()
def _root() -> None:
    """AMA: an LLM-planned hierarchical control plane for elastic compute clusters."""


def progress_bar(unit: str) -> Progress:
    """A progress bar on stderr (only when it is a terminal), counting ``unit``."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn(f"{{task.completed}}/{{task.total}} {unit}"),
        TimeRemainingColumn(),
    )
    return Progress(*columns, console=err, transient=True, disable=not err.is_terminal)


def fail(message: str) -> NoReturn:
    """One line on stderr, exit code 2: the shape of every user-fixable error."""
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def become(argv: list[str], env: dict[str, str] | None = None) -> NoReturn:
    """Replace this process with a server (``ama console``, ``ama llm serve``): a signal meant for the command
    (Ctrl-C, ``kill``, a container's stop) then reaches the server itself; a child process would outlive its killed
    parent, still holding the port."""
    import os

    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(argv[0], argv, env if env is not None else dict(os.environ))
    except OSError as exc:
        fail(f"cannot start {argv[0]}: {exc.strerror}")


@app.command()
def sim(
    scenario: Annotated[Path, typer.Option("--scenario", "-s", help="Scenario YAML file (see evals/scenarios/).")],
    seed: Annotated[int | None, typer.Option(help="Random seed (default: the scenario's).")] = None,
    ticks: Annotated[int | None, typer.Option(min=1, help="Stop after this many ticks (default: the whole scenario).")] = None,
    controller: Annotated[str, typer.Option("--controller", "-c", help=f"Local controller: {', '.join(controller_names())}.")] = "static",
    placement: Annotated[str, typer.Option(help=f"Where new replicas go: {', '.join(PLACEMENTS)}.")] = "least-loaded",
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="Controller parameter KEY=VALUE (repeatable).")] = None,
    routing: Annotated[str | None, typer.Option(help=f"Load balancing: {', '.join(ROUTINGS)} (default: the scenario's).")] = None,
    db: Annotated[
        str | None, typer.Option("--db", help="Record the run in this decision log (sqlite:///PATH or postgresql://...).")
    ] = None,
    sample_every: Annotated[int, typer.Option(min=0, help="With --db: a metric sample every N ticks (0: none).")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object.")] = False,
) -> None:
    """Run a scenario with a local controller (default: static replicas) and print a summary of the run."""
    try:
        loaded = load_scenario(scenario, seed=seed)
        if routing is not None:
            if routing not in ROUTINGS:
                raise ConfigError(f"unknown routing {routing!r}; choose one of {', '.join(ROUTINGS)}")
            loaded = dataclasses.replace(loaded, config=dataclasses.replace(loaded.config, routing=routing))
        ctrl = make_controller(controller, parse_params(param or []), placement, loaded.spec.seed)
    except InputError as exc:
        fail(str(exc))
    cluster = loaded.make_cluster()
    ctrl.reset(cluster)
    actions = 0
    recorder_db = None
    if db is not None:
        try:
            log = DecisionLog(db, background=True, on_event=lambda line: err.print(f"[yellow]{line}[/]", highlight=False))
        except (InputError, TransientError) as exc:
            fail(str(exc))
        run_id = log.start_run(loaded.name, ctrl.name, seed=loaded.spec.seed, settings={"placement": placement, "params": param or []})
        recorder_db = DecisionRecorder(log, run_id, sample_every=sample_every)
    total = cluster.horizon if ticks is None else min(ticks, cluster.horizon)
    recorder = RunRecorder(cluster)
    gc.freeze()  # start-up objects are long-lived: keep the collector off them during the run
    with progress_bar("ticks") as progress:
        task = progress.add_task(f"sim {loaded.name}", total=total)
        for _ in range(total):
            decision = ctrl.act(cluster)
            actions += len(decision.reasons)
            decision.apply(cluster)
            recorder.record()
            if recorder_db is not None:
                recorder_db.record_tick(cluster, decision.reasons)
            progress.advance(task)
    summary = {
        "scenario": loaded.name,
        "controller": ctrl.name,
        "seed": loaded.spec.seed,
        **recorder.summary(),
        "explained_actions": actions,
    }
    if recorder_db is not None:
        summary["run_id"] = recorder_db.run_id
        recorder_db.log.end_run(recorder_db.run_id, summary)
        recorder_db.log.close()
    if as_json:
        typer.echo(json.dumps(summary))
        return
    table = Table(title=f"{loaded.name} ({ctrl.name}, seed {loaded.spec.seed})", show_header=False)
    for key, value in summary.items():
        table.add_row(key, _fmt(value))
    Console().print(table)


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the demo's decision log, checkpoints and eval report.")] = Path("out/demo"),
) -> None:
    """The full-stack demo: a spike and a node failure handled by the MARL node agents under the manager (the LLM
    planner on a local server this command starts when one can run here, else the rule planner; it says which),
    whose candidates are verified in a past-only twin before they rewrite the agents' weights or ask for nodes
    (approved automatically in demo mode), every step explained in the decision log; then the same scenario under
    HPA, KPA and the agents alone, and the smoke suite's report with the clairvoyant bound."""
    import os

    from manager.serve import plan_server

    out.mkdir(parents=True, exist_ok=True)
    try:
        plan_server(prefer="auto")
        manager = "llm"
    except InputError as exc:
        manager = "rule"
        err.print(f"no local LLM ({exc}): the rule planner plans this demo", highlight=False)
    os.environ.setdefault("AMA_LLM_TIMEOUT_S", "120")  # a small model on a few CPU cores
    scenarios = Path(__file__).resolve().parents[1] / "evals" / "scenarios"
    scenario = scenarios / "demo-spike-failure.yaml"
    db = f"sqlite:///{(out / 'demo.db').resolve()}"
    console = Console()
    console.rule(f"1. demo-spike-failure: the MARL agents on every node, the {manager} manager above them (demo operator approves)")
    run(scenario=scenario, manager=manager, controller="marl", db=db, checkpoints=str(out / "checkpoints.db"), seed=None, ticks=None,
        speed=0.0, approval_timeout_s=600.0, auto_approve="demo", as_json=False, cpu=None, candidates=8, serve_llm=True)  # fmt: skip
    console.rule("2. what the manager did, and why")
    decisions(db=db, run=None, actor="manager", since=None, status=None, node=None, service=None, limit=12, as_json=False)
    console.rule("3. the same scenario under HPA alone, KPA alone and the agents alone")
    for name in ("hpa", "kpa", "marl"):
        sim(scenario=scenario, controller=name, db=None, sample_every=5, seed=None, ticks=None, placement="least-loaded", param=None,
            routing=None, as_json=False)  # fmt: skip
    console.rule("4. the smoke suite: HPA, KPA, the MARL agents and the clairvoyant bound on the same seeds")
    eval_suite(
        suite="smoke",
        controllers="hpa,kpa,marl,oracle",
        seeds=1,
        out=out / "eval",
        jobs=2,
        scenario=None,
        duration_s=None,
        placement="least-loaded",
    )
    console.rule("5. look at it in the operator console")
    console.print(f"ama console --db {db}   # then open http://127.0.0.1:8501 (read-only without AMA_CONSOLE_TOKEN)")


@app.command()
def run(
    scenario: Annotated[Path, typer.Option("--scenario", "-s", help="Scenario YAML file.")],
    manager: Annotated[str, typer.Option(help="Manager planner: rule, llm (falls back to rule on failure) or off.")] = "rule",
    controller: Annotated[str, typer.Option("--controller", "-c", help=f"Local controller: {', '.join(controller_names())}.")] = "kpa",
    db: Annotated[str | None, typer.Option("--db", help="Decision log URL (default: $AMA_DATABASE_URL or .ama/ama.db).")] = None,
    checkpoints: Annotated[
        str | None,
        typer.Option(
            help="The graph's durable state: SQLite file or postgresql URL (default: --db if PostgreSQL, else .ama/checkpoints.db)."
        ),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (default: the scenario's).")] = None,
    ticks: Annotated[int | None, typer.Option(min=1, help="Stop after this many ticks.")] = None,
    speed: Annotated[float, typer.Option(min=0, help="Simulated seconds per wall second (0: as fast as possible).")] = 0.0,
    approval_timeout_s: Annotated[float, typer.Option(min=1, help="Simulated seconds a proposal waits for an operator.")] = 600.0,
    auto_approve: Annotated[str | None, typer.Option(help="Approve every proposal as this operator (demo mode).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object.")] = False,
    cpu: Annotated[
        int | None,
        typer.Option(min=0, help="Pin the runtime to this CPU core: faster manager runs on VMs (Linux; see README)."),
    ] = None,
    candidates: Annotated[
        int, typer.Option(min=0, help="Candidates the manager verifies in the twin per incident (0: apply its plan unverified).")
    ] = 8,
    serve_llm: Annotated[
        bool, typer.Option("--serve-llm", help="With --manager llm: start the local LLM server (ama llm serve) for this run.")
    ] = False,
) -> None:
    """Run the control plane on a scenario: the local controller every tick, the manager on anomalies, approvals
    from the decision log (ama approve / ama reject, or the console). Safe to kill and start again."""
    import contextlib
    import time

    from manager.llm import LLMPlanner, LLMSettings, describe_server
    from manager.loop import Runtime, RuntimeSettings, pin_to_cpu
    from manager.verify import VerifySettings

    if manager not in ("rule", "llm", "off"):
        fail(f"unknown manager {manager!r}; choose rule, llm or off")
    server = contextlib.ExitStack()
    try:
        if serve_llm and manager == "llm":
            from manager.serve import running_server

            plan = server.enter_context(running_server())
            err.print(f"started {plan.kind} serving {plan.model} at {plan.base_url} for this run", highlight=False)
        if cpu is not None:
            pin_to_cpu(cpu)
        make_controller(controller)
        log = DecisionLog(db, on_event=lambda line: err.print(f"[yellow]{line}[/]", highlight=False))
        settings = RuntimeSettings(
            scenario=scenario, controller=controller, manager=manager, seed=seed, ticks=ticks,
            approval_timeout_s=approval_timeout_s, auto_approve=auto_approve, verify=VerifySettings(candidates=candidates),
            checkpoints=checkpoints or (log.url if log.url.startswith("postgresql") else ".ama/checkpoints.db"),
        )  # fmt: skip
        llm = LLMSettings.from_env() if manager == "llm" else None
        runtime = Runtime(settings, log, planner=LLMPlanner(llm) if llm else None)
        if llm:
            err.print(f"manager planner: {describe_server(llm)} (the rule planner takes over whenever it fails)", highlight=False)
    except (InputError, TransientError) as exc:
        server.close()
        fail(str(exc))
    started = time.monotonic()
    printed = 0
    gc.freeze()
    with server, progress_bar("ticks") as progress:  # the LLM server this run started, if any, stops with it
        task = progress.add_task(f"run {runtime.scenario.name}", total=runtime.settings.ticks or runtime.cluster.horizon)

        def each_tick(t: int) -> None:
            nonlocal printed
            progress.advance(task)
            for line in runtime.events[printed:]:
                err.print(line, highlight=False, soft_wrap=True)
            printed = len(runtime.events)
            if speed > 0:
                time.sleep(max(0.0, started + t * runtime.cluster.tick_s / speed - time.monotonic()))

        runtime.on_tick = each_tick
        try:
            summary = runtime.run()
        except TransientError as exc:  # the decision log stayed away past its buffer's bound
            progress.stop()
            fail(str(exc))
    log.close()
    if as_json:
        typer.echo(json.dumps(summary))
        return
    table = Table(title=f"{runtime.scenario.name} ({controller} + {manager} manager)", show_header=False)
    for key, value in summary.items():
        if isinstance(value, list) and not all(isinstance(v, str) for v in value):
            value = f"{len(value)} (see --json)"
        table.add_row(key, _fmt(value) if not isinstance(value, list) else ", ".join(value) or "-")
    Console().print(table)


@app.command()
def approvals(
    db: Annotated[str | None, typer.Option("--db", help="Decision log URL (default: $AMA_DATABASE_URL or .ama/ama.db).")] = None,
) -> None:
    """List the proposals waiting for an operator."""
    try:
        rows = DecisionLog(db).pending_approvals()
    except (InputError, TransientError) as exc:
        fail(str(exc))
    if not rows:
        typer.echo("no proposals waiting")
    for row in rows:
        typer.echo(f"{row.id}  {row.action}  {row.args_json}  (incident {row.incident_id}, t={row.time_s:.0f}s)\n    {row.explanation}")


def _decide(decision_id: str, operator: str, reason: str, db: str | None, approve: bool) -> None:
    try:
        DecisionLog(db).decide_approval(decision_id, operator, approve=approve, reason=reason)
    except (InputError, TransientError) as exc:
        fail(str(exc))
    typer.echo(f"{decision_id} {'approved' if approve else 'rejected'} by {operator}")


@app.command()
def approve(
    decision_id: Annotated[str, typer.Argument(help="The proposal's id (see ama approvals).")],
    operator: Annotated[str, typer.Option(help="Who approves (recorded).")],
    reason: Annotated[str, typer.Option(help="Why (recorded).")] = "",
    db: Annotated[str | None, typer.Option("--db", help="Decision log URL.")] = None,
) -> None:
    """Approve a proposal; the runtime applies it at its next tick (once)."""
    _decide(decision_id, operator, reason, db, approve=True)


@app.command()
def reject(
    decision_id: Annotated[str, typer.Argument(help="The proposal's id (see ama approvals).")],
    operator: Annotated[str, typer.Option(help="Who rejects (recorded).")],
    reason: Annotated[str, typer.Option(help="Why (recorded).")] = "",
    db: Annotated[str | None, typer.Option("--db", help="Decision log URL.")] = None,
) -> None:
    """Reject a proposal; it never runs."""
    _decide(decision_id, operator, reason, db, approve=False)


llm_app = typer.Typer(help="The manager's LLM server.", no_args_is_help=True)
app.add_typer(llm_app, name="llm")


@llm_app.command("serve")
def llm_serve(
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on (127.0.0.1).")] = 8000,
    model: Annotated[str | None, typer.Option(help="vLLM: a model name; llama.cpp: a .gguf path (default: SmolLM2-135M).")] = None,
    prefer: Annotated[str, typer.Option(help="auto (vLLM when installed with a GPU, else llama.cpp), vllm or llama.cpp.")] = "auto",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would start.")] = False,
) -> None:
    """Start the OpenAI-compatible server the LLM planner talks to, and say which one and how to point AMA at it."""
    from manager.serve import plan_server

    try:
        plan = plan_server(port=port, model=model, prefer=prefer)
    except InputError as exc:
        fail(str(exc))
    typer.echo(f"starting {plan.kind} serving {plan.model} at {plan.base_url}")
    typer.echo("for the manager: " + " ".join(f"{k}={v}" for k, v in plan.environment().items()))
    if dry_run:
        typer.echo(" ".join(plan.argv))
        return
    become(plan.argv)


scenarios_app = typer.Typer(help="Scenario files: generate random ones for training, validation and test.", no_args_is_help=True)
app.add_typer(scenarios_app, name="scenarios")


@scenarios_app.command("generate")
def scenarios_generate(
    out: Annotated[Path, typer.Option(help="Folder to write the scenario files into (created if missing).")],
    count: Annotated[int, typer.Option(min=1, help="How many scenarios.")] = 40,
    seed: Annotated[int, typer.Option(min=0, help="First index within the split: scenario K has generator seed split start + K.")] = 0,
    split: Annotated[str, typer.Option(help="train, validation or test: disjoint generator seed ranges.")] = "test",
) -> None:
    """Write COUNT random scenarios (clusters of 2-600 nodes, every workload kind and anomaly type) as YAML files
    that load like the hand-written ones; the same split and seed always give the same files."""
    from simulators.generator import split_seed, write_split

    try:
        first, last = split_seed(split, seed), split_seed(split, seed + count - 1)
        with progress_bar("scenarios") as progress:
            task = progress.add_task(f"generate {split}", total=count)
            paths = write_split(split, count, out, first=seed, progress=lambda _path: progress.advance(task))
    except InputError as exc:
        fail(str(exc))
    typer.echo(f"{len(paths)} {split} scenarios (generator seeds {first}..{last}) in {out}")


@app.command()
def train(
    out: Annotated[Path, typer.Option(help="Folder for checkpoint.pt, curves.csv/png and policy.npz.")] = Path("runs/marl"),
    agent_steps: Annotated[
        int | None, typer.Option(min=1, help="Train until this many agent-steps (one node, one tick) [default: 20,000,000].")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the networks, the curriculum and the sampled weights [default: 0].")] = None,
    envs: Annotated[int | None, typer.Option(min=1, help="Environments stepped side by side [default: 6].")] = None,
    resume: Annotated[Path | None, typer.Option(help="Continue from this checkpoint.pt (--agent-steps sets the new total).")] = None,
    eval_every: Annotated[int | None, typer.Option(min=0, help="Iterations between held-out evaluations (0: never) [default: 20].")] = None,
    device: Annotated[str | None, typer.Option(help="auto (a GPU when present), cpu or cuda [default: auto].")] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="Rollout worker processes (or Ray actors with --ray) [default: 1].")] = None,
    ray: Annotated[
        str | None, typer.Option("--ray", help="Run the rollout workers as Ray actors on this cluster: auto, ray://HOST:PORT or local.")
    ] = None,
    settings: Annotated[
        Path | None, typer.Option(help="JSON file of TrainSettings fields (local_agents.mappo); options given here override it.")
    ] = None,
    ship: Annotated[
        bool, typer.Option(help="Also copy the policy kept by the held-out evaluation (policy-best.npz) over the shipped default.")
    ] = False,
) -> None:
    """Train the node agents' shared policy with weight-conditioned MAPPO (centralized critic) over the scenario
    curriculum; checkpoints every 10 iterations, resumable, learning curves as CSV and PNG."""
    from local_agents.mappo import Trainer, TrainSettings, load_settings_file, ship_policy

    try:
        given = {"total_agent_steps": agent_steps, "seed": seed, "envs": envs, "eval_every": eval_every, "device": device,
                 "workers": workers, "ray_address": ray}  # fmt: skip
        given = {k: v for k, v in given.items() if v is not None}
        if resume is not None:
            trainer = Trainer.resume(resume, **given)
        else:
            values = load_settings_file(settings) if settings else {}
            trainer = Trainer(TrainSettings.from_dict({**values, "out": out, **given}))
    except InputError as exc:
        fail(str(exc))
    gc.freeze()
    with progress_bar("agent-steps") as progress:
        task = progress.add_task("train", total=trainer.settings.total_agent_steps, completed=trainer.agent_steps)
        trainer.progress = reporter(progress, task, "train")
        try:
            summary = trainer.train()
        except InputError as exc:  # e.g. a rollout worker that cannot start, or no Ray cluster at --ray
            trainer.close()
            fail(str(exc))
    if ship:  # the policy the held-out evaluation kept, else the last one
        best = trainer.settings.out / "policy-best.npz"
        chosen = best if best.exists() else trainer.settings.out / "policy.npz"
        summary["shipped"] = str(ship_policy(chosen, " ".join(["ama", *sys.argv[1:]])))
    typer.echo(json.dumps(summary, indent=2))


@app.command()
def distill(
    teacher: Annotated[Path, typer.Argument(help="The trained policy (.npz) to copy, e.g. local_agents/policies/default.npz.")],
    out: Annotated[Path, typer.Option(help="Folder for policy.npz and curves.csv/png.")] = Path("runs/distill"),
    hidden: Annotated[int, typer.Option(min=1, help="The student's hidden width (the teacher's is in its file).")] = 32,
    agent_steps: Annotated[int, typer.Option(min=1, help="Labelled agent-steps (one node, one tick).")] = 4_000_000,
    seed: Annotated[int, typer.Option(help="Seed of the student, the curriculum and the sampled weights.")] = 0,
    student_share: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="DAgger: share of ticks the student drives, reached half-way.")
    ] = 0.75,
    rewrites: Annotated[
        bool, typer.Option(help="Also match the teacher under rewritten weights (one component x 1/4..4), as a manager rewrites them.")
    ] = True,
    scenario: Annotated[
        list[Path] | None, typer.Option(help="A scenario file to learn on; repeatable (default: every shipped one of at most 50 nodes).")
    ] = None,
) -> None:
    """Distil a trained policy into a narrower one (same behaviour, less arithmetic per decision): the student
    matches the teacher's choice distributions on the training curriculum, on states it reaches itself (DAgger).
    Writes the student's policy.npz, which `ama eval` runs with AMA_MARL_POLICY=that file."""
    from local_agents.distill import Distiller, DistillSettings

    try:
        given = {"hidden": hidden, "total_agent_steps": agent_steps, "seed": seed, "student_share": student_share, "rewrites": rewrites}
        settings = DistillSettings(teacher=teacher, out=out, scenarios=tuple(str(path) for path in scenario or ()), **given)
        distiller = Distiller(settings)
    except InputError as exc:
        fail(str(exc))
    gc.freeze()
    with progress_bar("agent-steps") as progress:
        distiller.progress = reporter(progress, progress.add_task("distill", total=agent_steps), "distill")
        summary = distiller.run()
    typer.echo(json.dumps(summary, indent=2))


def reporter(progress: Progress, task: TaskID, label: str) -> Callable[[int, int, str], None]:
    """A progress callback for the trainers: the bar on a terminal, else one line per report."""

    def report(done: int, total: int, line: str) -> None:
        progress.update(task, completed=min(done, total), description=f"{label}: {line}")
        if not err.is_terminal:
            err.print(f"{done:,}/{total:,} agent-steps: {line}", highlight=False, soft_wrap=True)

    return report


@app.command()
def console(
    db: Annotated[str | None, typer.Option(help="Decision log URL (default: AMA_DATABASE_URL, else sqlite:///.ama/ama.db).")] = None,
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to serve the console on.")] = 8501,
    address: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    token_file: Annotated[
        Path | None, typer.Option(help="File holding the shared operator token (default: AMA_CONSOLE_TOKEN; none: read-only).")
    ] = None,
) -> None:
    """Start the operator console (Streamlit): live cluster view, decisions with explanations, approvals with what-if
    previews, chat with the manager, scenario replays. It reads the decision log; it never steps a simulator."""
    import os

    from tools.decision_log import database_url

    env = dict(os.environ, AMA_DATABASE_URL=database_url(db))
    if token_file is not None:
        try:
            env["AMA_CONSOLE_TOKEN"] = token_file.read_text().strip()
        except OSError as exc:
            fail(f"{token_file}: cannot read the console token ({exc.strerror})")
    if not env.get("AMA_CONSOLE_TOKEN"):
        err.print("no console token (AMA_CONSOLE_TOKEN or --token-file): the console is read-only", highlight=False)
    script = Path(__file__).parent / "console" / "app.py"
    argv = [sys.executable, "-m", "streamlit", "run", str(script), "--server.port", str(port), "--server.address", address]
    argv += ["--server.headless", "true", "--browser.gatherUsageStats", "false", "--client.toolbarMode", "viewer"]
    err.print(f"console on http://{address}:{port} reading {env['AMA_DATABASE_URL'].split('@')[-1]}", highlight=False)
    become(argv, env)


@app.command(name="eval")
def eval_suite(
    suite: Annotated[
        str,
        typer.Option(
            help="Scenario suite: smoke, standard (the scenarios whose 'suites' list it), or generated-train, generated-validation, "
            "generated-test (made by simulators.generator on first use; generated-test-100 for 100 of them)."
        ),
    ] = "smoke",
    controllers: Annotated[
        str,
        typer.Option(
            help=f"Comma-separated controllers: {', '.join(controller_names())}; add +rule or +llm for the manager on top, "
            "its plans verified in a past-only twin (+rule-unverified, +llm-unverified: applied as planned) "
            "(+llm needs an LLM server: AMA_LLM_BASE_URL); bound is the cost lower bound (evals.bound), not a controller."
        ),
    ] = "hpa,kpa,marl,marl+rule,bound",
    seeds: Annotated[int, typer.Option(min=1, help="Seeds per scenario (each scenario's own seed + K .. K+N-1).")] = 1,
    first_seed: Annotated[
        int,
        typer.Option(
            min=0, help="K above: 0 for the reported test seeds; e.g. 500 (the trainer's validation seeds) to choose among policies."
        ),
    ] = 0,
    out: Annotated[Path, typer.Option(help="Output folder for results.json, report.md and plots.")] = Path("out/eval"),
    jobs: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 2,
    scenario: Annotated[
        list[Path] | None, typer.Option("--scenario", "-s", help="Run these scenario files instead of a suite (repeatable).")
    ] = None,
    duration_s: Annotated[float | None, typer.Option(min=1, help="Cut every scenario to this many seconds (quick looks).")] = None,
    placement: Annotated[str, typer.Option(help=f"Placement for the service-level controllers: {', '.join(PLACEMENTS)}.")] = "least-loaded",
    serve_llm: Annotated[
        bool, typer.Option("--serve-llm", help="For +llm controllers: start the local LLM server (ama llm serve) for this eval.")
    ] = False,
) -> None:
    """Replay a suite's scripted anomalies for every controller on the same seeds; write results.json, report.md
    and PNG plots. Exits non-zero only when a run or a scenario could not be run, not on a failed expectation."""
    import contextlib

    from evals.report import write_report
    from evals.runner import PSEUDO_CONTROLLERS, plan_suite, run_suite, split_controller

    names = [c.strip() for c in controllers.split(",") if c.strip()]
    server = contextlib.ExitStack()
    try:
        for name in names:
            local, _, manager_name = name.partition("+")
            if local in PSEUDO_CONTROLLERS:
                if manager_name:
                    raise ConfigError(f"{local!r} runs no controller, so no manager on top of it: use {local!r}")
                continue
            make_controller(local, placement=placement)
            split_controller(name)  # a ConfigError naming the managers for an unknown one
        if any(name.partition("+")[2].startswith("llm") for name in names):
            from manager.llm import LLMPlanner, LLMSettings

            if serve_llm:
                from manager.serve import running_server

                started = server.enter_context(running_server())  # the workers inherit AMA_LLM_* pointing at it
                err.print(f"started {started.kind} serving {started.model} at {started.base_url} for this eval", highlight=False)
            LLMPlanner(LLMSettings.from_env()).check_server()  # one line and exit 2, never rule runs labelled llm
        plan = plan_suite(
            None if scenario else suite,
            names,
            seeds,
            out,
            files=scenario,
            duration_s=duration_s,
            placement=placement,
            first_seed=first_seed,
        )
    except InputError as exc:
        server.close()
        fail(str(exc))
    for bad in (s for s in plan.scenarios if s["error"]):
        err.print(f"[bold red]invalid scenario:[/] {bad['error']}", highlight=False, soft_wrap=True)
    command = "ama " + " ".join(sys.argv[1:])
    gc.freeze()
    with server, progress_bar("runs") as progress:  # the LLM server this eval started, if any, stops with it
        task = progress.add_task(f"eval {suite}", total=len(plan.tasks))

        def advance(record: dict) -> None:
            progress.advance(task)
            if record["status"] != "ok":
                err.print(
                    f"[bold red]failed run:[/] {record['scenario']} / {record['controller']} / seed {record['seed']}: {record['error']}",
                    highlight=False,
                    soft_wrap=True,
                )

        results = run_suite(plan, out, suite, names, seeds, jobs=jobs, command=command, progress=advance)
    report = write_report(out)
    failed = [r for r in results["runs"] if r["status"] != "ok"]
    invalid = [s for s in plan.scenarios if s["error"]]
    expectations = [e for r in results["runs"] for e in r["expectations"]]
    missed = sum(not e["passed"] for e in expectations)
    typer.echo(f"{len(results['runs'])} runs, {len(failed)} failed, {len(invalid)} invalid scenarios")
    typer.echo(f"{missed} of {len(expectations)} expectations missed (measurements, not errors)")
    typer.echo(f"report: {report}")
    if failed or invalid:
        raise typer.Exit(1)


@app.command()
def decisions(
    db: Annotated[str | None, typer.Option("--db", help="Decision log URL (default: $AMA_DATABASE_URL or .ama/ama.db).")] = None,
    run: Annotated[str | None, typer.Option("--run", help="Only this run's decisions.")] = None,
    actor: Annotated[str | None, typer.Option(help="Only this actor (hpa, kpa, oracle, marl, manager ...).")] = None,
    since: Annotated[str | None, typer.Option(help="Only since an ISO time or an age like 15m, 2h, 1d.")] = None,
    status: Annotated[str | None, typer.Option(help="Only this status (proposed, approved, rejected, applied, failed, expired).")] = None,
    node: Annotated[str | None, typer.Option(help="Only this node.")] = None,
    service: Annotated[str | None, typer.Option(help="Only this service.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Print the decision log: who did what, when, why, and what became of it."""
    try:
        log = DecisionLog(db)
        rows = log.decisions(
            run_id=run, actor=actor, since=parse_since(since) if since else None, status=status, node=node, service=service, limit=limit
        )
    except (InputError, TransientError) as exc:
        fail(str(exc))
    if as_json:
        for row in rows_to_dicts(rows):
            typer.echo(json.dumps(row))
        return
    table = Table(title=f"decisions ({len(rows)} shown, newest first)")
    for column in ("time", "tick", "actor", "action", "status", "explanation"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(row.created_at.strftime("%H:%M:%S"), str(row.tick), row.actor, row.action, row.status, row.explanation)
    Console().print(table)


@app.command()
def keepalive(
    trace: Annotated[
        Path | None,
        typer.Option(
            "--trace", help="Azure Functions 2019 folder (invocations.csv, durations.csv, memory.csv); default: the shared sample."
        ),
    ] = None,
    policies: Annotated[
        str, typer.Option(help="Comma-separated policies: keepaliveN (N minutes) or hybrid.")
    ] = "keepalive10,keepalive20,hybrid",
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as one JSON object.")] = False,
) -> None:
    """Replay an Azure Functions trace per app, minute by minute, under keep-alive policies: cold starts and
    wasted warm memory (Shahrad et al., ATC 2020)."""
    from local_agents.keepalive import azure_keepalive_report

    trace = trace or traces_dir() / "azure_functions_2019_sample500"
    try:
        report = azure_keepalive_report(trace, [p.strip() for p in policies.split(",") if p.strip()])
    except InputError as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps(report))
        return
    table = Table(title=f"keep-alive policies on {trace} ({report['apps']} apps, {report['minutes']} minutes)")
    for column in ("policy", "p75 app cold-start %", "mean app cold-start %", "cold starts", "wasted memory GB-s"):
        table.add_column(column, justify="right")
    for name, s in report["policies"].items():
        table.add_row(
            name,
            f"{s['cold_start_rate_p75']:.1f}",
            f"{s['cold_start_rate_mean']:.1f}",
            f"{s['total_cold_starts']:,}",
            f"{s['wasted_memory_gb_s']:,.0f}",
        )
    Console().print(table)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}"
    return "-" if value is None else str(value)


def main() -> None:
    app(prog_name="ama")


if __name__ == "__main__":
    sys.exit(main())
