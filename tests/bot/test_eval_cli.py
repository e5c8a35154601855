"""`imaginebot eval` end to end: the table printed and written, the plot, the grids, several models and
aspects in one table, `--prompts` outside the grammar, and one sentence for each thing it cannot use."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from bot.cli import main as cli_main
from engine.evaluation import NO_INCEPTION

HEADER = (
    "| model | aspect | size | n | shapes-FID ↓ | shapes-IS ↑ | background | shape | shape colour "
    "| all three | time / grid | time / image |"
)


@pytest.fixture(autouse=True)
def _clean_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A folder where no developer `.env` leaks in; the CPU; no Inception weights.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("IMAGINE_DEVICE", "cpu")
    monkeypatch.delenv("IMAGINE_INCEPTION_WEIGHTS", raising=False)


@pytest.fixture(scope="module")
def random_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    from engine.tiny import build_random_pipeline

    folder = tmp_path_factory.mktemp("random-model")
    build_random_pipeline(seed=0).save_pretrained(folder)
    return str(folder)


def _table_rows(text: str) -> list[list[str]]:
    lines = [
        line
        for line in text.splitlines()
        if line.startswith("| ") and not line.startswith(("| model", "| ---"))
    ]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def test_two_models_at_two_aspects_make_one_table_a_plot_and_grids(
    tmp_path: Path, random_model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    argv = ["eval", "--model", "data", "--model", random_model, "--n", "4", "--ar", "1:1", "--ar", "3:2"]
    assert cli_main([*argv, "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert HEADER in printed.out
    rows = _table_rows(printed.out)
    assert [(row[0], row[1], row[2], row[3]) for row in rows] == [
        ("data", "1:1", "64×64", "4"),
        ("data", "3:2", "96×64", "4"),
        (random_model, "1:1", "64×64", "4"),
        (random_model, "3:2", "80×56", "4"),  # the model's own size for 3:2 at its native area
    ]
    assert rows[0][6] == "100.0%"  # the dataset shows its own background
    assert NO_INCEPTION in printed.err  # said once, on the terminal …
    report = (out / "eval.md").read_text(encoding="utf-8")
    assert NO_INCEPTION in report  # … and in the report
    assert HEADER in report
    assert _table_rows(report) == rows
    assert "imaginebot eval --model data --model" in report  # the command that made it
    assert "4/4" in printed.err  # tqdm's bar counted the grids: 2 models × 2 aspects × 1 grid
    with Image.open(out / "eval.png") as plot:
        assert plot.width > 400
        assert plot.height > 4 * 40
    grids = sorted(path.name for path in (out / "grids").iterdir())
    name = Path(random_model).name
    assert grids == sorted(
        f"{model}-{aspect}-{number}.png"
        for model in ("data", name)
        for aspect in ("1x1", "3x2")
        for number in (1,)
    )
    with Image.open(out / "grids" / "data-3x2-1.png") as grid:
        assert grid.size == (192, 128)


def test_prompts_outside_the_grammar_are_generated_but_not_scored(
    tmp_path: Path, random_model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a lighthouse at dusk\n\na castle on a hill\n", encoding="utf-8")
    argv = ["eval", "--model", random_model, "--prompts", str(prompts), "--n", "4", "--out", "r"]
    assert cli_main(argv) == 0
    (row,) = _table_rows(capsys.readouterr().out)
    assert row[3] == "4"
    assert float(row[4]) > 0  # FID against the dataset is still measured
    assert row[6:10] == ["—", "—", "—", "—"]  # no adherence for prompts the grammar does not know


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--ar", "3:0"], "`--ar` takes two whole numbers above 0 like 3:2; got '3:0'."),
        (["--n", "1"], "`--n` must be at least 2"),
        (["--prompts", "missing.txt"], "cannot read the prompts file 'missing.txt'"),
        (["--inception-weights", "nowhere.pth"], "'nowhere.pth', which is not a file; download https://"),
    ],
)
def test_bad_options_are_one_sentence_and_exit_2(
    extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(["eval", "--model", "data", *extra]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert not Path("report").exists()


def test_the_inception_setting_is_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("IMAGINE_INCEPTION_WEIGHTS", "weights.pth")
    assert cli_main(["eval", "--model", "data"]) == 2
    assert "IMAGINE_INCEPTION_WEIGHTS names 'weights.pth', which is not a file" in capsys.readouterr().err


def test_a_model_that_cannot_load_prints_why_and_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["eval", "--model", "./no-such-model", "--n", "4"]) == 1
    err = capsys.readouterr().err
    assert "no-such-model" in err
    assert "Traceback" not in err
