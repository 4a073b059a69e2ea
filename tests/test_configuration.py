"""Where settings come from (an INI file, the environment over it) and what operators read
about them (docs/configuration.md and `xfer config sample`, both made from the fields)."""

from __future__ import annotations

import dataclasses
import functools
import re
from pathlib import Path

import pytest

from xfer import cli
from xfer.configuration import REFERENCE_COMMAND, file_values, load, reference, sample
from xfer.errors import ConfigError
from xfer.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
FIELDS = dataclasses.fields(Settings)
# made once for the per-setting cases (0.2 s each, 60 settings)
REFERENCE_TEXT = functools.cache(reference)
SAMPLE_TEXT = functools.cache(sample)


def test_the_configuration_reference_is_up_to_date() -> None:
    written = (ROOT / "docs" / "configuration.md").read_text()
    assert written == reference(), (
        f"docs/configuration.md is stale: regenerate it with `{REFERENCE_COMMAND}` "
        f"(run in the repository, with .venv/bin/xfer)")


@pytest.mark.parametrize("setting", FIELDS, ids=lambda f: f.name)
def test_every_setting_says_what_it_means_and_numbers_their_unit(
        setting: dataclasses.Field[object]) -> None:
    assert len(setting.metadata["meaning"]) > 20
    if setting.type in ("int", "float"):
        assert setting.metadata["unit"], f"{setting.name} is a number without a unit"
    assert f"`XFER_{setting.name.upper()}` / `{setting.name}`" in REFERENCE_TEXT()
    assert f"\n#{setting.name} =" in SAMPLE_TEXT()


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "xfer.conf"
    path.write_text(text)
    return path


def test_the_sample_is_all_comments_and_every_value_in_it_reads_back_as_the_default(
        tmp_path: Path) -> None:
    commented = _write(tmp_path, sample())
    assert file_values(commented) == {}
    uncommented = "\n".join(line[1:] if re.match(r"#\w+ =", line) else line
                            for line in sample().splitlines())
    values = file_values(_write(tmp_path, uncommented))
    assert set(values) == {f.name for f in FIELDS}
    # `#worker_id =` stands for a default made at start (HOSTNAME-PID); set empty it is refused
    assert values.pop("worker_id") == ""
    defaults = Settings()
    assert values == {name: getattr(defaults, name) for name in values}


def test_the_file_sets_and_the_environment_overrides_it(tmp_path: Path) -> None:
    path = _write(tmp_path, "[DEFAULT]\n# a comment\nchunk_size = 1048576\n"
                            "segment_size = 2097152\nkeystone_password = p%w\n"
                            'policy = {"copy_image":\n    "role:admin"}\n')
    settings = load(str(path), {"XFER_SEGMENT_SIZE": "3145728"})
    assert (settings.chunk_size, settings.segment_size) == (1048576, 3145728)
    assert settings.keystone_password == "p%w"  # no interpolation of %
    assert settings.policy == {"copy_image": "role:admin"}  # a continued line: one value
    from_variable = load(None, {"XFER_CONFIG_FILE": str(path)})
    assert from_variable.chunk_size == 1048576
    other = tmp_path / "other.conf"
    other.write_text("[DEFAULT]\nchunk_size = 2097152\n")
    assert load(str(other), {"XFER_CONFIG_FILE": str(path)}).chunk_size == 2097152
    assert load(None, {}) == dataclasses.replace(Settings(), worker_id=load(None, {}).worker_id)


@pytest.mark.parametrize("text, says", [
    ("[DEFAULT]\nchunk_sise = 1\n", r"xfer.conf: unknown setting 'chunk_sise' \(did you mean "
                                    r"'chunk_size'\?\)"),
    ("[DEFAULT]\nXFER_CHUNK_SIZE = 1\n", r"unknown setting 'xfer_chunk_size' \(did you mean "
                                         r"'chunk_size'\?\)"),
    ("[DEFAULT]\nwhatever = 1\n", r"xfer.conf: unknown setting 'whatever'; known: database_url"),
    ("[DEFAULT]\n[keystone_authtoken]\nauth_url = x\n",
     r"xfer.conf: unknown section \[keystone_authtoken\]; every setting goes in \[DEFAULT\]"),
    ("[DEFAULT]\nchunk_size = 4 MiB\n", r"xfer.conf: invalid value for chunk_size: not a whole"),
    ("[DEFAULT]\nchunk_size = 1\nchunk_size = 2\n", r"xfer.conf is not valid INI: .*'chunk_size'"),
    ("chunk_size = 1\n", r"xfer.conf is not valid INI: .*no section headers"),
    ("[DEFAULT]\nchunk_size = 0\n", r"XFER_CHUNK_SIZE must be positive"),
    ("[DEFAULT]\npublic_url = xfer.example.org\n", r"XFER_PUBLIC_URL must be an http\(s\)://"),
    ("[DEFAULT]\npublic_url = https://xfer:port\n", r"XFER_PUBLIC_URL must be an http\(s\)://"),
])
def test_a_bad_file_is_refused_naming_the_file_and_the_key(tmp_path: Path, text: str,
                                                           says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        load(str(_write(tmp_path, text)), {})


def test_a_missing_file_is_an_error_not_an_empty_configuration(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read the configuration file .*nowhere\.conf"):
        load(None, {"XFER_CONFIG_FILE": str(tmp_path / "nowhere.conf")})


def test_the_commands_print_the_reference_and_the_sample(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["config", "sample"]) == 0
    assert capsys.readouterr().out == sample()
    assert cli.main(["config", "reference"]) == 0
    assert capsys.readouterr().out == reference()
    with pytest.raises(SystemExit):
        cli.main(["serve", "--help"])
    assert "docs/configuration.md" in " ".join(capsys.readouterr().out.split())


def test_a_command_given_a_bad_file_stops_naming_it(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, "[DEFAULT]\nlisten_prot = 1\n")
    assert cli.main(["migrate", "--config-file", str(path)]) == 2
    assert f"{path}: unknown setting 'listen_prot'" in capsys.readouterr().err
