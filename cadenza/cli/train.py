"""``cadenza train MODEL CONFIG [key=value ...] --out DIR``: one training path for every model.

MODEL is a registered task (generator, vocoder, beats, clap, instruments, ...); ``cadenza train list`` shows them
with their shipped configs and the launch examples. The training itself is
``cadenza.train.runner.fit`` on Lightning Fabric.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from cadenza.errors import CadenzaError

console = Console(stderr=True)

EXAMPLES = """Examples:

\b
  cadenza train generator debug --out runs/gen-debug
  cadenza train generator small train.max_steps=2000 data.batch_size=8 --out runs/gen --resume
  cadenza train generator debug --out runs/ddp --devices 2 --strategy ddp --accelerator cpu
  cadenza train generator debug --out runs/fsdp --devices 2 --strategy fsdp --accelerator cpu
  cadenza train generator small --out runs/gen --launch gpu-1
  cadenza train vocoder tiny data.source=synthetic --out runs/voc-smoke

\b
2 nodes x 8 GPUs with torchrun (on every node; NODE_RANK 0 and 1):
  torchrun --nnodes 2 --nproc-per-node 8 --node-rank $NODE_RANK \\
      --master-addr $MASTER --master-port 29500 \\
      -m cadenza.cli.train generator small --out runs/gen --launch slurm-2x8

\b
the same under SLURM (sbatch --nodes 2 --ntasks-per-node 8 --gpus-per-node 8):
  srun python -m cadenza.cli.train generator small --out runs/gen --launch slurm-2x8

Launch presets (cadenza/configs/launch): cpu-ddp-2, gpu-1, slurm-2x8; flags override them.
See docs/training.md for configs, checkpoints, resume and logging.
"""

app = typer.Typer(
    help="Train a Cadenza model from a config (shipped name or .json path) with key=value overrides.\n\n" + EXAMPLES,
    no_args_is_help=True,
    rich_markup_mode=None,
)


def _launch_preset(name: str) -> dict:
    """A ``cadenza/configs/launch/NAME.json`` preset (or a .json path) → its ``launch`` section."""
    from cadenza.config import load_config

    preset = load_config("launch", name)
    return preset.get("launch", preset)


def run_training(
    model: str,
    config: str,
    overrides: list[str] | None,
    out: Path,
    resume: bool = False,
    devices: str | None = None,
    num_nodes: int | None = None,
    strategy: str | None = None,
    accelerator: str | None = None,
    precision: str | None = None,
    launch: str | None = None,
) -> Path:
    """What every ``cadenza train MODEL`` command does (also usable from Python)."""
    from cadenza.train.runner import fit
    from cadenza.train.tasks import deep_merge, get_task, load_task_config

    task = get_task(model)
    cfg = load_task_config(task, config, overrides)
    if launch:
        cfg = deep_merge(cfg, {"launch": _launch_preset(launch)})
    return fit(task, cfg, out, resume=resume, accelerator=accelerator, devices=devices, num_nodes=num_nodes, strategy=strategy, precision=precision)


def _make_command(model: str):
    def command(
        config: str = typer.Argument(..., help="Config name (see 'cadenza train list') or a .json path."),
        overrides: Optional[list[str]] = typer.Argument(None, help="key=value overrides, e.g. train.max_steps=2000 data.batch_size=8 checkpoint.every_steps=500."),
        out: Path = typer.Option(..., "--out", "-o", help="Run folder: checkpoints/, model/ (the exported model), logs/, train_log.jsonl, run.json."),
        resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its newest intact checkpoint (exact: same data order and RNG)."),
        devices: Optional[str] = typer.Option(None, "--devices", help="Devices per node: a number, or 'auto' (default: the config's launch.devices, else 1)."),
        num_nodes: Optional[int] = typer.Option(None, "--num-nodes", help="Number of machines (with torchrun/SLURM)."),
        strategy: Optional[str] = typer.Option(None, "--strategy", help="auto, ddp (gloo on CPU, nccl on GPU), ddp_spawn or fsdp (FSDP2 shards; CPU over gloo too)."),
        accelerator: Optional[str] = typer.Option(None, "--accelerator", help="cpu, gpu or auto."),
        precision: Optional[str] = typer.Option(None, "--precision", help="32-true or bf16-mixed (16-mixed on older GPUs)."),
        launch: Optional[str] = typer.Option(None, "--launch", help="A launch preset: cpu-ddp-2, gpu-1, slurm-2x8 or a .json path (flags still win)."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar (the same as the override log.progress=false)."),
    ) -> None:
        # the runner draws the bar itself (rank 0, on a terminal); --quiet is its config switch
        overrides = [*(overrides or []), *(["log.progress=false"] if quiet else [])]
        folder = run_training(model, config, overrides, out, resume, devices, num_nodes, strategy, accelerator, precision, launch)
        if folder is not None:
            console.print(f"model written to {folder}", highlight=False)

    return command


def _register() -> None:
    from cadenza.train.tasks import TASKS

    for name, task in TASKS.items():
        summary = (type(task).__doc__ or "").strip().splitlines()[0].split(" (")[0]
        app.command(name, help=f"Train the {name} model: {summary}.\n\n{_task_examples(name)}")(_make_command(name))


def _task_examples(name: str) -> str:
    """EXAMPLES, led by a line for this model when the shared ones show only other models."""
    from cadenza.config import available_configs
    from cadenza.train.tasks import TASKS

    configs = available_configs(TASKS[name].config_kind)
    if f"cadenza train {name} " in EXAMPLES or not configs:
        return EXAMPLES
    config = "debug" if "debug" in configs else configs[0]
    return EXAMPLES.replace("\b\n", f"\b\n  cadenza train {name} {config} --out runs/{name}-{config}\n", 1)


@app.command("list")
def list_command() -> None:
    """List the trainable models, their shipped configs and the launch presets.

    Examples:

    \b
      cadenza train list
      cadenza train beats debug --out runs/beats-debug   (then train one of them)
    """
    from cadenza.config import available_configs
    from cadenza.train.tasks import TASKS

    width = max((len(name) for name in TASKS), default=10)
    for name, task in TASKS.items():
        configs = ", ".join(available_configs(task.config_kind)) or "(none shipped)"
        doc = (type(task).__doc__ or "").strip().splitlines()[0]
        typer.echo(f"{name:<{width}} configs: {configs:<20} {doc}")
    typer.echo(f"launch presets: {', '.join(available_configs('launch'))}")


_register()


def main() -> None:
    """``python -m cadenza.cli.train …`` (what torchrun/srun and Fabric's own launcher run)."""
    try:
        app()
    except CadenzaError as err:
        from cadenza.cli.errors import print_error

        print_error(err.message, err.hint)
        sys.exit(2)


if __name__ == "__main__":
    main()
