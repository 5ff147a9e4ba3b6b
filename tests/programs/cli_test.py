"""lth_keras.cli: the one way every program defines and parses its flags."""

import ast
import dataclasses
import os
import re
import subprocess
import sys
import typing

import pytest
from absl import flags
from absl.testing import flagsaver

from lth_keras import cli

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROGRAMS = ("main", "export", "instability", "figures", "baselines.tfmot")
# TensorFlow/absl C++ log lines, which the programs do not control (as in main_test).
_TF_NOISE = re.compile(r"^([IWEF]\d{4} |WARNING|To enable the following instructions)")


def _define(flag_values):
    flags.DEFINE_string("results", None, "The experiment directory.", flag_values=flag_values)
    flags.DEFINE_integer("round", 0, "A round.", flag_values=flag_values)


@pytest.fixture
def program():
    flag_values = cli.program_flags(_define)
    yield flag_values
    flag_values.unparse_flags()


def _exit(argv, flag_values):
    with pytest.raises(SystemExit) as info:
        cli.parse_command_line(argv, flag_values, "The program's doc.")
    return info.value.code


def test_a_program_owns_its_flags(program):
    assert program is not flags.FLAGS and "results" not in flags.FLAGS
    # Another program may use the same names.
    other = cli.program_flags(_define)
    assert other is not program and set(other) == set(program)


def test_its_flags_then_absls(program):
    with flagsaver.flagsaver():  # absl's global flags, as they were
        rest = cli.parse_command_line(["prog", "--results=runs/a", "--round=3", "--verbosity=-1"], program, "doc")
        assert rest == ["prog"]
        assert (program.results, program.round) == ("runs/a", 3)
        assert flags.FLAGS.verbosity == -1


def test_a_flagfile_holds_either(program, tmp_path):
    path = tmp_path / "a.flags"
    path.write_text("--results=runs/b\n--round=5\n")
    cli.parse_command_line(["prog", f"--flagfile={path}", "--round=6"], program, "doc")
    assert (program.results, program.round) == ("runs/b", 6)  # the command line after the file wins


@pytest.mark.parametrize("argv, needle", [
    (["--round=x"], "--round"),
    (["--no_such_flag=1"], "no_such_flag"),
    (["--results=a", "stray"], "unexpected arguments: stray"),
])
def test_bad_input_is_one_line_naming_it(program, argv, needle):
    code = _exit(["prog", *argv], program)
    assert isinstance(code, str) and code.startswith("error: ") and "\n" not in code, code
    assert needle in code, code


@pytest.mark.parametrize("flag", ["--help", "-h", "-?", "--helpshort", "--helpfull"])
def test_help_prints_the_doc_and_the_flags_and_exits_1(program, flag, capsys):
    assert _exit(["prog", flag], program) == 1  # absl's --help status
    out = capsys.readouterr().out
    assert out.startswith("The program's doc.") and "--results: The experiment directory." in out
    assert ("--verbosity" in out) == (flag == "--helpfull")  # absl's own flags: --helpfull only


def test_flags_from_a_config_dataclass_and_back():
    @dataclasses.dataclass(frozen=True)
    class Config:
        name: str = dataclasses.field(default="lenet", metadata={"help": "A name."})
        rate: float = 0.2
        rounds: int = 3
        fast: bool = False
        sizes: tuple = (1, 2)
        seed: typing.Optional[int] = None

    flag_values = cli.program_flags(lambda fv: cli.define_flags(Config, flag_values=fv))
    assert flag_values["name"].help == "A name." and flag_values["rate"].help == "rate"
    flag_values(["prog", "--rate=0.5", "--fast", "--sizes=4,5", "--seed=7"])
    assert cli.config_from_flags(Config, flag_values) == Config(rate=0.5, fast=True, sizes=("4", "5"), seed=7)


def _main_block_calls(module_path):
    """The calls under ``if __name__ == "__main__":`` of a module."""
    tree = ast.parse(open(module_path, encoding="utf-8").read())
    for node in tree.body:
        if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test):
            return [ast.unparse(n) for n in node.body]
    return []


@pytest.mark.parametrize("name", PROGRAMS)
def test_every_program_uses_the_one_mechanism(name):
    path = os.path.join(REPO, "lth_keras", *name.split(".")) + ".py"
    assert _main_block_calls(path) == ["cli.run(main, FLAGS, __doc__)"]
    source = open(path, encoding="utf-8").read()
    assert "FLAGS = cli.program_flags(define_flags)" in source
    assert "flags.FLAGS\n" not in source and "flag_values=flags.FLAGS" not in source


@pytest.mark.slow
@pytest.mark.parametrize("name", PROGRAMS)
def test_every_program_on_the_command_line(name):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")

    def run(*args):
        return subprocess.run([sys.executable, "-m", f"lth_keras.{name}", *args], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=300)

    helped = run("--help")
    assert helped.returncode == 1, helped.stderr[-2000:]
    assert "--" in helped.stdout and "Try --helpfull" in helped.stdout
    bad = run("--no_such_flag=1")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr, bad.stderr[-3000:]
    lines = [line for line in bad.stderr.splitlines() if line.strip() and not _TF_NOISE.match(line)]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "no_such_flag" in lines[0], lines
