"""`imaginebot imagine` end to end on the built-in tiny model: files, sizes, recipes, exit codes."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from bot.cli import main as cli_main
from bot.imagine_cli import (
    OutputError,
    OutputPlan,
    ProgressBar,
    TerminalPresenter,
    plan_outputs,
    run_prompt,
)
from bot.jobs import OPERATOR
from bot.services import open_services
from bot.store import Database, JobKind, JobStatus
from bot.store import queries as q
from engine.images import crop_cell, read_recipe
from engine.simulated import SimulatedBackend
from engine.types import Progress
from fakediscord import FakeDiscord
from tests.bot.discord_fixtures import make_config, started_bot

ROOT = Path(__file__).resolve().parents[2]
FOX = "a red fox in snow --ar 3:2 --seed 7 --steps 4"


@pytest.fixture(scope="module")
def tiny_model_name(tmp_path_factory: pytest.TempPathFactory) -> str:
    """`tiny` when its trained weights are in the repo, else the same architecture with random weights
    saved as a local diffusers folder (the CLI's path is the same either way)."""
    from engine.tiny import MODEL_DIR, build_random_pipeline

    if (MODEL_DIR / "model_index.json").exists():
        return "tiny"
    folder = tmp_path_factory.mktemp("tiny-random")
    build_random_pipeline().save_pretrained(folder)
    return str(folder)


def use_tiny_model(monkeypatch: pytest.MonkeyPatch, directory: Path, model: str) -> None:
    """Run on the offline tiny model, from a folder where no developer `.env` can leak in."""
    monkeypatch.chdir(directory)
    monkeypatch.setenv("IMAGINE_MODEL", model)
    monkeypatch.setenv("IMAGINE_DEVICE", "cpu")
    monkeypatch.setenv("IMAGINE_DATA_DIR", str(directory / "data"))


@pytest.fixture(autouse=True)
def tiny_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_model_name: str) -> None:
    use_tiny_model(monkeypatch, tmp_path, tiny_model_name)


@pytest.fixture(scope="module")
def fox_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_name: str) -> tuple[Path, str]:
    """One in-process `imagine` of FOX (generation is the slow part, so tests share it): (folder, stdout)."""
    directory = tmp_path_factory.mktemp("fox")
    stdout = io.StringIO()
    with pytest.MonkeyPatch.context() as monkeypatch, contextlib.redirect_stdout(stdout):
        use_tiny_model(monkeypatch, directory, tiny_model_name)
        code = imagine(FOX, "-o", str(directory / "out" / "grid.png"), "-q")
    assert code == 0
    return directory / "out", stdout.getvalue()


def imagine(*args: str) -> int:
    return cli_main(["imagine", *args])


def files_in(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


# --- pieces -----------------------------------------------------------------------------------


def test_one_request_writes_the_named_grid_and_many_write_numbered_grids(tmp_path: Path) -> None:
    assert plan_outputs(tmp_path / "grid.png", 1) == [OutputPlan(tmp_path, "grid")]
    assert plan_outputs(tmp_path / "fox", 1) == [OutputPlan(tmp_path, "fox")]
    assert plan_outputs(tmp_path / "grid.PNG", 2) == [
        OutputPlan(tmp_path, "grid-1"),
        OutputPlan(tmp_path, "grid-2"),
    ]
    with pytest.raises(OutputError, match=r"name the output like grid\.png, not out\.jpg"):
        plan_outputs(tmp_path / "out.jpg", 1)


def test_progress_bar_is_tqdms_and_statuses_give_way_to_it() -> None:
    stream = io.StringIO()
    bar = ProgressBar(stream)
    bar.show("loading model tiny …")
    bar.show("grid waiting")
    for step in range(1, 11):
        bar.progress("grid", Progress(step=step, total=10))
    bar.done()
    text = stream.getvalue()
    assert text.index("loading model tiny …") < text.index("grid waiting") < text.index("grid:")
    last = text.rstrip("\n").split("\r")[-1]
    assert last.startswith("grid: 100%|")  # tqdm's own bar, left standing when the job is done
    assert "10/10" in last
    assert text.endswith("\n")
    quiet = io.StringIO()
    silent = ProgressBar(quiet, quiet=True)
    silent.show("loading")
    silent.progress("grid", Progress(step=1, total=2))
    silent.done()
    assert quiet.getvalue() == ""


# --- expected errors: one sentence, the right exit code, no traceback -------------------------


def test_bad_prompt_prints_the_parser_sentence_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert imagine("a fox --ar 0:0", "-o", str(tmp_path / "grid.png")) == 2
    err = capsys.readouterr().err
    assert err.startswith("imaginebot: ")
    assert "--ar" in err
    assert "Traceback" not in err
    assert not (tmp_path / "grid.png").exists()


def test_non_png_output_is_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert imagine(FOX, "-o", str(tmp_path / "grid.jpg"), "-q") == 2
    assert "name the output like grid.png" in capsys.readouterr().err


def test_output_folder_that_cannot_exist_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "taken").write_text("a file, not a folder")
    assert imagine(FOX, "-o", str(tmp_path / "taken" / "grid.png"), "-q") == 2
    assert "cannot create the folder" in capsys.readouterr().err


def test_model_that_cannot_load_prints_why_and_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("IMAGINE_MODEL", str(tmp_path / "no-such-model"))
    assert imagine(FOX, "-o", str(tmp_path / "grid.png"), "-q") == 1
    err = capsys.readouterr().err
    assert err.startswith("imaginebot: ")
    assert "no-such-model" in err
    assert "Traceback" not in err
    assert files_in(tmp_path) == ["data"]  # the database, migrated before the model; no images


# --- real generations on the tiny model -------------------------------------------------------


@pytest.mark.slow
def test_imagine_writes_grid_and_cells_sized_by_ar_with_recipes(fox_run: tuple[Path, str]) -> None:
    out, printed = fox_run

    assert files_in(out) == ["grid-1.png", "grid-2.png", "grid-3.png", "grid-4.png", "grid.png"]
    with Image.open(out / "grid.png") as grid:
        grid.load()
    cell_w, cell_h = grid.width // 2, grid.height // 2
    # --ar 3:2, with sides rounded to what the model's latents allow (multiples of 8).
    assert cell_w / cell_h == pytest.approx(3 / 2, rel=0.1)
    assert (cell_w * 2, cell_h * 2) == grid.size
    for n in range(1, 5):
        with Image.open(out / f"grid-{n}.png") as cell:
            assert cell.size == (cell_w, cell_h)
            assert cell.tobytes() == crop_cell(grid, n).tobytes()
        recipe = read_recipe(out / f"grid-{n}.png") or ""
        assert recipe.startswith("a red fox in snow\n")
        assert f"Seed: {6 + n}, Size: {cell_w}x{cell_h}, " in recipe
        assert "Steps: 4, " in recipe
    assert "Seed: 7," in (read_recipe(out / "grid.png") or "")

    assert f"grid (seed 7): {out / 'grid.png'}" in printed
    assert f"image 4 (seed 10): {out / 'grid-4.png'}" in printed


@pytest.mark.slow
def test_console_script_matches_an_in_process_run_byte_for_byte(
    fox_run: tuple[Path, str], tmp_path: Path
) -> None:
    script = Path(sys.executable).with_name("imaginebot")
    # The console script exists once the project is installed (scripts/bootstrap); `-m bot.cli` is
    # the same entry point for a checkout that has not been installed.
    command = [str(script)] if script.exists() else [sys.executable, "-m", "bot.cli"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [*command, "imagine", FOX, "-o", str(tmp_path / "b" / "grid.png")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "4/4" in done.stderr  # the progress bar reached the last step
    assert str(tmp_path / "b" / "grid.png") in done.stdout
    for name in ("grid.png", "grid-1.png", "grid-2.png", "grid-3.png", "grid-4.png"):
        assert (fox_run[0] / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


@pytest.mark.slow
def test_permutations_write_one_numbered_grid_each(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert imagine("a {red, blue} square --seed 3 --steps 1", "-o", str(out / "grid.png"), "-q") == 0
    assert files_in(out) == [
        *(f"grid-1-{n}.png" for n in range(1, 5)),
        "grid-1.png",
        *(f"grid-2-{n}.png" for n in range(1, 5)),
        "grid-2.png",
    ]
    assert (read_recipe(out / "grid-1.png") or "").startswith("a red square\n")
    assert (read_recipe(out / "grid-2.png") or "").startswith("a blue square\n")
    assert capsys.readouterr().out.count("grid (seed 3)") == 2


# --- the operator's jobs go through the bot's own services ------------------------------------


@pytest.mark.slow
async def test_the_run_is_a_job_in_the_bots_history_with_the_same_files(fox_run: tuple[Path, str]) -> None:
    out = fox_run[0]
    config = make_config(out.parent / "data")
    async with await Database.connect(config.database_url) as db, db.session(read_only=True) as session:
        (job,) = await q.recent_jobs(session, OPERATOR.user_id)
    assert (job.kind, job.status, job.channel_id, job.guild_id) == (
        JobKind.IMAGINE,
        JobStatus.SUCCEEDED,
        0,
        None,
    )
    assert job.prompt == "a red fox in snow --aspect 3:2 --seed 7 --steps 4"
    assert job.seeds == [7, 8, 9, 10]
    stored = {image.index: config.data_dir / image.path for image in job.images}
    assert sorted(stored) == [0, 1, 2, 3, 4]
    # The output files are the job's own files, not a second encode.
    assert stored[0].read_bytes() == (out / "grid.png").read_bytes()
    assert stored[3].read_bytes() == (out / "grid-3.png").read_bytes()


async def test_interrupting_the_command_line_cancels_its_jobs(tmp_path: Path) -> None:
    loop, started = asyncio.get_running_loop(), asyncio.Event()

    def note_start(_: object) -> None:  # called on the device thread at the first step
        loop.call_soon_threadsafe(started.set)

    backend = SimulatedBackend(seconds=600, steps=600, fail=note_start)  # runs until cancelled
    config = make_config(tmp_path / "data")
    presenter = TerminalPresenter(ProgressBar(io.StringIO(), quiet=True), io.StringIO(), io.StringIO())
    plans = plan_outputs(tmp_path / "out" / "grid.png", 2)
    async with open_services(config, backend=backend, grace_s=0.0) as services:
        await services.jobs.start(presenter, recover=False)
        run = asyncio.create_task(run_prompt(services.jobs, "a {red, blue} fox", plans, presenter))
        await asyncio.wait_for(started.wait(), timeout=10)
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
        async with services.db.session(read_only=True) as session:
            jobs = await q.recent_jobs(session, OPERATOR.user_id)
    assert [job.status for job in jobs] == [JobStatus.CANCELLED, JobStatus.CANCELLED]
    assert not (tmp_path / "out" / "grid-1.png").exists()


async def test_a_command_line_job_left_unfinished_is_failed_at_the_bots_start_not_resumed(
    fake_discord: FakeDiscord, tmp_path: Path
) -> None:
    config = make_config(tmp_path / "data")
    async with (
        open_services(config, backend=SimulatedBackend()) as services,
        services.db.session() as session,
    ):
        left = await q.create_job(
            session, kind=JobKind.IMAGINE, user_id=0, channel_id=0, prompt="killed with -9", seed=1
        )
    backend = SimulatedBackend()
    async with started_bot(fake_discord, config, backend) as world:
        job = await world.jobs.get(left.id)
    assert job.status is JobStatus.FAILED
    assert job.error == "it was started from the command line, which has ended"
    assert backend.calls == []
    assert fake_discord.messages_in(fake_discord.channel) == []  # nobody on Discord to tell
